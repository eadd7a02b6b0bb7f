//! The default executor: says what it would run and runs nothing.

use async_trait::async_trait;

use crate::domain::{ResourceState, StepPhase};
use crate::ports::{ExecError, Executor, StepCall, StepOutcome};

/// The name the dry-run executor records on every step; Verify skips a plan run by it.
pub const DRY_RUN: &str = "dry-run";

/// Records each action as it would run it, and never executes anything. The default until
/// an operator configures a real executor and a policy.
#[derive(Debug, Default, Clone)]
pub struct DryRunExecutor;

#[async_trait]
impl Executor for DryRunExecutor {
    fn name(&self) -> String {
        DRY_RUN.into()
    }
    fn changes_systems(&self) -> bool {
        false
    }
    async fn observe(&self, _call: &StepCall<'_>) -> Result<ResourceState, ExecError> {
        Ok(ResourceState::NotRead)
    }
    async fn apply(
        &self,
        call: &StepCall<'_>,
        _prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        Ok(StepOutcome {
            after: ResourceState::NotRead,
            output: describe(call),
        })
    }
    async fn restore(
        &self,
        call: &StepCall<'_>,
        _prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        Ok(StepOutcome {
            after: ResourceState::NotRead,
            output: describe(call),
        })
    }
}

fn describe(call: &StepCall<'_>) -> String {
    let text = call.action.render();
    match call.phase {
        StepPhase::Apply => format!(
            "dry-run (apply step {}): would run `{}` ({}: {})",
            call.step + 1,
            text.cli,
            text.resource,
            text.change
        ),
        StepPhase::Rollback => format!(
            "dry-run (rollback step {}): would {} on {}",
            call.step + 1,
            text.rollback,
            text.resource
        ),
    }
}

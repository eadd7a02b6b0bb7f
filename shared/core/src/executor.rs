//! The default executor: says what it would run and runs nothing.

use async_trait::async_trait;

use crate::domain::{IncidentId, StepPhase};
use crate::ports::{ExecError, Executor};

/// Records each command as it would run it, and never executes anything. The default until
/// an operator configures a real runner.
#[derive(Debug, Default, Clone)]
pub struct DryRunExecutor;

#[async_trait]
impl Executor for DryRunExecutor {
    fn name(&self) -> String {
        "dry-run".into()
    }
    async fn run(
        &self,
        _incident: &IncidentId,
        phase: StepPhase,
        step: usize,
        command: &str,
    ) -> Result<String, ExecError> {
        let what = match phase {
            StepPhase::Apply => "apply",
            StepPhase::Rollback => "rollback",
        };
        Ok(format!(
            "dry-run ({what} step {}): would run `{command}`",
            step + 1
        ))
    }
}

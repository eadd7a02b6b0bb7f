//! One entry point per pipeline stage, JSON in and JSON out: what a Lambda receives from the
//! state machine and what the local runtime hands its in-process functions.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::stages::{self, Deps, StageError};

/// What stage logic calls beyond the clock and its configuration. Each is an adapter a Lambda
/// function must link to behave as the stage expects; one it does not link falls back to
/// core's default (a page becomes a log line), so a function is built from these declarations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    /// [`IncidentStore`](crate::ports::IncidentStore).
    Store,
    /// [`Analyst`](crate::ports::Analyst).
    Analyst,
    /// The [`EvidenceSources`](crate::ports::EvidenceSources): logs, metrics, deployments,
    /// topology.
    Evidence,
    /// [`Notifier`](crate::ports::Notifier).
    Notifier,
    /// [`Pager`](crate::ports::Pager).
    Pager,
    /// [`Executor`](crate::ports::Executor).
    Executor,
    /// [`EventPublisher`](crate::ports::EventPublisher).
    Events,
    /// [`PipelineStarter`](crate::ports::PipelineStarter).
    Starter,
    /// [`TaskCallbacks`](crate::ports::TaskCallbacks).
    Callbacks,
}

impl Port {
    pub const ALL: [Port; 9] = [
        Port::Store,
        Port::Analyst,
        Port::Evidence,
        Port::Notifier,
        Port::Pager,
        Port::Executor,
        Port::Events,
        Port::Starter,
        Port::Callbacks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Port::Store => "store",
            Port::Analyst => "analyst",
            Port::Evidence => "evidence",
            Port::Notifier => "notifier",
            Port::Pager => "pager",
            Port::Executor => "executor",
            Port::Events => "events",
            Port::Starter => "starter",
            Port::Callbacks => "callbacks",
        }
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    Triage,
    GatherContext,
    Rca,
    Plan,
    RequestApproval,
    Remediate,
    Verify,
    Escalate,
    PostMortem,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Triage,
        Stage::GatherContext,
        Stage::Rca,
        Stage::Plan,
        Stage::RequestApproval,
        Stage::Remediate,
        Stage::Verify,
        Stage::Escalate,
        Stage::PostMortem,
    ];

    /// The state's name in `statemachine.asl.json`.
    pub fn state_name(self) -> &'static str {
        match self {
            Stage::Triage => "Triage",
            Stage::GatherContext => "GatherContext",
            Stage::Rca => "Rca",
            Stage::Plan => "Plan",
            Stage::RequestApproval => "RequestApproval",
            Stage::Remediate => "Remediate",
            Stage::Verify => "Verify",
            Stage::Escalate => "Escalate",
            Stage::PostMortem => "PostMortem",
        }
    }

    /// The definition's placeholder for this stage's function (`${TriageFunctionArn}`).
    pub fn arn_placeholder(self) -> String {
        format!("{}FunctionArn", self.state_name())
    }

    /// The crate, binary and function name (`gather-context`).
    pub fn function_name(self) -> &'static str {
        match self {
            Stage::Triage => "triage",
            Stage::GatherContext => "gather-context",
            Stage::Rca => "rca",
            Stage::Plan => "plan",
            Stage::RequestApproval => "request-approval",
            Stage::Remediate => "remediate",
            Stage::Verify => "verify",
            Stage::Escalate => "escalate",
            Stage::PostMortem => "postmortem",
        }
    }

    /// The ports this stage calls, on any path (a test runs every stage and holds it to this).
    pub fn ports(self) -> &'static [Port] {
        use Port::*;
        match self {
            Stage::Triage => &[Store, Analyst],
            Stage::GatherContext => &[Store, Evidence],
            Stage::Rca => &[Store, Analyst],
            Stage::Plan => &[Store, Analyst],
            // The approval link goes to the on-call channel; `PlanAwaitingApproval` to the bus.
            Stage::RequestApproval => &[Store, Notifier, Events],
            // The approval thread hears "applied" and "rolled back".
            Stage::Remediate => &[Store, Executor, Notifier, Events],
            // The symptom series again; the executor only by name (which one changed things).
            // The thread hears whether it recovered.
            Stage::Verify => &[Store, Evidence, Notifier],
            Stage::Escalate => &[Store, Pager, Notifier, Events],
            // The pager too: a resolved incident closes the page it may have opened. The
            // thread's last word, and the approval message's final state.
            Stage::PostMortem => &[Store, Analyst, Pager, Notifier, Events],
        }
    }
}

fn parse<T: DeserializeOwned>(stage: Stage, payload: Value) -> Result<T, StageError> {
    serde_json::from_value(payload)
        .map_err(|e| StageError::InvalidInput(format!("{} input: {e}", stage.state_name())))
}

fn out<T: Serialize>(v: T) -> Result<Value, StageError> {
    serde_json::to_value(v).map_err(|e| StageError::Internal(e.to_string()))
}

pub async fn handle(deps: &Deps, stage: Stage, payload: Value) -> Result<Value, StageError> {
    match stage {
        Stage::Triage => out(stages::triage(deps, &parse(stage, payload)?).await?),
        Stage::GatherContext => out(stages::gather_context(deps, &parse(stage, payload)?).await?),
        Stage::Rca => out(stages::rca(deps, &parse(stage, payload)?).await?),
        Stage::Plan => out(stages::plan(deps, &parse(stage, payload)?).await?),
        Stage::RequestApproval => {
            out(stages::request_approval(deps, &parse(stage, payload)?).await?)
        }
        Stage::Remediate => out(stages::remediate(deps, &parse(stage, payload)?).await?),
        Stage::Verify => out(stages::verify(deps, &parse(stage, payload)?).await?),
        Stage::Escalate => out(stages::escalate(deps, &parse(stage, payload)?).await?),
        Stage::PostMortem => out(stages::postmortem(deps, &parse(stage, payload)?).await?),
    }
}

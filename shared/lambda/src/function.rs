//! The twelve functions and what each is built with: the ports its handler calls, and the
//! feature of this crate that links each port's adapter. A function gets exactly its ports,
//! whatever else a build links, and refuses to start without one of them.

use iras_core::handler::{Port, Stage};

/// One Lambda function of the template: its crate is `functions/<name>`, its binary `<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    Ingest,
    Stage(Stage),
    Api,
    ApprovalCallback,
}

/// ingest: an EventBridge or SNS alert opens (or attaches to) its incident, announced as
/// `IncidentOpened`, and starts the incident's pipeline; a recovery at the source ends a
/// waiting approval (`AUTO_CANCEL_ON_RECOVERY`). The template configures no Slack or PagerDuty
/// for it: the recovery's note and page resolution are core's log lines, as before.
pub const INGEST_PORTS: &[Port] = &[Port::Store, Port::Starter, Port::Events, Port::Callbacks];

/// api: the routes the template sends it (webhooks, incidents, post-mortems, health). The
/// webhooks do what ingest does (a recovery ends a waiting approval too); the rest read the store.
pub const API_PORTS: &[Port] = &[Port::Store, Port::Starter, Port::Events, Port::Callbacks];

/// approval-callback: the approval routes (API key, signed page, Slack buttons). A decision
/// completes the waiting task and is told to the on-call channel. Its role may not start
/// pipelines nor publish events.
pub const APPROVAL_CALLBACK_PORTS: &[Port] = &[Port::Store, Port::Callbacks, Port::Notifier];

impl Function {
    pub const ALL: [Function; 12] = [
        Function::Ingest,
        Function::Stage(Stage::Triage),
        Function::Stage(Stage::GatherContext),
        Function::Stage(Stage::Rca),
        Function::Stage(Stage::Plan),
        Function::Stage(Stage::RequestApproval),
        Function::Stage(Stage::Remediate),
        Function::Stage(Stage::Verify),
        Function::Stage(Stage::Escalate),
        Function::Stage(Stage::PostMortem),
        Function::Api,
        Function::ApprovalCallback,
    ];

    /// The crate folder, binary and `BuildProperties: Binary` (`gather-context`).
    pub fn name(self) -> &'static str {
        match self {
            Function::Ingest => "ingest",
            Function::Stage(stage) => stage.function_name(),
            Function::Api => "api",
            Function::ApprovalCallback => "approval-callback",
        }
    }

    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Every port its handler may call.
    pub fn ports(self) -> &'static [Port] {
        match self {
            Function::Ingest => INGEST_PORTS,
            Function::Stage(stage) => stage.ports(),
            Function::Api => API_PORTS,
            Function::ApprovalCallback => APPROVAL_CALLBACK_PORTS,
        }
    }

    pub fn calls(self, port: Port) -> bool {
        self.ports().contains(&port)
    }

    /// Served through the HTTP router (`lambda_http`) rather than as an event handler.
    pub fn serves_http(self) -> bool {
        matches!(self, Function::Api | Function::ApprovalCallback)
    }

    /// The features of this crate its `Cargo.toml` enables: one per port with an adapter to
    /// link, `http` for the router and `intake` for the ingest function's events.
    pub fn features(self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self.ports().iter().filter_map(|p| feature(*p)).collect();
        if self.serves_http() {
            out.push(HTTP_FEATURE);
        }
        if self == Function::Ingest {
            out.push(INTAKE_FEATURE);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Ports it calls whose adapters this build does not link.
    pub fn missing(self) -> Vec<Port> {
        self.ports()
            .iter()
            .copied()
            .filter(|p| !linked(*p))
            .collect()
    }
}

impl From<Stage> for Function {
    fn from(stage: Stage) -> Function {
        Function::Stage(stage)
    }
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The feature that serves the HTTP router.
pub const HTTP_FEATURE: &str = "http";

/// The feature that reads EventBridge and SNS alert events (the ingest function).
pub const INTAKE_FEATURE: &str = "intake";

/// The feature of this crate that links `port`'s adapter; none for the store, which every
/// build has.
pub fn feature(port: Port) -> Option<&'static str> {
    match port {
        Port::Store => None,
        Port::Executor => Some("remediation"),
        Port::Analyst => Some("analyst"),
        Port::Evidence => Some("evidence"),
        Port::Notifier => Some("notifier"),
        Port::Pager => Some("pager"),
        Port::Events => Some("events"),
        Port::Starter => Some("starter"),
        Port::Callbacks => Some("callbacks"),
    }
}

/// Whether this build links `port`'s adapter.
pub fn linked(port: Port) -> bool {
    match port {
        Port::Store => true,
        Port::Executor => cfg!(feature = "remediation"),
        Port::Analyst => cfg!(feature = "analyst"),
        Port::Evidence => cfg!(feature = "evidence"),
        Port::Notifier => cfg!(feature = "notifier"),
        Port::Pager => cfg!(feature = "pager"),
        Port::Events => cfg!(feature = "events"),
        Port::Starter => cfg!(feature = "starter"),
        Port::Callbacks => cfg!(feature = "callbacks"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_has_one_name_and_is_found_by_it() {
        for f in Function::ALL {
            assert_eq!(Function::from_name(f.name()), Some(f));
        }
        assert_eq!(Function::from_name("bootstrap"), None);
    }
}

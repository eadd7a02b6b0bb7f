//! The errors a state raises: the predefined `States.*` names and the `Error`/`Cause` pair that
//! Retry, Catch and a failed execution see. Every other asl module may use this one; it uses none.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;

/// Predefined error names (the `States.` prefix is reserved for these).
pub mod errors {
    pub const ALL: &str = "States.ALL";
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    pub const PERMISSIONS: &str = "States.Permissions";
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    pub const RUNTIME: &str = "States.Runtime";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const TIMEOUT: &str = "States.Timeout";
    /// What the Lambda integration reports for an unknown function.
    pub const LAMBDA_RESOURCE_NOT_FOUND: &str = "Lambda.ResourceNotFoundException";
    /// What the Lambda integration reports for a crash without an error type.
    pub const LAMBDA_UNKNOWN: &str = "Lambda.Unknown";
}

/// An error raised while running a state: the `Error` and `Cause` that Retry and Catch see and
/// that a failed execution reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFailure {
    pub error: String,
    pub cause: String,
}

impl StateFailure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        StateFailure {
            error: error.into(),
            cause: cause.into(),
        }
    }

    /// `States.Runtime`: never retried or caught; the execution fails.
    pub fn runtime(cause: impl Into<String>) -> Self {
        StateFailure::new(errors::RUNTIME, cause)
    }

    pub fn timeout(cause: impl Into<String>) -> Self {
        StateFailure::new(errors::TIMEOUT, cause)
    }

    /// The "error output" a Catcher places with its ResultPath.
    pub fn error_output(&self) -> Value {
        json!({"Error": self.error, "Cause": self.cause})
    }
}

impl fmt::Display for StateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.cause)
    }
}

impl std::error::Error for StateFailure {}

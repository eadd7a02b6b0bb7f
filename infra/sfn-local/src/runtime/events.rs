//! What a running execution reports live, for progress displays and waiters.

use super::ExecutionStatus;
use crate::asl::{StateFailure, StateType};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

/// A retry about to happen.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryInfo {
    /// Index of the retrier in the state's `Retry` array.
    pub retrier: usize,
    /// 1 for the first retry made by that retrier.
    pub attempt: u32,
    /// The wait the definition asks for (`IntervalSeconds × BackoffRate^n`, capped).
    pub delay: Duration,
    /// The wait actually taken (after `retry_interval_scale`).
    pub scaled_delay: Duration,
}

/// Live events for a progress display.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    ExecutionStarted {
        execution: String,
        input: Value,
    },
    StateEntered {
        execution: String,
        state: String,
        state_type: StateType,
        input: Value,
    },
    StateExited {
        execution: String,
        state: String,
        state_type: StateType,
        /// The state's output (for a Catch, the input of the catcher's next state).
        output: Value,
        duration: Duration,
        /// For a Task, the raw result of the task (before ResultSelector / ResultPath).
        task_result: Option<Value>,
        /// For a Task left through a Catch, the error that was caught.
        error: Option<StateFailure>,
        /// None when the execution ends with this state.
        next: Option<String>,
    },
    TaskFailed {
        execution: String,
        state: String,
        error: String,
        cause: String,
        retry: Option<RetryInfo>,
    },
    TaskTokenIssued {
        execution: String,
        state: String,
        token: String,
        deadline: Option<DateTime<Utc>>,
    },
    ExecutionFinished {
        execution: String,
        status: ExecutionStatus,
        output: Option<Value>,
        error: Option<String>,
        cause: Option<String>,
    },
}

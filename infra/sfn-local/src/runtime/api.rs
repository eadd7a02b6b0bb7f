//! The SFN-like API: start, describe, list, stop, history and task-token callbacks.

use super::step::retriers_of;
use super::{event, Runtime, RuntimeEvent};
use crate::exec_store::{
    ms_to_datetime, now_ms, Cursor, ExecutionRecord, ExecutionStatus, HistoryEvent,
    HistoryEventType, InsertOutcome, Phase, SettleResult, Settlement, StoreError,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionInfo {
    pub name: String,
    pub execution_arn: String,
    pub status: ExecutionStatus,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub start_date: DateTime<Utc>,
    pub stop_date: Option<DateTime<Utc>>,
    /// The state the execution is in while it runs.
    pub current_state: Option<String>,
}

impl From<ExecutionRecord> for ExecutionInfo {
    fn from(r: ExecutionRecord) -> Self {
        let running = r.status == ExecutionStatus::Running;
        ExecutionInfo {
            name: r.name,
            execution_arn: r.arn,
            status: r.status,
            input: r.input,
            output: r.output,
            error: r.error,
            cause: r.cause,
            start_date: ms_to_datetime(r.start_ms),
            stop_date: r.stop_ms.map(ms_to_datetime),
            current_state: running.then_some(r.cursor.state),
        }
    }
}

/// A `.waitForTaskToken` task that waits for its token.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTask {
    pub token: String,
    pub state: String,
    pub deadline: Option<DateTime<Utc>>,
    /// What the callback function was given.
    pub payload: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ExecutionAlreadyExists: an execution named \"{0}\" already exists with a different input or has already ended")]
    ExecutionAlreadyExists(String),
    #[error("ExecutionDoesNotExist: no execution named \"{0}\"")]
    ExecutionDoesNotExist(String),
    #[error("InvalidName: \"{name}\": {reason}")]
    InvalidName { name: String, reason: String },
    #[error("InvalidToken: the task token is not valid")]
    InvalidToken,
    #[error(
        "TaskTimedOut: the task for this token has already finished, timed out or been stopped"
    )]
    TaskTimedOut,
    #[error("execution \"{name}\" did not finish within {waited:?}")]
    WaitTimedOut { name: String, waited: Duration },
    #[error("the runtime was killed")]
    Killed,
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

/// Checks an execution name as StartExecution does.
fn validate_name(name: &str) -> Result<(), RuntimeError> {
    let bad = |reason: &str| {
        Err(RuntimeError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    let len = name.chars().count();
    if len == 0 || len > 80 {
        return bad("must be 1 to 80 characters long");
    }
    if let Some(c) = name.chars().find(|c| {
        c.is_whitespace()
            || c.is_control()
            || ('\u{7f}'..='\u{9f}').contains(c)
            || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(*c)
    }) {
        return bad(&format!("must not contain {c:?}"));
    }
    Ok(())
}

impl Runtime {
    /// Starts an execution. Like StartExecution: the same name and input as a running
    /// execution returns that execution; a different input, or a name whose execution has
    /// ended, is `ExecutionAlreadyExists`.
    pub async fn start_execution(
        &self,
        name: &str,
        input: Value,
    ) -> Result<ExecutionInfo, RuntimeError> {
        self.check_alive()?;
        validate_name(name)?;
        let now = now_ms();
        let def = self.definitions.current.clone();
        let start = def
            .state(&def.start_at)
            .expect("StartAt is checked when the definition loads");
        let rec = ExecutionRecord {
            name: name.to_string(),
            arn: self.execution_arn(name),
            definition_fingerprint: self.definitions.fingerprint.clone(),
            status: ExecutionStatus::Running,
            input: input.clone(),
            output: None,
            error: None,
            cause: None,
            start_ms: now,
            stop_ms: None,
            cursor: Cursor {
                state: def.start_at.clone(),
                state_input: input.clone(),
                entered_ms: now,
                retry_counts: vec![0; retriers_of(start)],
                phase: Phase::Enter,
            },
            transitions: 0,
        };
        let events = vec![
            event(
                HistoryEventType::ExecutionStarted,
                None,
                json!({"input": input}),
            ),
            event(
                HistoryEventType::StateEntered,
                Some(&start.name),
                json!({"type": start.state_type().as_str(), "input": input}),
            ),
        ];
        match self.store.insert_execution(rec.clone(), events).await? {
            InsertOutcome::Inserted => {
                self.emit(RuntimeEvent::ExecutionStarted {
                    execution: name.to_string(),
                    input: input.clone(),
                });
                self.emit(RuntimeEvent::StateEntered {
                    execution: name.to_string(),
                    state: start.name.clone(),
                    state_type: start.state_type(),
                    input,
                });
                if let Some(t) = def.timeout_seconds {
                    self.arm_exec_timer(name, now + (t as i64) * 1000);
                }
                self.kick(name);
                Ok(rec.into())
            }
            InsertOutcome::Exists(existing) => {
                if existing.status == ExecutionStatus::Running && existing.input == input {
                    Ok((*existing).into())
                } else {
                    Err(RuntimeError::ExecutionAlreadyExists(name.to_string()))
                }
            }
        }
    }

    pub async fn describe_execution(
        &self,
        name: &str,
    ) -> Result<Option<ExecutionInfo>, RuntimeError> {
        self.check_alive()?;
        Ok(self.store.execution(name).await?.map(ExecutionInfo::from))
    }

    /// Every execution in the database, newest first, optionally only those with `status`.
    pub async fn list_executions(
        &self,
        status: Option<ExecutionStatus>,
    ) -> Result<Vec<ExecutionInfo>, RuntimeError> {
        self.check_alive()?;
        Ok(self
            .store
            .executions(status)
            .await?
            .into_iter()
            .map(ExecutionInfo::from)
            .collect())
    }

    /// Waits until the execution is no longer `RUNNING`.
    pub async fn wait_for_completion(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<ExecutionInfo, RuntimeError> {
        let mut rx = self.events.subscribe();
        let mut killed = self.kill_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let info = self
                .describe_execution(name)
                .await?
                .ok_or_else(|| RuntimeError::ExecutionDoesNotExist(name.to_string()))?;
            if info.status != ExecutionStatus::Running {
                return Ok(info);
            }
            // Re-read on this execution's end, on a lagged channel, and once a second anyway.
            let recheck = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(recheck);
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Ok(RuntimeEvent::ExecutionFinished { execution, .. }) if execution == name => break,
                        Ok(_) => continue,
                        Err(_) => break,
                    },
                    _ = &mut recheck => break,
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(RuntimeError::WaitTimedOut { name: name.to_string(), waited: timeout });
                    }
                    _ = killed.wait_for(|k| *k) => return Err(RuntimeError::Killed),
                }
            }
        }
    }

    /// Completes a `.waitForTaskToken` task successfully with `output` as its result.
    pub async fn send_task_success(&self, token: &str, output: Value) -> Result<(), RuntimeError> {
        self.settle(token, Settlement::Success(output)).await
    }

    /// Fails a `.waitForTaskToken` task with `error` and `cause` (Retry and Catch apply).
    pub async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), RuntimeError> {
        self.settle(
            token,
            Settlement::Failure {
                error: error.to_string(),
                cause: cause.to_string(),
            },
        )
        .await
    }

    async fn settle(&self, token: &str, how: Settlement) -> Result<(), RuntimeError> {
        self.check_alive()?;
        match self.store.settle_token(token, how).await? {
            SettleResult::Unknown => Err(RuntimeError::InvalidToken),
            SettleResult::NotWaiting(_) => Err(RuntimeError::TaskTimedOut),
            SettleResult::Settled(rec) => {
                self.disarm_token_timer(&rec.token);
                self.kick(&rec.execution);
                Ok(())
            }
        }
    }

    /// The task tokens an execution is waiting for (at most one in this subset of ASL).
    pub async fn pending_tasks(&self, name: &str) -> Result<Vec<PendingTask>, RuntimeError> {
        self.check_alive()?;
        Ok(self
            .store
            .waiting_tokens(name)
            .await?
            .into_iter()
            .map(|t| PendingTask {
                token: t.token,
                state: t.state,
                deadline: t.deadline_ms.map(ms_to_datetime),
                payload: t.payload,
            })
            .collect())
    }

    /// Stops a running execution (status `ABORTED`), like StopExecution.
    pub async fn stop_execution(
        &self,
        name: &str,
        error: &str,
        cause: &str,
    ) -> Result<ExecutionInfo, RuntimeError> {
        self.check_alive()?;
        self.end_execution(name, ExecutionStatus::Aborted, error, cause)
            .await?;
        self.describe_execution(name)
            .await?
            .ok_or_else(|| RuntimeError::ExecutionDoesNotExist(name.to_string()))
    }

    pub async fn history(&self, name: &str) -> Result<Vec<HistoryEvent>, RuntimeError> {
        self.check_alive()?;
        Ok(self.store.history(name).await?)
    }

    /// Live events; a slow receiver may lag (see `broadcast::Receiver`).
    pub fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_names_follow_start_execution_rules() {
        assert!(validate_name("incident-2024-01-01_x.y").is_ok());
        for bad in [
            "",
            "has space",
            "a/b",
            "a:b",
            "x$y",
            &"n".repeat(81),
            "tab\t",
        ] {
            assert!(
                matches!(validate_name(bad), Err(RuntimeError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}

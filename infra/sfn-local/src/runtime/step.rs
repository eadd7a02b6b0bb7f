//! The step loop: runs an execution's states from its persisted cursor until it ends, parks
//! on a task token or is stopped, writing each step before it takes effect.

use super::{event, iso, sleep_until_ms, RetryInfo, Runtime, RuntimeError, RuntimeEvent};
use crate::asl::{io, Definition, State, StateFailure, StateKind, Transition, WaitFor};
use crate::exec_store::{now_ms, Cursor, ExecutionStatus, HistoryEventType, Phase, StoreError};
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Everything fixed about an execution while it is driven.
pub(super) struct ExecCtx {
    pub(super) name: String,
    pub(super) arn: String,
    pub(super) input: Value,
    pub(super) start_ms: i64,
    pub(super) def: Arc<Definition>,
}

#[derive(Default)]
pub(super) struct Exit {
    pub(super) task_result: Option<Value>,
    pub(super) error: Option<StateFailure>,
}

pub(super) enum Outcome {
    Transition {
        next: String,
        input: Value,
        exit: Exit,
    },
    Succeeded {
        output: Value,
        exit: Exit,
    },
    Failed {
        failure: StateFailure,
    },
    Retry {
        failure: StateFailure,
        retrier: usize,
        delay_seconds: f64,
    },
    /// Waiting for a task token; the driver stops.
    Parked,
    /// The execution is no longer running (it timed out or was stopped meanwhile).
    Stopped,
}

pub(super) fn leave(transition: &Transition, output: Value, exit: Exit) -> Outcome {
    match transition {
        Transition::Next(next) => Outcome::Transition {
            next: next.clone(),
            input: output,
            exit,
        },
        Transition::End => Outcome::Succeeded { output, exit },
    }
}

pub(super) fn retriers_of(state: &State) -> usize {
    match &state.kind {
        StateKind::Task(t) => t.retry.len(),
        _ => 0,
    }
}

impl Runtime {
    pub(super) fn context_object(
        &self,
        ctx: &ExecCtx,
        cursor: &Cursor,
        token: Option<&str>,
    ) -> Value {
        let mut c = json!({
            "Execution": {
                "Id": ctx.arn,
                "Input": ctx.input,
                "Name": ctx.name,
                "RoleArn": format!("arn:aws:iam::{}:role/{}", self.options.account_id, self.options.state_machine_name),
                "StartTime": iso(ctx.start_ms),
                "RedriveCount": 0
            },
            "State": {
                "EnteredTime": iso(cursor.entered_ms),
                "Name": cursor.state,
                "RetryCount": cursor.retry_counts.iter().sum::<u32>()
            },
            "StateMachine": {
                "Id": self.state_machine_arn(),
                "Name": self.options.state_machine_name
            }
        });
        if let Some(t) = token {
            c["Task"] = json!({"Token": t});
        }
        c
    }

    /// Runs the execution from its persisted position until it ends, parks or stops.
    pub(super) async fn drive_once(self: &Arc<Self>, name: &str) -> Result<(), StoreError> {
        let Some(rec) = self.store.execution(name).await? else {
            return Ok(());
        };
        if rec.status != ExecutionStatus::Running {
            return Ok(());
        }
        let Some(def) = self.definition_for(&rec.definition_fingerprint).await? else {
            let f = StateFailure::runtime(
                "The execution's state machine definition is no longer available",
            );
            self.finish_failed(name, f).await?;
            return Ok(());
        };
        let ctx = ExecCtx {
            name: rec.name,
            arn: rec.arn,
            input: rec.input,
            start_ms: rec.start_ms,
            def,
        };
        let mut cursor = rec.cursor;
        let mut transitions = rec.transitions;
        loop {
            let def = ctx.def.clone();
            let Some(state) = def.state(&cursor.state) else {
                let f = StateFailure::runtime(format!(
                    "State \"{}\" is not in the definition",
                    cursor.state
                ));
                self.finish_failed(name, f).await?;
                return Ok(());
            };
            match self.run_state(&ctx, &mut cursor, state).await? {
                Outcome::Parked | Outcome::Stopped => return Ok(()),
                Outcome::Succeeded { output, exit } => {
                    self.complete(&ctx, state, &cursor, Ok(output), exit)
                        .await?;
                    return Ok(());
                }
                Outcome::Failed { failure } => {
                    self.complete(&ctx, state, &cursor, Err(failure), Exit::default())
                        .await?;
                    return Ok(());
                }
                Outcome::Transition { next, input, exit } => {
                    transitions += 1;
                    if transitions > self.options.max_transitions {
                        let f = StateFailure::runtime(format!(
                            "The execution made more than {} state transitions",
                            self.options.max_transitions
                        ));
                        self.complete(&ctx, state, &cursor, Err(f), Exit::default())
                            .await?;
                        return Ok(());
                    }
                    let next_state = def
                        .state(&next)
                        .expect("transition targets are checked when the definition loads");
                    let now = now_ms();
                    let new_cursor = Cursor {
                        state: next.clone(),
                        state_input: input.clone(),
                        entered_ms: now,
                        retry_counts: vec![0; retriers_of(next_state)],
                        phase: Phase::Enter,
                    };
                    let events = vec![
                        event(
                            HistoryEventType::StateExited,
                            Some(&state.name),
                            json!({"output": input, "error": exit.error, "next": next}),
                        ),
                        event(
                            HistoryEventType::StateEntered,
                            Some(&next),
                            json!({"type": next_state.state_type().as_str(), "input": input}),
                        ),
                    ];
                    if !self
                        .store
                        .advance(name, new_cursor.clone(), Some(transitions), events, None)
                        .await?
                    {
                        return Ok(());
                    }
                    self.emit(RuntimeEvent::StateExited {
                        execution: ctx.name.clone(),
                        state: state.name.clone(),
                        state_type: state.state_type(),
                        output: input.clone(),
                        duration: Duration::from_millis((now - cursor.entered_ms).max(0) as u64),
                        task_result: exit.task_result,
                        error: exit.error,
                        next: Some(next.clone()),
                    });
                    self.emit(RuntimeEvent::StateEntered {
                        execution: ctx.name.clone(),
                        state: next,
                        state_type: next_state.state_type(),
                        input,
                    });
                    cursor = new_cursor;
                }
                Outcome::Retry {
                    failure,
                    retrier,
                    delay_seconds,
                } => {
                    transitions += 1;
                    if cursor.retry_counts.len() <= retrier {
                        cursor.retry_counts.resize(retrier + 1, 0);
                    }
                    cursor.retry_counts[retrier] += 1;
                    let attempt = cursor.retry_counts[retrier];
                    let scaled = (delay_seconds * self.options.retry_interval_scale).max(0.0);
                    let wake = now_ms() + (scaled * 1000.0).round() as i64;
                    cursor.phase = Phase::RetryWait { wake_at_ms: wake };
                    let events = vec![event(
                        HistoryEventType::TaskRetryScheduled,
                        Some(&state.name),
                        json!({
                            "error": failure.error, "cause": failure.cause, "retrier": retrier,
                            "attempt": attempt, "delaySeconds": delay_seconds, "wakeAt": iso(wake)
                        }),
                    )];
                    if !self
                        .store
                        .advance(name, cursor.clone(), Some(transitions), events, None)
                        .await?
                    {
                        return Ok(());
                    }
                    self.emit(RuntimeEvent::TaskFailed {
                        execution: ctx.name.clone(),
                        state: state.name.clone(),
                        error: failure.error,
                        cause: failure.cause,
                        retry: Some(RetryInfo {
                            retrier,
                            attempt,
                            delay: Duration::from_secs_f64(delay_seconds.max(0.0)),
                            scaled_delay: Duration::from_secs_f64(scaled),
                        }),
                    });
                }
            }
        }
    }

    async fn finish_failed(&self, name: &str, f: StateFailure) -> Result<(), StoreError> {
        let events = vec![event(
            HistoryEventType::ExecutionFailed,
            None,
            json!({"error": f.error, "cause": f.cause}),
        )];
        if self
            .store
            .finish(
                name,
                ExecutionStatus::Failed,
                None,
                Some(f.error.clone()),
                Some(f.cause.clone()),
                events,
            )
            .await?
        {
            self.finished(
                name,
                ExecutionStatus::Failed,
                None,
                Some(f.error),
                Some(f.cause),
            );
        }
        Ok(())
    }

    /// Ends the execution after its last state.
    async fn complete(
        &self,
        ctx: &ExecCtx,
        state: &State,
        cursor: &Cursor,
        result: Result<Value, StateFailure>,
        exit: Exit,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let (status, output, error, cause, events) = match &result {
            Ok(out) => (
                ExecutionStatus::Succeeded,
                Some(out.clone()),
                None,
                None,
                vec![
                    event(
                        HistoryEventType::StateExited,
                        Some(&state.name),
                        json!({"output": out}),
                    ),
                    event(
                        HistoryEventType::ExecutionSucceeded,
                        None,
                        json!({"output": out}),
                    ),
                ],
            ),
            Err(f) => (
                ExecutionStatus::Failed,
                None,
                Some(f.error.clone()),
                Some(f.cause.clone()),
                vec![event(
                    HistoryEventType::ExecutionFailed,
                    Some(&state.name),
                    json!({"error": f.error, "cause": f.cause}),
                )],
            ),
        };
        if !self
            .store
            .finish(
                &ctx.name,
                status,
                output.clone(),
                error.clone(),
                cause.clone(),
                events,
            )
            .await?
        {
            return Ok(());
        }
        if let Ok(out) = result {
            self.emit(RuntimeEvent::StateExited {
                execution: ctx.name.clone(),
                state: state.name.clone(),
                state_type: state.state_type(),
                output: out,
                duration: Duration::from_millis((now - cursor.entered_ms).max(0) as u64),
                task_result: exit.task_result,
                error: exit.error,
                next: None,
            });
        }
        self.finished(&ctx.name, status, output, error, cause);
        Ok(())
    }

    /// Bookkeeping once an execution has ended in the database.
    fn finished(
        &self,
        name: &str,
        status: ExecutionStatus,
        output: Option<Value>,
        error: Option<String>,
        cause: Option<String>,
    ) {
        self.timers.cancel_execution(name);
        self.emit(RuntimeEvent::ExecutionFinished {
            execution: name.to_string(),
            status,
            output,
            error,
            cause,
        });
    }

    /// Ends a running execution from outside its driver (execution timeout, stop).
    pub(super) async fn end_execution(
        &self,
        name: &str,
        status: ExecutionStatus,
        error: &str,
        cause: &str,
    ) -> Result<bool, RuntimeError> {
        let event_type = match status {
            ExecutionStatus::TimedOut => HistoryEventType::ExecutionTimedOut,
            ExecutionStatus::Aborted => HistoryEventType::ExecutionAborted,
            _ => HistoryEventType::ExecutionFailed,
        };
        let events = vec![event(
            event_type,
            None,
            json!({"error": error, "cause": cause}),
        )];
        let ended = self
            .store
            .finish(
                name,
                status,
                None,
                Some(error.to_string()),
                Some(cause.to_string()),
                events,
            )
            .await?;
        if ended {
            self.drivers.abort(name);
            self.finished(
                name,
                status,
                None,
                Some(error.to_string()),
                Some(cause.to_string()),
            );
        } else if self.store.execution(name).await?.is_none() {
            return Err(RuntimeError::ExecutionDoesNotExist(name.to_string()));
        }
        Ok(ended)
    }

    async fn run_state(
        self: &Arc<Self>,
        ctx: &ExecCtx,
        cursor: &mut Cursor,
        state: &State,
    ) -> Result<Outcome, StoreError> {
        match cursor.phase.clone() {
            Phase::Enter => {}
            Phase::RetryWait { wake_at_ms } => {
                sleep_until_ms(wake_at_ms).await;
                cursor.phase = Phase::Enter;
            }
            Phase::Wait { wake_at_ms } => {
                sleep_until_ms(wake_at_ms).await;
                return Ok(self.after_wait(state, cursor));
            }
            Phase::Token { token } => {
                let StateKind::Task(task) = &state.kind else {
                    return Ok(Outcome::Failed {
                        failure: StateFailure::runtime(format!(
                            "State \"{}\" is not a Task but waits for a token",
                            state.name
                        )),
                    });
                };
                return self.resume_token(ctx, cursor, state, task, &token).await;
            }
        }
        let context = self.context_object(ctx, cursor, None);
        let raw = &cursor.state_input;
        let failed = |failure| Outcome::Failed { failure };
        Ok(match &state.kind {
            StateKind::Pass(p) => match io::pass_output(state, p, raw, &context) {
                Ok(out) => leave(&p.transition, out, Exit::default()),
                Err(f) => failed(f),
            },
            StateKind::Choice(c) => match io::choice_outcome(state, c, raw, &context) {
                Ok((next, out)) => Outcome::Transition {
                    next,
                    input: out,
                    exit: Exit::default(),
                },
                Err(f) => failed(f),
            },
            StateKind::Succeed => match io::succeed_output(state, raw) {
                Ok(output) => Outcome::Succeeded {
                    output,
                    exit: Exit::default(),
                },
                Err(f) => failed(f),
            },
            StateKind::Fail(f) => match io::fail_details(f, raw, &context) {
                Ok(failure) | Err(failure) => failed(failure),
            },
            StateKind::Wait(w) => {
                let now = Utc::now();
                let until = match io::wait_until(state, &w.wait, raw, now) {
                    Ok(t) => t.timestamp_millis(),
                    Err(f) => return Ok(failed(f)),
                };
                let now_ms = now.timestamp_millis();
                let wake = match w.wait {
                    WaitFor::Seconds(_) | WaitFor::SecondsPath(_) => {
                        now_ms + ((until - now_ms) as f64 * self.options.wait_scale).round() as i64
                    }
                    _ => until,
                };
                cursor.phase = Phase::Wait { wake_at_ms: wake };
                let events = vec![event(
                    HistoryEventType::WaitStarted,
                    Some(&state.name),
                    json!({"until": iso(wake)}),
                )];
                if !self
                    .store
                    .advance(&ctx.name, cursor.clone(), None, events, None)
                    .await?
                {
                    return Ok(Outcome::Stopped);
                }
                sleep_until_ms(wake).await;
                self.after_wait(state, cursor)
            }
            StateKind::Task(task) => return self.attempt_task(ctx, cursor, state, task).await,
        })
    }

    fn after_wait(&self, state: &State, cursor: &Cursor) -> Outcome {
        let StateKind::Wait(w) = &state.kind else {
            return Outcome::Failed {
                failure: StateFailure::runtime(format!(
                    "State \"{}\" is not a Wait state",
                    state.name
                )),
            };
        };
        match io::wait_output(state, &cursor.state_input) {
            Ok(out) => leave(&w.transition, out, Exit::default()),
            Err(failure) => Outcome::Failed { failure },
        }
    }
}

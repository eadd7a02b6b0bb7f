//! The durable executor: runs ASL state machines against in-process "Lambda" functions,
//! persisting every step in SQLite so that executions survive a crash.
//!
//! Concurrency model:
//! * a running execution has one driver task; an execution waiting for a task token has none,
//!   only its persisted token and (when it has a deadline) a timer;
//! * [`Runtime::send_task_success`] / [`Runtime::send_task_failure`], a token's deadline and a
//!   resumed process all settle the token in the database first (the first settlement wins),
//!   then "kick" the execution; a kick starts a driver unless one is running, in which case the
//!   running driver is told to look again before it stops, so no wake-up is lost;
//! * every state transition, retry and wait is written before it takes effect, so reopening
//!   the database resumes each `RUNNING` execution where it stood: a Wait or retry backoff
//!   sleeps only what is left; a `.waitForTaskToken` task whose function had not returned
//!   invokes it again with the same token; one whose function returned just waits again.

use crate::asl::retry::{self, RetryDecision};
use crate::asl::{
    errors, io, Definition, Resource, State, StateFailure, StateKind, StateType, TaskState,
    Transition, WaitFor,
};
use crate::exec_store::{
    ms_to_datetime, now_ms, Cursor, ExecStore, ExecutionRecord, InsertOutcome, NewEvent, Phase,
    SettleResult, Settlement, StoreError, TokenRecord, TokenStatus,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::task::{AbortHandle, JoinHandle};

pub use crate::exec_store::{ExecutionStatus, HistoryEvent, HistoryEventType};

/// The error a function reports, as Lambda's `errorType` / `errorMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    pub error_type: String,
    pub message: String,
}

impl FunctionError {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        FunctionError {
            error_type: error_type.into(),
            message: message.into(),
        }
    }
}

/// An in-process stand-in for a Lambda function.
#[async_trait::async_trait]
pub trait LambdaFunction: Send + Sync {
    /// `payload` is what Lambda would receive; an Err carries the function's errorType/errorMessage.
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError>;
}

/// Functions by ARN. A task's `FunctionName` (or direct Resource ARN) is looked up exactly
/// first, then by function name (ignoring region, account and qualifier).
pub type FunctionRegistry = HashMap<String, Arc<dyn LambdaFunction>>;

#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Multiplies every Retry wait (1.0 = as the definition says). The computed, unscaled
    /// delays are still reported in [`RuntimeEvent::TaskFailed`] and the history.
    pub retry_interval_scale: f64,
    /// Multiplies Wait states' `Seconds` / `SecondsPath` (not absolute timestamps).
    pub wait_scale: f64,
    /// Timeout for a Task without `TimeoutSeconds`/`TimeoutSecondsPath` (None: wait forever).
    pub default_task_timeout: Option<Duration>,
    pub state_machine_name: String,
    pub region: String,
    pub account_id: String,
    /// Fails an execution (`States.Runtime`) that makes more state transitions than this,
    /// standing in for the service's 25,000-event history limit.
    pub max_transitions: u64,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            retry_interval_scale: 1.0,
            wait_scale: 1.0,
            default_task_timeout: None,
            state_machine_name: "iras-local".into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            max_transitions: 25_000,
        }
    }
}

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

/// A `.waitForTaskToken` task that waits for its token.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTask {
    pub token: String,
    pub state: String,
    pub deadline: Option<DateTime<Utc>>,
    /// What the callback function was given.
    pub payload: Value,
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

/// Which executions can have a driver, and whether one was asked to look again.
#[derive(Default)]
struct Slot {
    running: bool,
    pending_kick: bool,
    abort: Option<AbortHandle>,
}

pub struct Runtime {
    me: Weak<Runtime>,
    store: ExecStore,
    definition: Arc<Definition>,
    fingerprint: String,
    other_definitions: Mutex<HashMap<String, Arc<Definition>>>,
    functions: FunctionRegistry,
    options: RuntimeOptions,
    events: broadcast::Sender<RuntimeEvent>,
    killed: AtomicBool,
    kill_tx: watch::Sender<bool>,
    slots: Mutex<HashMap<String, Slot>>,
    tasks: Mutex<HashMap<u64, AbortHandle>>,
    next_task: AtomicU64,
    token_timers: Mutex<HashMap<String, (String, AbortHandle)>>,
    exec_timers: Mutex<HashMap<String, AbortHandle>>,
}

/// Everything fixed about an execution while it is driven.
struct ExecCtx {
    name: String,
    arn: String,
    input: Value,
    start_ms: i64,
    def: Arc<Definition>,
}

#[derive(Default)]
struct Exit {
    task_result: Option<Value>,
    error: Option<StateFailure>,
}

enum Outcome {
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

enum Invoked {
    Returned(Value),
    Failed(StateFailure),
    DeadlinePassed,
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the runtime: the maps stay consistent per operation.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn sleep_until_ms(at_ms: i64) {
    let wait = at_ms - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

fn iso(ms: i64) -> String {
    ms_to_datetime(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An unguessable task token: 32 random bytes, hex-encoded.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .expect("the operating system must provide randomness for task tokens");
    hex::encode(bytes)
}

fn request_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system must provide randomness");
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
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

/// The function name inside a name or ARN (`name`, `name:alias`, `acct:function:name`, full ARN).
fn function_name_of(s: &str) -> &str {
    let rest = match s.find(":function:") {
        Some(i) => &s[i + ":function:".len()..],
        None => s,
    };
    rest.split(':').next().unwrap_or(rest)
}

fn function_failure(e: FunctionError) -> StateFailure {
    let error = if e.error_type.is_empty() {
        errors::LAMBDA_UNKNOWN.to_string()
    } else {
        e.error_type.clone()
    };
    StateFailure::new(
        error,
        json!({"errorMessage": e.message, "errorType": e.error_type}).to_string(),
    )
}

/// The result of the optimized `lambda:invoke` integration, shaped like the service's.
fn lambda_invoke_result(payload: Value) -> Value {
    let id = request_id();
    json!({
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "SdkHttpMetadata": {
            "HttpHeaders": {
                "Content-Type": "application/json",
                "X-Amz-Executed-Version": "$LATEST",
                "x-amzn-RequestId": id
            },
            "HttpStatusCode": 200
        },
        "SdkResponseMetadata": {"RequestId": id},
        "StatusCode": 200
    })
}

/// `FunctionName` and the payload from the effective parameters of `lambda:invoke`.
fn invoke_parameters(effective: &Value) -> Result<(String, Value), StateFailure> {
    let function = effective
        .get("FunctionName")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            StateFailure::runtime(format!(
                "The parameter FunctionName of lambda:invoke must be a string, in {effective}"
            ))
        })?;
    let payload = match effective.get("Payload") {
        None => json!({}),
        // A string holding JSON reaches the function as that JSON, as with the service.
        Some(Value::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(v) => v.clone(),
    };
    Ok((function.to_string(), payload))
}

fn leave(transition: &Transition, output: Value, exit: Exit) -> Outcome {
    match transition {
        Transition::Next(next) => Outcome::Transition {
            next: next.clone(),
            input: output,
            exit,
        },
        Transition::End => Outcome::Succeeded { output, exit },
    }
}

fn event(event_type: HistoryEventType, state: Option<&str>, details: Value) -> NewEvent {
    NewEvent {
        at_ms: now_ms(),
        event_type,
        state: state.map(str::to_string),
        details,
    }
}

fn retriers_of(state: &State) -> usize {
    match &state.kind {
        StateKind::Task(t) => t.retry.len(),
        _ => 0,
    }
}

impl Runtime {
    /// Opens (or creates) the database, then resumes every `RUNNING` execution found in it:
    /// timers are re-armed and deadlines already past fire at once.
    pub async fn open(
        db_path: &Path,
        definition: Definition,
        functions: FunctionRegistry,
        options: RuntimeOptions,
    ) -> Result<Arc<Runtime>, RuntimeError> {
        let store = ExecStore::open(db_path).await?;
        let fingerprint = definition.fingerprint();
        store
            .save_definition(&fingerprint, definition.source())
            .await?;
        let (events, _) = broadcast::channel(4096);
        let (kill_tx, _) = watch::channel(false);
        let rt = Arc::new_cyclic(|me| Runtime {
            me: me.clone(),
            store,
            definition: Arc::new(definition),
            fingerprint,
            other_definitions: Mutex::new(HashMap::new()),
            functions,
            options,
            events,
            killed: AtomicBool::new(false),
            kill_tx,
            slots: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            next_task: AtomicU64::new(0),
            token_timers: Mutex::new(HashMap::new()),
            exec_timers: Mutex::new(HashMap::new()),
        });
        for rec in rt.store.executions(Some(ExecutionStatus::Running)).await? {
            if let Some(def) = rt.definition_for(&rec.definition_fingerprint).await? {
                if let Some(t) = def.timeout_seconds {
                    rt.arm_exec_timer(&rec.name, rec.start_ms + (t as i64) * 1000);
                }
            }
            tracing::info!(execution = %rec.name, state = %rec.cursor.state, "resuming execution");
            rt.kick(&rec.name);
        }
        Ok(rt)
    }

    pub fn definition(&self) -> &Definition {
        &self.definition
    }

    fn state_machine_arn(&self) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{}",
            self.options.region, self.options.account_id, self.options.state_machine_name
        )
    }

    fn execution_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:execution:{}:{name}",
            self.options.region, self.options.account_id, self.options.state_machine_name
        )
    }

    fn check_alive(&self) -> Result<(), RuntimeError> {
        if self.killed.load(Ordering::SeqCst) {
            Err(RuntimeError::Killed)
        } else {
            Ok(())
        }
    }

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
        let def = self.definition.clone();
        let start = def
            .state(&def.start_at)
            .expect("StartAt is checked when the definition loads");
        let rec = ExecutionRecord {
            name: name.to_string(),
            arn: self.execution_arn(name),
            definition_fingerprint: self.fingerprint.clone(),
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

    /// Simulates a crash: aborts every driver, function call and timer at once and persists
    /// nothing more. The runtime refuses every call afterwards.
    /// Ready to run executions (not killed). For `GET /health`.
    pub fn health(&self) -> Result<(), String> {
        if self.killed.load(Ordering::SeqCst) {
            Err("the runtime was stopped".into())
        } else {
            Ok(())
        }
    }

    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.store.close();
        let _ = self.kill_tx.send(true);
        let handles: Vec<AbortHandle> = lock(&self.tasks).drain().map(|(_, h)| h).collect();
        for h in handles {
            h.abort();
        }
        lock(&self.slots).clear();
        lock(&self.token_timers).clear();
        lock(&self.exec_timers).clear();
    }

    fn emit(&self, ev: RuntimeEvent) {
        if !self.killed.load(Ordering::SeqCst) {
            let _ = self.events.send(ev);
        }
    }

    /// Spawns a task that `kill` aborts.
    fn spawn_tracked<T, F>(&self, fut: F) -> Option<JoinHandle<T>>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        if self.killed.load(Ordering::SeqCst) {
            return None;
        }
        let id = self.next_task.fetch_add(1, Ordering::Relaxed);
        let me = self.me.clone();
        let handle = tokio::spawn(async move {
            let out = fut.await;
            if let Some(rt) = me.upgrade() {
                lock(&rt.tasks).remove(&id);
            }
            out
        });
        lock(&self.tasks).insert(id, handle.abort_handle());
        if handle.is_finished() {
            lock(&self.tasks).remove(&id);
        }
        Some(handle)
    }

    /// Makes sure the execution gets (re)driven: starts a driver, or tells the running one to
    /// look again before it stops.
    fn kick(&self, name: &str) {
        let Some(rt) = self.me.upgrade() else { return };
        let mut slots = lock(&self.slots);
        let slot = slots.entry(name.to_string()).or_default();
        if slot.running {
            slot.pending_kick = true;
            return;
        }
        slot.running = true;
        let n = name.to_string();
        slot.abort = self
            .spawn_tracked(async move { rt.drive(n).await })
            .map(|h| h.abort_handle());
    }

    /// Called by a driver about to stop: true if it was kicked meanwhile and must go on.
    fn must_continue(&self, name: &str) -> bool {
        let mut slots = lock(&self.slots);
        match slots.get_mut(name) {
            Some(slot) if slot.pending_kick => {
                slot.pending_kick = false;
                true
            }
            Some(_) => {
                slots.remove(name);
                false
            }
            None => false,
        }
    }

    async fn drive(self: Arc<Self>, name: String) {
        loop {
            if let Err(e) = self.drive_once(&name).await {
                if !matches!(e, StoreError::Closed) {
                    tracing::error!(execution = %name, error = %e, "driving the execution failed; it resumes when the runtime reopens");
                }
                lock(&self.slots).remove(&name);
                return;
            }
            if !self.must_continue(&name) {
                return;
            }
        }
    }

    async fn definition_for(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Arc<Definition>>, StoreError> {
        if fingerprint == self.fingerprint {
            return Ok(Some(self.definition.clone()));
        }
        if let Some(d) = lock(&self.other_definitions).get(fingerprint) {
            return Ok(Some(d.clone()));
        }
        let Some(source) = self.store.definition_source(fingerprint).await? else {
            return Ok(None);
        };
        match Definition::load(&source, &HashMap::new()) {
            Ok(d) => {
                let d = Arc::new(d);
                lock(&self.other_definitions).insert(fingerprint.to_string(), d.clone());
                Ok(Some(d))
            }
            Err(e) => {
                tracing::error!(%fingerprint, error = %e, "a stored definition no longer loads");
                Ok(None)
            }
        }
    }

    fn context_object(&self, ctx: &ExecCtx, cursor: &Cursor, token: Option<&str>) -> Value {
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
    async fn drive_once(self: &Arc<Self>, name: &str) -> Result<(), StoreError> {
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
        if let Some(h) = lock(&self.exec_timers).remove(name) {
            h.abort();
        }
        let tokens: Vec<AbortHandle> = {
            let mut timers = lock(&self.token_timers);
            let ours: Vec<String> = timers
                .iter()
                .filter(|(_, (e, _))| e == name)
                .map(|(t, _)| t.clone())
                .collect();
            ours.iter()
                .filter_map(|t| timers.remove(t))
                .map(|(_, h)| h)
                .collect()
        };
        for h in tokens {
            h.abort();
        }
        self.emit(RuntimeEvent::ExecutionFinished {
            execution: name.to_string(),
            status,
            output,
            error,
            cause,
        });
    }

    /// Ends a running execution from outside its driver (execution timeout, stop).
    async fn end_execution(
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
            if let Some(slot) = lock(&self.slots).remove(name) {
                if let Some(h) = slot.abort {
                    h.abort();
                }
            }
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

    fn arm_exec_timer(&self, name: &str, at_ms: i64) {
        let me = self.me.clone();
        let n = name.to_string();
        let handle = self.spawn_tracked(async move {
            sleep_until_ms(at_ms).await;
            let Some(rt) = me.upgrade() else { return };
            lock(&rt.exec_timers).remove(&n);
            let cause = "The execution ran longer than the state machine's TimeoutSeconds";
            if let Err(e) = rt
                .end_execution(&n, ExecutionStatus::TimedOut, errors::TIMEOUT, cause)
                .await
            {
                tracing::warn!(execution = %n, error = %e, "could not time the execution out");
            }
        });
        if let Some(h) = handle {
            if let Some(old) = lock(&self.exec_timers).insert(name.to_string(), h.abort_handle()) {
                old.abort();
            }
        }
    }

    fn arm_token_timer(&self, token: &str, execution: &str, deadline_ms: i64) {
        if lock(&self.token_timers).contains_key(token) {
            return;
        }
        let me = self.me.clone();
        let t = token.to_string();
        let handle = self.spawn_tracked(async move {
            sleep_until_ms(deadline_ms).await;
            let Some(rt) = me.upgrade() else { return };
            lock(&rt.token_timers).remove(&t);
            match rt.store.settle_token(&t, Settlement::TimedOut).await {
                Ok(SettleResult::Settled(rec)) => rt.kick(&rec.execution),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not time a task token out"),
            }
        });
        if let Some(h) = handle {
            lock(&self.token_timers)
                .insert(token.to_string(), (execution.to_string(), h.abort_handle()));
        }
    }

    fn disarm_token_timer(&self, token: &str) {
        if let Some((_, h)) = lock(&self.token_timers).remove(token) {
            h.abort();
        }
    }

    fn resolve_function(&self, name: &str) -> Option<Arc<dyn LambdaFunction>> {
        if let Some(f) = self.functions.get(name) {
            return Some(f.clone());
        }
        let wanted = function_name_of(name);
        let mut found = self
            .functions
            .iter()
            .filter(|(k, _)| function_name_of(k) == wanted);
        match (found.next(), found.next()) {
            (Some((_, f)), None) => Some(f.clone()),
            _ => None,
        }
    }

    /// Invokes a function on its own task (a panic becomes `Lambda.Unknown`), giving up at the
    /// deadline. Dropping the returned future aborts the call.
    async fn invoke_until(
        &self,
        function: &str,
        payload: Value,
        deadline_ms: Option<i64>,
    ) -> Invoked {
        let Some(func) = self.resolve_function(function) else {
            return Invoked::Failed(StateFailure::new(
                errors::LAMBDA_RESOURCE_NOT_FOUND,
                format!("Function not found: {function} (Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException)"),
            ));
        };
        let Some(handle) = self.spawn_tracked(async move { func.invoke(payload).await }) else {
            return Invoked::Failed(StateFailure::runtime("The runtime was killed"));
        };
        let _abort = AbortOnDrop(handle.abort_handle());
        let call = async move {
            match handle.await {
                Ok(Ok(v)) => Invoked::Returned(v),
                Ok(Err(e)) => Invoked::Failed(function_failure(e)),
                Err(e) if e.is_panic() => Invoked::Failed(StateFailure::new(
                    errors::LAMBDA_UNKNOWN,
                    json!({"errorMessage": "The function panicked", "errorType": "Panic"})
                        .to_string(),
                )),
                Err(_) => Invoked::Failed(StateFailure::runtime("The function call was cancelled")),
            }
        };
        match deadline_ms {
            None => call.await,
            Some(d) => tokio::select! {
                r = call => r,
                _ = sleep_until_ms(d) => Invoked::DeadlinePassed,
            },
        }
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

    async fn attempt_task(
        self: &Arc<Self>,
        ctx: &ExecCtx,
        cursor: &mut Cursor,
        state: &State,
        task: &TaskState,
    ) -> Result<Outcome, StoreError> {
        let selected = match io::input_path(&cursor.state_input, state.input_path.as_ref()) {
            Ok(v) => v,
            Err(failure) => return Ok(Outcome::Failed { failure }),
        };
        let timeout = match io::task_timeout_seconds(task, &selected) {
            Ok(Some(s)) => Some(Duration::from_secs(s)),
            Ok(None) => self.options.default_task_timeout,
            Err(failure) => return Ok(Outcome::Failed { failure }),
        };
        let deadline_ms =
            timeout.map(|d| now_ms() + d.as_millis().min(i64::MAX as u128 / 2) as i64);
        let resource_name = match &task.resource {
            Resource::LambdaFunction { arn } => arn.clone(),
            Resource::LambdaInvoke {
                wait_for_task_token: false,
            } => "arn:aws:states:::lambda:invoke".into(),
            Resource::LambdaInvoke {
                wait_for_task_token: true,
            } => "arn:aws:states:::lambda:invoke.waitForTaskToken".into(),
        };
        let scheduled = |parameters: &Value| {
            event(
                HistoryEventType::TaskScheduled,
                Some(&state.name),
                json!({"resource": resource_name, "parameters": parameters, "timeoutSeconds": timeout.map(|d| d.as_secs())}),
            )
        };
        match &task.resource {
            Resource::LambdaInvoke {
                wait_for_task_token: true,
            } => {
                let token = new_token();
                let context = self.context_object(ctx, cursor, Some(&token));
                let effective =
                    match io::apply_template(task.parameters.as_ref(), selected, &context) {
                        Ok(v) => v,
                        Err(f) => return self.task_failed(ctx, cursor, state, task, f).await,
                    };
                let (function, payload) = match invoke_parameters(&effective) {
                    Ok(x) => x,
                    Err(f) => return self.task_failed(ctx, cursor, state, task, f).await,
                };
                let rec = TokenRecord {
                    token: token.clone(),
                    execution: ctx.name.clone(),
                    state: state.name.clone(),
                    status: TokenStatus::Waiting,
                    function,
                    payload,
                    invoked: false,
                    deadline_ms,
                    output: None,
                    error: None,
                    cause: None,
                    created_ms: now_ms(),
                    completed_ms: None,
                };
                cursor.phase = Phase::Token {
                    token: token.clone(),
                };
                // The token is durable before the function can see it.
                if !self
                    .store
                    .advance(
                        &ctx.name,
                        cursor.clone(),
                        None,
                        vec![scheduled(&effective)],
                        Some(rec.clone()),
                    )
                    .await?
                {
                    return Ok(Outcome::Stopped);
                }
                if let Some(d) = deadline_ms {
                    self.arm_token_timer(&token, &ctx.name, d);
                }
                self.emit(RuntimeEvent::TaskTokenIssued {
                    execution: ctx.name.clone(),
                    state: state.name.clone(),
                    token,
                    deadline: deadline_ms.map(ms_to_datetime),
                });
                self.invoke_for_token(ctx, cursor, state, task, rec).await
            }
            resource => {
                let context = self.context_object(ctx, cursor, None);
                let effective =
                    match io::apply_template(task.parameters.as_ref(), selected, &context) {
                        Ok(v) => v,
                        Err(f) => return self.task_failed(ctx, cursor, state, task, f).await,
                    };
                let (function, payload, integration) = match resource {
                    Resource::LambdaFunction { arn } => (arn.clone(), effective.clone(), false),
                    Resource::LambdaInvoke { .. } => match invoke_parameters(&effective) {
                        Ok((f, p)) => (f, p, true),
                        Err(f) => return self.task_failed(ctx, cursor, state, task, f).await,
                    },
                };
                self.store
                    .append_events(&ctx.name, vec![scheduled(&effective)])
                    .await?;
                match self.invoke_until(&function, payload, deadline_ms).await {
                    Invoked::Returned(out) => {
                        let result = if integration {
                            lambda_invoke_result(out)
                        } else {
                            out
                        };
                        self.task_succeeded(ctx, cursor, state, task, result).await
                    }
                    Invoked::Failed(f) => self.task_failed(ctx, cursor, state, task, f).await,
                    Invoked::DeadlinePassed => {
                        let secs = timeout.map(|d| d.as_secs()).unwrap_or_default();
                        let f = StateFailure::timeout(format!(
                            "The task did not finish within {secs} seconds"
                        ));
                        self.task_failed(ctx, cursor, state, task, f).await
                    }
                }
            }
        }
    }

    /// Invokes the function of a `.waitForTaskToken` task, then goes on from the token's state.
    async fn invoke_for_token(
        self: &Arc<Self>,
        ctx: &ExecCtx,
        cursor: &Cursor,
        state: &State,
        task: &TaskState,
        rec: TokenRecord,
    ) -> Result<Outcome, StoreError> {
        let after = match self
            .invoke_until(&rec.function, rec.payload.clone(), rec.deadline_ms)
            .await
        {
            Invoked::Returned(_) => {
                let submitted = event(
                    HistoryEventType::TaskSubmitted,
                    Some(&state.name),
                    json!({}),
                );
                self.store.mark_invoked(&rec.token, vec![submitted]).await?
            }
            Invoked::Failed(f) => match self
                .store
                .settle_token(
                    &rec.token,
                    Settlement::Failure {
                        error: f.error,
                        cause: f.cause,
                    },
                )
                .await?
            {
                SettleResult::Settled(r) | SettleResult::NotWaiting(r) => Some(r),
                SettleResult::Unknown => None,
            },
            Invoked::DeadlinePassed => match self
                .store
                .settle_token(&rec.token, Settlement::TimedOut)
                .await?
            {
                SettleResult::Settled(r) | SettleResult::NotWaiting(r) => Some(r),
                SettleResult::Unknown => None,
            },
        };
        match after {
            Some(r) => self.continue_from_token(ctx, cursor, state, task, r).await,
            None => Ok(Outcome::Failed {
                failure: StateFailure::runtime("The task token disappeared from the store"),
            }),
        }
    }

    async fn resume_token(
        self: &Arc<Self>,
        ctx: &ExecCtx,
        cursor: &Cursor,
        state: &State,
        task: &TaskState,
        token: &str,
    ) -> Result<Outcome, StoreError> {
        let Some(rec) = self.store.token(token).await? else {
            return Ok(Outcome::Failed {
                failure: StateFailure::runtime("The task token disappeared from the store"),
            });
        };
        if rec.status == TokenStatus::Waiting {
            if let Some(d) = rec.deadline_ms {
                self.arm_token_timer(&rec.token, &ctx.name, d);
            }
            if !rec.invoked {
                // The process died before the function returned: it is idempotent, call it again
                // with the same token.
                return self.invoke_for_token(ctx, cursor, state, task, rec).await;
            }
            return Ok(Outcome::Parked);
        }
        self.continue_from_token(ctx, cursor, state, task, rec)
            .await
    }

    async fn continue_from_token(
        self: &Arc<Self>,
        ctx: &ExecCtx,
        cursor: &Cursor,
        state: &State,
        task: &TaskState,
        rec: TokenRecord,
    ) -> Result<Outcome, StoreError> {
        if rec.status != TokenStatus::Waiting {
            self.disarm_token_timer(&rec.token);
        }
        match rec.status {
            TokenStatus::Waiting => Ok(Outcome::Parked),
            TokenStatus::Cancelled => Ok(Outcome::Stopped),
            TokenStatus::Succeeded => {
                let output = rec.output.unwrap_or(Value::Null);
                self.task_succeeded(ctx, cursor, state, task, output).await
            }
            TokenStatus::Failed => {
                let f =
                    StateFailure::new(rec.error.unwrap_or_default(), rec.cause.unwrap_or_default());
                self.task_failed(ctx, cursor, state, task, f).await
            }
            TokenStatus::TimedOut => {
                let f = StateFailure::timeout(
                    "The task was not completed with its token before its timeout",
                );
                self.task_failed(ctx, cursor, state, task, f).await
            }
        }
    }

    async fn task_succeeded(
        &self,
        ctx: &ExecCtx,
        cursor: &Cursor,
        state: &State,
        task: &TaskState,
        result: Value,
    ) -> Result<Outcome, StoreError> {
        self.store
            .append_events(
                &ctx.name,
                vec![event(
                    HistoryEventType::TaskSucceeded,
                    Some(&state.name),
                    json!({"output": result}),
                )],
            )
            .await?;
        let context = self.context_object(ctx, cursor, None);
        match io::place_task_result(task, &cursor.state_input, result.clone(), &context) {
            Ok(placed) => Ok(match io::output_path(&placed, state.output_path.as_ref()) {
                Ok(out) => leave(
                    &task.transition,
                    out,
                    Exit {
                        task_result: Some(result),
                        error: None,
                    },
                ),
                Err(failure) => Outcome::Failed { failure },
            }),
            Err(f) => self.task_failed(ctx, cursor, state, task, f).await,
        }
    }

    /// Applies Retry, then Catch, to a task's error.
    async fn task_failed(
        &self,
        ctx: &ExecCtx,
        cursor: &Cursor,
        state: &State,
        task: &TaskState,
        failure: StateFailure,
    ) -> Result<Outcome, StoreError> {
        let event_type = if failure.error == errors::TIMEOUT {
            HistoryEventType::TaskTimedOut
        } else {
            HistoryEventType::TaskFailed
        };
        self.store
            .append_events(
                &ctx.name,
                vec![event(
                    event_type,
                    Some(&state.name),
                    json!({"error": failure.error, "cause": failure.cause}),
                )],
            )
            .await?;
        if let RetryDecision::Retry {
            retrier,
            delay_seconds,
        } = retry::decide(&task.retry, &cursor.retry_counts, &failure.error)
        {
            return Ok(Outcome::Retry {
                failure,
                retrier,
                delay_seconds,
            });
        }
        self.emit(RuntimeEvent::TaskFailed {
            execution: ctx.name.clone(),
            state: state.name.clone(),
            error: failure.error.clone(),
            cause: failure.cause.clone(),
            retry: None,
        });
        let Some(catcher) = retry::find_catcher(&task.catch, &failure.error) else {
            return Ok(Outcome::Failed { failure });
        };
        Ok(
            match retry::catch_output(catcher, &cursor.state_input, &failure) {
                Ok(input) => Outcome::Transition {
                    next: catcher.next.clone(),
                    input,
                    exit: Exit {
                        task_result: None,
                        error: Some(failure),
                    },
                },
                Err(f) => Outcome::Failed { failure: f },
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_hex() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

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

    #[test]
    fn function_names_resolve_from_arns_and_qualifiers() {
        assert_eq!(
            function_name_of("arn:aws:lambda:us-east-1:123456789012:function:triage"),
            "triage"
        );
        assert_eq!(
            function_name_of("arn:aws:lambda:us-east-1:123456789012:function:triage:prod"),
            "triage"
        );
        assert_eq!(function_name_of("123456789012:function:triage"), "triage");
        assert_eq!(function_name_of("triage:$LATEST"), "triage");
        assert_eq!(function_name_of("triage"), "triage");
    }

    #[test]
    fn function_errors_become_lambda_shaped_causes() {
        let f = function_failure(FunctionError::new("HandledError", "boom"));
        assert_eq!(f.error, "HandledError");
        assert_eq!(
            f.cause,
            r#"{"errorMessage":"boom","errorType":"HandledError"}"#
        );
        assert_eq!(
            function_failure(FunctionError::new("", "x")).error,
            "Lambda.Unknown"
        );
    }

    #[test]
    fn lambda_invoke_parameters_and_result_shape() {
        let (f, p) = invoke_parameters(&json!({"FunctionName": "f", "Payload": {"a": 1}})).unwrap();
        assert_eq!((f.as_str(), p), ("f", json!({"a": 1})));
        let (_, p) = invoke_parameters(&json!({"FunctionName": "f"})).unwrap();
        assert_eq!(p, json!({}));
        let (_, p) =
            invoke_parameters(&json!({"FunctionName": "f", "Payload": "{\"a\":2}"})).unwrap();
        assert_eq!(p, json!({"a": 2}));
        assert_eq!(
            invoke_parameters(&json!({"FunctionName": 3}))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
        let r = lambda_invoke_result(json!("Hello from Lambda!"));
        assert_eq!(r["Payload"], json!("Hello from Lambda!"));
        assert_eq!(r["StatusCode"], json!(200));
        assert_eq!(r["ExecutedVersion"], json!("$LATEST"));
        assert_eq!(r["SdkHttpMetadata"]["HttpStatusCode"], json!(200));
    }
}

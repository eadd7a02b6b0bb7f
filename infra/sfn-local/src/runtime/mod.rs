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
//!
//! One job per module, each owning its locks: `api` the SFN-like calls, `driver` which
//! execution has a driver, `step` the step loop, `timers` execution and token deadlines,
//! `tasks` function calls and task tokens, `events` what is reported live. This module
//! holds what they share: the options, the definitions and the set of spawned tasks that
//! [`Runtime::kill`] aborts. Lock order, where two are held: driver slots, then tracked tasks.

mod api;
mod driver;
mod events;
mod step;
mod tasks;
mod timers;

pub use api::{ExecutionInfo, PendingTask, RuntimeError};
pub use events::{RetryInfo, RuntimeEvent};
pub use tasks::{FunctionError, FunctionRegistry, LambdaFunction};

use crate::asl::Definition;
use crate::exec_store::{ms_to_datetime, now_ms, ExecStore, NewEvent, StoreError};
use chrono::SecondsFormat;
use driver::Drivers;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use timers::Timers;
use tokio::sync::{broadcast, watch};
use tokio::task::{AbortHandle, JoinHandle};

pub use crate::exec_store::{ExecutionStatus, HistoryEvent, HistoryEventType};

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

pub struct Runtime {
    me: Weak<Runtime>,
    store: ExecStore,
    definitions: Definitions,
    functions: FunctionRegistry,
    options: RuntimeOptions,
    events: broadcast::Sender<RuntimeEvent>,
    killed: AtomicBool,
    kill_tx: watch::Sender<bool>,
    drivers: Drivers,
    timers: Timers,
    tracked: Tracked,
}

/// The definitions executions run on: the one the runtime was opened with, and older ones
/// that executions started before a change of definition still need.
struct Definitions {
    current: Arc<Definition>,
    fingerprint: String,
    /// Loaded from the store on first use; an entry, once there, never changes.
    others: Mutex<HashMap<String, Arc<Definition>>>,
}

/// Every task the runtime spawned (drivers, function calls, timers), so `kill` can abort them.
#[derive(Default)]
struct Tracked {
    next: AtomicU64,
    /// Holds a task's abort handle from its spawn until it ends (or `kill` drains it).
    handles: Mutex<HashMap<u64, AbortHandle>>,
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

fn event(event_type: HistoryEventType, state: Option<&str>, details: Value) -> NewEvent {
    NewEvent {
        at_ms: now_ms(),
        event_type,
        state: state.map(str::to_string),
        details,
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
            definitions: Definitions {
                current: Arc::new(definition),
                fingerprint,
                others: Mutex::new(HashMap::new()),
            },
            functions,
            options,
            events,
            killed: AtomicBool::new(false),
            kill_tx,
            drivers: Drivers::default(),
            timers: Timers::default(),
            tracked: Tracked::default(),
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
        &self.definitions.current
    }

    /// Ready to run executions (not killed). For `GET /health`.
    pub fn health(&self) -> Result<(), String> {
        if self.killed.load(Ordering::SeqCst) {
            Err("the runtime was stopped".into())
        } else {
            Ok(())
        }
    }

    /// Simulates a crash: aborts every driver, function call and timer at once and persists
    /// nothing more. The runtime refuses every call afterwards.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.store.close();
        let _ = self.kill_tx.send(true);
        let handles: Vec<AbortHandle> = lock(&self.tracked.handles)
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in handles {
            h.abort();
        }
        self.drivers.clear();
        self.timers.clear();
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
        let id = self.tracked.next.fetch_add(1, Ordering::Relaxed);
        let me = self.me.clone();
        let handle = tokio::spawn(async move {
            let out = fut.await;
            if let Some(rt) = me.upgrade() {
                lock(&rt.tracked.handles).remove(&id);
            }
            out
        });
        lock(&self.tracked.handles).insert(id, handle.abort_handle());
        if handle.is_finished() {
            lock(&self.tracked.handles).remove(&id);
        }
        Some(handle)
    }

    async fn definition_for(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Arc<Definition>>, StoreError> {
        let defs = &self.definitions;
        if fingerprint == defs.fingerprint {
            return Ok(Some(defs.current.clone()));
        }
        if let Some(d) = lock(&defs.others).get(fingerprint) {
            return Ok(Some(d.clone()));
        }
        let Some(source) = self.store.definition_source(fingerprint).await? else {
            return Ok(None);
        };
        match Definition::load(&source, &HashMap::new()) {
            Ok(d) => {
                let d = Arc::new(d);
                lock(&defs.others).insert(fingerprint.to_string(), d.clone());
                Ok(Some(d))
            }
            Err(e) => {
                tracing::error!(%fingerprint, error = %e, "a stored definition no longer loads");
                Ok(None)
            }
        }
    }
}

//! Timers: an execution's `TimeoutSeconds` and the deadline of a waiting task token.

use super::{lock, sleep_until_ms, Runtime};
use crate::asl::errors;
use crate::exec_store::{ExecutionStatus, SettleResult, Settlement};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::task::AbortHandle;

/// The armed timers. An entry exists only while its timer is armed: a timer removes its own
/// entry when it fires, and whoever ends the execution or settles the token aborts and removes it.
#[derive(Default)]
pub(super) struct Timers {
    /// Per execution, the timer of the state machine's `TimeoutSeconds`.
    exec: Mutex<HashMap<String, AbortHandle>>,
    /// Per waiting token, its deadline timer and the execution that waits on it.
    tokens: Mutex<HashMap<String, (String, AbortHandle)>>,
}

impl Timers {
    /// Aborts every timer of an execution that has ended.
    pub(super) fn cancel_execution(&self, name: &str) {
        if let Some(h) = lock(&self.exec).remove(name) {
            h.abort();
        }
        let tokens: Vec<AbortHandle> = {
            let mut timers = lock(&self.tokens);
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
    }

    pub(super) fn clear(&self) {
        lock(&self.tokens).clear();
        lock(&self.exec).clear();
    }
}

impl Runtime {
    pub(super) fn arm_exec_timer(&self, name: &str, at_ms: i64) {
        let me = self.me.clone();
        let n = name.to_string();
        let handle = self.spawn_tracked(async move {
            sleep_until_ms(at_ms).await;
            let Some(rt) = me.upgrade() else { return };
            lock(&rt.timers.exec).remove(&n);
            let cause = "The execution ran longer than the state machine's TimeoutSeconds";
            if let Err(e) = rt
                .end_execution(&n, ExecutionStatus::TimedOut, errors::TIMEOUT, cause)
                .await
            {
                tracing::warn!(execution = %n, error = %e, "could not time the execution out");
            }
        });
        if let Some(h) = handle {
            if let Some(old) = lock(&self.timers.exec).insert(name.to_string(), h.abort_handle()) {
                old.abort();
            }
        }
    }

    pub(super) fn arm_token_timer(&self, token: &str, execution: &str, deadline_ms: i64) {
        if lock(&self.timers.tokens).contains_key(token) {
            return;
        }
        let me = self.me.clone();
        let t = token.to_string();
        let handle = self.spawn_tracked(async move {
            sleep_until_ms(deadline_ms).await;
            let Some(rt) = me.upgrade() else { return };
            lock(&rt.timers.tokens).remove(&t);
            match rt.store.settle_token(&t, Settlement::TimedOut).await {
                Ok(SettleResult::Settled(rec)) => rt.kick(&rec.execution),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not time a task token out"),
            }
        });
        if let Some(h) = handle {
            lock(&self.timers.tokens)
                .insert(token.to_string(), (execution.to_string(), h.abort_handle()));
        }
    }

    pub(super) fn disarm_token_timer(&self, token: &str) {
        if let Some((_, h)) = lock(&self.timers.tokens).remove(token) {
            h.abort();
        }
    }
}

//! Driver scheduling: at most one task drives an execution, and no kick is lost.

use super::{lock, Runtime};
use crate::exec_store::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::task::AbortHandle;

/// Whether an execution's driver was asked to look again, and how to abort it.
#[derive(Default)]
struct Slot {
    running: bool,
    pending_kick: bool,
    abort: Option<AbortHandle>,
}

/// The executions that have a driver.
#[derive(Default)]
pub(super) struct Drivers {
    /// A slot exists while an execution has its one driver: a kick inserts the slot and spawns
    /// the driver under this lock, so a later kick only sets `pending_kick`; the slot goes when
    /// the driver stops (or is aborted), and the driver reads `pending_kick` before it stops.
    slots: Mutex<HashMap<String, Slot>>,
}

impl Drivers {
    /// Forgets and aborts the driver of an execution that was ended from outside it.
    pub(super) fn abort(&self, name: &str) {
        if let Some(slot) = lock(&self.slots).remove(name) {
            if let Some(h) = slot.abort {
                h.abort();
            }
        }
    }

    pub(super) fn clear(&self) {
        lock(&self.slots).clear();
    }
}

impl Runtime {
    /// Makes sure the execution gets (re)driven: starts a driver, or tells the running one to
    /// look again before it stops.
    pub(super) fn kick(&self, name: &str) {
        let Some(rt) = self.me.upgrade() else { return };
        let mut slots = lock(&self.drivers.slots);
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
        let mut slots = lock(&self.drivers.slots);
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
                lock(&self.drivers.slots).remove(&name);
                return;
            }
            if !self.must_continue(&name) {
                return;
            }
        }
    }
}

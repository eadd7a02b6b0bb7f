//! Ingest, before the state machine starts: an alert's lifecycle at its source meets the
//! incident it belongs to.
//!
//! The source's key (the alert's fingerprint) finds the newest incident that had it:
//! - firing, and that incident is open: a repeat, counted beside the record
//!   ([`IncidentStore::record_repeat`]), never rewriting it;
//! - firing within `REOPEN_COOLDOWN_MINUTES` of that incident's close: a recurrence (a flap),
//!   counted the same way: no new incident, no new page;
//! - firing otherwise: a new incident, whose pipeline is then started;
//! - resolved: "source recovered at T" is recorded on that incident, never opening one and
//!   never paging; an escalated (paged) incident gets its page resolved, and a plan waiting
//!   for approval is ended through the state machine when `AUTO_CANCEL_ON_RECOVERY` is on;
//! - acknowledged, or no data: recorded on that incident, never opening one.

use super::*;

/// What became of an incoming alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestOutcome {
    /// A new incident: its pipeline must be started.
    Opened,
    /// It fired again while its incident is open.
    Repeat,
    /// It fired again soon after its incident closed: counted on it as a flap.
    Recurrence,
    /// The source says it is over: recorded on its incident.
    Recovered,
    /// A person took it at the source: recorded on its incident.
    Acknowledged,
    /// The source cannot tell (no data): recorded on its incident.
    Noted,
    /// Not firing, and no incident ever had its key: nothing to record it on.
    Unmatched,
}

impl IngestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            IngestOutcome::Opened => "opened",
            IngestOutcome::Repeat => "repeat",
            IngestOutcome::Recurrence => "recurrence",
            IngestOutcome::Recovered => "recovered",
            IngestOutcome::Acknowledged => "acknowledged",
            IngestOutcome::Noted => "noted",
            IngestOutcome::Unmatched => "unmatched",
        }
    }
}

/// An alert, ingested.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub outcome: IngestOutcome,
    /// The incident it opened or was recorded on (none when unmatched).
    pub incident_id: Option<IncidentId>,
    pub status: Option<IncidentStatus>,
    pub fingerprint: String,
    pub state: AlertState,
    /// Its pipeline should be (re)started: a new incident, or a repeat of one not yet
    /// triaged, which heals an incident whose first start failed (starting is idempotent).
    pub start: bool,
}

impl Ingested {
    /// The incident it opened or was recorded on.
    pub fn id(&self) -> Option<&IncidentId> {
        self.incident_id.as_ref()
    }

    /// Attached to an existing incident rather than opening one.
    pub fn is_repeat(&self) -> bool {
        self.outcome != IngestOutcome::Opened
    }
}

/// Records past which lifecycle notes stop being added to an incident's timeline (flapping
/// must not grow a record without bound); the counters and timestamps still move.
const MAX_LIFECYCLE_EVENTS: usize = 20;

/// [`ingest_with`] for callers that never end an approval wait (analysis, tests): a
/// recovery is recorded but cannot complete a waiting task.
pub async fn ingest(deps: &Deps, alert: Alert) -> Result<Ingested, StageError> {
    ingest_with(deps, &NoTaskCallbacks, alert).await
}

/// Callbacks for a door that drives no state machine.
struct NoTaskCallbacks;

#[async_trait::async_trait]
impl TaskCallbacks for NoTaskCallbacks {
    async fn send_task_success(&self, _: &str, _: serde_json::Value) -> Result<(), CallbackError> {
        Err(CallbackError::Unavailable("no state machine here".into()))
    }
    async fn send_task_failure(&self, _: &str, _: &str, _: &str) -> Result<(), CallbackError> {
        Err(CallbackError::Unavailable("no state machine here".into()))
    }
}

/// Records what the alert says about its incident (see the module doc), ending a waiting
/// approval through `callbacks` when the source recovers and `AUTO_CANCEL_ON_RECOVERY` is on.
/// Does not start anything: see [`open_and_start`].
pub async fn ingest_with(
    deps: &Deps,
    callbacks: &dyn TaskCallbacks,
    alert: Alert,
) -> Result<Ingested, StageError> {
    let fingerprint = alert.fingerprint();
    let state = alert.state();
    let latest = deps.store.latest_with_fingerprint(&fingerprint).await?;
    let done = |outcome, m: Option<&FingerprintMatch>, status: Option<IncidentStatus>| Ingested {
        outcome,
        incident_id: m.map(|m| m.incident_id.clone()),
        status: status.or(m.map(|m| m.status)),
        fingerprint: fingerprint.clone(),
        state,
        start: false,
    };
    match state {
        AlertState::Firing => {}
        AlertState::Resolved => {
            let Some(m) = latest else {
                return Ok(done(IngestOutcome::Unmatched, None, None));
            };
            let status = recovered(deps, callbacks, &m, &alert).await?;
            return Ok(done(IngestOutcome::Recovered, Some(&m), Some(status)));
        }
        AlertState::Acknowledged | AlertState::NoData => {
            let Some(m) = latest else {
                return Ok(done(IngestOutcome::Unmatched, None, None));
            };
            let outcome = note(deps, &m, &alert).await?;
            return Ok(done(outcome, Some(&m), None));
        }
    }
    let now = deps.clock.now();
    if let Some(m) = &latest {
        let cooldown = chrono::Duration::minutes(deps.config.reopen_cooldown_minutes);
        let recurrence = m.status.is_final() && m.closed_at.is_some_and(|c| now - c < cooldown);
        if !m.status.is_final() || recurrence {
            return repeat(deps, m, &alert, recurrence).await;
        }
    }
    let (kept, cut) = alert.clone().bounded(MAX_ALERT_BYTES);
    for _ in 0..4 {
        let mut incident = Incident::open(IncidentId::generate(), kept.clone(), now);
        if let Some(note) = &cut {
            incident.record(now, "alert:cut", "ingest", note.clone());
        }
        match deps.store.create_incident(&incident).await {
            Ok(()) => {
                announce(
                    deps,
                    lifecycle::INCIDENT_OPENED,
                    &incident,
                    serde_json::json!({}),
                )
                .await;
                return Ok(Ingested {
                    outcome: IngestOutcome::Opened,
                    incident_id: Some(incident.incident_id.clone()),
                    status: Some(incident.status),
                    fingerprint,
                    state,
                    start: true,
                });
            }
            // Another delivery of the same alert opened it a moment ago.
            Err(StoreError::Duplicate(holder)) => {
                let m = FingerprintMatch {
                    incident_id: holder,
                    status: IncidentStatus::Processing,
                    closed_at: None,
                };
                match repeat(deps, &m, &alert, false).await {
                    Err(StageError::IncidentNotFound(_)) => continue,
                    other => return other,
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StageError::StoreConflict(
        "could not open or attach the incident".into(),
    ))
}

async fn repeat(
    deps: &Deps,
    m: &FingerprintMatch,
    alert: &Alert,
    recurrence: bool,
) -> Result<Ingested, StageError> {
    let repeat = AlertRepeat {
        at: alert.timestamp,
        recurrence,
        sample: alert.sample(MAX_SAMPLE_BYTES),
    };
    deps.store.record_repeat(&m.incident_id, &repeat).await?;
    Ok(Ingested {
        outcome: if recurrence {
            IngestOutcome::Recurrence
        } else {
            IngestOutcome::Repeat
        },
        incident_id: Some(m.incident_id.clone()),
        status: Some(m.status),
        fingerprint: alert.fingerprint(),
        state: AlertState::Firing,
        // Only an incident not yet triaged may be one whose first start failed.
        start: m.status == IncidentStatus::Processing && !recurrence,
    })
}

fn lifecycle_events(inc: &Incident) -> usize {
    inc.timeline
        .iter()
        .filter(|e| e.key.starts_with("source:"))
        .count()
}

fn source_name(alert: &Alert) -> String {
    alert
        .origin
        .as_ref()
        .map(|o| o.source.clone())
        .unwrap_or_else(|| "generic".into())
}

/// The source says the problem is over: recorded, and the incident's waiting plan or page
/// told. Returns the incident's status afterwards.
async fn recovered(
    deps: &Deps,
    callbacks: &dyn TaskCallbacks,
    m: &FingerprintMatch,
    alert: &Alert,
) -> Result<IncidentStatus, StageError> {
    let now = deps.clock.now();
    let at = alert.timestamp;
    let source = source_name(alert);
    let stored = mutate(deps, &m.incident_id, |inc| {
        if inc.source_recovered_at.is_some_and(|r| r >= at) {
            return Ok(false);
        }
        inc.source_recovered_at = Some(at);
        if lifecycle_events(inc) < MAX_LIFECYCLE_EVENTS {
            inc.record(
                now,
                format!("source:recovered:{}", at.timestamp_millis()),
                "source",
                format!("source recovered at {} ({source})", format_time(at)),
            );
        }
        Ok(true)
    })
    .await?;
    let news = format!(
        "the source ({source}) reports the alert recovered at {}",
        format_time(at)
    );
    match stored.status {
        IncidentStatus::AwaitingApproval => {
            if let Err(e) = deps.notifier.incident_updated(&stored, &news).await {
                tracing::warn!(incident = %stored.incident_id, error = %e, "could not tell the on-call channel about the recovery");
            }
            if deps.config.auto_cancel_on_recovery {
                end_wait_on_recovery(deps, callbacks, &stored.incident_id, &source, at).await?;
            }
        }
        IncidentStatus::Escalated if stored.escalation.is_some() => {
            // The person paged can go back to sleep; best effort, the record is what counts.
            if let Err(e) = deps.pager.resolve(&stored).await {
                tracing::warn!(incident = %stored.incident_id, error = %e, "page not resolved after the source recovered");
            }
        }
        _ => {}
    }
    Ok(stored.status)
}

/// Ends a plan's approval wait because the source recovered (`AUTO_CANCEL_ON_RECOVERY`): the
/// decision `recovered` is recorded and sent to the waiting task, so the state machine goes
/// on to the post-mortem (outcome `recovered`). An approval already decided is left alone.
async fn end_wait_on_recovery(
    deps: &Deps,
    callbacks: &dyn TaskCallbacks,
    id: &IncidentId,
    source: &str,
    at: Timestamp,
) -> Result<(), StageError> {
    let request = DecisionRequest {
        approval_id: None,
        decision: Decision::Recovered,
        approver: format!("{source} (source recovered)"),
        channel: "source".into(),
        comment: Some(format!(
            "the source reported recovery at {}; AUTO_CANCEL_ON_RECOVERY ended the wait",
            format_time(at)
        )),
        identity: Identity::Unstated,
    };
    match decide(deps, callbacks, id, request).await {
        Ok(_) => Ok(()),
        // A person decided first, or the window closed: their outcome stands.
        Err(DecideError::AlreadyDecided(_))
        | Err(DecideError::AlreadyApproved(_))
        | Err(DecideError::NotAwaiting(_))
        | Err(DecideError::Expired(_)) => Ok(()),
        Err(DecideError::NotFound(id)) => Err(StageError::IncidentNotFound(id)),
        Err(DecideError::Unavailable(e)) => Err(StageError::StoreUnavailable(e)),
    }
}

/// An acknowledgement or a no-data transition, recorded on the incident.
async fn note(
    deps: &Deps,
    m: &FingerprintMatch,
    alert: &Alert,
) -> Result<IngestOutcome, StageError> {
    let now = deps.clock.now();
    let at = alert.timestamp;
    let source = source_name(alert);
    let state = alert.state();
    mutate(deps, &m.incident_id, |inc| {
        if state == AlertState::Acknowledged {
            if inc.source_acknowledged_at.is_some() {
                return Ok(false);
            }
            inc.source_acknowledged_at = Some(at);
        }
        if lifecycle_events(inc) >= MAX_LIFECYCLE_EVENTS {
            return Ok(state == AlertState::Acknowledged);
        }
        let what = match state {
            AlertState::Acknowledged => "acknowledged at the source",
            _ => "the source reports no data",
        };
        inc.record(
            now,
            format!("source:{}:{}", state.as_str(), at.timestamp_millis()),
            "source",
            format!("{what} at {} ({source})", format_time(at)),
        );
        Ok(true)
    })
    .await?;
    Ok(match state {
        AlertState::Acknowledged => IngestOutcome::Acknowledged,
        _ => IngestOutcome::Noted,
    })
}

/// Why an alert did not become a running pipeline.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestFailure {
    /// Nothing was recorded: the sender should send the alert again.
    #[error("the alert could not be recorded: {0}")]
    NotRecorded(StageError),
    /// The incident is recorded, its pipeline is not running; sending the alert again retries
    /// the start.
    #[error("incident {incident_id} was recorded but its pipeline did not start: {problem}")]
    NotStarted {
        incident_id: IncidentId,
        problem: String,
    },
}

/// What every door (the webhook, the `ingest` Lambda, the local pipeline) does with an alert:
/// [`ingest`] it, then start the incident's pipeline when it opened one (or repeats on one
/// not yet triaged: starting is idempotent, as the execution is named after the incident, and
/// that is what heals an incident whose first start failed).
pub async fn open_and_start(
    deps: &Deps,
    starter: &dyn PipelineStarter,
    callbacks: &dyn TaskCallbacks,
    alert: Alert,
) -> Result<Ingested, IngestFailure> {
    let ingested = ingest_with(deps, callbacks, alert)
        .await
        .map_err(IngestFailure::NotRecorded)?;
    if let (true, Some(id)) = (ingested.start, &ingested.incident_id) {
        if let Err(e) = starter.start(id).await {
            tracing::error!(incident = %id, error = %e, "pipeline did not start");
            return Err(IngestFailure::NotStarted {
                incident_id: id.clone(),
                problem: e.0,
            });
        }
    }
    Ok(ingested)
}

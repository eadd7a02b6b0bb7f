//! Ingest, before the state machine starts: an alert opens an incident, or attaches to the
//! open incident with the same fingerprint; then the incident's pipeline is started.

use super::*;

/// What became of an incoming alert.
#[derive(Debug, Clone)]
pub enum Ingested {
    /// A new incident: its pipeline must be started.
    Opened(Incident),
    /// A repeat of an alert whose incident is still open: attached to it.
    Attached(Incident),
}

impl Ingested {
    pub fn incident(&self) -> &Incident {
        match self {
            Ingested::Opened(i) | Ingested::Attached(i) => i,
        }
    }

    pub fn is_repeat(&self) -> bool {
        matches!(self, Ingested::Attached(_))
    }
}

/// Repeats kept on the incident; the count goes on past this.
const MAX_REPEAT_ALERTS: usize = 50;

/// Why a repeat could not be attached to the incident that had its fingerprint.
enum Attach {
    /// It closed between our create and our attach: a new incident must open.
    Closed,
    Failed(StageError),
}

impl From<StageError> for Attach {
    fn from(e: StageError) -> Self {
        Attach::Failed(e)
    }
}

/// Opens an incident for the alert, or attaches the alert to the open incident with the same
/// fingerprint. Does not start anything: see [`open_and_start`].
pub async fn ingest(deps: &Deps, alert: Alert) -> Result<Ingested, StageError> {
    for _ in 0..4 {
        let now = deps.clock.now();
        let incident = Incident::open(IncidentId::generate(), alert.clone(), now);
        let existing = match deps.store.create_incident(&incident).await {
            Ok(()) => {
                announce(
                    deps,
                    lifecycle::INCIDENT_OPENED,
                    &incident,
                    serde_json::json!({}),
                )
                .await;
                return Ok(Ingested::Opened(incident));
            }
            Err(StoreError::Duplicate(existing)) => existing,
            Err(e) => return Err(e.into()),
        };
        let repeat = alert.clone();
        let attached = mutate_or(deps, &existing, |inc| {
            if inc.status.is_final() {
                return Err(Attach::Closed);
            }
            inc.repeat_count += 1;
            let n = inc.repeat_count;
            // The record stays bounded (one DynamoDB item): past the cap only the count grows.
            if inc.repeat_alerts.len() < MAX_REPEAT_ALERTS {
                inc.repeat_alerts.push(repeat.clone());
                inc.record(
                    now,
                    format!("repeat:{n}"),
                    "ingest",
                    format!("the alert fired again ({n} repeat(s))"),
                );
            }
            Ok(true)
        })
        .await;
        match attached {
            Ok(inc) => return Ok(Ingested::Attached(inc)),
            Err(Attach::Closed) | Err(Attach::Failed(StageError::IncidentNotFound(_))) => continue,
            Err(Attach::Failed(e)) => return Err(e),
        }
    }
    Err(StageError::StoreConflict(
        "could not open or attach the incident".into(),
    ))
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
/// [`ingest`] it, then start the incident's pipeline. A repeat starts it too: starting is
/// idempotent (the execution is named after the incident), and that is what heals an incident
/// whose first start failed.
pub async fn open_and_start(
    deps: &Deps,
    starter: &dyn PipelineStarter,
    alert: Alert,
) -> Result<Ingested, IngestFailure> {
    let ingested = ingest(deps, alert)
        .await
        .map_err(IngestFailure::NotRecorded)?;
    let id = &ingested.incident().incident_id;
    if let Err(e) = starter.start(id).await {
        tracing::error!(incident = %id, error = %e, "pipeline did not start");
        return Err(IngestFailure::NotStarted {
            incident_id: id.clone(),
            problem: e.0,
        });
    }
    Ok(ingested)
}

//! The pipeline's stages as plain async functions over ports, one file per state of
//! `statemachine.asl.json`. Each is safe to run twice with the same input (a retried Lambda):
//! it reads what is already recorded before acting. This module keeps what they share: their
//! dependencies ([`Deps`]), the store helpers and the error type the state machine matches.

mod error;
mod escalate;
mod gather_context;
mod ingest;
mod plan;
mod postmortem;
mod rca;
mod remediate;
mod request_approval;
mod triage;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::analyst::OfflineAnalyst;
use crate::audit::{AuditDraft, AuditEntry, AuditEvent};
use crate::config::PipelineConfig;
use crate::domain::*;
use crate::executor::DryRunExecutor;
use crate::notify::{LogNotifier, LogPager};
use crate::ports::*;
use crate::usage::LlmCall;

pub use error::{StageError, StageErrorKind};
pub use escalate::{escalate, EscalateInput, EscalateOutput, EscalationInput};
pub use gather_context::{evidence_window, gather_context, services_to_investigate, GatherOutput};
pub use ingest::{ingest, ingest_with, open_and_start, IngestFailure, IngestOutcome, Ingested};
pub use plan::{plan, PlanOutput};
pub use postmortem::{postmortem, PostMortemOutput};
pub use rca::{rca, RcaOutput};
pub use remediate::{remediate, RemediateInput, RemediateOutput};
pub use request_approval::{
    decide, reconcile_decisions, request_approval, ApprovalInput, ApprovalOutput, DecideError,
    DecisionRequest, Reconciled,
};
pub use triage::{triage, TriageOutput};
pub use verify::{verify, VerifyInput, VerifyOutput};

/// Everything a stage may touch. Built once per process (per Lambda cold start), with
/// [`Deps::builder`].
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn IncidentStore>,
    pub analyst: Arc<dyn Analyst>,
    pub evidence: EvidenceSources,
    pub notifier: Arc<dyn Notifier>,
    pub pager: Arc<dyn Pager>,
    pub executor: Arc<dyn Executor>,
    pub clock: Arc<dyn Clock>,
    pub config: PipelineConfig,
    /// Per evidence source, so one slow backend cannot stall the investigation.
    pub source_timeout: Duration,
    /// Lifecycle events for other systems to subscribe to (EventBridge); `NoEvents` locally.
    pub events: Arc<dyn EventPublisher>,
    /// Slack's Web API, for the approval buttons' endpoint (user groups, private replies).
    pub slack: Option<Arc<dyn SlackWorkspace>>,
}

/// Each evidence source gets this long before the stage moves on without it.
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(20);

impl Deps {
    /// Everything but the store at its safe default: the offline analyst, no evidence
    /// sources, notifications and pages as log lines, the dry-run executor, the system clock,
    /// the default thresholds and policy, and no lifecycle events.
    pub fn builder(store: Arc<dyn IncidentStore>) -> DepsBuilder {
        DepsBuilder(Deps {
            store,
            analyst: Arc::new(OfflineAnalyst::default()),
            evidence: EvidenceSources::default(),
            notifier: Arc::new(LogNotifier),
            pager: Arc::new(LogPager),
            executor: Arc::new(DryRunExecutor),
            clock: Arc::new(SystemClock),
            config: PipelineConfig::default(),
            source_timeout: DEFAULT_SOURCE_TIMEOUT,
            events: Arc::new(NoEvents),
            slack: None,
        })
    }
}

/// Builds [`Deps`]; see [`Deps::builder`] for the defaults.
pub struct DepsBuilder(Deps);

impl DepsBuilder {
    pub fn analyst(mut self, analyst: Arc<dyn Analyst>) -> Self {
        self.0.analyst = analyst;
        self
    }
    pub fn evidence(mut self, evidence: EvidenceSources) -> Self {
        self.0.evidence = evidence;
        self
    }
    /// The configured integrations: their evidence, and their notifier and pager where set
    /// (the defaults stay for what is not configured).
    pub fn integrations(mut self, integrations: Integrations) -> Self {
        self.0.evidence = integrations.evidence;
        if let Some(n) = integrations.notifier {
            self.0.notifier = n;
        }
        if let Some(p) = integrations.pager {
            self.0.pager = p;
        }
        if integrations.slack.is_some() {
            self.0.slack = integrations.slack;
        }
        self
    }
    pub fn slack(mut self, slack: Arc<dyn SlackWorkspace>) -> Self {
        self.0.slack = Some(slack);
        self
    }
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.0.notifier = notifier;
        self
    }
    pub fn pager(mut self, pager: Arc<dyn Pager>) -> Self {
        self.0.pager = pager;
        self
    }
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.0.executor = executor;
        self
    }
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.0.clock = clock;
        self
    }
    pub fn config(mut self, config: PipelineConfig) -> Self {
        self.0.config = config;
        self
    }
    pub fn source_timeout(mut self, timeout: Duration) -> Self {
        self.0.source_timeout = timeout;
        self
    }
    pub fn events(mut self, events: Arc<dyn EventPublisher>) -> Self {
        self.0.events = events;
        self
    }
    pub fn build(self) -> Deps {
        self.0
    }
}

/// Lifecycle event names (EventBridge `detail-type`).
pub mod lifecycle {
    pub const INCIDENT_OPENED: &str = "IncidentOpened";
    pub const PLAN_AWAITING_APPROVAL: &str = "PlanAwaitingApproval";
    pub const INCIDENT_ESCALATED: &str = "IncidentEscalated";
    pub const REMEDIATION_APPLIED: &str = "RemediationApplied";
    pub const POSTMORTEM_PUBLISHED: &str = "PostMortemPublished";
    pub const RECOVERY_VERIFIED: &str = "RecoveryVerified";
}

/// Publishes a lifecycle event. Subscribers are told, not asked: a failure is logged and
/// never fails the stage (EventBridge consumers must tolerate repeats anyway).
pub(crate) async fn announce(
    deps: &Deps,
    detail_type: &str,
    incident: &Incident,
    extra: serde_json::Value,
) {
    let mut detail = serde_json::json!({
        "incident_id": incident.incident_id,
        "title": incident.title,
        "status": incident.status,
        "severity": incident.severity,
        "service": incident.service,
    });
    if let (Some(d), serde_json::Value::Object(e)) = (detail.as_object_mut(), extra) {
        d.extend(e);
    }
    if let Err(e) = deps.events.publish(detail_type, detail).await {
        tracing::warn!(incident = %incident.incident_id, detail_type, error = %e, "lifecycle event not published");
    }
}

/// Calls kept on the record; a runaway retry loop cannot grow it without bound.
const MAX_LLM_CALLS: usize = 200;

/// Stores the model calls a stage made, even when the analyst then failed: failed calls cost
/// money and explain the fallback.
pub(crate) async fn keep_calls(
    deps: &Deps,
    id: &IncidentId,
    calls: Vec<LlmCall>,
) -> Result<(), StageError> {
    if calls.is_empty() {
        return Ok(());
    }
    let mut kept = 0;
    mutate(deps, id, |inc| {
        let room = MAX_LLM_CALLS.saturating_sub(inc.llm_calls.len());
        kept = calls.len().min(room);
        inc.llm_calls.extend(calls.iter().take(room).cloned());
        Ok(true)
    })
    .await?;
    // A model call's entry only warns when it cannot be written: the call has happened and
    // changed nothing, and failing the stage would only make it call the model again.
    for (i, call) in calls.iter().take(kept).enumerate() {
        let draft = AuditDraft {
            key: format!(
                "model:{}:{}:{i}",
                call.stage,
                call.at.timestamp_nanos_opt().unwrap_or_default()
            ),
            at: call.at,
            actor: format!("{} {}", call.provider, call.model),
            event: AuditEvent::ModelCall {
                stage: call.stage.clone(),
                provider: call.provider.clone(),
                model: call.model.clone(),
                input_tokens: call.input_tokens,
                output_tokens: call.output_tokens,
                latency_ms: call.latency_ms,
                outcome: call.outcome.clone(),
            },
        };
        audit_or_warn(deps, id, draft).await;
    }
    Ok(())
}

/// Appends to the incident's audit log, signed with the configured key.
pub(crate) async fn audit(
    deps: &Deps,
    id: &IncidentId,
    draft: AuditDraft,
) -> Result<AuditEntry, StoreError> {
    crate::audit::append(
        deps.store.as_ref(),
        deps.config.audit_key.as_ref(),
        id,
        draft,
    )
    .await
}

/// [`audit`] for what must not wait on the log: a page, a rollback, a model call already
/// made. The failure is logged and the entry is written by the next catch-up
/// ([`audit_catch_up`]) when the event is on the record.
pub(crate) async fn audit_or_warn(deps: &Deps, id: &IncidentId, draft: AuditDraft) {
    let key = draft.key.clone();
    if let Err(e) = audit(deps, id, draft).await {
        tracing::warn!(incident = %id, entry = %key, error = %e, "audit entry not written yet");
    }
}

/// Writes any entry the record shows happened but the log lacks (an append that failed, a
/// crash between the record and the log): the decisions, every finished step and the
/// escalation. Run by PostMortem, which every path ends with.
pub(crate) async fn audit_catch_up(deps: &Deps, incident: &Incident) {
    let id = &incident.incident_id;
    for draft in request_approval::decision_drafts(incident) {
        audit_or_warn(deps, id, draft).await;
    }
    remediate::audit_steps(deps, id).await;
    if let Some(e) = &incident.escalation {
        audit_or_warn(deps, id, escalate::escalation_draft(e)).await;
    }
}

pub(crate) async fn load(deps: &Deps, id: &IncidentId) -> Result<Incident, StageError> {
    deps.store
        .get_incident(id)
        .await?
        .ok_or_else(|| StageError::IncidentNotFound(id.to_string()))
}

/// Read-modify-write with optimistic concurrency: re-reads and re-applies `change` when
/// someone else wrote in between. `change` returns false when there is nothing to write.
pub(crate) async fn mutate<F>(
    deps: &Deps,
    id: &IncidentId,
    change: F,
) -> Result<Incident, StageError>
where
    F: FnMut(&mut Incident) -> Result<bool, StageError>,
{
    mutate_or(deps, id, change).await
}

/// [`mutate`], also saying whether this call made the change (`false`: it was already made,
/// by an earlier run of the same stage or by another writer).
pub(crate) async fn mutate_first<F>(
    deps: &Deps,
    id: &IncidentId,
    mut change: F,
) -> Result<(Incident, bool), StageError>
where
    F: FnMut(&mut Incident) -> Result<bool, StageError>,
{
    let mut changed = false;
    let stored = mutate_or(deps, id, |inc| {
        changed = change(inc)?;
        Ok::<bool, StageError>(changed)
    })
    .await?;
    Ok((stored, changed))
}

/// Tells the on-call channel (a reply in the approval thread, and the message edited to
/// show where the incident stands). Callers tell only on the write that first recorded the
/// news, so a retried stage does not say it twice; a channel that is down never fails it.
pub(crate) async fn tell(deps: &Deps, incident: &Incident, news: &str) {
    if let Err(e) = deps.notifier.incident_updated(incident, news).await {
        tracing::warn!(incident = %incident.incident_id, error = %e, "could not tell the on-call channel");
    }
}

/// [`mutate`] whose `change` may refuse with its own typed outcome (an approval already
/// decided, an incident already closed), returned to the caller as it is.
pub(crate) async fn mutate_or<F, E>(
    deps: &Deps,
    id: &IncidentId,
    mut change: F,
) -> Result<Incident, E>
where
    F: FnMut(&mut Incident) -> Result<bool, E>,
    E: From<StageError>,
{
    for _ in 0..8 {
        let mut incident = load(deps, id).await?;
        if !change(&mut incident)? {
            return Ok(incident);
        }
        let now = deps.clock.now();
        incident.updated_at = now;
        // The reopen cool-down counts from the first write of a final status.
        if incident.status.is_final() && incident.closed_at.is_none() {
            incident.closed_at = Some(now);
        }
        match deps.store.update_incident(&incident).await {
            Ok(stored) => return Ok(stored),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(StageError::from(e).into()),
        }
    }
    Err(StageError::StoreConflict(format!("incident {id} kept changing under us")).into())
}

/// The input of the stages that act on the incident as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncidentRef {
    pub incident_id: IncidentId,
}

/// The input of the investigation stages (GatherContext, Rca): which attempt of the
/// confidence-retry loop this is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptInput {
    pub incident_id: IncidentId,
    pub attempt: u32,
}

/// A model's confidence as a probability: anything else (NaN, 7, -1) is clamped.
pub(crate) fn clamp_confidence(c: f64) -> f64 {
    if c.is_finite() {
        c.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

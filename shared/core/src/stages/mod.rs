//! The pipeline's stages as plain async functions over ports. Each is safe to run twice with
//! the same input (a retried Lambda): it reads what is already recorded before acting.

mod approval;
mod evidence;
mod remediate;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::analysis::OfflineAnalyst;
use crate::config::PipelineConfig;
use crate::domain::*;
use crate::policy;
use crate::ports::*;
use crate::usage::{self, LlmCall};

/// Calls kept on the record; a runaway retry loop cannot grow it without bound.
const MAX_LLM_CALLS: usize = 200;

/// Stores the model calls a stage made, even when the analyst then failed: failed calls cost
/// money and explain the fallback.
async fn keep_calls(deps: &Deps, id: &IncidentId, calls: Vec<LlmCall>) -> Result<(), StageError> {
    if calls.is_empty() {
        return Ok(());
    }
    mutate(deps, id, |inc| {
        let room = MAX_LLM_CALLS.saturating_sub(inc.llm_calls.len());
        inc.llm_calls.extend(calls.iter().take(room).cloned());
        Ok(true)
    })
    .await?;
    Ok(())
}

pub use approval::{
    decide, request_approval, ApprovalInput, ApprovalOutput, DecideError, DecisionRequest,
};
pub use evidence::{evidence_window, gather_context, services_to_investigate, GatherOutput};
pub use remediate::{remediate, RemediateOutput};

/// Everything a stage may touch. Built once per process (per Lambda cold start).
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn IncidentStore>,
    pub analyst: Arc<dyn Analyst>,
    pub logs: Vec<Arc<dyn LogSource>>,
    pub metrics: Vec<Arc<dyn MetricSource>>,
    pub deployments: Vec<Arc<dyn DeploymentSource>>,
    pub topology: Vec<Arc<dyn TopologySource>>,
    pub notifier: Arc<dyn Notifier>,
    pub pager: Arc<dyn Pager>,
    pub executor: Arc<dyn Executor>,
    pub clock: Arc<dyn Clock>,
    pub config: PipelineConfig,
    /// Per evidence source, so one slow backend cannot stall the investigation.
    pub source_timeout: std::time::Duration,
    /// Lifecycle events for other systems to subscribe to (EventBridge); `NoEvents` locally.
    pub events: Arc<dyn EventPublisher>,
}

/// Lifecycle event names (EventBridge `detail-type`).
pub mod lifecycle {
    pub const INCIDENT_OPENED: &str = "IncidentOpened";
    pub const PLAN_AWAITING_APPROVAL: &str = "PlanAwaitingApproval";
    pub const INCIDENT_ESCALATED: &str = "IncidentEscalated";
    pub const REMEDIATION_APPLIED: &str = "RemediationApplied";
    pub const POSTMORTEM_PUBLISHED: &str = "PostMortemPublished";
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

/// A stage failure, named so the state machine's `Retry`/`Catch` can match it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct StageError {
    pub error_type: &'static str,
    pub message: String,
}

impl StageError {
    pub fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        StageError {
            error_type,
            message: message.into(),
        }
    }
    pub fn not_found(id: &IncidentId) -> Self {
        StageError::new("IncidentNotFound", format!("incident {id} not found"))
    }
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::NotFound(_) => "IncidentNotFound",
            StoreError::Conflict(_) => "StoreConflict",
            StoreError::Corrupt(_) => "StoreCorrupt",
            StoreError::AlreadyExists(_) | StoreError::Duplicate(_) => "StoreConflict",
            StoreError::Unavailable(_) => "StoreUnavailable",
        };
        StageError::new(kind, e.to_string())
    }
}

impl From<AnalystError> for StageError {
    fn from(e: AnalystError) -> Self {
        StageError::new("AnalystFailed", e.to_string())
    }
}

pub(crate) async fn load(deps: &Deps, id: &IncidentId) -> Result<Incident, StageError> {
    deps.store
        .get_incident(id)
        .await?
        .ok_or_else(|| StageError::not_found(id))
}

/// Read-modify-write with optimistic concurrency: re-reads and re-applies `change` when
/// someone else wrote in between. `change` returns false when there is nothing to write.
pub(crate) async fn mutate<F>(
    deps: &Deps,
    id: &IncidentId,
    mut change: F,
) -> Result<Incident, StageError>
where
    F: FnMut(&mut Incident) -> Result<bool, StageError>,
{
    for _ in 0..8 {
        let mut incident = load(deps, id).await?;
        if !change(&mut incident)? {
            return Ok(incident);
        }
        incident.updated_at = deps.clock.now();
        match deps.store.update_incident(&incident).await {
            Ok(stored) => return Ok(stored),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StageError::new(
        "StoreConflict",
        format!("incident {id} kept changing under us"),
    ))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncidentRef {
    pub incident_id: IncidentId,
}

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
}

/// Repeats kept on the incident; the count goes on past this.
const MAX_REPEAT_ALERTS: usize = 50;

/// The `ingest` step, before the state machine starts: opens an incident for the alert, or
/// attaches the alert to the open incident with the same fingerprint.
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
        let attached = mutate(deps, &existing, |inc| {
            if inc.status.is_final() {
                return Err(StageError::new("IncidentClosed", ""));
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
            // It closed between our create and our attach: open a new one.
            Err(e) if e.error_type == "IncidentClosed" || e.error_type == "IncidentNotFound" => {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Err(StageError::new(
        "StoreConflict",
        "could not open or attach the incident",
    ))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriageOutput {
    pub severity: Severity,
    pub approval_timeout_seconds: u64,
    pub affected_services: Vec<String>,
    pub summary: String,
}

pub async fn triage(deps: &Deps, input: &IncidentRef) -> Result<TriageOutput, StageError> {
    let incident = load(deps, &input.incident_id).await?;
    let triage = match incident.triage.clone() {
        Some(t) => t,
        None => {
            let (t, calls) = usage::collect(deps.analyst.triage(&incident.alert)).await;
            keep_calls(deps, &input.incident_id, calls).await?;
            let mut t = t?;
            sanitize_triage(&mut t, &incident.alert);
            t
        }
    };
    let timeout = deps.config.approval_timeout_seconds(triage.severity);
    let now = deps.clock.now();
    let recorded = triage.clone();
    mutate(deps, &input.incident_id, |inc| {
        if inc.triage.is_some() {
            return Ok(false);
        }
        inc.severity = Some(recorded.severity);
        inc.approval_timeout_seconds = timeout;
        inc.record(
            now,
            "triage",
            "triage",
            format!(
                "triaged {} (confidence {:.2}): {}; affected: {}",
                recorded.severity,
                recorded.confidence,
                recorded.blast_radius,
                recorded.affected_services.join(", ")
            ),
        );
        inc.triage = Some(recorded.clone());
        Ok(true)
    })
    .await?;
    Ok(TriageOutput {
        severity: triage.severity,
        approval_timeout_seconds: timeout,
        summary: format!(
            "severity {} · affected {}",
            triage.severity,
            triage.affected_services.join(", ")
        ),
        affected_services: triage.affected_services,
    })
}

fn clamp_confidence(c: f64) -> f64 {
    if c.is_finite() {
        c.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn sanitize_triage(t: &mut TriageResult, alert: &Alert) {
    t.confidence = clamp_confidence(t.confidence);
    // No analyst may rate an incident less severe than the rules do: text in the alert (or a
    // model persuaded by it) can raise severity, never lower it.
    let floor = crate::analysis::triage(alert).severity;
    if t.severity > floor {
        t.reasoning.push_str(&format!(
            " [severity raised from {} to {} by the severity rules]",
            t.severity, floor
        ));
        t.severity = floor;
    }
    if let Some(s) = &alert.service {
        if !t.affected_services.contains(s) {
            t.affected_services.insert(0, s.clone());
        }
    }
    t.affected_services.retain(|s| !s.trim().is_empty());
    t.affected_services.dedup();
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptInput {
    pub incident_id: IncidentId,
    pub attempt: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RcaOutput {
    pub attempt: u32,
    pub confidence: f64,
    /// Confidence cleared `RCA_CONFIDENCE_THRESHOLD`.
    pub confident: bool,
    /// Not confident and no attempts left (`RCA_MAX_ATTEMPTS`).
    pub exhausted: bool,
    pub root_cause_service: String,
    pub summary: String,
}

pub async fn rca(deps: &Deps, input: &AttemptInput) -> Result<RcaOutput, StageError> {
    let incident = load(deps, &input.incident_id).await?;
    let attempts = deps.store.attempts(&input.incident_id).await?;
    let Some(mut attempt) = attempts.into_iter().find(|a| a.attempt == input.attempt) else {
        return Err(StageError::new(
            "ContextMissing",
            format!("no evidence gathered for attempt {}", input.attempt),
        ));
    };
    let hypothesis = match attempt.hypothesis.clone() {
        Some(h) => h,
        None => {
            let triage = incident.triage.clone().ok_or_else(|| {
                StageError::new("InvalidInput", "rca before triage: incident has no triage")
            })?;
            let (h, calls) =
                usage::collect(deps.analyst.rca(&incident.alert, &triage, &attempt.context)).await;
            keep_calls(deps, &input.incident_id, calls).await?;
            let mut h = h?;
            sanitize_hypothesis(&mut h, &incident, &attempt.context);
            attempt.hypothesis = Some(h.clone());
            deps.store.put_attempt(&input.incident_id, &attempt).await?;
            h
        }
    };
    let threshold = deps.config.rca_confidence_threshold;
    let confident = hypothesis.confidence >= threshold;
    let exhausted = !confident && input.attempt >= deps.config.rca_max_attempts;
    let now = deps.clock.now();
    let n = input.attempt;
    let h = hypothesis.clone();
    mutate(deps, &input.incident_id, |inc| {
        let key = format!("rca:{n}");
        if inc.has_event(&key) {
            return Ok(false);
        }
        inc.rca_attempts = inc.rca_attempts.max(n);
        let verdict = if confident {
            "confident".to_string()
        } else if exhausted {
            "below threshold, no attempts left".to_string()
        } else {
            format!("below threshold {threshold:.2}, widening the evidence window")
        };
        inc.record(
            now,
            key,
            "rca",
            format!(
                "attempt {n}: {} (confidence {:.2}, {verdict})",
                h.primary_cause, h.confidence
            ),
        );
        inc.hypothesis = Some(h.clone());
        Ok(true)
    })
    .await?;
    Ok(RcaOutput {
        attempt: n,
        confidence: hypothesis.confidence,
        confident,
        exhausted,
        summary: format!(
            "{} · confidence {:.2}{}",
            hypothesis.root_cause_service,
            hypothesis.confidence,
            if confident { "" } else { " (below threshold)" }
        ),
        root_cause_service: hypothesis.root_cause_service,
    })
}

/// An analyst may name a service nobody has heard of; the record must not pretend otherwise.
fn sanitize_hypothesis(h: &mut RootCauseHypothesis, incident: &Incident, ctx: &ContextBundle) {
    h.confidence = clamp_confidence(h.confidence);
    let known = |s: &str| {
        incident.service.as_deref() == Some(s)
            || ctx.services.iter().any(|x| x == s)
            || ctx.topology.iter().any(|e| e.from == s || e.to == s)
            || ctx.anomalies.iter().any(|a| a.service == s)
            || ctx.logs.iter().any(|l| l.service == s)
            || ctx.deployments.iter().any(|d| d.service == s)
    };
    if !known(&h.root_cause_service) {
        h.contributing_factors.push(format!(
            "the analyst named `{}`, which appears nowhere in the evidence; confidence capped",
            h.root_cause_service
        ));
        h.confidence = h.confidence.min(0.2);
    }
    for c in h.candidates.iter_mut() {
        c.score = if c.score.is_finite() { c.score } else { 0.0 };
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanOutput {
    pub needs_approval: bool,
    pub blocked: bool,
    pub reversible: bool,
    pub steps: usize,
    pub summary: String,
}

pub async fn plan(deps: &Deps, input: &IncidentRef) -> Result<PlanOutput, StageError> {
    let incident = load(deps, &input.incident_id).await?;
    let plan = match incident.plan.clone() {
        Some(p) => p,
        None => {
            let hypothesis = incident.hypothesis.clone().ok_or_else(|| {
                StageError::new(
                    "InvalidInput",
                    "plan before rca: incident has no hypothesis",
                )
            })?;
            let attempts = deps.store.attempts(&input.incident_id).await?;
            let context = attempts
                .into_iter()
                .next_back()
                .map(|a| a.context)
                .unwrap_or_default();
            let (proposed, calls) =
                usage::collect(deps.analyst.plan(&incident.alert, &hypothesis, &context)).await;
            keep_calls(deps, &input.incident_id, calls).await?;
            let proposed = proposed?;
            // Whatever the analyst said about safety is recomputed here.
            policy::enforce(
                proposed,
                &deps.config.policy,
                deps.config.auto_approve_max_risk,
            )
        }
    };
    let now = deps.clock.now();
    let p = plan.clone();
    mutate(deps, &input.incident_id, |inc| {
        if inc.plan.is_some() {
            return Ok(false);
        }
        let verdict = if p.steps.is_empty() {
            "no automated action fits; a person must act"
        } else if p.blocked_by_policy {
            "blocked by the remediation policy"
        } else if p.requires_human_approval {
            "needs human approval"
        } else {
            "allowed to run without approval by policy"
        };
        inc.record(
            now,
            "plan",
            "plan",
            format!(
                "plan: {} step(s), {}, {verdict}",
                p.steps.len(),
                if p.reversible {
                    "reversible"
                } else {
                    "irreversible"
                }
            ),
        );
        inc.plan = Some(p.clone());
        Ok(true)
    })
    .await?;
    Ok(PlanOutput {
        needs_approval: plan.requires_human_approval,
        blocked: plan.blocked_by_policy,
        reversible: plan.reversible,
        steps: plan.steps.len(),
        summary: format!(
            "{} step(s){}{}",
            plan.steps.len(),
            if plan.blocked_by_policy {
                " · BLOCKED by policy"
            } else {
                ""
            },
            if plan.requires_human_approval {
                " · approval required"
            } else {
                ""
            }
        ),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscalationInput {
    pub reason: EscalationReason,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscalateInput {
    pub incident_id: IncidentId,
    pub escalation: EscalationInput,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscalateOutput {
    pub reason: EscalationReason,
    pub paged_via: String,
    pub summary: String,
}

pub async fn escalate(deps: &Deps, input: &EscalateInput) -> Result<EscalateOutput, StageError> {
    let incident = load(deps, &input.incident_id).await?;
    if let Some(e) = &incident.escalation {
        return Ok(EscalateOutput {
            reason: e.reason,
            paged_via: e.paged_via.clone(),
            summary: format!("already escalated ({})", e.reason.as_str()),
        });
    }
    let reason = input.escalation.reason;
    let mut detail = reason.describe().to_string();
    if let Some(err) = &input.escalation.error {
        detail.push_str(&format!(": {err}"));
        if let Some(cause) = input.escalation.cause.as_deref().filter(|c| !c.is_empty()) {
            let cause: String = cause.chars().take(500).collect();
            detail.push_str(&format!(" ({cause})"));
        }
    }
    if reason == EscalationReason::NoRemediation {
        if let Some(p) = &incident.plan {
            detail.push_str(&format!("; guidance: {}", p.summary));
        }
    }
    if reason == EscalationReason::LowConfidence {
        if let Some(h) = &incident.hypothesis {
            detail.push_str(&format!(
                "; best guess {} at confidence {:.2}",
                h.root_cause_service, h.confidence
            ));
        }
    }
    let escalation = Escalation {
        reason,
        detail,
        escalated_at: deps.clock.now(),
        paged_via: deps.pager.name(),
    };
    // Page before recording: a failed page is retried by the state machine, and the pager
    // deduplicates by incident id so a retry after a lost answer is still one page.
    deps.pager
        .page(&incident, &escalation)
        .await
        .map_err(|e| StageError::new("PagerFailed", e.to_string()))?;
    let now = deps.clock.now();
    let esc = escalation.clone();
    let stored = mutate(deps, &input.incident_id, |inc| {
        if inc.escalation.is_some() {
            return Ok(false);
        }
        inc.status = IncidentStatus::Escalated;
        inc.record(
            now,
            "escalate",
            "escalate",
            format!(
                "escalated ({}): {}; paged via {}",
                esc.reason.as_str(),
                esc.detail,
                esc.paged_via
            ),
        );
        inc.escalation = Some(esc.clone());
        Ok(true)
    })
    .await?;
    let _ = deps
        .notifier
        .incident_updated(&stored, &format!("escalated: {}", escalation.detail))
        .await;
    announce(
        deps,
        lifecycle::INCIDENT_ESCALATED,
        &stored,
        serde_json::json!({"reason": reason, "detail": escalation.detail}),
    )
    .await;
    Ok(EscalateOutput {
        reason,
        paged_via: escalation.paged_via.clone(),
        summary: format!("{} · paged via {}", reason.as_str(), escalation.paged_via),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostMortemOutput {
    pub outcome: PostMortemOutcome,
    pub duration_seconds: i64,
    pub summary: String,
}

pub async fn postmortem(deps: &Deps, input: &IncidentRef) -> Result<PostMortemOutput, StageError> {
    if let Some(pm) = deps.store.postmortem(&input.incident_id).await? {
        return Ok(PostMortemOutput {
            outcome: pm.outcome,
            duration_seconds: pm.duration_seconds,
            summary: "post-mortem already written".into(),
        });
    }
    let now = deps.clock.now();
    // An incident that reaches the post-mortem without being resolved was not finished by
    // IRAS: it is recorded as escalated, never as silently done.
    let incident = mutate(deps, &input.incident_id, |inc| {
        if inc.status.is_final() {
            return Ok(false);
        }
        inc.status = IncidentStatus::Escalated;
        inc.record(
            now,
            "closed-unfinished",
            "postmortem",
            "pipeline ended before the incident was resolved".into(),
        );
        Ok(true)
    })
    .await?;
    let steps = deps.store.steps(&input.incident_id).await?;
    let attempts = deps.store.attempts(&input.incident_id).await?;
    let facts = PostMortemFacts {
        incident: &incident,
        steps: &steps,
        attempts: &attempts,
    };
    let (narrative, calls) = usage::collect(deps.analyst.postmortem(&facts)).await;
    let mut llm_calls = incident.llm_calls.clone();
    llm_calls.extend(calls.iter().cloned());
    keep_calls(deps, &input.incident_id, calls).await?;
    let (narrative, analyst) = match narrative {
        Ok(n) => (n, deps.analyst.name()),
        // The post-mortem is always written: fall back to the offline narrative.
        Err(e) => {
            tracing::warn!(incident = %incident.incident_id, error = %e, "analyst failed on the post-mortem; using the offline narrative");
            (
                OfflineAnalyst::default().postmortem(&facts).await?,
                "offline".to_string(),
            )
        }
    };
    let outcome = if incident.status == IncidentStatus::Resolved {
        PostMortemOutcome::Resolved
    } else {
        PostMortemOutcome::Escalated
    };
    let started_at = incident.alert.timestamp.min(incident.created_at);
    let ended_at = incident
        .resolved_at
        .or(incident.escalation.as_ref().map(|e| e.escalated_at))
        .unwrap_or(now);
    let mut timeline = incident.timeline.clone();
    timeline.sort_by_key(|e| e.at);
    let count = |phase: StepPhase| {
        steps
            .iter()
            .filter(|s| s.phase == phase && s.status == StepStatus::Succeeded)
            .count()
    };
    let pm = PostMortem {
        incident_id: incident.incident_id.clone(),
        title: incident.title.clone(),
        severity: incident.severity,
        outcome,
        summary: narrative.summary,
        root_cause: narrative.root_cause,
        resolution: narrative.resolution,
        timeline,
        action_items: narrative.action_items,
        lessons: narrative.lessons,
        started_at,
        ended_at,
        duration_seconds: (ended_at - started_at).num_seconds(),
        rca_attempts: incident.rca_attempts,
        steps_applied: count(StepPhase::Apply),
        steps_rolled_back: count(StepPhase::Rollback),
        written_at: now,
        analyst,
        llm_usage: usage::LlmUsage::of(&llm_calls),
    };
    deps.store.put_postmortem(&pm).await?;
    let stored = mutate(deps, &input.incident_id, |inc| {
        if inc.has_event("postmortem") {
            return Ok(false);
        }
        inc.record(
            now,
            "postmortem",
            "postmortem",
            "post-mortem written".into(),
        );
        Ok(true)
    })
    .await?;
    announce(
        deps,
        lifecycle::POSTMORTEM_PUBLISHED,
        &stored,
        serde_json::json!({"outcome": pm.outcome, "duration_seconds": pm.duration_seconds}),
    )
    .await;
    if stored.status == IncidentStatus::Resolved {
        // Closes the page if one was ever opened; best effort, the record is what counts.
        let _ = deps.pager.resolve(&stored).await;
    }
    Ok(PostMortemOutput {
        outcome,
        duration_seconds: pm.duration_seconds,
        summary: format!(
            "{} after {}",
            match outcome {
                PostMortemOutcome::Resolved => "resolved",
                PostMortemOutcome::Escalated => "escalated",
            },
            format_duration(pm.duration_seconds)
        ),
    })
}

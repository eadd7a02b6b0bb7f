//! RequestApproval (a `.waitForTaskToken` task) and the decision that completes it.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{announce, audit, lifecycle, load, mutate, mutate_or, Deps, StageError};
use crate::audit::{AuditDraft, AuditEvent};
use crate::domain::*;
use crate::format_time;
use crate::ports::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalInput {
    pub incident_id: IncidentId,
    pub task_token: String,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalOutput {
    pub approval_id: String,
    pub expires_at: Timestamp,
}

/// Stores the task token with a fresh single-use approval id and tells the on-call channel.
/// The token itself never leaves the store.
pub async fn request_approval(
    deps: &Deps,
    input: &ApprovalInput,
) -> Result<ApprovalOutput, StageError> {
    if input.task_token.trim().is_empty() {
        return Err(StageError::InvalidInput("task_token is empty".into()));
    }
    let incident = load(deps, &input.incident_id).await?;
    let Some(plan) = incident.plan.as_ref() else {
        return Err(StageError::InvalidInput("no plan to approve".into()));
    };
    // The approval is bound to exactly the actions people are shown now.
    let plan_hash = plan.actions_hash();
    let required_approvers = plan.required_approvers.max(1);
    let now = deps.clock.now();
    let timeout = input
        .timeout_seconds
        .unwrap_or(incident.approval_timeout_seconds)
        .max(1);
    let mut notify = false;
    let stored = mutate(deps, &input.incident_id, |inc| {
        match &inc.approval {
            // A retried invocation with the same token: already recorded and announced.
            Some(a) if a.task_token == input.task_token => {
                notify = false;
                return Ok(false);
            }
            Some(a) if a.decision.is_some() => {
                return Err(StageError::ApprovalAlreadyDecided(
                    "this incident's plan was already decided".into(),
                ))
            }
            _ => {}
        }
        notify = true;
        let request = ApprovalRequest {
            approval_id: new_approval_id(),
            task_token: input.task_token.clone(),
            requested_at: now,
            expires_at: now + Duration::seconds(timeout as i64),
            decision: None,
            message_ref: None,
            plan_hash: plan_hash.clone(),
            required_approvers,
            approvals: Vec::new(),
        };
        inc.status = IncidentStatus::AwaitingApproval;
        inc.record(
            now,
            "approval:requested",
            "request_approval",
            format!(
                "approval requested; window {}",
                format_duration(timeout as i64)
            ),
        );
        inc.approval = Some(request);
        Ok(true)
    })
    .await?;
    let approval = stored.approval.clone().expect("approval just recorded");
    if notify {
        announce(
            deps,
            lifecycle::PLAN_AWAITING_APPROVAL,
            &stored,
            json!({"approval_id": approval.approval_id, "expires_at": approval.expires_at}),
        )
        .await;
        let url = deps
            .config
            .approval_links
            .as_ref()
            .map(|links| links.url(&approval.approval_id, approval.expires_at));
        match deps
            .notifier
            .approval_requested(&stored, url.as_deref())
            .await
        {
            Ok(None) => {}
            Ok(Some(message_ref)) => {
                // Best effort: without it, updates are posted as new messages, not lost.
                let kept = mutate(deps, &input.incident_id, |inc| {
                    match inc.approval.as_mut() {
                        Some(a) if a.approval_id == approval.approval_id => {
                            a.message_ref = Some(message_ref.clone());
                            Ok(true)
                        }
                        _ => Ok(false),
                    }
                })
                .await;
                if let Err(e) = kept {
                    tracing::warn!(incident = %stored.incident_id, error = %e, "approval message reference not kept");
                }
            }
            Err(e) => {
                // Nobody may have heard; the approval window still runs and ends in escalation.
                tracing::warn!(incident = %stored.incident_id, error = %e, "approval notification failed");
                let _ = mutate(deps, &input.incident_id, |inc| {
                    inc.record(
                        now,
                        "approval:notify-failed",
                        "request_approval",
                        format!("could not notify {}: {e}", deps.notifier.name()),
                    );
                    Ok(true)
                })
                .await;
            }
        }
    }
    Ok(ApprovalOutput {
        approval_id: approval.approval_id,
        expires_at: approval.expires_at,
    })
}

/// One person's key in the audit log: the checked identity when there is one, else the name
/// whatever its case or spacing (as a self-declared name, so a record written before
/// identities existed and one written after key alike).
fn person(approver: &str, identity: Option<&ApproverIdentity>) -> String {
    match identity {
        Some(identity) => identity.key(),
        None => ApproverIdentity::SelfDeclared {
            name: approver.to_string(),
            link_sent_to: None,
        }
        .key(),
    }
}

fn new_approval_id() -> String {
    // 122 random bits: not guessable, and single-use by construction.
    format!("apr-{}", uuid::Uuid::new_v4().simple())
}

#[derive(Debug, Clone)]
pub struct DecisionRequest {
    /// When set (an approval page), the decision applies only to this approval: a link shown
    /// for an earlier request can never decide a newer one.
    pub approval_id: Option<String>,
    pub decision: Decision,
    pub approver: String,
    /// Who IRAS checked this is; `None` is a bare name, compared as a self-declared one.
    pub identity: Option<ApproverIdentity>,
    pub channel: String,
    pub comment: Option<String>,
}

impl DecisionRequest {
    /// The channel, and for a page decision the link it came through: what the texts say.
    fn via(&self) -> String {
        ApproverIdentity::via(self.identity.as_ref(), &self.channel)
    }

    /// Whether `d` was decided by the person making this request.
    fn same_person_as(&self, d: &ApprovalDecision) -> bool {
        ApproverIdentity::same_person(
            (&self.approver, self.identity.as_ref()),
            (&d.approver, d.identity.as_ref()),
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecideError {
    #[error("incident {0} not found")]
    NotFound(String),
    #[error("incident {0} is not waiting for approval")]
    NotAwaiting(String),
    #[error("the plan was already {0}")]
    AlreadyDecided(String),
    #[error("the approval window closed at {0}")]
    Expired(Timestamp),
    /// The same person approving again counts once: another person must approve.
    #[error("{0} already approved this plan; it needs another person's approval")]
    AlreadyApproved(String),
    /// Two names typed on the page can be one person: where two approvers are needed, at most
    /// one approval may rest on a name nobody checked.
    #[error("{0} approved through the page; the other approval must come from a checked identity (an API key or Slack)")]
    SecondApprovalUnchecked(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<StageError> for DecideError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::IncidentNotFound(id) => DecideError::NotFound(id),
            other => DecideError::Unavailable(other.to_string()),
        }
    }
}

/// Records a human's decision and completes the waiting task. A second decision, a decision
/// after the window, or one for an incident not awaiting approval changes nothing.
pub async fn decide(
    deps: &Deps,
    callbacks: &dyn TaskCallbacks,
    id: &IncidentId,
    request: DecisionRequest,
) -> Result<Incident, DecideError> {
    let now = deps.clock.now();
    let mut token = String::new();
    let mut partial = false;
    let mut partial_key = String::new();
    let stored = mutate_or(deps, id, |inc| {
        let not_awaiting = || DecideError::NotAwaiting(id.to_string());
        let Some(approval) = inc.approval.as_mut() else {
            return Err(not_awaiting());
        };
        if request
            .approval_id
            .as_ref()
            .is_some_and(|wanted| *wanted != approval.approval_id)
        {
            return Err(not_awaiting());
        }
        if let Some(d) = &approval.decision {
            return Err(DecideError::AlreadyDecided(d.decision.as_str().to_string()));
        }
        // After the window the answer is "too late" (410) whatever became of the incident
        // since (escalated by the timeout): never a vaguer "not waiting" (409).
        if now > approval.expires_at {
            return Err(DecideError::Expired(approval.expires_at));
        }
        if inc.status != IncidentStatus::AwaitingApproval {
            return Err(not_awaiting());
        }
        token = approval.task_token.clone();
        let decision = ApprovalDecision {
            decision: request.decision,
            approver: request.approver.clone(),
            identity: request.identity.clone(),
            channel: request.channel.clone(),
            decided_at: now,
            comment: request.comment.clone(),
            plan_hash: approval.plan_hash.clone(),
            delivery_pending: false,
        };
        let comment = request
            .comment
            .as_ref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        if request.decision == Decision::Approved {
            if approval.approvals.iter().any(|a| request.same_person_as(a))
            {
                return Err(DecideError::AlreadyApproved(request.approver.clone()));
            }
            let checked = |i: Option<&ApproverIdentity>| i.is_some_and(ApproverIdentity::verified);
            if approval.required_approvers > 1 && !checked(request.identity.as_ref()) {
                if let Some(earlier) = approval
                    .approvals
                    .iter()
                    .find(|a| !checked(a.identity.as_ref()))
                {
                    return Err(DecideError::SecondApprovalUnchecked(earlier.approver.clone()));
                }
            }
            approval.approvals.push(decision.clone());
            let have = approval.approvals.len() as u32;
            let need = approval.required_approvers.max(1);
            if have < need {
                partial = true;
                partial_key = format!("approval:partial:{have}");
                inc.record(
                    now,
                    partial_key.clone(),
                    "approval",
                    format!(
                        "approval {have} of {need} by {} via {}{comment}; waiting for another person",
                        request.approver,
                        request.via()
                    ),
                );
                return Ok(true);
            }
        }
        partial = false;
        let who = match request.decision {
            Decision::Approved => approval
                .approvals
                .iter()
                .map(|a| a.approver.as_str())
                .collect::<Vec<_>>()
                .join(" and "),
            Decision::Rejected | Decision::Recovered => request.approver.clone(),
        };
        // Recorded first, delivered second (the outbox): a crash between the two leaves the
        // decision pending, and reconciliation delivers it.
        approval.decision = Some(ApprovalDecision {
            delivery_pending: true,
            ..decision
        });
        inc.record(
            now,
            "approval:decided",
            "approval",
            format!(
                "plan {} by {who} via {}{comment}",
                request.decision.as_str(),
                request.via(),
            ),
        );
        Ok(true)
    })
    .await?;
    // Written before the decision goes anywhere: when the log cannot take it, the decision is
    // taken back below and the caller told to try again, so nothing is acted on unaudited.
    // (Should the pipeline then refuse it as too late, the entry stays: the person did decide.)
    let audited = match decision_drafts(&stored)
        .into_iter()
        .find(|d| d.key == decision_key(&stored, &request))
    {
        Some(draft) => audit(deps, id, draft).await.map(|_| ()),
        None => Ok(()),
    };
    if let Err(e) = &audited {
        tracing::error!(incident = %id, error = %e, "decision not written to the audit log; taken back");
    }
    let failure = match audited {
        Err(e) => DecideError::Unavailable(format!(
            "the decision could not be written to the audit log ({e}); nothing was applied, \
             try again"
        )),
        Ok(()) if partial => {
            let news = format!(
                "plan approved by {} via {}; it needs another person's approval",
                request.approver,
                request.via()
            );
            if let Err(e) = deps.notifier.incident_updated(&stored, &news).await {
                tracing::warn!(incident = %id, error = %e, "could not tell the on-call channel about the approval");
            }
            return Ok(stored);
        }
        Ok(()) => match deliver(callbacks, &token, &request).await {
            Ok(()) => {
                let stored = settle_delivered(deps, id, None).await.unwrap_or(stored);
                // Whoever decided, the on-call channel sees it (Slack edits its approval message).
                let news = format!(
                    "plan {} by {} via {}",
                    request.decision.as_str(),
                    request.approver,
                    request.via()
                );
                if let Err(e) = deps.notifier.incident_updated(&stored, &news).await {
                    tracing::warn!(incident = %id, error = %e, "could not tell the on-call channel about the decision");
                }
                return Ok(stored);
            }
            // The pipeline gave up waiting between our check and the callback.
            Err(CallbackError::TaskTimedOut) | Err(CallbackError::InvalidToken) => {
                DecideError::Expired(
                    stored
                        .approval
                        .as_ref()
                        .map(|a| a.expires_at)
                        .unwrap_or(now),
                )
            }
            // The decision stands, recorded and pending: reconciliation delivers it once the
            // pipeline answers again. The caller reports it as recorded, not as applied.
            Err(CallbackError::Unavailable(e)) => {
                tracing::warn!(incident = %id, error = %e, "decision recorded; delivery to the pipeline pending");
                let note = format!(
                "plan {} by {} via {}; the pipeline could not be reached ({e}), delivery is retried",
                request.decision.as_str(),
                request.approver,
                request.via()
            );
                let stored = mutate(deps, id, |inc| {
                    inc.record(now, "approval:delivery-pending", "approval", note.clone());
                    Ok(true)
                })
                .await
                .unwrap_or(stored);
                return Ok(stored);
            }
        },
    };
    // The decision did not reach the pipeline: take it back so the record does not claim an
    // approval that never took effect (and a transient failure can be retried).
    let note = failure.to_string();
    let _ = mutate(deps, id, |inc| {
        let Some(a) = inc.approval.as_mut() else {
            return Ok(false);
        };
        a.decision = None;
        // The last approval is the one that did not reach the pipeline.
        if request.decision == Decision::Approved {
            a.approvals.retain(|d| !request.same_person_as(d));
        }
        inc.timeline
            .retain(|e| e.key != "approval:decided" && (!partial || e.key != partial_key));
        inc.record(
            now,
            format!("approval:undelivered:{}", now.timestamp_millis()),
            "approval",
            format!("decision by {} not applied: {note}", request.approver),
        );
        Ok(true)
    })
    .await;
    Err(failure)
}

/// What the waiting task receives: the decision and who made it.
async fn deliver(
    callbacks: &dyn TaskCallbacks,
    token: &str,
    request: &DecisionRequest,
) -> Result<(), CallbackError> {
    let output = json!({
        "decision": request.decision.as_str(),
        "approver": request.approver,
        "channel": request.channel,
    });
    callbacks.send_task_success(token, output).await
}

/// Marks the incident's pending decision delivered. `note` (set by reconciliation and by the
/// stages after the wait) goes on the timeline, so the record says how it got through.
async fn settle_delivered(
    deps: &Deps,
    id: &IncidentId,
    note: Option<&str>,
) -> Result<Incident, StageError> {
    let now = deps.clock.now();
    mutate(deps, id, |inc| {
        let Some(d) = inc.approval.as_mut().and_then(|a| a.decision.as_mut()) else {
            return Ok(false);
        };
        if !d.delivery_pending {
            return Ok(false);
        }
        d.delivery_pending = false;
        if let Some(note) = note {
            inc.record(now, "approval:delivered", "approval", note.to_string());
        }
        Ok(true)
    })
    .await
}

/// Called by the stages that run only once the wait is over: a pending decision that the
/// execution acted on was delivered (by a call whose answer was lost in a crash).
pub(crate) async fn decision_reached_pipeline(
    deps: &Deps,
    id: &IncidentId,
) -> Result<(), StageError> {
    settle_delivered(
        deps,
        id,
        Some("the decision reached the pipeline (its delivery was confirmed by the next stage)"),
    )
    .await
    .map(|_| ())
}

/// Called when the wait ended without a decision (the window closed): a decision still
/// pending never reached the pipeline, so the record must not claim it. It is kept on the
/// timeline with its time, so the post-mortem can say it came too late.
pub(crate) async fn decision_missed_window(
    deps: &Deps,
    id: &IncidentId,
) -> Result<Option<String>, StageError> {
    let now = deps.clock.now();
    let mut late = None;
    mutate(deps, id, |inc| {
        let Some(a) = inc.approval.as_mut() else {
            return Ok(false);
        };
        let Some(d) = a.decision.clone().filter(|d| d.delivery_pending) else {
            return Ok(false);
        };
        a.decision = None;
        a.approvals.clear();
        // The entries that read as if the decision took effect go; one line says what happened.
        inc.timeline
            .retain(|e| e.key != "approval:decided" && e.key != "approval:delivery-pending");
        let note = format!(
            "the plan was {} by {} at {} but the decision did not reach the pipeline before the window closed",
            d.decision.as_str(),
            d.approver,
            format_time(d.decided_at)
        );
        inc.record(now, "approval:missed-window", "approval", note.clone());
        late = Some(note);
        Ok(true)
    })
    .await?;
    Ok(late)
}

/// What one reconciliation pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    /// Pending decisions delivered now.
    pub delivered: usize,
    /// Their incidents: the caller that has an on-call channel tells it (the relay itself
    /// runs where there may be none, as in the `ingest` function).
    #[serde(default)]
    pub delivered_incidents: Vec<IncidentId>,
    /// Still pending: the pipeline could not be reached, or too young to touch.
    pub pending: usize,
    /// The token was spent or expired: the execution's next stage settles the record.
    pub left_to_pipeline: usize,
}

/// Delivers again every decision that was recorded but not delivered (the outbox's relay).
/// Run at start-up (`min_age` zero: nobody else in this process is mid-delivery) and on a
/// timer (`min_age` well above one delivery's time, so a live `decide` is never raced).
/// A second `SendTaskSuccess` for a token already used is refused by the pipeline and
/// changes nothing, so delivering twice is harmless.
pub async fn reconcile_decisions(
    deps: &Deps,
    callbacks: &dyn TaskCallbacks,
    min_age: Duration,
) -> Result<Reconciled, StageError> {
    let now = deps.clock.now();
    let mut done = Reconciled::default();
    let mut cursor = None;
    loop {
        let page = deps
            .store
            .list_incidents(&IncidentQuery {
                status: Some(IncidentStatus::AwaitingApproval),
                severity: None,
                limit: 100,
                cursor: cursor.take(),
            })
            .await
            .map_err(|e| StageError::StoreUnavailable(e.to_string()))?;
        for inc in &page.incidents {
            let Some(a) = inc.approval.as_ref() else {
                continue;
            };
            let Some(d) = a.decision.as_ref().filter(|d| d.delivery_pending) else {
                continue;
            };
            if now - d.decided_at < min_age {
                done.pending += 1;
                continue;
            }
            let request = DecisionRequest {
                approval_id: Some(a.approval_id.clone()),
                decision: d.decision,
                approver: who_decided(a, d),
                identity: d.identity.clone(),
                channel: d.channel.clone(),
                comment: d.comment.clone(),
            };
            // A crash between recording the decision and writing its entry: written now,
            // before delivery; while the log cannot take it, the decision waits.
            let mut unaudited = None;
            for draft in decision_drafts(inc) {
                if let Err(e) = audit(deps, &inc.incident_id, draft).await {
                    unaudited = Some(e);
                    break;
                }
            }
            if let Some(e) = unaudited {
                tracing::warn!(incident = %inc.incident_id, error = %e, "pending decision not delivered: the audit log cannot take it yet");
                done.pending += 1;
                continue;
            }
            match deliver(callbacks, &a.task_token, &request).await {
                Ok(()) => {
                    let note = format!(
                        "decision by {} delivered to the pipeline by reconciliation (recorded {})",
                        request.approver,
                        format_time(d.decided_at)
                    );
                    settle_delivered(deps, &inc.incident_id, Some(&note)).await?;
                    done.delivered += 1;
                    done.delivered_incidents.push(inc.incident_id.clone());
                }
                Err(CallbackError::Unavailable(e)) => {
                    tracing::warn!(incident = %inc.incident_id, error = %e, "pending decision still not deliverable");
                    done.pending += 1;
                }
                Err(e) => {
                    // Spent (delivered before a crash: the next stage confirms it) or
                    // expired (the timeout path takes the decision back).
                    tracing::info!(incident = %inc.incident_id, error = %e, "pending decision left to the pipeline");
                    done.left_to_pipeline += 1;
                }
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(done)
}

/// The approver(s) as the decision's first delivery named them.
fn who_decided(a: &ApprovalRequest, d: &ApprovalDecision) -> String {
    if d.decision == Decision::Approved && a.approvals.len() > 1 {
        a.approvals
            .iter()
            .map(|x| x.approver.as_str())
            .collect::<Vec<_>>()
            .join(" and ")
    } else {
        d.approver.clone()
    }
}

/// The audit key of one person's decision on one approval request: the same whichever path
/// writes it (the decision itself, the relay, Remediate's check, the post-mortem's catch-up).
fn audit_key_of(approval: &ApprovalRequest, d: &ApprovalDecision) -> String {
    format!(
        "decision:{}:{}:{}",
        approval.approval_id,
        d.decision.as_str(),
        person(&d.approver, d.identity.as_ref())
    )
}

/// The key of the decision `request` just recorded on `incident`.
fn decision_key(incident: &Incident, request: &DecisionRequest) -> String {
    let approval_id = incident
        .approval
        .as_ref()
        .map(|a| a.approval_id.as_str())
        .unwrap_or_default();
    format!(
        "decision:{approval_id}:{}:{}",
        request.decision.as_str(),
        person(&request.approver, request.identity.as_ref())
    )
}

/// The audit entries of every decision recorded on the incident's approval request: each
/// approval (1 of 2, 2 of 2), and a rejection or recovery.
pub(crate) fn decision_drafts(incident: &Incident) -> Vec<AuditDraft> {
    let Some(a) = incident.approval.as_ref() else {
        return Vec::new();
    };
    let required = a.required_approvers.max(1);
    let draft = |d: &ApprovalDecision, nth: u32| AuditDraft {
        key: audit_key_of(a, d),
        at: d.decided_at,
        actor: format!("{} via {}", d.approver, d.channel),
        event: AuditEvent::Decision {
            decision: d.decision.as_str().to_string(),
            approver: d.approver.clone(),
            channel: d.channel.clone(),
            comment: d.comment.clone(),
            approval_id: Some(a.approval_id.clone()),
            plan_hash: d.plan_hash.clone(),
            approvals: nth,
            required,
        },
    };
    let mut out: Vec<AuditDraft> = a
        .approvals
        .iter()
        .enumerate()
        .map(|(i, d)| draft(d, i as u32 + 1))
        .collect();
    if let Some(d) = &a.decision {
        let key = audit_key_of(a, d);
        if !out.iter().any(|x| x.key == key) {
            out.push(draft(d, a.approvals.len() as u32));
        }
    }
    out
}

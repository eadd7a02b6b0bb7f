//! RequestApproval (a `.waitForTaskToken` task) and the decision that completes it.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{announce, lifecycle, load, mutate, mutate_or, Deps, StageError};
use crate::domain::*;
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
    if incident.plan.is_none() {
        return Err(StageError::InvalidInput("no plan to approve".into()));
    }
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
    pub channel: String,
    pub comment: Option<String>,
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
        if inc.status != IncidentStatus::AwaitingApproval {
            return Err(not_awaiting());
        }
        if now > approval.expires_at {
            return Err(DecideError::Expired(approval.expires_at));
        }
        token = approval.task_token.clone();
        approval.decision = Some(ApprovalDecision {
            decision: request.decision,
            approver: request.approver.clone(),
            channel: request.channel.clone(),
            decided_at: now,
            comment: request.comment.clone(),
        });
        inc.record(
            now,
            "approval:decided",
            "approval",
            format!(
                "plan {} by {} via {}{}",
                request.decision.as_str(),
                request.approver,
                request.channel,
                request
                    .comment
                    .as_ref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            ),
        );
        Ok(true)
    })
    .await?;
    let output = json!({
        "decision": request.decision.as_str(),
        "approver": request.approver,
        "channel": request.channel,
    });
    let failure = match callbacks.send_task_success(&token, output).await {
        Ok(()) => {
            // Whoever decided, the on-call channel sees it (Slack edits its approval message).
            let news = format!(
                "plan {} by {} via {}",
                request.decision.as_str(),
                request.approver,
                request.channel
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
        Err(CallbackError::Unavailable(e)) => DecideError::Unavailable(e),
    };
    // The decision did not reach the pipeline: take it back so the record does not claim an
    // approval that never took effect (and a transient failure can be retried).
    let note = failure.to_string();
    let _ = mutate(deps, id, |inc| {
        let Some(a) = inc.approval.as_mut() else {
            return Ok(false);
        };
        a.decision = None;
        inc.timeline.retain(|e| e.key != "approval:decided");
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

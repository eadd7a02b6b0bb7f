//! `POST /incidents/{id}/approve` and `/reject`: decisions by API key (scripts, ChatOps).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use iras_core::signing::secure_eq;
use iras_core::stages::{decide, DecideError, DecisionRequest};
use iras_core::{ApprovalDecision, ApproverIdentity, Decision, IncidentId, IncidentStore};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::incidents::parse_id;
use crate::webhook::bearer_token;
use crate::{AppState, GatewayCaller, HttpConfig};

/// Names end up in the record, notifications and the post-mortem: a name, not an essay.
pub(crate) const MAX_APPROVER_CHARS: usize = 200;

pub(crate) async fn approve(
    State(state): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    caller: Option<Extension<GatewayCaller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    decide_by_api(state, raw, headers, caller, body, Decision::Approved).await
}

pub(crate) async fn reject(
    State(state): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    caller: Option<Extension<GatewayCaller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    decide_by_api(state, raw, headers, caller, body, Decision::Rejected).await
}

/// Checked before anything else, so an unauthenticated caller learns nothing about ids.
/// Returns the name of the key presented: who is deciding.
fn authorize(
    http: &HttpConfig,
    headers: &HeaderMap,
    caller: Option<&GatewayCaller>,
) -> Result<ApproverIdentity, ApiError> {
    if http.gateway_iam {
        return gateway_caller(caller).map(|arn| ApproverIdentity::Iam { arn });
    }
    let keys = http.approval_keys();
    if keys.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "API approvals are disabled: set APPROVAL_API_KEYS (name:key) or APPROVAL_API_KEY.",
        ));
    }
    let matched = check_bearer(headers, &keys, "APPROVAL_API_KEYS")?;
    Ok(ApproverIdentity::ApiKey {
        name: matched.to_string(),
    })
}

/// In `API_AUTH=iam` the gateway refuses unsigned requests before they reach us; one that
/// arrives without a caller anyway (a misrouted call, a test) is refused here too.
fn gateway_caller(caller: Option<&GatewayCaller>) -> Result<String, ApiError> {
    caller.map(|c| c.0.clone()).ok_or_else(|| {
        ApiError::unauthorized(
            "This API takes requests signed with AWS SigV4 (API_AUTH=iam); none was checked.",
        )
    })
}

/// The read routes (`/incidents`, a report, a post-mortem) carry alert payloads, approvers,
/// log snippets and plans: they need a key, `READ_API_KEYS` or any approval key. With none
/// configured, reads are refused, never open.
pub(crate) fn authorize_read(
    http: &HttpConfig,
    headers: &HeaderMap,
    caller: Option<&GatewayCaller>,
) -> Result<(), ApiError> {
    if http.gateway_iam {
        return gateway_caller(caller).map(|_| ());
    }
    let keys: Vec<(&str, &str)> = http
        .read_api_keys
        .iter()
        .map(|k| ("reader", k.trim()))
        .filter(|(_, k)| !k.is_empty())
        .chain(http.approval_keys())
        .collect();
    if keys.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Reading incidents is disabled: set READ_API_KEYS (or APPROVAL_API_KEYS).",
        ));
    }
    check_bearer(headers, &keys, "READ_API_KEYS").map(|_| ())
}

/// The name of the key the bearer token is.
fn check_bearer<'a>(
    headers: &HeaderMap,
    keys: &[(&'a str, &str)],
    var: &str,
) -> Result<&'a str, ApiError> {
    let Some(token) = bearer_token(headers) else {
        return Err(ApiError::unauthorized(format!(
            "This endpoint requires Authorization: Bearer <{var}>."
        )));
    };
    // Every key is compared, so timing does not tell which one (if any) nearly matched.
    let matched = keys.iter().fold(None, |found, (name, key)| {
        let this = secure_eq(token, key);
        found.or(this.then_some(*name))
    });
    matched.ok_or_else(|| ApiError::unauthorized("The API key is not valid."))
}

#[derive(Debug, PartialEq)]
struct DecisionBody {
    approver: Option<String>,
    comment: Option<String>,
}

fn optional_text(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Some(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{field}` must be a string."),
        )
        .field(field)),
    }
}

/// The body is optional: an empty one decides as the key's name without a comment.
fn parse_body(body: &[u8]) -> Result<DecisionBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecisionBody {
            approver: None,
            comment: None,
        });
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("The body is not valid JSON ({e})."),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The body must be a JSON object like {\"approver\": \"...\", \"comment\": \"...\"}.",
        ));
    };
    let approver = optional_text(&obj, "approver")?;
    if approver
        .as_ref()
        .is_some_and(|a| a.chars().count() > MAX_APPROVER_CHARS)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`approver` must be at most {MAX_APPROVER_CHARS} characters."),
        )
        .field("approver"));
    }
    Ok(DecisionBody {
        approver,
        comment: optional_text(&obj, "comment")?,
    })
}

/// Who decided, for a 409 that says more than "no".
pub(crate) async fn recorded_decision(
    store: &dyn IncidentStore,
    id: &IncidentId,
) -> Option<ApprovalDecision> {
    store
        .get_incident(id)
        .await
        .ok()
        .flatten()
        .and_then(|i| i.approval)
        .and_then(|a| a.decision)
}

pub(crate) fn describe_decision(d: &ApprovalDecision) -> String {
    format!(
        "{} by {} at {}",
        d.decision.as_str(),
        d.approver,
        iras_core::format_time(d.decided_at)
    )
}

async fn decide_by_api(
    state: AppState,
    raw: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    caller: Option<Extension<GatewayCaller>>,
    body: Result<Bytes, BytesRejection>,
    decision: Decision,
) -> Result<Response, ApiError> {
    let app = &state.app;
    let identity = authorize(&app.http, &headers, caller.as_ref().map(|c| &c.0))?;
    let who = match &identity {
        ApproverIdentity::ApiKey { name } => name.clone(),
        ApproverIdentity::Iam { arn } => arn.clone(),
        other => other.key(),
    };
    let id = parse_id(raw)?;
    let body = match body {
        Ok(b) => b,
        Err(r) => return Err(ApiError::new(r.status(), "The body could not be read.")),
    };
    let DecisionBody { approver, comment } = parse_body(&body)?;
    // The key is who decides; a name in the body is kept as what its holder typed (a bot
    // deciding for someone), and never makes a second person.
    let approver = approver.unwrap_or_else(|| who.clone());
    let request = DecisionRequest {
        approval_id: None,
        decision,
        approver: approver.clone(),
        identity: Some(identity.clone()),
        channel: "api".into(),
        comment,
    };
    match decide(&app.deps, app.callbacks.as_ref(), &id, request).await {
        Ok(incident) => {
            tracing::info!(incident = %id, decision = decision.as_str(), %approver, "plan decided via api");
            // Recorded but not yet delivered (the pipeline was unreachable): 202, and the
            // body says so; reconciliation delivers it.
            let pending = incident.decision_delivery_pending();
            let status = if pending {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(json!({
                    "incident_id": incident.incident_id,
                    "status": incident.status.as_str(),
                    "decision": decision.as_str(),
                    "approver": approver,
                    "api_key": matches!(identity, ApproverIdentity::ApiKey { .. }).then_some(&who),
                    "iam_principal": matches!(identity, ApproverIdentity::Iam { .. }).then_some(&who),
                    "delivery": if pending { "pending" } else { "delivered" },
                })),
            )
                .into_response())
        }
        Err(e) => Err(decide_error(app.deps.store.as_ref(), &id, e).await),
    }
}

async fn decide_error(store: &dyn IncidentStore, id: &IncidentId, e: DecideError) -> ApiError {
    match e {
        DecideError::NotFound(_) => ApiError::not_found(format!("No incident {id}.")),
        DecideError::NotAwaiting(_) => ApiError::new(
            StatusCode::CONFLICT,
            format!("Incident {id} is not waiting for approval."),
        ),
        DecideError::AlreadyDecided(what) => {
            let detail = match recorded_decision(store, id).await {
                Some(d) => describe_decision(&d),
                None => what,
            };
            ApiError::new(
                StatusCode::CONFLICT,
                format!("The plan was already decided: {detail}."),
            )
        }
        DecideError::Expired(at) => ApiError::new(
            StatusCode::GONE,
            format!(
                "The approval window closed at {}.",
                iras_core::format_time(at)
            ),
        ),
        DecideError::AlreadyApproved(who) => ApiError::new(
            StatusCode::CONFLICT,
            format!("{who} already approved this plan: it needs another person's approval."),
        ),
        DecideError::SecondApprovalUnchecked(who) => ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{who} approved through the page; the other approval must come from a checked \
                 identity (a named API key or Slack)."
            ),
        ),
        DecideError::Unavailable(detail) => ApiError::unavailable(
            "The decision could not be delivered to the pipeline",
            detail,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_names_no_one_and_the_key_decides() {
        assert_eq!(
            parse_body(b"").unwrap(),
            DecisionBody {
                approver: None,
                comment: None
            }
        );
        assert_eq!(parse_body(b" {} ").unwrap().approver, None);
    }

    #[test]
    fn the_body_names_its_bad_field() {
        let b = parse_body(br#"{"approver": " alice ", "comment": "looks right"}"#).unwrap();
        assert_eq!(b.approver.as_deref(), Some("alice"));
        assert_eq!(b.comment.as_deref(), Some("looks right"));
        assert_eq!(
            parse_body(br#"{"approver": 3}"#)
                .unwrap_err()
                .field
                .as_deref(),
            Some("approver")
        );
        assert_eq!(
            parse_body(br#"{"comment": []}"#)
                .unwrap_err()
                .field
                .as_deref(),
            Some("comment")
        );
        let long = format!(
            r#"{{"approver": "{}"}}"#,
            "a".repeat(MAX_APPROVER_CHARS + 1)
        );
        assert_eq!(
            parse_body(long.as_bytes()).unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            parse_body(b"[1]").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_body(b"{").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}

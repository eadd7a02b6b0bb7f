//! `POST /slack/interactions`: the Approve / Reject buttons of the Slack approval message.
//! Slack signs every request with the app's signing secret (`v0=` HMAC-SHA256 over
//! `v0:{timestamp}:{raw body}`); an unsigned, mis-signed or stale request decides nothing.
//! Slack waits 3 seconds for an answer, so the decision is bounded and the reply always comes.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use iras_core::signing::{hmac_hex, secure_eq};
use iras_core::stages::{decide, DecideError, DecisionRequest};
use iras_core::{Decision, Incident, IncidentId, Timestamp};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::approvals::{describe_decision, recorded_decision, MAX_APPROVER_CHARS};
use crate::error::ApiError;
use crate::AppState;

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Slack's documented replay window.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;
/// The buttons' `action_id`s, as the Slack notifier (iras-adapters) writes them.
pub const APPROVE_ACTION: &str = "iras_approve";
pub const REJECT_ACTION: &str = "iras_reject";
/// How long the decision may take before Slack hears back anyway (Slack gives up at 3 s).
const DECISION_BUDGET: Duration = Duration::from_millis(2000);
/// Until the reply, the thread update may use what is left of this.
const REPLY_BUDGET: Duration = Duration::from_millis(2500);

/// The signing secret of the Slack app (`SLACK_SIGNING_SECRET`).
#[derive(Clone)]
pub struct SlackInteractivity {
    signing_secret: String,
}

impl fmt::Debug for SlackInteractivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackInteractivity")
            .field("signing_secret", &"<redacted>")
            .finish()
    }
}

impl SlackInteractivity {
    /// `None` for a blank secret: an empty HMAC key would make every signature forgeable.
    pub fn new(signing_secret: &str) -> Option<Self> {
        let s = signing_secret.trim();
        (!s.is_empty()).then(|| SlackInteractivity {
            signing_secret: s.to_string(),
        })
    }

    /// `SLACK_SIGNING_SECRET`; unset or blank turns Slack interactivity off.
    pub fn from_vars(vars: &HashMap<String, String>) -> Option<Self> {
        vars.get("SLACK_SIGNING_SECRET")
            .and_then(|s| SlackInteractivity::new(s))
    }

    pub fn from_env() -> Option<Self> {
        std::env::var("SLACK_SIGNING_SECRET")
            .ok()
            .and_then(|s| SlackInteractivity::new(&s))
    }
}

/// `v0=<hex HMAC-SHA256(secret, "v0:{timestamp}:{body}")>`, as Slack computes it.
pub fn slack_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut message = format!("v0:{timestamp}:").into_bytes();
    message.extend_from_slice(body);
    format!("v0={}", hmac_hex(secret.as_bytes(), &message))
}

/// Checks the signature over the raw body and the timestamp's freshness.
pub fn verify(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(timestamp) = header(TIMESTAMP_HEADER) else {
        return Err("The request has no X-Slack-Request-Timestamp.");
    };
    let Ok(sent) = timestamp.trim().parse::<i64>() else {
        return Err("X-Slack-Request-Timestamp is not a Unix time.");
    };
    // abs_diff cannot overflow: a timestamp of i64::MIN is far, not "now" after a wrap.
    if now.timestamp().abs_diff(sent) > TOLERANCE_SECONDS as u64 {
        return Err("The request is older than 5 minutes (or from the future).");
    }
    let Some(signature) = header(SIGNATURE_HEADER) else {
        return Err("The request has no X-Slack-Signature.");
    };
    if !secure_eq(&slack_signature(secret, timestamp, body), signature.trim()) {
        return Err("The Slack signature does not match.");
    }
    Ok(())
}

/// An interactivity body: `payload=<JSON>`, form-encoded, beside fields we do not read.
#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

/// The `payload` of an (already verified) interactivity body, as JSON.
fn interaction_payload(body: &[u8]) -> Option<Value> {
    let form: InteractionForm = serde_urlencoded::from_bytes(body).ok()?;
    serde_json::from_str(&form.payload).ok()
}

/// `&`, `<` and `>` mean links and mentions in Slack's mrkdwn.
fn mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack shows nothing of the body for `block_actions` (the notifier edits the message), but
/// a reply is still a sentence: for logs, and for clients that do show it.
fn reply(text: impl Into<String>) -> Response {
    (
        StatusCode::OK,
        Json(json!({
            "response_type": "ephemeral",
            "replace_original": false,
            "text": text.into(),
        })),
    )
        .into_response()
}

/// What a click asks for, read from the `block_actions` payload.
#[derive(Debug, PartialEq)]
struct Click {
    decision: Decision,
    incident: IncidentId,
    approval_id: String,
    approver: String,
}

/// `Ok(None)` for a payload that is not one of our decision buttons (the approval-page link
/// button, another interaction type): acknowledged and ignored.
fn read_click(payload: &Value) -> Result<Option<Click>, String> {
    if payload.get("type").and_then(Value::as_str) != Some("block_actions") {
        return Ok(None);
    }
    let Some(action) = payload
        .get("actions")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    else {
        return Ok(None);
    };
    let decision = match action.get("action_id").and_then(Value::as_str) {
        Some(APPROVE_ACTION) => Decision::Approved,
        Some(REJECT_ACTION) => Decision::Rejected,
        _ => return Ok(None),
    };
    let value = action.get("value").and_then(Value::as_str).unwrap_or("");
    let (incident, approval_id) = value
        .split_once(':')
        .filter(|(_, a)| {
            !a.is_empty()
                && a.len() <= 100
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .ok_or("This button does not name an approval.")?;
    let incident = IncidentId::parse(incident).ok_or("This button does not name an incident.")?;
    let user = payload.get("user").cloned().unwrap_or(Value::Null);
    let approver = ["username", "name", "id"]
        .iter()
        .find_map(|k| {
            user.get(*k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        })
        .map(|s| s.chars().take(MAX_APPROVER_CHARS).collect::<String>())
        .ok_or("The click carries no Slack user.")?;
    Ok(Some(Click {
        decision,
        incident,
        approval_id: approval_id.to_string(),
        approver,
    }))
}

async fn refusal_text(state: &AppState, id: &IncidentId, e: &DecideError) -> String {
    match e {
        DecideError::NotFound(_) => format!("There is no incident {id}."),
        DecideError::NotAwaiting(_) => format!(
            "Incident {id} is not waiting for this approval: it was decided elsewhere, or the \
             message belongs to an earlier request."
        ),
        DecideError::AlreadyDecided(what) => {
            let detail = match recorded_decision(state.app.deps.store.as_ref(), id).await {
                Some(d) => mrkdwn(&describe_decision(&d)),
                None => what.clone(),
            };
            format!("This plan was already decided: {detail}.")
        }
        DecideError::Expired(at) => format!(
            "The approval window closed at {}; the incident is escalated to on-call.",
            iras_core::format_time(*at)
        ),
        DecideError::AlreadyApproved(who) => format!(
            "{} already approved this plan: it needs another person's approval.",
            mrkdwn(who)
        ),
        DecideError::Unavailable(detail) => {
            tracing::error!(incident = %id, error = %detail, "slack decision not delivered");
            "The decision could not be delivered to the pipeline; nothing was decided. Try again shortly.".into()
        }
    }
}

pub(crate) async fn interactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Some(slack) = state.slack.as_ref() else {
        return Err(ApiError::not_found(
            "Slack interactivity is not configured: set SLACK_SIGNING_SECRET.",
        ));
    };
    let body = body.map_err(|r| ApiError::new(r.status(), "The body could not be read."))?;
    let now = state.app.deps.clock.now();
    if let Err(why) = verify(&slack.signing_secret, &headers, &body, now) {
        tracing::warn!(why, "refused a Slack interaction");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, why));
    }
    let payload = interaction_payload(&body).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "The body has no `payload` field holding JSON.",
        )
    })?;
    let click = match read_click(&payload) {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(StatusCode::OK.into_response()),
        Err(why) => return Ok(reply(why)),
    };

    // The decision runs in its own task: if it outlives our budget it still completes (a
    // decision cut in half could record an approval the pipeline never hears of).
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<Incident, DecideError>>();
    let app = state.app.clone();
    let id = click.incident.clone();
    let request = DecisionRequest {
        approval_id: Some(click.approval_id.clone()),
        decision: click.decision,
        approver: click.approver.clone(),
        channel: "slack".into(),
        comment: None,
        identity: iras_core::Identity::Unstated,
    };
    let mut task = tokio::spawn(async move {
        // `decide` also tells the notifier (thread reply and message edit), whatever the channel.
        let result = decide(&app.deps, app.callbacks.as_ref(), &id, request).await;
        let _ = tx.send(result);
    });

    let outcome = tokio::time::timeout(DECISION_BUDGET, rx).await;
    let text = match outcome {
        Ok(Ok(Ok(stored))) => {
            tracing::info!(incident = %click.incident, decision = click.decision.as_str(), approver = %click.approver, "plan decided via slack");
            let left = REPLY_BUDGET.saturating_sub(started.elapsed());
            let _ = tokio::time::timeout(left, &mut task).await;
            match click.decision {
                _ if stored.decision_delivery_pending() => format!(
                    "Decision by {} recorded; the pipeline could not be reached just now and IRAS delivers it as soon as it answers.",
                    mrkdwn(&click.approver)
                ),
                Decision::Approved => format!(
                    "Plan approved by {}. IRAS is applying it.",
                    mrkdwn(&click.approver)
                ),
                Decision::Rejected => format!(
                    "Plan rejected by {}. On-call is being paged.",
                    mrkdwn(&click.approver)
                ),
                Decision::Recovered => "The source recovered; nothing was applied.".into(),
            }
        }
        Ok(Ok(Err(e))) => refusal_text(&state, &click.incident, &e).await,
        Ok(Err(_)) => {
            "The decision failed unexpectedly; nothing may have been recorded. Check the incident."
                .into()
        }
        Err(_) => {
            tracing::warn!(incident = %click.incident, "slack decision still running after the budget");
            "IRAS is still recording the decision; the incident thread will say when it is done."
                .into()
        }
    };
    Ok(reply(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's published example (docs: "Verifying requests from Slack").
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TIMESTAMP: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn headers(ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, ts.parse().unwrap());
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        h
    }

    fn at(unix: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(unix, 0).unwrap()
    }

    #[test]
    fn slacks_published_example_verifies() {
        assert_eq!(
            slack_signature(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY.as_bytes()),
            DOC_SIGNATURE
        );
        let h = headers(DOC_TIMESTAMP, DOC_SIGNATURE);
        assert_eq!(
            verify(DOC_SECRET, &h, DOC_BODY.as_bytes(), at(1531420618 + 60)),
            Ok(())
        );
    }

    #[test]
    fn tampering_staleness_and_missing_headers_are_refused() {
        let h = headers(DOC_TIMESTAMP, DOC_SIGNATURE);
        let now = at(1531420618);
        let tampered = DOC_BODY.replace("roadrunner", "coyote");
        assert!(verify(DOC_SECRET, &h, tampered.as_bytes(), now).is_err());
        assert!(verify("another-secret", &h, DOC_BODY.as_bytes(), now).is_err());
        assert!(verify(DOC_SECRET, &h, DOC_BODY.as_bytes(), at(1531420618 + 301)).is_err());
        assert!(verify(DOC_SECRET, &h, DOC_BODY.as_bytes(), at(1531420618 - 301)).is_err());
        assert!(verify(DOC_SECRET, &HeaderMap::new(), DOC_BODY.as_bytes(), now).is_err());
        let no_sig = {
            let mut h = HeaderMap::new();
            h.insert(TIMESTAMP_HEADER, DOC_TIMESTAMP.parse().unwrap());
            h
        };
        assert!(verify(DOC_SECRET, &no_sig, DOC_BODY.as_bytes(), now).is_err());
    }

    #[test]
    fn the_payload_field_is_decoded() {
        assert_eq!(
            interaction_payload(b"a=1&payload=%7B%22x%22%3A+1%7D"),
            Some(json!({"x": 1}))
        );
        // Slack's sample is a slash command: it has no payload.
        assert_eq!(interaction_payload(DOC_BODY.as_bytes()), None);
        assert_eq!(interaction_payload(b"a=1"), None);
        assert_eq!(interaction_payload(b"payload=%zz"), None);
        assert_eq!(interaction_payload(b"payload=not+json"), None);
        // Two payloads are ambiguous: refused rather than one picked.
        assert_eq!(interaction_payload(b"payload=%7B%7D&payload=%7B%7D"), None);
    }

    #[test]
    fn plus_is_a_space_and_an_escaped_plus_is_a_plus() {
        let body = "token=t&payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U1%22%2C%22username%22%3A%22ada+lovelace%2Bops%22%7D%2C%22actions%22%3A%5B%7B%22action_id%22%3A%22iras_approve%22%2C%22value%22%3A%22inc-1%3Aapr-2%22%7D%5D%7D&trigger_id=1.2";
        let payload = interaction_payload(body.as_bytes()).unwrap();
        let click = read_click(&payload).unwrap().unwrap();
        assert_eq!(click.approver, "ada lovelace+ops");
        assert_eq!(click.approval_id, "apr-2");
    }

    #[test]
    fn a_click_names_the_decision_the_approval_and_the_person() {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": "U2CERLKJA", "username": "alice", "name": "alice", "team_id": "T1"},
            "actions": [{"action_id": "iras_reject", "value": "inc-1:apr-2", "type": "button"}]
        });
        assert_eq!(
            read_click(&payload).unwrap(),
            Some(Click {
                decision: Decision::Rejected,
                incident: IncidentId("inc-1".into()),
                approval_id: "apr-2".into(),
                approver: "alice".into(),
            })
        );
        let only_id = json!({"type": "block_actions", "user": {"id": "U1"},
            "actions": [{"action_id": "iras_approve", "value": "inc-1:apr-2"}]});
        assert_eq!(read_click(&only_id).unwrap().unwrap().approver, "U1");
        let link = json!({"type": "block_actions", "user": {"id": "U1"},
            "actions": [{"action_id": "iras_open_page", "value": ""}]});
        assert_eq!(read_click(&link), Ok(None));
        let bad = json!({"type": "block_actions", "user": {"id": "U1"},
            "actions": [{"action_id": "iras_approve", "value": "../x:apr"}]});
        assert!(read_click(&bad).is_err());
        assert_eq!(read_click(&json!({"type": "view_submission"})), Ok(None));
    }
}

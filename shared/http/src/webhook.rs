//! `POST /webhook/<source>`: authenticate, read the source's payload into alerts, ingest each,
//! start the pipelines of the incidents they open. `/webhook/alert` detects the source from
//! the body and keeps accepting IRAS's flat shape; `/webhook/sns` verifies every message's
//! signature before acting on it.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use iras_core::signing::{hmac_hex, secure_eq};
use iras_core::stages::{open_and_start, IngestFailure, Ingested};
use iras_core::{json_depth, Alert, MAX_ALERT_DEPTH};
use iras_intake::sns::{self, SnsError, SnsKind};
use iras_intake::{detect, parse, IntakeError, Source};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

pub const SIGNATURE_HEADER: &str = "x-iras-signature";
pub const TIMESTAMP_HEADER: &str = "x-iras-timestamp";
/// How far a signed request's timestamp may be from our clock, either way.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;
/// Signatures remembered for replay detection. Legitimate senders stay far below this many
/// alerts per ten minutes; the bound only keeps memory fixed if something floods us.
const REPLAY_CAPACITY: usize = 10_000;

/// Signatures seen recently, each with the unix time after which its timestamp is stale and
/// the freshness check refuses it anyway. Per process: on Lambda each instance has its own,
/// which still stops a replay to the same instance; the ±5 minute window bounds the rest.
#[derive(Default)]
pub(crate) struct ReplayGuard {
    seen: HashMap<String, i64>,
}

impl ReplayGuard {
    /// Records `signature`; false if it was already seen and is still within its window.
    pub fn first_use(&mut self, signature: &str, stale_after: i64, now: i64) -> bool {
        if let Some(&until) = self.seen.get(signature) {
            if until >= now {
                return false;
            }
        }
        if self.seen.len() >= REPLAY_CAPACITY {
            self.seen.retain(|_, until| *until >= now);
        }
        if self.seen.len() >= REPLAY_CAPACITY {
            // Still full of live signatures: drop the one closest to going stale, whose
            // replay window is the shortest. Logged, because it should never happen.
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(s, _)| s.clone())
            {
                tracing::warn!("webhook replay cache full; forgetting the oldest signature");
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(signature.to_string(), stale_after);
        true
    }

    /// Lets a sender retry with the same signature after *we* failed (store or start down):
    /// the request was never acted on, so repeating it is not a replay.
    pub fn forget(&mut self, signature: &str) {
        self.seen.remove(signature);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

/// How a request proved it came from a sender that knows the secret.
#[derive(Debug, PartialEq)]
enum Authenticated {
    /// No secret configured: the webhook is open (local use).
    Open,
    Bearer,
    /// HTTP basic auth with the secret as password (SNS can only do this, in the URL).
    Basic,
    /// The source's own signature over the body (PagerDuty v3, Sentry).
    SourceSigned,
    /// Signed; the signature is remembered as used.
    Signed(String),
}

impl Authenticated {
    fn method(&self) -> &'static str {
        match self {
            Authenticated::Open => "none",
            Authenticated::Bearer => "bearer",
            Authenticated::Basic => "basic",
            Authenticated::SourceSigned => "source signature",
            Authenticated::Signed(_) => "signature",
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The token of `Authorization: Bearer <token>` (scheme is case-insensitive per RFC 7235).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = header(headers, AUTHORIZATION.as_str())?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The message a sender signs: `<timestamp header>.<raw body>`, so neither can be swapped.
pub fn signed_message(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + 1 + body.len());
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'.');
    m.extend_from_slice(body);
    m
}

/// The `X-IRAS-Signature` value a sender must send for `body` at unix time `timestamp`.
pub fn webhook_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hmac_hex(secret.as_bytes(), &signed_message(timestamp, body))
    )
}

/// The password of `Authorization: Basic <base64 user:password>`.
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = header(headers, AUTHORIZATION.as_str())?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, p)| p.to_string())
}

/// The source's own body signature, where it has one: PagerDuty v3 sends
/// `X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>` (several, comma-separated, while
/// a secret rotates); Sentry sends `Sentry-Hook-Signature: <hex HMAC-SHA256 of the body>`.
fn source_signature_ok(
    source: Option<Source>,
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
) -> bool {
    let expected = hmac_hex(secret.as_bytes(), body);
    match source {
        Some(Source::PagerDuty) => header(headers, "x-pagerduty-signature").is_some_and(|v| {
            v.split(',')
                .filter_map(|s| s.trim().strip_prefix("v1="))
                .any(|sig| secure_eq(&sig.to_ascii_lowercase(), &expected))
        }),
        Some(Source::Sentry) => header(headers, "sentry-hook-signature")
            .is_some_and(|sig| secure_eq(&sig.to_ascii_lowercase(), &expected)),
        _ => false,
    }
}

fn authenticate(
    state: &AppState,
    route: Option<Source>,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Authenticated, ApiError> {
    let http = &state.app.http;
    // A source's own secret, else the one every route shares.
    let secret = route
        .and_then(|s| http.source_secrets.get(&s))
        .or(http.webhook_secret.as_ref());
    let Some(secret) = secret.map(String::as_str) else {
        return Ok(Authenticated::Open);
    };
    if secret.trim().is_empty() {
        // Fail closed: an empty key would make every signature forgeable.
        return Err(ApiError::unauthorized(
            "This webhook cannot authenticate requests right now.",
        ));
    }
    if let Some(token) = bearer_token(headers) {
        if secure_eq(token, secret) {
            return Ok(Authenticated::Bearer);
        }
    }
    if basic_password(headers).is_some_and(|p| secure_eq(&p, secret)) {
        return Ok(Authenticated::Basic);
    }
    if source_signature_ok(route, headers, body, secret) {
        return Ok(Authenticated::SourceSigned);
    }
    let Some(signature) = header(headers, SIGNATURE_HEADER) else {
        return Err(ApiError::unauthorized(
            "This webhook requires authentication: sign the body (X-IRAS-Signature with \
             X-IRAS-Timestamp), send Authorization: Bearer <secret>, or basic auth with the \
             secret as password.",
        ));
    };
    let Some(timestamp) = header(headers, TIMESTAMP_HEADER) else {
        return Err(ApiError::unauthorized(
            "A signed request must carry X-IRAS-Timestamp (unix seconds).",
        ));
    };
    let Ok(sent_at) = timestamp.parse::<i64>() else {
        return Err(ApiError::unauthorized(
            "X-IRAS-Timestamp must be whole unix seconds.",
        ));
    };
    let presented = signature.to_ascii_lowercase();
    if !secure_eq(&presented, &webhook_signature(secret, timestamp, body)) {
        return Err(ApiError::unauthorized(
            "The signature does not match: expected sha256=<hex HMAC-SHA256 of \"<timestamp>.<body>\">.",
        ));
    }
    if (now - sent_at).abs() > SIGNATURE_TOLERANCE_SECONDS {
        return Err(ApiError::unauthorized(format!(
            "X-IRAS-Timestamp is more than {} minutes from our clock; sign the request again.",
            SIGNATURE_TOLERANCE_SECONDS / 60
        )));
    }
    let stale_after = sent_at + SIGNATURE_TOLERANCE_SECONDS;
    let first = state
        .replay
        .lock()
        .expect("replay guard poisoned")
        .first_use(&presented, stale_after, now);
    if !first {
        return Err(ApiError::unauthorized(
            "This signed request was already received (replay); sign it again with a new timestamp.",
        ));
    }
    Ok(Authenticated::Signed(presented))
}

/// "alert is missing required field `title`" → "Alert is missing required field `title`."
fn sentence(s: &str) -> String {
    let mut chars = s.chars();
    let mut out: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// JSON, or SNS's `text/plain`; anything else (a form, XML) is not an alert.
fn content_type_ok(headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let media = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media.is_empty()
        || media == "application/json"
        || media == "text/plain"
        || (media.starts_with("application/") && media.ends_with("+json"))
}

fn unprocessable(e: &IntakeError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, sentence(&e.to_string())).field(e.field.clone())
}

/// Reads the body as JSON IRAS can store: an object, nested no deeper than the store holds.
fn read_json(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("The body is not valid JSON ({e})."),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The body must be a JSON object.",
        ));
    }
    let depth = json_depth(&value);
    if depth > MAX_ALERT_DEPTH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "The body nests {depth} levels deep; IRAS stores alerts nested at most \
                 {MAX_ALERT_DEPTH} levels."
            ),
        )
        .field("body"));
    }
    Ok(value)
}

/// `POST /webhook/{source}`.
pub(crate) async fn receive(
    State(state): State<AppState>,
    route: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = route.map(|Path(r)| r).unwrap_or_default();
    let Some(route_source) = Source::from_route(&route) else {
        return Err(ApiError::not_found(format!(
            "There is no webhook for `{route}`: use /webhook/alert (any source, detected) or \
             one of /webhook/alertmanager, grafana, datadog, pagerduty, opsgenie, sentry, sns."
        )));
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The alert is larger than {} bytes.",
                    state.app.http.body_limit_bytes
                ),
            ))
        }
        Err(rejection) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("The body could not be read ({}).", rejection.body_text()),
            ))
        }
    };
    if !content_type_ok(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Alerts are JSON: send Content-Type: application/json (SNS's text/plain is read \
             as JSON too).",
        ));
    }
    let now = state.app.deps.clock.now().timestamp();
    let auth = authenticate(&state, route_source, &headers, &body, now).inspect_err(|e| {
        tracing::warn!(reason = %e.error, route, "webhook request refused");
    })?;
    let outcome = handle(&state, route_source, &body).await;
    if let (Err(e), Authenticated::Signed(signature)) = (&outcome, &auth) {
        if e.status.is_server_error() {
            state
                .replay
                .lock()
                .expect("replay guard poisoned")
                .forget(signature);
        }
    }
    match outcome? {
        Handled::Reply(reply) => Ok(reply),
        Handled::Alerts(source, results) => {
            tracing::info!(
                source = source.as_str(),
                alerts = results.len(),
                auth = auth.method(),
                "alerts accepted"
            );
            Ok(accepted(source, &results))
        }
    }
}

/// The one route of IRAS's first webhook, kept as it was.
pub(crate) async fn receive_alert(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    receive(state, Ok(Path("alert".to_string())), headers, body).await
}

/// What a delivery became: a response of its own (SNS confirmations), or ingested alerts.
enum Handled {
    Reply(Response),
    Alerts(Source, Vec<Ingested>),
}

async fn handle(state: &AppState, route: Option<Source>, body: &[u8]) -> Result<Handled, ApiError> {
    let value = read_json(body)?;
    let source = route.unwrap_or_else(|| detect(&value));
    let now = state.app.deps.clock.now();
    let alerts = if source == Source::Sns {
        match sns_delivery(state, &value).await? {
            Some(alerts) => alerts,
            None => {
                return Ok(Handled::Reply(
                    (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
                ))
            }
        }
    } else {
        parse(source, value, now, &state.app.http.intake).map_err(|e| {
            // A flat alert that is not even an object was refused above; everything else
            // names the field.
            unprocessable(&e)
        })?
    };
    let mut results = Vec::with_capacity(alerts.len());
    for alert in alerts {
        results.push(ingest_one(state, alert).await?);
    }
    Ok(Handled::Alerts(source, results))
}

/// A verified SNS message: a confirmation is confirmed (`None`: nothing to ingest), an
/// unsubscribe confirmation logged, a notification's alerts returned.
async fn sns_delivery(state: &AppState, value: &Value) -> Result<Option<Vec<Alert>>, ApiError> {
    let envelope = sns::envelope(value).map_err(|e| unprocessable(&e))?;
    let Some(verifier) = state.sns.as_ref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This IRAS cannot verify SNS signatures (no SNS transport configured).",
        ));
    };
    let refused = |e: SnsError| match e {
        SnsError::NotAuthentic(why) => {
            tracing::warn!(topic = %envelope.topic_arn, %why, "SNS message refused");
            ApiError::new(StatusCode::FORBIDDEN, format!("{}.", sentence(&why)))
        }
        SnsError::Unreachable(why) => ApiError::unavailable("SNS could not be reached", why),
    };
    match envelope.kind {
        SnsKind::SubscriptionConfirmation => {
            verifier.confirm(&envelope).await.map_err(refused)?;
            tracing::info!(topic = %envelope.topic_arn, "SNS subscription confirmed");
            Ok(None)
        }
        SnsKind::UnsubscribeConfirmation => {
            verifier.verify(&envelope).await.map_err(refused)?;
            tracing::warn!(topic = %envelope.topic_arn, "SNS subscription removed: no more alerts from this topic");
            Ok(None)
        }
        SnsKind::Notification => {
            verifier.verify(&envelope).await.map_err(refused)?;
            sns::notification_alerts(&envelope)
                .map(Some)
                .map_err(|e| unprocessable(&e))
        }
    }
}

async fn ingest_one(state: &AppState, alert: Alert) -> Result<Ingested, ApiError> {
    let app = &state.app;
    match open_and_start(
        &app.deps,
        app.starter.as_ref(),
        app.callbacks.as_ref(),
        alert,
    )
    .await
    {
        Ok(ingested) => Ok(ingested),
        Err(IngestFailure::NotRecorded(e)) => {
            Err(ApiError::unavailable("The alert could not be recorded", e))
        }
        Err(IngestFailure::NotStarted { incident_id, .. }) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The incident was recorded but its pipeline could not be started; send the alert \
             again to retry.",
        )
        .with("incident_id", incident_id.to_string())),
    }
}

fn result_json(i: &Ingested) -> Value {
    json!({
        "incident_id": i.incident_id,
        "status": i.status.map(|s| s.as_str()),
        "outcome": i.outcome.as_str(),
        "state": i.state.as_str(),
        "deduplicated": i.is_repeat(),
        "key": i.fingerprint,
    })
}

/// `202`: the first alert's result at the top (the flat shape's answer, unchanged), and every
/// alert's in `results`.
fn accepted(source: Source, results: &[Ingested]) -> Response {
    let mut body = match results.first() {
        Some(first) => result_json(first),
        None => json!({"incident_id": null, "status": null, "deduplicated": false}),
    };
    body["source"] = json!(source.as_str());
    body["alerts"] = json!(results.len());
    body["results"] = Value::Array(results.iter().map(result_json).collect());
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_usable_once_within_its_window() {
        let mut g = ReplayGuard::default();
        assert!(g.first_use("a", 1_300, 1_000));
        assert!(!g.first_use("a", 1_300, 1_100));
        assert!(g.first_use("b", 1_300, 1_100));
        // Past its window the freshness check refuses it anyway; the guard may forget it.
        assert!(g.first_use("a", 1_700, 1_400));
        g.forget("b");
        assert!(g.first_use("b", 1_300, 1_100));
    }

    #[test]
    fn the_replay_guard_stays_bounded() {
        let mut g = ReplayGuard::default();
        for i in 0..REPLAY_CAPACITY + 10 {
            assert!(g.first_use(&format!("sig-{i}"), 10_000 + i as i64, 1_000));
        }
        assert_eq!(g.len(), REPLAY_CAPACITY);
        // The most recent ones are still remembered.
        let last = format!("sig-{}", REPLAY_CAPACITY + 9);
        assert!(!g.first_use(&last, 99_999, 1_000));
    }

    #[test]
    fn stale_signatures_are_pruned_when_full() {
        let mut g = ReplayGuard::default();
        for i in 0..REPLAY_CAPACITY {
            g.first_use(&format!("old-{i}"), 1_000, 900);
        }
        assert!(g.first_use("new", 2_000, 1_500));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            sentence("alert is missing required field `title`"),
            "Alert is missing required field `title`."
        );
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = webhook_signature("s", "100", b"{}");
        assert!(a.starts_with("sha256="));
        assert_ne!(a, webhook_signature("s", "101", b"{}"));
        assert_ne!(a, webhook_signature("s", "100", b"{ }"));
        assert_eq!(a, format!("sha256={}", hmac_hex(b"s", b"100.{}")));
    }
}

//! `POST /webhook/alert`: authenticate, validate, ingest, start the pipeline.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use iras_core::signing::{hmac_hex, secure_eq};
use iras_core::stages::{open_and_start, IngestFailure, Ingested};
use iras_core::{Alert, AlertError};
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
    /// Signed; the signature is remembered as used.
    Signed(String),
}

impl Authenticated {
    fn method(&self) -> &'static str {
        match self {
            Authenticated::Open => "none",
            Authenticated::Bearer => "bearer",
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

fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Authenticated, ApiError> {
    let Some(secret) = state.app.http.webhook_secret.as_deref() else {
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
    let Some(signature) = header(headers, SIGNATURE_HEADER) else {
        return Err(ApiError::unauthorized(
            "This webhook requires authentication: sign the body (X-IRAS-Signature with \
             X-IRAS-Timestamp) or send Authorization: Bearer <secret>.",
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

fn validate(body: &[u8]) -> Result<Alert, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("The body is not valid JSON ({e})."),
        )
    })?;
    Alert::from_json(value).map_err(|e| match e {
        AlertError::NotAnObject => ApiError::new(StatusCode::BAD_REQUEST, sentence(&e.to_string())),
        _ => {
            let err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, sentence(&e.to_string()));
            match e.field() {
                Some(f) => err.field(f),
                None => err,
            }
        }
    })
}

pub(crate) async fn receive_alert(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
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
    let now = state.app.deps.clock.now().timestamp();
    let auth = authenticate(&state, &headers, &body, now).inspect_err(|e| {
        tracing::warn!(reason = %e.error, "webhook request refused");
    })?;
    let outcome = handle(&state, &body).await;
    if let (Err(e), Authenticated::Signed(signature)) = (&outcome, &auth) {
        if e.status.is_server_error() {
            state
                .replay
                .lock()
                .expect("replay guard poisoned")
                .forget(signature);
        }
    }
    let (ingested, id) = outcome?;
    tracing::info!(
        incident = %id,
        deduplicated = ingested.is_repeat(),
        auth = auth.method(),
        "alert accepted"
    );
    Ok(accepted(&ingested))
}

async fn handle(
    state: &AppState,
    body: &[u8],
) -> Result<(Ingested, iras_core::IncidentId), ApiError> {
    let alert = validate(body)?;
    let app = &state.app;
    match open_and_start(&app.deps, app.starter.as_ref(), alert).await {
        Ok(ingested) => {
            let id = ingested.incident().incident_id.clone();
            Ok((ingested, id))
        }
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

fn accepted(ingested: &Ingested) -> Response {
    let incident = ingested.incident();
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "incident_id": incident.incident_id,
            "status": incident.status.as_str(),
            "deduplicated": ingested.is_repeat(),
        })),
    )
        .into_response()
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

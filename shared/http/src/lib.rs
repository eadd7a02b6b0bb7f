//! The one HTTP router of IRAS: the alert webhook, the incident API, approvals (by API key
//! and by signed page) and health. The local runtime serves it with `axum::serve`; on AWS,
//! `lambda_http` hands it API Gateway requests. Nothing here knows which.

mod approvals;
mod cross_site;
mod error;
pub mod html;
mod incidents;
mod page;
pub mod slack;
mod webhook;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use iras_core::config::{ConfigError, EnvVars};
use iras_core::stages::Deps;
use iras_core::{IncidentQuery, PipelineStarter, TaskCallbacks};
use iras_intake::sns::{SnsTransport, SnsVerifier};
use iras_intake::{IntakeConfig, Source};
use serde_json::json;

use crate::error::ApiError;

pub use webhook::{
    webhook_signature, SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECONDS, TIMESTAMP_HEADER,
};

/// The webhook's default body limit: an alert is a few KB; anything near this is not one.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 256 * 1024;

/// Secrets and limits of the HTTP surface.
#[derive(Clone)]
pub struct HttpConfig {
    /// `WEBHOOK_SECRET`: when set, every alert must be signed or carry it as a bearer token.
    pub webhook_secret: Option<String>,
    /// `APPROVAL_API_KEY`, comma-separated: several keys let one be rotated out while the
    /// other still works. Empty disables API approvals.
    pub api_keys: Vec<String>,
    /// `APPROVAL_API_KEYS=name:key,name:key`: each key names who holds it, and the name is
    /// the approver's checked identity (two approvals by one key are one person). The
    /// unnamed `APPROVAL_API_KEY`s are all one identity, `api`: a shared key names nobody.
    pub named_api_keys: Vec<(String, String)>,
    /// `APPROVAL_SIGNING_KEY`: signs and verifies approval links. Empty disables the pages.
    pub approval_signing_key: Vec<u8>,
    pub body_limit_bytes: usize,
    /// `WEBHOOK_SECRET_<SOURCE>`: a source's own secret for its own route, in place of
    /// `WEBHOOK_SECRET` there.
    pub source_secrets: HashMap<Source, String>,
    /// What the parsers are told (`ALERT_SERVICE_LABELS`).
    pub intake: IntakeConfig,
    /// Fetches SNS signing certificates and confirms subscriptions; without it `/webhook/sns`
    /// answers 503 (nothing unverified is ever acted on).
    pub sns_transport: Option<Arc<dyn SnsTransport>>,
    /// `READ_API_KEYS`, comma-separated: keys that may read incidents and post-mortems but not
    /// decide. The approval keys may read too.
    pub read_api_keys: Vec<String>,
    /// `API_AUTH=iam`: API Gateway checks a SigV4 signature on the read and API-approval
    /// routes, and the caller is the IAM principal it names ([`GatewayCaller`]); bearer keys
    /// are not read there (SigV4 uses the `Authorization` header). `keys` (the default): the
    /// router checks bearer keys itself.
    pub gateway_iam: bool,
    /// `ALLOWED_HOSTS`, comma-separated `host[:port]`: when set, a request whose `Host` is not
    /// one of them is refused (a DNS-rebinding page cannot reach a local server by its name).
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            webhook_secret: None,
            api_keys: Vec::new(),
            named_api_keys: Vec::new(),
            approval_signing_key: Vec::new(),
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            source_secrets: HashMap::new(),
            intake: IntakeConfig::default(),
            sns_transport: None,
            read_api_keys: Vec::new(),
            gateway_iam: false,
            allowed_hosts: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// Reads `WEBHOOK_SECRET`, `APPROVAL_API_KEY`, `APPROVAL_SIGNING_KEY` and
    /// `WEBHOOK_BODY_LIMIT_BYTES`; blank values count as unset.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = EnvVars(vars);
        let get = |k: &str| env.get(k);
        let mut c = HttpConfig {
            webhook_secret: env.string("WEBHOOK_SECRET"),
            api_keys: env.list("APPROVAL_API_KEY"),
            read_api_keys: env.list("READ_API_KEYS"),
            allowed_hosts: env
                .list("ALLOWED_HOSTS")
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            approval_signing_key: get("APPROVAL_SIGNING_KEY")
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default(),
            source_secrets: Source::ALL
                .into_iter()
                .filter_map(|s| env.string(&s.secret_var()).map(|v| (s, v)))
                .collect(),
            intake: IntakeConfig::from_vars(vars),
            ..HttpConfig::default()
        };
        c.named_api_keys = named_keys(&env.list("APPROVAL_API_KEYS"))?;
        c.gateway_iam = match get("API_AUTH").map(str::trim) {
            None | Some("keys") => false,
            Some("iam") => true,
            Some(other) => {
                return Err(ConfigError {
                    name: "API_AUTH".into(),
                    problem: format!("`{other}` is neither `keys` nor `iam`"),
                })
            }
        };
        if let Some(v) = get("WEBHOOK_BODY_LIMIT_BYTES") {
            c.body_limit_bytes = v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError {
                    name: "WEBHOOK_BODY_LIMIT_BYTES".into(),
                    problem: format!("`{v}` is not a positive number of bytes"),
                })?;
        }
        Ok(c)
    }

    /// Every usable approval key with the identity it proves.
    pub(crate) fn approval_keys(&self) -> Vec<(&str, &str)> {
        self.named_api_keys
            .iter()
            .map(|(name, key)| (name.as_str(), key.trim()))
            .chain(self.api_keys.iter().map(|k| (SHARED_KEY_NAME, k.trim())))
            .filter(|(_, k)| !k.is_empty())
            .collect()
    }
}

/// The IAM principal (its ARN) that API Gateway's IAM authorizer checked, put on the request
/// by the Lambda adapter from the request context. An extension, never a header: a client
/// cannot set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCaller(pub String);

/// The identity of every unnamed `APPROVAL_API_KEY`.
pub const SHARED_KEY_NAME: &str = "api";

/// `name:key` entries of `APPROVAL_API_KEYS`. A mistake is named by its position, never by
/// echoing the entry: it holds a secret.
fn named_keys(entries: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let problem = |p: &str| ConfigError {
            name: "APPROVAL_API_KEYS".into(),
            problem: format!("entry {}: {p}", i + 1),
        };
        let (name, key) = entry
            .split_once(':')
            .ok_or_else(|| problem("expected name:key"))?;
        let (name, key) = (name.trim(), key.trim());
        if name.is_empty() || key.is_empty() {
            return Err(problem("the name and the key must both be non-empty"));
        }
        let valid = name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if !valid {
            return Err(problem(
                "a name is up to 64 letters, digits and - _ . @ (it is shown as the approver)",
            ));
        }
        if name == SHARED_KEY_NAME || keys.iter().any(|(n, _)| n == name) {
            return Err(problem(&format!(
                "the name {name} is already taken: one name, one holder"
            )));
        }
        keys.push((name.to_string(), key.to_string()));
    }
    Ok(keys)
}

/// Secrets are shown only as "set"/"unset" so a logged config leaks nothing.
impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |b: bool| if b { "<set>" } else { "<unset>" };
        f.debug_struct("HttpConfig")
            .field("webhook_secret", &set(self.webhook_secret.is_some()))
            .field("api_keys", &format!("<{} key(s)>", self.api_keys.len()))
            .field(
                "named_api_keys",
                &self
                    .named_api_keys
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field(
                "read_api_keys",
                &format!("<{} key(s)>", self.read_api_keys.len()),
            )
            .field("allowed_hosts", &self.allowed_hosts)
            .field(
                "approval_signing_key",
                &set(!self.approval_signing_key.is_empty()),
            )
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field(
                "source_secrets",
                &self
                    .source_secrets
                    .keys()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("intake", &self.intake)
            .field("sns_transport", &set(self.sns_transport.is_some()))
            .finish()
    }
}

/// What the router needs from the process that serves it.
pub struct App {
    pub deps: Arc<Deps>,
    pub starter: Arc<dyn PipelineStarter>,
    pub callbacks: Arc<dyn TaskCallbacks>,
    pub http: HttpConfig,
    /// The runtime's own liveness (the local interpreter's workers, or always Ok on Lambda).
    pub runtime_health: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// Router state: the app plus what the router itself must remember between requests.
pub(crate) struct Shared {
    pub app: Arc<App>,
    pub replay: Mutex<webhook::ReplayGuard>,
    pub slack: Option<slack::SlackInteractivity>,
    /// Verifies SNS messages; caches the certificates it fetched.
    pub sns: Option<SnsVerifier>,
}

pub(crate) type AppState = Arc<Shared>;

/// The whole HTTP surface: webhook, incidents, approvals and health; Slack's buttons too
/// when `SLACK_SIGNING_SECRET` is set.
pub fn router(app: Arc<App>) -> Router {
    // `iras serve` and the Lambda boot check this configuration before they serve; should it
    // still be wrong here, the buttons are off (refused), never open to everyone.
    let slack = slack::SlackInteractivity::from_env().unwrap_or_else(|e| {
        tracing::error!(error = %e, "Slack interactivity is off");
        None
    });
    router_with_slack(app, slack)
}

/// [`router`] with Slack interactivity given by the caller (`None`: `/slack/interactions`
/// answers 404).
pub fn router_with_slack(app: Arc<App>, slack: Option<slack::SlackInteractivity>) -> Router {
    let limit = app.http.body_limit_bytes;
    if app
        .http
        .webhook_secret
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        tracing::error!("WEBHOOK_SECRET is set but blank: every alert will be refused");
    }
    let sns = app.http.sns_transport.clone().map(SnsVerifier::new);
    let state = Arc::new(Shared {
        app,
        replay: Mutex::new(webhook::ReplayGuard::default()),
        slack,
        sns,
    });
    Router::new()
        .route("/webhook/alert", post(webhook::receive_alert))
        .route("/webhook/{source}", post(webhook::receive))
        .route("/incidents", get(incidents::list))
        .route("/incidents/{id}", get(incidents::report))
        .route("/incidents/{id}/postmortem", get(incidents::postmortem))
        .route("/incidents/{id}/audit", get(incidents::audit))
        .route("/incidents/{id}/approve", post(approvals::approve))
        .route("/incidents/{id}/reject", post(approvals::reject))
        .route(
            "/approvals/{approval_id}",
            get(page::show).post(page::submit),
        )
        .route("/health", get(health))
        .route("/slack/interactions", post(slack::interactions))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Every body is bounded, not just the webhook's: the approval form and API bodies too.
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_host,
        ))
        .with_state(state)
}

/// Refuses a request addressed to a name this server was not configured to answer for.
async fn check_host(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let allowed = &state.app.http.allowed_hosts;
    if !allowed.is_empty() {
        let host = req
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.trim().to_ascii_lowercase())
            .or_else(|| {
                req.uri()
                    .authority()
                    .map(|a| a.as_str().to_ascii_lowercase())
            });
        if !host.is_some_and(|h| allowed.contains(&h)) {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "This server does not answer for that host name.",
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "There is no such resource.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "This method is not allowed on this resource.",
    )
}

/// A store that hangs must not hang the health check with it.
const HEALTH_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn health(State(state): State<AppState>) -> Response {
    let app = &state.app;
    let probe = IncidentQuery {
        limit: 1,
        ..Default::default()
    };
    let store =
        match tokio::time::timeout(HEALTH_STORE_TIMEOUT, app.deps.store.list_incidents(&probe))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "store did not answer within {} s",
                HEALTH_STORE_TIMEOUT.as_secs()
            )),
        };
    let runtime = (app.runtime_health)();
    let healthy = store.is_ok() && runtime.is_ok();
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    if !healthy {
        tracing::warn!(store = %show(&store), runtime = %show(&runtime), "health check degraded");
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Anyone may ask: the answer names what is down, never why (the log has the detail).
    let word = |r: &Result<(), String>| if r.is_ok() { "ok" } else { "degraded" };
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "store": word(&store),
        "runtime": word(&runtime),
    });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_never_prints_secrets() {
        let c = HttpConfig {
            webhook_secret: Some("hook-secret-1".into()),
            api_keys: vec!["api-key-1".into(), "api-key-2".into()],
            approval_signing_key: b"signing-key-1".to_vec(),
            body_limit_bytes: 10,
            source_secrets: [(Source::Sentry, "sentry-secret-1".to_string())].into(),
            ..HttpConfig::default()
        };
        let shown = format!("{c:?}");
        for secret in [
            "hook-secret-1",
            "api-key-1",
            "api-key-2",
            "signing-key-1",
            "sentry-secret-1",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("2 key(s)"), "{shown}");
    }

    #[test]
    fn config_reads_comma_separated_api_keys_and_ignores_blanks() {
        let vars: HashMap<String, String> = [
            ("APPROVAL_API_KEY", " k1, ,k2 "),
            ("WEBHOOK_SECRET", "  "),
            ("APPROVAL_SIGNING_KEY", "sk"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = HttpConfig::from_vars(&vars).unwrap();
        assert_eq!(c.api_keys, vec!["k1", "k2"]);
        assert_eq!(c.webhook_secret, None);
        assert_eq!(c.approval_signing_key, b"sk");
        assert_eq!(c.body_limit_bytes, DEFAULT_BODY_LIMIT_BYTES);
    }

    #[test]
    fn a_bad_body_limit_names_the_variable() {
        let vars: HashMap<String, String> =
            [("WEBHOOK_BODY_LIMIT_BYTES".to_string(), "lots".to_string())].into();
        let e = HttpConfig::from_vars(&vars).unwrap_err();
        assert_eq!(e.name, "WEBHOOK_BODY_LIMIT_BYTES");
    }
}

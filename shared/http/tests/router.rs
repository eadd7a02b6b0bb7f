//! The router end to end, in process: requests through `oneshot`, an in-memory store, the
//! demo scenario's evidence, and fakes that record what the router asked of the runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use iras_core::signing::{approval_path, approval_signature, new_decision_form_token};
use iras_core::stages::*;
use iras_core::testing::*;
use iras_core::*;
use iras_http::{router, webhook_signature, App, HttpConfig};
use iras_scenarios::{Scenario, DEMO_SCENARIO};
use serde_json::{json, Value};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// Fakes

#[derive(Default)]
struct RecordingStarter {
    started: Mutex<Vec<IncidentId>>,
    fail: AtomicBool,
}

#[async_trait]
impl PipelineStarter for RecordingStarter {
    async fn start(&self, id: &IncidentId) -> Result<(), StartError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StartError("state machine unreachable".into()));
        }
        self.started.lock().unwrap().push(id.clone());
        Ok(())
    }
}

#[derive(Default)]
struct RecordingCallbacks {
    successes: Mutex<Vec<(String, Value)>>,
    failures: Mutex<Vec<String>>,
}

#[async_trait]
impl TaskCallbacks for RecordingCallbacks {
    async fn send_task_success(&self, token: &str, output: Value) -> Result<(), CallbackError> {
        self.successes
            .lock()
            .unwrap()
            .push((token.to_string(), output));
        Ok(())
    }
    async fn send_task_failure(
        &self,
        token: &str,
        _e: &str,
        _c: &str,
    ) -> Result<(), CallbackError> {
        self.failures.lock().unwrap().push(token.to_string());
        Ok(())
    }
}

/// A store that is down: every call fails.
struct DownStore;

fn down() -> StoreError {
    StoreError::Unavailable("connection refused".into())
}

#[async_trait]
impl IncidentStore for DownStore {
    async fn create_incident(&self, _: &Incident) -> Result<(), StoreError> {
        Err(down())
    }
    async fn get_incident(&self, _: &IncidentId) -> Result<Option<Incident>, StoreError> {
        Err(down())
    }
    async fn update_incident(&self, _: &Incident) -> Result<Incident, StoreError> {
        Err(down())
    }
    async fn list_incidents(&self, _: &IncidentQuery) -> Result<IncidentPage, StoreError> {
        Err(down())
    }
    async fn find_by_approval_id(&self, _: &str) -> Result<Option<Incident>, StoreError> {
        Err(down())
    }
    async fn latest_with_fingerprint(
        &self,
        _: &str,
    ) -> Result<Option<FingerprintMatch>, StoreError> {
        Err(down())
    }
    async fn record_repeat(
        &self,
        _: &IncidentId,
        _: &AlertRepeat,
    ) -> Result<AlertRepeats, StoreError> {
        Err(down())
    }
    async fn put_attempt(&self, _: &IncidentId, _: InvestigationAttempt) -> Result<(), StoreError> {
        Err(down())
    }
    async fn attempts(&self, _: &IncidentId) -> Result<Vec<InvestigationAttempt>, StoreError> {
        Err(down())
    }
    async fn claim_step(&self, _: &IncidentId, _: &StepRecord) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn finish_step(&self, _: &IncidentId, _: &StepRecord) -> Result<(), StoreError> {
        Err(down())
    }
    async fn steps(&self, _: &IncidentId) -> Result<Vec<StepRecord>, StoreError> {
        Err(down())
    }
    async fn put_postmortem(&self, _: &PostMortem) -> Result<(), StoreError> {
        Err(down())
    }
    async fn postmortem(&self, _: &IncidentId) -> Result<Option<PostMortem>, StoreError> {
        Err(down())
    }
    async fn claim_once(&self, _: &str, _: Timestamp, _: Timestamp) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn release_once(&self, _: &str) -> Result<(), StoreError> {
        Err(down())
    }
    async fn append_audit(
        &self,
        _: &IncidentId,
        _: &iras_core::audit::AuditEntry,
    ) -> Result<(), StoreError> {
        Err(down())
    }
    async fn audit(&self, _: &IncidentId) -> Result<Vec<iras_core::audit::AuditEntry>, StoreError> {
        Err(down())
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture

const HOOK_SECRET: &str = "hook-secret";
const API_KEY: &str = "api-key-1";
const API_KEY_2: &str = "api-key-2";
const SIGNING_KEY: &[u8] = b"page-signing-key";
const TOKEN: &str = "task-token-1";
const AUDIT_KEY: &[u8] = b"router-audit-key";

struct Fx {
    router: Router,
    deps: Arc<Deps>,
    store: Arc<MemoryStore>,
    starter: Arc<RecordingStarter>,
    callbacks: Arc<RecordingCallbacks>,
    clock: Arc<ManualClock>,
    runtime_error: Arc<Mutex<Option<String>>>,
}

fn http_config() -> HttpConfig {
    HttpConfig {
        webhook_secret: None,
        api_keys: vec![API_KEY.into(), API_KEY_2.into()],
        approval_signing_key: SIGNING_KEY.to_vec(),
        body_limit_bytes: 256 * 1024,
        ..HttpConfig::default()
    }
}

fn fixture() -> Fx {
    fixture_with(http_config(), None)
}

fn fixture_with(http: HttpConfig, store_override: Option<Arc<dyn IncidentStore>>) -> Fx {
    fixture_configured(
        http,
        store_override,
        PipelineConfig {
            audit_key: iras_core::audit::AuditKey::new(AUDIT_KEY.to_vec()),
            ..PipelineConfig::default()
        },
    )
}

fn fixture_configured(
    http: HttpConfig,
    store_override: Option<Arc<dyn IncidentStore>>,
    config: PipelineConfig,
) -> Fx {
    let scenario = Arc::new(Scenario::parse(DEMO_SCENARIO, "demo").unwrap());
    let src = Arc::new(scenario.sources());
    let store = Arc::new(MemoryStore::default());
    let clock = Arc::new(ManualClock::at(scenario.alert.timestamp));
    let deps = Arc::new(
        Deps::builder(store_override.unwrap_or_else(|| store.clone()))
            .evidence(EvidenceSources::all_from(src))
            .notifier(Arc::new(RecordingNotifier::default()))
            .pager(Arc::new(RecordingPager::default()))
            .executor(Arc::new(FailingExecutor::default()))
            .clock(clock.clone())
            .source_timeout(Duration::from_secs(5))
            .config(config)
            .build(),
    );
    let starter = Arc::new(RecordingStarter::default());
    let callbacks = Arc::new(RecordingCallbacks::default());
    let runtime_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let health_state = runtime_error.clone();
    let app = Arc::new(App {
        deps: deps.clone(),
        starter: starter.clone(),
        callbacks: callbacks.clone(),
        http,
        runtime_health: Arc::new(move || match health_state.lock().unwrap().clone() {
            None => Ok(()),
            Some(e) => Err(e),
        }),
    });
    Fx {
        router: router(app),
        deps,
        store,
        starter,
        callbacks,
        clock,
        runtime_error,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

impl Fx {
    async fn send(&self, req: Request<Body>) -> Reply {
        let r = self.router.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A GET as an operator makes it: with a read credential (the approval key may read).
    async fn get(&self, uri: &str) -> Reply {
        self.send(
            Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {API_KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// A GET with no credential at all.
    async fn get_anonymous(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post_alert(&self, body: impl Into<Vec<u8>>, headers: &[(&str, String)]) -> Reply {
        let mut req =
            Request::post("/webhook/alert").header(header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        self.send(req.body(Body::from(body.into())).unwrap()).await
    }

    async fn post_api(&self, uri: &str, key: Option<&str>, body: &str) -> Reply {
        let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        self.send(req.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn post_form(&self, uri: &str, form: &[(&str, &str)]) -> Reply {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    async fn incident(&self, id: &IncidentId) -> Incident {
        self.store.get_incident(id).await.unwrap().unwrap()
    }

    async fn count(&self) -> usize {
        self.store
            .list_incidents(&IncidentQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .incidents
            .len()
    }

    /// Opens an incident for `alert` and runs the stages up to a pending approval.
    async fn awaiting_approval(&self, alert: Value) -> (IncidentId, ApprovalOutput) {
        self.awaiting_approval_for(alert, 600).await
    }

    /// [`Fx::awaiting_approval`] with an approval window of `window_seconds`.
    async fn awaiting_approval_for(
        &self,
        alert: Value,
        window_seconds: u64,
    ) -> (IncidentId, ApprovalOutput) {
        let alert = Alert::from_json(alert).unwrap();
        let id = ingest(&self.deps, alert)
            .await
            .unwrap()
            .incident_id
            .expect("an incident");
        let r = IncidentRef {
            incident_id: id.clone(),
        };
        triage(&self.deps, &r).await.unwrap();
        let a = AttemptInput {
            incident_id: id.clone(),
            attempt: 1,
        };
        gather_context(&self.deps, &a).await.unwrap();
        rca(&self.deps, &a).await.unwrap();
        plan(&self.deps, &r).await.unwrap();
        let out = request_approval(
            &self.deps,
            &ApprovalInput {
                incident_id: id.clone(),
                task_token: TOKEN.into(),
                timeout_seconds: Some(window_seconds),
            },
        )
        .await
        .unwrap();
        (id, out)
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The demo alert as a monitoring system would post it.
fn demo_alert_json() -> Value {
    let a = Scenario::parse(DEMO_SCENARIO, "demo").unwrap().alert;
    serde_json::to_value(a).unwrap()
}

/// A demo alert with its own dedup key, so it opens its own incident.
fn alert_keyed(key: &str) -> Value {
    let mut a = demo_alert_json();
    a["fingerprint"] = json!(key);
    a
}

fn link(out: &ApprovalOutput) -> String {
    approval_path(SIGNING_KEY, &out.approval_id, out.expires_at.timestamp())
}

/// The form as the page posts it, with a form token minted as the page mints one now.
fn page_form(
    f: &Fx,
    out: &ApprovalOutput,
    sig: &str,
    decision: &str,
) -> Vec<(&'static str, String)> {
    let token = new_decision_form_token(
        SIGNING_KEY,
        &out.approval_id,
        out.expires_at.timestamp(),
        f.clock.now().timestamp(),
    );
    vec![
        ("decision", decision.to_string()),
        ("exp", out.expires_at.timestamp().to_string()),
        ("sig", sig.to_string()),
        ("form_token", token),
    ]
}

async fn post_page(f: &Fx, out: &ApprovalOutput, fields: &[(&str, String)]) -> Reply {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    f.post_form(&format!("/approvals/{}", out.approval_id), &pairs)
        .await
}

/// Text as the page's template escapes it.
fn escaped(text: &str) -> String {
    maud::html! { (text) }.into_string()
}

fn sig_of(out: &ApprovalOutput) -> String {
    approval_signature(SIGNING_KEY, &out.approval_id, out.expires_at.timestamp())
}

// ---------------------------------------------------------------------------------------------
// Webhook

#[tokio::test]
async fn an_alert_is_accepted_stored_and_its_pipeline_started() {
    let f = fixture();
    let r = f.post_alert(demo_alert_json().to_string(), &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let body = r.json();
    assert_eq!(body["status"], "processing");
    assert_eq!(body["deduplicated"], false);
    let id = IncidentId(body["incident_id"].as_str().unwrap().to_string());
    let stored = f.incident(&id).await;
    assert_eq!(stored.title, "High error rate on payment-service");
    assert_eq!(stored.service.as_deref(), Some("payment-service"));
    assert_eq!(*f.starter.started.lock().unwrap(), vec![id]);
}

#[tokio::test]
async fn a_repeat_alert_attaches_to_the_open_incident_and_is_started_again() {
    let f = fixture();
    let first = f
        .post_alert(demo_alert_json().to_string(), &[])
        .await
        .json();
    let again = f.post_alert(demo_alert_json().to_string(), &[]).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    let again = again.json();
    assert_eq!(again["incident_id"], first["incident_id"]);
    assert_eq!(again["deduplicated"], true);
    assert_eq!(f.count().await, 1);
    let id = IncidentId(first["incident_id"].as_str().unwrap().to_string());
    assert_eq!(f.incident(&id).await.repeats.count, 1);
    // Starting is idempotent; starting again heals an incident whose first start failed.
    assert_eq!(f.starter.started.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_alert_over_the_body_limit_is_413_and_stores_nothing() {
    let f = fixture();
    let mut a = demo_alert_json();
    a["blob"] = json!("x".repeat(256 * 1024));
    let r = f.post_alert(a.to_string(), &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json()["error"].as_str().unwrap().contains("262144"));
    assert_eq!(f.count().await, 0);
    assert!(f.starter.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_json_or_a_non_object_is_400() {
    let f = fixture();
    for body in ["{\"title\": ", "not json", "[1, 2]", "\"a string\""] {
        let r = f.post_alert(body, &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(r.json()["error"].is_string(), "{body}");
    }
    assert_eq!(f.count().await, 0);
}

#[tokio::test]
async fn missing_or_invalid_required_fields_are_422_naming_the_field() {
    let f = fixture();
    let ts = "2024-03-12T14:07:30Z";
    let cases = [
        (json!({"timestamp": ts}), "title"),
        (json!({"title": 42, "timestamp": ts}), "title"),
        (json!({"title": "   ", "timestamp": ts}), "title"),
        (json!({"title": "t"}), "timestamp"),
        (json!({"title": "t", "timestamp": "yesterday"}), "timestamp"),
        (json!({"title": "t", "timestamp": 1710252450}), "timestamp"),
    ];
    for (body, field) in cases {
        let r = f.post_alert(body.to_string(), &[]).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let err = r.json();
        assert_eq!(err["field"], field, "{body}");
        assert!(err["error"].as_str().unwrap().contains(field), "{err}");
    }
    assert_eq!(f.count().await, 0, "bad input writes nothing");
}

fn secured() -> Fx {
    fixture_with(
        HttpConfig {
            webhook_secret: Some(HOOK_SECRET.into()),
            ..http_config()
        },
        None,
    )
}

fn signed_headers(f: &Fx, body: &str, ts: i64) -> Vec<(&'static str, String)> {
    let _ = f;
    let ts = ts.to_string();
    vec![
        (
            "X-IRAS-Signature",
            webhook_signature(HOOK_SECRET, &ts, body.as_bytes()),
        ),
        ("X-IRAS-Timestamp", ts),
    ]
}

#[tokio::test]
async fn a_signed_alert_is_accepted() {
    let f = secured();
    let body = demo_alert_json().to_string();
    let now = f.clock.now().timestamp();
    let r = f
        .post_alert(body.clone(), &signed_headers(&f, &body, now))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(f.count().await, 1);
}

#[tokio::test]
async fn without_credentials_or_with_a_wrong_signature_it_is_401() {
    let f = secured();
    let body = demo_alert_json().to_string();
    let now = f.clock.now().timestamp();

    let r = f.post_alert(body.clone(), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let mut headers = signed_headers(&f, &body, now);
    headers[0].1 = webhook_signature("not-the-secret", &now.to_string(), body.as_bytes());
    let r = f.post_alert(body.clone(), &headers).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A valid signature over a different body.
    let headers = signed_headers(&f, "{}", now);
    let r = f.post_alert(body.clone(), &headers).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = f
        .post_alert(body.clone(), &[("Authorization", "Bearer wrong".into())])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.count().await, 0);
}

#[tokio::test]
async fn a_stale_timestamp_is_401_even_when_correctly_signed() {
    let f = secured();
    let body = demo_alert_json().to_string();
    let now = f.clock.now().timestamp();
    // The extremes too: with wrapping arithmetic, now − 2^63 once passed as fresh forever.
    for ts in [
        now - 301,
        now + 301,
        now.wrapping_sub(i64::MAX),
        i64::MIN,
        i64::MAX,
    ] {
        let r = f
            .post_alert(body.clone(), &signed_headers(&f, &body, ts))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "ts {ts}");
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("X-IRAS-Timestamp"));
    }
    // Just inside the window is fine.
    let r = f
        .post_alert(body.clone(), &signed_headers(&f, &body, now - 299))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_signed_request_replayed_after_a_restart_is_still_401() {
    let f = secured();
    let body = demo_alert_json().to_string();
    let headers = signed_headers(&f, &body, f.clock.now().timestamp());
    assert_eq!(
        f.post_alert(body.clone(), &headers).await.status,
        StatusCode::ACCEPTED
    );
    // A new process on the same store: its in-memory cache is empty, the store remembers.
    let restarted = fixture_with(
        HttpConfig {
            webhook_secret: Some(HOOK_SECRET.into()),
            ..http_config()
        },
        Some(f.store.clone()),
    );
    restarted.clock.advance(chrono::Duration::seconds(30));
    let replay = restarted.post_alert(body.clone(), &headers).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.text());
    assert!(replay.text().contains("replay"));
}

#[tokio::test]
async fn replaying_a_signed_request_is_401() {
    let f = secured();
    let body = demo_alert_json().to_string();
    let headers = signed_headers(&f, &body, f.clock.now().timestamp());
    let first = f.post_alert(body.clone(), &headers).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    f.clock.advance(chrono::Duration::seconds(30));
    let replay = f.post_alert(body.clone(), &headers).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert!(replay.json()["error"].as_str().unwrap().contains("replay"));
    let id = IncidentId(first.json()["incident_id"].as_str().unwrap().to_string());
    assert!(
        f.incident(&id).await.repeats.is_empty(),
        "the replay was not ingested"
    );
}

#[tokio::test]
async fn the_secret_as_a_bearer_token_is_accepted() {
    let f = secured();
    let r = f
        .post_alert(
            demo_alert_json().to_string(),
            &[("Authorization", format!("Bearer {HOOK_SECRET}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}

#[tokio::test]
async fn a_failed_start_is_503_with_the_incident_and_a_retry_heals_it() {
    let f = fixture();
    f.starter.fail.store(true, Ordering::SeqCst);
    let r = f.post_alert(demo_alert_json().to_string(), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let id = r.json()["incident_id"].as_str().unwrap().to_string();
    assert_eq!(f.count().await, 1, "the incident is kept");

    f.starter.fail.store(false, Ordering::SeqCst);
    let retry = f.post_alert(demo_alert_json().to_string(), &[]).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED);
    assert_eq!(retry.json()["incident_id"], id);
    assert_eq!(retry.json()["deduplicated"], true);
    assert_eq!(
        *f.starter.started.lock().unwrap(),
        vec![IncidentId(id)],
        "the retry started the incident"
    );
}

#[tokio::test]
async fn a_signed_retry_after_a_failed_start_is_not_a_replay() {
    let f = secured();
    f.starter.fail.store(true, Ordering::SeqCst);
    let body = demo_alert_json().to_string();
    let headers = signed_headers(&f, &body, f.clock.now().timestamp());
    assert_eq!(
        f.post_alert(body.clone(), &headers).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    f.starter.fail.store(false, Ordering::SeqCst);
    assert_eq!(
        f.post_alert(body.clone(), &headers).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn unicode_html_and_long_fields_are_stored_byte_for_byte() {
    let f = fixture();
    let title = "Ошибка оплаты <b>é</b> \"quoted\" 'single' & 🚨 — 日本語";
    let long = "é<>&\"'".repeat(10_000 / 6 + 1);
    let long: String = long.chars().take(10_000).collect();
    let mut a = demo_alert_json();
    a["title"] = json!(title);
    a["note"] = json!(long);
    a["html"] = json!("<script>alert(1)</script>");
    let r = f.post_alert(a.to_string(), &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let id = IncidentId(r.json()["incident_id"].as_str().unwrap().to_string());
    let stored = f.incident(&id).await;
    assert_eq!(stored.title, title);
    assert_eq!(stored.alert.fields["note"], json!(long));
    assert_eq!(
        stored.alert.fields["note"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        10_000
    );
    assert_eq!(
        stored.alert.fields["html"],
        json!("<script>alert(1)</script>")
    );
    // And the API hands it back as it came.
    let report = f.get(&format!("/incidents/{id}")).await.json();
    assert_eq!(report["title"], title);
    assert_eq!(report["alert"]["note"], json!(long));
}

// ---------------------------------------------------------------------------------------------
// Incidents

#[tokio::test]
async fn incidents_are_listed_with_summaries_and_filtered_by_status() {
    let f = fixture();
    let (waiting, out) = f.awaiting_approval(alert_keyed("a")).await;
    f.post_alert(alert_keyed("b").to_string(), &[]).await;

    let all = f.get("/incidents").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.json()["incidents"].as_array().unwrap().len(), 2);
    assert_eq!(all.json()["next"], Value::Null);

    let r = f.get("/incidents?status=awaiting_approval").await.json();
    let list = r["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let s = &list[0];
    assert_eq!(s["incident_id"], waiting.as_str());
    assert_eq!(s["status"], "awaiting_approval");
    assert_eq!(s["approval_id"], out.approval_id.as_str());
    assert_eq!(s["service"], "payment-service");
    assert!(s["severity"].is_string());
    assert_eq!(s["root_cause_service"], "payment-service");
    assert!(s["confidence"].as_f64().unwrap() > 0.0);
    for key in ["title", "created_at", "updated_at"] {
        assert!(s[key].is_string(), "{key}");
    }

    let r = f.get("/incidents?status=processing").await.json();
    let list = r["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["approval_id"], Value::Null);
}

#[tokio::test]
async fn an_unknown_filter_value_is_400_naming_the_field() {
    let f = fixture();
    let r = f.get("/incidents?status=finished").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "status");
    let r = f.get("/incidents?severity=sev1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "severity");
    let r = f.get("/incidents?limit=-3").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "limit");
}

#[tokio::test]
async fn pages_follow_next_newest_first_without_overlap() {
    let f = fixture();
    let mut created = Vec::new();
    for key in ["k1", "k2", "k3"] {
        let r = f.post_alert(alert_keyed(key).to_string(), &[]).await.json();
        created.push(r["incident_id"].as_str().unwrap().to_string());
    }
    let first = f.get("/incidents?limit=2").await.json();
    let ids: Vec<&str> = first["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["incident_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![created[2].as_str(), created[1].as_str()],
        "newest first"
    );
    let next = first["next"].as_str().expect("a next cursor");
    let second = f
        .get(&format!("/incidents?limit=2&cursor={next}"))
        .await
        .json();
    let ids: Vec<&str> = second["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["incident_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![created[0].as_str()]);
    assert_eq!(second["next"], Value::Null);
    for bogus in [
        "bogus",
        "inc-",
        "zzzz%27%20OR%201%3D1",
        "inc-0195f3a2c4d87e6b9a1f2c3d4e5f6a7",
    ] {
        let r = f.get(&format!("/incidents?cursor={bogus}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bogus}: {}", r.text());
        assert_eq!(r.json()["field"], "cursor");
    }
}

#[tokio::test]
async fn an_unknown_or_malformed_incident_id_is_404() {
    let f = fixture();
    for uri in [
        "/incidents/inc-doesnotexist",
        "/incidents/..%2Fetc",
        "/incidents/inc-doesnotexist/postmortem",
    ] {
        let r = f.get(uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(r.json()["error"].is_string(), "{uri}");
    }
}

#[tokio::test]
async fn the_report_never_shows_the_task_token() {
    let f = fixture();
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    let r = f.get(&format!("/incidents/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text().contains(TOKEN));
    assert_eq!(r.json()["incident_id"], id.as_str());
    assert!(r.json()["rca"].as_array().is_some_and(|a| !a.is_empty()));
}

#[tokio::test]
async fn the_postmortem_is_markdown_unless_json_is_preferred() {
    let f = fixture();
    let r = f
        .post_alert(demo_alert_json().to_string(), &[])
        .await
        .json();
    let id = IncidentId(r["incident_id"].as_str().unwrap().to_string());
    let uri = format!("/incidents/{id}/postmortem");

    let early = f.get(&uri).await;
    assert_eq!(early.status, StatusCode::NOT_FOUND);
    assert!(early.json()["error"]
        .as_str()
        .unwrap()
        .contains("not been written"));

    postmortem(
        &f.deps,
        &IncidentRef {
            incident_id: id.clone(),
        },
    )
    .await
    .unwrap();

    let md = f.get(&uri).await;
    assert_eq!(md.status, StatusCode::OK);
    assert_eq!(md.header("content-type"), "text/markdown; charset=utf-8");
    assert!(md
        .text()
        .starts_with("# Post-mortem: High error rate on payment-service"));

    let js = f
        .send(
            Request::get(&uri)
                .header(header::AUTHORIZATION, format!("Bearer {API_KEY}"))
                .header(header::ACCEPT, "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.header("content-type").starts_with("application/json"));
    assert_eq!(js.json()["incident_id"], id.as_str());
    assert_eq!(js.json()["outcome"], "escalated");

    let browser = f
        .send(
            Request::get(&uri)
                .header(header::AUTHORIZATION, format!("Bearer {API_KEY}"))
                .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(browser.header("content-type").starts_with("text/markdown"));
}

// ---------------------------------------------------------------------------------------------
// Who may read

#[tokio::test]
async fn reads_without_a_key_or_with_a_wrong_one_are_401_and_show_nothing() {
    let f = fixture();
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    for uri in [
        "/incidents".to_string(),
        format!("/incidents/{id}"),
        format!("/incidents/{id}/postmortem"),
        format!("/incidents/{id}/audit"),
        "/incidents/inc-0000000000000000000000000000000a".to_string(),
    ] {
        let r = f.get_anonymous(&uri).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(r.header("www-authenticate"), "Bearer");
        assert!(!r.text().contains("payment-service"), "{uri}: {}", r.text());
        let wrong = f
            .send(
                Request::get(&uri)
                    .header(header::AUTHORIZATION, "Bearer not-a-key")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // The signed approval page, the webhook and /health stay reachable without one.
    assert_eq!(f.get_anonymous("/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_read_only_key_reads_but_cannot_decide() {
    let f = fixture_with(
        HttpConfig {
            api_keys: vec![API_KEY.into()],
            read_api_keys: vec!["reader-key".into()],
            approval_signing_key: b"test-signing-key".to_vec(),
            ..HttpConfig::default()
        },
        None,
    );
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    let read = f
        .send(
            Request::get(format!("/incidents/{id}"))
                .header(header::AUTHORIZATION, "Bearer reader-key")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json()["incident_id"], id.as_str());
    let decide = f
        .post_api(
            &format!("/incidents/{id}/approve"),
            Some("reader-key"),
            r#"{"approver":"mallory"}"#,
        )
        .await;
    assert_eq!(decide.status, StatusCode::UNAUTHORIZED);
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
}

#[tokio::test]
async fn reads_are_refused_not_open_when_no_key_is_configured() {
    let f = fixture_with(HttpConfig::default(), None);
    let r = f.get_anonymous("/incidents").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("READ_API_KEYS"));
}

#[tokio::test]
async fn a_host_the_server_does_not_answer_for_is_refused() {
    let f = fixture_with(
        HttpConfig {
            api_keys: vec![API_KEY.into()],
            allowed_hosts: vec!["127.0.0.1:8080".into(), "localhost:8080".into()],
            ..HttpConfig::default()
        },
        None,
    );
    let with_host = |host: &'static str| {
        Request::get("/incidents")
            .header(header::HOST, host)
            .header(header::AUTHORIZATION, format!("Bearer {API_KEY}"))
            .body(Body::empty())
            .unwrap()
    };
    // A DNS-rebinding page reaches 127.0.0.1 under its own name: refused before any route.
    let rebound = f.send(with_host("attacker.example:8080")).await;
    assert_eq!(rebound.status, StatusCode::MISDIRECTED_REQUEST);
    let webhook = f
        .send(
            Request::post("/webhook/alert")
                .header(header::HOST, "attacker.example:8080")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(demo_alert_json().to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(webhook.status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(
        f.send(with_host("LOCALHOST:8080")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        f.send(with_host("127.0.0.1:8080")).await.status,
        StatusCode::OK
    );
}

// API approvals

#[tokio::test]
async fn api_approval_without_a_key_or_with_a_wrong_one_is_401() {
    let f = fixture();
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    let uri = format!("/incidents/{id}/approve");
    for key in [None, Some("wrong-key"), Some("")] {
        let r = f.post_api(&uri, key, "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(r.header("www-authenticate"), "Bearer");
    }
    assert!(f.callbacks.successes.lock().unwrap().is_empty());
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
}

#[tokio::test]
async fn api_approval_is_403_when_no_keys_are_configured() {
    let f = fixture_with(
        HttpConfig {
            api_keys: vec![],
            ..http_config()
        },
        None,
    );
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    let r = f
        .post_api(&format!("/incidents/{id}/approve"), Some(API_KEY), "")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json()["error"],
        "API approvals are disabled: set APPROVAL_API_KEYS (name:key) or APPROVAL_API_KEY."
    );
}

#[tokio::test]
async fn api_approval_decides_once_and_completes_the_task() {
    let f = fixture();
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    let uri = format!("/incidents/{id}/approve");
    let r = f
        .post_api(
            &uri,
            Some(API_KEY),
            r#"{"approver": "alice", "comment": "go"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(body["incident_id"], id.as_str());
    assert_eq!(body["decision"], "approved");
    assert_eq!(body["approver"], "alice");
    assert!(body["status"].is_string());

    let calls = f.callbacks.successes.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, TOKEN);
    assert_eq!(calls[0].1["decision"], "approved");
    assert_eq!(calls[0].1["channel"], "api");
    let d = f.incident(&id).await.approval.unwrap().decision.unwrap();
    assert_eq!((d.approver.as_str(), d.channel.as_str()), ("alice", "api"));
    assert_eq!(d.comment.as_deref(), Some("go"));

    let again = f
        .post_api(&format!("/incidents/{id}/reject"), Some(API_KEY), "")
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.json()["error"]
        .as_str()
        .unwrap()
        .contains("approved by alice"));
    assert_eq!(f.callbacks.successes.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn api_rejection_with_the_second_key_defaults_the_approver() {
    let f = fixture();
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    let r = f
        .post_api(&format!("/incidents/{id}/reject"), Some(API_KEY_2), "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["decision"], "rejected");
    assert_eq!(r.json()["approver"], "api");
    let calls = f.callbacks.successes.lock().unwrap().clone();
    assert_eq!(calls[0].1["decision"], "rejected");
}

#[tokio::test]
async fn api_approval_after_the_window_is_410() {
    let f = fixture();
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    f.clock.advance(chrono::Duration::seconds(601));
    let r = f
        .post_api(&format!("/incidents/{id}/approve"), Some(API_KEY), "")
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(f.callbacks.successes.lock().unwrap().is_empty());
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
}

#[tokio::test]
async fn after_the_timeout_escalated_the_incident_a_late_decision_is_still_410() {
    let f = fixture();
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    f.clock.advance(chrono::Duration::seconds(601));
    // The deadline fired: the pipeline escalated before the person clicked.
    let input: EscalateInput = serde_json::from_value(json!({
        "incident_id": id, "escalation": {"reason": "approval_timeout"}
    }))
    .unwrap();
    escalate(&f.deps, &input).await.unwrap();
    for decision in ["approve", "reject"] {
        let r = f
            .post_api(&format!("/incidents/{id}/{decision}"), Some(API_KEY), "")
            .await;
        assert_eq!(r.status, StatusCode::GONE, "{decision}: {}", r.text());
    }
}

#[tokio::test]
async fn api_approval_of_an_unknown_or_idle_incident_is_404_or_409() {
    let f = fixture();
    let r = f
        .post_api("/incidents/inc-nope/approve", Some(API_KEY), "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let open = f
        .post_alert(demo_alert_json().to_string(), &[])
        .await
        .json();
    let r = f
        .post_api(
            &format!(
                "/incidents/{}/approve",
                open["incident_id"].as_str().unwrap()
            ),
            Some(API_KEY),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = f
        .post_api(
            &format!(
                "/incidents/{}/approve",
                open["incident_id"].as_str().unwrap()
            ),
            Some(API_KEY),
            r#"{"approver": 7}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["field"], "approver");
}

// ---------------------------------------------------------------------------------------------
// Approval page

fn planted_alert() -> Value {
    let mut a = demo_alert_json();
    a["title"] = json!("<script>alert('pwned')</script> High error rate");
    a["note"] = json!("<img src=x onerror=alert(1)> & \"quotes\"");
    a
}

#[tokio::test]
async fn the_page_shows_the_plan_and_escapes_what_the_alert_planted() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(planted_alert()).await;
    let r = f.get(&link(&out)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let html = r.text();

    assert!(
        !html.contains("<script"),
        "a planted script must not survive"
    );
    assert!(
        !html.contains("<img src=x"),
        "planted markup must not survive"
    );
    assert!(html.contains("&lt;script&gt;alert('pwned')&lt;/script&gt; High error rate"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot;"));

    let plan = f.incident(&id).await.plan.unwrap();
    assert!(!plan.steps.is_empty());
    assert_eq!(html.matches("class=\"step\"").count(), plan.steps.len());
    for step in &plan.steps {
        // What the page shows is rendered from the step's action.
        let text = step.text();
        let command = escaped(&text.cli);
        assert!(
            html.contains(&format!("<code class=\"command\">{command}</code>")),
            "{command}"
        );
        let change = escaped(&text.change);
        assert!(html.contains(&format!("<span class=\"change\">{change}</span>")));
        if step.has_rollback() {
            let rb = escaped(&text.rollback);
            assert!(html.contains(&format!("<span class=\"rollback\">{rb}</span>")));
        }
        let risk = step.risk_level.as_str();
        assert!(html.contains(&format!("class=\"risk risk-{risk}\">{risk}<")));
    }
    assert!(html.contains("id=\"approve\""));
    assert!(html.contains("id=\"reject\""));
    assert!(html.contains(&format!("name=\"sig\" value=\"{}\"", sig_of(&out))));
    assert!(html.contains(&format!(
        "name=\"exp\" value=\"{}\"",
        out.expires_at.timestamp()
    )));
    assert!(html.contains("payment-service"), "root cause shown");
    assert!(html.contains("class=\"confidence\""));
    assert!(html.contains("id=\"deadline\""));

    assert_eq!(r.header("cache-control"), "no-store");
    assert_eq!(r.header("x-frame-options"), "DENY");
    // Never the signed link in another site's Referer; our own form keeps its real Origin.
    assert_eq!(r.header("referrer-policy"), "same-origin");
    let csp = r.header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(r.header("content-type").starts_with("text/html"));
}

#[tokio::test]
async fn an_irreversible_step_says_so() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    // Make the first step one that cannot be undone.
    let mut inc = f.incident(&id).await;
    inc.plan.as_mut().unwrap().steps[0].action = Some(Action::Runner {
        operation: "kubernetes.rollout_restart".into(),
        target: "shop/deployment/payment-service".into(),
        parameters: Default::default(),
    });
    f.store.update_incident(&inc).await.unwrap();
    let html = f.get(&link(&out)).await.text();
    assert!(html.contains("none — irreversible"));
}

#[tokio::test]
async fn looking_at_the_page_decides_nothing() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    let before = f.incident(&id).await;
    for _ in 0..3 {
        assert_eq!(f.get(&link(&out)).await.status, StatusCode::OK);
    }
    assert_eq!(f.incident(&id).await, before, "GET changed the record");
    assert!(f.callbacks.successes.lock().unwrap().is_empty());
    assert!(f.callbacks.failures.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_tampered_or_incomplete_link_is_403() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    let exp = out.expires_at.timestamp();
    let good = sig_of(&out);
    let mut bad = good.clone();
    bad.replace_range(0..1, if good.starts_with('0') { "1" } else { "0" });
    let later = exp + 3600;
    let uris = [
        format!("/approvals/{}?exp={exp}&sig={bad}", out.approval_id),
        format!("/approvals/{}?exp={exp}", out.approval_id),
        format!("/approvals/{}", out.approval_id),
        format!("/approvals/{}?exp=soon&sig={good}", out.approval_id),
        // The signature is over the expiry: moving it breaks the link.
        format!("/approvals/{}?exp={later}&sig={good}", out.approval_id),
        // Validly signed, but not this approval's expiry.
        approval_path(SIGNING_KEY, &out.approval_id, later),
        // Signed with another key.
        approval_path(b"other-key", &out.approval_id, exp),
    ];
    for uri in &uris {
        let r = f.get(uri).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(!r.text().contains("id=\"approve\""), "{uri}");
        assert_eq!(r.header("cache-control"), "no-store");
    }
    let fields = page_form(&f, &out, &bad, "approve");
    assert_eq!(
        post_page(&f, &out, &fields).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
    assert!(f.callbacks.successes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn approving_from_the_page_decides_via_the_page_channel() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    let mut fields = page_form(&f, &out, &sig_of(&out), "approve");
    fields.push(("approver", "Dana <on-call>".into()));
    fields.push(("comment", "rollback looks right".into()));
    let r = post_page(&f, &out, &fields).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r
        .text()
        .contains("<p id=\"outcome\">Approved — the plan is being applied.</p>"));
    assert_eq!(r.header("cache-control"), "no-store");

    let d = f.incident(&id).await.approval.unwrap().decision.unwrap();
    assert_eq!(d.decision, Decision::Approved);
    assert_eq!(d.channel, "page");
    assert_eq!(d.approver, "Dana <on-call> (self-declared)");
    assert_eq!(d.comment.as_deref(), Some("rollback looks right"));
    let calls = f.callbacks.successes.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, TOKEN);
    assert_eq!(calls[0].1["channel"], "page");

    // A second use, by POST or by opening the link, says who decided.
    let again = post_page(&f, &out, &page_form(&f, &out, &sig_of(&out), "reject")).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let text = again.text();
    assert!(
        text.contains(
            "This approval was already used: approved by Dana &lt;on-call&gt; (self-declared) at 2024-03-12"
        ),
        "{text}"
    );
    assert!(!text.contains("id=\"approve\""));
    let view = f.get(&link(&out)).await;
    assert_eq!(view.status, StatusCode::CONFLICT);
    assert!(view.text().contains("already used: approved by Dana"));
    assert!(!view.text().contains("id=\"approve\""));
    assert_eq!(f.callbacks.successes.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn rejecting_from_the_page_without_a_name() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    let mut fields = page_form(&f, &out, &sig_of(&out), "reject");
    fields.push(("approver", "   ".into()));
    let r = post_page(&f, &out, &fields).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r
        .text()
        .contains("<p id=\"outcome\">Rejected — on-call has been paged.</p>"));
    let d = f.incident(&id).await.approval.unwrap().decision.unwrap();
    assert_eq!(d.decision, Decision::Rejected);
    assert_eq!(d.approver, "someone who gave no name (self-declared)");
    assert_eq!(
        d.identity,
        Some(ApproverIdentity::SelfDeclared {
            name: String::new(),
            link_sent_to: Some("test-notifier".into())
        })
    );
}

#[tokio::test]
async fn a_form_without_a_decision_decides_nothing() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    let r = post_page(&f, &out, &page_form(&f, &out, &sig_of(&out), "maybe")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
}

#[tokio::test]
async fn an_unknown_approval_is_404() {
    let f = fixture();
    let ghost = ApprovalOutput {
        approval_id: "apr-00000000000000000000000000000000".into(),
        expires_at: f.clock.now(),
    };
    let r = f.get(&link(&ghost)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("id=\"outcome\""));
    let r = post_page(
        &f,
        &ghost,
        &page_form(&f, &ghost, &sig_of(&ghost), "approve"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        f.get("/approvals/..%2F..%2Fetc").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn after_the_window_the_page_is_410_and_cannot_decide() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    f.clock.advance(chrono::Duration::seconds(601));
    let r = f.get(&link(&out)).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(!r.text().contains("id=\"approve\""));
    let r = post_page(&f, &out, &page_form(&f, &out, &sig_of(&out), "approve")).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
    assert!(f.callbacks.successes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_a_signing_key_the_pages_are_disabled() {
    let f = fixture_with(
        HttpConfig {
            approval_signing_key: vec![],
            ..http_config()
        },
        None,
    );
    let (_, out) = f.awaiting_approval(demo_alert_json()).await;
    // Even a link "signed" with the empty key is refused.
    let forged = approval_path(b"", &out.approval_id, out.expires_at.timestamp());
    assert_eq!(f.get(&forged).await.status, StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------------------------------------
// The approval page resists cross-site use

/// The form token of the page as rendered for `out` now.
async fn rendered_form_token(f: &Fx, out: &ApprovalOutput) -> String {
    let page = f.get(&link(out)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    let at = html
        .find("name=\"form_token\" value=\"")
        .expect("the page's form carries a form token")
        + "name=\"form_token\" value=\"".len();
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

/// The page's form for `out`, with `token` as its form token (none: left out).
fn form_with(
    out: &ApprovalOutput,
    decision: &str,
    token: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("decision", decision.to_string()),
        ("exp", out.expires_at.timestamp().to_string()),
        ("sig", sig_of(out)),
        ("approver", "mallory".to_string()),
    ];
    if let Some(t) = token {
        fields.push(("form_token", t.to_string()));
    }
    fields
}

/// A POST of the form with these headers (a browser's `Origin`, `Sec-Fetch-Site`, `Host`).
async fn post_page_from(
    f: &Fx,
    out: &ApprovalOutput,
    fields: &[(&str, String)],
    headers: &[(&str, &str)],
) -> Reply {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut req = Request::post(format!("/approvals/{}", out.approval_id))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    f.send(req.body(Body::from(body)).unwrap()).await
}

/// Nothing was decided: the incident still awaits, and the pipeline was told nothing.
async fn assert_undecided(f: &Fx, id: &IncidentId) {
    let inc = f.incident(id).await;
    assert_eq!(inc.status, IncidentStatus::AwaitingApproval);
    let approval = inc.approval.unwrap();
    assert!(approval.decision.is_none(), "{:?}", approval.decision);
    assert!(approval.approvals.is_empty());
    assert!(f.callbacks.successes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_cross_site_post_without_the_form_token_is_refused_and_decides_nothing() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    // Whoever saw the link (a forwarded message, a log) can build the form, but not its token.
    let fields = form_with(&out, "approve", None);
    for headers in [
        // A current browser, posting from another site's page.
        &[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ][..],
        // A client that sends neither header: the token alone decides.
        &[][..],
    ] {
        let r = post_page_from(&f, &out, &fields, headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}: {}", r.text());
        assert!(r.text().contains("Nothing was decided"), "{}", r.text());
        assert!(!r.text().contains("id=\"approve\""));
        assert_eq!(r.header("cache-control"), "no-store");
    }
    // A token that is not one: altered, or empty.
    let token = rendered_form_token(&f, &out).await;
    let mut altered = token.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == '0' { '1' } else { '0' });
    for bad in [altered.as_str(), "", "1.2.3"] {
        let r = post_page_from(&f, &out, &form_with(&out, "approve", Some(bad)), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{bad:?}");
    }
    assert_undecided(&f, &id).await;
}

#[tokio::test]
async fn a_form_token_for_one_approval_cannot_decide_another() {
    let f = fixture();
    let (a_id, a) = f.awaiting_approval(alert_keyed("fp-a")).await;
    let (b_id, b) = f.awaiting_approval(alert_keyed("fp-b")).await;
    let token_a = rendered_form_token(&f, &a).await;
    let r = post_page_from(&f, &b, &form_with(&b, "approve", Some(&token_a)), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("not this approval"), "{}", r.text());
    assert_undecided(&f, &b_id).await;
    assert_undecided(&f, &a_id).await;
    // B's own page's token does decide B.
    let token_b = rendered_form_token(&f, &b).await;
    let r = post_page_from(&f, &b, &form_with(&b, "approve", Some(&token_b)), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn a_page_left_open_too_long_must_be_reloaded_before_it_decides() {
    let f = fixture();
    // A long window: the page goes stale well before the approval closes.
    let (id, out) = f.awaiting_approval_for(demo_alert_json(), 4 * 3600).await;
    let token = rendered_form_token(&f, &out).await;
    f.clock.advance(chrono::Duration::minutes(31));
    let r = post_page_from(&f, &out, &form_with(&out, "approve", Some(&token)), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(
        r.text().contains("This page is out of date"),
        "{}",
        r.text()
    );
    assert_undecided(&f, &id).await;
    // Reloading the page gives a fresh form.
    let fresh = rendered_form_token(&f, &out).await;
    let r = post_page_from(&f, &out, &form_with(&out, "approve", Some(&fresh)), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn another_site_is_refused_even_with_a_valid_form_token() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    let token = rendered_form_token(&f, &out).await;
    let fields = form_with(&out, "approve", Some(&token));
    let host = ("host", "iras.example:8080");
    for headers in [
        vec![host, ("sec-fetch-site", "cross-site")],
        // A sibling subdomain's page is not ours either.
        vec![host, ("sec-fetch-site", "same-site")],
        vec![host, ("origin", "https://evil.example")],
        // Another port on the same host is another origin.
        vec![host, ("origin", "http://iras.example:9999")],
        // An opaque origin (a sandboxed frame, a data: URL).
        vec![host, ("origin", "null")],
        // The origin is checked even when Fetch Metadata says same-origin.
        vec![
            host,
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "same-origin"),
        ],
    ] {
        let r = post_page_from(&f, &out, &fields, &headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}: {}", r.text());
        assert!(r.text().contains("sent from another site"), "{}", r.text());
    }
    assert_undecided(&f, &id).await;
}

#[tokio::test]
async fn the_page_s_own_form_decides_and_records_the_link_s_channel_and_a_self_declared_name() {
    let f = fixture();
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    // Where the notifier posted the request, as Slack's notifier keeps it.
    let mut inc = f.incident(&id).await;
    inc.approval.as_mut().unwrap().message_ref =
        Some(r#"{"channel":"C0ONCALL","ts":"1710252450.000100"}"#.into());
    f.store.update_incident(&inc).await.unwrap();

    let page = f.get(&link(&out)).await.text();
    assert!(
        page.contains(
            "This link was sent to channel C0ONCALL. IRAS cannot check the name you type"
        ),
        "the page says how the name is recorded before anyone decides"
    );
    let token = rendered_form_token(&f, &out).await;
    let mut fields = form_with(&out, "approve", Some(&token));
    fields.retain(|(k, _)| *k != "approver");
    fields.push(("approver", "alice".into()));
    let headers = [
        ("host", "iras.example:8080"),
        ("origin", "http://iras.example:8080"),
        ("sec-fetch-site", "same-origin"),
    ];
    let r = post_page_from(&f, &out, &fields, &headers).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains(
        "Recorded as alice (self-declared), via the approval page, through the link sent to channel C0ONCALL."
    ), "{}", r.text());

    let inc = f.incident(&id).await;
    let d = inc.approval.unwrap().decision.unwrap();
    assert_eq!(d.decision, Decision::Approved);
    assert_eq!(d.channel, "page");
    assert_eq!(d.approver, "alice (self-declared)");
    assert_eq!(
        d.identity,
        Some(ApproverIdentity::SelfDeclared {
            name: "alice".into(),
            link_sent_to: Some("channel C0ONCALL".into())
        })
    );
    // The timeline, which the post-mortem is made of, says the same.
    let decided = inc
        .timeline
        .iter()
        .find(|e| e.key == "approval:decided")
        .expect("decision on the timeline");
    assert!(
        decided.message.contains(
            "approved by alice (self-declared) via page, through the link sent to channel C0ONCALL"
        ),
        "{}",
        decided.message
    );
    let calls = f.callbacks.successes.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1["approver"], "alice (self-declared)");
}

#[tokio::test]
async fn behind_a_proxy_the_public_url_is_the_page_s_origin() {
    let config = PipelineConfig {
        approval_links: Some(iras_core::config::ApprovalLinks {
            base_url: "https://iras.example.com/prod".into(),
            signing_key: SIGNING_KEY.to_vec(),
        }),
        ..PipelineConfig::default()
    };
    let f = fixture_configured(http_config(), None, config);
    let (id, out) = f.awaiting_approval(demo_alert_json()).await;
    let token = rendered_form_token(&f, &out).await;
    let fields = form_with(&out, "reject", Some(&token));
    // The proxy reaches us under an inner name; the browser only knows the public one.
    let inner = ("host", "10.0.3.7:8080");
    let r = post_page_from(
        &f,
        &out,
        &fields,
        &[inner, ("origin", "https://iras.example.org")],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a look-alike name is another site"
    );
    assert_undecided(&f, &id).await;
    let r = post_page_from(
        &f,
        &out,
        &fields,
        &[
            inner,
            ("origin", "https://iras.example.com"),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let d = f.incident(&id).await.approval.unwrap().decision.unwrap();
    assert_eq!(d.decision, Decision::Rejected);
}

#[tokio::test]
async fn a_planted_approver_name_is_escaped_wherever_the_page_shows_it() {
    let f = fixture();
    let (_, out) = f.awaiting_approval(planted_alert()).await;
    let token = rendered_form_token(&f, &out).await;
    let mut fields = form_with(&out, "approve", Some(&token));
    fields.retain(|(k, _)| *k != "approver");
    fields.push(("approver", "<script>alert('name')</script>".into()));
    fields.push(("comment", "<img src=x onerror=alert(2)>".into()));
    let r = post_page_from(&f, &out, &fields, &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let decided = r.text();
    // The used link's page names the approver and quotes the comment.
    let used = f.get(&link(&out)).await;
    assert_eq!(used.status, StatusCode::CONFLICT);
    for html in [decided, used.text()] {
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert('name')&lt;/script&gt; (self-declared)"),
            "{html}"
        );
    }
    assert!(used.text().contains("&lt;img src=x onerror=alert(2)&gt;"));
}

// ---------------------------------------------------------------------------------------------
// Health and the rest

#[tokio::test]
async fn health_is_ok_when_store_and_runtime_answer() {
    let f = fixture();
    let r = f.get("/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"status": "ok", "store": "ok", "runtime": "ok"})
    );
}

#[tokio::test]
async fn health_is_degraded_when_the_runtime_fails() {
    let f = fixture();
    *f.runtime_error.lock().unwrap() = Some("interpreter stopped".into());
    let r = f.get("/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = r.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["store"], "ok");
    // Says what is down to anyone, never the internal reason.
    assert_eq!(body["runtime"], "degraded");
    assert!(!r.text().contains("interpreter stopped"), "{}", r.text());
}

#[tokio::test]
async fn health_is_degraded_when_the_store_fails() {
    let f = fixture_with(http_config(), Some(Arc::new(DownStore)));
    let r = f.get("/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = r.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["store"], "degraded");
    assert!(!r.text().contains("connection refused"), "{}", r.text());
    assert_eq!(body["runtime"], "ok");
}

#[tokio::test]
async fn a_store_outage_is_503_on_the_webhook_and_the_list() {
    let f = fixture_with(http_config(), Some(Arc::new(DownStore)));
    let r = f.post_alert(demo_alert_json().to_string(), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !r.text().contains("connection refused"),
        "backend detail stays in the log"
    );
    assert!(f.starter.started.lock().unwrap().is_empty());
    assert_eq!(
        f.get("/incidents").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let f = fixture();
    let r = f.get("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"].is_string());
    let r = f.get("/webhook/alert").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.json()["error"].is_string());
}

// ---------------------------------------------------------------------------------------------
// Sources' routes: their own secrets and signatures, their errors

fn with_source_secrets() -> Fx {
    fixture_with(
        HttpConfig {
            webhook_secret: Some(HOOK_SECRET.into()),
            source_secrets: [
                (iras_intake::Source::PagerDuty, "pd-secret".to_string()),
                (iras_intake::Source::Sentry, "sentry-secret".to_string()),
                (iras_intake::Source::Sns, "sns-secret".to_string()),
            ]
            .into(),
            ..http_config()
        },
        None,
    )
}

async fn post_to(f: &Fx, path: &str, body: &str, headers: &[(&str, String)]) -> Reply {
    let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    f.send(req.body(Body::from(body.to_string())).unwrap())
        .await
}

fn pagerduty_event(key: &str) -> String {
    json!({"event": {"id": "e1", "event_type": "incident.triggered", "resource_type": "incident",
        "occurred_at": "2024-03-12T14:07:30Z",
        "data": {"id": "P1", "type": "incident", "incident_key": key,
                 "title": "High error rate on payment-service",
                 "service": {"summary": "payment-service", "id": "PS1"}}}})
    .to_string()
}

#[tokio::test]
async fn pagerduty_is_authenticated_by_its_own_signature_under_its_own_secret() {
    let f = with_source_secrets();
    let body = pagerduty_event("k-1");
    let sig = iras_core::signing::hmac_hex(b"pd-secret", body.as_bytes());
    let r = post_to(
        &f,
        "/webhook/pagerduty",
        &body,
        &[("x-pagerduty-signature", format!("v1=deadbeef, v1={sig}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["source"], "pagerduty");
    let other = pagerduty_event("k-2");
    let wrong = iras_core::signing::hmac_hex(HOOK_SECRET.as_bytes(), other.as_bytes());
    let r = post_to(
        &f,
        "/webhook/pagerduty",
        &other,
        &[("x-pagerduty-signature", format!("v1={wrong}"))],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the shared secret is not PagerDuty's"
    );
    assert_eq!(f.count().await, 1);
}

#[tokio::test]
async fn sentry_signs_the_body_with_its_client_secret() {
    let f = with_source_secrets();
    let body = json!({"action": "triggered", "data": {"event": {
        "issue_id": "42", "title": "TypeError: x is undefined", "level": "error",
        "datetime": "2024-03-12T14:07:30Z"}}})
    .to_string();
    let sig = iras_core::signing::hmac_hex(b"sentry-secret", body.as_bytes());
    let r = post_to(
        &f,
        "/webhook/sentry",
        &body,
        &[("sentry-hook-signature", sig)],
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let r = post_to(&f, "/webhook/sentry", &body, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sns_authenticates_with_basic_auth_and_without_a_transport_acts_on_nothing() {
    use base64::Engine;
    let f = with_source_secrets();
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../intake/tests/fixtures/sns/subscription-confirmation.json"
    ))
    .unwrap();
    let basic = |user_pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    };
    let r = post_to(
        &f,
        "/webhook/sns",
        &body,
        &[("authorization", basic("iras:wrong"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post_to(
        &f,
        "/webhook/sns",
        &body,
        &[("authorization", basic("iras:sns-secret"))],
    )
    .await;
    // Authenticated, but nothing unverified is ever acted on.
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
}

#[tokio::test]
async fn a_vendor_payload_with_a_bad_field_is_422_naming_where() {
    let f = fixture();
    let body = json!({"version": "4", "status": "firing", "receiver": "iras", "groupKey": "{}:{}",
        "alerts": [{"status": "firing", "labels": {"alertname": "Down"},
                    "startsAt": "2024-03-12T14:07:30Z"},
                   {"status": "firing", "labels": {"alertname": "Down"}, "startsAt": "soon"}]})
    .to_string();
    let r = post_to(&f, "/webhook/alertmanager", &body, &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.json()["field"], "alerts[1].startsAt");
    assert_eq!(
        f.count().await,
        0,
        "a delivery is read whole before anything is written"
    );
    let r = post_to(&f, "/webhook/nagios", &body, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_listing_says_what_it_could_not_read_and_counts_repeats() {
    let f = fixture();
    for _ in 0..3 {
        let r = f.post_alert(demo_alert_json().to_string(), &[]).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let r = f.get("/incidents").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["unreadable"], json!([]));
    assert_eq!(r.json()["incidents"][0]["repeats"], 2);
}

#[test]
fn named_api_keys_are_read_and_a_bad_entry_is_named_by_position_not_echoed() {
    let vars = |v: &str| -> std::collections::HashMap<String, String> {
        [("APPROVAL_API_KEYS".to_string(), v.to_string())].into()
    };
    let c = HttpConfig::from_vars(&vars("alice:k-alice, ops-bot:k-bot")).unwrap();
    assert_eq!(
        c.named_api_keys,
        [
            ("alice".to_string(), "k-alice".to_string()),
            ("ops-bot".to_string(), "k-bot".to_string())
        ]
    );
    for bad in [
        "alice:k1,secret-without-a-name",
        "alice:k1,alice:k2",
        "api:k1",
        "al ice:k1",
    ] {
        let e = HttpConfig::from_vars(&vars(bad)).unwrap_err();
        assert_eq!(e.name, "APPROVAL_API_KEYS");
        assert!(
            !e.problem.contains("k1") && !e.problem.contains("secret"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_named_key_is_the_approver_and_two_approvals_need_two_keys() {
    let f = fixture_with(
        HttpConfig {
            named_api_keys: vec![
                ("alice".into(), "k-alice".into()),
                ("bob".into(), "k-bob".into()),
            ],
            ..http_config()
        },
        None,
    );
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    // The policy asked for two people.
    let mut inc = f.incident(&id).await;
    inc.approval.as_mut().unwrap().required_approvers = 2;
    f.deps.store.update_incident(&inc).await.unwrap();

    let first = f
        .post_api(
            &format!("/incidents/{id}/approve"),
            Some("k-alice"),
            r#"{"approver": "Alice Liddell"}"#,
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json()["api_key"], "alice");
    assert_eq!(first.json()["approver"], "Alice Liddell");
    // The same key again, claiming to be someone else: the same person.
    let again = f
        .post_api(
            &format!("/incidents/{id}/approve"),
            Some("k-alice"),
            r#"{"approver": "Bob"}"#,
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert!(f.callbacks.successes.lock().unwrap().is_empty());

    let second = f
        .post_api(&format!("/incidents/{id}/approve"), Some("k-bob"), "")
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    assert_eq!(second.json()["approver"], "bob");
    assert_eq!(f.callbacks.successes.lock().unwrap().len(), 1);
    let a = f.incident(&id).await.approval.unwrap();
    let ids: Vec<_> = a.approvals.iter().map(|d| d.identity.clone()).collect();
    assert_eq!(
        ids,
        [
            Some(ApproverIdentity::ApiKey {
                name: "alice".into()
            }),
            Some(ApproverIdentity::ApiKey { name: "bob".into() })
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The audit log

#[tokio::test]
async fn the_audit_log_of_an_approved_incident_shows_each_decision_and_step_and_any_tampering() {
    let f = fixture();
    let (id, _) = f.awaiting_approval(demo_alert_json()).await;
    let uri = format!("/incidents/{id}/audit");
    let approved = f
        .post_api(
            &format!("/incidents/{id}/approve"),
            Some(API_KEY),
            r#"{"approver": "alice", "comment": "go"}"#,
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    let r = IncidentRef {
        incident_id: id.clone(),
    };
    let out = remediate(
        &f.deps,
        &RemediateInput {
            incident_id: id.clone(),
            rollback: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(out.outcome, RemediationOutcome::Applied);
    postmortem(&f.deps, &r).await.unwrap();
    let steps = f.incident(&id).await.plan.unwrap().steps.len();

    let anonymous = f.get_anonymous(&uri).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(!anonymous.text().contains("alice"));

    let log = f.get(&uri).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text());
    let body = log.json();
    let entries = body["entries"].as_array().unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["event"]["kind"].as_str().unwrap())
        .collect();
    let mut expected = vec!["decision"];
    expected.extend(std::iter::repeat_n("step_applied", steps));
    assert_eq!(kinds, expected, "{body:#}");
    assert_eq!(entries[0]["actor"], "alice via api");
    assert_eq!(entries[0]["event"]["comment"], "go");
    assert_eq!(entries[0]["seq"], 1);
    assert_eq!(entries[1]["prev"], entries[0]["hash"]);
    assert_eq!(
        body["verification"],
        json!({"intact": true, "entries": steps + 1, "signatures_checked": true}),
    );

    // Someone with write access to the store changes who approved.
    f.store
        .tamper_audit(&id, 1, |e| e.actor = "mallory via api".into());
    let tampered = f.get(&uri).await.json();
    let v = &tampered["verification"];
    assert_eq!(v["intact"], false, "{v}");
    assert_eq!(v["problem"]["seq"], 1);
    assert_eq!(v["problem"]["fault"], "altered");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("entry 1 was altered"));

    let unknown = f
        .get("/incidents/inc-0000000000000000000000000000000a/audit")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

//! Real alerts in, end to end: monitoring tools' documented payloads posted to the one HTTP
//! router, on the local runtime executing `statemachine.asl.json`, followed from firing to
//! resolved, through storms and flaps, and never poisoning the store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use iras_core::*;
use iras_http::{App, HttpConfig};
use iras_intake::sns::{envelope, string_to_sign, SnsTransport};
use iras_local::local::{LocalOptions, LocalStarter, RuntimeCallbacks};
use iras_tests::*;
use serde_json::{json, Value};
use tower::ServiceExt;
use url::Url;

fn intake_fixture(rel: &str) -> Value {
    let path = repo_file(&format!("shared/intake/tests/fixtures/{rel}"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The SNS side of the test: serves the locally generated certificate and records every
/// confirmation visit.
#[derive(Default)]
struct LocalSns {
    certificates: AtomicUsize,
    confirmations: Mutex<Vec<String>>,
}

#[async_trait]
impl SnsTransport for LocalSns {
    async fn fetch_certificate(&self, _url: &Url) -> Result<Vec<u8>, String> {
        self.certificates.fetch_add(1, Ordering::SeqCst);
        Ok(std::fs::read(repo_file(
            "shared/intake/tests/fixtures/sns/test-signing-cert.pem",
        ))
        .unwrap())
    }
    async fn confirm_subscription(&self, url: &Url) -> Result<(), String> {
        self.confirmations.lock().unwrap().push(url.to_string());
        Ok(())
    }
}

/// An SNS body signed (SignatureVersion 2) with the test key.
fn signed(mut body: Value) -> Value {
    body["SignatureVersion"] = json!("2");
    let key = RsaKeyPair::from_pkcs8(
        &std::fs::read(repo_file(
            "shared/intake/tests/fixtures/sns/test-signing-key.pk8",
        ))
        .unwrap(),
    )
    .unwrap();
    let text = string_to_sign(&envelope(&body).unwrap());
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        text.as_bytes(),
        &mut sig,
    )
    .unwrap();
    body["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(sig));
    body
}

const PAGE_KEY: &[u8] = b"page-signing-key";

struct Door {
    h: Harness,
    router: Router,
    sns: Arc<LocalSns>,
}

async fn door(customize: impl FnOnce(&mut LocalOptions)) -> Door {
    let h = harness(customize).await;
    let runtime = h.pipeline.runtime.clone();
    let health = runtime.clone();
    let sns = Arc::new(LocalSns::default());
    let app = Arc::new(App {
        deps: h.pipeline.deps.clone(),
        starter: Arc::new(LocalStarter(runtime.clone())),
        callbacks: Arc::new(RuntimeCallbacks(runtime)),
        http: HttpConfig {
            api_keys: vec!["k".into()],
            approval_signing_key: PAGE_KEY.to_vec(),
            sns_transport: Some(sns.clone()),
            ..HttpConfig::default()
        },
        runtime_health: Arc::new(move || health.health()),
    });
    Door {
        h,
        router: iras_http::router_with_slack(app, None),
        sns,
    }
}

impl Door {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let r = self.router.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    async fn get_text(&self, path: &str) -> String {
        let r = self
            .router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    async fn incidents(&self) -> Vec<Value> {
        let (status, body) = self.get("/incidents?limit=200").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["incidents"].as_array().unwrap().clone()
    }

    async fn incident(&self, id: &IncidentId) -> Incident {
        self.h.pipeline.incident(id).await.unwrap().unwrap()
    }
}

fn id_of(body: &Value) -> IncidentId {
    IncidentId(
        body["incident_id"]
            .as_str()
            .expect("an incident")
            .to_string(),
    )
}

/// The documented Alertmanager payload, about the demo's payment-service and firing now (so
/// the demo evidence answers for it).
fn alertmanager(status: &str) -> Value {
    let mut body = intake_fixture("alertmanager/v4-probe-failure.json");
    let now = chrono::Utc::now();
    body["status"] = json!(status);
    let a = &mut body["alerts"][0];
    a["status"] = json!(status);
    a["labels"]["service"] = json!("payment-service");
    a["labels"]["namespace"] = json!("shop");
    a["annotations"]["summary"] = json!("High error rate on payment-service");
    a["startsAt"] = json!((now - chrono::Duration::minutes(1)).to_rfc3339());
    if status == "resolved" {
        a["endsAt"] = json!(now.to_rfc3339());
    }
    body
}

#[tokio::test]
async fn an_alertmanager_group_of_two_alerts_opens_two_incidents() {
    let d = door(|_| {}).await;
    let mut body = alertmanager("firing");
    let mut second = body["alerts"][0].clone();
    second["fingerprint"] = json!("2b40cb82ddb3a3e0");
    second["labels"]["alertname"] = json!("HighLatency");
    body["alerts"].as_array_mut().unwrap().push(second);
    let (status, reply) = d.post("/webhook/alertmanager", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_eq!(reply["alerts"], 2);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results[0]["outcome"], "opened");
    assert_eq!(results[1]["outcome"], "opened");
    assert_ne!(results[0]["incident_id"], results[1]["incident_id"]);
    assert_eq!(d.incidents().await.len(), 2);
    let inc = d.incident(&id_of(&results[0])).await;
    assert_eq!(inc.service.as_deref(), Some("payment-service"));
    assert_eq!(inc.alert.text("namespace").as_deref(), Some("shop"));
}

#[tokio::test]
async fn firing_then_resolved_is_one_incident_with_its_recovery_and_no_page() {
    let d = door(|_| {}).await;
    let (status, fired) = d.post("/webhook/alert", &alertmanager("firing")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{fired}");
    assert_eq!(
        fired["source"], "alertmanager",
        "detected on the generic route"
    );
    let id = id_of(&fired);
    d.h.wait_awaiting_approval(&id).await;
    let (status, resolved) = d.post("/webhook/alert", &alertmanager("resolved")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resolved}");
    assert_eq!(resolved["outcome"], "recovered");
    assert_eq!(id_of(&resolved), id);
    let inc = d.incident(&id).await;
    assert!(inc.source_recovered_at.is_some());
    assert!(inc.source_recovered());
    assert!(inc
        .timeline
        .iter()
        .any(|e| e.message.starts_with("source recovered at")));
    assert_eq!(d.incidents().await.len(), 1, "a recovery opens nothing");
    assert!(d.h.pages().is_empty(), "a recovery pages nobody");
    // The approval page tells the person about to decide.
    assert_eq!(inc.status, IncidentStatus::AwaitingApproval);
    let approval = inc.approval.unwrap();
    let path = iras_core::signing::approval_path(
        PAGE_KEY,
        &approval.approval_id,
        approval.expires_at.timestamp(),
    );
    let page = d.get_text(&path).await;
    assert!(
        page.contains("The source reports the alert recovered at"),
        "{page}"
    );
}

#[tokio::test]
async fn grafana_rules_under_one_group_key_are_two_incidents() {
    let d = door(|_| {}).await;
    let mut body = intake_fixture("grafana/webhook.json");
    for a in body["alerts"].as_array_mut().unwrap() {
        a["startsAt"] = json!(chrono::Utc::now().to_rfc3339());
        a["labels"]["service"] = json!("payment-service");
    }
    assert_eq!(body["groupKey"], "{}:{}");
    let (status, reply) = d.post("/webhook/grafana", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_ne!(results[0]["incident_id"], results[1]["incident_id"]);
    assert_eq!(d.incidents().await.len(), 2);
}

#[tokio::test]
async fn a_signed_sns_confirmation_is_fetched_once_and_a_bad_signature_fetches_nothing() {
    let d = door(|_| {}).await;
    let forged = intake_fixture("sns/subscription-confirmation.json");
    let (status, body) = d.post("/webhook/sns", &forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        d.sns.confirmations.lock().unwrap().is_empty(),
        "nothing confirmed"
    );
    let good = signed(intake_fixture("sns/subscription-confirmation.json"));
    let (status, body) = d.post("/webhook/sns", &good).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let confirmations = d.sns.confirmations.lock().unwrap().clone();
    assert_eq!(confirmations.len(), 1, "SubscribeURL fetched once");
    assert!(confirmations[0].contains("Action=ConfirmSubscription"));
    // SNS sends text/plain; the generic route detects it too.
    let (status, _) = d
        .send(
            Request::post("/webhook/alert")
                .header(header::CONTENT_TYPE, "text/plain; charset=UTF-8")
                .body(Body::from(good.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d.incidents().await.len(), 0);
}

/// The documented CloudWatch EventBridge alarm, about payment-service, at `time`.
fn cloudwatch_event(ok: bool) -> Value {
    let mut e = intake_fixture("cloudwatch/eventbridge-single-metric-alarm.json");
    e["time"] = json!(chrono::Utc::now().to_rfc3339());
    e["detail"]["alarmTags"] = json!({"service": "payment-service"});
    if ok {
        let detail = e["detail"].as_object_mut().unwrap();
        let (state, previous) = (detail["state"].clone(), detail["previousState"].clone());
        detail.insert("state".into(), previous);
        detail.insert("previousState".into(), state);
    }
    e
}

#[tokio::test]
async fn cloudwatch_ok_via_eventbridge_and_via_sns_records_the_recovery() {
    let d = door(|_| {}).await;
    let (status, fired) = d.post("/webhook/alert", &cloudwatch_event(false)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{fired}");
    assert_eq!(fired["source"], "cloudwatch");
    let id = id_of(&fired);
    let (status, ok) = d.post("/webhook/alert", &cloudwatch_event(true)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ok}");
    assert_eq!(ok["outcome"], "recovered");
    assert_eq!(id_of(&ok), id);

    // The same alarm through SNS: same key, so the same incident.
    let lambda_sample = intake_fixture("sns/lambda-event-cloudwatch-alarm.json");
    let message = lambda_sample["Records"][0]["Sns"]["Message"]
        .as_str()
        .unwrap()
        .replace(
            "arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE",
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh",
        )
        .replace("\"NewStateValue\": \"ALARM\"", "\"NewStateValue\": \"OK\"")
        .replace(
            "2015-06-03T17:43:27.123+0000",
            &chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
                .to_string(),
        );
    let mut note = intake_fixture("sns/notification.json");
    note["Message"] = json!(message);
    let (status, via_sns) = d.post("/webhook/sns", &signed(note)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{via_sns}");
    assert_eq!(via_sns["outcome"], "recovered");
    assert_eq!(id_of(&via_sns), id);
    assert_eq!(d.incidents().await.len(), 1);
    assert!(d.incident(&id).await.source_recovered_at.is_some());
}

#[tokio::test]
async fn a_repeat_after_escalation_within_the_cool_down_is_the_same_incident_and_one_page() {
    let d = door(|_| {}).await;
    let (_, fired) = d
        .post("/webhook/alertmanager", &alertmanager("firing"))
        .await;
    let id = id_of(&fired);
    d.h.wait_awaiting_approval(&id).await;
    d.h.decide(&id, Decision::Rejected).await;
    let done = d.h.finish(&id).await;
    assert_eq!(done.status, IncidentStatus::Escalated);
    assert_eq!(d.h.pages().len(), 1);
    for _ in 0..3 {
        let (status, again) = d
            .post("/webhook/alertmanager", &alertmanager("firing"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{again}");
        assert_eq!(again["outcome"], "recurrence");
        assert_eq!(id_of(&again), id);
    }
    assert_eq!(d.incidents().await.len(), 1);
    assert_eq!(d.h.pages().len(), 1, "one page");
    let inc = d.incident(&id).await;
    assert_eq!(inc.repeats.recurrences, 3, "the flaps are counted");
    // The source recovers: the page is resolved, and still nothing new is paged.
    let (_, r) = d
        .post("/webhook/alertmanager", &alertmanager("resolved"))
        .await;
    assert_eq!(r["outcome"], "recovered");
    assert!(d.h.pager.resolved.lock().unwrap().contains(&id));
    assert_eq!(d.h.pages().len(), 1);
}

#[tokio::test]
async fn past_the_cool_down_the_alert_opens_a_new_incident() {
    let d = door(|o| o.config.reopen_cooldown_minutes = 0).await;
    let (_, fired) = d
        .post("/webhook/alertmanager", &alertmanager("firing"))
        .await;
    let id = id_of(&fired);
    d.h.wait_awaiting_approval(&id).await;
    d.h.decide(&id, Decision::Rejected).await;
    d.h.finish(&id).await;
    let (_, again) = d
        .post("/webhook/alertmanager", &alertmanager("firing"))
        .await;
    assert_eq!(again["outcome"], "opened");
    assert_ne!(id_of(&again), id);
}

#[tokio::test]
async fn a_storm_of_repeats_is_a_counter_on_one_incident() {
    let d = door(|_| {}).await;
    let mut first = None;
    for _ in 0..60 {
        let (status, r) = d
            .post("/webhook/alertmanager", &alertmanager("firing"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{r}");
        first.get_or_insert_with(|| id_of(&r));
    }
    let id = first.unwrap();
    let inc = d.incident(&id).await;
    assert_eq!(inc.repeats.count, 59);
    assert_eq!(inc.repeats.samples.len() as u64, MAX_ALERT_SAMPLES);
    assert_eq!(d.incidents().await.len(), 1);
    let listed = &d.incidents().await[0];
    assert_eq!(listed["repeats"], 59);
}

#[tokio::test]
async fn recovery_while_awaiting_approval_ends_the_wait_when_auto_cancel_is_on() {
    let d = door(|o| o.config.auto_cancel_on_recovery = true).await;
    let (_, fired) = d
        .post("/webhook/alertmanager", &alertmanager("firing"))
        .await;
    let id = id_of(&fired);
    d.h.wait_awaiting_approval(&id).await;
    let (status, r) = d
        .post("/webhook/alertmanager", &alertmanager("resolved"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let done = d.h.finish(&id).await;
    assert_eq!(done.status, IncidentStatus::Resolved);
    let decision = done.approval.unwrap().decision.unwrap();
    assert_eq!(decision.decision, Decision::Recovered);
    assert_eq!(decision.channel, "source");
    let pm = d.h.postmortem(&id).await.expect("post-mortem written");
    assert_eq!(pm.outcome, PostMortemOutcome::Recovered);
    assert!(
        pm.resolution.contains("no remediation step was applied"),
        "{}",
        pm.resolution
    );
    assert!(d.h.executor.calls().is_empty(), "nothing ran");
    assert!(d.h.pages().is_empty(), "nobody paged");
    let exec =
        d.h.pipeline
            .runtime
            .describe_execution(id.as_str())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(exec.status, ExecutionStatus::Succeeded);
}

#[tokio::test]
async fn a_poisonous_alert_is_refused_at_the_door_and_nothing_breaks() {
    let d = door(|_| {}).await;
    let ts = chrono::Utc::now().to_rfc3339();
    let (status, body) = d
        .post(
            "/webhook/alert",
            &json!({"title": "x", "timestamp": ts, "service": 42}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "service");
    let (status, body) = d
        .post(
            "/webhook/alert",
            &json!({"title": "x", "timestamp": ts, "service": {"name": "api"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A body nested 125 levels deep: serde_json reads it, but the stored record, a few levels
    // deeper still, could never be read back.
    let mut deep = json!("bottom");
    for _ in 0..124 {
        deep = json!({ "n": deep });
    }
    let (status, body) = d
        .post(
            "/webhook/alert",
            &json!({"title": "x", "timestamp": ts, "deep": deep}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "body");
    assert!(body["error"].as_str().unwrap().contains("125"), "{body}");
    // PagerDuty's object `service` is read properly on its own route.
    let mut pd = intake_fixture("pagerduty/webhook-v3-incident-priority-updated.json");
    pd["event"]["event_type"] = json!("incident.triggered");
    let (status, body) = d.post("/webhook/pagerduty", &pd).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, list) = d.get("/incidents").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(list["unreadable"].as_array().unwrap().len(), 0);
    let (status, health) = d.get("/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let inc = d.incident(&id_of(&body)).await;
    assert_eq!(inc.service.as_deref(), Some("API Service"));
    d.h.finish(&inc.incident_id).await;
}

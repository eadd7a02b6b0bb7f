//! `POST /slack/interactions` through the router: Slack's signature, its 5-minute window, and
//! an on-call engineer pressing Approve or Reject in the approval message.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use iras_core::stages::*;
use iras_core::testing::*;
use iras_core::*;
use iras_http::slack::{slack_signature, SlackInteractivity};
use iras_http::{router_with_slack, App, HttpConfig};
use iras_scenarios::{Scenario, DEMO_SCENARIO};
use serde_json::{json, Value};
use tower::ServiceExt;

// Slack's published example (docs: "Verifying requests from Slack").
const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const DOC_TIMESTAMP: i64 = 1531420618;
const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const DOC_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

const SECRET: &str = "slack-signing-secret";
const TOKEN: &str = "task-token-1";

#[derive(Default)]
struct RecordingCallbacks {
    successes: Mutex<Vec<(String, Value)>>,
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
    async fn send_task_failure(&self, _: &str, _: &str, _: &str) -> Result<(), CallbackError> {
        Ok(())
    }
}

struct NoStarter;

#[async_trait]
impl PipelineStarter for NoStarter {
    async fn start(&self, _: &IncidentId) -> Result<(), StartError> {
        Ok(())
    }
}

struct Fx {
    router: Router,
    deps: Arc<Deps>,
    store: Arc<MemoryStore>,
    callbacks: Arc<RecordingCallbacks>,
    notifier: Arc<RecordingNotifier>,
    clock: Arc<ManualClock>,
}

fn fixture(slack: Option<SlackInteractivity>) -> Fx {
    let scenario = Arc::new(Scenario::parse(DEMO_SCENARIO, "demo").unwrap());
    let src = Arc::new(scenario.sources());
    let store = Arc::new(MemoryStore::default());
    let clock = Arc::new(ManualClock::at(scenario.alert.timestamp));
    let notifier = Arc::new(RecordingNotifier::default());
    let deps = Arc::new(
        Deps::builder(store.clone())
            .evidence(EvidenceSources::all_from(src))
            .notifier(notifier.clone())
            .pager(Arc::new(RecordingPager::default()))
            .executor(Arc::new(FailingExecutor::default()))
            .clock(clock.clone())
            .source_timeout(Duration::from_secs(5))
            .build(),
    );
    let callbacks = Arc::new(RecordingCallbacks::default());
    let app = Arc::new(App {
        deps: deps.clone(),
        starter: Arc::new(NoStarter),
        callbacks: callbacks.clone(),
        http: HttpConfig::default(),
        runtime_health: Arc::new(|| Ok(())),
    });
    Fx {
        router: router_with_slack(app, slack),
        deps,
        store,
        callbacks,
        notifier,
        clock,
    }
}

fn secured() -> Fx {
    fixture(SlackInteractivity::new(SECRET))
}

struct Reply {
    status: StatusCode,
    body: Value,
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Fx {
    async fn post(&self, body: &str, timestamp: &str, signature: &str) -> Reply {
        let req = Request::post("/slack/interactions")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("X-Slack-Request-Timestamp", timestamp)
            .header("X-Slack-Signature", signature)
            .body(Body::from(body.to_string()))
            .unwrap();
        let r = self.router.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// Signed as Slack signs, at the fixture clock's time.
    async fn post_signed(&self, body: &str) -> Reply {
        let ts = self.clock.now().timestamp().to_string();
        self.post(body, &ts, &slack_signature(SECRET, &ts, body.as_bytes()))
            .await
    }

    /// The demo incident, investigated and planned, waiting for approval.
    async fn awaiting_approval(&self) -> (IncidentId, String) {
        let scenario = Scenario::parse(DEMO_SCENARIO, "demo").unwrap();
        let id = ingest(&self.deps, scenario.alert)
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
                timeout_seconds: Some(600),
            },
        )
        .await
        .unwrap();
        (id, out.approval_id)
    }

    async fn incident(&self, id: &IncidentId) -> Incident {
        self.store.get_incident(id).await.unwrap().unwrap()
    }
}

fn set_clock(clock: &ManualClock, unix: i64) {
    clock.advance(chrono::Duration::seconds(unix - clock.now().timestamp()));
}

/// A `block_actions` payload as Slack sends it when a button of our message is pressed.
fn click(action_id: &str, value: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U2CERLKJA", "username": "alice", "name": "alice", "team_id": "T1DC2JH3J"},
        "api_app_id": "A0APP",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": "1710252460.000100", "channel_id": "C0ONCALL", "is_ephemeral": false},
        "trigger_id": "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
        "team": {"id": "T1DC2JH3J", "domain": "testteamnow"},
        "channel": {"id": "C0ONCALL", "name": "oncall"},
        "response_url": "https://hooks.slack.com/actions/T1DC2JH3J/1/abc",
        "actions": [{
            "action_id": action_id, "block_id": "iras_approval", "type": "button",
            "value": value, "action_ts": "1710252600.123456",
            "text": {"type": "plain_text", "text": "Approve"}
        }]
    });
    format!("payload={}", urlencode(&payload.to_string()))
}

#[tokio::test]
async fn slacks_published_signature_example_is_accepted() {
    let f = fixture(SlackInteractivity::new(DOC_SECRET));
    set_clock(&f.clock, DOC_TIMESTAMP + 30);
    let r = f
        .post(DOC_BODY, &DOC_TIMESTAMP.to_string(), DOC_SIGNATURE)
        .await;
    // Past the signature check: the sample is a slash command, not an interaction payload.
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert!(r.body["error"].as_str().unwrap().contains("payload"));

    let other = fixture(SlackInteractivity::new("not-the-docs-secret"));
    set_clock(&other.clock, DOC_TIMESTAMP + 30);
    let r = other
        .post(DOC_BODY, &DOC_TIMESTAMP.to_string(), DOC_SIGNATURE)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn approve_in_slack_decides_as_the_slack_user_and_resumes_the_pipeline() {
    let f = secured();
    let (id, approval_id) = f.awaiting_approval().await;
    let r = f
        .post_signed(&click("iras_approve", &format!("{id}:{approval_id}")))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body["text"]
            .as_str()
            .unwrap()
            .contains("approved by alice"),
        "{:?}",
        r.body
    );

    let decision = f.incident(&id).await.approval.unwrap().decision.unwrap();
    assert_eq!(decision.decision, Decision::Approved);
    assert_eq!(decision.approver, "alice");
    assert_eq!(decision.channel, "slack");
    let successes = f.callbacks.successes.lock().unwrap().clone();
    assert_eq!(successes.len(), 1);
    assert_eq!(successes[0].0, TOKEN);
    assert_eq!(successes[0].1["channel"], "slack");
    assert_eq!(successes[0].1["decision"], "approved");
    let updates = f.notifier.updates.lock().unwrap().clone();
    assert_eq!(
        updates,
        vec![(id.clone(), "plan approved by alice via slack".to_string())],
        "the Slack message is updated with the decision"
    );

    // A second click changes nothing and says who decided.
    let again = f
        .post_signed(&click("iras_reject", &format!("{id}:{approval_id}")))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(
        again.body["text"]
            .as_str()
            .unwrap()
            .contains("already decided"),
        "{:?}",
        again.body
    );
    assert_eq!(f.callbacks.successes.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn reject_in_slack_records_a_rejection() {
    let f = secured();
    let (id, approval_id) = f.awaiting_approval().await;
    let r = f
        .post_signed(&click("iras_reject", &format!("{id}:{approval_id}")))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let decision = f.incident(&id).await.approval.unwrap().decision.unwrap();
    assert_eq!(decision.decision, Decision::Rejected);
    assert_eq!(decision.channel, "slack");
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_decides_nothing() {
    let f = secured();
    let (id, approval_id) = f.awaiting_approval().await;
    let body = click("iras_approve", &format!("{id}:{approval_id}"));
    let ts = f.clock.now().timestamp().to_string();
    let forged = slack_signature("guessed-secret", &ts, body.as_bytes());
    let r = f.post(&body, &ts, &forged).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Signed, then altered in transit: the signature covers the raw body.
    let good = slack_signature(SECRET, &ts, body.as_bytes());
    let altered = body.replace("alice", "mallory");
    assert_eq!(
        f.post(&altered, &ts, &good).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        f.post(&body, &ts, "").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
    assert!(f.callbacks.successes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_stale_timestamp_is_refused_even_when_correctly_signed() {
    let f = secured();
    let (id, approval_id) = f.awaiting_approval().await;
    let body = click("iras_approve", &format!("{id}:{approval_id}"));
    let old = (f.clock.now().timestamp() - 6 * 60).to_string();
    let r = f
        .post(&body, &old, &slack_signature(SECRET, &old, body.as_bytes()))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body["error"].as_str().unwrap().contains("5 minutes"));
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
}

#[tokio::test]
async fn a_button_from_an_earlier_request_cannot_decide_the_current_one() {
    let f = secured();
    let (id, _) = f.awaiting_approval().await;
    let r = f
        .post_signed(&click(
            "iras_approve",
            &format!("{id}:apr-from-an-older-message"),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "Slack gets its answer");
    assert!(
        r.body["text"].as_str().unwrap().contains("not waiting"),
        "{:?}",
        r.body
    );
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
}

#[tokio::test]
async fn the_approval_page_link_button_is_acknowledged_and_ignored() {
    let f = secured();
    let (id, approval_id) = f.awaiting_approval().await;
    let r = f
        .post_signed(&click("iras_open_page", &format!("{id}:{approval_id}")))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
}

#[tokio::test]
async fn without_a_signing_secret_slack_interactivity_is_off() {
    let f = fixture(None);
    let (id, approval_id) = f.awaiting_approval().await;
    let body = click("iras_approve", &format!("{id}:{approval_id}"));
    let ts = f.clock.now().timestamp().to_string();
    let r = f
        .post(&body, &ts, &slack_signature("", &ts, body.as_bytes()))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["error"]
        .as_str()
        .unwrap()
        .contains("SLACK_SIGNING_SECRET"));
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
    assert!(
        SlackInteractivity::new("   ").is_none(),
        "a blank secret is no secret"
    );
}

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
    fixture_with(slack, None)
}

/// With Slack's Web API at `workspace` (user groups, private replies).
fn fixture_with(
    slack: Option<SlackInteractivity>,
    workspace: Option<Arc<dyn SlackWorkspace>>,
) -> Fx {
    let scenario = Arc::new(Scenario::parse(DEMO_SCENARIO, "demo").unwrap());
    let src = Arc::new(scenario.sources());
    let store = Arc::new(MemoryStore::default());
    let clock = Arc::new(ManualClock::at(scenario.alert.timestamp));
    let notifier = Arc::new(RecordingNotifier::default());
    let mut builder = Deps::builder(store.clone());
    if let Some(w) = workspace {
        builder = builder.slack(w);
    }
    let deps = Arc::new(
        builder
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
    click_by(
        "U2CERLKJA",
        action_id,
        value,
        "https://hooks.slack.com/actions/T1DC2JH3J/1/abc",
    )
}

fn click_by(user_id: &str, action_id: &str, value: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": "T1DC2JH3J"},
        "api_app_id": "A0APP",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": "1710252460.000100", "channel_id": "C0ONCALL", "is_ephemeral": false},
        "trigger_id": "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
        "team": {"id": "T1DC2JH3J", "domain": "testteamnow"},
        "channel": {"id": "C0ONCALL", "name": "oncall"},
        "response_url": response_url,
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
            .contains("approved by <@U2CERLKJA>"),
        "{:?}",
        r.body
    );

    let decision = f.incident(&id).await.approval.unwrap().decision.unwrap();
    assert_eq!(decision.decision, Decision::Approved);
    assert_eq!(decision.approver, "alice");
    assert_eq!(
        decision.identity,
        Some(ApproverIdentity::Slack {
            user_id: "U2CERLKJA".into(),
            team_id: Some("T1DC2JH3J".into())
        }),
        "recorded by the id Slack signed, not the changeable name"
    );
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
    let now = f.clock.now().timestamp();
    // Six minutes old, and the extremes that wrapping arithmetic once let through.
    for ts in [now - 6 * 60, now.wrapping_sub(i64::MAX), i64::MIN, i64::MAX] {
        let old = ts.to_string();
        let r = f
            .post(&body, &old, &slack_signature(SECRET, &old, body.as_bytes()))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "ts {ts}");
        assert!(r.body["error"].as_str().unwrap().contains("5 minutes"));
    }
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

/// A fake Slack: `usergroups.users.list` in the shape of Slack's reference
/// (https://api.slack.com/methods/usergroups.users.list) for group S0604QSJC, `no_such_subteam`
/// for any other, and a `response_url` that records each private reply.
struct FakeSlack {
    url: String,
    replies: Arc<Mutex<Vec<Value>>>,
    group_reads: Arc<Mutex<u32>>,
}

impl FakeSlack {
    async fn start(members: Vec<&'static str>) -> FakeSlack {
        use axum::extract::Query;
        use axum::routing::{get, post};
        let replies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let group_reads: Arc<Mutex<u32>> = Arc::default();
        let (r, g) = (replies.clone(), group_reads.clone());
        let app = Router::new()
            .route(
                "/api/usergroups.users.list",
                get(
                    move |Query(q): Query<std::collections::HashMap<String, String>>| {
                        let (g, members) = (g.clone(), members.clone());
                        async move {
                            *g.lock().unwrap() += 1;
                            axum::Json(match q.get("usergroup").map(String::as_str) {
                                Some("S0604QSJC") => json!({"ok": true, "users": members}),
                                _ => json!({"ok": false, "error": "no_such_subteam"}),
                            })
                        }
                    },
                ),
            )
            .route(
                "/actions/T1DC2JH3J/1/abc",
                post(move |axum::Json(body): axum::Json<Value>| {
                    let r = r.clone();
                    async move {
                        r.lock().unwrap().push(body);
                        ""
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeSlack {
            url,
            replies,
            group_reads,
        }
    }

    fn workspace(&self) -> Arc<dyn SlackWorkspace> {
        let config = iras_adapters::SlackConfig::new(
            format!("{}/api/", self.url).parse().unwrap(),
            "xoxb-test",
            "C0ONCALL",
        );
        Arc::new(iras_adapters::SlackNotifier::new(config).unwrap())
    }

    fn response_url(&self) -> String {
        format!("{}/actions/T1DC2JH3J/1/abc", self.url)
    }

    /// The private replies, once the background send has had its moment.
    async fn replies(&self, expected: usize) -> Vec<Value> {
        for _ in 0..100 {
            if self.replies.lock().unwrap().len() >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.replies.lock().unwrap().clone()
    }
}

fn guarded(fake: &FakeSlack, approvers: &[&str]) -> Fx {
    let mut slack = SlackInteractivity::new(SECRET)
        .unwrap()
        .with_approvers(approvers.iter().map(|a| a.to_string()).collect())
        .unwrap();
    slack.response_url_prefix = format!("{}/actions/", fake.url);
    fixture_with(Some(slack), Some(fake.workspace()))
}

#[tokio::test]
async fn a_click_by_someone_not_allowed_is_refused_and_they_are_told_privately() {
    let fake = FakeSlack::start(vec!["U060R4BJ4"]).await;
    let f = guarded(&fake, &["U0ALLOWED1", "S0604QSJC"]);
    let (id, approval_id) = f.awaiting_approval().await;
    let r = f
        .post_signed(&click_by(
            "U2CERLKJA",
            "iras_approve",
            &format!("{id}:{approval_id}"),
            &fake.response_url(),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "Slack gets its answer in time");
    let replies = fake.replies(1).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["response_type"], "ephemeral");
    assert_eq!(replies[0]["replace_original"], false);
    let text = replies[0]["text"].as_str().unwrap();
    assert!(
        text.contains("<@U2CERLKJA>") && text.contains("not on"),
        "{text}"
    );
    assert!(
        f.callbacks.successes.lock().unwrap().is_empty(),
        "nothing decided"
    );
    let inc = f.incident(&id).await;
    assert_eq!(inc.status, IncidentStatus::AwaitingApproval);
    assert!(inc.approval.unwrap().decision.is_none());
}

#[tokio::test]
async fn a_member_of_an_approver_group_decides_and_a_late_click_is_told_privately() {
    let fake = FakeSlack::start(vec!["U060R4BJ4", "U2CERLKJA"]).await;
    let f = guarded(&fake, &["S0604QSJC"]);
    let (id, approval_id) = f.awaiting_approval().await;
    let value = format!("{id}:{approval_id}");
    let r = f
        .post_signed(&click_by(
            "U2CERLKJA",
            "iras_approve",
            &value,
            &fake.response_url(),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let decision = f.incident(&id).await.approval.unwrap().decision.unwrap();
    assert_eq!(decision.decision, Decision::Approved);
    assert!(
        matches!(decision.identity, Some(ApproverIdentity::Slack { ref user_id, .. }) if user_id == "U2CERLKJA")
    );
    assert_eq!(f.callbacks.successes.lock().unwrap().len(), 1);

    // Another member clicks Reject a moment later: refused, and only they hear why.
    let r = f
        .post_signed(&click_by(
            "U060R4BJ4",
            "iras_reject",
            &value,
            &fake.response_url(),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let replies = fake.replies(1).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(
        replies[0]["text"]
            .as_str()
            .unwrap()
            .contains("already decided"),
        "{replies:?}"
    );
    assert_eq!(f.callbacks.successes.lock().unwrap().len(), 1);
    assert_eq!(
        *fake.group_reads.lock().unwrap(),
        1,
        "members are cached, not read per click"
    );
}

#[tokio::test]
async fn when_the_approver_group_cannot_be_read_nobody_decides() {
    let fake = FakeSlack::start(vec!["U2CERLKJA"]).await;
    let f = guarded(&fake, &["S0DELETED1"]);
    let (id, approval_id) = f.awaiting_approval().await;
    f.post_signed(&click_by(
        "U2CERLKJA",
        "iras_approve",
        &format!("{id}:{approval_id}"),
        &fake.response_url(),
    ))
    .await;
    let replies = fake.replies(1).await;
    let text = replies[0]["text"].as_str().unwrap();
    assert!(
        text.contains("could not check") && text.contains("no_such_subteam"),
        "{text}"
    );
    assert!(f.incident(&id).await.approval.unwrap().decision.is_none());
}

#[tokio::test]
async fn a_response_url_that_is_not_slacks_is_never_called() {
    let fake = FakeSlack::start(vec![]).await;
    // The default prefix: only https://hooks.slack.com/ is followed.
    let slack = SlackInteractivity::new(SECRET)
        .unwrap()
        .with_approvers(vec!["U0ALLOWED1".into()])
        .unwrap();
    let f = fixture_with(Some(slack), Some(fake.workspace()));
    let (id, approval_id) = f.awaiting_approval().await;
    let r = f
        .post_signed(&click_by(
            "U2CERLKJA",
            "iras_approve",
            &format!("{id}:{approval_id}"),
            &fake.response_url(),
        ))
        .await;
    assert!(r.body["text"].as_str().unwrap().contains("not on"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fake.replies.lock().unwrap().is_empty());
}

#[test]
fn an_approver_list_with_a_name_instead_of_an_id_is_refused() {
    let vars = |v: &str| -> std::collections::HashMap<String, String> {
        [
            ("SLACK_SIGNING_SECRET".to_string(), SECRET.to_string()),
            ("SLACK_APPROVERS".to_string(), v.to_string()),
        ]
        .into()
    };
    let ok = SlackInteractivity::from_vars(&vars("U060R4BJ4, S0604QSJC"))
        .unwrap()
        .unwrap();
    assert_eq!(ok.approvers, ["U060R4BJ4", "S0604QSJC"]);
    let e = SlackInteractivity::from_vars(&vars("U060R4BJ4,@alice")).unwrap_err();
    assert!(e.contains("@alice"), "{e}");
}

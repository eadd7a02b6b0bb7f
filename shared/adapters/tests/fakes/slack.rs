//! `SlackNotifier` against a fake Slack Web API (`chat.postMessage`, `chat.update`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use iras_adapters::slack::{APPROVE_ACTION, REJECT_ACTION};
use iras_adapters::{SlackConfig, SlackNotifier};
use iras_core::*;
use serde_json::{json, Value};

use crate::support::*;

const TOKEN: &str = "task-token-never-leaves-the-store";

pub fn incident() -> Incident {
    let alert = Alert::from_json(json!({
        "title": "High error rate on payment-service <!channel> & <https://evil.example|click>",
        "timestamp": "2024-03-12T14:07:30Z",
        "service": "payment-service",
    }))
    .unwrap();
    let now = alert.timestamp;
    let mut inc = Incident::open(IncidentId("inc-0001".into()), alert, now);
    inc.severity = Some(Severity::P1);
    inc.status = IncidentStatus::AwaitingApproval;
    inc.hypothesis = Some(RootCauseHypothesis {
        primary_cause: "v2.3.1 dereferences a null billing address <@U123>".into(),
        root_cause_service: "payment-service".into(),
        fault: "bad_deploy".into(),
        candidates: vec![],
        contributing_factors: vec![],
        evidence: vec![
            "error_rate 0.45 vs 0.002 baseline".into(),
            "NullPointerException at BillingAddress.country (212 lines)".into(),
        ],
        confidence: 0.87,
        alternatives: vec![],
        suspect_deployment: None,
        analyst: "offline".into(),
    });
    inc.plan = Some(RemediationPlan {
        summary: "Roll back payment-service to v2.3.0".into(),
        steps: vec![
            RemediationStep::new(
                "Roll back the deployment".into(),
                Action::EcsSetTaskDefinition {
                    cluster: "shop".into(),
                    service: "payment-service".into(),
                    task_definition: "payment-service:41".into(),
                    from: Some("payment-service:42".into()),
                },
                RiskLevel::Medium,
                120,
            ),
            RemediationStep::new(
                "Flush the <b>cache</b>".into(),
                Action::SsmRunCommand {
                    document: "AWS-RunShellScript".into(),
                    parameters: [(
                        "commands".to_string(),
                        vec!["redis-cli FLUSHALL".to_string()],
                    )]
                    .into_iter()
                    .collect(),
                    targets: CommandTargets::InstanceIds {
                        instance_ids: vec!["i-0cache".into()],
                    },
                },
                RiskLevel::High,
                5,
            ),
        ],
        reversible: false,
        requires_human_approval: true,
        blocked_by_policy: false,
        policy: vec![
            PolicyVerdict {
                step: 0,
                allowed: true,
                reason: "kubectl rollout undo".into(),
            },
            PolicyVerdict {
                step: 1,
                allowed: true,
                reason: "redis flush".into(),
            },
        ],
        safety_notes: vec!["step 2 has no rollback: approval required".into()],
        analyst: "offline".into(),
        required_approvers: 1,
    });
    inc.approval = Some(ApprovalRequest {
        approval_id: "apr-42".into(),
        task_token: TOKEN.into(),
        requested_at: now,
        expires_at: now + chrono::Duration::minutes(120),
        decision: None,
        message_ref: None,
        plan_hash: String::new(),
        required_approvers: 1,
        approvals: vec![],
    });
    inc
}

fn notifier(fake: &FakeServer) -> SlackNotifier {
    SlackNotifier::new(SlackConfig::new(fake.url(), "xoxb-test-token", "C0ONCALL")).unwrap()
}

fn ok_fake() -> Router {
    Router::new()
        .route(
            "/chat.postMessage",
            post(|| async {
                Json(json!({"ok": true, "channel": "C0ONCALL", "ts": "1710252460.000100",
                            "message": {"type": "message", "text": "..."}}))
            }),
        )
        .route(
            "/chat.update",
            post(|| async {
                Json(json!({"ok": true, "channel": "C0ONCALL", "ts": "1710252460.000100", "text": "..."}))
            }),
        )
}

fn all_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(all_text).collect::<Vec<_>>().join("\n"),
        Value::Object(o) => o.values().map(all_text).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

#[tokio::test]
async fn the_approval_message_shows_the_plan_and_buttons_and_escapes_what_it_quotes() {
    let fake = FakeServer::start(ok_fake()).await;
    let slack = notifier(&fake);
    let inc = incident();
    slack
        .approval_requested(
            &inc,
            Some("https://iras.example/approvals/apr-42?exp=1&sig=ab"),
        )
        .await
        .unwrap();

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/chat.postMessage");
    assert_eq!(r.header("authorization"), Some("Bearer xoxb-test-token"));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let body = r.json();
    assert_eq!(body["channel"], "C0ONCALL");
    let raw = String::from_utf8(r.body.clone()).unwrap();
    assert!(!raw.contains(TOKEN), "the task token never goes to Slack");

    let blocks = body["blocks"].as_array().unwrap();
    let mrkdwn: String = blocks
        .iter()
        .filter(|b| b["type"] == "section")
        .map(all_text)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(mrkdwn.contains("*Severity*\nP1"));
    assert!(mrkdwn.contains("87% confidence"));
    assert!(mrkdwn.contains("&lt;@U123&gt;"), "{mrkdwn}");
    assert!(!mrkdwn.contains("<@U123>"));
    assert!(mrkdwn.contains("error_rate 0.45 vs 0.002 baseline"));
    // What people approve is rendered from the action: the CLI, the resource and the change.
    assert!(mrkdwn.contains(
        "aws ecs update-service --cluster shop --service payment-service --task-definition payment-service:41"
    ));
    assert!(mrkdwn.contains("ECS service shop/payment-service"));
    assert!(mrkdwn.contains("task definition payment-service:42 → payment-service:41"));
    assert!(mrkdwn.contains("risk *medium*"));
    assert!(mrkdwn.contains("risk *high*"));
    assert!(mrkdwn.contains("Flush the &lt;b&gt;cache&lt;/b&gt;"));
    assert!(mrkdwn.contains("cannot be undone"));
    assert!(mrkdwn.contains("policy allows"));
    assert!(
        !all_text(&body["text"]).contains("<!channel>"),
        "fallback text is escaped too"
    );
    assert!(all_text(&body["text"]).contains("&lt;!channel&gt; &amp;"));

    let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
    let buttons = actions["elements"].as_array().unwrap();
    assert_eq!(buttons[0]["action_id"], APPROVE_ACTION);
    assert_eq!(buttons[0]["value"], "inc-0001:apr-42");
    assert_eq!(buttons[1]["action_id"], REJECT_ACTION);
    assert_eq!(buttons[1]["value"], "inc-0001:apr-42");
    assert_eq!(
        buttons[2]["url"],
        "https://iras.example/approvals/apr-42?exp=1&sig=ab"
    );
}

#[tokio::test]
async fn an_update_replies_in_the_thread_and_edits_the_original_with_the_decision() {
    let fake = FakeServer::start(ok_fake()).await;
    let slack = notifier(&fake);
    let mut inc = incident();
    slack.approval_requested(&inc, None).await.unwrap();

    inc.approval.as_mut().unwrap().decision = Some(ApprovalDecision {
        decision: Decision::Approved,
        approver: "alice".into(),
        identity: None,
        channel: "slack".into(),
        decided_at: inc.created_at + chrono::Duration::minutes(3),
        comment: None,
        plan_hash: String::new(),
        delivery_pending: false,
    });
    inc.status = IncidentStatus::Remediating;
    slack
        .incident_updated(&inc, "plan approved by alice via slack")
        .await
        .unwrap();

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    let reply = reqs[1].json();
    assert_eq!(reqs[1].path, "/chat.postMessage");
    assert_eq!(reply["thread_ts"], "1710252460.000100");
    assert_eq!(reply["channel"], "C0ONCALL");
    assert_eq!(reply["text"], "plan approved by alice via slack");
    let edit = reqs[2].json();
    assert_eq!(reqs[2].path, "/chat.update");
    assert_eq!(edit["ts"], "1710252460.000100");
    assert_eq!(edit["channel"], "C0ONCALL");
    let text = all_text(&edit["blocks"]);
    assert!(text.contains("*Approved* by alice via slack"), "{text}");
    assert!(
        !edit["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "actions"),
        "no buttons once decided"
    );
}

/// On AWS the approval is posted by request-approval and decided in approval-callback: two
/// processes. The second finds the message through the reference the stage stored.
#[tokio::test]
async fn another_process_threads_under_the_approval_message_through_its_stored_reference() {
    let fake = FakeServer::start(ok_fake()).await;
    let mut inc = incident();
    let message_ref = notifier(&fake)
        .approval_requested(
            &inc,
            Some("https://iras.example/approvals/apr-42?exp=1&sig=ab"),
        )
        .await
        .unwrap()
        .expect("Slack says where it posted");
    inc.approval.as_mut().unwrap().message_ref = Some(message_ref);

    let elsewhere = notifier(&fake);
    elsewhere
        .incident_updated(&inc, "plan rejected by bob via page")
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "post, thread reply, edit");
    assert_eq!(reqs[1].json()["thread_ts"], "1710252460.000100");
    assert_eq!(reqs[2].path, "/chat.update");
    assert_eq!(reqs[2].json()["ts"], "1710252460.000100");
    let edited = all_text(&reqs[2].json()["blocks"]);
    assert!(edited.contains("plan rejected by bob via page"), "{edited}");

    // A reference it cannot read is not followed: the update still reaches the channel.
    inc.approval.as_mut().unwrap().message_ref = Some("not-a-slack-reference".into());
    notifier(&fake)
        .incident_updated(&inc, "escalated")
        .await
        .unwrap();
    let last = fake.requests().last().unwrap().json();
    assert!(last.get("thread_ts").is_none());
}

#[tokio::test]
async fn an_update_for_an_unknown_message_is_posted_on_its_own() {
    let fake = FakeServer::start(ok_fake()).await;
    let inc = incident();
    notifier(&fake)
        .incident_updated(&inc, "escalated: nobody decided in time")
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let body = reqs[0].json();
    assert!(body.get("thread_ts").is_none());
    assert!(body["text"].as_str().unwrap().contains("inc-0001"));
}

#[tokio::test]
async fn slack_refusals_with_ok_false_are_errors() {
    let fake = FakeServer::fixed(
        200,
        &[("content-type", "application/json")],
        r#"{"ok":false,"error":"channel_not_found"}"#,
    )
    .await;
    let e = notifier(&fake)
        .approval_requested(&incident(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("channel_not_found"), "{e}");
}

#[tokio::test]
async fn an_empty_answer_without_ts_is_an_error() {
    let fake = FakeServer::fixed(200, &[], r#"{"ok":true}"#).await;
    let e = notifier(&fake)
        .approval_requested(&incident(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ts"), "{e}");
}

#[tokio::test]
async fn a_rate_limit_is_retried_once_after_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = FakeServer::start(Router::new().route(
        "/chat.postMessage",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Canned::new(429, &[("retry-after", "1")], "").into_response()
                } else {
                    Canned::json(200, json!({"ok": true, "channel": "C0ONCALL", "ts": "1.2"}))
                        .into_response()
                }
            }
        }),
    ))
    .await;
    let started = Instant::now();
    notifier(&fake)
        .approval_requested(&incident(), None)
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited Retry-After"
    );

    let always = FakeServer::fixed(429, &[("retry-after", "0")], "").await;
    let e = notifier(&always)
        .approval_requested(&incident(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("rate limited"), "{e}");
    assert_eq!(always.requests().len(), 2, "one retry, not more");
}

#[tokio::test]
async fn a_slow_slack_times_out() {
    let fake = FakeServer::slow(FAKE_DELAY, "{}").await;
    let mut c = SlackConfig::new(fake.url(), "xoxb-test-token", "C0ONCALL");
    c.timeout = SHORT_TIMEOUT;
    let e = SlackNotifier::new(c)
        .unwrap()
        .approval_requested(&incident(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[tokio::test]
async fn malformed_bodies_are_errors() {
    for (status, body) in [(200, "<html>ok</html>"), (200, "[]"), (500, "oops")] {
        let fake = FakeServer::fixed(status, &[], body).await;
        let e = notifier(&fake).approval_requested(&incident(), None).await;
        assert!(e.is_err(), "{status} {body}");
    }
}

/// `usergroups.users.list` as Slack's reference shows it
/// (https://api.slack.com/methods/usergroups.users.list: "Common successful response" and
/// "Common error response"), and a `response_url` that takes the private reply.
fn workspace_fake() -> Router {
    use axum::extract::Query;
    use axum::routing::get;
    Router::new()
        .route(
            "/usergroups.users.list",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    match q.get("usergroup").map(String::as_str) {
                        Some("S0604QSJC") => {
                            Json(json!({"ok": true, "users": ["U060R4BJ4", "W123A4BC5"]}))
                        }
                        _ => Json(json!({"ok": false, "error": "no_such_subteam"})),
                    }
                },
            ),
        )
        .route("/actions/T1DC2JH3J/1/abc", post(|| async { "" }))
}

#[tokio::test]
async fn a_user_groups_members_are_read_with_the_bot_token_and_its_errors_named() {
    let fake = FakeServer::start(workspace_fake()).await;
    let slack = notifier(&fake);
    let members = slack.usergroup_members("S0604QSJC").await.unwrap();
    assert_eq!(members, ["U060R4BJ4", "W123A4BC5"]);
    let r = &fake.requests()[0];
    assert_eq!(r.method, "GET", "this method takes no JSON body");
    assert_eq!(r.query, "usergroup=S0604QSJC");
    assert_eq!(r.header("authorization"), Some("Bearer xoxb-test-token"));
    let e = slack.usergroup_members("S0NOSUCH1").await.unwrap_err();
    assert!(e.to_string().contains("no_such_subteam"), "{e}");
}

#[tokio::test]
async fn a_private_reply_goes_to_the_response_url_as_an_ephemeral_message() {
    let fake = FakeServer::start(workspace_fake()).await;
    let slack = notifier(&fake);
    let url = format!("{}/actions/T1DC2JH3J/1/abc", fake.url);
    slack
        .reply_privately(&url, "you are not on the approver list")
        .await
        .unwrap();
    let r = &fake.requests()[0];
    assert_eq!(r.path, "/actions/T1DC2JH3J/1/abc");
    assert_eq!(
        r.json(),
        json!({"response_type": "ephemeral", "replace_original": false,
               "text": "you are not on the approver list"})
    );
    // Slack answers 404 once the URL was used five times or thirty minutes passed.
    let gone = format!("{}/actions/expired", fake.url);
    assert!(slack.reply_privately(&gone, "late").await.is_err());
}

#[tokio::test]
async fn the_request_mentions_the_oncall_group_and_times_read_in_each_readers_zone() {
    let fake = FakeServer::start(ok_fake()).await;
    let mut config = SlackConfig::new(fake.url(), "xoxb-test-token", "C0ONCALL");
    config.oncall_usergroup = Some("S0604QSJC".into());
    let slack = SlackNotifier::new(config).unwrap();
    let mut inc = incident();
    slack.approval_requested(&inc, None).await.unwrap();
    let body = fake.requests()[0].json();
    assert!(all_text(&body["text"]).starts_with("<!subteam^S0604QSJC> Approval needed"));
    let shown = all_text(&body["blocks"]);
    assert!(
        shown.contains("<!subteam^S0604QSJC>"),
        "a mention in the blocks notifies"
    );
    let expires = inc.approval.as_ref().unwrap().expires_at;
    assert!(
        shown.contains(&format!(
            "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
            expires.timestamp(),
            expires.format("%Y-%m-%d %H:%M UTC")
        )),
        "{shown}"
    );

    // Decided in Slack: the decider is a mention of their stable id, not a changeable name.
    inc.approval.as_mut().unwrap().decision = Some(ApprovalDecision {
        decision: Decision::Approved,
        approver: "alice".into(),
        identity: Some(ApproverIdentity::Slack {
            user_id: "U060R4BJ4".into(),
            team_id: Some("T1DC2JH3J".into()),
        }),
        channel: "slack".into(),
        decided_at: inc.created_at + chrono::Duration::minutes(3),
        comment: None,
        plan_hash: String::new(),
        delivery_pending: false,
    });
    slack.incident_updated(&inc, "approved").await.unwrap();
    let edit = fake.requests()[2].json();
    assert!(all_text(&edit["blocks"]).contains("*Approved* by <@U060R4BJ4> via slack at <!date^"));
    // A typed name says it was typed.
    inc.approval
        .as_mut()
        .unwrap()
        .decision
        .as_mut()
        .unwrap()
        .identity = Some(ApproverIdentity::SelfDeclared {
        name: "<@U999> bob".into(),
        link_sent_to: Some("slack".into()),
    });
    inc.approval
        .as_mut()
        .unwrap()
        .decision
        .as_mut()
        .unwrap()
        .approver = "<@U999> bob (self-declared)".into();
    slack.incident_updated(&inc, "approved").await.unwrap();
    let edit = fake.requests()[4].json();
    let text = all_text(&edit["blocks"]);
    assert!(
        text.contains("*Approved* by &lt;@U999&gt; bob (self-declared) via slack"),
        "{text}"
    );
}

//! Crash and resume: `kill()` a runtime, open a new one on the same database, and check that
//! executions go on from where they were without redoing finished work.

#[path = "runtime_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use sfn_local::exec_store::{ExecutionStatus, HistoryEventType};
use sfn_local::runtime::{FunctionError, Runtime, RuntimeError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

fn approval_flow(timeout: Option<u64>) -> Value {
    let mut approve = json!({
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": arn("approver"), "Payload": {"token.$": "$$.Task.Token", "incident.$": "$.id"}},
        "ResultPath": "$.approval",
        "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout", "Next": "Escalate"}],
        "Next": "Remediate"
    });
    if let Some(t) = timeout {
        approve["TimeoutSeconds"] = json!(t);
    }
    json!({"StartAt": "Triage", "States": {
        "Triage": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": arn("triage"), "Payload.$": "$"},
            "ResultSelector": {"severity.$": "$.Payload.severity"},
            "ResultPath": "$.triage",
            "Next": "Approve"
        },
        "Approve": approve,
        "Remediate": {"Type": "Pass", "Result": "remediated", "ResultPath": "$.action", "End": true},
        "Escalate": {"Type": "Pass", "Result": "escalated", "ResultPath": "$.action", "End": true}
    }})
}

async fn open(
    db: &Path,
    def: Value,
    triage: &Calls,
    approver: Arc<dyn sfn_local::runtime::LambdaFunction>,
) -> Arc<Runtime> {
    let triage = func(triage, |_, _| Ok(json!({"severity": "high"})));
    Runtime::open(
        db,
        definition(def),
        registry(vec![("triage", triage), ("approver", approver)]),
        fast(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_waiting_for_a_token_the_execution_resumes_in_a_new_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("iras.db");
    let triage_calls = Calls::default();
    let approver_calls = Calls::default();

    let (approver, mut tokens) = token_sink(&approver_calls);
    let first = open(&db, approval_flow(None), &triage_calls, approver).await;
    first
        .start_execution("inc-1", json!({"id": "inc-1"}))
        .await
        .unwrap();
    let token = recv_token(&mut tokens).await;
    wait_for_event(&first, "inc-1", HistoryEventType::TaskSubmitted).await;
    first.kill();
    assert!(matches!(
        first.send_task_success(&token, json!({})).await,
        Err(RuntimeError::Killed)
    ));

    let (approver, mut tokens_after) = token_sink(&approver_calls);
    let second = open(&db, approval_flow(None), &triage_calls, approver).await;
    let info = second.describe_execution("inc-1").await.unwrap().unwrap();
    assert_eq!(info.status, ExecutionStatus::Running);
    assert_eq!(info.current_state.as_deref(), Some("Approve"));
    // Give the resumed driver time to look at the token and park again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokens_after.try_recv().is_err(),
        "the callback function had returned before the crash: not invoked again"
    );
    second
        .send_task_success(&token, json!({"approved": true}))
        .await
        .unwrap();
    let done = second.wait_for_completion("inc-1", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(
        done.output,
        Some(
            json!({"id": "inc-1", "triage": {"severity": "high"}, "approval": {"approved": true}, "action": "remediated"})
        )
    );
    assert_eq!(
        triage_calls.get(),
        1,
        "the state before the wait is not redone"
    );
    assert_eq!(
        approver_calls.get(),
        1,
        "the callback function had returned: not invoked again"
    );
    assert!(tokens_after.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_callback_function_returned_it_is_invoked_again_with_the_same_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("iras.db");
    let triage_calls = Calls::default();
    let approver_calls = Calls::default();

    let (hanging, mut tokens) = hanging_token_sink(&approver_calls);
    let first = open(&db, approval_flow(None), &triage_calls, hanging).await;
    first
        .start_execution("inc-2", json!({"id": "inc-2"}))
        .await
        .unwrap();
    let token = recv_token(&mut tokens).await;
    first.kill();

    let (approver, mut tokens_after) = token_sink(&approver_calls);
    let second = open(&db, approval_flow(None), &triage_calls, approver).await;
    let again = recv_token(&mut tokens_after).await;
    assert_eq!(again, token, "the resumed call carries the persisted token");
    second
        .send_task_success(&token, json!({"approved": true}))
        .await
        .unwrap();
    let done = second.wait_for_completion("inc-2", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!(approver_calls.get(), 2);
    assert_eq!(triage_calls.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_deadline_that_passed_while_down_fires_at_once_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("iras.db");
    let triage_calls = Calls::default();
    let (approver, mut tokens) = token_sink(&Calls::default());
    let first = open(&db, approval_flow(Some(1)), &triage_calls, approver).await;
    first
        .start_execution("inc-3", json!({"id": "inc-3"}))
        .await
        .unwrap();
    let token = recv_token(&mut tokens).await;
    wait_for_event(&first, "inc-3", HistoryEventType::TaskSubmitted).await;
    first.kill();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let (approver, _tokens) = token_sink(&Calls::default());
    let reopened = std::time::Instant::now();
    let second = open(&db, approval_flow(Some(1)), &triage_calls, approver).await;
    let done = second.wait_for_completion("inc-3", WAIT).await.unwrap();
    assert!(
        reopened.elapsed() < Duration::from_millis(900),
        "{:?}",
        reopened.elapsed()
    );
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    let out = done.output.unwrap();
    assert_eq!(out["timeout"]["Error"], json!("States.Timeout"));
    assert_eq!(out["action"], json!("escalated"));
    assert!(matches!(
        second.send_task_success(&token, json!({})).await,
        Err(RuntimeError::TaskTimedOut)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("iras.db");
    let def = json!({"StartAt": "Cooldown", "States": {
        "Cooldown": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Pass", "Result": "checked", "ResultPath": "$.after", "End": true}
    }});
    let first = Runtime::open(&db, definition(def.clone()), registry(vec![]), fast())
        .await
        .unwrap();
    let started = first
        .start_execution("wait-1", json!({"id": 1}))
        .await
        .unwrap();
    wait_for_event(&first, "wait-1", HistoryEventType::WaitStarted).await;
    first.kill();
    // Down for half the wait: the resumed wait must only sleep what is left, not start over.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let second = Runtime::open(&db, definition(def), registry(vec![]), fast())
        .await
        .unwrap();
    let done = second.wait_for_completion("wait-1", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!(done.output, Some(json!({"id": 1, "after": "checked"})));
    let waited = done.stop_date.unwrap() - started.start_date;
    assert!(waited >= chrono::Duration::milliseconds(1000), "{waited}");
    assert!(waited < chrono::Duration::milliseconds(1450), "{waited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_backoff_survives_a_restart_with_its_counters() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("iras.db");
    let def = json!({"StartAt": "Call", "States": {"Call": {
        "Type": "Task", "Resource": arn("flaky"),
        "Retry": [{"ErrorEquals": ["Transient"], "IntervalSeconds": 50, "MaxAttempts": 2}],
        "End": true
    }}});
    let calls = Calls::default();
    let always_fails = |calls: &Calls| {
        func(calls, |_, _| {
            Err(FunctionError::new("Transient", "still down"))
        })
    };
    // 50 s × 0.01 = 0.5 s of backoff, during which the runtime dies.
    let first = Runtime::open(
        &db,
        definition(def.clone()),
        registry(vec![("flaky", always_fails(&calls))]),
        fast(),
    )
    .await
    .unwrap();
    first.start_execution("retry-2", json!({})).await.unwrap();
    wait_for_event(&first, "retry-2", HistoryEventType::TaskRetryScheduled).await;
    first.kill();
    assert_eq!(calls.get(), 1);

    let second = Runtime::open(
        &db,
        definition(def),
        registry(vec![("flaky", always_fails(&calls))]),
        fast(),
    )
    .await
    .unwrap();
    let done = second.wait_for_completion("retry-2", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("Transient"));
    assert_eq!(
        calls.get(),
        3,
        "MaxAttempts 2 counts the retry made before the crash"
    );
}

//! The runtime running state machines: tasks, retries, catches, callbacks, timeouts, the API.

#[path = "runtime_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use sfn_local::exec_store::{ExecutionStatus, HistoryEventType};
use sfn_local::runtime::{FunctionError, Runtime, RuntimeError, RuntimeEvent, RuntimeOptions};
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

async fn open(
    dir: &tempfile::TempDir,
    def: Value,
    functions: sfn_local::runtime::FunctionRegistry,
) -> std::sync::Arc<Runtime> {
    Runtime::open(
        &dir.path().join("iras.db"),
        definition(def),
        functions,
        fast(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fails_twice_then_succeeds_is_retried_on_the_backoff_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls::default();
    let flaky = func(&calls, |n, p| {
        if n <= 2 {
            Err(FunctionError::new(
                "Transient",
                format!("attempt {n} failed"),
            ))
        } else {
            Ok(json!({"echo": p, "attempt": n}))
        }
    });
    let rt = open(
        &dir,
        json!({"StartAt": "Call", "States": {"Call": {
            "Type": "Task", "Resource": arn("flaky"),
            "Retry": [{"ErrorEquals": ["Transient"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 3}],
            "End": true
        }}}),
        registry(vec![("flaky", flaky)]),
    )
    .await;
    let mut events = rt.subscribe();
    rt.start_execution("retry-1", json!({"x": 1}))
        .await
        .unwrap();
    let done = rt.wait_for_completion("retry-1", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(done.output, Some(json!({"echo": {"x": 1}, "attempt": 3})));
    assert_eq!(calls.get(), 3);

    // The computed schedule is 2 s then 6 s (IntervalSeconds × BackoffRate^n), run at 1%.
    let mut delays = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let RuntimeEvent::TaskFailed {
            retry: Some(r),
            error,
            ..
        } = ev
        {
            assert_eq!(error, "Transient");
            delays.push((r.attempt, r.delay, r.scaled_delay.as_secs_f64()));
        }
    }
    assert_eq!(delays.len(), 2, "{delays:?}");
    assert_eq!((delays[0].0, delays[0].1), (1, Duration::from_secs(2)));
    assert_eq!((delays[1].0, delays[1].1), (2, Duration::from_secs(6)));
    assert!(
        (delays[0].2 - 0.02).abs() < 1e-6 && (delays[1].2 - 0.06).abs() < 1e-6,
        "{delays:?}"
    );
    let history = rt.history("retry-1").await.unwrap();
    let retries = history
        .iter()
        .filter(|e| e.event_type == HistoryEventType::TaskRetryScheduled)
        .count();
    assert_eq!(retries, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_keeps_failing_goes_to_catch_with_the_error_output() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls::default();
    let broken = func(&calls, |_, _| {
        Err(FunctionError::new(
            "HandledError",
            "the analysis backend is down",
        ))
    });
    let rt = open(
        &dir,
        json!({"StartAt": "Call", "States": {
            "Call": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": arn("broken"), "Payload.$": "$"},
                "Retry": [{"ErrorEquals": ["HandledError"], "IntervalSeconds": 1, "MaxAttempts": 2}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recover"}],
                "Next": "Unreached"
            },
            "Unreached": {"Type": "Succeed"},
            "Recover": {"Type": "Pass", "End": true}
        }}),
        registry(vec![("broken", broken)]),
    )
    .await;
    rt.start_execution("catch-1", json!({"incident": "i-1"}))
        .await
        .unwrap();
    let done = rt.wait_for_completion("catch-1", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!(calls.get(), 3, "one call and two retries");
    let out = done.output.unwrap();
    assert_eq!(out["incident"], json!("i-1"));
    assert_eq!(out["error"]["Error"], json!("HandledError"));
    let cause: Value = serde_json::from_str(out["error"]["Cause"].as_str().unwrap()).unwrap();
    assert_eq!(
        cause,
        json!({"errorMessage": "the analysis backend is down", "errorType": "HandledError"})
    );
    let states: Vec<String> = rt
        .history("catch-1")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == HistoryEventType::StateEntered)
        .filter_map(|e| e.state)
        .collect();
    assert_eq!(states, vec!["Call", "Recover"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_invoke_result_shape_and_unknown_function() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls::default();
    let echo = func(&calls, |_, p| Ok(json!({"got": p})));
    let rt = open(
        &dir,
        json!({"StartAt": "Invoke", "States": {
            "Invoke": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "echo", "Payload": {"id.$": "$.id", "exec.$": "$$.Execution.Name"}},
                "ResultPath": "$.raw",
                "Next": "Missing"
            },
            "Missing": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": arn("nope")},
                "Catch": [{"ErrorEquals": ["Lambda.ResourceNotFoundException"], "ResultPath": "$.missing", "Next": "Done"}],
                "End": true
            },
            "Done": {"Type": "Succeed"}
        }}),
        registry(vec![("echo", echo)]),
    )
    .await;
    rt.start_execution("shape-1", json!({"id": 7}))
        .await
        .unwrap();
    let out = rt
        .wait_for_completion("shape-1", WAIT)
        .await
        .unwrap()
        .output
        .unwrap();
    assert_eq!(
        out["raw"]["Payload"],
        json!({"got": {"id": 7, "exec": "shape-1"}})
    );
    assert_eq!(out["raw"]["StatusCode"], json!(200));
    assert_eq!(out["raw"]["ExecutedVersion"], json!("$LATEST"));
    assert_eq!(
        out["missing"]["Error"],
        json!("Lambda.ResourceNotFoundException")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_task_token_resumes_with_the_output_placed_by_result_path() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls::default();
    let (approver, mut tokens) = token_sink(&calls);
    let rt = open(
        &dir,
        json!({"StartAt": "Approve", "States": {
            "Approve": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": arn("approver"), "Payload": {"token.$": "$$.Task.Token", "incident.$": "$.id"}},
                "ResultPath": "$.approval",
                "End": true
            }
        }}),
        registry(vec![("approver", approver)]),
    )
    .await;
    rt.start_execution("approve-1", json!({"id": "inc-9"}))
        .await
        .unwrap();
    let token = recv_token(&mut tokens).await;
    assert_eq!(token.len(), 64);
    wait_for_event(&rt, "approve-1", HistoryEventType::TaskSubmitted).await;
    assert_eq!(
        rt.describe_execution("approve-1")
            .await
            .unwrap()
            .unwrap()
            .status,
        ExecutionStatus::Running
    );
    let pending = rt.pending_tasks("approve-1").await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].token.as_str(), pending[0].state.as_str()),
        (token.as_str(), "Approve")
    );
    assert_eq!(
        pending[0].payload,
        json!({"token": token, "incident": "inc-9"})
    );
    rt.send_task_success(&token, json!({"approved": true, "by": "oncall"}))
        .await
        .unwrap();
    let done = rt.wait_for_completion("approve-1", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!(
        done.output,
        Some(json!({"id": "inc-9", "approval": {"approved": true, "by": "oncall"}}))
    );
    assert_eq!(calls.get(), 1);
    assert!(rt.pending_tasks("approve-1").await.unwrap().is_empty());
    // The token is spent.
    assert!(matches!(
        rt.send_task_success(&token, json!({})).await,
        Err(RuntimeError::TaskTimedOut)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_task_failure_goes_through_catch() {
    let dir = tempfile::tempdir().unwrap();
    let (approver, mut tokens) = token_sink(&Calls::default());
    let rt = open(
        &dir,
        json!({"StartAt": "Approve", "States": {
            "Approve": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": arn("approver"), "Payload": {"token.$": "$$.Task.Token"}},
                "Catch": [{"ErrorEquals": ["Rejected"], "ResultPath": "$.rejection", "Next": "Rejected"}],
                "End": true
            },
            "Rejected": {"Type": "Fail", "ErrorPath": "$.rejection.Error", "CausePath": "$.rejection.Cause"}
        }}),
        registry(vec![("approver", approver)]),
    )
    .await;
    rt.start_execution("reject-1", json!({})).await.unwrap();
    let token = recv_token(&mut tokens).await;
    rt.send_task_failure(&token, "Rejected", "not during business hours")
        .await
        .unwrap();
    let done = rt.wait_for_completion("reject-1", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("Rejected"));
    assert_eq!(done.cause.as_deref(), Some("not during business hours"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_seconds_path_expiry_is_a_states_timeout_caught_by_catch() {
    let dir = tempfile::tempdir().unwrap();
    let (approver, mut tokens) = token_sink(&Calls::default());
    let rt = open(
        &dir,
        json!({"StartAt": "Approve", "States": {
            "Approve": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": arn("approver"), "Payload": {"token.$": "$$.Task.Token"}},
                "TimeoutSecondsPath": "$.approval_timeout",
                "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout", "Next": "Escalate"}],
                "End": true
            },
            "Escalate": {"Type": "Pass", "Result": "escalated", "ResultPath": "$.action", "End": true}
        }}),
        registry(vec![("approver", approver)]),
    )
    .await;
    let started = std::time::Instant::now();
    rt.start_execution("timeout-1", json!({"approval_timeout": 1}))
        .await
        .unwrap();
    let token = recv_token(&mut tokens).await;
    let done = rt.wait_for_completion("timeout-1", WAIT).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    let out = done.output.unwrap();
    assert_eq!(out["timeout"]["Error"], json!("States.Timeout"));
    assert_eq!(out["action"], json!("escalated"));
    assert!(matches!(
        rt.send_task_success(&token, json!({})).await,
        Err(RuntimeError::TaskTimedOut)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_spent_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(
        &dir,
        json!({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
        registry(vec![]),
    )
    .await;
    assert!(matches!(
        rt.send_task_success("not-a-token", json!({})).await,
        Err(RuntimeError::InvalidToken)
    ));
    assert!(matches!(
        rt.send_task_failure(&"0".repeat(64), "E", "C").await,
        Err(RuntimeError::InvalidToken)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_execution_is_idempotent_like_start_execution() {
    let dir = tempfile::tempdir().unwrap();
    let (approver, mut tokens) = token_sink(&Calls::default());
    let rt = open(
        &dir,
        json!({"StartAt": "Approve", "States": {"Approve": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": arn("approver"), "Payload": {"token.$": "$$.Task.Token"}}, "End": true
        }}}),
        registry(vec![("approver", approver)]),
    )
    .await;
    let first = rt.start_execution("inc-1", json!({"a": 1})).await.unwrap();
    let again = rt.start_execution("inc-1", json!({"a": 1})).await.unwrap();
    assert_eq!(first.start_date, again.start_date);
    assert_eq!(first.execution_arn, again.execution_arn);
    assert!(matches!(
        rt.start_execution("inc-1", json!({"a": 2})).await,
        Err(RuntimeError::ExecutionAlreadyExists(_))
    ));
    let token = recv_token(&mut tokens).await;
    rt.send_task_success(&token, json!("ok")).await.unwrap();
    rt.wait_for_completion("inc-1", WAIT).await.unwrap();
    // Once closed, the name is taken even with the same input.
    assert!(matches!(
        rt.start_execution("inc-1", json!({"a": 1})).await,
        Err(RuntimeError::ExecutionAlreadyExists(_))
    ));
    assert!(tokens.try_recv().is_err(), "the function ran once");
    assert!(matches!(
        rt.start_execution("bad name", json!({})).await,
        Err(RuntimeError::InvalidName { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_executions_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls::default();
    let echo = func(&calls, |_, p| Ok(json!({"n": p["n"]})));
    let (approver, mut tokens) = token_sink(&Calls::default());
    let rt = open(
        &dir,
        json!({"StartAt": "Triage", "States": {
            "Triage": {"Type": "Task", "Resource": arn("echo"), "ResultPath": "$.triage", "Next": "Pause"},
            "Pause": {"Type": "Wait", "Seconds": 0, "Next": "Approve"},
            "Approve": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": arn("approver"), "Payload": {"token.$": "$$.Task.Token"}},
                "ResultPath": "$.approval", "Next": "Route"
            },
            "Route": {"Type": "Choice", "Choices": [{"Variable": "$.triage.n", "NumericLessThan": 100, "Next": "Low"}], "Default": "High"},
            "Low": {"Type": "Pass", "Result": "low", "ResultPath": "$.band", "End": true},
            "High": {"Type": "Pass", "Result": "high", "ResultPath": "$.band", "End": true}
        }}),
        registry(vec![("echo", echo), ("approver", approver)]),
    )
    .await;
    let started = std::time::Instant::now();
    let mut starts = Vec::new();
    for n in 0..200 {
        let rt = rt.clone();
        starts.push(tokio::spawn(async move {
            rt.start_execution(&format!("bulk-{n}"), json!({"n": n}))
                .await
        }));
    }
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..200 {
        let token = recv_token(&mut tokens).await;
        let rt = rt.clone();
        answers.push(tokio::spawn(async move {
            rt.send_task_success(&token, json!(true)).await
        }));
    }
    for a in answers {
        a.await.unwrap().unwrap();
    }
    for n in 0..200 {
        let done = rt
            .wait_for_completion(&format!("bulk-{n}"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            done.status,
            ExecutionStatus::Succeeded,
            "bulk-{n}: {done:?}"
        );
        let band = if n < 100 { "low" } else { "high" };
        assert_eq!(done.output.unwrap()["band"], json!(band));
    }
    assert_eq!(calls.get(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_level_timeout_seconds_times_the_execution_out() {
    let dir = tempfile::tempdir().unwrap();
    let (approver, mut tokens) = token_sink(&Calls::default());
    let rt = open(
        &dir,
        json!({"TimeoutSeconds": 1, "StartAt": "Approve", "States": {"Approve": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": arn("approver"), "Payload": {"token.$": "$$.Task.Token"}},
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Never"}],
            "End": true
        }, "Never": {"Type": "Succeed"}}}),
        registry(vec![("approver", approver)]),
    )
    .await;
    rt.start_execution("slow-1", json!({})).await.unwrap();
    let token = recv_token(&mut tokens).await;
    let done = rt.wait_for_completion("slow-1", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::TimedOut);
    assert_eq!(done.error.as_deref(), Some("States.Timeout"));
    assert!(matches!(
        rt.send_task_success(&token, json!({})).await,
        Err(RuntimeError::TaskTimedOut)
    ));
    let history = rt.history("slow-1").await.unwrap();
    assert_eq!(
        history.last().unwrap().event_type,
        HistoryEventType::ExecutionTimedOut
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_runtime_is_not_caught_and_fail_states_fail() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls::default();
    let echo = func(&calls, |_, p| Ok(p));
    let rt = open(
        &dir,
        json!({"StartAt": "Route", "States": {
            "Route": {"Type": "Choice", "Choices": [
                {"Variable": "$.kind", "StringEquals": "path", "Next": "BadPath"},
                {"Variable": "$.kind", "StringEquals": "fail", "Next": "Boom"}
            ]},
            "BadPath": {
                "Type": "Task", "Resource": arn("echo"),
                "Parameters": {"missing.$": "$.not.there"},
                "Retry": [{"ErrorEquals": ["States.ALL"]}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": true
            },
            "Caught": {"Type": "Succeed"},
            "Boom": {"Type": "Fail", "Error": "Incident.Unresolvable", "Cause": "no runbook"}
        }}),
        registry(vec![("echo", echo)]),
    )
    .await;
    rt.start_execution("rt-1", json!({"kind": "path"}))
        .await
        .unwrap();
    let done = rt.wait_for_completion("rt-1", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("States.Runtime"));
    assert!(done.cause.unwrap().contains("$.not.there"));
    assert_eq!(calls.get(), 0);

    rt.start_execution("fail-1", json!({"kind": "fail"}))
        .await
        .unwrap();
    let done = rt.wait_for_completion("fail-1", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(
        (done.error.as_deref(), done.cause.as_deref()),
        (Some("Incident.Unresolvable"), Some("no runbook"))
    );

    rt.start_execution("nomatch-1", json!({"kind": "other"}))
        .await
        .unwrap();
    let done = rt.wait_for_completion("nomatch-1", WAIT).await.unwrap();
    assert_eq!(done.error.as_deref(), Some("States.NoChoiceMatched"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_timeout_seconds_on_a_slow_function_is_retried_then_fails() {
    struct Slow;
    #[async_trait::async_trait]
    impl sfn_local::runtime::LambdaFunction for Slow {
        async fn invoke(&self, _: Value) -> Result<Value, FunctionError> {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(json!(null))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = open(
        &dir,
        json!({"StartAt": "Slow", "States": {"Slow": {
            "Type": "Task", "Resource": arn("slow"), "TimeoutSeconds": 1,
            "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 1}],
            "End": true
        }}}),
        registry(vec![("slow", std::sync::Arc::new(Slow))]),
    )
    .await;
    rt.start_execution("slow-fn", json!({})).await.unwrap();
    let done = rt.wait_for_completion("slow-fn", WAIT).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("States.Timeout"));
    let timeouts = rt
        .history("slow-fn")
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == HistoryEventType::TaskTimedOut)
        .count();
    assert_eq!(timeouts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_report_states_and_task_results() {
    let dir = tempfile::tempdir().unwrap();
    let echo = func(&Calls::default(), |_, _| Ok(json!({"severity": "high"})));
    let rt = open(
        &dir,
        json!({"StartAt": "Prepare", "States": {
            "Prepare": {"Type": "Pass", "Parameters": {"id.$": "$.id"}, "Next": "Triage"},
            "Triage": {"Type": "Task", "Resource": arn("triage"), "ResultPath": "$.triage", "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }}),
        registry(vec![("triage", echo)]),
    )
    .await;
    let mut rx = rt.subscribe();
    rt.start_execution("ev-1", json!({"id": 3, "noise": true}))
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        match ev {
            RuntimeEvent::StateEntered { state, .. } => seen.push(format!("enter {state}")),
            RuntimeEvent::StateExited {
                state, task_result, ..
            } => {
                if state == "Triage" {
                    assert_eq!(task_result, Some(json!({"severity": "high"})));
                }
                seen.push(format!("exit {state}"));
            }
            RuntimeEvent::ExecutionFinished { status, output, .. } => {
                assert_eq!(status, ExecutionStatus::Succeeded);
                assert_eq!(
                    output,
                    Some(json!({"id": 3, "triage": {"severity": "high"}}))
                );
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            "enter Prepare",
            "exit Prepare",
            "enter Triage",
            "exit Triage",
            "enter Done",
            "exit Done"
        ]
    );
    let kinds: Vec<HistoryEventType> = rt
        .history("ev-1")
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(kinds.first(), Some(&HistoryEventType::ExecutionStarted));
    assert_eq!(kinds.last(), Some(&HistoryEventType::ExecutionSucceeded));
    assert!(kinds.contains(&HistoryEventType::TaskScheduled));
    assert!(kinds.contains(&HistoryEventType::TaskSucceeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_execution_aborts_and_wait_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::open(
        &dir.path().join("iras.db"),
        definition(json!({"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 60, "End": true}}})),
        registry(vec![]),
        RuntimeOptions::default(),
    )
    .await
    .unwrap();
    rt.start_execution("nap-1", json!({})).await.unwrap();
    assert!(matches!(
        rt.wait_for_completion("nap-1", Duration::from_millis(200))
            .await,
        Err(RuntimeError::WaitTimedOut { .. })
    ));
    let info = rt
        .stop_execution("nap-1", "Operator", "closed by hand")
        .await
        .unwrap();
    assert_eq!(info.status, ExecutionStatus::Aborted);
    assert!(matches!(
        rt.wait_for_completion("nope", WAIT).await,
        Err(RuntimeError::ExecutionDoesNotExist(_))
    ));
}

//! Every ending of the pipeline, by executing `statemachine.asl.json` through the local runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use iras_core::analyst::OfflineAnalyst;
use iras_core::handler::Stage;
use iras_core::testing::{FailingExecutor, ScriptedAnalyst};
use iras_core::*;
use iras_local::local::{LocalOptions, LocalPipeline};
use iras_tests::*;
use sfn_local::{FunctionError, LambdaFunction};

fn rollback_plan(steps: usize) -> RemediationPlan {
    let runner = |operation: &str, params: &[(&str, &str)]| Action::Runner {
        operation: operation.into(),
        target: "shop/deployment/payment-service".into(),
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let actions = [
        runner("kubernetes.rollout_undo", &[]),
        runner("kubernetes.scale", &[("replicas", "8")]),
        runner("kubernetes.rollout_status", &[]),
    ];
    RemediationPlan {
        summary: "roll back, scale out, verify".into(),
        steps: (0..steps)
            .map(|i| {
                RemediationStep::new(
                    format!("step {}", i + 1),
                    actions[i].clone(),
                    RiskLevel::Medium,
                    60,
                )
            })
            .collect(),
        reversible: true,
        requires_human_approval: true,
        blocked_by_policy: false,
        policy: vec![],
        safety_notes: vec![],
        analyst: "scripted".into(),
        required_approvers: 1,
    }
}

#[tokio::test]
async fn approved_plan_resolves_the_incident_and_writes_the_postmortem() {
    let h = harness(|_| {}).await;
    let id = h.open_incident().await;
    let waiting = h.wait_awaiting_approval(&id).await;
    let plan = waiting.plan.clone().expect("a plan awaits approval");
    assert!(plan.requires_human_approval);
    assert_eq!(
        waiting.hypothesis.as_ref().unwrap().root_cause_service,
        "payment-service"
    );

    h.decide(&id, Decision::Approved).await;
    let inc = h.finish(&id).await;

    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert_eq!(inc.remediation, Some(RemediationOutcome::Applied));
    let steps = h.steps(&id).await;
    assert_eq!(steps.len(), plan.steps.len(), "each step applied once");
    assert!(steps
        .iter()
        .all(|s| s.phase == StepPhase::Apply && s.status == StepStatus::Succeeded));
    let pm = h.postmortem(&id).await.expect("post-mortem written");
    assert_eq!(pm.outcome, PostMortemOutcome::Resolved);
    assert_eq!(pm.steps_applied, plan.steps.len());
    assert!(pm
        .timeline
        .iter()
        .any(|e| e.message.contains("approved by alice@example.com via cli")));
    assert!(
        h.pages().is_empty(),
        "nobody is woken for a resolved incident"
    );
    let exec = h
        .pipeline
        .runtime
        .describe_execution(id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exec.status, ExecutionStatus::Succeeded);
}

#[tokio::test]
async fn rejected_plan_is_escalated_and_nothing_runs() {
    let h = harness(|_| {}).await;
    let id = h.open_incident().await;
    h.wait_awaiting_approval(&id).await;
    h.decide(&id, Decision::Rejected).await;
    let inc = h.finish(&id).await;

    assert_eq!(inc.status, IncidentStatus::Escalated);
    assert_eq!(
        inc.escalation.as_ref().unwrap().reason,
        EscalationReason::Rejected
    );
    assert!(
        h.executor.calls().is_empty(),
        "a rejected plan runs nothing"
    );
    assert_eq!(h.pages(), vec![(id.clone(), EscalationReason::Rejected)]);
    let pm = h.postmortem(&id).await.expect("post-mortem written");
    assert_eq!(pm.outcome, PostMortemOutcome::Escalated);
}

#[tokio::test]
async fn no_decision_escalates_when_the_approval_window_closes() {
    let h = harness(|o| o.config.approval_timeout_override_seconds = Some(1)).await;
    let id = h.open_incident().await;
    h.wait_awaiting_approval(&id).await;
    let inc = h.finish(&id).await;

    assert_eq!(inc.status, IncidentStatus::Escalated);
    assert_eq!(
        inc.escalation.as_ref().unwrap().reason,
        EscalationReason::ApprovalTimeout
    );
    assert!(h.executor.calls().is_empty());
    assert_eq!(h.pages().len(), 1);
    assert!(h.postmortem(&id).await.is_some());
}

#[tokio::test]
async fn confidence_that_never_clears_the_threshold_escalates_after_max_attempts() {
    let mut analyst = ScriptedAnalyst::over(Arc::new(OfflineAnalyst::default()));
    analyst.confidences = vec![0.35];
    let analyst = Arc::new(analyst);
    let a = analyst.clone();
    let h = harness(move |o| {
        o.analyst = Some(a);
        o.config.rca_max_attempts = 3;
    })
    .await;
    let id = h.open_incident().await;
    let inc = h.finish(&id).await;

    assert_eq!(inc.status, IncidentStatus::Escalated);
    assert_eq!(
        inc.escalation.as_ref().unwrap().reason,
        EscalationReason::LowConfidence
    );
    assert_eq!(analyst.rca_calls.load(Ordering::SeqCst), 3);
    let attempts = h.pipeline.store.attempts(&id).await.unwrap();
    assert_eq!(attempts.len(), 3);
    let starts: Vec<_> = attempts
        .iter()
        .map(|a| a.context.window.unwrap().start)
        .collect();
    assert!(
        starts[0] > starts[1] && starts[1] > starts[2],
        "each retry widens the window"
    );
    assert!(inc.plan.is_none(), "no plan from a guess");
    assert_eq!(h.pages().len(), 1);
    assert!(h.postmortem(&id).await.is_some());
}

#[tokio::test]
async fn low_then_high_confidence_retries_once_then_resolves() {
    let mut analyst = ScriptedAnalyst::over(Arc::new(OfflineAnalyst::default()));
    analyst.confidences = vec![0.4, 0.92];
    let analyst = Arc::new(analyst);
    let a = analyst.clone();
    let h = harness(move |o| o.analyst = Some(a)).await;
    let id = h.open_incident().await;
    h.wait_awaiting_approval(&id).await;
    h.decide(&id, Decision::Approved).await;
    let inc = h.finish(&id).await;

    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert_eq!(analyst.rca_calls.load(Ordering::SeqCst), 2);
    assert_eq!(inc.rca_attempts, 2);
}

#[tokio::test]
async fn a_failing_step_rolls_back_completed_steps_in_reverse_then_escalates() {
    let mut analyst = ScriptedAnalyst::over(Arc::new(OfflineAnalyst::default()));
    analyst.plan = Some(rollback_plan(3));
    let executor = Arc::new(FailingExecutor::failing_at(2));
    let e = executor.clone();
    let h = harness(move |o| {
        o.analyst = Some(Arc::new(analyst));
        o.executor = Some(e);
    })
    .await;
    let id = h.open_incident().await;
    h.wait_awaiting_approval(&id).await;
    h.decide(&id, Decision::Approved).await;
    let inc = h.finish(&id).await;

    assert_eq!(inc.status, IncidentStatus::Escalated);
    assert_eq!(
        inc.escalation.as_ref().unwrap().reason,
        EscalationReason::RemediationFailed
    );
    let order: Vec<(StepPhase, usize)> =
        executor.calls().iter().map(|(p, s, _)| (*p, *s)).collect();
    assert_eq!(
        order,
        vec![
            (StepPhase::Apply, 0),
            (StepPhase::Apply, 1),
            (StepPhase::Apply, 2),
            (StepPhase::Rollback, 1),
            (StepPhase::Rollback, 0),
        ]
    );
    let pm = h.postmortem(&id).await.unwrap();
    assert_eq!(pm.steps_rolled_back, 2);
    assert_eq!(pm.outcome, PostMortemOutcome::Escalated);
}

/// A stage function that always fails, counting its invocations.
struct AlwaysFails(AtomicUsize);

#[async_trait]
impl LambdaFunction for AlwaysFails {
    async fn invoke(
        &self,
        _payload: serde_json::Value,
    ) -> Result<serde_json::Value, FunctionError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(FunctionError {
            error_type: "AnalystFailed".into(),
            message: "model endpoint returned 503".into(),
        })
    }
}

#[tokio::test]
async fn a_stage_that_keeps_failing_is_retried_then_escalated_with_a_postmortem() {
    let failing = Arc::new(AlwaysFails(AtomicUsize::new(0)));
    let f = failing.clone();
    let h = harness(move |o| {
        o.function_overrides.insert(Stage::Plan, f);
    })
    .await;
    let id = h.open_incident().await;
    let inc = h.finish(&id).await;

    assert_eq!(inc.status, IncidentStatus::Escalated);
    let esc = inc.escalation.as_ref().unwrap();
    assert_eq!(esc.reason, EscalationReason::StageFailure);
    assert!(esc.detail.contains("AnalystFailed"), "{}", esc.detail);
    // The definition's Retry for States.TaskFailed allows 3 retries after the first attempt.
    assert_eq!(failing.0.load(Ordering::SeqCst), 4);
    assert_eq!(h.pages().len(), 1);
    assert!(
        h.postmortem(&id).await.is_some(),
        "post-mortem still written"
    );
}

#[tokio::test]
async fn a_runtime_killed_while_waiting_for_approval_resumes_and_applies_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let scenario = demo_scenario();
    let first_executor = Arc::new(FailingExecutor::default());
    let open = |executor: Arc<FailingExecutor>| {
        let mut o = LocalOptions::new(data.clone());
        o.scenario = Some(scenario.clone());
        o.executor = Some(executor);
        o.runtime = fast_retries();
        LocalPipeline::open(o)
    };

    let p1 = open(first_executor.clone()).await.unwrap();
    let id = p1
        .ingest(scenario.alert.clone())
        .await
        .unwrap()
        .incident_id
        .expect("an incident");
    let waiting = p1
        .wait_for_status(&id, IncidentStatus::AwaitingApproval, WAIT)
        .await
        .unwrap();
    assert_eq!(waiting.status, IncidentStatus::AwaitingApproval);
    // The process dies: every task and timer stops, nothing more is written.
    p1.runtime.kill();
    drop(p1);

    let second_executor = Arc::new(FailingExecutor::default());
    let p2 = open(second_executor.clone()).await.unwrap();
    p2.decide(
        &id,
        iras_core::stages::DecisionRequest {
            approval_id: None,
            decision: Decision::Approved,
            approver: "bob".into(),
            channel: "cli".into(),
            comment: None,
            identity: iras_core::Identity::Unstated,
        },
    )
    .await
    .expect("the approval survives the restart");
    p2.wait_for_execution(&id, WAIT).await.unwrap();
    let inc = p2.incident(&id).await.unwrap().unwrap();

    assert_eq!(inc.status, IncidentStatus::Resolved);
    let plan_len = inc.plan.as_ref().unwrap().steps.len();
    assert!(first_executor.calls().is_empty());
    assert_eq!(
        second_executor.calls().len(),
        plan_len,
        "each step exactly once"
    );
    let steps = p2.store.steps(&id).await.unwrap();
    assert_eq!(steps.len(), plan_len);
    assert!(p2.store.postmortem(&id).await.unwrap().is_some());
}

#[tokio::test]
async fn another_definition_runs_only_its_own_states() {
    // A two-stage pipeline: the runtime follows the file, not a built-in flow.
    let definition = r#"{
      "StartAt": "Triage",
      "States": {
        "Triage": {
          "Type": "Task",
          "Resource": "arn:aws:states:::lambda:invoke",
          "Parameters": {"FunctionName": "${TriageFunctionArn}", "Payload": {"incident_id.$": "$.incident_id"}},
          "ResultSelector": {"severity.$": "$.Payload.severity"},
          "ResultPath": "$.triage",
          "Next": "PostMortem"
        },
        "PostMortem": {
          "Type": "Task",
          "Resource": "arn:aws:states:::lambda:invoke",
          "Parameters": {"FunctionName": "${PostMortemFunctionArn}", "Payload": {"incident_id.$": "$.incident_id"}},
          "ResultPath": null,
          "End": true
        }
      }
    }"#;
    let h = harness(|o| o.definition = Some(definition.to_string())).await;
    let id = h.open_incident().await;
    let inc = h.finish(&id).await;
    assert!(inc.triage.is_some());
    assert_eq!(inc.rca_attempts, 0, "no Rca state in this definition");
    assert!(inc.plan.is_none());
    let pm = h.postmortem(&id).await.unwrap();
    assert_eq!(
        pm.outcome,
        PostMortemOutcome::Escalated,
        "unfinished is never 'resolved'"
    );
}

#[tokio::test]
async fn a_definition_with_an_unsupported_state_is_refused_naming_it() {
    let definition = r#"{"StartAt": "Fanout", "States": {"Fanout": {"Type": "Parallel", "Branches": [], "End": true}}}"#;
    let dir = tempfile::tempdir().unwrap();
    let mut o = LocalOptions::new(dir.path().to_path_buf());
    o.definition = Some(definition.into());
    let err = LocalPipeline::open(o)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("Fanout") && err.contains("Parallel"), "{err}");
}

#[tokio::test]
async fn a_plan_with_no_safe_action_escalates_with_the_root_cause_instead_of_resolving() {
    let mut analyst = ScriptedAnalyst::over(Arc::new(OfflineAnalyst::default()));
    analyst.plan = Some(rollback_plan(0));
    let h = harness(move |o| o.analyst = Some(Arc::new(analyst))).await;
    let id = h.open_incident().await;
    let inc = h.finish(&id).await;

    assert_eq!(inc.status, IncidentStatus::Escalated);
    let esc = inc.escalation.as_ref().unwrap();
    assert_eq!(esc.reason, EscalationReason::NoRemediation);
    assert!(inc.approval.is_none(), "nobody is asked to approve nothing");
    assert!(h.executor.calls().is_empty());
    assert_eq!(
        h.pages(),
        vec![(id.clone(), EscalationReason::NoRemediation)]
    );
}

#[tokio::test]
async fn lifecycle_events_leave_in_the_order_the_incident_lived_them() {
    let events = Arc::new(iras_core::testing::RecordingEvents::default());
    let e = events.clone();
    let h = harness(move |o| o.events = Some(e)).await;
    let id = h.open_incident().await;
    h.wait_awaiting_approval(&id).await;
    h.decide(&id, Decision::Approved).await;
    h.finish(&id).await;
    assert_eq!(
        events.types_for(&id),
        vec![
            "IncidentOpened",
            "PlanAwaitingApproval",
            "RemediationApplied",
            "PostMortemPublished"
        ]
    );

    let id = {
        let mut alert = h.scenario.alert.clone();
        alert.title = "High error rate on payment-service, again".into();
        alert.fields.remove("fingerprint");
        if let Some(o) = alert.origin.as_mut() {
            o.key = None;
        }
        h.pipeline
            .ingest(alert)
            .await
            .unwrap()
            .incident_id
            .expect("an incident")
    };
    h.wait_awaiting_approval(&id).await;
    h.decide(&id, Decision::Rejected).await;
    h.finish(&id).await;
    assert_eq!(
        events.types_for(&id),
        vec![
            "IncidentOpened",
            "PlanAwaitingApproval",
            "IncidentEscalated",
            "PostMortemPublished"
        ]
    );
}

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use iras_aws::{SfnCallbacks, SfnStarter};
use iras_core::{CallbackError, IncidentId, PipelineStarter, TaskCallbacks};
use serde_json::{json, Value};

use crate::support::Moto;

/// The pipeline's approval wait in miniature: Triage (here a Pass) sets the timeout, then a
/// `.waitForTaskToken` Lambda task reads it with `TimeoutSecondsPath` and catches
/// `States.Timeout`, as `RequestApproval` in statemachine.asl.json does.
fn approval_machine() -> String {
    json!({
        "StartAt": "Triage",
        "States": {
            "Triage": {
                "Type": "Pass",
                "Result": {"severity": "P1", "approval_timeout_seconds": 60},
                "ResultPath": "$.triage",
                "Next": "RequestApproval"
            },
            "RequestApproval": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {
                    // Moto without Docker runs no code: the function need not exist.
                    "FunctionName": "request-approval",
                    "Payload": {
                        "incident_id.$": "$.incident_id",
                        "task_token.$": "$$.Task.Token"
                    }
                },
                "TimeoutSecondsPath": "$.triage.approval_timeout_seconds",
                "ResultPath": "$.approval",
                "Catch": [
                    {
                        "ErrorEquals": ["States.Timeout"],
                        "ResultPath": "$.error",
                        "Next": "ApprovalTimedOut"
                    }
                ],
                "Next": "Approved"
            },
            "ApprovalTimedOut": {"Type": "Fail", "Error": "ApprovalTimedOut"},
            "Approved": {"Type": "Succeed"}
        }
    })
    .to_string()
}

async fn state_machine(moto: &Moto) -> String {
    moto.run_state_machines();
    moto.sfn()
        .create_state_machine()
        .name("iras-pipeline")
        .definition(approval_machine())
        .role_arn("arn:aws:iam::123456789012:role/iras-pipeline")
        .send()
        .await
        .unwrap()
        .state_machine_arn
}

fn execution_arn(state_machine_arn: &str, id: &IncidentId) -> String {
    format!(
        "{}:{id}",
        state_machine_arn.replace(":stateMachine:", ":execution:")
    )
}

/// The token the approval task was given, from the execution's `TaskScheduled` event.
async fn task_token(moto: &Moto, execution_arn: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let history = moto
            .sfn()
            .get_execution_history()
            .execution_arn(execution_arn)
            .send()
            .await
            .unwrap();
        let scheduled = history
            .events()
            .iter()
            .filter(|e| e.r#type() == &HistoryEventType::TaskScheduled)
            .find_map(|e| e.task_scheduled_event_details());
        if let Some(details) = scheduled {
            let parameters: Value = serde_json::from_str(details.parameters()).unwrap();
            return parameters["Payload"]["task_token"]
                .as_str()
                .expect("task token in the payload")
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the approval task was never scheduled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn finished(
    moto: &Moto,
    execution_arn: &str,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = moto
            .sfn()
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .unwrap();
        if out.status() != &ExecutionStatus::Running {
            return out;
        }
        assert!(Instant::now() < deadline, "the execution never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_approval_completes_the_pipeline_with_the_decision() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let machine = state_machine(&moto).await;
    let starter = SfnStarter::new(moto.sfn(), &machine);
    let id = IncidentId::generate();
    starter.start(&id).await.unwrap();
    starter
        .start(&id)
        .await
        .expect("a retried start is not an error");
    let executions = moto
        .sfn()
        .list_executions()
        .state_machine_arn(&machine)
        .send()
        .await
        .unwrap();
    assert_eq!(
        executions.executions().len(),
        1,
        "one execution per incident"
    );

    let arn = execution_arn(&machine, &id);
    let token = task_token(&moto, &arn).await;
    let decision = json!({"decision": "approved", "by": "alice@example.com"});
    SfnCallbacks::new(moto.sfn())
        .send_task_success(&token, decision.clone())
        .await
        .unwrap();

    let done = finished(&moto, &arn).await;
    assert_eq!(done.status(), &ExecutionStatus::Succeeded);
    let output: Value = serde_json::from_str(done.output().unwrap()).unwrap();
    assert_eq!(output["approval"], decision);
    assert_eq!(output["incident_id"], json!(id.as_str()));
}

#[tokio::test]
async fn a_rejection_fails_the_approval_task_with_its_reason() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let machine = state_machine(&moto).await;
    let id = IncidentId::generate();
    SfnStarter::new(moto.sfn(), &machine)
        .start(&id)
        .await
        .unwrap();
    let arn = execution_arn(&machine, &id);
    let token = task_token(&moto, &arn).await;
    SfnCallbacks::new(moto.sfn())
        .send_task_failure(
            &token,
            "PlanRejected",
            "rejected by bob: too risky on a Friday",
        )
        .await
        .unwrap();
    let done = finished(&moto, &arn).await;
    assert_eq!(done.status(), &ExecutionStatus::Failed);
    assert_eq!(done.error(), Some("PlanRejected"));
}

#[tokio::test]
async fn a_forged_token_is_refused_as_invalid() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    // Without execution turned on, moto accepts any token.
    moto.run_state_machines();
    let callbacks = SfnCallbacks::new(moto.sfn());
    let err = callbacks
        .send_task_success("not-a-token", json!({"decision": "approved"}))
        .await
        .unwrap_err();
    assert_eq!(err, CallbackError::InvalidToken);
    let err = callbacks
        .send_task_failure("not-a-token", "PlanRejected", "")
        .await
        .unwrap_err();
    assert_eq!(err, CallbackError::InvalidToken);
}

#[tokio::test]
async fn an_execution_already_named_after_the_incident_counts_as_started() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let machine = state_machine(&moto).await;
    let id = IncidentId::generate();
    // An earlier start with other input (say, by an older release) holds the name.
    moto.sfn()
        .start_execution()
        .state_machine_arn(&machine)
        .name(id.as_str())
        .input(json!({"incident_id": id.as_str(), "started_by": "release 41"}).to_string())
        .send()
        .await
        .unwrap();
    SfnStarter::new(moto.sfn(), &machine)
        .start(&id)
        .await
        .expect("ExecutionAlreadyExists means started");
}

#[tokio::test]
async fn starting_on_a_missing_state_machine_is_an_error() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let missing = "arn:aws:states:us-east-1:123456789012:stateMachine:nope";
    let err = SfnStarter::new(moto.sfn(), missing)
        .start(&IncidentId::generate())
        .await
        .unwrap_err();
    assert!(err.0.contains("StateMachineDoesNotExist"), "{err}");
}

//! Each function's handler, called as Lambda would call it, with the checked-in sample events
//! of `infra/events` (the ones `sam local invoke -e` uses) over in-memory ports: the ports
//! that function is built with, each call checked against the ones it declares.

mod support;

use std::collections::BTreeSet;

use iras_core::handler::Stage;
use iras_core::ports::IncidentStore;
use iras_core::{IncidentId, IncidentStatus};
use iras_lambda::{ingest, stage_handler, Diagnostic, Function, Port};
use serde_json::{json, Value};
use support::*;

async fn ingest_event(w: &World, event: Value) -> Result<ingest::IngestOutput, Diagnostic> {
    w.ingest(event).await
}

async fn ingest_sample(w: &World, name: &str) -> Result<ingest::IngestOutput, Diagnostic> {
    ingest_event(w, sample(name, SAMPLE_ID)).await
}

/// `stage`'s function's handler on `event`.
async fn stage_event(w: &World, stage: Stage, event: Value) -> Result<Value, Diagnostic> {
    let deps = w.deps(stage.into());
    let out = stage_handler(&deps, stage, lambda_event(event)).await;
    w.called_by(stage.into());
    out
}

/// Runs a stage on its sample event, about incident `id`, and checks the output carries every
/// field its state's `ResultSelector` reads: a missing one fails the execution on AWS.
async fn run_stage(w: &World, stage: Stage, id: &IncidentId) -> Value {
    let event = sample(stage.function_name(), id.as_str());
    let out = stage_event(w, stage, event).await.unwrap_or_else(|d| {
        panic!(
            "{}: {} {}",
            stage.state_name(),
            d.error_type,
            d.error_message
        )
    });
    for field in payload_fields(&asl(), stage.state_name()) {
        assert!(
            out.get(&field).is_some(),
            "{} output lacks `{field}`, which its ResultSelector reads: {out}",
            stage.state_name()
        );
    }
    out
}

#[tokio::test]
async fn an_alert_on_the_iras_bus_goes_from_ingest_to_resolved_through_every_function() {
    let w = world();
    let opened = ingest_sample(&w, "ingest-iras-alert").await.unwrap();
    assert!(!opened.deduplicated);
    let id = opened.incident_id.clone().expect("an incident opened");
    assert_eq!(*w.starter.started.lock().unwrap(), vec![id.clone()]);
    assert!(w
        .events
        .types_for(&id)
        .contains(&"IncidentOpened".to_string()));

    run_stage(&w, Stage::Triage, &id).await;
    run_stage(&w, Stage::GatherContext, &id).await;
    let rca = run_stage(&w, Stage::Rca, &id).await;
    assert_eq!(
        rca["confident"],
        json!(true),
        "the demo incident is diagnosed on attempt 1: {rca}"
    );
    let plan = run_stage(&w, Stage::Plan, &id).await;
    assert_eq!(plan["needs_approval"], json!(true), "{plan}");
    run_stage(&w, Stage::RequestApproval, &id).await;
    let waiting = w.store.get_incident(&id).await.unwrap().unwrap();
    assert_eq!(waiting.status, IncidentStatus::AwaitingApproval);

    // The on-call engineer approves through the approval-callback function's sample request.
    let (status, body) = w
        .http(
            Function::ApprovalCallback,
            &sample_text("approval-callback", id.as_str()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let successes = w.callbacks.successes.lock().unwrap().clone();
    let request = sample("request-approval", id.as_str());
    assert_eq!(successes.len(), 1);
    assert_eq!(successes[0].0, request["task_token"].as_str().unwrap());
    // IsApproved reads `$.approval.decision`.
    assert_eq!(successes[0].1["decision"], json!("approved"));

    let remediation = run_stage(&w, Stage::Remediate, &id).await;
    assert_eq!(remediation["outcome"], json!("applied"), "{remediation}");
    // The dry-run executor changed nothing: no wait, and Verify says there is nothing to verify.
    assert_eq!(remediation["verify_after_seconds"], json!(0));
    let verified = run_stage(&w, Stage::Verify, &id).await;
    assert_eq!(verified["outcome"], json!("skipped"), "{verified}");
    let postmortem = run_stage(&w, Stage::PostMortem, &id).await;
    assert_eq!(postmortem["outcome"], json!("resolved"));
    let done = w.store.get_incident(&id).await.unwrap().unwrap();
    assert_eq!(done.status, IncidentStatus::Resolved);
}

#[tokio::test]
async fn a_decision_recorded_by_a_killed_callback_is_delivered_by_the_schedule() {
    let w = world();
    let id = ingest_sample(&w, "ingest-iras-alert")
        .await
        .unwrap()
        .incident_id
        .expect("an incident opened");
    for stage in [
        Stage::Triage,
        Stage::GatherContext,
        Stage::Rca,
        Stage::Plan,
        Stage::RequestApproval,
    ] {
        run_stage(&w, stage, &id).await;
    }
    // The approval-callback invocation recorded the decision and was killed before it told the
    // execution: the record as it was left, two minutes ago.
    let mut inc = w.store.get_incident(&id).await.unwrap().unwrap();
    let approval = inc.approval.as_mut().unwrap();
    let decided_at = chrono::Utc::now() - chrono::Duration::minutes(2);
    let decision = iras_core::ApprovalDecision {
        decision: iras_core::Decision::Approved,
        approver: "alice".into(),
        identity: None,
        channel: "api".into(),
        decided_at,
        comment: None,
        plan_hash: approval.plan_hash.clone(),
        delivery_pending: true,
    };
    approval.approvals.push(decision.clone());
    approval.decision = Some(decision);
    w.store.update_incident(&inc).await.unwrap();

    let out = ingest_sample(&w, "ingest-schedule").await.unwrap();
    assert_eq!(out.outcome, "reconciled");
    assert_eq!(out.reconciled.unwrap().delivered, 1);
    let successes = w.callbacks.successes.lock().unwrap().clone();
    let token = sample("request-approval", id.as_str())["task_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(successes.len(), 1);
    assert_eq!(successes[0].0, token);
    assert_eq!(successes[0].1["decision"], json!("approved"));
    assert_eq!(successes[0].1["approver"], json!("alice"));
    let settled = w.store.get_incident(&id).await.unwrap().unwrap();
    assert!(!settled.decision_delivery_pending());
    // The next tick finds nothing left to deliver.
    let again = ingest_sample(&w, "ingest-schedule").await.unwrap();
    assert_eq!(again.reconciled.unwrap().delivered, 0);
    assert_eq!(w.callbacks.successes.lock().unwrap().len(), 1);
    // And the pipeline goes on from the approval.
    let remediation = run_stage(&w, Stage::Remediate, &id).await;
    assert_eq!(remediation["outcome"], json!("applied"), "{remediation}");
}

#[tokio::test]
async fn a_stage_failure_pages_someone_and_the_postmortem_says_escalated() {
    let w = world();
    let id = ingest_sample(&w, "ingest-iras-alert")
        .await
        .unwrap()
        .incident_id
        .expect("an incident opened");
    run_stage(&w, Stage::Triage, &id).await;
    let escalated = run_stage(&w, Stage::Escalate, &id).await;
    assert_eq!(escalated["reason"], json!("stage_failure"));
    assert_eq!(escalated["paged_via"], json!("log"));
    let postmortem = run_stage(&w, Stage::PostMortem, &id).await;
    assert_eq!(postmortem["outcome"], json!("escalated"));
}

/// The names the definition refuses to retry: retrying them cannot change the answer.
fn non_retryable(asl: &Value, state: &str) -> Vec<String> {
    asl["States"][state]["Retry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["MaxAttempts"] == json!(0))
        .flat_map(|r| r["ErrorEquals"].as_array().unwrap().clone())
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_unapproved_plan_fails_remediate_under_the_name_the_state_machine_matches() {
    let w = world();
    let id = ingest_sample(&w, "ingest-iras-alert")
        .await
        .unwrap()
        .incident_id
        .expect("an incident opened");
    for stage in [Stage::Triage, Stage::GatherContext, Stage::Rca, Stage::Plan] {
        run_stage(&w, stage, &id).await;
    }
    let d = stage_event(&w, Stage::Remediate, sample("remediate", id.as_str()))
        .await
        .unwrap_err();
    assert_eq!(d.error_type, "ApprovalMissing", "{}", d.error_message);
    assert!(non_retryable(&asl(), "Remediate").contains(&d.error_type));
    let steps = w.store.steps(&id).await.unwrap();
    assert!(steps.is_empty(), "nothing ran: {steps:?}");
}

#[tokio::test]
async fn a_stage_for_an_unknown_incident_is_not_retried() {
    let w = world();
    // The sample events name an incident this empty store has never seen.
    let d = stage_event(&w, Stage::Triage, sample("triage", SAMPLE_ID))
        .await
        .unwrap_err();
    assert_eq!(d.error_type, "IncidentNotFound");
    assert!(non_retryable(&asl(), "Triage").contains(&d.error_type));

    let mut bad = sample("gather-context", SAMPLE_ID);
    bad.as_object_mut().unwrap().remove("attempt");
    let d = stage_event(&w, Stage::GatherContext, bad)
        .await
        .unwrap_err();
    assert_eq!(d.error_type, "InvalidInput");
    assert!(d.error_message.contains("attempt"), "{}", d.error_message);
}

#[tokio::test]
async fn a_cloudwatch_alarm_opens_one_incident_per_alarm_and_starts_its_pipeline() {
    let w = world();
    let first = ingest_sample(&w, "ingest").await.unwrap();
    let incident = w
        .store
        .get_incident(first.incident_id.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();
    let alert = &incident.alert;
    assert_eq!(alert.service.as_deref(), Some("payment-service"));
    assert!(
        alert
            .title
            .starts_with("payment-service-5xx-rate: Threshold Crossed"),
        "{}",
        alert.title
    );
    assert_eq!(alert.timestamp.to_rfc3339(), "2026-03-02T03:04:40+00:00");
    assert_eq!(
        incident.fingerprint,
        "cloudwatch:arn:aws:cloudwatch:us-east-1:123456789012:alarm:payment-service-5xx-rate"
    );
    // The alarm's own detail stays on the record for the investigator.
    assert_eq!(
        alert.fields["configuration"]["metrics"][0]["metricStat"]["metric"]["name"],
        json!("ErrorRate")
    );

    // The same alarm again (EventBridge delivers at least once) attaches to the open incident.
    let again = ingest_sample(&w, "ingest").await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.incident_id, first.incident_id);
    assert_eq!(w.incident_count().await, 1);
    let started = w.starter.started.lock().unwrap().clone();
    let first_id = first.incident_id.unwrap();
    // Not triaged yet: the repeat starts it again (idempotent), which heals a failed start.
    assert_eq!(started, vec![first_id.clone(), first_id]);
}

#[tokio::test]
async fn an_alarm_going_back_to_ok_records_nothing_when_no_incident_had_it() {
    let w = world();
    let mut alarm_to_ok = sample("ingest", SAMPLE_ID);
    let detail = alarm_to_ok["detail"].as_object_mut().unwrap();
    let (state, previous) = (detail["state"].clone(), detail["previousState"].clone());
    detail.insert("state".into(), previous);
    detail.insert("previousState".into(), state);
    let out = ingest_event(&w, alarm_to_ok).await.unwrap();
    assert_eq!(out.outcome, "unmatched");
    assert_eq!(out.incident_id, None);
    assert_eq!(
        w.incident_count().await,
        0,
        "a recovery never opens an incident"
    );
    assert!(w.starter.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_event_iras_does_not_know_is_refused_by_name_and_writes_nothing() {
    let w = world();
    let ec2 = json!({
        "version": "0",
        "id": "ee376907-2647-4179-9203-343cfb3017a4",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-03-02T03:04:40Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
        "detail": {"instance-id": "i-abcd1111", "state": "stopped"}
    });
    let d = ingest_event(&w, ec2).await.unwrap_err();
    assert_eq!(d.error_type, "UnknownEvent");
    assert!(d.error_message.contains("aws.ec2"), "{}", d.error_message);

    let not_eventbridge = json!({"incident_id": SAMPLE_ID});
    let d = ingest_event(&w, not_eventbridge).await.unwrap_err();
    assert_eq!(d.error_type, "InvalidInput");
    assert_eq!(w.incident_count().await, 0);
    assert!(w.events.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_pipeline_that_did_not_start_fails_the_event_so_eventbridge_retries_it() {
    let w = world_with(RecordingStarter {
        fail: true,
        ..Default::default()
    });
    let d = ingest_sample(&w, "ingest").await.unwrap_err();
    assert_eq!(d.error_type, "PipelineNotStarted");
    // Recorded all the same: the retry attaches to it and starts it (execution name = id).
    assert_eq!(w.incident_count().await, 1);
}

#[tokio::test]
async fn the_api_function_accepts_the_sample_webhook_and_starts_the_pipeline() {
    let w = world();
    let (status, body) = w.http(Function::Api, &sample_text("api", SAMPLE_ID)).await;
    assert_eq!(status, 202, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let id = IncidentId(body["incident_id"].as_str().unwrap().to_string());
    assert_eq!(*w.starter.started.lock().unwrap(), vec![id.clone()]);
    let incident = w.store.get_incident(&id).await.unwrap().unwrap();
    assert_eq!(incident.service.as_deref(), Some("payment-service"));
}

#[tokio::test]
async fn the_api_function_reports_health_from_the_sample_request() {
    let w = world();
    let (status, body) = w
        .http(Function::Api, &sample_text("api-health", SAMPLE_ID))
        .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], json!("ok"));
}

#[tokio::test]
async fn an_approval_the_iam_authorizer_did_not_check_completes_no_task() {
    let w = world();
    let mut forged: Value =
        serde_json::from_str(&sample_text("approval-callback", SAMPLE_ID)).unwrap();
    forged["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    forged["headers"]["authorization"] = json!(format!("Bearer {SAMPLE_API_KEY}"));
    let (status, body) = w
        .http(Function::ApprovalCallback, &forged.to_string())
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(w.callbacks.successes.lock().unwrap().is_empty());
}

/// A function links the adapters of the ports it declares and its Cargo.toml is held to them;
/// every call above is checked against them. Between them, the resolved ending, the escalated
/// one and the webhook call every port each function declares: none is linked for nothing.
#[tokio::test]
async fn the_two_endings_and_the_webhook_call_every_port_each_function_declares() {
    let w = world();
    let id = ingest_sample(&w, "ingest-iras-alert")
        .await
        .unwrap()
        .incident_id
        .expect("an incident opened");
    for stage in [
        Stage::Triage,
        Stage::GatherContext,
        Stage::Rca,
        Stage::Plan,
        Stage::RequestApproval,
    ] {
        run_stage(&w, stage, &id).await;
    }
    let approval = sample_text("approval-callback", id.as_str());
    let (status, body) = w.http(Function::ApprovalCallback, &approval).await;
    assert_eq!(status, 200, "{body}");
    run_stage(&w, Stage::Remediate, &id).await;
    // The dry-run executor changed nothing: Verify skips its evidence reads.
    let verified = run_stage(&w, Stage::Verify, &id).await;
    assert_eq!(verified["outcome"], json!("skipped"), "{verified}");
    let resolved = run_stage(&w, Stage::PostMortem, &id).await;
    assert_eq!(resolved["outcome"], json!("resolved"));

    // Another alert: the same one again would be a recurrence of the resolved incident.
    let other = sample_text("api", SAMPLE_ID).replace("High error rate", "Checkout latency");
    let (status, body) = w.http(Function::Api, &other).await;
    assert_eq!(status, 202, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let id = IncidentId(body["incident_id"].as_str().unwrap().to_string());
    for stage in [Stage::Triage, Stage::Escalate, Stage::PostMortem] {
        run_stage(&w, stage, &id).await;
    }

    // Ports these paths do not reach (core's stage tests reach them): a recovery ending a
    // waiting approval (ingest, api), the evidence read after a real change (verify).
    let elsewhere = [
        (Function::Ingest, Port::Callbacks),
        (Function::Api, Port::Callbacks),
        (Function::Stage(Stage::Verify), Port::Evidence),
    ];
    let called = w.called.lock().unwrap();
    for function in Function::ALL {
        let declared: BTreeSet<Port> = function
            .ports()
            .iter()
            .copied()
            .filter(|p| !elsewhere.contains(&(function, *p)))
            .collect();
        assert_eq!(
            called.get(&function),
            Some(&declared),
            "{function}: the ports called vs the ports it is built with"
        );
    }
}

#[tokio::test]
async fn the_sns_sample_event_opens_one_incident_for_its_alarm() {
    let w = world();
    let out = ingest_sample(&w, "ingest-sns").await.unwrap();
    assert_eq!(out.outcome, "opened");
    let id = out.incident_id.expect("an incident opened");
    let incident = w.store.get_incident(&id).await.unwrap().unwrap();
    assert_eq!(
        incident.fingerprint,
        "cloudwatch:arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"
    );
    assert_eq!(*w.starter.started.lock().unwrap(), vec![id]);
}

/// The IAM-authorized request of the fixture (verbatim), pointed at `method path` with `body`.
fn iam_request(method: &str, path: &str, body: &str, with_caller: bool) -> String {
    let mut v: Value = serde_json::from_str(include_str!("fixtures/apigw-v2-request-iam.json"))
        .expect("the fixture is JSON");
    v["routeKey"] = json!(format!("{method} {path}"));
    v["rawPath"] = json!(path);
    v["rawQueryString"] = json!("");
    v["queryStringParameters"] = Value::Null;
    v["requestContext"]["routeKey"] = json!(format!("{method} {path}"));
    v["requestContext"]["http"]["method"] = json!(method);
    v["requestContext"]["http"]["path"] = json!(path);
    v["body"] = json!(body);
    v["headers"]["content-type"] = json!("application/json");
    if !with_caller {
        v["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("authorizer");
    }
    v.to_string()
}

/// `API_AUTH=iam`: API Gateway's IAM authorizer checks the SigV4 signature; the functions
/// take the caller it names, for reads and as the approver, and read no bearer key.
#[tokio::test]
async fn behind_the_iam_authorizer_the_signed_caller_reads_and_is_the_approver() {
    let w = world();
    let id = ingest_sample(&w, "ingest-iras-alert")
        .await
        .unwrap()
        .incident_id
        .unwrap();
    for stage in [
        Stage::Triage,
        Stage::GatherContext,
        Stage::Rca,
        Stage::Plan,
        Stage::RequestApproval,
    ] {
        run_stage(&w, stage, &id).await;
    }

    let (status, body) = w
        .http(Function::Api, &iam_request("GET", "/incidents", "", true))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(id.as_str()), "{body}");
    // The same request without the authorizer's word: refused, even by the function.
    let (status, _) = w
        .http(Function::Api, &iam_request("GET", "/incidents", "", false))
        .await;
    assert_eq!(status, 401);
    // A bearer key is not read here (SigV4 takes the Authorization header).
    let mut keyed = iam_request("POST", &format!("/incidents/{id}/approve"), "", false);
    keyed = keyed.replace(
        r#""content-type":"application/json""#,
        &format!(r#""content-type":"application/json","authorization":"Bearer {SAMPLE_API_KEY}""#),
    );
    let (status, _) = w.http(Function::ApprovalCallback, &keyed).await;
    assert_eq!(status, 401);
    assert!(w.callbacks.successes.lock().unwrap().is_empty());

    let path = format!("/incidents/{id}/approve");
    let (status, body) = w
        .http(
            Function::ApprovalCallback,
            &iam_request(
                "POST",
                &path,
                r#"{"comment": "rollback looks right"}"#,
                true,
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["iam_principal"],
        "arn:aws:iam::1234567890:user/Admin"
    );
    assert_eq!(w.callbacks.successes.lock().unwrap().len(), 1);
    let d = w
        .store
        .get_incident(&id)
        .await
        .unwrap()
        .unwrap()
        .approval
        .unwrap()
        .decision
        .unwrap();
    assert_eq!(
        d.identity,
        Some(iras_core::ApproverIdentity::Iam {
            arn: "arn:aws:iam::1234567890:user/Admin".into()
        })
    );
}

//! The whole pipeline on the local runtime with the AWS executor against moto: a bad ECS
//! deploy is rolled back to the previous task definition, Verify reads the scenario's
//! metrics again, and the incident resolves as verified, or, when they do not recover, the
//! rollback is undone and the incident escalates with "applied but did not help".

use std::sync::Arc;
use std::time::Duration;

use iras_aws::testing::Moto;
use iras_aws::{AwsExecutor, EcsSettle};
use iras_core::config::ExecutorKind;
use iras_core::policy::RemediationPolicy;
use iras_core::*;
use iras_scenarios::{Scenario, DEMO_SCENARIO};
use iras_tests::*;
use serde_json::{json, Value};

/// The payment-service bad deploy, on ECS: the deploy before the onset is task definition
/// payment-service:2 of service payment-service in cluster shop. With `recovers`, the
/// scenario says how the error rate reads once a fix is in.
fn ecs_scenario(recovers: bool) -> Arc<Scenario> {
    let mut raw: Value = serde_json::from_str(DEMO_SCENARIO).unwrap();
    for d in raw["deployments"].as_array_mut().unwrap() {
        if d["service"] != "payment-service" {
            continue;
        }
        let rev = if d["version"] == "v2.3.1" { 2 } else { 1 };
        d["version"] = json!(format!("payment-service:{rev}"));
        d["description"] = json!(format!(
            "ECS deployment ecs-svc/{rev} (PRIMARY) of service payment-service in cluster shop; task definition arn:aws:ecs:us-east-1:123456789012:task-definition/payment-service:{rev}"
        ));
    }
    if recovers {
        raw["after_remediation"] = json!({"metrics": [{
            "service": "payment-service", "name": "error_rate", "unit": "ratio",
            "points": [[30, 0.0031], [60, 0.0019], [90, 0.0016], [120, 0.0017]]
        }]});
    }
    let s = Scenario::parse(&raw.to_string(), "ecs-bad-deploy").unwrap();
    Arc::new(s.rebased(chrono::Utc::now()))
}

async fn ecs_service(moto: &Moto) {
    let ecs = aws_sdk_ecs::Client::new(&moto.config);
    ecs.create_cluster()
        .cluster_name("shop")
        .send()
        .await
        .unwrap();
    let mut last = String::new();
    for image in ["acme/payment:2.3.0", "acme/payment:2.3.1"] {
        last = ecs
            .register_task_definition()
            .family("payment-service")
            .container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name("app")
                    .image(image)
                    .memory(128)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .task_definition
            .unwrap()
            .task_definition_arn
            .unwrap();
    }
    ecs.create_service()
        .cluster("shop")
        .service_name("payment-service")
        .task_definition(last)
        .desired_count(2)
        .send()
        .await
        .unwrap();
}

async fn live_task_definition(moto: &Moto) -> String {
    let out = aws_sdk_ecs::Client::new(&moto.config)
        .describe_services()
        .cluster("shop")
        .services("payment-service")
        .send()
        .await
        .unwrap();
    iras_core::action::task_definition_name(out.services()[0].task_definition().unwrap())
        .to_string()
}

async fn run(moto: &Moto, recovers: bool) -> (Harness, IncidentId) {
    ecs_service(moto).await;
    let policy = RemediationPolicy::parse(
        "rules:\n  - actions: [ecs_set_task_definition]\n    resources: [\"shop/payment-service\"]\n",
        "policy.yaml",
    )
    .unwrap();
    let mut executor = AwsExecutor::new(&moto.config, policy.clone());
    executor.poll = Duration::from_millis(50);
    // moto never starts a service's tasks: settled means the configuration reads back.
    executor.ecs_settle = EcsSettle::ReadBack;
    let scenario = ecs_scenario(recovers);
    let s = scenario.clone();
    let h = harness(move |o| {
        o.scenario = Some(s);
        o.executor = Some(Arc::new(executor));
        o.config.executor = ExecutorKind::Aws;
        o.config.policy = policy;
        o.config.verify_after_seconds = 120;
        o.config.verify_attempts = 2;
        // The two-minute waits before Verify pass in a fraction of a second.
        o.runtime.wait_scale = 0.005;
    })
    .await;
    let id = h
        .pipeline
        .ingest(scenario.alert.clone())
        .await
        .unwrap()
        .incident_id
        .expect("an incident");
    let waiting = h.wait_awaiting_approval(&id).await;
    let step = &waiting.plan.as_ref().unwrap().steps[0];
    assert_eq!(
        step.action,
        Some(Action::EcsSetTaskDefinition {
            cluster: "shop".into(),
            service: "payment-service".into(),
            task_definition: "payment-service:1".into(),
            from: Some("payment-service:2".into()),
        }),
        "{:#?}",
        waiting.plan
    );
    h.decide(&id, Decision::Approved).await;
    (h, id)
}

#[tokio::test]
async fn a_bad_ecs_deploy_is_rolled_back_and_the_recovery_verified() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let (h, id) = run(&moto, true).await;
    let inc = h.finish(&id).await;
    assert_eq!(inc.status, IncidentStatus::Resolved, "{:#?}", inc.timeline);
    assert_eq!(live_task_definition(&moto).await, "payment-service:1");
    let v = inc.verification.expect("verified");
    assert_eq!(v.outcome, VerificationOutcome::Recovered);
    let error_rate = v.checks.iter().find(|c| c.metric == "error_rate").unwrap();
    assert!(error_rate.during_incident > 0.3 && error_rate.since_change.unwrap() < 0.01);
    let pm = h.postmortem(&id).await.unwrap();
    assert!(pm
        .to_markdown()
        .contains("verified: the symptoms recovered"));
    assert!(h.pages().is_empty());
}

#[tokio::test]
async fn a_rollback_that_does_not_help_is_undone_and_escalated_with_the_figures() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let (h, id) = run(&moto, false).await;
    let inc = h.finish(&id).await;
    assert_eq!(inc.status, IncidentStatus::Escalated);
    let e = inc.escalation.unwrap();
    assert_eq!(e.reason, EscalationReason::NotRecovered);
    assert!(
        e.detail.contains("applied but did not help"),
        "{}",
        e.detail
    );
    assert!(e.detail.contains("error_rate"), "the figures: {}", e.detail);
    // The task definition that was live before the change is live again.
    assert_eq!(live_task_definition(&moto).await, "payment-service:2");
    let steps = h.steps(&id).await;
    assert!(steps
        .iter()
        .any(|s| s.phase == StepPhase::Rollback && s.status == StepStatus::Succeeded));
    assert_eq!(inc.remediation, Some(RemediationOutcome::RolledBack));
    assert_eq!(h.pages().len(), 1);
}

//! The ECS stability wait against a local fake of ECS's JSON API (moto never starts a
//! service's tasks, so under moto a change only reads back). The fake plays a rolling
//! deployment as the API reference describes it: the change starts a new PRIMARY deployment
//! in front of the old one (now ACTIVE) with fewer tasks running than desired, and after a few
//! polls the old one is gone and every task runs; or the circuit breaker marks the rollout
//! FAILED; or it never settles.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iras_aws::{AwsExecutor, EcsSettle};
use iras_core::ports::{ExecError, Executor};
use iras_core::*;
use serde_json::{json, Value};

use crate::fake_api::{apply_step, executor_against};
use crate::support::fake_json_api;

/// The documented DescribeServices example (a steady service), with its sources.
const FIXTURE: &str = include_str!("../fixtures/ecs-services.json");

#[derive(Clone, Copy, PartialEq)]
enum Rollout {
    /// Steady after this many DescribeServices calls once the change was made.
    SettlesAfter(u32),
    /// The circuit breaker stops the new deployment.
    Fails,
    /// Tasks never all start.
    Never,
}

struct Fake {
    rollout: Rollout,
    /// The service as the fixture has it, changed by each UpdateService.
    service: Mutex<Value>,
    updates: Mutex<Vec<Value>>,
    polls_since_update: Mutex<u32>,
    /// True once a DescribeServices answer showed the service steady again.
    reported_steady: Mutex<bool>,
}

impl Fake {
    fn describe(&self) -> Value {
        let mut service = self.service.lock().unwrap();
        let mut polls = self.polls_since_update.lock().unwrap();
        *polls += 1;
        let rolling = service["deployments"].as_array().unwrap().len() > 1;
        if rolling {
            match self.rollout {
                Rollout::SettlesAfter(n) if *polls > n => {
                    let desired = service["desiredCount"].clone();
                    let mut primary = service["deployments"][0].clone();
                    primary["rolloutState"] = json!("COMPLETED");
                    primary["runningCount"] = desired.clone();
                    service["deployments"] = json!([primary]);
                    service["runningCount"] = desired;
                }
                Rollout::Fails if *polls > 1 => {
                    service["deployments"][0]["rolloutState"] = json!("FAILED");
                    service["deployments"][0]["rolloutStateReason"] =
                        json!("ECS deployment circuit breaker: tasks failed to start.");
                }
                _ => {}
            }
        }
        let steady = service["deployments"].as_array().unwrap().len() == 1
            && service["runningCount"] == service["desiredCount"];
        if steady && !self.updates.lock().unwrap().is_empty() {
            *self.reported_steady.lock().unwrap() = true;
        }
        json!({"services": [service.clone()], "failures": []})
    }

    /// A new PRIMARY deployment in front of the old one, with 4 tasks still to start.
    fn update(&self, req: Value) -> Value {
        let mut service = self.service.lock().unwrap();
        let n = self.updates.lock().unwrap().len() + 2;
        if let Some(td) = req["taskDefinition"].as_str() {
            service["taskDefinition"] = json!(format!(
                "arn:aws:ecs:us-west-2:123456789012:task-definition/{td}"
            ));
        }
        if let Some(count) = req["desiredCount"].as_i64() {
            service["desiredCount"] = json!(count);
        }
        let desired = service["desiredCount"].as_i64().unwrap();
        let mut old = service["deployments"][0].clone();
        old["status"] = json!("ACTIVE");
        let mut new = old.clone();
        new["status"] = json!("PRIMARY");
        new["id"] = json!(format!("ecs-svc/{n}00000000000000000"));
        new["taskDefinition"] = service["taskDefinition"].clone();
        new["desiredCount"] = json!(desired);
        new["runningCount"] = json!(desired - 4);
        new["rolloutState"] = json!("IN_PROGRESS");
        service["deployments"] = json!([new, old]);
        service["runningCount"] = json!(desired - 4);
        self.updates.lock().unwrap().push(req);
        *self.polls_since_update.lock().unwrap() = 0;
        json!({"service": service.clone()})
    }
}

async fn serve(rollout: Rollout) -> (String, Arc<Fake>) {
    let doc: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut service = doc["DescribeServices"]["services"][0].clone();
    // Live on the bad revision, amazon-ecs-sample:2; the rollback goes to :1.
    service["taskDefinition"] =
        json!("arn:aws:ecs:us-west-2:123456789012:task-definition/amazon-ecs-sample:2");
    service["deployments"][0]["taskDefinition"] = service["taskDefinition"].clone();
    let fake = Arc::new(Fake {
        rollout,
        service: Mutex::new(service),
        updates: Mutex::default(),
        polls_since_update: Mutex::default(),
        reported_steady: Mutex::default(),
    });
    let f = fake.clone();
    let url = fake_json_api(move |operation, req| match operation {
        "DescribeServices" => (200, f.describe()),
        "UpdateService" => (200, f.update(req)),
        other => panic!("unexpected call {other}"),
    })
    .await;
    (url, fake)
}

async fn executor(url: &str) -> AwsExecutor {
    let mut e = executor_against(
        url,
        "rules:\n  - actions: [ecs_set_task_definition, ecs_force_new_deployment]\n    resources: [\"default/my-http-service\"]\n",
    )
    .await;
    e.ecs_settle = EcsSettle::SteadyState;
    e
}

fn rollback() -> Action {
    Action::EcsSetTaskDefinition {
        cluster: "default".into(),
        service: "my-http-service".into(),
        task_definition: "amazon-ecs-sample:1".into(),
        from: Some("amazon-ecs-sample:2".into()),
    }
}

async fn apply(
    exec: &AwsExecutor,
    action: &Action,
    timeout: Duration,
) -> Result<ResourceState, ExecError> {
    let id = IncidentId::generate();
    let call = apply_step(&id, action, timeout);
    let prior = exec.observe(&call).await?;
    exec.apply(&call, &prior).await.map(|o| o.after)
}

#[tokio::test]
async fn a_rollback_returns_only_once_the_old_deployment_is_gone_and_every_task_runs() {
    let (url, fake) = serve(Rollout::SettlesAfter(3)).await;
    let exec = executor(&url).await;
    let after = apply(&exec, &rollback(), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        *fake.reported_steady.lock().unwrap(),
        "returned before ECS reported the service steady"
    );
    assert!(*fake.polls_since_update.lock().unwrap() > 3);
    assert!(
        matches!(
            after,
            ResourceState::EcsService { ref task_definition, ref primary_deployment, .. }
                if task_definition == "amazon-ecs-sample:1" && primary_deployment == "ecs-svc/200000000000000000"
        ),
        "{after:?}"
    );
    let updates = fake.updates.lock().unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["taskDefinition"], "amazon-ecs-sample:1");
}

#[tokio::test]
async fn a_forced_deployment_waits_for_its_new_deployment_to_settle() {
    let (url, fake) = serve(Rollout::SettlesAfter(2)).await;
    let exec = executor(&url).await;
    let action = Action::EcsForceNewDeployment {
        cluster: "default".into(),
        service: "my-http-service".into(),
    };
    let after = apply(&exec, &action, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(*fake.reported_steady.lock().unwrap());
    assert!(
        matches!(after, ResourceState::EcsService { ref primary_deployment, .. } if primary_deployment != "ecs-svc/1234567890123456789")
    );
    let updates = fake.updates.lock().unwrap();
    assert_eq!(updates[0]["forceNewDeployment"], true);
    assert!(updates[0].get("taskDefinition").is_none());
}

#[tokio::test]
async fn a_rollout_the_circuit_breaker_fails_fails_the_step_with_its_reason() {
    let (url, _fake) = serve(Rollout::Fails).await;
    let exec = executor(&url).await;
    let e = apply(&exec, &rollback(), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ExecError::NotStable(ref m) if m.contains("FAILED") && m.contains("circuit breaker")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_failed_rollout_from_before_the_change_does_not_stop_the_rollback() {
    // The bad deploy itself was stopped by the circuit breaker: its PRIMARY deployment reads
    // FAILED when IRAS arrives. Reading it and rolling back must still work.
    let (url, fake) = serve(Rollout::SettlesAfter(1)).await;
    {
        let mut service = fake.service.lock().unwrap();
        service["deployments"][0]["rolloutState"] = json!("FAILED");
        service["deployments"][0]["rolloutStateReason"] = json!("tasks failed to start");
    }
    let exec = executor(&url).await;
    let after = apply(&exec, &rollback(), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        matches!(after, ResourceState::EcsService { ref task_definition, .. } if task_definition == "amazon-ecs-sample:1")
    );
}

#[tokio::test]
async fn a_rollout_that_never_settles_fails_the_step_at_its_timeout() {
    let (url, fake) = serve(Rollout::Never).await;
    let exec = executor(&url).await;
    let e = apply(&exec, &rollback(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ExecError::NotStable(ref m) if m.contains("not stable after 1s")),
        "{e:?}"
    );
    assert_eq!(
        fake.updates.lock().unwrap().len(),
        1,
        "changed once, not retried"
    );
}

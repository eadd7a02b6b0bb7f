//! CodeDeploy's stop-with-rollback against a local fake of its documented JSON (moto does not
//! answer StopDeployment): a running deployment is stopped once, with automatic rollback, and
//! waited on until it reads Stopped; a re-run after a crash stops nothing twice; a deployment
//! that finished between the read and the stop is reported as it ended, not as a failure.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iras_aws::AwsExecutor;
use iras_core::ports::Executor;
use iras_core::*;
use serde_json::{json, Value};

use crate::fake_api::{apply_step, executor_against};
use crate::support::fake_json_api;

/// The documented GetDeployment and StopDeployment examples and the error, with sources.
const FIXTURE: &str = include_str!("../fixtures/codedeploy.json");

struct Fake {
    /// deploymentInfo.status as GetDeployment reports it.
    status: Mutex<&'static str>,
    /// Each StopDeployment request.
    stops: Mutex<Vec<Value>>,
    /// The deployment ends on its own (Succeeded) just as the stop arrives.
    finishes_first: bool,
}

async fn serve(finishes_first: bool) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        status: Mutex::new("InProgress"),
        stops: Mutex::default(),
        finishes_first,
    });
    let f = fake.clone();
    let url = fake_json_api(move |operation, req| {
        let doc: Value = serde_json::from_str(FIXTURE).unwrap();
        match operation {
            "GetDeployment" => {
                let mut d = doc["GetDeployment"].clone();
                d["deploymentInfo"]["status"] = json!(*f.status.lock().unwrap());
                (200, d)
            }
            "StopDeployment" => {
                f.stops.lock().unwrap().push(req);
                if f.finishes_first {
                    *f.status.lock().unwrap() = "Succeeded";
                    (400, doc["DeploymentAlreadyCompletedException"].clone())
                } else {
                    *f.status.lock().unwrap() = "Stopped";
                    (200, doc["StopDeployment"].clone())
                }
            }
            other => panic!("unexpected call {other}"),
        }
    })
    .await;
    (url, fake)
}

async fn executor(url: &str) -> AwsExecutor {
    executor_against(
        url,
        "rules:\n  - actions: [code_deploy_stop_deployment]\n    resources: [\"WordPress_App/WordPress_DG\"]\n",
    )
    .await
}

fn stop() -> Action {
    Action::CodeDeployStopDeployment {
        application: "WordPress_App".into(),
        deployment_group: "WordPress_DG".into(),
        deployment_id: "d-A1B2C3123".into(),
    }
}

#[tokio::test]
async fn a_running_deployment_is_stopped_once_with_automatic_rollback() {
    let (url, fake) = serve(false).await;
    let exec = executor(&url).await;
    let id = IncidentId::generate();
    let action = stop();
    let call = apply_step(&id, &action, Duration::from_secs(10));
    let prior = exec.observe(&call).await.unwrap();
    assert_eq!(
        prior,
        ResourceState::CodeDeployDeployment {
            status: "InProgress".into()
        }
    );
    let out = exec.apply(&call, &prior).await.unwrap();
    assert_eq!(
        out.after,
        ResourceState::CodeDeployDeployment {
            status: "Stopped".into()
        }
    );
    {
        let stops = fake.stops.lock().unwrap();
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0]["deploymentId"], "d-A1B2C3123");
        assert_eq!(stops[0]["autoRollbackEnabled"], true);
    }
    // The same step again, as after a crash before its finish record: already stopped.
    let again = exec.apply(&call, &prior).await.unwrap();
    assert!(again.output.contains("nothing changed"), "{}", again.output);
    assert_eq!(fake.stops.lock().unwrap().len(), 1);
    assert!(
        !action.reversible(),
        "a stopped deployment cannot be un-stopped"
    );
}

#[tokio::test]
async fn a_deployment_that_finished_before_the_stop_is_reported_as_it_ended() {
    let (url, fake) = serve(true).await;
    let exec = executor(&url).await;
    let id = IncidentId::generate();
    let action = stop();
    let call = apply_step(&id, &action, Duration::from_secs(10));
    let prior = exec.observe(&call).await.unwrap();
    let out = exec.apply(&call, &prior).await.unwrap();
    assert_eq!(
        out.after,
        ResourceState::CodeDeployDeployment {
            status: "Succeeded".into()
        }
    );
    assert!(out.output.contains("Succeeded"), "{}", out.output);
    assert_eq!(fake.stops.lock().unwrap().len(), 1);
}

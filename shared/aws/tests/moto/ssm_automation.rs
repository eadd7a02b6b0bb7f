//! SSM Automation against a local fake of its documented JSON (moto answers
//! StartAutomationExecution with HTTP 500): the runbook is started once per call key (the
//! ClientToken is derived from it), waited on, and its end decides the step.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iras_aws::AwsExecutor;
use iras_core::ports::{ExecError, Executor};
use iras_core::*;
use serde_json::Value;

use crate::fake_api::{apply_step, executor_against};
use crate::support::fake_json_api;

/// The documented response shapes, kept verbatim with their sources in the fixture.
const FIXTURE: &str = include_str!("../fixtures/ssm-automation.json");

#[derive(Default)]
struct Fake {
    /// ClientToken of every StartAutomationExecution, and its parameters.
    starts: Mutex<Vec<(String, Value)>>,
    polls: Mutex<u32>,
    /// The status GetAutomationExecution reports once the runbook has run.
    ends_as: &'static str,
}

async fn serve(ends_as: &'static str) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        ends_as,
        ..Default::default()
    });
    let f = fake.clone();
    let url = fake_json_api(move |operation, req| {
        let doc: Value = serde_json::from_str(FIXTURE).unwrap();
        let answer = match operation {
            "StartAutomationExecution" => {
                f.starts.lock().unwrap().push((
                    req["ClientToken"].as_str().unwrap_or("").to_string(),
                    req["Parameters"].clone(),
                ));
                doc["StartAutomationExecution"].clone()
            }
            "GetAutomationExecution" => {
                let mut polls = f.polls.lock().unwrap();
                *polls += 1;
                let mut a = doc["GetAutomationExecution"].clone();
                if *polls > 1 {
                    a["AutomationExecution"]["AutomationExecutionStatus"] =
                        Value::String(f.ends_as.into());
                }
                a
            }
            other => panic!("unexpected call {other}"),
        };
        (200, answer)
    })
    .await;
    (url, fake)
}

fn restart() -> Action {
    Action::SsmStartAutomation {
        document: "AWS-RestartEC2Instance".into(),
        parameters: [(
            "InstanceId".to_string(),
            vec!["i-0123456789abcdef0".to_string()],
        )]
        .into_iter()
        .collect(),
    }
}

async fn executor(url: &str) -> AwsExecutor {
    executor_against(
        url,
        "rules:\n  - actions: [ssm_start_automation]\n    documents: [AWS-RestartEC2Instance]\n    resources: [\"i-*\"]\n",
    )
    .await
}

#[tokio::test]
async fn a_runbook_is_started_with_a_stable_token_and_waited_on_until_it_succeeds() {
    let (url, fake) = serve("Success").await;
    let exec = executor(&url).await;
    let id = IncidentId::generate();
    let action = restart();
    let call = apply_step(&id, &action, Duration::from_secs(10));
    let prior = exec.observe(&call).await.unwrap();
    let out = exec.apply(&call, &prior).await.unwrap();
    assert_eq!(
        out.after,
        ResourceState::SsmExecution {
            id: Some("4105a4fc-f944-11e6-9d32-0a1b2c3d495c".into()),
            status: "Success".into(),
        }
    );
    assert!(*fake.polls.lock().unwrap() >= 2, "waited past InProgress");
    // A retried call sends the same ClientToken, so AWS starts the runbook once.
    exec.apply(&call, &prior).await.unwrap();
    let starts = fake.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0].0, starts[1].0);
    assert_eq!(starts[0].0.len(), 36, "a UUID: {}", starts[0].0);
    assert_eq!(starts[0].1["InstanceId"][0], "i-0123456789abcdef0");
}

#[tokio::test]
async fn a_runbook_that_fails_fails_the_step_and_cannot_be_undone() {
    let (url, _fake) = serve("Failed").await;
    let exec = executor(&url).await;
    let id = IncidentId::generate();
    let action = restart();
    let call = apply_step(&id, &action, Duration::from_secs(10));
    let e = exec
        .apply(&call, &ResourceState::NotRead)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ExecError::Failed(ref m) if m.contains("Failed")),
        "{e:?}"
    );
    assert!(!action.reversible());
}

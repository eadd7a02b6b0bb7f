//! The runner executor against a local runner that checks what a real one must: the HMAC
//! signature over timestamp and body, the timestamp window, and the idempotency key (a
//! repeated key gets the first answer and no second change).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use iras_adapters::{RunnerConfig, RunnerExecutor};
use iras_core::policy::RemediationPolicy;
use iras_core::ports::{Executor, StepCall};
use iras_core::signing::{hmac_hex, secure_eq};
use iras_core::stages::{remediate, Deps, RemediateInput};
use iras_core::testing::MemoryStore;
use iras_core::*;
use serde_json::{json, Value};

use crate::support::FakeServer;

const SECRET: &str = "runner-secret";

#[derive(Default)]
struct Runner {
    /// Idempotency key → the first answer.
    answers: Mutex<HashMap<String, Value>>,
    /// Changes actually made: (phase, step, prior handed back).
    changes: Mutex<Vec<(String, u64, Value)>>,
    /// The step whose apply the runner reports failed.
    fail_step: Option<u64>,
}

async fn handle(
    State(r): State<Arc<Runner>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts: i64 = h("x-iras-timestamp").parse().unwrap_or(0);
    let expected = format!(
        "v1={}",
        hmac_hex(SECRET.as_bytes(), format!("v1:{ts}:{body}").as_bytes())
    );
    if !secure_eq(h("x-iras-signature"), &expected)
        || (chrono::Utc::now().timestamp() - ts).abs() > 300
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad signature"})),
        );
    }
    let key = h("idempotency-key").to_string();
    if let Some(a) = r.answers.lock().unwrap().get(&key) {
        return (StatusCode::OK, Json(a.clone()));
    }
    let req: Value = serde_json::from_str(&body).unwrap();
    let phase = req["phase"].as_str().unwrap().to_string();
    let step = req["step"].as_u64().unwrap();
    let answer = match phase.as_str() {
        "observe" => json!({"status": "succeeded", "state": {"replicas": 3 + step}}),
        "apply" if Some(step) == r.fail_step => {
            json!({"status": "failed", "output": "deployment/payment-service: exceeded its progress deadline"})
        }
        _ => {
            r.changes
                .lock()
                .unwrap()
                .push((phase.clone(), step, req["prior"].clone()));
            json!({"status": "succeeded", "output": format!("{phase} done"), "state": {"replicas": 6}})
        }
    };
    r.answers.lock().unwrap().insert(key, answer.clone());
    (StatusCode::OK, Json(answer))
}

async fn runner(fail_step: Option<u64>) -> (FakeServer, Arc<Runner>) {
    let state = Arc::new(Runner {
        fail_step,
        ..Default::default()
    });
    let app = Router::new()
        .route("/steps", post(handle))
        .with_state(state.clone());
    (FakeServer::start(app).await, state)
}

fn executor(fake: &FakeServer, secret: &str) -> RunnerExecutor {
    RunnerExecutor::new(RunnerConfig {
        url: fake.url().join("/steps").unwrap().to_string(),
        secret: secret.as_bytes().to_vec(),
        timeout: Duration::from_secs(5),
        poll: Duration::from_millis(20),
    })
    .unwrap()
}

fn scale(n: &str) -> Action {
    Action::Runner {
        operation: "kubernetes.scale".into(),
        target: "shop/deployment/payment-service".into(),
        parameters: [("replicas".to_string(), n.to_string())]
            .into_iter()
            .collect(),
    }
}

#[tokio::test]
async fn a_call_with_the_wrong_secret_is_refused_and_changes_nothing() {
    let (fake, state) = runner(None).await;
    let exec = executor(&fake, "not-the-secret");
    let id = IncidentId::generate();
    let action = scale("6");
    let call = StepCall {
        incident: &id,
        step: 0,
        phase: StepPhase::Apply,
        action: &action,
        timeout: Duration::from_secs(5),
    };
    let e = exec
        .apply(&call, &ResourceState::NotRead)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    assert!(state.changes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_same_call_twice_changes_once() {
    let (fake, state) = runner(None).await;
    let exec = executor(&fake, SECRET);
    let id = IncidentId::generate();
    let action = scale("6");
    let call = StepCall {
        incident: &id,
        step: 0,
        phase: StepPhase::Apply,
        action: &action,
        timeout: Duration::from_secs(5),
    };
    let prior = exec.observe(&call).await.unwrap();
    let first = exec.apply(&call, &prior).await.unwrap();
    let again = exec.apply(&call, &prior).await.unwrap();
    assert_eq!(first, again, "a repeated key gets the first answer");
    let changes = state.changes.lock().unwrap().clone();
    assert_eq!(changes.len(), 1, "{changes:?}");
    let keys: Vec<String> = fake
        .requests()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_string))
        .collect();
    assert_eq!(
        keys,
        [
            format!("{id}:0:observe"),
            format!("{id}:0:apply"),
            format!("{id}:0:apply")
        ]
    );
}

#[tokio::test]
async fn a_failing_runner_answer_rolls_the_earlier_step_back_to_its_recorded_state() {
    let (fake, state) = runner(Some(1)).await;
    let store = Arc::new(MemoryStore::default());
    let mut config = PipelineConfig::default();
    config.executor = iras_core::config::ExecutorKind::Runner;
    config.policy = RemediationPolicy::parse(
        "rules:\n  - actions: [runner]\n    resources: [\"shop/*\"]\n",
        "policy.yaml",
    )
    .unwrap();
    let deps = Deps::builder(store.clone())
        .executor(Arc::new(executor(&fake, SECRET)))
        .config(config.clone())
        .build();
    let alert =
        Alert::from_json(json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z"})).unwrap();
    let now = chrono::Utc::now();
    let mut inc = Incident::open(IncidentId::generate(), alert, now);
    let plan = iras_core::policy::enforce(
        RemediationPlan {
            summary: "scale out, then again".into(),
            steps: vec![
                RemediationStep::new("scale".into(), scale("6"), RiskLevel::Medium, 30),
                RemediationStep::new("scale more".into(), scale("9"), RiskLevel::Medium, 30),
            ],
            reversible: true,
            requires_human_approval: true,
            blocked_by_policy: false,
            policy: vec![],
            safety_notes: vec![],
            analyst: "test".into(),
            required_approvers: 1,
        },
        &config.policy,
        None,
        true,
    );
    let d = ApprovalDecision {
        decision: Decision::Approved,
        approver: "alice".into(),
        channel: "cli".into(),
        decided_at: now,
        comment: None,
        plan_hash: plan.actions_hash(),
        delivery_pending: false,
        identity: Default::default(),
    };
    inc.approval = Some(ApprovalRequest {
        approval_id: "apr".into(),
        task_token: "t".into(),
        requested_at: now,
        expires_at: now,
        decision: Some(d.clone()),
        message_ref: None,
        plan_hash: plan.actions_hash(),
        required_approvers: 1,
        approvals: vec![d],
    });
    inc.plan = Some(plan);
    store.create_incident(&inc).await.unwrap();
    let out = remediate(
        &deps,
        &RemediateInput {
            incident_id: inc.incident_id.clone(),
            rollback: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(out.outcome, RemediationOutcome::RolledBack);
    assert!(out.summary.contains("progress deadline"), "{}", out.summary);
    let changes = state.changes.lock().unwrap().clone();
    // Step 1 applied, step 2 failed, step 1 restored with the state the runner reported
    // before the change.
    assert_eq!(
        changes,
        vec![
            ("apply".to_string(), 0, json!({"replicas": 3})),
            ("rollback".to_string(), 0, json!({"replicas": 3})),
        ]
    );
}

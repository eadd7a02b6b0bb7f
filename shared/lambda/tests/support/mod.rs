//! What the function tests share: the checked-in sample events, in-memory ports wired the way
//! the functions wire them (`build_deps`), and recording doubles for Step Functions.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http_body_util::BodyExt;
use iras_core::ports::*;
use iras_core::stages::Deps;
use iras_core::testing::{MemoryStore, RecordingEvents};
use iras_core::IncidentId;
use iras_http::App;
use iras_lambda::{build_deps, http_config, LambdaEvent, Settings};
use serde_json::Value;
use tower::ServiceExt;

/// The incident id the sample events in `infra/events` carry.
pub const SAMPLE_ID: &str = "inc-0195f3a2c4d87e6b9a1f2c3d4e5f6a7b";
/// The bearer key in `infra/events/approval-callback.json`.
pub const SAMPLE_API_KEY: &str = "sample-approval-api-key";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `infra/events/<name>.json` as text, about incident `id` instead of the sample's.
pub fn sample_text(name: &str, id: &str) -> String {
    read(&format!("infra/events/{name}.json")).replace(SAMPLE_ID, id)
}

pub fn sample(name: &str, id: &str) -> Value {
    serde_json::from_str(&sample_text(name, id)).expect("sample event is JSON")
}

pub fn lambda_event(payload: Value) -> LambdaEvent<Value> {
    LambdaEvent::new(payload, lambda_runtime::Context::default())
}

#[derive(Default)]
pub struct RecordingStarter {
    pub started: Mutex<Vec<IncidentId>>,
    pub fail: bool,
}

#[async_trait]
impl PipelineStarter for RecordingStarter {
    async fn start(&self, id: &IncidentId) -> Result<(), StartError> {
        if self.fail {
            return Err(StartError("ThrottlingException: rate exceeded".into()));
        }
        self.started.lock().unwrap().push(id.clone());
        Ok(())
    }
}

#[derive(Default)]
pub struct RecordingCallbacks {
    pub successes: Mutex<Vec<(String, Value)>>,
}

#[async_trait]
impl TaskCallbacks for RecordingCallbacks {
    async fn send_task_success(&self, token: &str, output: Value) -> Result<(), CallbackError> {
        self.successes
            .lock()
            .unwrap()
            .push((token.to_string(), output));
        Ok(())
    }
    async fn send_task_failure(&self, _: &str, _: &str, _: &str) -> Result<(), CallbackError> {
        Ok(())
    }
}

/// One function's world: its ports as `build_deps` wires them, over memory.
pub struct World {
    pub deps: Deps,
    pub store: Arc<MemoryStore>,
    pub events: Arc<RecordingEvents>,
    pub starter: Arc<RecordingStarter>,
    pub callbacks: Arc<RecordingCallbacks>,
    pub vars: HashMap<String, String>,
}

/// The environment the template gives the functions, with the synthetic scenarios standing in
/// for evidence backends and secrets as already resolved.
pub fn world() -> World {
    world_with(RecordingStarter::default())
}

pub fn world_with(starter: RecordingStarter) -> World {
    let vars: HashMap<String, String> = [
        ("TABLE_NAME", "iras-incidents".to_string()),
        ("EVENT_BUS_NAME", "iras-bus".to_string()),
        (
            "SCENARIOS_DIR",
            repo().join("scenarios/synthetic").display().to_string(),
        ),
        (
            "IRAS_PUBLIC_URL",
            "https://abc123defg.execute-api.us-east-1.amazonaws.com".to_string(),
        ),
        ("APPROVAL_SIGNING_KEY", "test-signing-key".to_string()),
        ("APPROVAL_API_KEY", SAMPLE_API_KEY.to_string()),
        ("RCA_MAX_ATTEMPTS", "3".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let settings = Settings::from_vars(&vars).expect("settings");
    let store = Arc::new(MemoryStore::default());
    let events = Arc::new(RecordingEvents::default());
    let deps = build_deps(&settings, store.clone(), events.clone()).expect("deps");
    World {
        deps,
        store,
        events,
        starter: Arc::new(starter),
        callbacks: Arc::new(RecordingCallbacks::default()),
        vars,
    }
}

impl World {
    pub fn app(&self) -> Arc<App> {
        Arc::new(App {
            deps: Arc::new(self.deps.clone()),
            starter: self.starter.clone(),
            callbacks: self.callbacks.clone(),
            http: http_config(&self.vars).expect("http config"),
            runtime_health: Arc::new(|| Ok(())),
        })
    }

    pub async fn incident_count(&self) -> usize {
        self.store
            .list_incidents(&IncidentQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .incidents
            .len()
    }

    /// An API Gateway HTTP API (v2) event, as `lambda_http` turns it into a request, through
    /// the router the HTTP functions serve.
    pub async fn http(&self, apigw_event: &str) -> (u16, String) {
        let request = lambda_http::request::from_str(apigw_event).expect("an API Gateway event");
        // The lambda_http request goes to the router as it is, as `run_http` hands it over.
        let response = iras_http::router(self.app())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The state machine definition.
pub fn asl() -> Value {
    serde_json::from_str(&read("statemachine.asl.json")).expect("ASL is JSON")
}

/// What a Task state's `ResultSelector` reads from the function's output (`$.Payload.x` → x).
pub fn payload_fields(asl: &Value, state: &str) -> Vec<String> {
    asl["States"][state]["ResultSelector"]
        .as_object()
        .map(|sel| {
            sel.values()
                .filter_map(Value::as_str)
                .filter_map(|p| p.strip_prefix("$.Payload."))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

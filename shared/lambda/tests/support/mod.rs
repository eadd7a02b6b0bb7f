//! What the function tests share: the checked-in sample events, in-memory ports wired the way
//! the functions wire them (`build_deps` with the function's ports), recording doubles for
//! Step Functions, and a log of the ports each function called.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http_body_util::BodyExt;
use iras_core::ports::*;
use iras_core::stages::Deps;
use iras_core::testing::{MemoryStore, PortLog, RecordingEvents};
use iras_core::IncidentId;
use iras_http::App;
use iras_lambda::{build_deps, http_config, Function, LambdaEvent, Port, Settings};
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

/// The functions' world: each function's ports as `build_deps` wires them for it, over one
/// memory store, with every call noted.
pub struct World {
    pub settings: Settings,
    pub store: Arc<MemoryStore>,
    pub events: Arc<RecordingEvents>,
    pub starter: Arc<RecordingStarter>,
    pub callbacks: Arc<RecordingCallbacks>,
    pub vars: HashMap<String, String>,
    log: Arc<PortLog>,
    /// What each function called, over the whole test.
    pub called: Mutex<BTreeMap<Function, BTreeSet<Port>>>,
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
        // As the template sets it: the IAM authorizer names the caller.
        ("API_AUTH", "iam".to_string()),
        ("RCA_MAX_ATTEMPTS", "3".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    World {
        settings: Settings::from_vars(&vars).expect("settings"),
        store: Arc::new(MemoryStore::default()),
        events: Arc::new(RecordingEvents::default()),
        starter: Arc::new(starter),
        callbacks: Arc::new(RecordingCallbacks::default()),
        vars,
        log: PortLog::new(),
        called: Mutex::default(),
    }
}

impl World {
    /// `function`'s ports as its cold start builds them, each call noted; the log starts over.
    pub fn deps(&self, function: Function) -> Deps {
        let deps = build_deps(
            &self.settings,
            function.ports(),
            self.store.clone(),
            self.events.clone(),
        )
        .expect("deps");
        self.log.take();
        self.log.wrap(&deps)
    }

    pub fn starter(&self) -> Arc<dyn PipelineStarter> {
        self.log.starter(self.starter.clone())
    }

    pub fn callbacks(&self) -> Arc<dyn TaskCallbacks> {
        self.log.callbacks(self.callbacks.clone())
    }

    /// The router's state as `function` builds it: the starter and callbacks it calls.
    pub fn app(&self, function: Function) -> Arc<App> {
        let deps = Arc::new(self.deps(function));
        Arc::new(App {
            deps,
            starter: self.starter(),
            callbacks: self.callbacks(),
            http: http_config(&self.vars).expect("http config"),
            runtime_health: Arc::new(|| Ok(())),
        })
    }

    /// What `function` called since its ports were built, which must be among those it
    /// declares: an undeclared one is missing from its build on AWS.
    pub fn called_by(&self, function: Function) -> BTreeSet<Port> {
        let called = self.log.take();
        let declared: BTreeSet<Port> = function.ports().iter().copied().collect();
        assert!(
            called.is_subset(&declared),
            "{function} called {:?}, but declares only {declared:?}",
            called.difference(&declared).collect::<Vec<_>>()
        );
        self.called
            .lock()
            .unwrap()
            .entry(function)
            .or_default()
            .extend(called.iter().copied());
        called
    }

    /// The ingest function's handler on `event`, as Lambda calls it.
    pub async fn ingest(
        &self,
        event: Value,
    ) -> Result<iras_lambda::ingest::IngestOutput, iras_lambda::Diagnostic> {
        let deps = self.deps(Function::Ingest);
        let out = iras_lambda::ingest::handle(
            &deps,
            self.starter().as_ref(),
            self.callbacks().as_ref(),
            lambda_event(event),
        )
        .await;
        self.called_by(Function::Ingest);
        out
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
    /// the router `function` serves.
    pub async fn http(&self, function: Function, apigw_event: &str) -> (u16, String) {
        let request = lambda_http::request::from_str(apigw_event).expect("an API Gateway event");
        // The lambda_http request goes to the router as `run_http` hands it over.
        let response = iras_http::router(self.app(function))
            .oneshot(iras_lambda::with_gateway_caller(request))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        self.called_by(function);
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

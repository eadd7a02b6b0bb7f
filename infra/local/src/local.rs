//! The pipeline on one machine: the state machine definition executed by the local runtime,
//! each `${XFunctionArn}` bound to the stage's handler in-process, one SQLite file for all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use iras_core::handler::{self, Stage};
use iras_core::ports::*;
use iras_core::stages::{self, DecideError, DecisionRequest, Deps};
use iras_core::*;
use iras_scenarios::{Scenario, ScenarioLibrary};
use serde_json::{json, Value};

use crate::console::Console;
use crate::data_dir::DataFiles;
use crate::store::SqliteStore;
use sfn_local::{
    Definition, ExecutionInfo, FunctionError, FunctionRegistry, LambdaFunction, Runtime,
    RuntimeError, RuntimeOptions,
};

/// The pipeline definition shipped with IRAS, the same file SAM deploys.
pub const STATE_MACHINE: &str = include_str!("../../../statemachine.asl.json");

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0}")]
    Definition(String),
    #[error("data directory: {0}")]
    Data(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("runtime: {0}")]
    Runtime(String),
    #[error("{0}")]
    Stage(#[from] stages::StageError),
}

impl From<RuntimeError> for LocalError {
    fn from(e: RuntimeError) -> Self {
        LocalError::Runtime(e.to_string())
    }
}

/// The function ARN the local runtime gives a stage: shaped like a real one so the definition
/// sees no difference.
pub fn local_function_arn(stage: Stage) -> String {
    format!(
        "arn:aws:lambda:local:000000000000:function:iras-{}",
        stage.function_name()
    )
}

/// One stage's handler, standing in for its Lambda function.
struct StageFunction {
    stage: Stage,
    deps: Arc<Deps>,
}

#[async_trait]
impl LambdaFunction for StageFunction {
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError> {
        handler::handle(&self.deps, self.stage, payload)
            .await
            .map_err(|e| FunctionError {
                error_type: e.name().to_string(),
                message: e.message(),
            })
    }
}

/// Lets a human's decision complete the runtime's waiting task.
pub struct RuntimeCallbacks(pub Arc<Runtime>);

#[async_trait]
impl TaskCallbacks for RuntimeCallbacks {
    async fn send_task_success(&self, token: &str, output: Value) -> Result<(), CallbackError> {
        self.0
            .send_task_success(token, output)
            .await
            .map_err(callback_error)
    }
    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), CallbackError> {
        self.0
            .send_task_failure(token, error, cause)
            .await
            .map_err(callback_error)
    }
}

fn callback_error(e: RuntimeError) -> CallbackError {
    match e {
        RuntimeError::InvalidToken => CallbackError::InvalidToken,
        RuntimeError::TaskTimedOut => CallbackError::TaskTimedOut,
        other => CallbackError::Unavailable(other.to_string()),
    }
}

/// Starts an incident's execution in the local runtime; idempotent like `StartExecution`.
pub struct LocalStarter(pub Arc<Runtime>);

#[async_trait]
impl PipelineStarter for LocalStarter {
    async fn start(&self, id: &IncidentId) -> Result<(), StartError> {
        match self
            .0
            .start_execution(id.as_str(), json!({"incident_id": id}))
            .await
        {
            Ok(_) => Ok(()),
            // Its execution already ran to the end: nothing left to start.
            Err(RuntimeError::ExecutionAlreadyExists(_)) => Ok(()),
            Err(e) => Err(StartError(e.to_string())),
        }
    }
}

/// What to build a local pipeline from. Anything left `None` gets the product default.
pub struct LocalOptions {
    /// Where the incidents and the executions are kept ([`crate::data_dir`]).
    pub data_dir: PathBuf,
    /// ASL text; defaults to [`STATE_MACHINE`].
    pub definition: Option<String>,
    pub scenario: Option<Arc<Scenario>>,
    /// Evidence for any alert, from the scenario that matches it (`iras serve --scenarios`).
    pub library: Option<ScenarioLibrary>,
    /// Real backends and channels from the environment; each kind configured here replaces the
    /// scenario (evidence) or console (notifier, pager) fallback.
    pub integrations: Option<Integrations>,
    pub config: PipelineConfig,
    pub analyst: Option<Arc<dyn Analyst>>,
    pub executor: Option<Arc<dyn Executor>>,
    pub pager: Option<Arc<dyn Pager>>,
    pub notifier: Option<Arc<dyn Notifier>>,
    pub clock: Option<Arc<dyn Clock>>,
    pub events: Option<Arc<dyn EventPublisher>>,
    /// Replace a stage's function (a test's stage that keeps failing).
    pub function_overrides: HashMap<Stage, Arc<dyn LambdaFunction>>,
    pub runtime: RuntimeOptions,
    pub quiet: bool,
}

impl LocalOptions {
    pub fn new(data_dir: PathBuf) -> Self {
        LocalOptions {
            data_dir,
            definition: None,
            scenario: None,
            library: None,
            integrations: None,
            config: PipelineConfig::default(),
            analyst: None,
            executor: None,
            pager: None,
            notifier: None,
            clock: None,
            events: None,
            function_overrides: HashMap::new(),
            runtime: RuntimeOptions::default(),
            quiet: true,
        }
    }
}

pub struct LocalPipeline {
    pub runtime: Arc<Runtime>,
    pub deps: Arc<Deps>,
    pub store: Arc<SqliteStore>,
}

impl LocalPipeline {
    /// Opens (or reopens, resuming waiting executions) the pipeline on `data_dir`.
    pub async fn open(opts: LocalOptions) -> Result<LocalPipeline, LocalError> {
        let files = DataFiles::in_dir(&opts.data_dir);
        files.prepare().map_err(LocalError::Data)?;
        let store = Arc::new(SqliteStore::open(&files.incidents)?);
        let console = Arc::new(Console::new(opts.quiet));
        let mut integrations = opts.integrations.unwrap_or_default();
        integrations.evidence = match (&opts.scenario, &opts.library) {
            (Some(s), _) => integrations.evidence.or_stand_in(Arc::new(s.sources())),
            (None, Some(lib)) => integrations.evidence.or_stand_in(Arc::new(lib.clone())),
            (None, None) => integrations.evidence,
        };
        // A person at a terminal hears what Slack and PagerDuty would have said.
        let mut deps = Deps::builder(store.clone())
            .notifier(console.clone())
            .pager(console)
            .integrations(integrations)
            .config(opts.config);
        if let Some(n) = opts.notifier {
            deps = deps.notifier(n);
        }
        if let Some(p) = opts.pager {
            deps = deps.pager(p);
        }
        if let Some(a) = opts.analyst {
            deps = deps.analyst(a);
        }
        if let Some(e) = opts.executor {
            deps = deps.executor(e);
        }
        if let Some(c) = opts.clock {
            deps = deps.clock(c);
        }
        if let Some(e) = opts.events {
            deps = deps.events(e);
        }
        let deps = Arc::new(deps.build());

        let mut substitutions = HashMap::new();
        let mut functions: FunctionRegistry = HashMap::new();
        for stage in Stage::ALL {
            let arn = local_function_arn(stage);
            substitutions.insert(stage.arn_placeholder(), arn.clone());
            let f: Arc<dyn LambdaFunction> = match opts.function_overrides.get(&stage) {
                Some(f) => f.clone(),
                None => Arc::new(StageFunction {
                    stage,
                    deps: deps.clone(),
                }),
            };
            functions.insert(arn, f);
        }
        let text = opts.definition.as_deref().unwrap_or(STATE_MACHINE);
        let definition = Definition::load(text, &substitutions)
            .map_err(|e| LocalError::Definition(e.to_string()))?;
        let runtime = Runtime::open(&files.executions, definition, functions, opts.runtime).await?;
        Ok(LocalPipeline {
            runtime,
            deps,
            store,
        })
    }

    /// Opens an incident for the alert (a repeat of an open incident's alert is attached to
    /// it instead) and starts its execution, named after the incident: the webhook's
    /// [`stages::open_and_start`].
    pub async fn ingest(&self, alert: Alert) -> Result<stages::Ingested, LocalError> {
        stages::open_and_start(
            &self.deps,
            &LocalStarter(self.runtime.clone()),
            &RuntimeCallbacks(self.runtime.clone()),
            alert,
        )
        .await
        .map_err(|e| match e {
            stages::IngestFailure::NotRecorded(e) => LocalError::Stage(e),
            started => LocalError::Runtime(started.to_string()),
        })
    }

    /// Starts (idempotently: the execution name is the incident id) the incident's pipeline.
    pub async fn start(&self, id: &IncidentId) -> Result<(), LocalError> {
        LocalStarter(self.runtime.clone())
            .start(id)
            .await
            .map_err(|e| LocalError::Runtime(e.to_string()))
    }

    pub async fn decide(
        &self,
        id: &IncidentId,
        request: DecisionRequest,
    ) -> Result<Incident, DecideError> {
        stages::decide(
            &self.deps,
            &RuntimeCallbacks(self.runtime.clone()),
            id,
            request,
        )
        .await
    }

    /// Delivers the decisions recorded but not delivered (a crash between the two): see
    /// [`stages::reconcile_decisions`].
    pub async fn reconcile_decisions(
        &self,
        min_age: chrono::Duration,
    ) -> Result<stages::Reconciled, LocalError> {
        let done = stages::reconcile_decisions(
            &self.deps,
            &RuntimeCallbacks(self.runtime.clone()),
            min_age,
        )
        .await
        .map_err(LocalError::Stage)?;
        // This process has the on-call channel: it says the decision went through.
        for id in &done.delivered_incidents {
            let Ok(Some(inc)) = self.store.get_incident(id).await else {
                continue;
            };
            let Some(d) = inc.approval.as_ref().and_then(|a| a.decision.as_ref()) else {
                continue;
            };
            let news = format!(
                "plan {} by {} via {}; delivered after a restart",
                d.decision.as_str(),
                d.approver,
                d.channel
            );
            if let Err(e) = self.deps.notifier.incident_updated(&inc, &news).await {
                tracing::warn!(incident = %id, error = %e, "could not tell the on-call channel about the decision");
            }
        }
        Ok(done)
    }

    pub async fn incident(&self, id: &IncidentId) -> Result<Option<Incident>, LocalError> {
        Ok(self.store.get_incident(id).await?)
    }

    /// Polls the store until the incident reaches `status` (or a final status).
    pub async fn wait_for_status(
        &self,
        id: &IncidentId,
        status: IncidentStatus,
        timeout: Duration,
    ) -> Result<Incident, LocalError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(inc) = self.store.get_incident(id).await? {
                if inc.status == status || inc.status.is_final() {
                    return Ok(inc);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LocalError::Runtime(format!(
                    "incident {id} did not reach {status} within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_for_execution(
        &self,
        id: &IncidentId,
        timeout: Duration,
    ) -> Result<ExecutionInfo, LocalError> {
        Ok(self
            .runtime
            .wait_for_completion(id.as_str(), timeout)
            .await?)
    }

    /// The whole record as a person (or `--json`) sees it; see [`iras_core::report`].
    pub async fn report(&self, id: &IncidentId) -> Result<Value, LocalError> {
        iras_core::report::incident_report(self.store.as_ref(), id)
            .await?
            .ok_or_else(|| LocalError::Store(StoreError::NotFound(id.to_string())))
    }
}

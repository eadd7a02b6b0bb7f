//! Cold start: read the environment once, read the secrets it names, build core's ports:
//! those the function calls ([`Function::ports`]), and only those.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Once};

use async_trait::async_trait;
use iras_aws::{DynamoStore, SdkConfig};
use iras_core::config::{ApprovalLinks, ConfigError, EnvVars, ExecutorKind};
use iras_core::executor::DryRunExecutor;
use iras_core::handler::Port;
use iras_core::ports::*;
use iras_core::stages::Deps;
#[cfg(feature = "http")]
use iras_core::IncidentId;
use iras_core::PipelineConfig;
#[cfg(feature = "http")]
use iras_http::{App, HttpConfig};
use tokio::sync::OnceCell;

use crate::function::{self, Function};
use crate::secrets::{self, SsmParameters};

/// Base URL of the approval pages (the HTTP API's URL); links are signed with
/// `APPROVAL_SIGNING_KEY`.
pub const PUBLIC_URL: &str = "IRAS_PUBLIC_URL";
/// A folder of `iras-scenario/1` files standing in for evidence backends (demos, tests).
pub const SCENARIOS_DIR: &str = "SCENARIOS_DIR";

/// Why a function could not start. Returned from `main`, so Lambda shows it as an init error.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{var} is not set: {why}")]
    Missing {
        var: &'static str,
        why: &'static str,
    },
    #[error("secret {var}: SSM parameter `{parameter}` could not be read: {problem}")]
    Secret {
        var: String,
        parameter: String,
        problem: String,
    },
    #[error("{SCENARIOS_DIR}: {0}")]
    Scenarios(String),
    /// Its stand-in would change what the function does (a page as a log line): refuse instead.
    #[error(
        "this function calls the {port} port, but was built without iras-lambda's `{feature}` \
         feature: enable it in the function's Cargo.toml"
    )]
    NotLinked { port: Port, feature: &'static str },
    #[error("REMEDIATION_EXECUTOR: {0}")]
    Executor(String),
}

/// What the environment says about this function, secrets already resolved.
#[derive(Clone)]
pub struct Settings {
    pub table_name: String,
    pub state_machine_arn: Option<String>,
    pub event_bus_name: Option<String>,
    pub public_url: Option<String>,
    pub scenarios_dir: Option<PathBuf>,
    pub approval_signing_key: Option<String>,
    /// Thresholds and policy (`RCA_CONFIDENCE_THRESHOLD`, ...); approval links are added by
    /// [`build_deps`].
    pub pipeline: PipelineConfig,
    /// The whole environment, secrets resolved: the integrations and the LLM analyst read
    /// their own variables from it. Never logged.
    #[cfg_attr(
        not(any(
            feature = "analyst",
            feature = "evidence",
            feature = "notifier",
            feature = "pager"
        )),
        allow(dead_code)
    )]
    vars: HashMap<String, String>,
    /// The AWS SDK configuration, for the CloudWatch, ECS and CodeDeploy evidence sources;
    /// without it ([`Settings::with_aws`]) those sources are not built.
    aws: Option<SdkConfig>,
}

/// Secrets are shown only as set or unset, so a logged setting leaks nothing.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("table_name", &self.table_name)
            .field("state_machine_arn", &self.state_machine_arn)
            .field("event_bus_name", &self.event_bus_name)
            .field("public_url", &self.public_url)
            .field("scenarios_dir", &self.scenarios_dir)
            .field(
                "approval_signing_key",
                &self.approval_signing_key.as_ref().map(|_| "<set>"),
            )
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// `vars` as returned by [`secrets::with_secrets`]: secret values, not parameter names.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Settings, BootError> {
        let env = EnvVars(vars);
        Ok(Settings {
            table_name: env
                .string(iras_aws::env::TABLE_NAME)
                .ok_or(BootError::Missing {
                    var: iras_aws::env::TABLE_NAME,
                    why: "which DynamoDB table holds incidents?",
                })?,
            state_machine_arn: env.string(iras_aws::env::STATE_MACHINE_ARN),
            event_bus_name: env.string(iras_aws::env::EVENT_BUS_NAME),
            public_url: env.string(PUBLIC_URL),
            scenarios_dir: env.string(SCENARIOS_DIR).map(PathBuf::from),
            approval_signing_key: env.string(secrets::APPROVAL_SIGNING_KEY),
            pipeline: PipelineConfig::from_vars(vars)?,
            vars: vars.clone(),
            aws: None,
        })
    }

    /// Lets [`build_deps`] read evidence from CloudWatch, ECS and CodeDeploy through `sdk`.
    pub fn with_aws(mut self, sdk: SdkConfig) -> Settings {
        self.aws = Some(sdk);
        self
    }
}

/// Refuses a port whose adapter this build does not link.
fn require(port: Port) -> Result<(), BootError> {
    match function::linked(port) {
        true => Ok(()),
        false => Err(not_linked(port)),
    }
}

fn not_linked(port: Port) -> BootError {
    BootError::NotLinked {
        port,
        feature: function::feature(port).unwrap_or("?"),
    }
}

/// Core's ports for a function that calls `ports`: the store given, the event bus given if it
/// publishes, and from `settings`: the LLM analyst when `LLM_PROVIDER` names one (the offline
/// analyst otherwise, and as its fallback); Prometheus, Loki, Elasticsearch and GitHub
/// evidence, else log lines in CloudWatch Logs; Slack and PagerDuty when configured; scenario
/// evidence only for the kinds no backend provides; and always the dry-run executor. A port
/// it does not call keeps core's default, so a function behaves the same whatever else the
/// build links; one it calls but the build lacks is an error.
pub fn build_deps(
    settings: &Settings,
    ports: &[Port],
    store: Arc<dyn IncidentStore>,
    events: Arc<dyn EventPublisher>,
) -> Result<Deps, BootError> {
    for &port in ports {
        require(port)?;
    }
    let calls = |port: Port| ports.contains(&port);
    let mut config = settings.pipeline.clone();
    config.approval_links = match (&settings.public_url, &settings.approval_signing_key) {
        (Some(base_url), Some(key)) => Some(ApprovalLinks {
            base_url: base_url.clone(),
            signing_key: key.as_bytes().to_vec(),
        }),
        (None, None) => None,
        (url, _) => {
            tracing::warn!(
                public_url = url.is_some(),
                signing_key = settings.approval_signing_key.is_some(),
                "approval notifications carry no link: set both {PUBLIC_URL} and {}",
                secrets::APPROVAL_SIGNING_KEY
            );
            None
        }
    };
    let mut deps = Deps::builder(store).config(config);
    if calls(Port::Events) {
        deps = deps.events(events);
    }
    #[allow(unused_mut)]
    let mut integrations = Integrations::default();
    #[cfg(feature = "evidence")]
    if calls(Port::Evidence) {
        integrations.merge(iras_adapters::evidence_from_env(&settings.vars)?);
        if let Some(sdk) = &settings.aws {
            integrations.merge(iras_aws::aws_evidence_from_vars(&settings.vars, sdk)?);
        }
        if let Some(dir) = &settings.scenarios_dir {
            let library = iras_scenarios::ScenarioLibrary::load_dir(dir)
                .map_err(|e| BootError::Scenarios(e.to_string()))?;
            integrations.evidence = integrations.evidence.or_stand_in(Arc::new(library));
        }
    }
    #[cfg(feature = "notifier")]
    if calls(Port::Notifier) {
        integrations.merge(iras_adapters::slack_from_env(&settings.vars)?);
    }
    #[cfg(feature = "pager")]
    if calls(Port::Pager) {
        integrations.merge(iras_adapters::pagerduty_from_env(&settings.vars)?);
    }
    for note in &integrations.notes {
        tracing::info!(integration = %note, "configured");
    }
    deps = deps.integrations(integrations);
    #[cfg(feature = "analyst")]
    if calls(Port::Analyst) {
        let analyst = iras_llm::analyst_from_env(&settings.vars)?;
        tracing::info!(analyst = %analyst.name(), "configured");
        deps = deps.analyst(analyst);
    }
    let executor = executor(settings, calls(Port::Executor))?;
    tracing::info!(executor = %executor.name(), policy = %settings.pipeline.policy.origin, "configured");
    Ok(deps.executor(executor).build())
}

/// `REMEDIATION_EXECUTOR`: dry-run (the default), aws (the AWS SDK; runner actions go to the
/// runner when one is configured) or runner (`REMEDIATION_RUNNER_URL` and its secret). Only a
/// function that `runs` steps (remediate) builds the real one; the others (Verify reads the
/// executor's name) get a stand-in of the same name that refuses every step.
pub fn executor(settings: &Settings, runs: bool) -> Result<Arc<dyn Executor>, BootError> {
    match (settings.pipeline.executor, runs) {
        (ExecutorKind::DryRun, _) => Ok(Arc::new(DryRunExecutor)),
        (kind, false) => Ok(Arc::new(NotThisFunction(kind))),
        (kind, true) => real_executor(settings, kind),
    }
}

#[cfg(feature = "remediation")]
fn real_executor(settings: &Settings, kind: ExecutorKind) -> Result<Arc<dyn Executor>, BootError> {
    let runner = iras_adapters::RunnerConfig::from_vars(&settings.vars)?
        .map(|c| {
            iras_adapters::RunnerExecutor::new(c)
                .map(|r| Arc::new(r) as Arc<dyn Executor>)
                .map_err(|e| BootError::Executor(format!("runner client: {e}")))
        })
        .transpose()?;
    match kind {
        ExecutorKind::DryRun => Ok(Arc::new(DryRunExecutor)),
        ExecutorKind::Runner => runner.ok_or(BootError::Missing {
            var: iras_adapters::runner::RUNNER_URL,
            why: "REMEDIATION_EXECUTOR=runner: where is the runner?",
        }),
        ExecutorKind::Aws => {
            let Some(sdk) = &settings.aws else {
                return Err(BootError::Executor(
                    "REMEDIATION_EXECUTOR=aws needs the AWS SDK configuration".into(),
                ));
            };
            let mut e = iras_aws::AwsExecutor::new(sdk, settings.pipeline.policy.clone());
            if let Some(r) = runner {
                e = e.with_runner(r);
            }
            Ok(Arc::new(e))
        }
    }
}

/// `build_deps` has refused a function that runs steps in a build without the executors.
#[cfg(not(feature = "remediation"))]
fn real_executor(_: &Settings, _: ExecutorKind) -> Result<Arc<dyn Executor>, BootError> {
    Err(not_linked(Port::Executor))
}

/// Stands in for the configured executor in functions that never run a step: its name (Verify
/// says which executor changed nothing), and a refusal for every call.
struct NotThisFunction(ExecutorKind);

#[async_trait]
impl Executor for NotThisFunction {
    fn name(&self) -> String {
        self.0.as_str().into()
    }
    async fn observe(&self, _: &StepCall<'_>) -> Result<iras_core::ResourceState, ExecError> {
        Err(ExecError::Refused(NOT_HERE.into()))
    }
    async fn apply(
        &self,
        _: &StepCall<'_>,
        _: &iras_core::ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        Err(ExecError::Refused(NOT_HERE.into()))
    }
    async fn restore(
        &self,
        _: &StepCall<'_>,
        _: &iras_core::ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        Err(ExecError::Refused(NOT_HERE.into()))
    }
}

const NOT_HERE: &str = "this function runs no remediation steps: only remediate does";

/// The HTTP surface's secrets and limits, from `vars` with secrets resolved.
#[cfg(feature = "http")]
pub fn http_config(vars: &HashMap<String, String>) -> Result<HttpConfig, BootError> {
    // A wrong approver list must stop the boot, not turn the buttons off in silence.
    iras_http::slack::SlackInteractivity::from_vars(vars).map_err(|problem| ConfigError {
        name: "SLACK_APPROVERS".into(),
        problem,
    })?;
    Ok(HttpConfig::from_vars(vars)?)
}

/// Loaded once per process, whatever the function asks for first.
struct Loaded {
    sdk: SdkConfig,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    vars: HashMap<String, String>,
    settings: Settings,
}

static LOADED: OnceCell<Loaded> = OnceCell::const_new();
static TRACING: Once = Once::new();

async fn load() -> Result<&'static Loaded, BootError> {
    TRACING.call_once(lambda_runtime::tracing::init_default_subscriber);
    LOADED
        .get_or_try_init(|| async {
            let sdk = iras_aws::aws_config_from_env().await;
            let ssm = SsmParameters(aws_sdk_ssm::Client::new(&sdk));
            let vars = secrets::with_secrets(std::env::vars().collect(), &ssm).await?;
            let settings = Settings::from_vars(&vars)?.with_aws(sdk.clone());
            tracing::info!(?settings, "configured");
            Ok(Loaded {
                sdk,
                vars,
                settings,
            })
        })
        .await
}

/// Core's ports for `function`, from its environment: `TABLE_NAME` (DynamoDB),
/// `EVENT_BUS_NAME` (lifecycle events, for a function that publishes them; none when unset),
/// `SCENARIOS_DIR`, the pipeline variables, and the approval links from `IRAS_PUBLIC_URL` and
/// `APPROVAL_SIGNING_KEY`.
pub async fn deps_from_env(function: Function) -> Result<Deps, BootError> {
    let loaded = load().await?;
    tracing::info!(%function, ports = ?function.ports(), "building");
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&loaded.sdk),
        &loaded.settings.table_name,
    );
    build_deps(
        &loaded.settings,
        function.ports(),
        Arc::new(store),
        events_from_env(loaded, function)?,
    )
}

/// EventBridge on `EVENT_BUS_NAME` for a function that publishes; nothing otherwise.
fn events_from_env(
    loaded: &Loaded,
    function: Function,
) -> Result<Arc<dyn EventPublisher>, BootError> {
    match &loaded.settings.event_bus_name {
        Some(bus) if function.calls(Port::Events) => event_bridge(loaded, bus),
        _ => Ok(Arc::new(NoEvents)),
    }
}

#[cfg(feature = "events")]
fn event_bridge(loaded: &Loaded, bus: &str) -> Result<Arc<dyn EventPublisher>, BootError> {
    Ok(Arc::new(iras_aws::EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::new(&loaded.sdk),
        bus,
    )))
}

#[cfg(not(feature = "events"))]
fn event_bridge(_: &Loaded, _: &str) -> Result<Arc<dyn EventPublisher>, BootError> {
    Err(not_linked(Port::Events))
}

/// Step Functions `StartExecution` on `STATE_MACHINE_ARN` (required).
#[cfg(feature = "starter")]
pub async fn starter_from_env() -> Result<Arc<dyn PipelineStarter>, BootError> {
    let loaded = load().await?;
    let arn = loaded
        .settings
        .state_machine_arn
        .as_ref()
        .ok_or(BootError::Missing {
            var: iras_aws::env::STATE_MACHINE_ARN,
            why: "which state machine runs the pipeline?",
        })?;
    Ok(Arc::new(iras_aws::SfnStarter::new(
        aws_sdk_sfn::Client::new(&loaded.sdk),
        arn,
    )))
}

/// Completes waiting approval tasks (Step Functions `SendTaskSuccess`): the ingest function
/// ends a wait when the source recovers and `AUTO_CANCEL_ON_RECOVERY` is on.
#[cfg(feature = "callbacks")]
pub async fn callbacks_from_env() -> Result<Arc<dyn TaskCallbacks>, BootError> {
    sfn_callbacks(load().await?)
}

/// What the router needs on Lambda for `function` (api or approval-callback): a starter if it
/// starts pipelines (and `STATE_MACHINE_ARN` is set), task callbacks if it completes
/// approvals. A route needing one it lacks answers that this function does not do that.
#[cfg(feature = "http")]
pub async fn app_from_env(function: Function) -> Result<Arc<App>, BootError> {
    let loaded = load().await?;
    let deps = Arc::new(deps_from_env(function).await?);
    let starter = match &loaded.settings.state_machine_arn {
        Some(_) if function.calls(Port::Starter) => sfn_starter().await?,
        _ => Arc::new(Unable(function)),
    };
    let callbacks = match function.calls(Port::Callbacks) {
        true => sfn_callbacks(loaded)?,
        false => Arc::new(Unable(function)),
    };
    Ok(Arc::new(App {
        deps,
        starter,
        callbacks,
        http: HttpConfig {
            // SNS signing certificates and subscription confirmations over HTTPS.
            sns_transport: Some(Arc::new(
                iras_adapters::HttpsSnsTransport::new(EnvVars(&loaded.vars).timeout()?).map_err(
                    |e| {
                        BootError::Config(ConfigError {
                            name: "INTEGRATION_TIMEOUT_SECONDS".into(),
                            problem: e,
                        })
                    },
                )?,
            )),
            ..http_config(&loaded.vars)?
        },
        // Lambda itself is the runtime: if this code runs, it is up.
        runtime_health: Arc::new(|| Ok(())),
    }))
}

#[cfg(all(feature = "http", feature = "starter"))]
async fn sfn_starter() -> Result<Arc<dyn PipelineStarter>, BootError> {
    starter_from_env().await
}

#[cfg(all(feature = "http", not(feature = "starter")))]
async fn sfn_starter() -> Result<Arc<dyn PipelineStarter>, BootError> {
    Err(not_linked(Port::Starter))
}

#[cfg(feature = "callbacks")]
fn sfn_callbacks(loaded: &Loaded) -> Result<Arc<dyn TaskCallbacks>, BootError> {
    Ok(Arc::new(iras_aws::SfnCallbacks::new(
        aws_sdk_sfn::Client::new(&loaded.sdk),
    )))
}

#[cfg(all(feature = "http", not(feature = "callbacks")))]
fn sfn_callbacks(_: &Loaded) -> Result<Arc<dyn TaskCallbacks>, BootError> {
    Err(not_linked(Port::Callbacks))
}

/// Stands in for the starter or the callbacks of an HTTP function that does not call them:
/// the router's other function does (the template routes each path to one of them).
#[cfg(feature = "http")]
struct Unable(Function);

#[cfg(feature = "http")]
#[async_trait]
impl PipelineStarter for Unable {
    async fn start(&self, id: &IncidentId) -> Result<(), StartError> {
        Err(StartError(format!(
            "the {} function starts no pipelines ({} unset or not its job): {id} must be \
             started by the api or ingest function",
            self.0,
            iras_aws::env::STATE_MACHINE_ARN
        )))
    }
}

#[cfg(feature = "http")]
#[async_trait]
impl TaskCallbacks for Unable {
    async fn send_task_success(&self, _: &str, _: serde_json::Value) -> Result<(), CallbackError> {
        Err(self.completes_no_tasks())
    }
    async fn send_task_failure(&self, _: &str, _: &str, _: &str) -> Result<(), CallbackError> {
        Err(self.completes_no_tasks())
    }
}

#[cfg(feature = "http")]
impl Unable {
    fn completes_no_tasks(&self) -> CallbackError {
        CallbackError::Unavailable(format!(
            "the {} function completes no approvals: the approval-callback function does",
            self.0
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iras_core::analyst::OfflineAnalyst;
    use iras_core::handler::Stage;
    use iras_core::testing::MemoryStore;

    use iras_core::testing::vars;

    #[test]
    fn a_function_without_a_table_refuses_to_start_and_says_which_variable() {
        let e = Settings::from_vars(&vars(&[])).unwrap_err();
        assert!(e.to_string().contains("TABLE_NAME"), "{e}");
    }

    #[test]
    fn a_bad_threshold_from_the_template_names_the_variable() {
        let e = Settings::from_vars(&vars(&[
            ("TABLE_NAME", "incidents"),
            ("RCA_CONFIDENCE_THRESHOLD", "1.5"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("RCA_CONFIDENCE_THRESHOLD"), "{e}");
    }

    #[test]
    fn approval_links_need_both_the_url_and_the_key() {
        let base = [
            ("TABLE_NAME", "incidents"),
            (
                PUBLIC_URL,
                "https://abc.execute-api.us-east-1.amazonaws.com",
            ),
        ];
        let store = || Arc::new(MemoryStore::default()) as Arc<dyn IncidentStore>;
        let without_key = Settings::from_vars(&vars(&base)).unwrap();
        let deps = build_deps(&without_key, &Port::ALL, store(), Arc::new(NoEvents)).unwrap();
        assert!(deps.config.approval_links.is_none());

        let mut with_key = vars(&base);
        with_key.insert(secrets::APPROVAL_SIGNING_KEY.into(), "k".into());
        let settings = Settings::from_vars(&with_key).unwrap();
        let deps = build_deps(&settings, &Port::ALL, store(), Arc::new(NoEvents)).unwrap();
        let links = deps.config.approval_links.expect("links");
        assert_eq!(
            links.base_url,
            "https://abc.execute-api.us-east-1.amazonaws.com"
        );
        assert!(!format!("{settings:?}").contains("\"k\""));
    }

    #[test]
    fn the_defaults_are_the_safe_ones() {
        let settings = Settings::from_vars(&vars(&[("TABLE_NAME", "incidents")])).unwrap();
        let deps = build_deps(
            &settings,
            &Port::ALL,
            Arc::new(MemoryStore::default()),
            Arc::new(NoEvents),
        )
        .unwrap();
        assert_eq!(deps.executor.name(), "dry-run");
        assert_eq!(deps.analyst.name(), OfflineAnalyst::default().name());
        assert_eq!(deps.notifier.name(), "log");
        assert_eq!(deps.pager.name(), "log");
        assert!(deps.config.auto_approve_max_risk.is_none());
    }

    /// What the template passes a function (secrets already resolved from SSM) reaches the
    /// same adapters `iras serve` builds.
    #[test]
    fn configured_integrations_and_the_model_are_what_the_function_uses() {
        let settings = Settings::from_vars(&vars(&[
            ("TABLE_NAME", "incidents"),
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_ONCALL_CHANNEL_ID", "C0ONCALL"),
            (
                "PAGERDUTY_INTEGRATION_KEY",
                "R0UTING0KEY0000000000000000000000",
            ),
            ("PROMETHEUS_BASE_URL", "http://prometheus.internal:9090"),
            ("LLM_PROVIDER", "anthropic"),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ]))
        .unwrap();
        let deps = build_deps(
            &settings,
            &Port::ALL,
            Arc::new(MemoryStore::default()),
            Arc::new(NoEvents),
        )
        .unwrap();
        assert_eq!(deps.notifier.name(), "slack");
        assert_eq!(deps.pager.name(), "pagerduty");
        let metrics: Vec<String> = deps.evidence.metrics.iter().map(|m| m.name()).collect();
        assert_eq!(metrics, ["prometheus"]);
        assert_ne!(deps.analyst.name(), OfflineAnalyst::default().name());
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("xoxb-1") && !shown.contains("sk-ant-test"),
            "{shown}"
        );
    }

    /// A function gets the adapters of its own ports only, whatever else its build links or its
    /// environment configures: the same binary behaves as its stage expects.
    #[test]
    fn each_function_builds_only_the_ports_it_calls() {
        let settings = Settings::from_vars(&vars(&[
            ("TABLE_NAME", "incidents"),
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_ONCALL_CHANNEL_ID", "C0ONCALL"),
            (
                "PAGERDUTY_INTEGRATION_KEY",
                "R0UTING0KEY0000000000000000000000",
            ),
            ("PROMETHEUS_BASE_URL", "http://prometheus.internal:9090"),
            ("LLM_PROVIDER", "anthropic"),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ]))
        .unwrap();
        let deps = |function: Function| {
            let store = Arc::new(MemoryStore::default());
            build_deps(&settings, function.ports(), store, Arc::new(NoEvents)).unwrap()
        };
        let offline = OfflineAnalyst::default().name();

        let triage = deps(Function::Stage(Stage::Triage));
        assert_ne!(triage.analyst.name(), offline);
        assert_eq!(triage.notifier.name(), "log");
        assert_eq!(triage.pager.name(), "log");
        assert!(triage.evidence.is_empty());

        let escalate = deps(Function::Stage(Stage::Escalate));
        assert_eq!(escalate.analyst.name(), offline);
        assert_eq!(escalate.notifier.name(), "slack");
        assert_eq!(escalate.pager.name(), "pagerduty");
        assert!(escalate.evidence.is_empty());

        let gather = deps(Function::Stage(Stage::GatherContext));
        let metrics: Vec<String> = gather.evidence.metrics.iter().map(|m| m.name()).collect();
        assert_eq!(metrics, ["prometheus"]);
        assert_eq!(gather.notifier.name(), "log");
    }

    /// On AWS most users' logs, metrics and deployments are in CloudWatch, ECS and CodeDeploy.
    #[tokio::test]
    async fn cloudwatch_ecs_and_codedeploy_join_the_evidence_when_configured() {
        let sdk = iras_aws::emulator_config("http://127.0.0.1:9").await;
        let settings = Settings::from_vars(&vars(&[
            ("TABLE_NAME", "incidents"),
            ("CLOUDWATCH_LOG_GROUPS", "/ecs/{service}"),
            ("CLOUDWATCH_METRICS", "ecs"),
            ("ECS_CLUSTER", "shop"),
            ("CODEDEPLOY_APPLICATION", "shop"),
            ("LOKI_BASE_URL", "http://loki.internal:3100"),
        ]))
        .unwrap()
        .with_aws(sdk);
        let deps = build_deps(
            &settings,
            &Port::ALL,
            Arc::new(MemoryStore::default()),
            Arc::new(NoEvents),
        )
        .unwrap();
        let names = |v: Vec<String>| v.join(",");
        assert_eq!(
            names(deps.evidence.logs.iter().map(|s| s.name()).collect()),
            "loki,cloudwatch-logs"
        );
        assert_eq!(
            names(deps.evidence.metrics.iter().map(|s| s.name()).collect()),
            "cloudwatch-metrics"
        );
        assert_eq!(
            names(deps.evidence.deployments.iter().map(|s| s.name()).collect()),
            "ecs,codedeploy"
        );
    }

    #[test]
    fn a_misconfigured_integration_stops_the_cold_start_naming_the_variable() {
        let settings = Settings::from_vars(&vars(&[
            ("TABLE_NAME", "incidents"),
            ("PROMETHEUS_BASE_URL", "prometheus without a scheme"),
        ]))
        .unwrap();
        let e = build_deps(
            &settings,
            &Port::ALL,
            Arc::new(MemoryStore::default()),
            Arc::new(NoEvents),
        )
        .err()
        .expect("refused");
        assert!(e.to_string().contains("PROMETHEUS_BASE_URL"), "{e}");
    }
}

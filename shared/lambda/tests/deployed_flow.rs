//! The deployed shape, end to end: the real `statemachine.asl.json` executed by the Step
//! Functions API (moto server on 127.0.0.1), every Lambda task answered by the output of the
//! real `iras-lambda` handler for that function, the incident store being moto's DynamoDB, and
//! the decision arriving through the approval-callback function's HTTP router, whose
//! `SendTaskSuccess` resumes the execution. Three endings: approved → resolved, rejected →
//! escalated, nobody decides → the approval window closes → escalated.
//!
//! What it proves: the definition and the functions agree. Every payload the definition's
//! `Parameters` build (read back from the execution history's `TaskScheduled` events) is
//! exactly what the handler was given; every handler output satisfies its state's
//! `ResultSelector` and drives the `Choice` states down the expected path (checked state by
//! state); the approval task hands the request-approval function a task token that the
//! approval-callback function, reading it back from DynamoDB, completes; `TimeoutSecondsPath`
//! reads the window triage chose and the `States.Timeout` catch escalates.
//!
//! How, given what moto can do: moto (5.2.5, `lambda.use_docker: false`) runs no function
//! code. Its "lambda-simple" backend answers each `lambda:invoke` with the next result queued
//! on `/moto-api/static/lambda-simple/response` (one FIFO for every function; with the queue
//! empty it echoes the request), at once and without the function having to exist. So each
//! handler runs in-process *ahead* of its task, on the payload the definition is expected to
//! build (the shapes of `infra/events`), and its output is queued; afterwards the test checks
//! that moto scheduled exactly those payloads, in that order, so a wrong guess fails the test
//! rather than hiding a mismatch. The functions that follow a decision are run and queued by
//! the approval-callback's `TaskCallbacks` just before `SendTaskSuccess`: by then the decision
//! is stored (as Remediate requires), and moto resumes the execution on its own thread as soon
//! as the token is completed. (A rejection is also a `SendTaskSuccess`, with decision
//! `rejected`, which `IsApproved` routes to `ApprovalRejected`.)
//!
//! Not covered: a function *failing* (lambda-simple cannot return a `FunctionError`, so the
//! `Retry`/`Catch` of stage errors and `StageFailed` are out of reach), the Lambda runtime's
//! transport (handlers are called directly, as in `tests/functions.rs`), IAM, and the
//! `WidenInvestigation` loop (the sample incident is diagnosed on the first attempt; moto
//! does evaluate its `States.MathAdd`). Moto runs every construct these paths use:
//! `ResultSelector`, `ResultPath`, `$$.Task.Token`, `.waitForTaskToken`, `TimeoutSecondsPath`,
//! `Choice` with `BooleanEquals`/`NumericEquals`/`StringEquals`, `Catch` of `States.Timeout`,
//! and the `Wait` with `SecondsPath` before Verify.

mod support;

// iras-aws's moto harness: a private moto server per test, stopped on drop.
use iras_aws::testing as moto;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use http_body_util::BodyExt;
use iras_aws::{DynamoStore, SfnCallbacks, SfnStarter};
use iras_core::handler::Stage;
use iras_core::ports::{CallbackError, IncidentStore, PipelineStarter, TaskCallbacks};
use iras_core::stages::Deps;
use iras_core::testing::RecordingEvents;
use iras_core::{Decision, IncidentId, IncidentStatus, PostMortemOutcome};
use iras_http::App;
use iras_lambda::{build_deps, http_config, ingest, stage_handler, Port, Settings};
use serde_json::{json, Value};
use support::*;
use tower::ServiceExt;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// The ARN the template would substitute for the stage's `${...FunctionArn}`.
fn function_arn(stage: Stage) -> String {
    format!(
        "arn:aws:lambda:{REGION}:{ACCOUNT}:function:iras-{}",
        stage.function_name()
    )
}

/// The real definition, as the template deploys it.
fn deployed_definition() -> String {
    let mut text = read("statemachine.asl.json");
    for stage in Stage::ALL {
        text = text.replace(
            &format!("${{{}}}", stage.arn_placeholder()),
            &function_arn(stage),
        );
    }
    assert!(
        !text.contains("${"),
        "a substitution the template makes is missing here"
    );
    text
}

/// moto's lambda-simple backend answers the next `lambda:invoke`, whichever function it
/// names, with `output`.
fn queue_lambda_result(moto: SocketAddr, output: &Value) {
    let body = json!({"results": [output.to_string()], "region": REGION}).to_string();
    let (status, text) = moto::http(
        moto,
        "POST",
        "/moto-api/static/lambda-simple/response",
        &body,
    )
    .expect("queue a Lambda result on moto");
    assert!(
        (200..300).contains(&status),
        "moto lambda-simple: {status} {text}"
    );
}

/// The functions, run the way their Lambda runtime runs them, each on one payload.
struct Functions {
    deps: Deps,
    moto: SocketAddr,
    /// Every payload a handler was given, in order.
    given: Mutex<Vec<(Stage, Value)>>,
}

impl Functions {
    async fn invoke(&self, stage: Stage, payload: Value) -> Value {
        self.given.lock().unwrap().push((stage, payload.clone()));
        stage_handler(&self.deps, stage, lambda_event(payload))
            .await
            .unwrap_or_else(|d| {
                panic!(
                    "{}: {} {}",
                    stage.state_name(),
                    d.error_type,
                    d.error_message
                )
            })
    }

    /// Runs the handler now and queues its output as moto's answer to the next invoke.
    async fn invoke_ahead(&self, stage: Stage, payload: Value) -> Value {
        let out = self.invoke(stage, payload).await;
        queue_lambda_result(self.moto, &out);
        out
    }

    fn given(&self) -> Vec<(Stage, Value)> {
        self.given.lock().unwrap().clone()
    }
}

/// The approval-callback function's `SendTaskSuccess`, preceded by the functions the
/// definition runs after the decision (see the module comment for why they run first).
struct ResumeAfterRunning {
    functions: Arc<Functions>,
    sfn: SfnCallbacks,
    id: IncidentId,
}

#[async_trait]
impl TaskCallbacks for ResumeAfterRunning {
    async fn send_task_success(&self, token: &str, output: Value) -> Result<(), CallbackError> {
        let id = self.id.as_str();
        if output["decision"] == json!("approved") {
            // IsApproved → Remediate → (a Wait of 0 s: dry-run changed nothing) → Verify.
            self.functions
                .invoke_ahead(Stage::Remediate, sample("remediate", id))
                .await;
            self.functions
                .invoke_ahead(Stage::Verify, sample("verify", id))
                .await;
        } else {
            // IsApproved → ApprovalRejected → Escalate with its `Result`.
            let escalation = json!({"incident_id": id, "escalation": {"reason": "rejected"}});
            self.functions
                .invoke_ahead(Stage::Escalate, escalation)
                .await;
        }
        self.functions
            .invoke_ahead(Stage::PostMortem, sample("postmortem", id))
            .await;
        self.sfn.send_task_success(token, output).await
    }

    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), CallbackError> {
        self.sfn.send_task_failure(token, error, cause).await
    }
}

/// moto with the incidents table and the deployed state machine, and the functions' ports
/// over them.
struct Deployed {
    moto: moto::Moto,
    store: Arc<DynamoStore>,
    functions: Arc<Functions>,
    vars: HashMap<String, String>,
    machine_arn: String,
}

impl Deployed {
    /// `approval_window`: the override the demo's `--approval-timeout` sets, when a test must
    /// see the window close.
    async fn start(approval_window: Option<u64>) -> Option<Deployed> {
        let moto = moto::Moto::start().await?;
        moto.run_state_machines();
        let addr: SocketAddr = moto
            .config
            .endpoint_url()
            .and_then(|u| u.strip_prefix("http://"))
            .and_then(|a| a.parse().ok())
            .expect("moto's endpoint is http://127.0.0.1:port");

        // The environment the template gives the functions (TABLE_NAME, keys, scenarios).
        let vars = world().vars;
        let mut settings = Settings::from_vars(&vars).expect("settings");
        settings.pipeline.approval_timeout_override_seconds = approval_window;
        DynamoStore::create_table(&moto.dynamodb(), &settings.table_name)
            .await
            .expect("create the incidents table");
        let store = Arc::new(DynamoStore::new(moto.dynamodb(), &settings.table_name));
        // One set of ports for every function: this test is about the definition, not the builds.
        let deps = build_deps(
            &settings,
            &Port::ALL,
            store.clone(),
            Arc::new(RecordingEvents::default()),
        )
        .expect("deps");

        let machine_arn = moto
            .sfn()
            .create_state_machine()
            .name("iras-pipeline")
            .definition(deployed_definition())
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/iras-pipeline"))
            .send()
            .await
            .expect("moto accepts the real definition")
            .state_machine_arn;
        Some(Deployed {
            moto,
            store,
            functions: Arc::new(Functions {
                deps,
                moto: addr,
                given: Mutex::new(vec![]),
            }),
            vars,
            machine_arn,
        })
    }

    fn execution_arn(&self, id: &IncidentId) -> String {
        format!(
            "{}:{id}",
            self.machine_arn.replace(":stateMachine:", ":execution:")
        )
    }

    /// The ingest function on a sample EventBridge event (`infra/events/<event>.json`); the
    /// pipeline is not started yet (the tasks' answers must be queued first).
    async fn ingest(&self, event: &str) -> IncidentId {
        let starter = RecordingStarter::default();
        let event = sample(event, SAMPLE_ID);
        let callbacks = SfnCallbacks::new(self.moto.sfn());
        let out = ingest::ingest_event(&self.functions.deps, &starter, &callbacks, event)
            .await
            .expect("ingest");
        let id = out.incident_id.clone().expect("an incident opened");
        assert_eq!(*starter.started.lock().unwrap(), vec![id.clone()]);
        id
    }

    /// Triage to Plan, ahead of the execution, then the execution itself, started by the
    /// starter the ingest and api functions use. Returns triage's output.
    async fn start_pipeline(&self, id: &IncidentId) -> Value {
        let f = &self.functions;
        let triage = f
            .invoke_ahead(Stage::Triage, sample("triage", id.as_str()))
            .await;
        // BeginInvestigation sets attempt 1.
        f.invoke_ahead(Stage::GatherContext, sample("gather-context", id.as_str()))
            .await;
        let rca = f.invoke_ahead(Stage::Rca, sample("rca", id.as_str())).await;
        assert_eq!(rca["confident"], json!(true), "IsConfident → Plan: {rca}");
        let plan = f
            .invoke_ahead(Stage::Plan, sample("plan", id.as_str()))
            .await;
        assert_eq!(
            plan["needs_approval"],
            json!(true),
            "NeedsApproval → RequestApproval: {plan}"
        );
        SfnStarter::new(self.moto.sfn(), &self.machine_arn)
            .start(id)
            .await
            .expect("start the execution");
        triage
    }

    async fn history(&self, id: &IncidentId) -> Vec<HistoryEvent> {
        let mut events = vec![];
        let mut next = None;
        loop {
            let page = self
                .moto
                .sfn()
                .get_execution_history()
                .execution_arn(self.execution_arn(id))
                .set_next_token(next)
                .send()
                .await
                .expect("execution history");
            events.extend(page.events().iter().cloned());
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                return events;
            }
        }
    }

    /// Waits for the approval task to have invoked the request-approval function, and returns
    /// what it scheduled: the payload (with the task token) and its timeout.
    async fn approval_task(&self, id: &IncidentId) -> (Value, Option<i64>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let history = self.history(id).await;
            // TaskScheduled comes before the invoke, TaskSubmitted after it. Waiting for the
            // latter matters: the invoke takes the next queued result, so anything queued
            // before it would be handed to the wrong task.
            let submitted = history
                .iter()
                .filter_map(HistoryEvent::task_submitted_event_details)
                .any(|d| d.resource() == "invoke.waitForTaskToken");
            let scheduled = history
                .iter()
                .filter_map(HistoryEvent::task_scheduled_event_details)
                .find(|d| d.resource() == "invoke.waitForTaskToken");
            if let (true, Some(details)) = (submitted, scheduled) {
                let parameters: Value = serde_json::from_str(details.parameters()).unwrap();
                assert_eq!(
                    parameters["FunctionName"],
                    json!(function_arn(Stage::RequestApproval))
                );
                return (parameters["Payload"].clone(), details.timeout_in_seconds());
            }
            let status = self.status(id).await;
            assert_eq!(
                status,
                ExecutionStatus::Running,
                "the execution ended before asking for approval: {:#?}",
                states_entered(&history)
            );
            assert!(
                Instant::now() < deadline,
                "the approval task was never submitted: {:#?}",
                states_entered(&history)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn status(&self, id: &IncidentId) -> ExecutionStatus {
        self.moto
            .sfn()
            .describe_execution()
            .execution_arn(self.execution_arn(id))
            .send()
            .await
            .unwrap()
            .status()
            .clone()
    }

    /// The execution's status and output once it has ended.
    async fn finished(&self, id: &IncidentId) -> (ExecutionStatus, Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self
                .moto
                .sfn()
                .describe_execution()
                .execution_arn(self.execution_arn(id))
                .send()
                .await
                .unwrap();
            if out.status() != &ExecutionStatus::Running {
                let output = out
                    .output()
                    .map(|o| serde_json::from_str(o).unwrap())
                    .unwrap_or(Value::Null);
                return (out.status().clone(), output);
            }
            assert!(
                Instant::now() < deadline,
                "the execution never finished: {:#?}",
                states_entered(&self.history(id).await)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An API Gateway HTTP API event through the router the approval-callback function serves
    /// (`run_http`), its callbacks completing the task on moto.
    async fn approval_callback(&self, id: &IncidentId, apigw_event: &str) -> (u16, String) {
        let app = Arc::new(App {
            deps: Arc::new(self.functions.deps.clone()),
            // approval-callback has no STATE_MACHINE_ARN: it never starts pipelines.
            starter: Arc::new(NeverStarts),
            callbacks: Arc::new(ResumeAfterRunning {
                functions: self.functions.clone(),
                sfn: SfnCallbacks::new(self.moto.sfn()),
                id: id.clone(),
            }),
            http: http_config(&self.vars).expect("http config"),
            runtime_health: Arc::new(|| Ok(())),
        });
        let request = lambda_http::request::from_str(apigw_event).expect("an API Gateway event");
        let response = iras_http::router(app)
            .oneshot(iras_lambda::with_gateway_caller(request))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// What moto scheduled for each Lambda task, in order: the function and its `Payload`.
    async fn scheduled(&self, id: &IncidentId) -> Vec<(Stage, Value)> {
        self.history(id)
            .await
            .iter()
            .filter_map(HistoryEvent::task_scheduled_event_details)
            .map(|d| {
                let parameters: Value = serde_json::from_str(d.parameters()).unwrap();
                let arn = parameters["FunctionName"].as_str().unwrap_or_default();
                let stage = Stage::ALL
                    .into_iter()
                    .find(|s| function_arn(*s) == arn)
                    .unwrap_or_else(|| panic!("a task invoked an unknown function: {parameters}"));
                (stage, parameters["Payload"].clone())
            })
            .collect()
    }
}

struct NeverStarts;

#[async_trait]
impl PipelineStarter for NeverStarts {
    async fn start(&self, id: &IncidentId) -> Result<(), iras_core::StartError> {
        panic!("the approval callback started a pipeline for {id}")
    }
}

/// The names of the states the execution entered, in order.
fn states_entered(history: &[HistoryEvent]) -> Vec<String> {
    history
        .iter()
        .filter_map(HistoryEvent::state_entered_event_details)
        .map(|d| d.name().to_string())
        .collect()
}

/// Up to the approval wait, both tests do the same: ingest, run the pipeline's first stages
/// on moto, and let the request-approval function store the token moto handed it.
async fn awaiting_approval(d: &Deployed, event: &str) -> IncidentId {
    let id = d.ingest(event).await;
    let triage = d.start_pipeline(&id).await;

    let (payload, timeout) = d.approval_task(&id).await;
    // TimeoutSecondsPath reads the window triage chose.
    assert_eq!(
        timeout,
        triage["approval_timeout_seconds"].as_i64(),
        "{triage}"
    );
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&payload),
        keys(&sample("request-approval", id.as_str())),
        "infra/events/request-approval.json has the payload's shape: {payload}"
    );
    // Exactly what moto scheduled, token included; the handler stores the token in DynamoDB.
    d.functions.invoke(Stage::RequestApproval, payload).await;
    let waiting = d.store.get_incident(&id).await.unwrap().unwrap();
    assert_eq!(waiting.status, IncidentStatus::AwaitingApproval);
    id
}

/// The handlers' inputs are the definition's: what moto scheduled for each task is, in order,
/// exactly what each function was given.
async fn assert_payloads_agree(d: &Deployed, id: &IncidentId) {
    let scheduled = d.scheduled(id).await;
    let given = d.functions.given();
    assert_eq!(
        scheduled.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        given.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "the functions the definition invoked"
    );
    for ((stage, on_moto), (_, handed)) in scheduled.iter().zip(&given) {
        assert_eq!(
            on_moto,
            handed,
            "{}: the definition's Payload is not what the function was given",
            stage.state_name()
        );
    }
}

#[tokio::test]
async fn an_approved_incident_runs_the_real_definition_on_step_functions_to_resolved() {
    let Some(d) = Deployed::start(None).await else {
        return;
    };
    // A CloudWatch alarm going into ALARM, as the default bus delivers it to ingest.
    let id = awaiting_approval(&d, "ingest").await;

    // The on-call engineer approves with the sample request the approval-callback function
    // serves (signed by alice's IAM user, API Gateway's IAM authorizer checked it).
    let request = sample_text("approval-callback", id.as_str());
    let (status, body) = d.approval_callback(&id, &request).await;
    // 200 means moto accepted SendTaskSuccess with the token read back from DynamoDB.
    assert_eq!(status, 200, "{body}");

    let (status, output) = d.finished(&id).await;
    let history = d.history(&id).await;
    assert_eq!(
        status,
        ExecutionStatus::Succeeded,
        "{output:#}\n{:#?}",
        states_entered(&history)
    );
    assert_eq!(
        states_entered(&history),
        [
            "Triage",
            "BeginInvestigation",
            "GatherContext",
            "Rca",
            "IsConfident",
            "Plan",
            "NeedsApproval",
            "RequestApproval",
            "IsApproved",
            "Remediate",
            "IsRemediated",
            "BeginVerification",
            "WaitForRecovery",
            "Verify",
            "IsRecovered",
            "PostMortem",
            "Outcome",
            "Resolved"
        ],
        "the path the functions' outputs drive the definition down"
    );
    // IsApproved read the decision the callback sent.
    assert_eq!(output["approval"]["decision"], json!("approved"));
    assert_eq!(output["approval"]["approver"], json!("alice"));
    assert_payloads_agree(&d, &id).await;

    let incident = d.store.get_incident(&id).await.unwrap().unwrap();
    assert_eq!(incident.status, IncidentStatus::Resolved);
    let decision = incident.approval.and_then(|a| a.decision).expect("decided");
    assert_eq!(
        (
            decision.decision,
            decision.approver.as_str(),
            decision.channel.as_str()
        ),
        (Decision::Approved, "alice", "api")
    );
    let postmortem = d.store.postmortem(&id).await.unwrap().expect("post-mortem");
    assert_eq!(postmortem.outcome, PostMortemOutcome::Resolved);
    assert!(postmortem.steps_applied > 0, "{postmortem:?}");
}

#[tokio::test]
async fn a_rejected_plan_is_escalated_by_the_real_definition_and_still_gets_a_postmortem() {
    let Some(d) = Deployed::start(None).await else {
        return;
    };
    let id = awaiting_approval(&d, "ingest-iras-alert").await;

    let request = sample_text("approval-callback", id.as_str())
        .replace("/approve", "/reject")
        .replace("rollback looks right, go", "not during the sale");
    let (status, body) = d.approval_callback(&id, &request).await;
    assert_eq!(status, 200, "{body}");

    let (status, output) = d.finished(&id).await;
    let history = d.history(&id).await;
    assert_eq!(
        status,
        ExecutionStatus::Succeeded,
        "{output:#}\n{:#?}",
        states_entered(&history)
    );
    let entered = states_entered(&history);
    assert_eq!(
        entered[entered.len() - 6..],
        [
            "IsApproved",
            "ApprovalRejected",
            "Escalate",
            "PostMortem",
            "Outcome",
            "Escalated"
        ],
        "{entered:#?}"
    );
    assert!(!entered.iter().any(|s| s == "Remediate"), "{entered:#?}");
    assert_eq!(
        output["escalated"]["reason"],
        json!("rejected"),
        "{output:#}"
    );
    assert_payloads_agree(&d, &id).await;

    let incident = d.store.get_incident(&id).await.unwrap().unwrap();
    assert_eq!(incident.status, IncidentStatus::Escalated);
    assert_eq!(
        incident.escalation.map(|e| e.reason.as_str()),
        Some("rejected")
    );
    assert!(d.store.steps(&id).await.unwrap().is_empty(), "nothing ran");
    let postmortem = d.store.postmortem(&id).await.unwrap().expect("post-mortem");
    assert_eq!(postmortem.outcome, PostMortemOutcome::Escalated);
}

#[tokio::test]
async fn an_approval_nobody_gives_times_out_in_the_real_definition_and_escalates() {
    // A window of a few seconds (the real ones are minutes): long enough to queue what follows
    // before it closes, short enough to wait for.
    let Some(d) = Deployed::start(Some(4)).await else {
        return;
    };
    let id = awaiting_approval(&d, "ingest-iras-alert").await;

    // Nobody decides. When the window closes the definition catches States.Timeout and runs
    // ApprovalTimedOut → Escalate → PostMortem: their answers are queued ahead of it.
    let escalation =
        json!({"incident_id": id.as_str(), "escalation": {"reason": "approval_timeout"}});
    d.functions.invoke_ahead(Stage::Escalate, escalation).await;
    d.functions
        .invoke_ahead(Stage::PostMortem, sample("postmortem", id.as_str()))
        .await;

    let (status, output) = d.finished(&id).await;
    let history = d.history(&id).await;
    let entered = states_entered(&history);
    assert_eq!(
        status,
        ExecutionStatus::Succeeded,
        "{output:#}\n{entered:#?}"
    );
    assert_eq!(
        entered[entered.len() - 6..],
        [
            "RequestApproval",
            "ApprovalTimedOut",
            "Escalate",
            "PostMortem",
            "Outcome",
            "Escalated"
        ],
        "{entered:#?}"
    );
    assert_eq!(
        output["error"]["Error"],
        json!("States.Timeout"),
        "{output:#}"
    );
    assert_eq!(output["escalated"]["reason"], json!("approval_timeout"));
    assert_payloads_agree(&d, &id).await;

    let incident = d.store.get_incident(&id).await.unwrap().unwrap();
    assert_eq!(incident.status, IncidentStatus::Escalated);
    assert_eq!(
        incident.escalation.map(|e| e.reason.as_str()),
        Some("approval_timeout")
    );
    let postmortem = d.store.postmortem(&id).await.unwrap().expect("post-mortem");
    assert_eq!(postmortem.outcome, PostMortemOutcome::Escalated);
}

//! Shared helpers for the end-to-end tests: a local pipeline on a temporary store, executing
//! the repository's own `statemachine.asl.json`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use iras_core::stages::DecisionRequest;
use iras_core::testing::{FailingExecutor, RecordingPager};
use iras_core::*;
use iras_local::local::{LocalOptions, LocalPipeline};
use iras_scenarios::{Scenario, DEMO_SCENARIO};
use tempfile::TempDir;

pub use sfn_local::{ExecutionStatus, RuntimeOptions};

/// The payment-service bad deploy, replayed as if it fired now.
pub fn demo_scenario() -> Arc<Scenario> {
    let s = Scenario::parse(DEMO_SCENARIO, "demo").expect("demo scenario parses");
    Arc::new(s.rebased(chrono::Utc::now()))
}

pub fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

pub struct Harness {
    pub dir: TempDir,
    pub pipeline: LocalPipeline,
    pub pager: Arc<RecordingPager>,
    pub executor: Arc<FailingExecutor>,
    pub scenario: Arc<Scenario>,
}

/// Options with test doubles for the pager and executor and fast retries; `customize` may
/// change anything before the pipeline opens.
pub async fn harness(customize: impl FnOnce(&mut LocalOptions)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let pager = Arc::new(RecordingPager::default());
    let executor = Arc::new(FailingExecutor::default());
    let scenario = demo_scenario();
    let mut opts = LocalOptions::new(dir.path().to_path_buf());
    opts.scenario = Some(scenario.clone());
    opts.pager = Some(pager.clone());
    opts.executor = Some(executor.clone());
    opts.runtime = fast_retries();
    customize(&mut opts);
    // The customiser may have swapped the executor or pager: keep handles to what is in use.
    let pipeline = LocalPipeline::open(opts).await.expect("pipeline opens");
    Harness {
        dir,
        pipeline,
        pager,
        executor,
        scenario,
    }
}

/// Retry intervals scaled down so a stage that keeps failing is escalated in well under a
/// second, while the definition's Retry fields still decide how often and in what order.
pub fn fast_retries() -> RuntimeOptions {
    RuntimeOptions {
        retry_interval_scale: 0.001,
        ..RuntimeOptions::default()
    }
}

pub const WAIT: Duration = Duration::from_secs(60);

impl Harness {
    pub async fn open_incident(&self) -> IncidentId {
        self.pipeline
            .ingest(self.scenario.alert.clone())
            .await
            .expect("ingest")
            .incident_id
            .expect("an incident")
    }

    pub async fn wait_awaiting_approval(&self, id: &IncidentId) -> Incident {
        let inc = self
            .pipeline
            .wait_for_status(id, IncidentStatus::AwaitingApproval, WAIT)
            .await
            .expect("reaches approval");
        assert_eq!(
            inc.status,
            IncidentStatus::AwaitingApproval,
            "timeline: {:#?}",
            inc.timeline
        );
        inc
    }

    pub async fn decide(&self, id: &IncidentId, decision: Decision) -> Incident {
        self.pipeline
            .decide(
                id,
                DecisionRequest {
                    approval_id: None,
                    decision,
                    approver: "alice@example.com".into(),
                    channel: "cli".into(),
                    comment: Some("looks right".into()),
                    identity: iras_core::Identity::Unstated,
                },
            )
            .await
            .expect("decision accepted")
    }

    /// Waits for the execution to end and returns the final incident.
    pub async fn finish(&self, id: &IncidentId) -> Incident {
        let exec = self
            .pipeline
            .wait_for_execution(id, WAIT)
            .await
            .expect("execution ends");
        assert_ne!(exec.status, ExecutionStatus::Running);
        self.pipeline.incident(id).await.unwrap().unwrap()
    }

    pub async fn postmortem(&self, id: &IncidentId) -> Option<PostMortem> {
        self.pipeline.store.postmortem(id).await.unwrap()
    }

    pub async fn steps(&self, id: &IncidentId) -> Vec<StepRecord> {
        self.pipeline.store.steps(id).await.unwrap()
    }

    pub fn pages(&self) -> Vec<(IncidentId, EscalationReason)> {
        self.pager.pages.lock().unwrap().clone()
    }
}

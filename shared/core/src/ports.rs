//! Ports: what stage logic needs from the world. Each has a real adapter elsewhere and an
//! in-memory or scenario-backed one in this crate.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::audit::AuditEntry;
use crate::domain::*;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StoreError {
    #[error("incident {0} already exists")]
    AlreadyExists(String),
    /// An open incident already has this alert's fingerprint: attach to it instead.
    #[error("an open incident ({0}) already has this fingerprint")]
    Duplicate(IncidentId),
    #[error("incident {0} not found")]
    NotFound(String),
    /// Someone else wrote first: re-read and retry.
    #[error("concurrent update of {0}: version changed")]
    Conflict(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The record is over [`MAX_RECORD_BYTES`]: refused by every store alike (DynamoDB could
    /// not hold it), and never worth retrying.
    #[error("record of incident {id} is {bytes} bytes, over the {max}-byte bound")]
    TooLarge {
        id: String,
        bytes: usize,
        max: usize,
    },
}

/// The most an incident's record may weigh in any store: one DynamoDB item (400 KB, keys and
/// attribute names included) with room for them. Reads of the largest record are what the
/// server's memory bound is measured on (`cargo bench -p iras-local --bench read_memory`).
pub const MAX_RECORD_BYTES: usize = 380 * 1024;

/// A page of `list_incidents` stops once its records weigh this much (and always holds at
/// least one): 200 records of the largest size would be 76 MB per request otherwise.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// [`StoreError::TooLarge`] when `body` (a record as stored) is over [`MAX_RECORD_BYTES`].
pub fn check_record_size(id: &IncidentId, body: &str) -> Result<(), StoreError> {
    check_record_len(id, body.len())
}

/// [`check_record_size`] for a body measured without being kept.
pub fn check_record_len(id: &IncidentId, bytes: usize) -> Result<(), StoreError> {
    if bytes > MAX_RECORD_BYTES {
        return Err(StoreError::TooLarge {
            id: id.to_string(),
            bytes,
            max: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentQuery {
    pub status: Option<IncidentStatus>,
    pub severity: Option<Severity>,
    pub limit: usize,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentPage {
    /// Newest first.
    pub incidents: Vec<Incident>,
    pub next: Option<String>,
    /// Records on this page that could not be decoded: reported, never allowed to break the
    /// listing of the others.
    pub unreadable: Vec<UnreadableIncident>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnreadableIncident {
    pub incident_id: IncidentId,
    pub error: String,
}

/// The newest incident that has (or had) a fingerprint, as the store's index knows it: no
/// record body is decoded to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FingerprintMatch {
    pub incident_id: IncidentId,
    pub status: IncidentStatus,
    pub closed_at: Option<Timestamp>,
}

/// Repeats whose body is kept as a sample; past this, only the counters move.
pub const MAX_ALERT_SAMPLES: u64 = 10;

#[async_trait]
pub trait IncidentStore: Send + Sync {
    /// Fails with `AlreadyExists` if the id is taken, and with `Duplicate` if an incident that
    /// is not yet resolved or escalated has the same fingerprint. The fingerprint is released
    /// when the incident reaches a final status.
    async fn create_incident(&self, incident: &Incident) -> Result<(), StoreError>;
    async fn get_incident(&self, id: &IncidentId) -> Result<Option<Incident>, StoreError>;
    /// Writes `incident` if the stored version still equals `incident.version`; returns the
    /// record as stored (version + 1). `Conflict` otherwise.
    async fn update_incident(&self, incident: &Incident) -> Result<Incident, StoreError>;
    async fn list_incidents(&self, query: &IncidentQuery) -> Result<IncidentPage, StoreError>;
    /// The incident whose approval request carries this approval id.
    async fn find_by_approval_id(&self, approval_id: &str) -> Result<Option<Incident>, StoreError>;

    /// The newest incident created with this fingerprint, open or closed.
    async fn latest_with_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<FingerprintMatch>, StoreError>;
    /// Counts one more delivery of the incident's alert beside its record, which it never
    /// rewrites (nor changes the record's version): a storm costs a counter update per alert,
    /// not a rewrite of a large record. Keeps `repeat.sample` while fewer than
    /// [`MAX_ALERT_SAMPLES`] are kept. Returns the counters as they now are. `get_incident`
    /// returns them in `Incident::repeats`; `list_incidents` returns the counters without the
    /// samples.
    async fn record_repeat(
        &self,
        id: &IncidentId,
        repeat: &AlertRepeat,
    ) -> Result<AlertRepeats, StoreError>;

    /// Upsert by (incident, attempt): a retried gather or rca overwrites its own attempt.
    /// Taken by value: the evidence is the largest thing a stage holds (thousands of log
    /// lines), and an in-process store keeps it without a copy.
    async fn put_attempt(
        &self,
        id: &IncidentId,
        attempt: InvestigationAttempt,
    ) -> Result<(), StoreError>;
    /// Ascending by attempt.
    async fn attempts(&self, id: &IncidentId) -> Result<Vec<InvestigationAttempt>, StoreError>;

    /// Records a step's start only if nothing is recorded yet for (incident, phase, step):
    /// `Ok(false)` means it was already there and the caller must not run it again.
    async fn claim_step(&self, id: &IncidentId, record: &StepRecord) -> Result<bool, StoreError>;
    /// Overwrites the record of (incident, phase, step) with its outcome.
    async fn finish_step(&self, id: &IncidentId, record: &StepRecord) -> Result<(), StoreError>;
    /// In the order they were claimed.
    async fn steps(&self, id: &IncidentId) -> Result<Vec<StepRecord>, StoreError>;

    async fn put_postmortem(&self, postmortem: &PostMortem) -> Result<(), StoreError>;
    async fn postmortem(&self, id: &IncidentId) -> Result<Option<PostMortem>, StoreError>;

    /// Records a value that may be used once (a signed webhook request's signature) until
    /// `until`: true the first time, false while an earlier claim is still live. Durable, so a
    /// captured request replayed after a restart is still refused; claims past `until` may be
    /// forgotten (the freshness window refuses the request by then anyway).
    async fn claim_once(
        &self,
        key: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Forgets a claim: the request failed on our side, and the sender may retry it as it is.
    async fn release_once(&self, key: &str) -> Result<(), StoreError>;

    /// Writes `entry` at `entry.seq` of the incident's audit log only if no entry holds that
    /// seq yet; `Conflict` otherwise (another writer appended first: re-read the tail and
    /// chain onto it, as [`crate::audit::append`] does). Entries are never overwritten.
    async fn append_audit(&self, id: &IncidentId, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The incident's audit log ascending by seq, exactly as stored: checking it is
    /// [`crate::audit::verify`]'s job, not the store's.
    async fn audit(&self, id: &IncidentId) -> Result<Vec<AuditEntry>, StoreError>;
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AnalystError {
    #[error("analyst unavailable: {0}")]
    Unavailable(String),
    #[error("analyst returned invalid output: {0}")]
    InvalidOutput(String),
    #[error("not enough evidence: {0}")]
    NoEvidence(String),
}

/// What the post-mortem's prose needs; timings and counts are added by the stage from records.
#[derive(Debug, Clone, PartialEq)]
pub struct PostMortemNarrative {
    pub summary: String,
    pub root_cause: String,
    pub resolution: String,
    pub action_items: Vec<ActionItem>,
    pub lessons: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PostMortemFacts<'a> {
    pub incident: &'a Incident,
    pub steps: &'a [StepRecord],
    pub attempts: &'a [InvestigationAttempt],
}

/// An analyst reasons over evidence. Its output is advice: stage code enforces every rule.
#[async_trait]
pub trait Analyst: Send + Sync {
    fn name(&self) -> String;
    async fn triage(&self, alert: &Alert) -> Result<TriageResult, AnalystError>;
    async fn rca(
        &self,
        alert: &Alert,
        triage: &TriageResult,
        context: &ContextBundle,
    ) -> Result<RootCauseHypothesis, AnalystError>;
    async fn plan(
        &self,
        alert: &Alert,
        hypothesis: &RootCauseHypothesis,
        context: &ContextBundle,
    ) -> Result<RemediationPlan, AnalystError>;
    async fn postmortem(
        &self,
        facts: &PostMortemFacts<'_>,
    ) -> Result<PostMortemNarrative, AnalystError>;
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SourceError {
    #[error("{0}")]
    Unavailable(String),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("bad response: {0}")]
    BadResponse(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceQuery {
    /// Services to look at; empty means "whatever the source has".
    pub services: Vec<String>,
    pub window: EvidenceWindow,
    /// The incident's alert: what the evidence is for (a scenario library picks by it).
    pub alert: Alert,
    /// Set by Verify: when the remediation was applied. Real backends need only the window;
    /// a recorded incident (a scenario) replays what its series did after the fix from here.
    pub since_change: Option<Timestamp>,
}

#[async_trait]
pub trait LogSource: Send + Sync {
    fn name(&self) -> String;
    async fn logs(&self, query: &EvidenceQuery) -> Result<Vec<LogLine>, SourceError>;
}

#[async_trait]
pub trait MetricSource: Send + Sync {
    fn name(&self) -> String;
    async fn metrics(&self, query: &EvidenceQuery) -> Result<Vec<MetricSeries>, SourceError>;
}

#[async_trait]
pub trait DeploymentSource: Send + Sync {
    fn name(&self) -> String;
    async fn deployments(&self, query: &EvidenceQuery) -> Result<Vec<Deployment>, SourceError>;
}

#[async_trait]
pub trait TopologySource: Send + Sync {
    fn name(&self) -> String;
    async fn topology(&self, alert: &Alert) -> Result<Vec<ServiceEdge>, SourceError>;
}

/// Where GatherContext reads evidence from: every configured source of each kind, asked in
/// turn. The HTTP integrations, the AWS evidence and the scenario stand-ins all produce this.
#[derive(Clone, Default)]
pub struct EvidenceSources {
    pub logs: Vec<Arc<dyn LogSource>>,
    pub metrics: Vec<Arc<dyn MetricSource>>,
    pub deployments: Vec<Arc<dyn DeploymentSource>>,
    pub topology: Vec<Arc<dyn TopologySource>>,
}

impl EvidenceSources {
    /// One source that serves every kind (a scenario, a library of them).
    pub fn all_from<S>(source: Arc<S>) -> Self
    where
        S: LogSource + MetricSource + DeploymentSource + TopologySource + 'static,
    {
        EvidenceSources {
            logs: vec![source.clone()],
            metrics: vec![source.clone()],
            deployments: vec![source.clone()],
            topology: vec![source],
        }
    }

    pub fn extend(&mut self, other: EvidenceSources) {
        self.logs.extend(other.logs);
        self.metrics.extend(other.metrics);
        self.deployments.extend(other.deployments);
        self.topology.extend(other.topology);
    }

    /// `stand_in` (scenarios) for each kind no real backend provides; its topology always,
    /// since no backend knows the service graph.
    pub fn or_stand_in<S>(mut self, stand_in: Arc<S>) -> Self
    where
        S: LogSource + MetricSource + DeploymentSource + TopologySource + 'static,
    {
        if self.logs.is_empty() {
            self.logs.push(stand_in.clone());
        }
        if self.metrics.is_empty() {
            self.metrics.push(stand_in.clone());
        }
        if self.deployments.is_empty() {
            self.deployments.push(stand_in.clone());
        }
        self.topology.push(stand_in);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
            && self.metrics.is_empty()
            && self.deployments.is_empty()
            && self.topology.is_empty()
    }
}

impl std::fmt::Debug for EvidenceSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn names<T: ?Sized>(v: &[Arc<T>], name: impl Fn(&T) -> String) -> String {
            v.iter().map(|s| name(s)).collect::<Vec<_>>().join(", ")
        }
        f.debug_struct("EvidenceSources")
            .field("logs", &names(&self.logs, |s| s.name()))
            .field("metrics", &names(&self.metrics, |s| s.name()))
            .field("deployments", &names(&self.deployments, |s| s.name()))
            .field("topology", &names(&self.topology, |s| s.name()))
            .finish()
    }
}

/// What an integration crate builds from the environment: evidence sources and channels
/// (unset ones are `None`, so the caller keeps its fallback), with one note per integration
/// saying what is configured and what falls back.
#[derive(Default)]
pub struct Integrations {
    pub evidence: EvidenceSources,
    pub notifier: Option<Arc<dyn Notifier>>,
    pub pager: Option<Arc<dyn Pager>>,
    /// Slack's Web API for the interactivity endpoint, when a bot token is configured.
    pub slack: Option<Arc<dyn SlackWorkspace>>,
    pub notes: Vec<String>,
}

impl Integrations {
    /// Adds `other`'s sources and notes; its notifier and pager replace these only if set.
    pub fn merge(&mut self, other: Integrations) {
        self.evidence.extend(other.evidence);
        if other.notifier.is_some() {
            self.notifier = other.notifier;
        }
        if other.pager.is_some() {
            self.pager = other.pager;
        }
        if other.slack.is_some() {
            self.slack = other.slack;
        }
        self.notes.extend(other.notes);
    }
}

impl std::fmt::Debug for Integrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integrations")
            .field("evidence", &self.evidence)
            .field("notifier", &self.notifier.as_ref().map(|n| n.name()))
            .field("pager", &self.pager.as_ref().map(|p| p.name()))
            .field("notes", &self.notes)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ExecError {
    /// Nothing was changed: the executor will not run this action (policy, unsupported).
    #[error("refused: {0}")]
    Refused(String),
    /// The change was not made, or failed outright.
    #[error("failed: {0}")]
    Failed(String),
    /// The change was made but the resource did not become stable in time: it is rolled back
    /// with the others.
    #[error("changed but not stable: {0}")]
    NotStable(String),
    #[error("executor unavailable: {0}")]
    Unavailable(String),
}

impl ExecError {
    /// True when the resource may have been changed and so must be restored too.
    pub fn may_have_changed(&self) -> bool {
        matches!(self, ExecError::NotStable(_))
    }
}

/// One call to an executor: which incident, step and phase (together the idempotency key a
/// runner deduplicates by), the action and how long to wait for the resource to settle.
#[derive(Debug, Clone)]
pub struct StepCall<'a> {
    pub incident: &'a IncidentId,
    pub step: usize,
    pub phase: StepPhase,
    pub action: &'a Action,
    pub timeout: std::time::Duration,
}

impl StepCall<'_> {
    /// `incident:step:phase`, the same on every retry of this call.
    pub fn idempotency_key(&self) -> String {
        let phase = match self.phase {
            StepPhase::Apply => "apply",
            StepPhase::Rollback => "rollback",
        };
        format!("{}:{}:{phase}", self.incident, self.step)
    }
}

/// How a step ended on the resource.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// What is live now.
    pub after: ResourceState,
    pub output: String,
}

/// Runs typed remediation actions against the operator's systems. For each step the stage
/// calls [`Executor::observe`] and records the answer before anything changes, then
/// [`Executor::apply`]; a rollback calls [`Executor::restore`] with what was recorded.
///
/// Contract: `apply` and `restore` change the resource at most once per call key, even when
/// called again after a crash (the AWS executor compares the live state with the target, the
/// runner deduplicates by the idempotency key), and they return only once the resource is
/// stable or the call's timeout has passed.
#[async_trait]
pub trait Executor: Send + Sync {
    fn name(&self) -> String;
    /// False for the dry-run executor: nothing it does needs verifying.
    fn changes_systems(&self) -> bool {
        true
    }
    async fn observe(&self, call: &StepCall<'_>) -> Result<ResourceState, ExecError>;
    async fn apply(
        &self,
        call: &StepCall<'_>,
        prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError>;
    async fn restore(
        &self,
        call: &StepCall<'_>,
        prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError>;
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum NotifyError {
    #[error("{0}")]
    Failed(String),
}

/// Tells the on-call channel what is happening (Slack, console).
#[async_trait]
pub trait Notifier: Send + Sync {
    fn name(&self) -> String;
    /// Posts the approval request. The answer is where it was posted, if the notifier can
    /// find it again from that: it is kept as `ApprovalRequest::message_ref`, because the
    /// stage that sends the next update may run in another process.
    async fn approval_requested(
        &self,
        incident: &Incident,
        approval_url: Option<&str>,
    ) -> Result<Option<String>, NotifyError>;
    async fn incident_updated(&self, incident: &Incident, message: &str)
        -> Result<(), NotifyError>;
}

/// What the Slack interactivity endpoint asks of Slack itself: who is in an approver user
/// group, and a private answer to the person who clicked (Slack shows nothing of the HTTP
/// reply to a button click).
#[async_trait]
pub trait SlackWorkspace: Send + Sync {
    /// `usergroups.users.list`: the user ids in a user group (`S…`).
    async fn usergroup_members(&self, usergroup: &str) -> Result<Vec<String>, NotifyError>;
    /// Posts an ephemeral message to the clicker through the click's `response_url`.
    async fn reply_privately(&self, response_url: &str, text: &str) -> Result<(), NotifyError>;
}

/// Wakes a person (PagerDuty, console).
#[async_trait]
pub trait Pager: Send + Sync {
    fn name(&self) -> String;
    /// Keyed by [`Incident::page_key`]: paging twice for one alert is one page.
    async fn page(&self, incident: &Incident, escalation: &Escalation) -> Result<(), NotifyError>;
    async fn resolve(&self, incident: &Incident) -> Result<(), NotifyError>;
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CallbackError {
    #[error("task token is not valid")]
    InvalidToken,
    #[error("task already finished or timed out")]
    TaskTimedOut,
    #[error("callback failed: {0}")]
    Unavailable(String),
}

/// Completes a `.waitForTaskToken` task (Step Functions, or the local runtime).
#[async_trait]
pub trait TaskCallbacks: Send + Sync {
    async fn send_task_success(&self, task_token: &str, output: Value)
        -> Result<(), CallbackError>;
    async fn send_task_failure(
        &self,
        task_token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), CallbackError>;
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("could not start the pipeline: {0}")]
pub struct StartError(pub String);

/// Starts an incident's pipeline (Step Functions `StartExecution`, or the local runtime).
/// Idempotent: the execution is named after the incident.
#[async_trait]
pub trait PipelineStarter: Send + Sync {
    async fn start(&self, id: &IncidentId) -> Result<(), StartError>;
}

/// Lifecycle events out (EventBridge).
#[async_trait]
pub trait EventPublisher: Send + Sync {
    async fn publish(&self, detail_type: &str, detail: Value) -> Result<(), NotifyError>;
}

/// Publishes nothing: the local runtime has no subscribers.
pub struct NoEvents;

#[async_trait]
impl EventPublisher for NoEvents {
    async fn publish(&self, _detail_type: &str, _detail: Value) -> Result<(), NotifyError> {
        Ok(())
    }
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

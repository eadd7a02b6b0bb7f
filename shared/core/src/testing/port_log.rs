//! Which ports a run called: every port of a [`Deps`] (and a starter, task callbacks) wrapped so
//! that a call is noted before it is passed on. Holds stages and functions to the ports they
//! declare. `name()` is not a call: stages put the adapter's name in the record.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::*;
use crate::handler::Port;
use crate::ports::*;
use crate::stages::Deps;

/// The ports called since the last [`PortLog::take`].
#[derive(Default)]
pub struct PortLog(Mutex<BTreeSet<Port>>);

impl PortLog {
    pub fn new() -> Arc<PortLog> {
        Arc::new(PortLog::default())
    }

    /// The ports called so far; the log starts over.
    pub fn take(&self) -> BTreeSet<Port> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    fn note(&self, port: Port) {
        self.0.lock().unwrap().insert(port);
    }

    /// `deps` with every port noting its calls here; clock and configuration as they are.
    pub fn wrap(self: &Arc<Self>, deps: &Deps) -> Deps {
        let mut out = deps.clone();
        out.store = self.logged(deps.store.clone());
        out.analyst = self.logged(deps.analyst.clone());
        out.notifier = self.logged(deps.notifier.clone());
        out.pager = self.logged(deps.pager.clone());
        out.executor = self.logged(deps.executor.clone());
        out.events = self.logged(deps.events.clone());
        let e = &deps.evidence;
        out.evidence = EvidenceSources {
            logs: e.logs.iter().map(|s| self.logged(s.clone()) as _).collect(),
            metrics: e
                .metrics
                .iter()
                .map(|s| self.logged(s.clone()) as _)
                .collect(),
            deployments: e
                .deployments
                .iter()
                .map(|s| self.logged(s.clone()) as _)
                .collect(),
            topology: e
                .topology
                .iter()
                .map(|s| self.logged(s.clone()) as _)
                .collect(),
        };
        out
    }

    pub fn starter(self: &Arc<Self>, inner: Arc<dyn PipelineStarter>) -> Arc<dyn PipelineStarter> {
        self.logged(inner)
    }

    pub fn callbacks(self: &Arc<Self>, inner: Arc<dyn TaskCallbacks>) -> Arc<dyn TaskCallbacks> {
        self.logged(inner)
    }

    fn logged<T: ?Sized>(self: &Arc<Self>, inner: Arc<T>) -> Arc<Logged<T>> {
        Arc::new(Logged {
            log: self.clone(),
            inner,
        })
    }
}

struct Logged<T: ?Sized> {
    log: Arc<PortLog>,
    inner: Arc<T>,
}

impl<T: ?Sized> Logged<T> {
    fn on(&self, port: Port) -> &T {
        self.log.note(port);
        &self.inner
    }
}

#[async_trait]
impl IncidentStore for Logged<dyn IncidentStore> {
    async fn create_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        self.on(Port::Store).create_incident(incident).await
    }
    async fn get_incident(&self, id: &IncidentId) -> Result<Option<Incident>, StoreError> {
        self.on(Port::Store).get_incident(id).await
    }
    async fn update_incident(&self, incident: &Incident) -> Result<Incident, StoreError> {
        self.on(Port::Store).update_incident(incident).await
    }
    async fn list_incidents(&self, query: &IncidentQuery) -> Result<IncidentPage, StoreError> {
        self.on(Port::Store).list_incidents(query).await
    }
    async fn find_by_approval_id(&self, approval_id: &str) -> Result<Option<Incident>, StoreError> {
        self.on(Port::Store).find_by_approval_id(approval_id).await
    }
    async fn latest_with_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<FingerprintMatch>, StoreError> {
        self.on(Port::Store)
            .latest_with_fingerprint(fingerprint)
            .await
    }
    async fn record_repeat(
        &self,
        id: &IncidentId,
        repeat: &AlertRepeat,
    ) -> Result<AlertRepeats, StoreError> {
        self.on(Port::Store).record_repeat(id, repeat).await
    }
    async fn put_attempt(
        &self,
        id: &IncidentId,
        attempt: InvestigationAttempt,
    ) -> Result<(), StoreError> {
        self.on(Port::Store).put_attempt(id, attempt).await
    }
    async fn attempts(&self, id: &IncidentId) -> Result<Vec<InvestigationAttempt>, StoreError> {
        self.on(Port::Store).attempts(id).await
    }
    async fn claim_step(&self, id: &IncidentId, record: &StepRecord) -> Result<bool, StoreError> {
        self.on(Port::Store).claim_step(id, record).await
    }
    async fn finish_step(&self, id: &IncidentId, record: &StepRecord) -> Result<(), StoreError> {
        self.on(Port::Store).finish_step(id, record).await
    }
    async fn steps(&self, id: &IncidentId) -> Result<Vec<StepRecord>, StoreError> {
        self.on(Port::Store).steps(id).await
    }
    async fn put_postmortem(&self, postmortem: &PostMortem) -> Result<(), StoreError> {
        self.on(Port::Store).put_postmortem(postmortem).await
    }
    async fn postmortem(&self, id: &IncidentId) -> Result<Option<PostMortem>, StoreError> {
        self.on(Port::Store).postmortem(id).await
    }
    async fn claim_once(
        &self,
        key: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.on(Port::Store).claim_once(key, until, now).await
    }
    async fn release_once(&self, key: &str) -> Result<(), StoreError> {
        self.on(Port::Store).release_once(key).await
    }
    async fn append_audit(
        &self,
        id: &IncidentId,
        entry: &crate::audit::AuditEntry,
    ) -> Result<(), StoreError> {
        self.on(Port::Store).append_audit(id, entry).await
    }
    async fn audit(&self, id: &IncidentId) -> Result<Vec<crate::audit::AuditEntry>, StoreError> {
        self.on(Port::Store).audit(id).await
    }
}

#[async_trait]
impl Analyst for Logged<dyn Analyst> {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn triage(&self, alert: &Alert) -> Result<TriageResult, AnalystError> {
        self.on(Port::Analyst).triage(alert).await
    }
    async fn rca(
        &self,
        alert: &Alert,
        triage: &TriageResult,
        context: &ContextBundle,
    ) -> Result<RootCauseHypothesis, AnalystError> {
        self.on(Port::Analyst).rca(alert, triage, context).await
    }
    async fn plan(
        &self,
        alert: &Alert,
        hypothesis: &RootCauseHypothesis,
        context: &ContextBundle,
    ) -> Result<RemediationPlan, AnalystError> {
        self.on(Port::Analyst)
            .plan(alert, hypothesis, context)
            .await
    }
    async fn postmortem(
        &self,
        facts: &PostMortemFacts<'_>,
    ) -> Result<PostMortemNarrative, AnalystError> {
        self.on(Port::Analyst).postmortem(facts).await
    }
}

#[async_trait]
impl LogSource for Logged<dyn LogSource> {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn logs(&self, query: &EvidenceQuery) -> Result<Vec<LogLine>, SourceError> {
        self.on(Port::Evidence).logs(query).await
    }
}

#[async_trait]
impl MetricSource for Logged<dyn MetricSource> {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn metrics(&self, query: &EvidenceQuery) -> Result<Vec<MetricSeries>, SourceError> {
        self.on(Port::Evidence).metrics(query).await
    }
}

#[async_trait]
impl DeploymentSource for Logged<dyn DeploymentSource> {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn deployments(&self, query: &EvidenceQuery) -> Result<Vec<Deployment>, SourceError> {
        self.on(Port::Evidence).deployments(query).await
    }
}

#[async_trait]
impl TopologySource for Logged<dyn TopologySource> {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn topology(&self, alert: &Alert) -> Result<Vec<ServiceEdge>, SourceError> {
        self.on(Port::Evidence).topology(alert).await
    }
}

#[async_trait]
impl Notifier for Logged<dyn Notifier> {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn approval_requested(
        &self,
        incident: &Incident,
        approval_url: Option<&str>,
    ) -> Result<Option<String>, NotifyError> {
        self.on(Port::Notifier)
            .approval_requested(incident, approval_url)
            .await
    }
    async fn incident_updated(
        &self,
        incident: &Incident,
        message: &str,
    ) -> Result<(), NotifyError> {
        self.on(Port::Notifier)
            .incident_updated(incident, message)
            .await
    }
}

#[async_trait]
impl Pager for Logged<dyn Pager> {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn page(&self, incident: &Incident, escalation: &Escalation) -> Result<(), NotifyError> {
        self.on(Port::Pager).page(incident, escalation).await
    }
    async fn resolve(&self, incident: &Incident) -> Result<(), NotifyError> {
        self.on(Port::Pager).resolve(incident).await
    }
}

#[async_trait]
impl Executor for Logged<dyn Executor> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn changes_systems(&self) -> bool {
        self.inner.changes_systems()
    }
    async fn observe(&self, call: &StepCall<'_>) -> Result<ResourceState, ExecError> {
        self.on(Port::Executor).observe(call).await
    }
    async fn apply(
        &self,
        call: &StepCall<'_>,
        prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        self.on(Port::Executor).apply(call, prior).await
    }
    async fn restore(
        &self,
        call: &StepCall<'_>,
        prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        self.on(Port::Executor).restore(call, prior).await
    }
}

#[async_trait]
impl EventPublisher for Logged<dyn EventPublisher> {
    async fn publish(&self, detail_type: &str, detail: Value) -> Result<(), NotifyError> {
        self.on(Port::Events).publish(detail_type, detail).await
    }
}

#[async_trait]
impl PipelineStarter for Logged<dyn PipelineStarter> {
    async fn start(&self, id: &IncidentId) -> Result<(), StartError> {
        self.on(Port::Starter).start(id).await
    }
}

#[async_trait]
impl TaskCallbacks for Logged<dyn TaskCallbacks> {
    async fn send_task_success(
        &self,
        task_token: &str,
        output: Value,
    ) -> Result<(), CallbackError> {
        self.on(Port::Callbacks)
            .send_task_success(task_token, output)
            .await
    }
    async fn send_task_failure(
        &self,
        task_token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), CallbackError> {
        self.on(Port::Callbacks)
            .send_task_failure(task_token, error, cause)
            .await
    }
}

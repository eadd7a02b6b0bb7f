//! Test doubles and the store contract suite. Built for this crate's tests and, with the
//! `testing` feature, for the local runtime's and the adapters'.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::TimeZone;

use crate::domain::*;
use crate::ports::*;

pub use crate::memory::MemoryStore;
pub use port_log::PortLog;

mod port_log;

/// Runs actions "successfully" but fails the chosen step (0-based), and counts every apply
/// and restore (with the action's CLI text). It records a prior state of its own for each
/// step, and hands back on restore the state it was given.
#[derive(Default)]
pub struct FailingExecutor {
    pub fail_apply_step: Option<usize>,
    /// Claims to change real systems, so Verify reads the symptoms again afterwards.
    pub real: bool,
    pub calls: Mutex<Vec<(StepPhase, usize, String)>>,
    pub restored: Mutex<Vec<(usize, ResourceState)>>,
}

impl FailingExecutor {
    pub fn failing_at(step: usize) -> Self {
        FailingExecutor {
            fail_apply_step: Some(step),
            ..Default::default()
        }
    }
    pub fn calls(&self) -> Vec<(StepPhase, usize, String)> {
        self.calls.lock().unwrap().clone()
    }
    /// The prior state this executor reports for a step.
    pub fn prior_of(step: usize) -> ResourceState {
        ResourceState::Runner {
            state: serde_json::json!({"replicas": 4, "step": step}),
        }
    }
}

#[async_trait]
impl Executor for FailingExecutor {
    fn name(&self) -> String {
        "test".into()
    }
    fn changes_systems(&self) -> bool {
        self.real
    }
    async fn observe(&self, call: &StepCall<'_>) -> Result<ResourceState, ExecError> {
        Ok(Self::prior_of(call.step))
    }
    async fn apply(
        &self,
        call: &StepCall<'_>,
        _prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        let cli = call.action.render().cli;
        self.calls
            .lock()
            .unwrap()
            .push((StepPhase::Apply, call.step, cli.clone()));
        if Some(call.step) == self.fail_apply_step {
            return Err(ExecError::Failed(format!("exit status 1 from `{cli}`")));
        }
        Ok(StepOutcome {
            after: ResourceState::Runner {
                state: serde_json::json!({"applied": call.step}),
            },
            output: format!("ok: {cli}"),
        })
    }
    async fn restore(
        &self,
        call: &StepCall<'_>,
        prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        let cli = call.action.render().cli;
        self.calls
            .lock()
            .unwrap()
            .push((StepPhase::Rollback, call.step, cli.clone()));
        self.restored
            .lock()
            .unwrap()
            .push((call.step, prior.clone()));
        Ok(StepOutcome {
            after: prior.clone(),
            output: format!("restored: {}", prior.describe()),
        })
    }
}

/// Remembers every page and notification.
#[derive(Default)]
pub struct RecordingPager {
    pub pages: Mutex<Vec<(IncidentId, EscalationReason)>>,
    pub resolved: Mutex<Vec<IncidentId>>,
    /// Page keys paged and not yet resolved.
    pub open_keys: Mutex<std::collections::HashSet<String>>,
    /// Fail this many times before succeeding.
    pub failures_left: AtomicUsize,
}

#[async_trait]
impl Pager for RecordingPager {
    fn name(&self) -> String {
        "test-pager".into()
    }
    async fn page(&self, incident: &Incident, escalation: &Escalation) -> Result<(), NotifyError> {
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(NotifyError::Failed("pager down".into()));
        }
        let mut pages = self.pages.lock().unwrap();
        let mut open = self.open_keys.lock().unwrap();
        // PagerDuty's dedup rule: a trigger on a key whose alert is still open is no new page.
        if open.insert(incident.page_key()) {
            pages.push((incident.incident_id.clone(), escalation.reason));
        }
        Ok(())
    }
    async fn resolve(&self, incident: &Incident) -> Result<(), NotifyError> {
        self.open_keys.lock().unwrap().remove(&incident.page_key());
        self.resolved
            .lock()
            .unwrap()
            .push(incident.incident_id.clone());
        Ok(())
    }
}

#[derive(Default)]
pub struct RecordingNotifier {
    pub approvals: Mutex<Vec<(IncidentId, Option<String>)>>,
    pub updates: Mutex<Vec<(IncidentId, String)>>,
}

#[async_trait]
impl Notifier for RecordingNotifier {
    fn name(&self) -> String {
        "test-notifier".into()
    }
    async fn approval_requested(
        &self,
        incident: &Incident,
        url: Option<&str>,
    ) -> Result<Option<String>, NotifyError> {
        self.approvals
            .lock()
            .unwrap()
            .push((incident.incident_id.clone(), url.map(str::to_string)));
        Ok(Some(format!("recorded:{}", incident.incident_id)))
    }
    async fn incident_updated(
        &self,
        incident: &Incident,
        message: &str,
    ) -> Result<(), NotifyError> {
        self.updates
            .lock()
            .unwrap()
            .push((incident.incident_id.clone(), message.to_string()));
        Ok(())
    }
}

/// Remembers every lifecycle event published: (detail type, incident id).
#[derive(Default)]
pub struct RecordingEvents(pub Mutex<Vec<(String, String)>>);

impl RecordingEvents {
    pub fn types_for(&self, id: &IncidentId) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, i)| i == id.as_str())
            .map(|(t, _)| t.clone())
            .collect()
    }
}

#[async_trait]
impl EventPublisher for RecordingEvents {
    async fn publish(
        &self,
        detail_type: &str,
        detail: serde_json::Value,
    ) -> Result<(), NotifyError> {
        let id = detail["incident_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.0.lock().unwrap().push((detail_type.to_string(), id));
        Ok(())
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn at(t: Timestamp) -> Self {
        ManualClock(Mutex::new(t))
    }
    pub fn advance(&self, d: chrono::Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

/// An analyst that answers from a script: for lying about plans, confidence and more.
pub struct ScriptedAnalyst {
    pub inner: Arc<dyn Analyst>,
    /// Confidence returned per RCA call, in order; the last repeats.
    pub confidences: Vec<f64>,
    pub plan: Option<RemediationPlan>,
    pub severity: Option<Severity>,
    pub fail_rca: bool,
    pub rca_calls: AtomicUsize,
}

impl ScriptedAnalyst {
    pub fn over(inner: Arc<dyn Analyst>) -> Self {
        ScriptedAnalyst {
            inner,
            confidences: Vec::new(),
            plan: None,
            severity: None,
            fail_rca: false,
            rca_calls: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Analyst for ScriptedAnalyst {
    fn name(&self) -> String {
        "scripted".into()
    }
    async fn triage(&self, alert: &Alert) -> Result<TriageResult, AnalystError> {
        let mut t = self.inner.triage(alert).await?;
        if let Some(s) = self.severity {
            t.severity = s;
        }
        Ok(t)
    }
    async fn rca(
        &self,
        alert: &Alert,
        triage: &TriageResult,
        ctx: &ContextBundle,
    ) -> Result<RootCauseHypothesis, AnalystError> {
        let n = self.rca_calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_rca {
            return Err(AnalystError::Unavailable("model down".into()));
        }
        let mut h = self.inner.rca(alert, triage, ctx).await?;
        if let Some(c) = self.confidences.get(n).or(self.confidences.last()).copied() {
            h.confidence = c;
        }
        Ok(h)
    }
    async fn plan(
        &self,
        alert: &Alert,
        h: &RootCauseHypothesis,
        ctx: &ContextBundle,
    ) -> Result<RemediationPlan, AnalystError> {
        match &self.plan {
            Some(p) => Ok(p.clone()),
            None => self.inner.plan(alert, h, ctx).await,
        }
    }
    async fn postmortem(
        &self,
        facts: &PostMortemFacts<'_>,
    ) -> Result<PostMortemNarrative, AnalystError> {
        self.inner.postmortem(facts).await
    }
}

fn sample_incident(n: u32) -> Incident {
    let at = chrono::Utc
        .with_ymd_and_hms(2024, 3, 12, 14, 7, 30)
        .unwrap();
    let alert = Alert::from_json(serde_json::json!({
        "title": format!("High error rate #{n} <b>é</b>"),
        "timestamp": at.to_rfc3339(),
        "service": "payment-service",
    }))
    .unwrap();
    Incident::open(IncidentId::generate(), alert, at)
}

/// The behaviour every `IncidentStore` must share; run against each implementation.
pub mod store_contract {
    use super::*;

    pub async fn create_get_roundtrip(store: &dyn IncidentStore) {
        let inc = sample_incident(1);
        store.create_incident(&inc).await.unwrap();
        let got = store.get_incident(&inc.incident_id).await.unwrap().unwrap();
        assert_eq!(got.title, inc.title, "text is stored as sent");
        assert_eq!(got.version, 1);
        assert!(store
            .get_incident(&IncidentId("inc-missing".into()))
            .await
            .unwrap()
            .is_none());
    }

    pub async fn create_is_conditional(store: &dyn IncidentStore) {
        let inc = sample_incident(2);
        store.create_incident(&inc).await.unwrap();
        let again = store.create_incident(&inc).await;
        assert!(
            matches!(again, Err(StoreError::AlreadyExists(_))),
            "{again:?}"
        );
    }

    pub async fn update_checks_version(store: &dyn IncidentStore) {
        let inc = sample_incident(3);
        store.create_incident(&inc).await.unwrap();
        let mut a = store.get_incident(&inc.incident_id).await.unwrap().unwrap();
        let mut b = a.clone();
        a.status = IncidentStatus::Resolved;
        let stored = store.update_incident(&a).await.unwrap();
        assert_eq!(stored.version, 2);
        b.status = IncidentStatus::Escalated;
        let lost = store.update_incident(&b).await;
        assert!(matches!(lost, Err(StoreError::Conflict(_))), "{lost:?}");
        let now = store.get_incident(&inc.incident_id).await.unwrap().unwrap();
        assert_eq!(
            now.status,
            IncidentStatus::Resolved,
            "the stale write changed nothing"
        );
    }

    pub async fn steps_are_claimed_once(store: &dyn IncidentStore) {
        let inc = sample_incident(4);
        store.create_incident(&inc).await.unwrap();
        let rec = StepRecord {
            phase: StepPhase::Apply,
            step: 0,
            command: "aws ecs update-service --cluster shop --service x --desired-count 6".into(),
            rollback_command: String::new(),
            action: Some(Action::EcsSetDesiredCount {
                cluster: "shop".into(),
                service: "x".into(),
                desired_count: 6,
            }),
            prior: None,
            after: None,
            status: StepStatus::Started,
            executor: "test".into(),
            started_at: inc.created_at,
            ended_at: None,
            output: String::new(),
        };
        assert!(store.claim_step(&inc.incident_id, &rec).await.unwrap());
        assert!(!store.claim_step(&inc.incident_id, &rec).await.unwrap());
        let rollback = StepRecord {
            phase: StepPhase::Rollback,
            ..rec.clone()
        };
        assert!(store.claim_step(&inc.incident_id, &rollback).await.unwrap());
        // The prior state is recorded on the claimed step before anything changes.
        let mut with_prior = rec.clone();
        with_prior.prior = Some(ResourceState::EcsService {
            task_definition: "x:41".into(),
            desired_count: 4,
            primary_deployment: "ecs-svc/1".into(),
        });
        store
            .finish_step(&inc.incident_id, &with_prior)
            .await
            .unwrap();
        let mut done = with_prior.clone();
        done.status = StepStatus::Succeeded;
        done.ended_at = Some(inc.created_at);
        store.finish_step(&inc.incident_id, &done).await.unwrap();
        let steps = store.steps(&inc.incident_id).await.unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(
            steps[0], done,
            "action and prior state read back as written"
        );
        assert_eq!(steps[1].phase, StepPhase::Rollback);
    }

    pub async fn attempts_upsert_in_order(store: &dyn IncidentStore) {
        let inc = sample_incident(5);
        store.create_incident(&inc).await.unwrap();
        for n in [2, 1, 2] {
            let a = InvestigationAttempt {
                attempt: n,
                context: ContextBundle {
                    attempt: n,
                    ..Default::default()
                },
                hypothesis: None,
                gathered_at: inc.created_at,
            };
            store.put_attempt(&inc.incident_id, a).await.unwrap();
        }
        let got = store.attempts(&inc.incident_id).await.unwrap();
        assert_eq!(
            got.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    pub async fn list_filters_and_pages_newest_first(store: &dyn IncidentStore) {
        let mut ids = Vec::new();
        for n in 0..5 {
            let mut inc = sample_incident(10 + n);
            inc.severity = Some(if n % 2 == 0 {
                Severity::P1
            } else {
                Severity::P3
            });
            store.create_incident(&inc).await.unwrap();
            ids.push(inc.incident_id.clone());
        }
        let p1 = store
            .list_incidents(&IncidentQuery {
                severity: Some(Severity::P1),
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(p1.incidents.len(), 2);
        assert!(p1
            .incidents
            .iter()
            .all(|i| i.severity == Some(Severity::P1)));
        assert!(
            p1.incidents[0].incident_id > p1.incidents[1].incident_id,
            "newest first"
        );
        let p2 = store
            .list_incidents(&IncidentQuery {
                severity: Some(Severity::P1),
                limit: 2,
                cursor: p1.next.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(!p2.incidents.is_empty());
        assert!(p2
            .incidents
            .iter()
            .all(|i| !p1.incidents.iter().any(|j| j.incident_id == i.incident_id)));
    }

    pub async fn postmortem_roundtrip(store: &dyn IncidentStore) {
        let inc = sample_incident(6);
        store.create_incident(&inc).await.unwrap();
        let pm = PostMortem {
            incident_id: inc.incident_id.clone(),
            title: inc.title.clone(),
            severity: Some(Severity::P1),
            outcome: PostMortemOutcome::Resolved,
            summary: "s".into(),
            root_cause: "r".into(),
            resolution: "x".into(),
            timeline: inc.timeline.clone(),
            action_items: vec![],
            lessons: vec![],
            started_at: inc.created_at,
            ended_at: inc.created_at,
            duration_seconds: 0,
            rca_attempts: 1,
            steps_applied: 1,
            steps_rolled_back: 0,
            written_at: inc.created_at,
            analyst: "offline".into(),
            llm_usage: Default::default(),
            verification: None,
        };
        store.put_postmortem(&pm).await.unwrap();
        assert_eq!(store.postmortem(&inc.incident_id).await.unwrap(), Some(pm));
    }

    pub async fn an_open_fingerprint_is_taken_until_the_incident_ends(store: &dyn IncidentStore) {
        let first = sample_incident(20);
        store.create_incident(&first).await.unwrap();
        let mut repeat = sample_incident(20);
        repeat.fingerprint = first.fingerprint.clone();
        match store.create_incident(&repeat).await {
            Err(StoreError::Duplicate(id)) => assert_eq!(id, first.incident_id),
            other => panic!("expected Duplicate, got {other:?}"),
        }
        let mut done = store
            .get_incident(&first.incident_id)
            .await
            .unwrap()
            .unwrap();
        done.status = IncidentStatus::Resolved;
        store.update_incident(&done).await.unwrap();
        store
            .create_incident(&repeat)
            .await
            .expect("a resolved incident no longer holds its fingerprint");
    }

    pub async fn approvals_are_found_by_their_id(store: &dyn IncidentStore) {
        let inc = sample_incident(21);
        store.create_incident(&inc).await.unwrap();
        let mut stored = store.get_incident(&inc.incident_id).await.unwrap().unwrap();
        stored.approval = Some(ApprovalRequest {
            approval_id: "apr-contract-1".into(),
            task_token: "token".into(),
            requested_at: inc.created_at,
            expires_at: inc.created_at,
            decision: None,
            // Another process finds the approval message through this.
            message_ref: Some(r#"{"channel":"C1","ts":"1700000000.000100"}"#.into()),
            plan_hash: "9f86d081884c7d65".into(),
            required_approvers: 2,
            approvals: vec![],
        });
        store.update_incident(&stored).await.unwrap();
        let found = store
            .find_by_approval_id("apr-contract-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.incident_id, inc.incident_id);
        assert_eq!(found.approval, stored.approval, "the approval as written");
        assert!(store
            .find_by_approval_id("apr-unknown")
            .await
            .unwrap()
            .is_none());
    }

    pub async fn repeats_are_counted_beside_the_record(store: &dyn IncidentStore) {
        let inc = sample_incident(30);
        store.create_incident(&inc).await.unwrap();
        let t0 = inc.created_at;
        let mut last = AlertRepeats::default();
        for n in 0..(MAX_ALERT_SAMPLES + 2) {
            let mut sample = inc.alert.clone();
            sample.title = format!("repeat {n}");
            let repeat = AlertRepeat {
                at: t0 + chrono::Duration::seconds(n as i64 + 1),
                recurrence: n == 0,
                sample,
            };
            last = store
                .record_repeat(&inc.incident_id, &repeat)
                .await
                .unwrap();
        }
        assert_eq!(last.count, MAX_ALERT_SAMPLES + 2);
        assert_eq!(last.recurrences, 1);
        let got = store.get_incident(&inc.incident_id).await.unwrap().unwrap();
        assert_eq!(got.version, 1, "a repeat never rewrites the record");
        assert_eq!(got.repeats.count, MAX_ALERT_SAMPLES + 2);
        assert_eq!(got.repeats.samples.len() as u64, MAX_ALERT_SAMPLES);
        assert_eq!(got.repeats.samples[0].title, "repeat 0");
        assert_eq!(
            got.repeats.first_seen,
            Some(t0 + chrono::Duration::seconds(1))
        );
        assert_eq!(
            got.repeats.last_seen,
            Some(t0 + chrono::Duration::seconds(MAX_ALERT_SAMPLES as i64 + 2))
        );
        // A stage writing the record it read does not wind the counters back.
        let mut stale = got.clone();
        stale.repeats = AlertRepeats::default();
        stale.status = IncidentStatus::AwaitingApproval;
        let written = store.update_incident(&stale).await.unwrap();
        assert_eq!(written.version, 2);
        let again = store.get_incident(&inc.incident_id).await.unwrap().unwrap();
        assert_eq!(again.repeats.count, MAX_ALERT_SAMPLES + 2);
        let listed = store
            .list_incidents(&IncidentQuery {
                status: Some(IncidentStatus::AwaitingApproval),
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        let row = listed
            .incidents
            .iter()
            .find(|i| i.incident_id == inc.incident_id)
            .expect("listed");
        assert_eq!(
            row.repeats.count,
            MAX_ALERT_SAMPLES + 2,
            "lists carry the counters"
        );
    }

    pub async fn the_newest_incident_of_a_fingerprint_is_found_open_or_closed(
        store: &dyn IncidentStore,
    ) {
        let first = sample_incident(31);
        let fp = format!("contract:{}", first.incident_id);
        let mut first = first;
        first.fingerprint = fp.clone();
        assert!(store.latest_with_fingerprint(&fp).await.unwrap().is_none());
        store.create_incident(&first).await.unwrap();
        let open = store.latest_with_fingerprint(&fp).await.unwrap().unwrap();
        assert_eq!(open.incident_id, first.incident_id);
        assert_eq!(open.status, IncidentStatus::Processing);
        assert_eq!(open.closed_at, None);
        let mut done = store
            .get_incident(&first.incident_id)
            .await
            .unwrap()
            .unwrap();
        done.status = IncidentStatus::Escalated;
        done.closed_at = Some(first.created_at + chrono::Duration::minutes(5));
        store.update_incident(&done).await.unwrap();
        let closed = store.latest_with_fingerprint(&fp).await.unwrap().unwrap();
        assert_eq!(closed.status, IncidentStatus::Escalated);
        assert_eq!(closed.closed_at, done.closed_at);
        let mut second = sample_incident(32);
        second.fingerprint = fp.clone();
        store.create_incident(&second).await.unwrap();
        let newest = store.latest_with_fingerprint(&fp).await.unwrap().unwrap();
        assert_eq!(newest.incident_id, second.incident_id, "the newest wins");
    }

    /// A one-time value is claimed once while live, again once past, and again after release.
    pub async fn one_time_values_are_claimed_once(store: &dyn IncidentStore) {
        use chrono::TimeZone;
        let t0 = chrono::Utc.with_ymd_and_hms(2024, 3, 12, 14, 0, 0).unwrap();
        let live = t0 + chrono::Duration::minutes(5);
        assert!(store.claim_once("sha256=aa", live, t0).await.unwrap());
        assert!(
            !store
                .claim_once("sha256=aa", live, t0 + chrono::Duration::minutes(1))
                .await
                .unwrap(),
            "a replay inside its window is refused"
        );
        assert!(store.claim_once("sha256=bb", live, t0).await.unwrap());
        // Past its window the claim is forgotten (the freshness check refuses it by then).
        let later = t0 + chrono::Duration::minutes(6);
        assert!(store
            .claim_once("sha256=aa", later + chrono::Duration::minutes(5), later)
            .await
            .unwrap());
        store.release_once("sha256=bb").await.unwrap();
        assert!(store.claim_once("sha256=bb", live, t0).await.unwrap());
        let long = "x".repeat(5000);
        assert!(store.claim_once(&long, live, t0).await.unwrap());
        assert!(!store.claim_once(&long, live, t0).await.unwrap());
    }

    fn audit_draft(at: Timestamp, n: u64) -> crate::audit::AuditDraft {
        use crate::audit::{AuditDraft, AuditEvent};
        AuditDraft {
            key: format!("contract:{n}"),
            // Nanoseconds, so the time must read back to the digit for the hash to hold.
            at: at + chrono::Duration::nanoseconds(n as i64 * 1_000_000_001),
            actor: format!("alice «{n}» via api"),
            event: AuditEvent::Decision {
                decision: "approved".into(),
                approver: "alice".into(),
                channel: "api".into(),
                comment: Some(format!("line one\nline \"two\" <b>{n}</b> é")),
                approval_id: Some("apr-contract".into()),
                plan_hash: "9f86d081884c7d65".into(),
                approvals: 1,
                required: 1,
            },
        }
    }

    /// The audit log: entries read back exactly as written (their hashes and signatures still
    /// verify), ascending by seq past 9, each seq written once, an event's key recorded once,
    /// concurrent appends both chained.
    pub async fn the_audit_log_appends_once_per_seq_and_reads_back_verifiable(
        store: &dyn IncidentStore,
    ) {
        use crate::audit::{append, verify, AuditEntry, AuditKey};
        let inc = sample_incident(40);
        store.create_incident(&inc).await.unwrap();
        let id = &inc.incident_id;
        assert!(store.audit(id).await.unwrap().is_empty());
        let key = AuditKey::new(b"contract-key".to_vec());
        let key = key.as_ref();
        for n in 0..12 {
            append(store, key, id, audit_draft(inc.created_at, n))
                .await
                .unwrap();
        }
        // A retried stage appending the same event again records nothing new.
        let again = append(store, key, id, audit_draft(inc.created_at, 3))
            .await
            .unwrap();
        assert_eq!(again.seq, 4);
        let log = store.audit(id).await.unwrap();
        assert_eq!(
            log.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=12).collect::<Vec<_>>(),
            "ascending by seq, numerically"
        );
        assert_eq!(verify(id, &log, key), Ok(12), "read back exactly as hashed");

        // A write at a seq already taken is refused and changes nothing.
        let clash = AuditEntry::seal(id, 5, &log[3].hash, audit_draft(inc.created_at, 99), key);
        let refused = store.append_audit(id, &clash).await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );
        assert_eq!(store.audit(id).await.unwrap(), log);

        // Two writers at once: both land, chained one after the other.
        let (a, b) = tokio::join!(
            append(store, key, id, audit_draft(inc.created_at, 100)),
            append(store, key, id, audit_draft(inc.created_at, 101)),
        );
        a.unwrap();
        b.unwrap();
        let log = store.audit(id).await.unwrap();
        assert_eq!(verify(id, &log, key), Ok(14));

        // Logs are per incident, and the record itself is untouched.
        let other = sample_incident(41);
        store.create_incident(&other).await.unwrap();
        assert!(store.audit(&other.incident_id).await.unwrap().is_empty());
        let stored = store.get_incident(id).await.unwrap().unwrap();
        assert_eq!(stored.version, 1, "the log never rewrites the record");
    }

    /// Every case, in order.
    /// A record over the bound is refused alike by every store, and the stored one stays; a
    /// page of large records stops at the page bound and goes on from where it stopped.
    pub async fn records_and_pages_are_bounded(store: &dyn IncidentStore) {
        let mut inc = sample_incident(40);
        inc.fingerprint = format!("contract:bounded:{}", inc.incident_id);
        store.create_incident(&inc).await.unwrap();
        let mut stored = store.get_incident(&inc.incident_id).await.unwrap().unwrap();
        let before = stored.clone();
        stored.title = "x".repeat(crate::ports::MAX_RECORD_BYTES);
        let e = store.update_incident(&stored).await.unwrap_err();
        assert!(
            matches!(e, StoreError::TooLarge { bytes, max, .. } if bytes > max && max == crate::ports::MAX_RECORD_BYTES),
            "{e:?}"
        );
        let kept = store.get_incident(&inc.incident_id).await.unwrap().unwrap();
        assert_eq!(kept.title, before.title);
        assert_eq!(kept.version, before.version);
        let mut huge = sample_incident(41);
        huge.title = "y".repeat(crate::ports::MAX_RECORD_BYTES);
        assert!(matches!(
            store.create_incident(&huge).await,
            Err(StoreError::TooLarge { .. })
        ));
        assert!(store
            .get_incident(&huge.incident_id)
            .await
            .unwrap()
            .is_none());

        // Records close to the bound, with a severity of their own so only they are listed:
        // a page can hold `per_page` of them, and there are three more than that.
        let big = crate::ports::MAX_RECORD_BYTES - 8 * 1024;
        let per_page = crate::ports::MAX_PAGE_BYTES / big;
        let mut ids = Vec::new();
        for n in 0..per_page + 3 {
            let mut i = sample_incident(100 + n as u32);
            i.fingerprint = format!("contract:page:{}", i.incident_id);
            i.severity = Some(Severity::P0);
            i.title = "z".repeat(big);
            store.create_incident(&i).await.unwrap();
            ids.push(i.incident_id);
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .list_incidents(&IncidentQuery {
                    severity: Some(Severity::P0),
                    limit: 200,
                    cursor: cursor.clone(),
                    ..IncidentQuery::default()
                })
                .await
                .unwrap();
            assert!(!page.incidents.is_empty());
            assert!(
                page.incidents.len() <= per_page,
                "{} records of {big} bytes in one page",
                page.incidents.len()
            );
            seen.extend(page.incidents.iter().map(|i| i.incident_id.clone()));
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        seen.sort();
        ids.sort();
        assert_eq!(seen, ids, "every record, once, across the pages");
    }

    pub async fn run_all(store: &dyn IncidentStore) {
        one_time_values_are_claimed_once(store).await;
        create_get_roundtrip(store).await;
        create_is_conditional(store).await;
        update_checks_version(store).await;
        steps_are_claimed_once(store).await;
        attempts_upsert_in_order(store).await;
        list_filters_and_pages_newest_first(store).await;
        postmortem_roundtrip(store).await;
        an_open_fingerprint_is_taken_until_the_incident_ends(store).await;
        approvals_are_found_by_their_id(store).await;
        repeats_are_counted_beside_the_record(store).await;
        the_newest_incident_of_a_fingerprint_is_found_open_or_closed(store).await;
        records_and_pages_are_bounded(store).await;
        the_audit_log_appends_once_per_seq_and_reads_back_verifiable(store).await;
    }
}

/// An environment from `(name, value)` pairs, as the configuration readers take it.
pub fn vars(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        super::store_contract::run_all(&super::MemoryStore::default()).await;
    }
}

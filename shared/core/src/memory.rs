//! An in-memory `IncidentStore`: what `iras eval` runs the analysis stages on, and the tests'
//! store. Conditional writes behave as the real stores' do, so the stages run unchanged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::audit::AuditEntry;
use crate::domain::*;
use crate::ports::*;

/// An in-memory `IncidentStore` with the same conditional-write semantics as the real ones.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Mem>,
}

#[derive(Default)]
struct Mem {
    incidents: HashMap<IncidentId, Incident>,
    attempts: HashMap<IncidentId, BTreeMap<u32, InvestigationAttempt>>,
    steps: HashMap<IncidentId, Vec<StepRecord>>,
    postmortems: HashMap<IncidentId, PostMortem>,
    /// Kept beside the incidents, as the real stores keep them beside the record.
    repeats: HashMap<IncidentId, AlertRepeats>,
    once: HashMap<String, Timestamp>,
    audit: HashMap<IncidentId, BTreeMap<u64, AuditEntry>>,
    /// Set by the tests that show what happens when the audit log cannot be written.
    audit_down: bool,
}

impl Mem {
    /// The incident as the store returns it: its repeats joined in (`samples`: with them).
    fn joined(&self, incident: &Incident, samples: bool) -> Incident {
        let mut i = incident.clone();
        i.repeats = self
            .repeats
            .get(&incident.incident_id)
            .cloned()
            .unwrap_or_default();
        if !samples {
            i.repeats.samples.clear();
        }
        i
    }
}

/// The length of a value's JSON, counted as it is written rather than kept.
fn json_len(value: &impl serde::Serialize) -> serde_json::Result<usize> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    Ok(count.0)
}

/// The same bound as the stores that serialise, on the record as it would be written
/// (`stored`: from [`record_of`]).
fn check_size(stored: &Incident) -> Result<(), StoreError> {
    let bytes = json_len(stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    crate::ports::check_record_len(&stored.incident_id, bytes)
}

/// What a page of records weighs as stored.
fn weight(incident: &Incident) -> usize {
    json_len(incident).unwrap_or(0)
}

/// What the store writes: never the repeats, which live beside the record.
fn record_of(incident: &Incident) -> Incident {
    let mut stored = incident.clone();
    stored.repeats = AlertRepeats::default();
    stored
}

impl MemoryStore {
    /// A panic elsewhere while holding the lock leaves the maps consistent (every write is
    /// one insert), so the store stays usable.
    fn mem(&self) -> std::sync::MutexGuard<'_, Mem> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every audit append fail (or work again), as a store outage would.
    #[cfg(any(test, feature = "testing"))]
    pub fn fail_audit_appends(&self, down: bool) {
        self.mem().audit_down = down;
    }

    /// Edits a stored audit entry in place, as someone with write access to a store could:
    /// for the tests that show verification finds it.
    #[cfg(any(test, feature = "testing"))]
    pub fn tamper_audit(&self, id: &IncidentId, seq: u64, edit: impl FnOnce(&mut AuditEntry)) {
        let mut m = self.mem();
        let entry = m
            .audit
            .get_mut(id)
            .and_then(|log| log.get_mut(&seq))
            .expect("an audit entry to tamper with");
        edit(entry);
    }
}

#[async_trait]
impl IncidentStore for MemoryStore {
    async fn create_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        let mut stored = record_of(incident);
        check_size(&stored)?;
        let mut m = self.mem();
        if m.incidents.contains_key(&incident.incident_id) {
            return Err(StoreError::AlreadyExists(incident.incident_id.to_string()));
        }
        if let Some(open) = m
            .incidents
            .values()
            .find(|i| i.fingerprint == incident.fingerprint && !i.status.is_final())
        {
            return Err(StoreError::Duplicate(open.incident_id.clone()));
        }
        stored.version = 1;
        m.incidents.insert(incident.incident_id.clone(), stored);
        Ok(())
    }
    async fn get_incident(&self, id: &IncidentId) -> Result<Option<Incident>, StoreError> {
        let m = self.mem();
        Ok(m.incidents.get(id).map(|i| m.joined(i, true)))
    }
    async fn update_incident(&self, incident: &Incident) -> Result<Incident, StoreError> {
        let mut stored = record_of(incident);
        check_size(&stored)?;
        let mut m = self.mem();
        let current = m
            .incidents
            .get(&incident.incident_id)
            .ok_or_else(|| StoreError::NotFound(incident.incident_id.to_string()))?;
        if current.version != incident.version {
            return Err(StoreError::Conflict(incident.incident_id.to_string()));
        }
        stored.version += 1;
        let joined = m.joined(&stored, true);
        m.incidents.insert(incident.incident_id.clone(), stored);
        Ok(joined)
    }
    async fn list_incidents(&self, q: &IncidentQuery) -> Result<IncidentPage, StoreError> {
        let m = self.mem();
        let mut all: Vec<&Incident> = m
            .incidents
            .values()
            .filter(|i| q.status.is_none_or(|s| i.status == s))
            .filter(|i| q.severity.is_none_or(|s| i.severity == Some(s)))
            .filter(|i| q.cursor.as_ref().is_none_or(|c| i.incident_id.0 < *c))
            .collect();
        all.sort_by(|a, b| b.incident_id.cmp(&a.incident_id));
        let limit = if q.limit == 0 { 50 } else { q.limit };
        let mut incidents = Vec::new();
        let mut bytes = 0;
        for i in all.iter().take(limit) {
            if !incidents.is_empty() && bytes + weight(i) > crate::ports::MAX_PAGE_BYTES {
                break;
            }
            bytes += weight(i);
            incidents.push(m.joined(i, false));
        }
        let next = (all.len() > incidents.len())
            .then(|| incidents.last().map(|i: &Incident| i.incident_id.0.clone()))
            .flatten();
        Ok(IncidentPage {
            incidents,
            next,
            unreadable: Vec::new(),
        })
    }
    async fn find_by_approval_id(&self, approval_id: &str) -> Result<Option<Incident>, StoreError> {
        let m = self.mem();
        Ok(m.incidents
            .values()
            .find(|i| {
                i.approval
                    .as_ref()
                    .is_some_and(|a| a.approval_id == approval_id)
            })
            .map(|i| m.joined(i, true)))
    }
    async fn latest_with_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<FingerprintMatch>, StoreError> {
        Ok(self
            .mem()
            .incidents
            .values()
            .filter(|i| i.fingerprint == fingerprint)
            .max_by(|a, b| a.incident_id.cmp(&b.incident_id))
            .map(|i| FingerprintMatch {
                incident_id: i.incident_id.clone(),
                status: i.status,
                closed_at: i.closed_at,
            }))
    }
    async fn record_repeat(
        &self,
        id: &IncidentId,
        repeat: &AlertRepeat,
    ) -> Result<AlertRepeats, StoreError> {
        let mut m = self.mem();
        if !m.incidents.contains_key(id) {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let r = m.repeats.entry(id.clone()).or_default();
        r.count += 1;
        if repeat.recurrence {
            r.recurrences += 1;
        }
        r.first_seen = Some(r.first_seen.map_or(repeat.at, |t| t.min(repeat.at)));
        r.last_seen = Some(r.last_seen.map_or(repeat.at, |t| t.max(repeat.at)));
        if r.count <= MAX_ALERT_SAMPLES {
            r.samples.push(repeat.sample.clone());
        }
        Ok(r.clone())
    }
    async fn put_attempt(
        &self,
        id: &IncidentId,
        attempt: InvestigationAttempt,
    ) -> Result<(), StoreError> {
        self.mem()
            .attempts
            .entry(id.clone())
            .or_default()
            .insert(attempt.attempt, attempt);
        Ok(())
    }
    async fn attempts(&self, id: &IncidentId) -> Result<Vec<InvestigationAttempt>, StoreError> {
        Ok(self
            .mem()
            .attempts
            .get(id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }
    async fn claim_step(&self, id: &IncidentId, record: &StepRecord) -> Result<bool, StoreError> {
        let mut m = self.mem();
        let steps = m.steps.entry(id.clone()).or_default();
        if steps
            .iter()
            .any(|s| s.phase == record.phase && s.step == record.step)
        {
            return Ok(false);
        }
        steps.push(record.clone());
        Ok(true)
    }
    async fn finish_step(&self, id: &IncidentId, record: &StepRecord) -> Result<(), StoreError> {
        let mut m = self.mem();
        let steps = m.steps.entry(id.clone()).or_default();
        match steps
            .iter_mut()
            .find(|s| s.phase == record.phase && s.step == record.step)
        {
            Some(s) => *s = record.clone(),
            None => steps.push(record.clone()),
        }
        Ok(())
    }
    async fn steps(&self, id: &IncidentId) -> Result<Vec<StepRecord>, StoreError> {
        Ok(self.mem().steps.get(id).cloned().unwrap_or_default())
    }
    async fn put_postmortem(&self, pm: &PostMortem) -> Result<(), StoreError> {
        self.mem()
            .postmortems
            .insert(pm.incident_id.clone(), pm.clone());
        Ok(())
    }
    async fn postmortem(&self, id: &IncidentId) -> Result<Option<PostMortem>, StoreError> {
        Ok(self.mem().postmortems.get(id).cloned())
    }
    async fn claim_once(
        &self,
        key: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut m = self.mem();
        m.once.retain(|_, u| *u >= now);
        if m.once.contains_key(key) {
            return Ok(false);
        }
        m.once.insert(key.to_string(), until);
        Ok(true)
    }
    async fn release_once(&self, key: &str) -> Result<(), StoreError> {
        self.mem().once.remove(key);
        Ok(())
    }
    async fn append_audit(&self, id: &IncidentId, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut m = self.mem();
        if m.audit_down {
            return Err(StoreError::Unavailable("audit log unreachable".into()));
        }
        let log = m.audit.entry(id.clone()).or_default();
        if log.contains_key(&entry.seq) {
            return Err(StoreError::Conflict(format!(
                "audit entry {} of {id} already exists",
                entry.seq
            )));
        }
        log.insert(entry.seq, entry.clone());
        Ok(())
    }
    async fn audit(&self, id: &IncidentId) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .mem()
            .audit
            .get(id)
            .map(|log| log.values().cloned().collect())
            .unwrap_or_default())
    }
}

//! The incident's audit log: every decision, step applied or failed, rollback, escalation and
//! model call, appended to a hash chain, so that editing, deleting or reordering any past entry
//! is found by [`verify`], which says at which entry.
//!
//! Each entry's `hash` is SHA-256 over a fixed serialisation of the incident id, the entry's
//! content and `prev`, the hash of the entry before it. Changing an entry breaks its own hash;
//! recomputing that hash breaks the next entry's `prev`. Someone who can write the store can
//! still rewrite the whole chain from the edited entry on: with an [`AuditKey`] configured,
//! each entry also carries `mac` = HMAC-SHA256(key, hash), which cannot be recomputed without
//! the key. What neither protects against: dropping the newest entries (the chain ends early,
//! and still verifies) or deleting an incident's whole log; see the README.
//!
//! Appends are read-then-conditional-write: an entry is written at the next `seq` only if no
//! entry holds it yet, and on a conflict the tail is read again. Each entry has a `key` naming
//! what happened (`step:apply:0`); an event whose key is already in the log is not appended
//! again, so a retried Lambda or stage records it once. Because every writer must chain onto
//! the tail it read, that check and the write are one atomic step per seq: two writers of the
//! same event can never both append it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{IncidentId, Timestamp};
use crate::ports::{IncidentStore, StoreError};
use crate::signing::{hmac_hex, secure_eq};

/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The serialisation version hashed into every entry: a future format gets a new number
/// rather than silently hashing differently.
const FORMAT: u32 = 1;

/// How many times an append re-reads the tail after losing a race before giving up.
const APPEND_TRIES: usize = 8;

/// The key that signs audit entries (`AUDIT_SIGNING_KEY`). It must live apart from the store:
/// anyone who can read it and write the store can rewrite the log undetected.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey(Vec<u8>);

impl AuditKey {
    /// `None` for an empty key: an empty HMAC key would sign nothing worth checking.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<AuditKey> {
        let bytes = bytes.into();
        (!bytes.is_empty()).then_some(AuditKey(bytes))
    }

    fn mac(&self, hash: &str) -> String {
        hmac_hex(&self.0, hash.as_bytes())
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// What happened. Only strings, integers and booleans: the hash is recomputed from the entry
/// as read back, and a float need not read back to the same bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A person's (or the policy's) answer to an approval request.
    Decision {
        /// `approved`, `rejected`, `recovered`, or `auto_approved` by the policy.
        decision: String,
        approver: String,
        /// `api`, `page`, `slack`, `cli`, `policy`.
        channel: String,
        comment: Option<String>,
        approval_id: Option<String>,
        /// The hash of the actions decided on.
        plan_hash: String,
        /// This approval's place among those the plan needs (1 of 2).
        approvals: u32,
        required: u32,
    },
    StepApplied {
        /// 1-based, as people read it.
        step: u64,
        command: String,
        executor: String,
        /// What was live before, as recorded before anything changed.
        prior: Option<String>,
        after: Option<String>,
        output: String,
    },
    StepFailed {
        step: u64,
        command: String,
        executor: String,
        error: String,
    },
    Rollback {
        step: u64,
        command: String,
        executor: String,
        succeeded: bool,
        output: String,
    },
    Escalation {
        reason: String,
        detail: String,
        paged_via: String,
    },
    ModelCall {
        stage: String,
        provider: String,
        model: String,
        input_tokens: u64,
        output_tokens: u64,
        latency_ms: u64,
        outcome: String,
    },
}

impl AuditEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Decision { .. } => "decision",
            AuditEvent::StepApplied { .. } => "step_applied",
            AuditEvent::StepFailed { .. } => "step_failed",
            AuditEvent::Rollback { .. } => "rollback",
            AuditEvent::Escalation { .. } => "escalation",
            AuditEvent::ModelCall { .. } => "model_call",
        }
    }
}

impl AuditEvent {
    /// One line for people: what happened, without the chain's fields.
    pub fn summary(&self) -> String {
        match self {
            AuditEvent::Decision {
                decision,
                approver,
                channel,
                approvals,
                required,
                ..
            } => {
                let of = if *required > 1 {
                    format!(" ({approvals} of {required})")
                } else {
                    String::new()
                };
                format!("plan {decision} by {approver} via {channel}{of}")
            }
            AuditEvent::StepApplied { step, command, .. } => {
                format!("step {step} applied: {command}")
            }
            AuditEvent::StepFailed { step, error, .. } => format!("step {step} failed: {error}"),
            AuditEvent::Rollback {
                step,
                succeeded,
                command,
                ..
            } => format!(
                "rollback of step {step} {}: {command}",
                if *succeeded { "succeeded" } else { "FAILED" }
            ),
            AuditEvent::Escalation { reason, detail, .. } => {
                format!("escalated ({reason}): {detail}")
            }
            AuditEvent::ModelCall {
                stage,
                model,
                input_tokens,
                output_tokens,
                outcome,
                ..
            } => format!(
                "{stage} call to {model}: {input_tokens} in / {output_tokens} out, {outcome}"
            ),
        }
    }
}

/// An event about to be appended: the chain fields are added by [`append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// Names the event, so a retry that records it again is recognised (`step:apply:0`).
    pub key: String,
    /// When it happened (not when it was appended).
    pub at: Timestamp,
    /// Who did it: `alice via api`, `executor aws`, `anthropic claude-…`, `iras`.
    pub actor: String,
    pub event: AuditEvent,
}

/// One entry of an incident's audit log, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    pub at: Timestamp,
    pub actor: String,
    pub event: AuditEvent,
    pub key: String,
    /// The previous entry's `hash` ([`GENESIS`] for the first).
    pub prev: String,
    /// Hex SHA-256 over the incident id, this entry's fields above and `prev`.
    pub hash: String,
    /// Hex HMAC-SHA256 of `hash` under the [`AuditKey`], when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// What is hashed: every field but `hash` and `mac`, plus the incident, so an entry (or a
/// whole log) copied from another incident does not verify. Field order is fixed by this
/// struct, never by a map.
#[derive(Serialize)]
struct Hashed<'a> {
    format: u32,
    incident: &'a str,
    seq: u64,
    at: &'a Timestamp,
    actor: &'a str,
    event: &'a AuditEvent,
    key: &'a str,
    prev: &'a str,
}

fn hash_of(incident: &IncidentId, e: &AuditEntry) -> String {
    let hashed = Hashed {
        format: FORMAT,
        incident: incident.as_str(),
        seq: e.seq,
        at: &e.at,
        actor: &e.actor,
        event: &e.event,
        key: &e.key,
        prev: &e.prev,
    };
    // Serialising these types cannot fail: no maps with non-string keys, no foreign types.
    let bytes = serde_json::to_vec(&hashed).expect("audit entries serialise");
    hex::encode(Sha256::digest(&bytes))
}

impl AuditEntry {
    /// The entry `draft` becomes at `seq` after `prev`, hashed and (with a key) signed.
    pub fn seal(
        incident: &IncidentId,
        seq: u64,
        prev: &str,
        draft: AuditDraft,
        key: Option<&AuditKey>,
    ) -> AuditEntry {
        let mut e = AuditEntry {
            seq,
            at: draft.at,
            actor: draft.actor,
            event: draft.event,
            key: draft.key,
            prev: prev.to_string(),
            hash: String::new(),
            mac: None,
        };
        e.hash = hash_of(incident, &e);
        e.mac = key.map(|k| k.mac(&e.hash));
        e
    }
}

/// Why verification stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum AuditFault {
    /// Another entry stands where this one should: entries were deleted, reordered or inserted.
    OutOfSequence { found: u64 },
    /// Its `prev` is not the previous entry's hash: the previous entry was rewritten (its hash
    /// recomputed) or replaced.
    BrokenLink,
    /// Its content no longer matches its hash: edited after it was written.
    Altered,
    /// The log is checked with a key, and this entry carries no signature.
    Unsigned,
    /// Its signature does not match: rewritten by someone without the audit key.
    BadMac,
}

/// The first entry that does not verify, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditBreak {
    /// The entry's place in the log (1-based): where it went wrong.
    pub seq: u64,
    #[serde(flatten)]
    pub fault: AuditFault,
}

impl std::fmt::Display for AuditBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seq = self.seq;
        match &self.fault {
            AuditFault::OutOfSequence { found } => write!(
                f,
                "entry {seq} is missing or out of place: entry {found} stands there \
                 (entries were deleted, reordered or inserted)"
            ),
            AuditFault::BrokenLink => write!(
                f,
                "entry {seq} does not chain onto entry {}: an earlier entry was rewritten \
                 or replaced",
                seq.saturating_sub(1)
            ),
            AuditFault::Altered => write!(
                f,
                "entry {seq} was altered: its content no longer matches its hash"
            ),
            AuditFault::Unsigned => write!(
                f,
                "entry {seq} is not signed, though the log is checked with the audit key"
            ),
            AuditFault::BadMac => write!(
                f,
                "entry {seq} was rewritten: its signature does not match (made without the audit key)"
            ),
        }
    }
}

/// Checks `entries` (as the store returns them, ascending) as the log of `incident`: `Ok`
/// with the number of entries when intact, else the first entry that is not. With `key`,
/// every entry must also carry a valid signature.
pub fn verify(
    incident: &IncidentId,
    entries: &[AuditEntry],
    key: Option<&AuditKey>,
) -> Result<usize, AuditBreak> {
    let mut prev = GENESIS;
    for (i, e) in entries.iter().enumerate() {
        let seq = i as u64 + 1;
        let broken = |fault| Err(AuditBreak { seq, fault });
        if e.seq != seq {
            return broken(AuditFault::OutOfSequence { found: e.seq });
        }
        // Its own hash first: an edited entry is named, not the one after it.
        if !secure_eq(&hash_of(incident, e), &e.hash) {
            return broken(AuditFault::Altered);
        }
        if let Some(key) = key {
            match &e.mac {
                None => return broken(AuditFault::Unsigned),
                Some(mac) if !secure_eq(&key.mac(&e.hash), mac) => {
                    return broken(AuditFault::BadMac)
                }
                Some(_) => {}
            }
        }
        if e.prev != prev {
            return broken(AuditFault::BrokenLink);
        }
        prev = &e.hash;
    }
    Ok(entries.len())
}

/// The outcome of checking a log, as the API and the CLI report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub intact: bool,
    pub entries: usize,
    /// False when no audit key was at hand: the chain was checked, the signatures were not.
    pub signatures_checked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<AuditBreak>,
    /// The same, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Verification {
    pub fn of(incident: &IncidentId, entries: &[AuditEntry], key: Option<&AuditKey>) -> Self {
        let result = verify(incident, entries, key);
        Verification {
            intact: result.is_ok(),
            entries: entries.len(),
            signatures_checked: key.is_some(),
            message: result.as_ref().err().map(|b| b.to_string()),
            problem: result.err(),
        }
    }
}

/// Appends `draft` to the log of `incident`, unless an entry with its key is already there
/// (then that entry is returned). Chains onto the tail as read; when another writer appended
/// first, reads the tail again.
pub async fn append(
    store: &dyn IncidentStore,
    key: Option<&AuditKey>,
    incident: &IncidentId,
    draft: AuditDraft,
) -> Result<AuditEntry, StoreError> {
    for _ in 0..APPEND_TRIES {
        let log = store.audit(incident).await?;
        if let Some(done) = log.iter().find(|e| e.key == draft.key) {
            return Ok(done.clone());
        }
        let (seq, prev) = match log.last() {
            Some(tail) => (tail.seq + 1, tail.hash.as_str()),
            None => (1, GENESIS),
        };
        let entry = AuditEntry::seal(incident, seq, prev, draft.clone(), key);
        match store.append_audit(incident, &entry).await {
            Ok(()) => return Ok(entry),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict(format!(
        "the audit log of {incident} kept growing under us"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn id() -> IncidentId {
        IncidentId("inc-0190000000007000800000000000000a".into())
    }

    fn t(s: i64) -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2024, 3, 12, 14, 7, 30)
            .unwrap()
            + chrono::Duration::nanoseconds(s * 1_000_000_007)
    }

    fn drafts() -> Vec<AuditDraft> {
        vec![
            AuditDraft {
                key: "model:rca:0".into(),
                at: t(1),
                actor: "anthropic claude".into(),
                event: AuditEvent::ModelCall {
                    stage: "rca".into(),
                    provider: "anthropic".into(),
                    model: "claude".into(),
                    input_tokens: 1200,
                    output_tokens: 300,
                    latency_ms: 900,
                    outcome: "ok".into(),
                },
            },
            AuditDraft {
                key: "decision:apr-1:approved:alice".into(),
                at: t(2),
                actor: "alice via api".into(),
                event: AuditEvent::Decision {
                    decision: "approved".into(),
                    approver: "alice".into(),
                    channel: "api".into(),
                    comment: Some("go — « ok »".into()),
                    approval_id: Some("apr-1".into()),
                    plan_hash: "9f86d081".into(),
                    approvals: 1,
                    required: 1,
                },
            },
            AuditDraft {
                key: "step:apply:0".into(),
                at: t(3),
                actor: "executor aws".into(),
                event: AuditEvent::StepApplied {
                    step: 1,
                    command: "aws ecs update-service --desired-count 6".into(),
                    executor: "aws".into(),
                    prior: Some("desired 4".into()),
                    after: Some("desired 6".into()),
                    output: "ok".into(),
                },
            },
            AuditDraft {
                key: "step:rollback:0".into(),
                at: t(4),
                actor: "executor aws".into(),
                event: AuditEvent::Rollback {
                    step: 1,
                    command: "aws ecs update-service --desired-count 4".into(),
                    executor: "aws".into(),
                    succeeded: true,
                    output: "restored".into(),
                },
            },
        ]
    }

    fn chain(key: Option<&AuditKey>) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for d in drafts() {
            let prev = out.last().map(|e| e.hash.clone()).unwrap_or(GENESIS.into());
            out.push(AuditEntry::seal(&id(), out.len() as u64 + 1, &prev, d, key));
        }
        out
    }

    fn key() -> AuditKey {
        AuditKey::new(b"audit-key".to_vec()).unwrap()
    }

    fn fault_at(entries: &[AuditEntry], k: Option<&AuditKey>) -> (u64, AuditFault) {
        let b = verify(&id(), entries, k).expect_err("tampering must be found");
        (b.seq, b.fault)
    }

    #[test]
    fn an_untouched_log_verifies_after_a_trip_through_json() {
        let log = chain(Some(&key()));
        let text = serde_json::to_string(&log).unwrap();
        let back: Vec<AuditEntry> = serde_json::from_str(&text).unwrap();
        assert_eq!(verify(&id(), &back, Some(&key())), Ok(4));
        assert_eq!(verify(&id(), &back, None), Ok(4));
        assert_eq!(verify(&id(), &[], Some(&key())), Ok(0));
        assert_eq!(back[0].prev, GENESIS);
        assert_eq!(back[1].prev, back[0].hash);
    }

    #[test]
    fn editing_any_field_of_a_past_entry_is_found_at_that_entry() {
        type Edit = fn(&mut AuditEntry);
        let edits: [(&str, Edit); 7] = [
            ("actor", |e| e.actor = "mallory via api".into()),
            ("at", |e| e.at += chrono::Duration::seconds(1)),
            ("key", |e| e.key.push('x')),
            ("event kind", |e| {
                e.event = AuditEvent::Escalation {
                    reason: "r".into(),
                    detail: "d".into(),
                    paged_via: "p".into(),
                }
            }),
            ("event detail", |e| {
                if let AuditEvent::Decision { approver, .. } = &mut e.event {
                    *approver = "mallory".into();
                }
            }),
            ("hash", |e| e.hash = GENESIS.into()),
            ("prev", |e| e.prev = GENESIS.into()),
        ];
        for (what, edit) in edits {
            let mut log = chain(None);
            edit(&mut log[1]);
            let (seq, fault) = fault_at(&log, None);
            assert_eq!(seq, 2, "{what}: {fault:?}");
            assert!(matches!(fault, AuditFault::Altered), "{what}: {fault:?}");
        }
    }

    #[test]
    fn an_entry_rehashed_after_editing_breaks_the_next_link_and_without_the_key_its_mac() {
        let mut log = chain(None);
        log[1].actor = "mallory via api".into();
        log[1].hash = hash_of(&id(), &log[1]);
        assert_eq!(fault_at(&log, None), (3, AuditFault::BrokenLink));

        let k = key();
        let mut signed = chain(Some(&k));
        signed[1].actor = "mallory via api".into();
        signed[1].hash = hash_of(&id(), &signed[1]);
        assert_eq!(fault_at(&signed, Some(&k)), (2, AuditFault::BadMac));
        // Even the whole chain rewritten from there on, consistently, is found by its mac.
        for i in 2..signed.len() {
            signed[i].prev = signed[i - 1].hash.clone();
            signed[i].hash = hash_of(&id(), &signed[i]);
        }
        assert_eq!(
            verify(&id(), &signed, None),
            Ok(4),
            "the chain alone is fooled"
        );
        assert_eq!(fault_at(&signed, Some(&k)), (2, AuditFault::BadMac));
        // A mac taken off is not a way round it.
        let mut stripped = chain(Some(&k));
        stripped[3].mac = None;
        assert_eq!(fault_at(&stripped, Some(&k)), (4, AuditFault::Unsigned));
        // Signed with another key: not ours.
        let other = chain(Some(&AuditKey::new(b"other".to_vec()).unwrap()));
        assert_eq!(fault_at(&other, Some(&k)), (1, AuditFault::BadMac));
    }

    #[test]
    fn deleting_reordering_or_inserting_entries_is_found_where_it_happened() {
        let mut deleted = chain(None);
        deleted.remove(1);
        assert_eq!(
            fault_at(&deleted, None),
            (2, AuditFault::OutOfSequence { found: 3 })
        );

        let mut swapped = chain(None);
        swapped.swap(1, 2);
        assert_eq!(
            fault_at(&swapped, None),
            (2, AuditFault::OutOfSequence { found: 3 })
        );

        // Renumbered after a deletion, so the sequence looks whole: each later hash breaks.
        let mut renumbered = chain(None);
        renumbered.remove(1);
        for (i, e) in renumbered.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
        }
        assert_eq!(fault_at(&renumbered, None), (2, AuditFault::Altered));

        // Renumbered and rehashed: the link to the entry before the gap breaks.
        let mut rebuilt = renumbered.clone();
        for e in rebuilt.iter_mut().skip(1) {
            e.hash = hash_of(&id(), e);
        }
        assert_eq!(fault_at(&rebuilt, None), (2, AuditFault::BrokenLink));

        // A log of another incident does not verify as this one's.
        let copied = chain(None);
        let other = IncidentId("inc-0190000000007000800000000000000b".into());
        assert_eq!(
            verify(&other, &copied, None).unwrap_err().fault,
            AuditFault::Altered
        );
    }

    #[test]
    fn the_fault_says_which_entry_in_words() {
        let mut log = chain(None);
        log[2].actor = "x".into();
        let b = verify(&id(), &log, None).unwrap_err();
        assert_eq!(
            b.to_string(),
            "entry 3 was altered: its content no longer matches its hash"
        );
        let v = Verification::of(&id(), &log, None);
        assert!(!v.intact);
        assert_eq!(v.entries, 4);
        assert!(!v.signatures_checked);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["problem"]["seq"], 3);
        assert_eq!(json["problem"]["fault"], "altered");
    }

    #[tokio::test]
    async fn appending_chains_onto_the_tail_records_a_key_once_and_does_not_heal_tampering() {
        let store = crate::memory::MemoryStore::default();
        let k = key();
        for d in drafts() {
            append(&store, Some(&k), &id(), d.clone()).await.unwrap();
            // A retry of the same event is recorded once.
            append(&store, Some(&k), &id(), d).await.unwrap();
        }
        let log = store.audit(&id()).await.unwrap();
        assert_eq!(log.len(), 4);
        assert_eq!(verify(&id(), &log, Some(&k)), Ok(4));

        // An entry written at a seq already taken is refused.
        let late = AuditEntry::seal(&id(), 2, &log[0].hash, drafts()[0].clone(), Some(&k));
        assert!(matches!(
            store.append_audit(&id(), &late).await,
            Err(StoreError::Conflict(_))
        ));

        // Tamper with entry 2, then keep appending: the break is still found at 2.
        store.tamper_audit(&id(), 2, |e| e.actor = "mallory".into());
        let mut more = drafts()[0].clone();
        more.key = "model:postmortem:0".into();
        append(&store, Some(&k), &id(), more).await.unwrap();
        let log = store.audit(&id()).await.unwrap();
        assert_eq!(log.len(), 5);
        assert_eq!(
            verify(&id(), &log, Some(&k)).unwrap_err(),
            AuditBreak {
                seq: 2,
                fault: AuditFault::Altered
            }
        );
    }
}

//! The incident store on DynamoDB: one table, the same contract as the embedded SQLite store.
//!
//! Items (`PK`, `SK`):
//! - `INC#<id>`, `META`: the incident as JSON in `body`, plus `id`, `status`, `severity`,
//!   `version`, `approval_id`, `fingerprint` and `entity = "incident"` for the indexes.
//! - `INC#<id>`, `ATTEMPT#<attempt, 10 digits>`: one investigation attempt.
//! - `INC#<id>`, `STEP#<phase>#<step, 10 digits>`: one remediation step, with `seq`, its claim
//!   order, taken from the counter item `INC#<id>`, `STEPSEQ`.
//! - `INC#<id>`, `POSTMORTEM`: the post-mortem, with `severity`, `outcome`, `duration_seconds`.
//! - `INC#<id>`, `META#REPEATS`: the alert's repeat counters (`count`, `recurrences`,
//!   `first_seen`, `last_seen`), updated in place: a storm never rewrites the incident's item,
//!   and one counter update costs one write unit whatever the incident's size.
//! - `INC#<id>`, `META#SAMPLE#<n, 10 digits>`: the first repeats' bodies, one item each.
//! - `FP#<fingerprint>`, `DEDUP`: the open incident holding an alert fingerprint, with `ttl`.
//! - `FP#<fingerprint>`, `LATEST`: the newest incident created with it, open or closed.
//! - `ONCE#<key>`, `ONCE`: a signed webhook request already received, with `until` (epoch
//!   seconds) and `ttl`, so a replay is refused across cold starts and DynamoDB expires it.
//! - `INC#<id>`, `AUDIT#<seq, 10 digits>`: one audit log entry as JSON in `body`, written
//!   only if its seq is free (`attribute_not_exists`), never updated.
//!
//! The META item also carries `closed_at` once the incident is final. Reading an incident is
//! one query on `PK` with `SK` beginning `META`: the record, its counters and samples.
//!
//! Indexes: `by_status` (`status`, `id`), `by_severity` (`severity`, `id`), `by_created`
//! (`entity`, `id`), `by_approval` (`approval_id`, keys only) and `postmortems_by_outcome`
//! (`outcome`, `duration_seconds`). Only the META item carries `id`, `status` and `entity`, so
//! the incident indexes hold incidents only; only post-mortems carry `outcome`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, Delete,
    GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use iras_core::audit::AuditEntry;
use iras_core::ports::{
    FingerprintMatch, IncidentPage, IncidentQuery, IncidentStore, StoreError, UnreadableIncident,
    MAX_ALERT_SAMPLES,
};
use iras_core::*;
use sha2::{Digest, Sha256};

use crate::describe;

type Item = HashMap<String, AttributeValue>;

const META: &str = "META";
const POSTMORTEM: &str = "POSTMORTEM";
const DEDUP: &str = "DEDUP";
const STEPSEQ: &str = "STEPSEQ";
const REPEATS: &str = "META#REPEATS";
const SAMPLE_PREFIX: &str = "META#SAMPLE#";
const LATEST: &str = "LATEST";
const ATTEMPT_PREFIX: &str = "ATTEMPT#";
const STEP_PREFIX: &str = "STEP#";
const AUDIT_PREFIX: &str = "AUDIT#";
const ENTITY_INCIDENT: &str = "incident";

const BY_STATUS: &str = "by_status";
const BY_SEVERITY: &str = "by_severity";
const BY_CREATED: &str = "by_created";
const BY_APPROVAL: &str = "by_approval";
const POSTMORTEMS_BY_OUTCOME: &str = "postmortems_by_outcome";

/// DynamoDB's item limit is 400 KB, keys and attribute names included: an attempt's JSON is
/// kept well under it.
pub const MAX_ATTEMPT_BYTES: usize = 350 * 1024;

/// Partition keys may be 2048 bytes; longer fingerprints are hashed.
const MAX_FINGERPRINT_KEY_BYTES: usize = 1024;

/// A concurrent transaction on the same items cancels ours without a verdict: try again.
const TRANSACTION_TRIES: u32 = 5;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn sdk_unavailable<E: std::error::Error + 'static>(e: &E) -> StoreError {
    StoreError::Unavailable(describe(e))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn inc_pk(id: &IncidentId) -> String {
    format!("INC#{id}")
}

fn fingerprint_pk(fingerprint: &str) -> String {
    if fingerprint.len() <= MAX_FINGERPRINT_KEY_BYTES {
        format!("FP#{fingerprint}")
    } else {
        format!(
            "FP#sha256:{}",
            hex::encode(Sha256::digest(fingerprint.as_bytes()))
        )
    }
}

fn attempt_sk(attempt: u32) -> String {
    format!("{ATTEMPT_PREFIX}{attempt:010}")
}

fn phase_key(p: StepPhase) -> &'static str {
    match p {
        StepPhase::Apply => "apply",
        StepPhase::Rollback => "rollback",
    }
}

fn step_sk(phase: StepPhase, step: usize) -> String {
    format!("{STEP_PREFIX}{}#{step:010}", phase_key(phase))
}

fn audit_sk(seq: u64) -> String {
    format!("{AUDIT_PREFIX}{seq:010}")
}

fn outcome_key(o: PostMortemOutcome) -> &'static str {
    match o {
        PostMortemOutcome::Resolved => "resolved",
        PostMortemOutcome::Escalated => "escalated",
        PostMortemOutcome::Recovered => "recovered",
    }
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("PK".to_string(), s(pk)), ("SK".to_string(), s(sk))])
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(corrupt)
}

/// Fixed-width UTC text, so stored times compare as strings and read back exactly.
fn time_text(t: Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

fn time_attr(item: &Item, name: &str) -> Result<Option<Timestamp>, StoreError> {
    string_attr(item, name)
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(corrupt)
        })
        .transpose()
}

fn repeats_from(item: &Item) -> Result<AlertRepeats, StoreError> {
    Ok(AlertRepeats {
        count: number_attr(item, "count").unwrap_or(0) as u64,
        recurrences: number_attr(item, "recurrences").unwrap_or(0) as u64,
        first_seen: time_attr(item, "first_seen")?,
        last_seen: time_attr(item, "last_seen")?,
        samples: Vec::new(),
    })
}

fn sample_sk(n: u64) -> String {
    format!("{SAMPLE_PREFIX}{n:010}")
}

fn decode_body<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    match item.get("body") {
        Some(AttributeValue::S(body)) => serde_json::from_str(body).map_err(corrupt),
        _ => Err(corrupt(format!(
            "item {:?}/{:?} has no JSON body",
            item.get("PK"),
            item.get("SK")
        ))),
    }
}

fn string_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

fn number_attr(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn reason_failed_condition(r: Option<&CancellationReason>) -> bool {
    r.and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
}

fn reasons_say_conflict(reasons: &[CancellationReason]) -> bool {
    reasons
        .iter()
        .any(|r| r.code() == Some("TransactionConflict"))
}

async fn backoff(try_no: u32) {
    tokio::time::sleep(Duration::from_millis(20 * 2u64.pow(try_no))).await;
}

/// What [`DynamoStore::list_postmortems`] looks for. Results come longest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostMortemQuery {
    pub severity: Option<Severity>,
    pub outcome: Option<PostMortemOutcome>,
    pub min_duration_seconds: Option<i64>,
    /// 0 means 50.
    pub limit: usize,
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    dedup_ttl: Duration,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            // Long past any approval window; only a pipeline that died holds a key this long.
            dedup_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// How long an open incident's fingerprint holds before a repeat alert may open a new
    /// incident anyway (for an incident whose pipeline died without reaching a final status).
    pub fn with_dedup_ttl(mut self, ttl: Duration) -> Self {
        self.dedup_ttl = ttl;
        self
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Creates the table this store expects (on-demand, its indexes, TTL on `ttl`) and waits
    /// until it is active. An existing table is left as it is.
    pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
        let attr = |n: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(t)
                .build()
                .map_err(unavailable)
        };
        let key_elem = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .map_err(unavailable)
        };
        let gsi = |name: &str, hash: &str, range: Option<&str>, projection: ProjectionType| {
            let mut keys = vec![key_elem(hash, KeyType::Hash)?];
            if let Some(range) = range {
                keys.push(key_elem(range, KeyType::Range)?);
            }
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .set_key_schema(Some(keys))
                .projection(Projection::builder().projection_type(projection).build())
                .build()
                .map_err(unavailable)
        };
        let result = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("PK", ScalarAttributeType::S)?)
            .attribute_definitions(attr("SK", ScalarAttributeType::S)?)
            .attribute_definitions(attr("id", ScalarAttributeType::S)?)
            .attribute_definitions(attr("status", ScalarAttributeType::S)?)
            .attribute_definitions(attr("severity", ScalarAttributeType::S)?)
            .attribute_definitions(attr("entity", ScalarAttributeType::S)?)
            .attribute_definitions(attr("approval_id", ScalarAttributeType::S)?)
            .attribute_definitions(attr("outcome", ScalarAttributeType::S)?)
            .attribute_definitions(attr("duration_seconds", ScalarAttributeType::N)?)
            .key_schema(key_elem("PK", KeyType::Hash)?)
            .key_schema(key_elem("SK", KeyType::Range)?)
            .global_secondary_indexes(gsi(BY_STATUS, "status", Some("id"), ProjectionType::All)?)
            .global_secondary_indexes(gsi(
                BY_SEVERITY,
                "severity",
                Some("id"),
                ProjectionType::All,
            )?)
            .global_secondary_indexes(gsi(BY_CREATED, "entity", Some("id"), ProjectionType::All)?)
            // Keys only: the lookup re-reads the incident with a consistent read anyway.
            .global_secondary_indexes(gsi(
                BY_APPROVAL,
                "approval_id",
                None,
                ProjectionType::KeysOnly,
            )?)
            .global_secondary_indexes(gsi(
                POSTMORTEMS_BY_OUTCOME,
                "outcome",
                Some("duration_seconds"),
                ProjectionType::All,
            )?)
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e) => {
                let e = e.into_service_error();
                if e.is_resource_in_use_exception() {
                    return Ok(());
                }
                return Err(sdk_unavailable(&e));
            }
        }
        // Real DynamoDB takes a while to build the indexes; emulators are active at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        loop {
            let out = client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(|e| sdk_unavailable(&e))?;
            let active = out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active);
            if active {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(unavailable(format!(
                    "table {name} is not active after 5 minutes"
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("ttl")
                    .build()
                    .map_err(unavailable)?,
            )
            .send()
            .await
            .map_err(|e| sdk_unavailable(&e))?;
        Ok(())
    }

    fn meta_item(&self, incident: &Incident) -> Result<Item, StoreError> {
        let mut item = key(inc_pk(&incident.incident_id), META);
        item.insert("id".into(), s(incident.incident_id.as_str()));
        item.insert("entity".into(), s(ENTITY_INCIDENT));
        // The repeats live in their own items, never in the record.
        let mut record = incident.clone();
        record.repeats = AlertRepeats::default();
        let body = encode(&record)?;
        // Refused here, alike in every store, rather than as DynamoDB's ValidationException
        // (which would read as "unavailable" and be retried for ever).
        iras_core::ports::check_record_size(&incident.incident_id, &body)?;
        item.insert("body".into(), s(body));
        item.insert("status".into(), s(incident.status.as_str()));
        if let Some(closed) = incident.closed_at {
            item.insert("closed_at".into(), s(time_text(closed)));
        }
        item.insert("version".into(), n(incident.version));
        item.insert("fingerprint".into(), s(&incident.fingerprint));
        if let Some(sev) = incident.severity {
            item.insert("severity".into(), s(sev.as_str()));
        }
        // Index keys may not be empty strings: an approval without an id is not findable.
        if let Some(a) = incident
            .approval
            .as_ref()
            .filter(|a| !a.approval_id.is_empty())
        {
            item.insert("approval_id".into(), s(&a.approval_id));
        }
        Ok(item)
    }

    fn put(&self, item: Item) -> aws_sdk_dynamodb::types::builders::PutBuilder {
        Put::builder().table_name(&self.table).set_item(Some(item))
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_unavailable(&e))?;
        Ok(out.item)
    }

    /// Every item of an incident whose sort key starts with `prefix`, ascending by sort key.
    async fn query_prefix(&self, id: &IncidentId, prefix: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":pk", s(inc_pk(id)))
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_unavailable(&e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Who holds a fingerprint now, when a transaction's cancellation did not say.
    async fn dedup_holder(&self, fingerprint: &str) -> Result<Option<IncidentId>, StoreError> {
        let item = self.get_item(fingerprint_pk(fingerprint), DEDUP).await?;
        Ok(item
            .as_ref()
            .and_then(|i| string_attr(i, "incident_id"))
            .map(|id| IncidentId(id.to_string())))
    }

    fn now_epoch() -> i64 {
        chrono::Utc::now().timestamp()
    }

    /// The next claim number of an incident's steps (atomic counter; gaps are harmless).
    async fn next_step_seq(&self, id: &IncidentId) -> Result<i64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(inc_pk(id), STEPSEQ)))
            .update_expression("ADD #next :one")
            .expression_attribute_names("#next", "next")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_unavailable(&e))?;
        out.attributes
            .as_ref()
            .and_then(|a| number_attr(a, "next"))
            .ok_or_else(|| corrupt("step counter returned no number"))
    }

    fn step_item(
        &self,
        id: &IncidentId,
        record: &StepRecord,
        seq: i64,
    ) -> Result<Item, StoreError> {
        let mut item = key(inc_pk(id), &step_sk(record.phase, record.step));
        item.insert("seq".into(), n(seq));
        item.insert("body".into(), s(encode(record)?));
        Ok(item)
    }

    /// Writes the incident if its stored version is still `expected`; on a final status, also
    /// releases the fingerprint when `release_fingerprint` (and the key is still this incident's).
    async fn conditional_update(
        &self,
        stored: &Incident,
        expected: u64,
        release_fingerprint: bool,
    ) -> Result<(), UpdateFailure> {
        let item = self.meta_item(stored).map_err(UpdateFailure::Store)?;
        let id = stored.incident_id.to_string();
        const CONDITION: &str = "attribute_exists(PK) AND #version = :expected";
        if !release_fingerprint {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(CONDITION)
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(expected))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            return match result.map_err(SdkError::into_service_error) {
                Ok(_) => Ok(()),
                // The old item comes back only if there was one: that tells a stale version
                // from a missing incident without another read.
                Err(PutItemError::ConditionalCheckFailedException(e)) => {
                    Err(UpdateFailure::Store(if e.item().is_some() {
                        StoreError::Conflict(id)
                    } else {
                        StoreError::NotFound(id)
                    }))
                }
                Err(e) => Err(UpdateFailure::Store(sdk_unavailable(&e))),
            };
        }
        let put = self
            .put(item)
            .condition_expression(CONDITION)
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(expected))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| UpdateFailure::Store(unavailable(e)))?;
        let release = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(fingerprint_pk(&stored.fingerprint), DEDUP)))
            // Never release a key that another incident took after ours expired.
            .condition_expression("attribute_not_exists(PK) OR incident_id = :id")
            .expression_attribute_values(":id", s(&id))
            .build()
            .map_err(|e| UpdateFailure::Store(unavailable(e)))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().delete(release).build())
            .send()
            .await;
        match result.map_err(SdkError::into_service_error) {
            Ok(_) => Ok(()),
            Err(TransactWriteItemsError::TransactionCanceledException(e)) => {
                let reasons = e.cancellation_reasons();
                if reason_failed_condition(reasons.first()) {
                    let exists = reasons.first().and_then(CancellationReason::item).is_some();
                    Err(UpdateFailure::Store(if exists {
                        StoreError::Conflict(id)
                    } else {
                        StoreError::NotFound(id)
                    }))
                } else if reason_failed_condition(reasons.get(1)) {
                    Err(UpdateFailure::KeyHeldByAnother)
                } else if reasons_say_conflict(reasons) {
                    Err(UpdateFailure::Retry)
                } else {
                    Err(UpdateFailure::Store(sdk_unavailable(&e)))
                }
            }
            Err(e) => Err(UpdateFailure::Store(sdk_unavailable(&e))),
        }
    }

    /// The repeat counters of the given incidents (those with any), by id.
    async fn repeat_counters<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, AlertRepeats>, StoreError> {
        let keys: Vec<Item> = ids
            .filter(|id| !id.is_empty())
            .map(|id| key(format!("INC#{id}"), REPEATS))
            .collect();
        let mut found = HashMap::new();
        // BatchGetItem reads at most 100 keys a call.
        for chunk in keys.chunks(100) {
            let mut pending = Some(
                aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(unavailable)?,
            );
            for try_no in 0..TRANSACTION_TRIES {
                let Some(request) = pending.take() else { break };
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_unavailable(&e))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    if let Some(id) =
                        string_attr(&item, "PK").and_then(|pk| pk.strip_prefix("INC#"))
                    {
                        found.insert(id.to_string(), repeats_from(&item)?);
                    }
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    backoff(try_no).await;
                }
            }
        }
        Ok(found)
    }

    /// Post-mortems by outcome, severity and minimum duration, longest first: "which P1s took
    /// over an hour", "every escalated incident".
    pub async fn list_postmortems(
        &self,
        q: &PostMortemQuery,
    ) -> Result<Vec<PostMortem>, StoreError> {
        let limit = if q.limit == 0 { 50 } else { q.limit.min(500) };
        let outcomes: Vec<PostMortemOutcome> = match q.outcome {
            Some(o) => vec![o],
            None => vec![
                PostMortemOutcome::Resolved,
                PostMortemOutcome::Escalated,
                PostMortemOutcome::Recovered,
            ],
        };
        let mut found = Vec::new();
        for outcome in outcomes {
            let mut start: Option<Item> = None;
            let mut taken = 0;
            loop {
                let mut query = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(POSTMORTEMS_BY_OUTCOME)
                    .expression_attribute_names("#outcome", "outcome")
                    .expression_attribute_values(":outcome", s(outcome_key(outcome)))
                    .scan_index_forward(false)
                    .set_exclusive_start_key(start);
                query = match q.min_duration_seconds {
                    Some(min) => query
                        .key_condition_expression("#outcome = :outcome AND #duration >= :min")
                        .expression_attribute_names("#duration", "duration_seconds")
                        .expression_attribute_values(":min", n(min)),
                    None => query.key_condition_expression("#outcome = :outcome"),
                };
                if let Some(sev) = q.severity {
                    query = query
                        .filter_expression("#severity = :severity")
                        .expression_attribute_names("#severity", "severity")
                        .expression_attribute_values(":severity", s(sev.as_str()));
                }
                let out = query.send().await.map_err(|e| sdk_unavailable(&e))?;
                for item in out.items.unwrap_or_default() {
                    if taken < limit {
                        found.push(decode_body::<PostMortem>(&item)?);
                        taken += 1;
                    }
                }
                start = out.last_evaluated_key.filter(|k| !k.is_empty());
                if start.is_none() || taken >= limit {
                    break;
                }
            }
        }
        found.sort_by(|a, b| {
            b.duration_seconds
                .cmp(&a.duration_seconds)
                .then_with(|| b.incident_id.cmp(&a.incident_id))
        });
        found.truncate(limit);
        Ok(found)
    }
}

enum UpdateFailure {
    Store(StoreError),
    /// The fingerprint's key now belongs to another incident: update without releasing it.
    KeyHeldByAnother,
    Retry,
}

/// The attempt's JSON, cut to fit `max` bytes: log lines go first (routine before warnings and
/// errors, oldest first), then whole metric series (largest first). What was dropped is said in
/// `context.truncated`, so the analyst and the post-mortem know the evidence was cut.
pub fn fit_attempt(attempt: &InvestigationAttempt, max: usize) -> Result<String, StoreError> {
    let full = encode(attempt)?;
    if full.len() <= max {
        return Ok(full);
    }
    // Room for the markers themselves.
    const MARKER_ROOM: usize = 512;
    let need = full.len() + MARKER_ROOM - max;
    let mut cut = attempt.clone();
    let ctx = &mut cut.context;
    let mut freed = 0usize;

    let total_logs = ctx.logs.len();
    let mut order: Vec<usize> = (0..total_logs).collect();
    order.sort_by_key(|&i| (ctx.logs[i].level.is_problem(), ctx.logs[i].timestamp, i));
    let mut dropped = vec![false; total_logs];
    let mut dropped_logs = 0;
    for i in order {
        if freed >= need {
            break;
        }
        // One comma per element in the array.
        freed += encode(&ctx.logs[i])?.len() + 1;
        dropped[i] = true;
        dropped_logs += 1;
    }
    if dropped_logs > 0 {
        let mut keep = dropped.iter().map(|d| !d);
        ctx.logs.retain(|_| keep.next().unwrap_or(true));
        ctx.truncated.push(format!(
            "logs: dropped {dropped_logs} of {total_logs} lines (routine and oldest first) to fit \
             the store's {} KB item limit",
            max / 1024
        ));
    }

    if freed < need {
        let total_series = ctx.metrics.len();
        let mut sized: Vec<(usize, usize)> = ctx
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| encode(m).map(|j| (j.len() + 1, i)))
            .collect::<Result<_, _>>()?;
        sized.sort_by(|a, b| b.cmp(a));
        let mut drop_series = vec![false; total_series];
        let mut dropped_series = 0;
        for (size, i) in sized {
            if freed >= need {
                break;
            }
            freed += size;
            drop_series[i] = true;
            dropped_series += 1;
        }
        if dropped_series > 0 {
            let mut keep = drop_series.iter().map(|d| !d);
            ctx.metrics.retain(|_| keep.next().unwrap_or(true));
            ctx.truncated.push(format!(
                "metrics: dropped {dropped_series} of {total_series} series (largest first) to \
                 fit the store's {} KB item limit",
                max / 1024
            ));
        }
    }

    let body = encode(&cut)?;
    if body.len() > max {
        return Err(StoreError::Unavailable(format!(
            "attempt {} is {} bytes even without its logs and metrics (limit {max})",
            attempt.attempt,
            body.len()
        )));
    }
    Ok(body)
}

#[async_trait]
impl IncidentStore for DynamoStore {
    async fn create_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        let mut stored = incident.clone();
        stored.version = 1;
        let id = stored.incident_id.to_string();
        for try_no in 0..TRANSACTION_TRIES {
            let create = self
                .put(self.meta_item(&stored)?)
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map_err(unavailable)?;
            let mut tx = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(create).build());
            // A final incident holds no fingerprint, as in the embedded store.
            if !stored.status.is_final() {
                let now = Self::now_epoch();
                let mut dedup = key(fingerprint_pk(&stored.fingerprint), DEDUP);
                dedup.insert("incident_id".into(), s(&id));
                dedup.insert("fingerprint".into(), s(&stored.fingerprint));
                dedup.insert("ttl".into(), n(now + self.dedup_ttl.as_secs() as i64));
                let take = self
                    .put(dedup)
                    // TTL deletion lags by up to days: an expired key is free already.
                    .condition_expression("attribute_not_exists(PK) OR #ttl < :now")
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":now", n(now))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map_err(unavailable)?;
                tx = tx.transact_items(TransactWriteItem::builder().put(take).build());
            }
            let mut latest = key(fingerprint_pk(&stored.fingerprint), LATEST);
            latest.insert("incident_id".into(), s(&id));
            let latest = self.put(latest).build().map_err(unavailable)?;
            tx = tx.transact_items(TransactWriteItem::builder().put(latest).build());
            let e = match tx.send().await.map_err(SdkError::into_service_error) {
                Ok(_) => return Ok(()),
                Err(TransactWriteItemsError::TransactionCanceledException(e)) => e,
                Err(e) => return Err(sdk_unavailable(&e)),
            };
            let reasons = e.cancellation_reasons();
            // The id is checked first, as the embedded store does.
            if reason_failed_condition(reasons.first()) {
                return Err(StoreError::AlreadyExists(id));
            }
            if reason_failed_condition(reasons.get(1)) {
                let holder = reasons[1]
                    .item()
                    .and_then(|i| string_attr(i, "incident_id"))
                    .map(|h| IncidentId(h.to_string()));
                let holder = match holder {
                    Some(h) => Some(h),
                    None => self.dedup_holder(&stored.fingerprint).await?,
                };
                match holder {
                    Some(h) => return Err(StoreError::Duplicate(h)),
                    // Released between our write and our read: try again.
                    None => {
                        backoff(try_no).await;
                        continue;
                    }
                }
            }
            if reasons_say_conflict(reasons) {
                backoff(try_no).await;
                continue;
            }
            return Err(sdk_unavailable(&e));
        }
        Err(unavailable(format!(
            "creating {id} kept conflicting with concurrent writes"
        )))
    }

    async fn get_incident(&self, id: &IncidentId) -> Result<Option<Incident>, StoreError> {
        // The record, its repeat counters and samples: every item whose key begins `META`.
        let items = self.query_prefix(id, META).await?;
        let Some(meta) = items.iter().find(|i| string_attr(i, "SK") == Some(META)) else {
            return Ok(None);
        };
        let mut incident: Incident = decode_body(meta)?;
        if let Some(r) = items.iter().find(|i| string_attr(i, "SK") == Some(REPEATS)) {
            incident.repeats = repeats_from(r)?;
        }
        for sample in items
            .iter()
            .filter(|i| string_attr(i, "SK").is_some_and(|k| k.starts_with(SAMPLE_PREFIX)))
        {
            incident.repeats.samples.push(decode_body(sample)?);
        }
        Ok(Some(incident))
    }

    async fn update_incident(&self, incident: &Incident) -> Result<Incident, StoreError> {
        let mut stored = incident.clone();
        stored.version = incident.version + 1;
        let mut release = stored.status.is_final();
        for try_no in 0..TRANSACTION_TRIES {
            match self
                .conditional_update(&stored, incident.version, release)
                .await
            {
                Ok(()) => return Ok(stored),
                Err(UpdateFailure::Store(e)) => return Err(e),
                Err(UpdateFailure::KeyHeldByAnother) => release = false,
                Err(UpdateFailure::Retry) => backoff(try_no).await,
            }
        }
        Err(unavailable(format!(
            "updating {} kept conflicting with concurrent writes",
            incident.incident_id
        )))
    }

    async fn list_incidents(&self, q: &IncidentQuery) -> Result<IncidentPage, StoreError> {
        let limit = if q.limit == 0 { 50 } else { q.limit.min(500) };
        let (index, partition_attr, partition) = match (q.status, q.severity) {
            (Some(st), _) => (BY_STATUS, "status", st.as_str()),
            (None, Some(sev)) => (BY_SEVERITY, "severity", sev.as_str()),
            (None, None) => (BY_CREATED, "entity", ENTITY_INCIDENT),
        };
        let severity_filter = q.status.and(q.severity);
        let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
        let mut incidents = Vec::new();
        let mut start: Option<Item> = None;
        let mut bytes = 0;
        let mut heavy = false;
        // One more than asked tells whether there is a next page.
        'pages: while incidents.len() <= limit {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .expression_attribute_names("#p", partition_attr)
                .expression_attribute_values(":p", s(partition))
                .scan_index_forward(false)
                .set_exclusive_start_key(start);
            query = match cursor {
                Some(c) => query
                    .key_condition_expression("#p = :p AND #id < :cursor")
                    .expression_attribute_names("#id", "id")
                    .expression_attribute_values(":cursor", s(c)),
                None => query.key_condition_expression("#p = :p"),
            };
            query = match severity_filter {
                // Limit counts items read before the filter: read pages, not the exact count.
                Some(sev) => query
                    .filter_expression("#sev = :sev")
                    .expression_attribute_names("#sev", "severity")
                    .expression_attribute_values(":sev", s(sev.as_str()))
                    .limit(100),
                None => query.limit((limit + 1 - incidents.len()) as i32),
            };
            let out = query.send().await.map_err(|e| sdk_unavailable(&e))?;
            for item in out.items.unwrap_or_default() {
                let id = string_attr(&item, "id").unwrap_or_default().to_string();
                let weight = string_attr(&item, "body").map(str::len).unwrap_or(0);
                // A page stops at MAX_PAGE_BYTES of records (and holds at least one).
                if !incidents.is_empty() && bytes + weight > iras_core::ports::MAX_PAGE_BYTES {
                    heavy = true;
                    break 'pages;
                }
                bytes += weight;
                // One record that cannot be read must not hide every other one.
                incidents.push((id, decode_body::<Incident>(&item)));
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                break;
            }
        }
        let next = if incidents.len() > limit || heavy {
            incidents.truncate(limit);
            incidents.last().map(|(id, _)| id.clone())
        } else {
            None
        };
        let counters = self
            .repeat_counters(incidents.iter().map(|(id, _)| id.as_str()))
            .await?;
        let mut page = IncidentPage {
            next,
            ..IncidentPage::default()
        };
        for (id, decoded) in incidents {
            match decoded {
                Ok(mut i) => {
                    if let Some(r) = counters.get(&id) {
                        i.repeats = r.clone();
                    }
                    page.incidents.push(i);
                }
                Err(e) => page.unreadable.push(UnreadableIncident {
                    incident_id: IncidentId(id),
                    error: e.to_string(),
                }),
            }
        }
        Ok(page)
    }

    async fn find_by_approval_id(&self, approval_id: &str) -> Result<Option<Incident>, StoreError> {
        if approval_id.is_empty() {
            return Ok(None);
        }
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_APPROVAL)
            .key_condition_expression("approval_id = :a")
            .expression_attribute_values(":a", s(approval_id))
            .send()
            .await
            .map_err(|e| sdk_unavailable(&e))?;
        for item in out.items.unwrap_or_default() {
            let Some(pk) = string_attr(&item, "PK") else {
                continue;
            };
            let Some(id) = pk.strip_prefix("INC#") else {
                continue;
            };
            // The index lags the table; the consistent read has the approval as it is now.
            if let Some(incident) = self.get_incident(&IncidentId(id.to_string())).await? {
                if incident
                    .approval
                    .as_ref()
                    .is_some_and(|a| a.approval_id == approval_id)
                {
                    return Ok(Some(incident));
                }
            }
        }
        Ok(None)
    }

    async fn latest_with_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<FingerprintMatch>, StoreError> {
        let Some(latest) = self.get_item(fingerprint_pk(fingerprint), LATEST).await? else {
            return Ok(None);
        };
        let Some(id) = string_attr(&latest, "incident_id") else {
            return Err(corrupt(format!(
                "the latest of {fingerprint} names no incident"
            )));
        };
        let id = IncidentId(id.to_string());
        // Only the indexed attributes: the record's body is never decoded for this.
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(inc_pk(&id), META)))
            .projection_expression("#status, closed_at")
            .expression_attribute_names("#status", "status")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_unavailable(&e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let status = string_attr(&item, "status")
            .and_then(IncidentStatus::parse)
            .ok_or_else(|| corrupt(format!("incident {id} has no readable status")))?;
        Ok(Some(FingerprintMatch {
            incident_id: id,
            status,
            closed_at: time_attr(&item, "closed_at")?,
        }))
    }

    async fn record_repeat(
        &self,
        id: &IncidentId,
        repeat: &AlertRepeat,
    ) -> Result<AlertRepeats, StoreError> {
        let at = time_text(repeat.at);
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(inc_pk(id), REPEATS)))
            .update_expression(
                "ADD #count :one, recurrences :rec \
                 SET first_seen = if_not_exists(first_seen, :at), last_seen = :at",
            )
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":rec", n(u8::from(repeat.recurrence)))
            .expression_attribute_values(":at", s(&at))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| sdk_unavailable(&e))?;
        let repeats = out
            .attributes
            .as_ref()
            .map(repeats_from)
            .transpose()?
            .ok_or_else(|| corrupt("the repeat counter returned nothing"))?;
        if repeats.count <= MAX_ALERT_SAMPLES {
            let mut item = key(inc_pk(id), &sample_sk(repeats.count));
            item.insert("body".into(), s(encode(&repeat.sample)?));
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| sdk_unavailable(&e))?;
        }
        Ok(repeats)
    }

    async fn put_attempt(
        &self,
        id: &IncidentId,
        attempt: InvestigationAttempt,
    ) -> Result<(), StoreError> {
        let body = fit_attempt(&attempt, MAX_ATTEMPT_BYTES)?;
        let mut item = key(inc_pk(id), &attempt_sk(attempt.attempt));
        item.insert("attempt".into(), n(attempt.attempt));
        item.insert("body".into(), s(body));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_unavailable(&e))?;
        Ok(())
    }

    async fn attempts(&self, id: &IncidentId) -> Result<Vec<InvestigationAttempt>, StoreError> {
        // Zero-padded sort keys: ascending by key is ascending by attempt.
        self.query_prefix(id, ATTEMPT_PREFIX)
            .await?
            .iter()
            .map(decode_body)
            .collect()
    }

    async fn claim_step(&self, id: &IncidentId, record: &StepRecord) -> Result<bool, StoreError> {
        let seq = self.next_step_seq(id).await?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.step_item(id, record, seq)?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result.map_err(SdkError::into_service_error) {
            Ok(_) => Ok(true),
            Err(PutItemError::ConditionalCheckFailedException(_)) => Ok(false),
            Err(e) => Err(sdk_unavailable(&e)),
        }
    }

    async fn finish_step(&self, id: &IncidentId, record: &StepRecord) -> Result<(), StoreError> {
        let body = encode(record)?;
        for _ in 0..2 {
            // Keep the claim's place in the order: only the body changes.
            let update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(inc_pk(id), &step_sk(record.phase, record.step))))
                .update_expression("SET body = :body")
                .condition_expression("attribute_exists(PK)")
                .expression_attribute_values(":body", s(&body))
                .send()
                .await;
            match update.map_err(SdkError::into_service_error) {
                Ok(_) => return Ok(()),
                Err(UpdateItemError::ConditionalCheckFailedException(_)) => {}
                Err(e) => return Err(sdk_unavailable(&e)),
            }
            // Never claimed: record it now, at the end of the order.
            if self.claim_step(id, record).await? {
                return Ok(());
            }
        }
        Err(unavailable(format!(
            "step {} of {id} kept changing while being finished",
            record.step
        )))
    }

    async fn steps(&self, id: &IncidentId) -> Result<Vec<StepRecord>, StoreError> {
        let items = self.query_prefix(id, STEP_PREFIX).await?;
        let mut steps = items
            .iter()
            .map(|item| {
                Ok((
                    number_attr(item, "seq").unwrap_or(i64::MAX),
                    decode_body(item)?,
                ))
            })
            .collect::<Result<Vec<(i64, StepRecord)>, StoreError>>()?;
        steps.sort_by_key(|(seq, _)| *seq);
        Ok(steps.into_iter().map(|(_, r)| r).collect())
    }

    async fn put_postmortem(&self, pm: &PostMortem) -> Result<(), StoreError> {
        let mut item = key(inc_pk(&pm.incident_id), POSTMORTEM);
        item.insert("body".into(), s(encode(pm)?));
        item.insert("outcome".into(), s(outcome_key(pm.outcome)));
        item.insert("duration_seconds".into(), n(pm.duration_seconds));
        if let Some(sev) = pm.severity {
            item.insert("severity".into(), s(sev.as_str()));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_unavailable(&e))?;
        Ok(())
    }

    async fn postmortem(&self, id: &IncidentId) -> Result<Option<PostMortem>, StoreError> {
        self.get_item(inc_pk(id), POSTMORTEM)
            .await?
            .map(|item| decode_body(&item))
            .transpose()
    }

    async fn claim_once(
        &self,
        key: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut item = once_key(key);
        item.insert("until".into(), n(until.timestamp()));
        // TTL deletion runs late (up to days): the condition below, not TTL, decides.
        item.insert("ttl".into(), n(until.timestamp() + 3600));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR #until < :now")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match result.map_err(SdkError::into_service_error) {
            Ok(_) => Ok(true),
            Err(PutItemError::ConditionalCheckFailedException(_)) => Ok(false),
            Err(e) => Err(sdk_unavailable(&e)),
        }
    }

    async fn release_once(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(once_key(key)))
            .send()
            .await
            .map_err(|e| sdk_unavailable(&e))?;
        Ok(())
    }

    async fn append_audit(&self, id: &IncidentId, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut item = key(inc_pk(id), &audit_sk(entry.seq));
        item.insert("seq".into(), n(entry.seq));
        item.insert("body".into(), s(encode(entry)?));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result.map_err(SdkError::into_service_error) {
            Ok(_) => Ok(()),
            Err(PutItemError::ConditionalCheckFailedException(_)) => Err(StoreError::Conflict(
                format!("audit entry {} of {id} already exists", entry.seq),
            )),
            Err(e) => Err(sdk_unavailable(&e)),
        }
    }

    async fn audit(&self, id: &IncidentId) -> Result<Vec<AuditEntry>, StoreError> {
        // Zero-padded sort keys: ascending by key is ascending by seq.
        self.query_prefix(id, AUDIT_PREFIX)
            .await?
            .iter()
            .map(|item| {
                decode_body(item).map_err(|e| {
                    let seq = string_attr(item, "SK").unwrap_or_default();
                    corrupt(format!("audit entry {seq} of {id} cannot be read: {e}"))
                })
            })
            .collect()
    }
}

/// Keys are signatures (hex): short, but bounded anyway so no caller can exceed DynamoDB's
/// key size.
fn once_key(key: &str) -> Item {
    let pk = if key.len() <= MAX_FINGERPRINT_KEY_BYTES {
        format!("ONCE#{key}")
    } else {
        format!(
            "ONCE#sha256:{}",
            hex::encode(Sha256::digest(key.as_bytes()))
        )
    };
    self::key(pk, "ONCE")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn line(i: usize, level: LogLevel, message_len: usize) -> LogLine {
        LogLine {
            timestamp: chrono::Utc
                .timestamp_opt(1_710_252_450 + i as i64, 0)
                .unwrap(),
            service: "payment-service".into(),
            level,
            message: format!("{i:06} {}", "x".repeat(message_len)),
        }
    }

    fn attempt_with_logs(logs: Vec<LogLine>) -> InvestigationAttempt {
        InvestigationAttempt {
            attempt: 1,
            context: ContextBundle {
                attempt: 1,
                logs,
                ..Default::default()
            },
            hypothesis: None,
            gathered_at: chrono::Utc.timestamp_opt(1_710_252_450, 0).unwrap(),
        }
    }

    #[test]
    fn a_small_attempt_is_stored_whole() {
        let a = attempt_with_logs(vec![line(0, LogLevel::Info, 10)]);
        let body = fit_attempt(&a, MAX_ATTEMPT_BYTES).unwrap();
        let back: InvestigationAttempt = serde_json::from_str(&body).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn routine_lines_go_before_errors_and_the_cut_is_recorded() {
        let mut logs: Vec<LogLine> = (0..400).map(|i| line(i, LogLevel::Info, 1000)).collect();
        logs.push(line(400, LogLevel::Error, 100));
        let a = attempt_with_logs(logs);
        let body = fit_attempt(&a, 100 * 1024).unwrap();
        assert!(body.len() <= 100 * 1024);
        let back: InvestigationAttempt = serde_json::from_str(&body).unwrap();
        assert!(back.context.logs.iter().any(|l| l.level == LogLevel::Error));
        assert!(
            back.context.logs.first().unwrap().timestamp > a.context.logs[0].timestamp,
            "the oldest routine lines went first"
        );
        assert_eq!(back.context.truncated.len(), 1);
        assert!(back.context.truncated[0].starts_with("logs: dropped"));
    }

    #[test]
    fn fingerprints_too_long_for_a_key_are_hashed() {
        assert_eq!(fingerprint_pk("abc"), "FP#abc");
        let long = "x".repeat(5000);
        assert!(fingerprint_pk(&long).len() < 100);
    }

    #[test]
    fn sort_keys_order_numerically() {
        assert!(audit_sk(9) < audit_sk(10));
        assert!(attempt_sk(2) < attempt_sk(10));
        assert!(step_sk(StepPhase::Apply, 9) < step_sk(StepPhase::Apply, 10));
    }
}

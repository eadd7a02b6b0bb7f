//! The embedded incident store: SQLite in WAL mode, the same contract as DynamoDB's.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use iras_core::audit::AuditEntry;
use iras_core::ports::{
    FingerprintMatch, IncidentPage, IncidentQuery, IncidentStore, StoreError, UnreadableIncident,
    MAX_ALERT_SAMPLES,
};
use iras_core::*;
use rusqlite::{params, Connection, OptionalExtension};
use rusqlite_migration::{Migrations, M};

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

/// The tables this store owns (the data directory tells them from the engine's).
pub const TABLES: [&str; 9] = [
    "incidents",
    "open_fingerprints",
    "attempts",
    "steps",
    "postmortems",
    "alert_repeats",
    "alert_samples",
    "once_keys",
    "audit_entries",
];

/// Migration 1: the schema exactly as it was before it was versioned, so a store written then
/// (at `user_version` 0, tables present) opens unchanged. Never edit it; add a migration.
const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    severity TEXT,
    fingerprint TEXT NOT NULL,
    version INTEGER NOT NULL,
    approval_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_status ON incidents(status, id);
CREATE INDEX IF NOT EXISTS incidents_by_approval ON incidents(approval_id);
-- One row per fingerprint of an incident that is still open: the dedup key.
CREATE TABLE IF NOT EXISTS open_fingerprints (
    fingerprint TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    incident_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (incident_id, attempt)
);
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    step INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (incident_id, phase, step)
);
CREATE TABLE IF NOT EXISTS postmortems (
    incident_id TEXT PRIMARY KEY,
    severity TEXT,
    outcome TEXT NOT NULL,
    duration_seconds INTEGER NOT NULL,
    body TEXT NOT NULL
);
"#;

/// Migration 2: repeats counted beside the record (a storm updates a small row, never the
/// incident's body), the close time the reopen cool-down counts from, and an index to find the
/// newest incident of a fingerprint without decoding any body.
/// Version 3: the webhook replay cache, durable across restarts.
const SCHEMA_V3: &str = r#"
CREATE TABLE once_keys (
    key TEXT PRIMARY KEY,
    until TEXT NOT NULL
);
CREATE INDEX once_keys_by_until ON once_keys(until);
"#;

/// Version 4: the audit log, one row per entry. `(incident_id, seq)` is the key an append is
/// conditional on; `body` is the entry as JSON, hash and signature included.
const SCHEMA_V4: &str = r#"
CREATE TABLE audit_entries (
    incident_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
"#;

const SCHEMA_V2: &str = r#"
ALTER TABLE incidents ADD COLUMN closed_at TEXT;
CREATE INDEX incidents_by_fingerprint ON incidents(fingerprint, id);
CREATE TABLE alert_repeats (
    incident_id TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    recurrences INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE TABLE alert_samples (
    incident_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
"#;

/// The schema's history, oldest first; the file's `user_version` counts those applied.
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(SCHEMA_V1),
        M::up(SCHEMA_V2),
        M::up(SCHEMA_V3),
        M::up(SCHEMA_V4),
    ])
}

/// Times in the repeat tables: fixed width, so SQLite's `min`/`max` on text order them.
fn time_text(t: Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

fn parse_time_text(s: &str) -> Result<Timestamp, StoreError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(corrupt)
}

/// The counters of a row joined from `alert_repeats` (columns `count`..`last_seen`).
fn repeats_from(
    count: Option<i64>,
    recurrences: Option<i64>,
    first: Option<String>,
    last: Option<String>,
) -> Result<AlertRepeats, StoreError> {
    let Some(count) = count else {
        return Ok(AlertRepeats::default());
    };
    Ok(AlertRepeats {
        count: count as u64,
        recurrences: recurrences.unwrap_or(0) as u64,
        first_seen: first.as_deref().map(parse_time_text).transpose()?,
        last_seen: last.as_deref().map(parse_time_text).transpose()?,
        samples: Vec::new(),
    })
}

/// What the store writes as the body: never the repeats, which live beside it.
fn record_body(incident: &Incident) -> Result<String, StoreError> {
    let mut stored = incident.clone();
    stored.repeats = AlertRepeats::default();
    let body = encode(&stored)?;
    iras_core::ports::check_record_size(&incident.incident_id, &body)?;
    Ok(body)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn phase_key(p: StepPhase) -> &'static str {
    match p {
        StepPhase::Apply => "apply",
        StepPhase::Rollback => "rollback",
    }
}

/// Opens a connection the way every part of the local runtime shares one database file.
pub fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL is durable across process crashes in WAL mode (only power loss can drop commits).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = open_connection(path).map_err(unavailable)?;
        // A file from a newer IRAS is refused (DatabaseTooFarAhead), never misread.
        migrations().to_latest(&mut conn).map_err(unavailable)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| unavailable("store lock poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(unavailable)?
    }
    /// Every JSON `body` a one-parameter query returns, decoded.
    async fn bodies<T>(&self, sql: &'static str, key: String) -> Result<Vec<T>, StoreError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        self.with(move |c| {
            let mut stmt = c.prepare(sql).map_err(unavailable)?;
            let rows = stmt
                .query_map([key.as_str()], |r| r.get::<_, String>(0))
                .map_err(unavailable)?;
            rows.map(|b| decode(&b.map_err(unavailable)?)).collect()
        })
        .await
    }

    /// The JSON `body` of the single row a one-parameter query finds, decoded.
    async fn body<T>(&self, sql: &'static str, key: String) -> Result<Option<T>, StoreError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        self.with(move |c| {
            let body: Option<String> = c
                .query_row(sql, [key.as_str()], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            body.map(|b| decode(&b)).transpose()
        })
        .await
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(corrupt)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(corrupt)
}

/// The repeat counters of an incident, with its samples when `samples`.
fn read_repeats(c: &Connection, id: &str, samples: bool) -> Result<AlertRepeats, StoreError> {
    let row: Option<(i64, i64, String, String)> = c
        .query_row(
            "SELECT count, recurrences, first_seen, last_seen FROM alert_repeats
             WHERE incident_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(unavailable)?;
    let Some((count, rec, first, last)) = row else {
        return Ok(AlertRepeats::default());
    };
    let mut repeats = repeats_from(Some(count), Some(rec), Some(first), Some(last))?;
    if samples {
        let mut stmt = c
            .prepare("SELECT body FROM alert_samples WHERE incident_id = ?1 ORDER BY seq")
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([id], |r| r.get::<_, String>(0))
            .map_err(unavailable)?;
        for b in rows {
            repeats.samples.push(decode(&b.map_err(unavailable)?)?);
        }
    }
    Ok(repeats)
}

/// The incident with its repeats, or `None`.
fn read_incident(c: &Connection, id: &str) -> Result<Option<Incident>, StoreError> {
    let body: Option<String> = c
        .query_row("SELECT body FROM incidents WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(unavailable)?;
    let Some(body) = body else { return Ok(None) };
    let mut incident: Incident = decode(&body)?;
    incident.repeats = read_repeats(c, id, true)?;
    Ok(Some(incident))
}

#[async_trait]
impl IncidentStore for SqliteStore {
    async fn create_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        let mut stored = incident.clone();
        stored.version = 1;
        let body = record_body(&stored)?;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM incidents WHERE id = ?1",
                    [stored.incident_id.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            if exists.is_some() {
                return Err(StoreError::AlreadyExists(stored.incident_id.to_string()));
            }
            let taken: Option<String> = tx
                .query_row(
                    "SELECT incident_id FROM open_fingerprints WHERE fingerprint = ?1",
                    [&stored.fingerprint],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            if let Some(existing) = taken {
                return Err(StoreError::Duplicate(IncidentId(existing)));
            }
            let n = tx
                .execute(
                    "INSERT INTO incidents (id, status, severity, fingerprint, version, body,
                       closed_at)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6) ON CONFLICT(id) DO NOTHING",
                    params![
                        stored.incident_id.as_str(),
                        stored.status.as_str(),
                        stored.severity.map(|s| s.as_str()),
                        stored.fingerprint,
                        body,
                        stored.closed_at.map(time_text)
                    ],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(stored.incident_id.to_string()));
            }
            if !stored.status.is_final() {
                tx.execute(
                    "INSERT INTO open_fingerprints (fingerprint, incident_id) VALUES (?1, ?2)",
                    params![stored.fingerprint, stored.incident_id.as_str()],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn get_incident(&self, id: &IncidentId) -> Result<Option<Incident>, StoreError> {
        let id = id.0.clone();
        self.with(move |c| read_incident(c, &id)).await
    }

    async fn update_incident(&self, incident: &Incident) -> Result<Incident, StoreError> {
        let mut stored = incident.clone();
        stored.version = incident.version + 1;
        let body = record_body(&stored)?;
        let expected = incident.version as i64;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let n = tx
                .execute(
                    "UPDATE incidents SET status = ?2, severity = ?3, version = ?4, body = ?5,
                       approval_id = ?7, closed_at = ?8
                     WHERE id = ?1 AND version = ?6",
                    params![
                        stored.incident_id.as_str(),
                        stored.status.as_str(),
                        stored.severity.map(|s| s.as_str()),
                        stored.version as i64,
                        body,
                        expected,
                        stored.approval.as_ref().map(|a| a.approval_id.as_str()),
                        stored.closed_at.map(time_text)
                    ],
                )
                .map_err(unavailable)?;
            if n == 1 {
                if stored.status.is_final() {
                    tx.execute(
                        "DELETE FROM open_fingerprints WHERE incident_id = ?1",
                        [stored.incident_id.as_str()],
                    )
                    .map_err(unavailable)?;
                }
                stored.repeats = read_repeats(&tx, stored.incident_id.as_str(), true)?;
                tx.commit().map_err(unavailable)?;
                return Ok(stored);
            }
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT version FROM incidents WHERE id = ?1",
                    [stored.incident_id.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            Err(match exists {
                None => StoreError::NotFound(stored.incident_id.to_string()),
                Some(_) => StoreError::Conflict(stored.incident_id.to_string()),
            })
        })
        .await
    }

    async fn list_incidents(&self, q: &IncidentQuery) -> Result<IncidentPage, StoreError> {
        let q = q.clone();
        self.with(move |c| {
            let limit = if q.limit == 0 { 50 } else { q.limit.min(500) };
            let mut stmt = c
                .prepare(
                    "SELECT i.id, i.body, r.count, r.recurrences, r.first_seen, r.last_seen
                     FROM incidents i LEFT JOIN alert_repeats r ON r.incident_id = i.id
                     WHERE (?1 IS NULL OR i.status = ?1)
                       AND (?2 IS NULL OR i.severity = ?2)
                       AND (?3 IS NULL OR i.id < ?3)
                     ORDER BY i.id DESC LIMIT ?4",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(
                    params![
                        q.status.map(|s| s.as_str()),
                        q.severity.map(|s| s.as_str()),
                        q.cursor,
                        (limit + 1) as i64
                    ],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, Option<String>>(5)?,
                        ))
                    },
                )
                .map_err(unavailable)?;
            let mut incidents = Vec::new();
            let mut unreadable = Vec::new();
            let mut next = None;
            let mut more = false;
            let mut bytes = 0;
            // Row by row: a page stops at `limit` records or MAX_PAGE_BYTES of them, so a list
            // never holds two hundred of the largest records at once.
            for (taken, row) in rows.enumerate() {
                let (id, body, count, rec, first, last) = row.map_err(unavailable)?;
                let full = taken >= limit
                    || (taken > 0 && bytes + body.len() > iras_core::ports::MAX_PAGE_BYTES);
                if full {
                    more = true;
                    break;
                }
                bytes += body.len();
                next = Some(id.clone());
                // One record that cannot be read must not hide every other one.
                match decode::<Incident>(&body)
                    .and_then(|i| Ok((i, repeats_from(count, rec, first, last)?)))
                {
                    Ok((mut i, repeats)) => {
                        i.repeats = repeats;
                        incidents.push(i);
                    }
                    Err(e) => unreadable.push(UnreadableIncident {
                        incident_id: IncidentId(id),
                        error: e.to_string(),
                    }),
                }
            }
            let next = next.filter(|_| more);
            Ok(IncidentPage {
                incidents,
                next,
                unreadable,
            })
        })
        .await
    }

    async fn find_by_approval_id(&self, approval_id: &str) -> Result<Option<Incident>, StoreError> {
        let approval_id = approval_id.to_string();
        self.with(move |c| {
            let id: Option<String> = c
                .query_row(
                    "SELECT id FROM incidents WHERE approval_id = ?1",
                    [approval_id.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            match id {
                Some(id) => read_incident(c, &id),
                None => Ok(None),
            }
        })
        .await
    }

    async fn latest_with_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<FingerprintMatch>, StoreError> {
        let fingerprint = fingerprint.to_string();
        self.with(move |c| {
            let row: Option<(String, String, Option<String>)> = c
                .query_row(
                    "SELECT id, status, closed_at FROM incidents WHERE fingerprint = ?1
                     ORDER BY id DESC LIMIT 1",
                    [fingerprint.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let Some((id, status, closed_at)) = row else {
                return Ok(None);
            };
            Ok(Some(FingerprintMatch {
                incident_id: IncidentId(id),
                status: IncidentStatus::parse(&status)
                    .ok_or_else(|| corrupt(format!("unknown status {status}")))?,
                closed_at: closed_at.as_deref().map(parse_time_text).transpose()?,
            }))
        })
        .await
    }

    async fn record_repeat(
        &self,
        id: &IncidentId,
        repeat: &AlertRepeat,
    ) -> Result<AlertRepeats, StoreError> {
        let (id, at, recurrence) = (id.0.clone(), time_text(repeat.at), repeat.recurrence);
        let sample = encode(&repeat.sample)?;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let count: i64 = tx
                .query_row(
                    "INSERT INTO alert_repeats (incident_id, count, recurrences, first_seen, last_seen)
                     SELECT ?1, 1, ?2, ?3, ?3 WHERE EXISTS (SELECT 1 FROM incidents WHERE id = ?1)
                     ON CONFLICT(incident_id) DO UPDATE SET count = count + 1,
                       recurrences = recurrences + excluded.recurrences,
                       first_seen = min(first_seen, excluded.first_seen),
                       last_seen = max(last_seen, excluded.last_seen)
                     RETURNING count",
                    params![id, recurrence as i64, at],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            if count as u64 <= MAX_ALERT_SAMPLES {
                tx.execute(
                    "INSERT OR IGNORE INTO alert_samples (incident_id, seq, body) VALUES (?1, ?2, ?3)",
                    params![id, count, sample],
                )
                .map_err(unavailable)?;
            }
            let repeats = read_repeats(&tx, &id, false)?;
            tx.commit().map_err(unavailable)?;
            Ok(repeats)
        })
        .await
    }

    async fn put_attempt(
        &self,
        id: &IncidentId,
        attempt: InvestigationAttempt,
    ) -> Result<(), StoreError> {
        let (id, n, body) = (id.clone(), attempt.attempt, encode(&attempt)?);
        self.with(move |c| {
            c.execute(
                "INSERT INTO attempts (incident_id, attempt, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT(incident_id, attempt) DO UPDATE SET body = excluded.body",
                params![id.as_str(), n, body],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn attempts(&self, id: &IncidentId) -> Result<Vec<InvestigationAttempt>, StoreError> {
        self.bodies(
            "SELECT body FROM attempts WHERE incident_id = ?1 ORDER BY attempt",
            id.0.clone(),
        )
        .await
    }

    async fn claim_step(&self, id: &IncidentId, record: &StepRecord) -> Result<bool, StoreError> {
        let (id, phase, step, body) = (
            id.clone(),
            phase_key(record.phase),
            record.step as i64,
            encode(record)?,
        );
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT INTO steps (incident_id, phase, step, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(incident_id, phase, step) DO NOTHING",
                    params![id.as_str(), phase, step, body],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn finish_step(&self, id: &IncidentId, record: &StepRecord) -> Result<(), StoreError> {
        let (id, phase, step, body) = (
            id.clone(),
            phase_key(record.phase),
            record.step as i64,
            encode(record)?,
        );
        self.with(move |c| {
            c.execute(
                "INSERT INTO steps (incident_id, phase, step, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(incident_id, phase, step) DO UPDATE SET body = excluded.body",
                params![id.as_str(), phase, step, body],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn steps(&self, id: &IncidentId) -> Result<Vec<StepRecord>, StoreError> {
        self.bodies(
            "SELECT body FROM steps WHERE incident_id = ?1 ORDER BY seq",
            id.0.clone(),
        )
        .await
    }

    async fn put_postmortem(&self, pm: &PostMortem) -> Result<(), StoreError> {
        let body = encode(pm)?;
        let pm = pm.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO postmortems (incident_id, severity, outcome, duration_seconds, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(incident_id) DO UPDATE SET body = excluded.body,
                   severity = excluded.severity, outcome = excluded.outcome,
                   duration_seconds = excluded.duration_seconds",
                params![
                    pm.incident_id.as_str(),
                    pm.severity.map(|s| s.as_str()),
                    serde_json::to_value(pm.outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string)),
                    pm.duration_seconds,
                    body
                ],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn postmortem(&self, id: &IncidentId) -> Result<Option<PostMortem>, StoreError> {
        self.body(
            "SELECT body FROM postmortems WHERE incident_id = ?1",
            id.0.clone(),
        )
        .await
    }

    async fn claim_once(
        &self,
        key: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (key, until, now) = (key.to_string(), time_text(until), time_text(now));
        self.with(move |c| {
            // Expired claims go first, so the table holds only the live window.
            c.execute("DELETE FROM once_keys WHERE until < ?1", params![now])
                .map_err(unavailable)?;
            let inserted = c
                .execute(
                    "INSERT OR IGNORE INTO once_keys (key, until) VALUES (?1, ?2)",
                    params![key, until],
                )
                .map_err(unavailable)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn release_once(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        self.with(move |c| {
            c.execute("DELETE FROM once_keys WHERE key = ?1", params![key])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn append_audit(&self, id: &IncidentId, entry: &AuditEntry) -> Result<(), StoreError> {
        let (id, seq, body) = (id.clone(), entry.seq as i64, encode(entry)?);
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT INTO audit_entries (incident_id, seq, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT(incident_id, seq) DO NOTHING",
                    params![id.as_str(), seq, body],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "audit entry {seq} of {id} already exists"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn audit(&self, id: &IncidentId) -> Result<Vec<AuditEntry>, StoreError> {
        let id = id.0.clone();
        self.with(move |c| {
            let mut stmt = c
                .prepare("SELECT seq, body FROM audit_entries WHERE incident_id = ?1 ORDER BY seq")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([id.as_str()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(unavailable)?;
            rows.map(|row| {
                let (seq, body) = row.map_err(unavailable)?;
                // An entry edited into something unreadable is tampering too: say which.
                serde_json::from_str(&body)
                    .map_err(|e| corrupt(format!("audit entry {seq} of {id} cannot be read: {e}")))
            })
            .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iras_core::testing::store_contract;

    #[tokio::test]
    async fn sqlite_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("iras.db")).unwrap();
        store_contract::run_all(&store).await;
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_read_is_reported_alone_and_breaks_no_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("iras.db")).unwrap();
        let alert = |t: &str| {
            Alert::from_json(serde_json::json!({"title": t, "timestamp": "2024-03-12T14:07:30Z"}))
                .unwrap()
        };
        let good = Incident::open(
            IncidentId::generate(),
            alert("good"),
            alert("good").timestamp,
        );
        let bad = Incident::open(IncidentId::generate(), alert("bad"), alert("bad").timestamp);
        store.create_incident(&good).await.unwrap();
        store.create_incident(&bad).await.unwrap();
        // What an older IRAS could write: a `service` that is not a string.
        let bad_id = bad.incident_id.to_string();
        store
            .with(move |c| {
                c.execute(
                    "UPDATE incidents SET body = json_set(body, '$.alert.service', 42) WHERE id = ?1",
                    [bad_id],
                )
                .map_err(unavailable)
            })
            .await
            .unwrap();
        let page = store
            .list_incidents(&IncidentQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.incidents.len(), 1);
        assert_eq!(page.incidents[0].incident_id, good.incident_id);
        assert_eq!(page.unreadable.len(), 1);
        assert_eq!(page.unreadable[0].incident_id, bad.incident_id);
        assert!(matches!(
            store.get_incident(&bad.incident_id).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(store
            .get_incident(&good.incident_id)
            .await
            .unwrap()
            .is_some());
        // The fingerprint index still answers for it: a repeat never needs its body.
        let m = store
            .latest_with_fingerprint(&bad.fingerprint)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.incident_id, bad.incident_id);
    }

    #[tokio::test]
    async fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iras.db");
        let alert = Alert::from_json(
            serde_json::json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z"}),
        )
        .unwrap();
        let inc = Incident::open(IncidentId::generate(), alert.clone(), alert.timestamp);
        {
            let store = SqliteStore::open(&path).unwrap();
            store.create_incident(&inc).await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert!(store
            .get_incident(&inc.incident_id)
            .await
            .unwrap()
            .is_some());
    }
}

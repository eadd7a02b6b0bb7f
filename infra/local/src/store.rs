//! The embedded incident store: SQLite in WAL mode, the same contract as DynamoDB's.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use iras_core::ports::{IncidentPage, IncidentQuery, IncidentStore, StoreError};
use iras_core::*;
use rusqlite::{params, Connection, OptionalExtension};
use rusqlite_migration::{Migrations, M};

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

/// The tables this store owns (the data directory tells them from the engine's).
pub const TABLES: [&str; 5] = [
    "incidents",
    "open_fingerprints",
    "attempts",
    "steps",
    "postmortems",
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

/// The schema's history, oldest first; the file's `user_version` counts those applied.
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(SCHEMA_V1)])
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

#[async_trait]
impl IncidentStore for SqliteStore {
    async fn create_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        let mut stored = incident.clone();
        stored.version = 1;
        let body = encode(&stored)?;
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
                    "INSERT INTO incidents (id, status, severity, fingerprint, version, body)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5) ON CONFLICT(id) DO NOTHING",
                    params![
                        stored.incident_id.as_str(),
                        stored.status.as_str(),
                        stored.severity.map(|s| s.as_str()),
                        stored.fingerprint,
                        body
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
        self.body("SELECT body FROM incidents WHERE id = ?1", id.0.clone())
            .await
    }

    async fn update_incident(&self, incident: &Incident) -> Result<Incident, StoreError> {
        let mut stored = incident.clone();
        stored.version = incident.version + 1;
        let body = encode(&stored)?;
        let expected = incident.version as i64;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let n = tx
                .execute(
                    "UPDATE incidents SET status = ?2, severity = ?3, version = ?4, body = ?5,
                       approval_id = ?7
                     WHERE id = ?1 AND version = ?6",
                    params![
                        stored.incident_id.as_str(),
                        stored.status.as_str(),
                        stored.severity.map(|s| s.as_str()),
                        stored.version as i64,
                        body,
                        expected,
                        stored.approval.as_ref().map(|a| a.approval_id.as_str())
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
                    "SELECT body FROM incidents
                     WHERE (?1 IS NULL OR status = ?1)
                       AND (?2 IS NULL OR severity = ?2)
                       AND (?3 IS NULL OR id < ?3)
                     ORDER BY id DESC LIMIT ?4",
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
                    |r| r.get::<_, String>(0),
                )
                .map_err(unavailable)?;
            let mut incidents = Vec::new();
            for body in rows {
                incidents.push(decode::<Incident>(&body.map_err(unavailable)?)?);
            }
            let next = if incidents.len() > limit {
                incidents.truncate(limit);
                incidents.last().map(|i| i.incident_id.0.clone())
            } else {
                None
            };
            Ok(IncidentPage { incidents, next })
        })
        .await
    }

    async fn find_by_approval_id(&self, approval_id: &str) -> Result<Option<Incident>, StoreError> {
        self.body(
            "SELECT body FROM incidents WHERE approval_id = ?1",
            approval_id.to_string(),
        )
        .await
    }

    async fn put_attempt(
        &self,
        id: &IncidentId,
        attempt: &InvestigationAttempt,
    ) -> Result<(), StoreError> {
        let (id, n, body) = (id.clone(), attempt.attempt, encode(attempt)?);
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

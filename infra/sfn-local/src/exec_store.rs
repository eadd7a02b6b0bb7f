//! SQLite persistence for the durable ASL runtime.
//!
//! The schema is versioned with `rusqlite_migration`, which keeps the version in SQLite's
//! `user_version`: one number per *file*, so the store wants a file of its own. Every table is
//! prefixed [`TABLE_PREFIX`], so a host that once shared a file with it can tell the tables
//! apart. The database runs in WAL mode with a busy timeout so a second process reading it
//! does not trip over the runtime. One connection is guarded by an async mutex and every
//! statement runs on the blocking pool, so at most one blocking thread works for this store at a
//! time and no tokio worker ever waits on SQLite.
//!
//! Writes that advance an execution are conditional on it still being `RUNNING`: an execution
//! that timed out or was stopped cannot be moved on by a driver that had not noticed yet.

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use rusqlite_migration::{Migrations, M};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store was closed for writes (the runtime was killed)")]
    Closed,
    #[error("a storage task failed: {0}")]
    Join(String),
    #[error("schema migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RUNNING" => ExecutionStatus::Running,
            "SUCCEEDED" => ExecutionStatus::Succeeded,
            "FAILED" => ExecutionStatus::Failed,
            "TIMED_OUT" => ExecutionStatus::TimedOut,
            "ABORTED" => ExecutionStatus::Aborted,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an execution stands inside its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// About to run the state (first attempt or a retry whose wait is over).
    Enter,
    /// A Retrier is waiting until `wake_at_ms` before the next attempt.
    RetryWait { wake_at_ms: i64 },
    /// A Wait state ends at `wake_at_ms`.
    Wait { wake_at_ms: i64 },
    /// A `.waitForTaskToken` task is waiting for this token.
    Token { token: String },
}

/// The persisted position of an execution: enough to resume it after a crash.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub state: String,
    /// The state's raw input (before InputPath); everything else is derived from it.
    pub state_input: Value,
    pub entered_ms: i64,
    /// Retries made so far, per retrier of the current state.
    pub retry_counts: Vec<u32>,
    pub phase: Phase,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    pub name: String,
    pub arn: String,
    pub definition_fingerprint: String,
    pub status: ExecutionStatus,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub start_ms: i64,
    pub stop_ms: Option<i64>,
    pub cursor: Cursor,
    pub transitions: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Waiting,
    Succeeded,
    Failed,
    TimedOut,
    /// The execution ended (timeout, stop) while the task waited.
    Cancelled,
}

impl TokenStatus {
    fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Waiting => "WAITING",
            TokenStatus::Succeeded => "SUCCEEDED",
            TokenStatus::Failed => "FAILED",
            TokenStatus::TimedOut => "TIMED_OUT",
            TokenStatus::Cancelled => "CANCELLED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "WAITING" => TokenStatus::Waiting,
            "SUCCEEDED" => TokenStatus::Succeeded,
            "FAILED" => TokenStatus::Failed,
            "TIMED_OUT" => TokenStatus::TimedOut,
            "CANCELLED" => TokenStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A task token issued by a `.waitForTaskToken` task.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub token: String,
    pub execution: String,
    pub state: String,
    pub status: TokenStatus,
    /// The FunctionName to invoke and the payload it gets (already holding the token), kept so
    /// a crash before the function returned can be recovered by invoking it again.
    pub function: String,
    pub payload: Value,
    pub invoked: bool,
    pub deadline_ms: Option<i64>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub created_ms: i64,
    pub completed_ms: Option<i64>,
}

/// How a waiting token is settled.
#[derive(Debug, Clone)]
pub enum Settlement {
    Success(Value),
    Failure { error: String, cause: String },
    TimedOut,
}

#[derive(Debug, Clone)]
pub enum SettleResult {
    /// No such token was ever issued.
    Unknown,
    /// The token's task already finished, timed out or was cancelled.
    NotWaiting(TokenRecord),
    Settled(TokenRecord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HistoryEventType {
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionTimedOut,
    ExecutionAborted,
    StateEntered,
    StateExited,
    TaskScheduled,
    /// A `.waitForTaskToken` function was invoked and the task now waits for its token.
    TaskSubmitted,
    TaskSucceeded,
    TaskFailed,
    TaskTimedOut,
    TaskRetryScheduled,
    WaitStarted,
}

impl HistoryEventType {
    pub fn as_str(self) -> &'static str {
        use HistoryEventType::*;
        match self {
            ExecutionStarted => "ExecutionStarted",
            ExecutionSucceeded => "ExecutionSucceeded",
            ExecutionFailed => "ExecutionFailed",
            ExecutionTimedOut => "ExecutionTimedOut",
            ExecutionAborted => "ExecutionAborted",
            StateEntered => "StateEntered",
            StateExited => "StateExited",
            TaskScheduled => "TaskScheduled",
            TaskSubmitted => "TaskSubmitted",
            TaskSucceeded => "TaskSucceeded",
            TaskFailed => "TaskFailed",
            TaskTimedOut => "TaskTimedOut",
            TaskRetryScheduled => "TaskRetryScheduled",
            WaitStarted => "WaitStarted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        use HistoryEventType::*;
        [
            ExecutionStarted,
            ExecutionSucceeded,
            ExecutionFailed,
            ExecutionTimedOut,
            ExecutionAborted,
            StateEntered,
            StateExited,
            TaskScheduled,
            TaskSubmitted,
            TaskSucceeded,
            TaskFailed,
            TaskTimedOut,
            TaskRetryScheduled,
            WaitStarted,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// One entry of an execution's event history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    pub event_type: HistoryEventType,
    pub state: Option<String>,
    pub details: Value,
}

/// An event about to be written.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at_ms: i64,
    pub event_type: HistoryEventType,
    pub state: Option<String>,
    pub details: Value,
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn ms_to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Every table of this store starts so.
pub const TABLE_PREFIX: &str = "asl_";

/// Migration 1: the schema exactly as it was before it was versioned, so a database written then
/// (at `user_version` 0, tables present) opens unchanged. Never edit it; add a migration instead.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS asl_definitions (
    fingerprint TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS asl_executions (
    name            TEXT PRIMARY KEY,
    arn             TEXT NOT NULL,
    definition      TEXT NOT NULL,
    status          TEXT NOT NULL,
    input           TEXT NOT NULL,
    output          TEXT,
    error           TEXT,
    cause           TEXT,
    start_ms        INTEGER NOT NULL,
    stop_ms         INTEGER,
    current_state   TEXT NOT NULL,
    state_input     TEXT NOT NULL,
    state_entered_ms INTEGER NOT NULL,
    retry_counts    TEXT NOT NULL,
    phase           TEXT NOT NULL,
    wake_at_ms      INTEGER,
    token           TEXT,
    transitions     INTEGER NOT NULL DEFAULT 0,
    updated_ms      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS asl_executions_by_status ON asl_executions(status);
CREATE TABLE IF NOT EXISTS asl_task_tokens (
    token        TEXT PRIMARY KEY,
    execution    TEXT NOT NULL,
    state        TEXT NOT NULL,
    status       TEXT NOT NULL,
    function     TEXT NOT NULL,
    payload      TEXT NOT NULL,
    invoked      INTEGER NOT NULL DEFAULT 0,
    deadline_ms  INTEGER,
    output       TEXT,
    error        TEXT,
    cause        TEXT,
    created_ms   INTEGER NOT NULL,
    completed_ms INTEGER
);
CREATE INDEX IF NOT EXISTS asl_task_tokens_by_execution ON asl_task_tokens(execution, status);
CREATE TABLE IF NOT EXISTS asl_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    execution   TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    state       TEXT,
    details     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS asl_history_by_execution ON asl_history(execution, id);
";

/// The schema's history, oldest first; the database's `user_version` counts those applied.
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(SCHEMA_V1)])
}

/// The runtime's view of the database.
#[derive(Clone)]
pub struct ExecStore {
    conn: Arc<Mutex<Connection>>,
    closed: Arc<AtomicBool>,
}

fn to_json(v: &Value) -> String {
    v.to_string()
}

fn from_json(s: &str) -> Result<Value, rusqlite::Error> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn corrupt(what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into())
}

fn phase_columns(phase: &Phase) -> (&'static str, Option<i64>, Option<&str>) {
    match phase {
        Phase::Enter => ("ENTER", None, None),
        Phase::RetryWait { wake_at_ms } => ("RETRY_WAIT", Some(*wake_at_ms), None),
        Phase::Wait { wake_at_ms } => ("WAIT", Some(*wake_at_ms), None),
        Phase::Token { token } => ("TOKEN", None, Some(token.as_str())),
    }
}

const EXECUTION_COLUMNS: &str = "name, arn, definition, status, input, output, error, cause, start_ms, stop_ms, \
     current_state, state_input, state_entered_ms, retry_counts, phase, wake_at_ms, token, transitions";

fn execution_from_row(r: &Row<'_>) -> Result<ExecutionRecord, rusqlite::Error> {
    let status: String = r.get(3)?;
    let phase: String = r.get(14)?;
    let wake: Option<i64> = r.get(15)?;
    let token: Option<String> = r.get(16)?;
    let phase = match (phase.as_str(), wake, token) {
        ("ENTER", _, _) => Phase::Enter,
        ("RETRY_WAIT", Some(w), _) => Phase::RetryWait { wake_at_ms: w },
        ("WAIT", Some(w), _) => Phase::Wait { wake_at_ms: w },
        ("TOKEN", _, Some(t)) => Phase::Token { token: t },
        (p, _, _) => return Err(corrupt(format!("bad phase {p}"))),
    };
    let retry_counts: String = r.get(13)?;
    Ok(ExecutionRecord {
        name: r.get(0)?,
        arn: r.get(1)?,
        definition_fingerprint: r.get(2)?,
        status: ExecutionStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("bad status {status}")))?,
        input: from_json(&r.get::<_, String>(4)?)?,
        output: r
            .get::<_, Option<String>>(5)?
            .map(|s| from_json(&s))
            .transpose()?,
        error: r.get(6)?,
        cause: r.get(7)?,
        start_ms: r.get(8)?,
        stop_ms: r.get(9)?,
        cursor: Cursor {
            state: r.get(10)?,
            state_input: from_json(&r.get::<_, String>(11)?)?,
            entered_ms: r.get(12)?,
            retry_counts: serde_json::from_str(&retry_counts)
                .map_err(|e| corrupt(e.to_string()))?,
            phase,
        },
        transitions: r.get::<_, i64>(17)? as u64,
    })
}

const TOKEN_COLUMNS: &str = "token, execution, state, status, function, payload, invoked, deadline_ms, output, error, cause, created_ms, completed_ms";

fn token_from_row(r: &Row<'_>) -> Result<TokenRecord, rusqlite::Error> {
    let status: String = r.get(3)?;
    Ok(TokenRecord {
        token: r.get(0)?,
        execution: r.get(1)?,
        state: r.get(2)?,
        status: TokenStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("bad token status {status}")))?,
        function: r.get(4)?,
        payload: from_json(&r.get::<_, String>(5)?)?,
        invoked: r.get::<_, i64>(6)? != 0,
        deadline_ms: r.get(7)?,
        output: r
            .get::<_, Option<String>>(8)?
            .map(|s| from_json(&s))
            .transpose()?,
        error: r.get(9)?,
        cause: r.get(10)?,
        created_ms: r.get(11)?,
        completed_ms: r.get(12)?,
    })
}

fn get_token(conn: &Connection, token: &str) -> Result<Option<TokenRecord>, rusqlite::Error> {
    conn.query_row(
        &format!("SELECT {TOKEN_COLUMNS} FROM asl_task_tokens WHERE token = ?1"),
        params![token],
        token_from_row,
    )
    .optional()
}

fn insert_events(
    conn: &Connection,
    execution: &str,
    events: &[NewEvent],
) -> Result<(), rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO asl_history (execution, at_ms, event_type, state, details) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for e in events {
        stmt.execute(params![
            execution,
            e.at_ms,
            e.event_type.as_str(),
            e.state,
            to_json(&e.details)
        ])?;
    }
    Ok(())
}

fn write_cursor(
    conn: &Connection,
    name: &str,
    cursor: &Cursor,
    transitions: Option<u64>,
) -> Result<bool, rusqlite::Error> {
    let (phase, wake, token) = phase_columns(&cursor.phase);
    let n = conn.execute(
        "UPDATE asl_executions SET current_state = ?2, state_input = ?3, state_entered_ms = ?4, retry_counts = ?5, \
         phase = ?6, wake_at_ms = ?7, token = ?8, transitions = COALESCE(?9, transitions), updated_ms = ?10 \
         WHERE name = ?1 AND status = 'RUNNING'",
        params![
            name,
            cursor.state,
            to_json(&cursor.state_input),
            cursor.entered_ms,
            serde_json::to_string(&cursor.retry_counts).unwrap_or_else(|_| "[]".into()),
            phase,
            wake,
            token,
            transitions.map(|t| t as i64),
            now_ms()
        ],
    )?;
    Ok(n == 1)
}

/// The outcome of inserting an execution.
#[derive(Debug, Clone)]
pub enum InsertOutcome {
    Inserted,
    Exists(Box<ExecutionRecord>),
}

impl ExecStore {
    /// Opens (creating if needed) the database and brings the `asl_` tables to the latest schema.
    pub async fn open(path: &Path) -> Result<ExecStore, StoreError> {
        let path = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let mut conn = Connection::open(&path)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
            // Refuses a database newer than this code (DatabaseTooFarAhead) rather than misread it.
            migrations().to_latest(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))??;
        Ok(ExecStore {
            conn: Arc::new(Mutex::new(conn)),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Refuses every later call, as if the process had died.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let mut guard = self.conn.clone().lock_owned().await;
        let closed = self.closed.clone();
        tokio::task::spawn_blocking(move || {
            // Checked again under the lock: a kill while this call queued must still win.
            if closed.load(Ordering::SeqCst) {
                return Err(StoreError::Closed);
            }
            f(&mut guard).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }

    pub async fn save_definition(&self, fingerprint: &str, source: &str) -> Result<(), StoreError> {
        let (fp, src) = (fingerprint.to_string(), source.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO asl_definitions (fingerprint, source, created_ms) VALUES (?1, ?2, ?3)",
                params![fp, src, now_ms()],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn definition_source(&self, fingerprint: &str) -> Result<Option<String>, StoreError> {
        let fp = fingerprint.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT source FROM asl_definitions WHERE fingerprint = ?1",
                params![fp],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    /// Inserts a new execution with its first events, unless one with that name exists.
    pub async fn insert_execution(
        &self,
        rec: ExecutionRecord,
        events: Vec<NewEvent>,
    ) -> Result<InsertOutcome, StoreError> {
        self.call(move |c| {
            // IMMEDIATE: a deferred read-then-write transaction gets SQLITE_BUSY at once in WAL mode
            // when another connection wrote in between; the busy timeout only covers the lock.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let existing = tx
                .query_row(
                    &format!("SELECT {EXECUTION_COLUMNS} FROM asl_executions WHERE name = ?1"),
                    params![rec.name],
                    execution_from_row,
                )
                .optional()?;
            if let Some(e) = existing {
                return Ok(InsertOutcome::Exists(Box::new(e)));
            }
            let (phase, wake, token) = phase_columns(&rec.cursor.phase);
            tx.execute(
                &format!(
                    "INSERT INTO asl_executions ({EXECUTION_COLUMNS}, updated_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
                ),
                params![
                    rec.name,
                    rec.arn,
                    rec.definition_fingerprint,
                    rec.status.as_str(),
                    to_json(&rec.input),
                    rec.output.as_ref().map(to_json),
                    rec.error,
                    rec.cause,
                    rec.start_ms,
                    rec.stop_ms,
                    rec.cursor.state,
                    to_json(&rec.cursor.state_input),
                    rec.cursor.entered_ms,
                    serde_json::to_string(&rec.cursor.retry_counts).unwrap_or_else(|_| "[]".into()),
                    phase,
                    wake,
                    token,
                    rec.transitions as i64,
                    now_ms()
                ],
            )?;
            insert_events(&tx, &rec.name, &events)?;
            tx.commit()?;
            Ok(InsertOutcome::Inserted)
        })
        .await
    }

    pub async fn execution(&self, name: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let name = name.to_string();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {EXECUTION_COLUMNS} FROM asl_executions WHERE name = ?1"),
                params![name],
                execution_from_row,
            )
            .optional()
        })
        .await
    }

    /// Every execution, newest first, optionally only those with `status`.
    pub async fn executions(
        &self,
        status: Option<ExecutionStatus>,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM asl_executions WHERE (?1 IS NULL OR status = ?1) ORDER BY start_ms DESC, name"
            ))?;
            let rows = stmt.query_map(params![status.map(|s| s.as_str())], execution_from_row)?;
            rows.collect()
        })
        .await
    }

    /// Moves a running execution to `cursor`, recording `events` and, for a token task, the new
    /// token, in one transaction. `transitions` replaces the counter when given. False when the
    /// execution is no longer running.
    pub async fn advance(
        &self,
        name: &str,
        cursor: Cursor,
        transitions: Option<u64>,
        events: Vec<NewEvent>,
        token: Option<TokenRecord>,
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.call(move |c| {
            // IMMEDIATE: a deferred read-then-write transaction gets SQLITE_BUSY at once in WAL mode
            // when another connection wrote in between; the busy timeout only covers the lock.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if !write_cursor(&tx, &name, &cursor, transitions)? {
                return Ok(false);
            }
            if let Some(t) = token {
                tx.execute(
                    &format!("INSERT INTO asl_task_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                    params![
                        t.token,
                        t.execution,
                        t.state,
                        t.status.as_str(),
                        t.function,
                        to_json(&t.payload),
                        t.invoked as i64,
                        t.deadline_ms,
                        t.output.as_ref().map(to_json),
                        t.error,
                        t.cause,
                        t.created_ms,
                        t.completed_ms
                    ],
                )?;
            }
            insert_events(&tx, &name, &events)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Ends a running execution; any token it still waits on is cancelled. False when it had
    /// already ended.
    pub async fn finish(
        &self,
        name: &str,
        status: ExecutionStatus,
        output: Option<Value>,
        error: Option<String>,
        cause: Option<String>,
        events: Vec<NewEvent>,
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.call(move |c| {
            // IMMEDIATE: a deferred read-then-write transaction gets SQLITE_BUSY at once in WAL mode
            // when another connection wrote in between; the busy timeout only covers the lock.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_ms();
            let n = tx.execute(
                "UPDATE asl_executions SET status = ?2, output = ?3, error = ?4, cause = ?5, stop_ms = ?6, updated_ms = ?6 \
                 WHERE name = ?1 AND status = 'RUNNING'",
                params![name, status.as_str(), output.as_ref().map(to_json), error, cause, now],
            )?;
            if n != 1 {
                return Ok(false);
            }
            tx.execute(
                "UPDATE asl_task_tokens SET status = 'CANCELLED', completed_ms = ?2 WHERE execution = ?1 AND status = 'WAITING'",
                params![name, now],
            )?;
            insert_events(&tx, &name, &events)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    pub async fn append_events(&self, name: &str, events: Vec<NewEvent>) -> Result<(), StoreError> {
        let name = name.to_string();
        self.call(move |c| insert_events(c, &name, &events)).await
    }

    pub async fn token(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        let token = token.to_string();
        self.call(move |c| get_token(c, &token)).await
    }

    /// Settles a token if it is still waiting (the first settlement wins).
    pub async fn settle_token(
        &self,
        token: &str,
        how: Settlement,
    ) -> Result<SettleResult, StoreError> {
        let token = token.to_string();
        self.call(move |c| {
            // IMMEDIATE: a deferred read-then-write transaction gets SQLITE_BUSY at once in WAL mode
            // when another connection wrote in between; the busy timeout only covers the lock.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let Some(rec) = get_token(&tx, &token)? else {
                return Ok(SettleResult::Unknown);
            };
            if rec.status != TokenStatus::Waiting {
                return Ok(SettleResult::NotWaiting(rec));
            }
            let (status, output, error, cause) = match how {
                Settlement::Success(v) => (TokenStatus::Succeeded, Some(to_json(&v)), None, None),
                Settlement::Failure { error, cause } => (TokenStatus::Failed, None, Some(error), Some(cause)),
                Settlement::TimedOut => (TokenStatus::TimedOut, None, None, None),
            };
            tx.execute(
                "UPDATE asl_task_tokens SET status = ?2, output = ?3, error = ?4, cause = ?5, completed_ms = ?6 WHERE token = ?1",
                params![token, status.as_str(), output, error, cause, now_ms()],
            )?;
            let rec = get_token(&tx, &token)?.ok_or_else(|| corrupt("token vanished".into()))?;
            tx.commit()?;
            Ok(SettleResult::Settled(rec))
        })
        .await
    }

    /// Records that the function behind a token returned (with `events`, in one transaction),
    /// and reads the token back.
    pub async fn mark_invoked(
        &self,
        token: &str,
        events: Vec<NewEvent>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let token = token.to_string();
        self.call(move |c| {
            // IMMEDIATE: a deferred read-then-write transaction gets SQLITE_BUSY at once in WAL mode
            // when another connection wrote in between; the busy timeout only covers the lock.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE asl_task_tokens SET invoked = 1 WHERE token = ?1",
                params![token],
            )?;
            let rec = get_token(&tx, &token)?;
            if let Some(r) = &rec {
                insert_events(&tx, &r.execution, &events)?;
            }
            tx.commit()?;
            Ok(rec)
        })
        .await
    }

    /// Tokens of an execution whose tasks still wait, oldest first.
    pub async fn waiting_tokens(&self, execution: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let execution = execution.to_string();
        self.call(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM asl_task_tokens WHERE execution = ?1 AND status = 'WAITING' ORDER BY created_ms"
            ))?;
            let rows = stmt.query_map(params![execution], token_from_row)?;
            rows.collect()
        })
        .await
    }

    pub async fn history(&self, name: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        let name = name.to_string();
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, at_ms, event_type, state, details FROM asl_history WHERE execution = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![name], |r| {
                let t: String = r.get(2)?;
                Ok(HistoryEvent {
                    id: r.get(0)?,
                    timestamp: ms_to_datetime(r.get(1)?),
                    event_type: HistoryEventType::parse(&t).ok_or_else(|| corrupt(format!("bad event type {t}")))?,
                    state: r.get(3)?,
                    details: from_json(&r.get::<_, String>(4)?)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(name: &str) -> ExecutionRecord {
        ExecutionRecord {
            name: name.into(),
            arn: format!("arn:aws:states:us-east-1:000000000000:execution:sm:{name}"),
            definition_fingerprint: "fp".into(),
            status: ExecutionStatus::Running,
            input: json!({"a": 1}),
            output: None,
            error: None,
            cause: None,
            start_ms: 1_000,
            stop_ms: None,
            cursor: Cursor {
                state: "First".into(),
                state_input: json!({"a": 1}),
                entered_ms: 1_000,
                retry_counts: vec![0, 0],
                phase: Phase::Enter,
            },
            transitions: 0,
        }
    }

    fn event(t: HistoryEventType) -> NewEvent {
        NewEvent {
            at_ms: now_ms(),
            event_type: t,
            state: Some("First".into()),
            details: json!({}),
        }
    }

    fn token(name: &str, tok: &str) -> TokenRecord {
        TokenRecord {
            token: tok.into(),
            execution: name.into(),
            state: "Approve".into(),
            status: TokenStatus::Waiting,
            function: "f".into(),
            payload: json!({"token": tok}),
            invoked: false,
            deadline_ms: Some(5_000),
            output: None,
            error: None,
            cause: None,
            created_ms: 1_000,
            completed_ms: None,
        }
    }

    #[tokio::test]
    async fn round_trips_executions_tokens_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = ExecStore::open(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        let rec = record("e1");
        assert!(matches!(
            store
                .insert_execution(rec.clone(), vec![event(HistoryEventType::ExecutionStarted)])
                .await
                .unwrap(),
            InsertOutcome::Inserted
        ));
        assert!(matches!(
            store.insert_execution(rec.clone(), vec![]).await.unwrap(),
            InsertOutcome::Exists(_)
        ));
        assert_eq!(store.execution("e1").await.unwrap().unwrap(), rec);

        let cursor = Cursor {
            state: "Approve".into(),
            state_input: json!({"b": 2}),
            entered_ms: 2_000,
            retry_counts: vec![1],
            phase: Phase::Token { token: "t1".into() },
        };
        assert!(store
            .advance(
                "e1",
                cursor.clone(),
                Some(1),
                vec![event(HistoryEventType::TaskScheduled)],
                Some(token("e1", "t1"))
            )
            .await
            .unwrap());
        let got = store.execution("e1").await.unwrap().unwrap();
        assert_eq!(got.cursor, cursor);
        assert_eq!(got.transitions, 1);
        assert_eq!(
            store
                .executions(Some(ExecutionStatus::Running))
                .await
                .unwrap()
                .len(),
            1
        );

        assert_eq!(store.waiting_tokens("e1").await.unwrap().len(), 1);
        let t = store.mark_invoked("t1", vec![]).await.unwrap().unwrap();
        assert!(t.invoked);
        assert!(matches!(
            store
                .settle_token("nope", Settlement::TimedOut)
                .await
                .unwrap(),
            SettleResult::Unknown
        ));
        let SettleResult::Settled(t) = store
            .settle_token("t1", Settlement::Success(json!({"ok": true})))
            .await
            .unwrap()
        else {
            panic!("first settlement must win")
        };
        assert_eq!(t.output, Some(json!({"ok": true})));
        assert!(matches!(
            store
                .settle_token("t1", Settlement::TimedOut)
                .await
                .unwrap(),
            SettleResult::NotWaiting(_)
        ));

        assert!(store
            .finish(
                "e1",
                ExecutionStatus::Succeeded,
                Some(json!(1)),
                None,
                None,
                vec![event(HistoryEventType::ExecutionSucceeded)]
            )
            .await
            .unwrap());
        // A finished execution can be neither advanced nor finished again.
        assert!(!store
            .advance("e1", cursor, Some(2), vec![], None)
            .await
            .unwrap());
        assert!(!store
            .finish("e1", ExecutionStatus::Failed, None, None, None, vec![])
            .await
            .unwrap());
        let types: Vec<HistoryEventType> = store
            .history("e1")
            .await
            .unwrap()
            .iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types,
            vec![
                HistoryEventType::ExecutionStarted,
                HistoryEventType::TaskScheduled,
                HistoryEventType::ExecutionSucceeded
            ]
        );
    }

    #[tokio::test]
    async fn finishing_cancels_waiting_tokens_and_close_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ExecStore::open(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        store.insert_execution(record("e2"), vec![]).await.unwrap();
        let mut c = record("e2").cursor;
        c.phase = Phase::Token { token: "t2".into() };
        store
            .advance("e2", c, None, vec![], Some(token("e2", "t2")))
            .await
            .unwrap();
        store
            .finish(
                "e2",
                ExecutionStatus::TimedOut,
                None,
                Some("States.Timeout".into()),
                None,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            store.token("t2").await.unwrap().unwrap().status,
            TokenStatus::Cancelled
        );
        store.close();
        assert!(matches!(
            store.execution("e2").await,
            Err(StoreError::Closed)
        ));
    }

    #[test]
    fn migration_1_is_the_schema_from_before_versioning() {
        // A database from then has the tables, so an edit here would never reach it.
        let before = include_str!("../tests/fixtures/exec_store_v0_schema.sql");
        assert_eq!(SCHEMA_V1.trim(), before.trim());
        migrations().validate().unwrap();
    }

    #[tokio::test]
    async fn a_new_database_is_at_the_latest_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let _store = ExecStore::open(&path).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
    }

    #[tokio::test]
    async fn uses_wal_and_prefixed_tables_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let _store = ExecStore::open(&path).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .unwrap();
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(!names.is_empty());
        assert!(names.iter().all(|n| n.starts_with("asl_")), "{names:?}");
    }
}

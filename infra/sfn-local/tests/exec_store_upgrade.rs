//! A database written before the execution store's schema was versioned: it opens unchanged,
//! and an approval that was waiting for its task token then is still waiting, and finishes.

#[path = "runtime_support/mod.rs"]
mod support;

use rusqlite::Connection;
use serde_json::json;
use sfn_local::exec_store::{ExecutionStatus, HistoryEventType, StoreError};
use sfn_local::runtime::{Runtime, RuntimeError};
use sfn_local::Definition;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use support::*;

/// The DDL the store ran on every open before versioning, copied verbatim.
const SCHEMA_V0: &str = include_str!("fixtures/exec_store_v0_schema.sql");
const ROWS_V0: &str = include_str!("fixtures/exec_store_v0_rows.sql");

/// Writes the database the way the unversioned store left it, returning its schema objects.
fn write_unversioned_database(path: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = Connection::open(path).unwrap();
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(SCHEMA_V0).unwrap();
    conn.execute_batch(ROWS_V0).unwrap();
    schema_objects(&conn)
}

fn schema_objects(conn: &Connection) -> Vec<(String, String, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn user_version(conn: &Connection) -> i64 {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// The definition the RUNNING execution was started on, read back from the database itself.
fn stored_definition(path: &Path) -> Definition {
    let conn = Connection::open(path).unwrap();
    let source: String = conn
        .query_row(
            "SELECT source FROM asl_definitions WHERE fingerprint = '2134e18a947a99a6'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    Definition::load(&source, &HashMap::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_waiting_in_an_unversioned_database_resumes_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("iras.db");
    let before = write_unversioned_database(&db);
    let def = stored_definition(&db);
    // The fingerprint is how an execution finds its definition: it must read the same as then.
    assert_eq!(def.fingerprint(), "2134e18a947a99a6");

    let approver = Calls::default();
    let rt = Runtime::open(
        &db,
        def,
        registry(vec![("approver", func(&approver, |_, _| Ok(json!({}))))]),
        fast(),
    )
    .await
    .unwrap();

    let conn = Connection::open(&db).unwrap();
    assert_eq!(
        schema_objects(&conn),
        before,
        "migration 1 changes no table"
    );
    assert_eq!(user_version(&conn), 1);

    let ended = rt.describe_execution("incident-0").await.unwrap().unwrap();
    assert_eq!(ended.status, ExecutionStatus::Succeeded);
    assert_eq!(
        ended.output,
        Some(json!({"incident": "inc-0", "decision": {"approved": false}}))
    );
    assert_eq!(
        ended.stop_date.unwrap().timestamp_millis(),
        1_767_225_660_000
    );

    let pending = rt.pending_tasks("incident-1").await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].token.as_str(), pending[0].state.as_str()),
        ("tok-1", "Approve")
    );
    assert_eq!(
        pending[0].payload,
        json!({"token": "tok-1", "incident": "inc-1"})
    );

    rt.send_task_success("tok-1", json!({"approved": true}))
        .await
        .unwrap();
    let done = rt
        .wait_for_completion("incident-1", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!(
        done.output,
        Some(json!({"incident": "inc-1", "decision": {"approved": true}}))
    );
    // Its function had returned before: resuming waits for the token, it does not call again.
    assert_eq!(approver.get(), 0);

    let history: Vec<HistoryEventType> = rt
        .history("incident-1")
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        history[..5],
        [
            HistoryEventType::ExecutionStarted,
            HistoryEventType::StateEntered,
            HistoryEventType::TaskScheduled,
            HistoryEventType::TaskSubmitted,
            HistoryEventType::TaskSucceeded,
        ]
    );
    assert_eq!(history.last(), Some(&HistoryEventType::ExecutionSucceeded));
}

#[tokio::test]
async fn a_database_from_a_newer_schema_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("iras.db");
    write_unversioned_database(&db);
    let def = stored_definition(&db);
    Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 2)
        .unwrap();

    let opened = Runtime::open(&db, def, registry(vec![]), fast()).await;
    assert!(
        matches!(opened, Err(RuntimeError::Storage(StoreError::Migration(_)))),
        "{:?}",
        opened.err()
    );
}

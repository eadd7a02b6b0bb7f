//! A data directory written by the previous IRAS (one `iras.db` holding incidents and
//! executions, no schema versions) opens with this one: the incident still waits for its
//! approval, its execution resumes, and the two stores end in files of their own.
//!
//! `fixtures/data-before-split/iras.db` was written by `iras serve` at commit 4438478 (an alert
//! for payment-service posted, the server stopped while the plan awaited approval, with an
//! approval window of ten years so the fixture stays valid).

use std::path::Path;
use std::time::Duration;

use iras_core::stages::DecisionRequest;
use iras_core::*;
use iras_local::data_dir::DataFiles;
use iras_local::local::{LocalOptions, LocalPipeline};
use rusqlite::Connection;

const INCIDENT: &str = "inc-01a23585e44a7372aa7168fba7e9d61f";

fn tables(path: &Path) -> Vec<String> {
    let c = Connection::open(path).unwrap();
    let mut s = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence' ORDER BY name")
        .unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

async fn open(dir: &Path) -> LocalPipeline {
    LocalPipeline::open(LocalOptions::new(dir.to_path_buf()))
        .await
        .expect("the old data directory opens")
}

#[tokio::test]
async fn an_approval_waiting_in_a_pre_split_data_directory_survives_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/data-before-split/iras.db"
        ),
        dir.path().join("iras.db"),
    )
    .unwrap();
    let id = IncidentId::parse(INCIDENT).unwrap();
    let files = DataFiles::in_dir(dir.path());

    let first = open(dir.path()).await;
    let waiting = first.incident(&id).await.unwrap().expect("the incident");
    assert_eq!(waiting.status, IncidentStatus::AwaitingApproval);
    assert!(waiting.plan.is_some() && waiting.hypothesis.is_some());
    drop(first);

    // Each store has its own file and its own schema version; the other's tables are gone.
    assert!(tables(&files.incidents)
        .iter()
        .all(|t| !t.starts_with("asl_")));
    assert!(tables(&files.incidents).contains(&"incidents".to_string()));
    assert!(tables(&files.executions)
        .iter()
        .all(|t| t.starts_with("asl_")));
    // Migrated to the newest incident schema (3: the durable replay cache).
    assert_eq!(user_version(&files.incidents), 3);
    assert_eq!(user_version(&files.executions), 1);

    // Opening again is a no-op, and the waiting execution takes the decision.
    let pipeline = open(dir.path()).await;
    pipeline
        .decide(
            &id,
            DecisionRequest {
                approval_id: None,
                decision: Decision::Approved,
                approver: "alice".into(),
                channel: "cli".into(),
                comment: None,
                identity: iras_core::Identity::Unstated,
            },
        )
        .await
        .expect("the decision reaches the resumed execution");
    pipeline
        .wait_for_execution(&id, Duration::from_secs(30))
        .await
        .unwrap();
    let done = pipeline.incident(&id).await.unwrap().unwrap();
    // The plan the previous IRAS recorded is shell commands, not typed actions: it still reads
    // and displays, but it never runs; the incident is escalated instead.
    let plan = done.plan.as_ref().unwrap();
    assert!(plan.steps[0].action.is_none());
    assert!(
        plan.steps[0].text().cli.starts_with("kubectl rollout undo"),
        "{plan:?}"
    );
    assert_eq!(
        done.status,
        IncidentStatus::Escalated,
        "{:#?}",
        done.timeline
    );
    assert!(
        done.escalation
            .as_ref()
            .unwrap()
            .detail
            .contains("not a typed action"),
        "{:#?}",
        done.escalation
    );
    assert!(
        pipeline.store.steps(&id).await.unwrap().is_empty(),
        "nothing ran"
    );
    assert!(pipeline.store.postmortem(&id).await.unwrap().is_some());
}

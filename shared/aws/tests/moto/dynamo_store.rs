use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::TimeZone;
use iras_aws::{DynamoStore, PostMortemQuery, MAX_ATTEMPT_BYTES};
use iras_core::testing::store_contract;
use iras_core::*;

use crate::support::Moto;

const TABLE: &str = "iras-incidents";

async fn store(moto: &Moto) -> DynamoStore {
    let client = moto.dynamodb();
    DynamoStore::create_table(&client, TABLE).await.unwrap();
    DynamoStore::new(client, TABLE)
}

fn at(minute: u32) -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2024, 3, 12, 14, minute, 0)
        .unwrap()
}

fn incident(title: &str, fingerprint: &str) -> Incident {
    let alert = Alert::from_json(serde_json::json!({
        "title": title,
        "timestamp": at(7).to_rfc3339(),
        "service": "payment-service",
        "fingerprint": fingerprint,
    }))
    .unwrap();
    Incident::open(IncidentId::generate(), alert, at(7))
}

fn step(phase: StepPhase, step: usize) -> StepRecord {
    StepRecord {
        phase,
        step,
        command: format!("kubectl rollout undo deployment/payment-service #{step}"),
        rollback_command: String::new(),
        action: None,
        prior: None,
        after: None,
        status: StepStatus::Started,
        executor: "dry-run".into(),
        started_at: at(20),
        ended_at: None,
        output: String::new(),
    }
}

#[tokio::test]
async fn the_dynamo_store_meets_the_store_contract() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    store_contract::run_all(&store(&moto).await).await;
}

#[tokio::test]
async fn an_attempt_over_the_item_limit_is_stored_cut_with_a_marker() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = store(&moto).await;
    let inc = incident("Checkout latency", "fp-big");
    store.create_incident(&inc).await.unwrap();
    // About 600 KB of routine lines around the two errors that matter.
    let mut logs: Vec<LogLine> = (0..3000)
        .map(|i| LogLine {
            timestamp: at(0) + chrono::Duration::milliseconds(i * 100),
            service: "payment-service".into(),
            level: LogLevel::Info,
            message: format!("GET /health 200 {}", "·".repeat(90)),
        })
        .collect();
    for message in ["db pool exhausted", "upstream timeout after 30s"] {
        logs.push(LogLine {
            timestamp: at(6),
            service: "payment-service".into(),
            level: LogLevel::Error,
            message: message.into(),
        });
    }
    let attempt = InvestigationAttempt {
        attempt: 1,
        context: ContextBundle {
            attempt: 1,
            services: vec!["payment-service".into()],
            logs,
            ..Default::default()
        },
        hypothesis: None,
        gathered_at: at(8),
    };
    let full = serde_json::to_string(&attempt).unwrap();
    assert!(full.len() > 400 * 1024, "the attempt must exceed the limit");
    // The emulator enforces the limit too: uncut, the write would fail.
    let raw = moto
        .dynamodb()
        .put_item()
        .table_name(TABLE)
        .item("PK", AttributeValue::S("raw".into()))
        .item("SK", AttributeValue::S("raw".into()))
        .item("body", AttributeValue::S(full))
        .send()
        .await;
    assert!(raw.is_err(), "moto accepted an item over 400 KB");

    store.put_attempt(&inc.incident_id, attempt).await.unwrap();

    let back = store.attempts(&inc.incident_id).await.unwrap();
    assert_eq!(back.len(), 1);
    let ctx = &back[0].context;
    assert!(serde_json::to_string(&back[0]).unwrap().len() <= MAX_ATTEMPT_BYTES);
    assert!(
        ctx.truncated.iter().any(|t| t.starts_with("logs: dropped")),
        "{:?}",
        ctx.truncated
    );
    let errors: Vec<&str> = ctx
        .logs
        .iter()
        .filter(|l| l.level == LogLevel::Error)
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(errors, ["db pool exhausted", "upstream timeout after 30s"]);
}

#[tokio::test]
async fn concurrent_updates_of_one_version_have_exactly_one_winner() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = Arc::new(store(&moto).await);
    let inc = incident("Error rate", "fp-race");
    store.create_incident(&inc).await.unwrap();
    let read = store.get_incident(&inc.incident_id).await.unwrap().unwrap();
    let writers = (0..8).map(|n| {
        let (store, mut mine) = (store.clone(), read.clone());
        mine.title = format!("writer {n}");
        tokio::spawn(async move { store.update_incident(&mine).await })
    });
    let mut won = Vec::new();
    for w in writers {
        match w.await.unwrap() {
            Ok(stored) => won.push(stored),
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("expected Conflict, got {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one writer wins");
    let now = store.get_incident(&inc.incident_id).await.unwrap().unwrap();
    assert_eq!((now.version, &now.title), (2, &won[0].title));
}

#[tokio::test]
async fn updating_a_missing_incident_is_not_found() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = store(&moto).await;
    let mut ghost = incident("Never stored", "fp-ghost");
    ghost.version = 1;
    let err = store.update_incident(&ghost).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    // Also when the update would release the fingerprint (the transactional path).
    ghost.status = IncidentStatus::Resolved;
    let err = store.update_incident(&ghost).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn a_burst_of_one_alert_opens_one_incident() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = Arc::new(store(&moto).await);
    let creates = (0..6).map(|_| {
        let store = store.clone();
        let inc = incident("Disk full on db-1", "fp-burst");
        tokio::spawn(async move { (inc.incident_id.clone(), store.create_incident(&inc).await) })
    });
    let (mut opened, mut duplicates) = (Vec::new(), Vec::new());
    for c in creates {
        match c.await.unwrap() {
            (id, Ok(())) => opened.push(id),
            (_, Err(StoreError::Duplicate(of))) => duplicates.push(of),
            (_, Err(other)) => panic!("expected Duplicate, got {other:?}"),
        }
    }
    assert_eq!(opened.len(), 1, "one incident for the burst");
    assert!(
        duplicates.iter().all(|d| *d == opened[0]),
        "repeats point at it"
    );
}

#[tokio::test]
async fn a_stuck_fingerprint_expires_and_is_not_released_by_its_old_holder() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = store(&moto).await;
    let short_lived = store.clone().with_dedup_ttl(Duration::from_secs(1));
    let stuck = incident("Queue backlog", "fp-stuck");
    short_lived.create_incident(&stuck).await.unwrap();
    // TTL has second resolution: wait until the key is surely past it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let fresh = incident("Queue backlog", "fp-stuck");
    store
        .create_incident(&fresh)
        .await
        .expect("an expired key no longer dedups");
    // The stuck incident finally ends: the key is fresh's now and must stay taken.
    let mut old = store
        .get_incident(&stuck.incident_id)
        .await
        .unwrap()
        .unwrap();
    old.status = IncidentStatus::Escalated;
    store.update_incident(&old).await.unwrap();
    let repeat = incident("Queue backlog", "fp-stuck");
    let err = store.create_incident(&repeat).await.unwrap_err();
    assert_eq!(err, StoreError::Duplicate(fresh.incident_id));
}

#[tokio::test]
async fn steps_come_back_in_claim_order_across_phases() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = store(&moto).await;
    let inc = incident("Bad deploy", "fp-steps");
    store.create_incident(&inc).await.unwrap();
    let id = &inc.incident_id;
    // Apply 0 and 1, step 1 fails, roll back 1 then 0: sort keys would say otherwise.
    for (phase, n) in [
        (StepPhase::Apply, 0),
        (StepPhase::Apply, 1),
        (StepPhase::Rollback, 1),
        (StepPhase::Rollback, 0),
    ] {
        assert!(store.claim_step(id, &step(phase, n)).await.unwrap());
    }
    let mut done = step(StepPhase::Apply, 0);
    done.status = StepStatus::Succeeded;
    store.finish_step(id, &done).await.unwrap();
    // A step finished without a claim is recorded last.
    store
        .finish_step(id, &step(StepPhase::Apply, 2))
        .await
        .unwrap();
    let order: Vec<(StepPhase, usize)> = store
        .steps(id)
        .await
        .unwrap()
        .iter()
        .map(|s| (s.phase, s.step))
        .collect();
    assert_eq!(
        order,
        [
            (StepPhase::Apply, 0),
            (StepPhase::Apply, 1),
            (StepPhase::Rollback, 1),
            (StepPhase::Rollback, 0),
            (StepPhase::Apply, 2),
        ]
    );
}

#[tokio::test]
async fn listing_by_status_and_severity_pages_newest_first() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = store(&moto).await;
    let mut wanted = Vec::new();
    for n in 0..9 {
        let mut inc = incident(&format!("Alert {n}"), &format!("fp-list-{n}"));
        inc.severity = Some(if n % 3 == 0 {
            Severity::P3
        } else {
            Severity::P1
        });
        inc.status = if n % 4 == 0 {
            IncidentStatus::Escalated
        } else {
            IncidentStatus::Processing
        };
        store.create_incident(&inc).await.unwrap();
        if inc.severity == Some(Severity::P1) && inc.status == IncidentStatus::Processing {
            wanted.push(inc.incident_id.clone());
        }
    }
    wanted.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_incidents(&IncidentQuery {
                status: Some(IncidentStatus::Processing),
                severity: Some(Severity::P1),
                limit: 2,
                cursor,
            })
            .await
            .unwrap();
        assert!(page.incidents.len() <= 2);
        seen.extend(page.incidents.into_iter().map(|i| i.incident_id));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, wanted);
    let all = store
        .list_incidents(&IncidentQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.incidents.len(), 9);
    assert!(all
        .incidents
        .windows(2)
        .all(|w| w[0].incident_id > w[1].incident_id));
}

/// From JSON, so fields core adds later with a default need no change here.
fn postmortem(
    inc: &Incident,
    severity: Severity,
    outcome: PostMortemOutcome,
    duration_seconds: i64,
) -> PostMortem {
    serde_json::from_value(serde_json::json!({
        "incident_id": inc.incident_id,
        "title": inc.title,
        "severity": severity,
        "outcome": outcome,
        "summary": "Checkout failed for card payments",
        "root_cause": "connection pool exhausted after deploy v2.3.1",
        "resolution": "rolled back to v2.3.0",
        "timeline": inc.timeline,
        "action_items": [],
        "lessons": [],
        "started_at": at(0),
        "ended_at": at(0) + chrono::Duration::seconds(duration_seconds),
        "duration_seconds": duration_seconds,
        "rca_attempts": 1,
        "steps_applied": 1,
        "steps_rolled_back": 0,
        "written_at": at(0),
        "analyst": "offline",
    }))
    .expect("a post-mortem")
}

#[tokio::test]
async fn postmortems_are_found_by_severity_duration_and_outcome() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = store(&moto).await;
    let cases = [
        (Severity::P1, PostMortemOutcome::Resolved, 600),
        (Severity::P1, PostMortemOutcome::Resolved, 5400),
        (Severity::P1, PostMortemOutcome::Escalated, 7200),
        (Severity::P2, PostMortemOutcome::Resolved, 9000),
    ];
    let mut ids = Vec::new();
    for (severity, outcome, duration_seconds) in cases {
        let inc = incident("Outage", &format!("fp-pm-{duration_seconds}"));
        store.create_incident(&inc).await.unwrap();
        store
            .put_postmortem(&postmortem(&inc, severity, outcome, duration_seconds))
            .await
            .unwrap();
        ids.push(inc.incident_id);
    }
    let long_p1s = store
        .list_postmortems(&PostMortemQuery {
            severity: Some(Severity::P1),
            min_duration_seconds: Some(3600),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<&IncidentId> = long_p1s.iter().map(|p| &p.incident_id).collect();
    assert_eq!(got, [&ids[2], &ids[1]], "P1s over an hour, longest first");
    let escalated = store
        .list_postmortems(&PostMortemQuery {
            outcome: Some(PostMortemOutcome::Escalated),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(escalated.len(), 1);
    assert_eq!(escalated[0].incident_id, ids[2]);
}

#[tokio::test]
async fn the_table_expires_stuck_fingerprints_and_setup_can_rerun() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let client = moto.dynamodb();
    DynamoStore::create_table(&client, TABLE).await.unwrap();
    DynamoStore::create_table(&client, TABLE)
        .await
        .expect("an existing table is left as it is");
    let ttl = client
        .describe_time_to_live()
        .table_name(TABLE)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(
        (ttl.time_to_live_status, ttl.attribute_name.as_deref()),
        (
            Some(aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled),
            Some("ttl")
        )
    );
}

/// The audit log's items as the README describes them (`AUDIT#<seq>` in the incident's
/// partition): an entry edited in the table is found at its seq.
#[tokio::test]
async fn an_audit_entry_edited_in_the_table_is_found_at_its_seq() {
    use iras_core::audit::{append, verify, AuditDraft, AuditEvent, AuditFault};
    let Some(moto) = Moto::start().await else {
        return;
    };
    let store = store(&moto).await;
    let inc = incident("audited", "fp-audit");
    store.create_incident(&inc).await.unwrap();
    let id = &inc.incident_id;
    for step in 1..=3u64 {
        let draft = AuditDraft {
            key: format!("step:apply:{step}"),
            at: at(20),
            actor: "executor aws".into(),
            event: AuditEvent::StepApplied {
                step,
                command: "aws ecs update-service --desired-count 6".into(),
                executor: "aws".into(),
                prior: Some("desired 4".into()),
                after: Some("desired 6".into()),
                output: "ok".into(),
            },
        };
        append(&store, None, id, draft).await.unwrap();
    }
    assert_eq!(verify(id, &store.audit(id).await.unwrap(), None), Ok(3));

    let client = moto.dynamodb();
    let pk = AttributeValue::S(format!("INC#{id}"));
    let sk = AttributeValue::S("AUDIT#0000000002".into());
    let item = client
        .get_item()
        .table_name(TABLE)
        .key("PK", pk.clone())
        .key("SK", sk.clone())
        .send()
        .await
        .unwrap()
        .item
        .expect("entry 2 is an item of the incident's partition");
    let body = item["body"]
        .as_s()
        .unwrap()
        .replace("desired 6", "desired 60");
    client
        .update_item()
        .table_name(TABLE)
        .key("PK", pk)
        .key("SK", sk)
        .update_expression("SET body = :b")
        .expression_attribute_values(":b", AttributeValue::S(body))
        .send()
        .await
        .unwrap();
    let broken = verify(id, &store.audit(id).await.unwrap(), None).unwrap_err();
    assert_eq!((broken.seq, broken.fault), (2, AuditFault::Altered));
    // The incident's own record is not one of them.
    assert!(store.get_incident(id).await.unwrap().is_some());
}

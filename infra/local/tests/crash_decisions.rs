//! A decision and its delivery survive `kill -9` at any instant (issue 13, item 1): the server
//! is killed at many points after an approval, including inside the gap between recording the
//! decision and telling the execution, and restarted on the same data. Every run must end with
//! the plan applied once and the incident resolved, or still waiting with no decision recorded
//! (a person can then decide again). None may wedge.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Delivered before the kill: the restarted server finished the pipeline.
    Resolved,
    /// Recorded but not delivered at the kill: the restart's reconciliation delivered it.
    ResolvedByReconciliation,
    /// Killed before the decision was recorded: still waiting, decided again, resolved.
    NotRecordedDecidedAgain,
}

async fn approve(c: &reqwest::Client, url: &str, key: &str, id: &str) -> Option<u16> {
    c.post(format!("{url}/incidents/{id}/approve"))
        .bearer_auth(key)
        .json(&json!({"approver": "alice"}))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Waits for the incident to settle after the restart: resolved, or waiting with no decision.
async fn settled(c: &reqwest::Client, url: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = incident(c, url, id).await;
        let waiting_undecided =
            v["status"] == "awaiting_approval" && v["approval"]["decision"].is_null();
        if v["status"] == "resolved" || waiting_undecided {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "incident {id} wedged in {} (decision {})",
            v["status"],
            v["approval"]["decision"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn applied_steps(v: &Value) -> usize {
    v["steps"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["phase"] == "apply").count())
        .unwrap_or(0)
}

/// One run: alert, wait for approval, approve and kill after `kill_after`, restart, settle.
async fn run(i: usize, kill_after: Duration, hold_delivery: bool) -> Ending {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Half the runs hold every delivery for 2 s, so the kill lands in the gap for certain.
    let env: &[(&str, &str)] = if hold_delivery {
        &[("IRAS_FAULT_DELIVERY_DELAY_MS", "2000")]
    } else {
        &[]
    };
    let mut server = Server::start_with(&data, env);
    let c = server.client();
    let id = post_alert(&c, &server.url, &payment_alert(&format!("run {i}"))).await;
    let waiting = wait_status(&c, &server.url, &id, "awaiting_approval").await;
    let steps = waiting["plan"]["steps"].as_array().unwrap().len();
    let key = server.api_key();

    let (url, k, inc) = (server.url.clone(), key.clone(), id.clone());
    let decision = tokio::spawn(async move { approve(&client(), &url, &k, &inc).await });
    tokio::time::sleep(kill_after).await;
    server.kill();
    let answered = decision.await.unwrap();

    let server = Server::start(&data);
    let restart_log = std::fs::read_to_string(&server.stderr).unwrap_or_default();
    let v = settled(&c, &server.url, &id).await;
    let ending = if v["status"] == "resolved" {
        // The restarted server says what its start-up reconciliation delivered.
        if restart_log.contains("delivered, ") {
            Ending::ResolvedByReconciliation
        } else {
            Ending::Resolved
        }
    } else {
        // Not recorded: the person was not told it was (no 200 for this decision).
        assert_ne!(answered, Some(200), "run {i}: a 200 decision was lost");
        assert_eq!(approve(&c, &server.url, &key, &id).await, Some(200));
        let done = wait_status(&c, &server.url, &id, "resolved").await;
        assert_eq!(applied_steps(&done), steps, "run {i}: each step once");
        return Ending::NotRecordedDecidedAgain;
    };
    assert_eq!(
        applied_steps(&v),
        steps,
        "run {i}: each step applied exactly once"
    );
    assert_eq!(v["approval"]["decision"]["approver"], "alice", "run {i}");
    assert!(
        v["approval"]["decision"]["delivery_pending"].is_null(),
        "run {i}: delivered and marked so"
    );
    ending
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_at_any_point_after_an_approval_applies_the_plan_once_or_leaves_it_undecided() {
    let runs: usize = std::env::var("IRAS_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut endings = Vec::new();
    // A few at a time: each run is two server starts and one pipeline.
    for chunk in (0..runs).collect::<Vec<_>>().chunks(5) {
        let mut batch = tokio::task::JoinSet::new();
        for &i in chunk {
            let hold = i % 2 == 0;
            // Held runs: kill inside the 2 s hold. Others: spread over the first 200 ms, which
            // covers before the record, the ~1 ms gap and after the delivery.
            let kill_after = if hold {
                Duration::from_millis(300 + (i as u64 * 37) % 1500)
            } else {
                Duration::from_micros((i as u64 * 4_099) % 200_000)
            };
            batch.spawn(async move {
                let ending = run(i, kill_after, hold).await;
                eprintln!("run {i}: held {hold}, killed after {kill_after:?}: {ending:?}");
                ending
            });
        }
        while let Some(r) = batch.join_next().await {
            endings.push(r.unwrap());
        }
    }
    let count = |e: Ending| endings.iter().filter(|x| **x == e).count();
    eprintln!(
        "{runs} kills: {} resolved, {} resolved by reconciliation after the restart, {} not recorded and decided again",
        count(Ending::Resolved),
        count(Ending::ResolvedByReconciliation),
        count(Ending::NotRecordedDecidedAgain)
    );
    assert_eq!(endings.len(), runs);
    assert!(
        count(Ending::ResolvedByReconciliation) >= runs / 4,
        "the held runs were killed between the record and the delivery: {endings:?}"
    );
}

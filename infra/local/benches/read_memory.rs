//! The server's memory under concurrent reads of the largest records a store accepts (issue
//! 13, item 3): `iras serve` (the real binary) on a data dir holding 300 records just under
//! `MAX_RECORD_BYTES`, then 100 concurrent `GET /incidents/{id}` of one of them, then 100
//! concurrent `GET /incidents?limit=200` (each page stops at `MAX_PAGE_BYTES`). Prints the
//! server's resident memory before, its peak (`VmHWM`) after each round, and what it keeps.
//! Not a timed test: `cargo bench -p iras-local --bench read_memory`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iras_core::ports::{IncidentStore, MAX_PAGE_BYTES, MAX_RECORD_BYTES};
use iras_core::*;
use iras_local::store::SqliteStore;

const RECORDS: usize = 300;
const CONCURRENT: usize = 100;
const ROUNDS: usize = 3;

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A resolved incident whose record, as stored, is just under the bound.
fn largest(n: usize) -> Incident {
    let at = chrono::Utc::now();
    let alert = Alert::from_json(serde_json::json!({
        "title": format!("Checkout latency p99 over 2 s #{n}"),
        "timestamp": at.to_rfc3339(),
        "service": "checkout",
    }))
    .unwrap();
    let mut inc = Incident::open(IncidentId::generate(), alert, at);
    inc.status = IncidentStatus::Resolved;
    let base = serde_json::to_string(&inc).unwrap().len();
    // Text that JSON escapes (quotes, newlines, non-ASCII) weighs more as stored than as read.
    inc.title = "é\"\n".repeat((MAX_RECORD_BYTES - base - 64) / 6);
    assert!(serde_json::to_string(&inc).unwrap().len() <= MAX_RECORD_BYTES);
    inc
}

async fn round(c: &reqwest::Client, url: &str, key: &str, n: usize) -> (usize, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (c, url, key) = (c.clone(), url.to_string(), key.to_string());
        tasks.push(tokio::spawn(async move {
            let r = c.get(&url).bearer_auth(&key).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.bytes().await.unwrap().len()
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.unwrap();
    }
    (bytes, started.elapsed())
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        let store = SqliteStore::open(&data.join("iras.db")).unwrap();
        for n in 0..RECORDS {
            let mut inc = largest(n);
            inc.fingerprint = format!("bench:{n}");
            store.create_incident(&inc).await.unwrap();
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_iras"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env_remove("APPROVAL_API_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("iras serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().strip_prefix("listening ").unwrap().to_string();
    let key = std::fs::read_to_string(data.join("api-key"))
        .unwrap()
        .trim()
        .to_string();
    let pid = child.id();
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENT)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let page: serde_json::Value = c
        .get(format!("{url}/incidents?limit=1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = page["incidents"][0]["incident_id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss, _) = memory(pid);
    println!(
        "iras serve, {RECORDS} records of {} KiB (MAX_RECORD_BYTES), pages bounded at {} MiB",
        MAX_RECORD_BYTES / 1024,
        MAX_PAGE_BYTES / 1024 / 1024
    );
    println!("  at rest: {rss:.1} MiB resident");
    for (what, path) in [
        ("GET /incidents/{id}", format!("{url}/incidents/{id}")),
        (
            "GET /incidents?limit=200",
            format!("{url}/incidents?limit=200"),
        ),
    ] {
        for r in 1..=ROUNDS {
            let (bytes, took) = round(&c, &path, &key, CONCURRENT).await;
            let (rss, peak) = memory(pid);
            println!(
                "  {CONCURRENT} concurrent {what}, round {r}: {:.1} MiB answered in {:.2} s; peak {peak:.1} MiB, now {rss:.1} MiB",
                bytes as f64 / 1024.0 / 1024.0,
                took.as_secs_f64()
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, peak) = memory(pid);
    println!("  2 s later: {rss:.1} MiB resident; peak over the whole run {peak:.1} MiB");
    let _ = child.kill();
    let _ = child.wait();
}

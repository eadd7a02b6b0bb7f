//! An alert storm through the real router on the embedded store and the local runtime:
//! 10,000 alerts over 100 fingerprints in mixed vendor formats, then 1,000 distinct alerts.
//! Prints incidents made, alerts lost, alerts/s and p50/p99 latency. Not a timed test: it
//! prints figures (`cargo bench -p iras-local --bench alert_storm`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request};
use http_body_util::BodyExt;
use iras_core::ports::{IncidentQuery, IncidentStore};
use iras_core::IncidentId;
use iras_http::{App, HttpConfig};
use iras_local::local::{LocalOptions, LocalPipeline, LocalStarter, RuntimeCallbacks};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tower::ServiceExt;

/// Senders posting at once, as several monitoring tools would.
const CONCURRENCY: usize = 8;

fn fixture(rel: &str) -> Value {
    let json = iras_intake::fixtures::vendor_payload(rel)
        .unwrap_or_else(|| panic!("no vendor payload {rel}"));
    serde_json::from_str(json).unwrap()
}

/// Alert number `key` of the storm in one of the vendors' documented shapes (which one
/// depends on the key, so each fingerprint always arrives the same way).
fn payload(key: usize) -> (String, Value) {
    let now = chrono::Utc::now();
    let service = format!("svc-{key:04}");
    match key % 8 {
        0 => {
            let mut b = fixture("alertmanager/v4-probe-failure.json");
            b["alerts"][0]["fingerprint"] = json!(format!("am-{key}"));
            b["alerts"][0]["labels"]["service"] = json!(service);
            b["alerts"][0]["startsAt"] = json!(now.to_rfc3339());
            ("/webhook/alertmanager".into(), b)
        }
        1 => {
            let mut b = fixture("grafana/webhook.json");
            let mut a = b["alerts"][0].clone();
            a["fingerprint"] = json!(format!("gf-{key}"));
            a["labels"]["service"] = json!(service);
            b["alerts"] = json!([a]);
            ("/webhook/alert".into(), b)
        }
        2 => {
            let mut b = fixture("pagerduty/events-v2-trigger.json");
            b["dedup_key"] = json!(format!("pd-{key}"));
            b["payload"]["component"] = json!(service);
            ("/webhook/pagerduty".into(), b)
        }
        3 => {
            let mut b = fixture("opsgenie/create.json");
            b["alert"]["alias"] = json!(format!("og-{key}"));
            ("/webhook/alert".into(), b)
        }
        4 => {
            let mut b = fixture("sentry/issue-alert.json");
            b["data"]["event"]["issue_id"] = json!(format!("{key}"));
            ("/webhook/sentry".into(), b)
        }
        5 => {
            let mut b = fixture("cloudwatch/eventbridge-single-metric-alarm.json");
            b["resources"] = json!([format!(
                "arn:aws:cloudwatch:us-east-1:123456789012:alarm:cw-{key}"
            )]);
            b["time"] = json!(now.to_rfc3339());
            ("/webhook/alert".into(), b)
        }
        6 => (
            "/webhook/datadog".into(),
            json!({"alert_id": format!("{key}"), "alert_title": format!("[Triggered] {service} is down"),
                   "alert_transition": "Triggered", "alert_priority": "P2",
                   "date": format!("{}", now.timestamp_millis()),
                   "tags": format!("env:prod,service:{service}"), "event_type": "metric_alert_monitor",
                   "body": "%%% errors above threshold %%%"}),
        ),
        _ => (
            "/webhook/alert".into(),
            json!({"title": format!("High error rate on {service}"), "service": service,
                   "timestamp": now.to_rfc3339(), "fingerprint": format!("flat-{key}"),
                   "labels": {"namespace": "shop"}, "value": 0.45}),
        ),
    }
}

struct Figures {
    sent: usize,
    accepted: usize,
    incidents: HashSet<IncidentId>,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

async fn storm(router: &axum::Router, keys: Vec<usize>) -> Figures {
    let bodies: Vec<(String, String)> = keys
        .into_iter()
        .map(|k| {
            let (path, body) = payload(k);
            (path, body.to_string())
        })
        .collect();
    let sent = bodies.len();
    let queue = Arc::new(Mutex::new(bodies.into_iter().rev().collect::<Vec<_>>()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let queue = queue.clone();
        let router = router.clone();
        workers.push(tokio::spawn(async move {
            let mut out = (0usize, Vec::new(), Vec::new());
            loop {
                let Some((path, body)) = queue.lock().await.pop() else {
                    return out;
                };
                let request = Request::post(path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap();
                let t = Instant::now();
                let response = router.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                out.1.push(t.elapsed());
                if status.as_u16() == 202 {
                    out.0 += 1;
                    let v: Value = serde_json::from_slice(&bytes).unwrap();
                    for r in v["results"].as_array().into_iter().flatten() {
                        if let Some(id) = r["incident_id"].as_str() {
                            out.2.push(IncidentId(id.to_string()));
                        }
                    }
                } else {
                    eprintln!("  lost: {status} {}", String::from_utf8_lossy(&bytes));
                }
            }
        }));
    }
    let mut f = Figures {
        sent,
        accepted: 0,
        incidents: HashSet::new(),
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for w in workers {
        let (ok, lat, ids) = w.await.unwrap();
        f.accepted += ok;
        f.latencies.extend(lat);
        f.incidents.extend(ids);
    }
    f.elapsed = started.elapsed();
    f
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut f: Figures, stored: usize) {
    f.latencies.sort();
    println!(
        "{name}: {} alerts sent, {} accepted, {} lost; {} incidents made ({} in the store); \
         {:.0} alerts/s; latency p50 {:.2} ms, p99 {:.2} ms",
        f.sent,
        f.accepted,
        f.sent - f.accepted,
        f.incidents.len(),
        stored,
        f.sent as f64 / f.elapsed.as_secs_f64(),
        percentile(&f.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&f.latencies, 0.99).as_secs_f64() * 1e3,
    );
}

async fn stored_incidents(pipeline: &LocalPipeline) -> usize {
    let mut n = 0;
    let mut cursor = None;
    loop {
        let page = pipeline
            .store
            .list_incidents(&IncidentQuery {
                limit: 500,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        n += page.incidents.len() + page.unreadable.len();
        match page.next {
            Some(next) => cursor = Some(next),
            None => return n,
        }
    }
}

async fn door(dir: &std::path::Path) -> (LocalPipeline, axum::Router) {
    let pipeline = LocalPipeline::open(LocalOptions::new(dir.to_path_buf()))
        .await
        .unwrap();
    let runtime = pipeline.runtime.clone();
    let app = Arc::new(App {
        deps: pipeline.deps.clone(),
        starter: Arc::new(LocalStarter(runtime.clone())),
        callbacks: Arc::new(RuntimeCallbacks(runtime)),
        http: HttpConfig::default(),
        runtime_health: Arc::new(|| Ok(())),
    });
    (pipeline, iras_http::router_with_slack(app, None))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (pipeline, router) = door(&dir.path().join("storm")).await;
        // 100 fingerprints, 100 alerts each, interleaved as a storm arrives.
        let keys: Vec<usize> = (0..10_000).map(|i| i % 100).collect();
        let f = storm(&router, keys).await;
        let stored = stored_incidents(&pipeline).await;
        report("storm (10,000 alerts, 100 fingerprints)", f, stored);

        let (pipeline, router) = door(&dir.path().join("distinct")).await;
        let keys: Vec<usize> = (0..1_000).map(|i| 10_000 + i).collect();
        let f = storm(&router, keys).await;
        let stored = stored_incidents(&pipeline).await;
        report("distinct (1,000 alerts, 1,000 fingerprints)", f, stored);
    });
}

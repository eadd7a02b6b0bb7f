//! One synthetic incident served through fake Prometheus, Loki and GitHub that answer from
//! the scenario file, read back through the adapters (configured from variables, as in
//! production) and through the scenario directly: the same evidence where it matters, and the
//! same root cause.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::routing::get;
use axum::{Json, Router};
use iras_adapters::integrations_from_env;
use iras_core::stages::*;
use iras_core::testing::*;
use iras_core::*;
use iras_scenarios::Scenario;
use serde_json::{json, Value};

use crate::support::*;

const WEEK: i64 = 7 * 24 * 3600;
const PROBLEM_WORDS: [&str; 5] = ["warn", "error", "fatal", "exception", "panic"];

fn scenario_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios/synthetic/bad-deploy-payment-npe.json")
}

/// Which scenario series a PromQL query asks for, read the way a person reads the default
/// templates (and, for the rest, the metric name the query starts with).
fn signal_of(promql: &str) -> String {
    if promql.contains("histogram_quantile(0.5,") {
        "latency_p50".into()
    } else if promql.contains("histogram_quantile(0.99,") {
        "latency_p99".into()
    } else if promql.contains(r#"code=~"5..""#) {
        "error_rate".into()
    } else if promql.contains("container_cpu_usage_seconds_total") {
        "cpu_usage_cores".into()
    } else if promql.contains("container_memory_working_set_bytes") {
        "memory_working_set_bytes".into()
    } else if promql.starts_with("sum(rate(http_requests_total") {
        "request_rate".into()
    } else {
        promql
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    }
}

/// Prometheus answering from the scenario: samples on the query's step grid, the baseline
/// for `offset 7d` (answered at this window's timestamps, as Prometheus does).
async fn prometheus(s: Arc<Scenario>) -> FakeServer {
    FakeServer::start(Router::new().route(
        "/api/v1/query_range",
        get(move |Query(p): Query<HashMap<String, String>>| {
            let s = s.clone();
            async move {
                let q = &p["query"];
                let start: i64 = p["start"].parse().unwrap();
                let end: i64 = p["end"].parse().unwrap();
                let step: i64 = p["step"].trim_end_matches('s').parse().unwrap();
                let offset = q.contains("offset 7d");
                let service = label_value(q, "service")
                    .or_else(|| label_value(q, "container"))
                    .unwrap();
                let name = signal_of(q);
                let result: Vec<Value> = s
                    .metrics
                    .iter()
                    .filter(|m| m.service == service && m.name == name)
                    .map(|m| {
                        let (samples, shift) = if offset { (&m.baseline, WEEK) } else { (&m.points, 0) };
                        let values: Vec<Value> = (start..=end)
                            .step_by(step as usize)
                            .filter_map(|t| {
                                let (_, v) = samples.iter().find(|(ts, _)| *ts == t - shift)?;
                                Some(json!([t, v.map(|x| x.to_string()).unwrap_or("NaN".into())]))
                            })
                            .collect();
                        json!({"metric": {"service": service}, "values": values})
                    })
                    .collect();
                Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
            }
        }),
    ))
    .await
}

fn is_problem_line(message: &str) -> bool {
    let lower = message.to_lowercase();
    PROBLEM_WORDS.iter().any(|w| lower.contains(w))
}

/// Loki answering from the scenario: the service's lines in the range that match the
/// problem pattern, newest first up to `limit`, one stream per level.
async fn loki(s: Arc<Scenario>) -> FakeServer {
    FakeServer::start(Router::new().route(
        "/loki/api/v1/query_range",
        get(move |Query(p): Query<HashMap<String, String>>| {
            let s = s.clone();
            async move {
                let q = &p["query"];
                assert!(q.contains(r#"|~ "(?i)(warn|error|fatal|exception|panic)""#), "{q}");
                let service = label_value(q, "service").unwrap();
                let start: i64 = p["start"].parse().unwrap();
                let end: i64 = p["end"].parse().unwrap();
                let limit: usize = p["limit"].parse().unwrap();
                assert_eq!(p["direction"], "backward");
                let mut lines: Vec<&LogLine> = s
                    .logs
                    .iter()
                    .filter(|l| l.service == service && is_problem_line(&l.message))
                    .filter(|l| {
                        let t = l.timestamp.timestamp_nanos_opt().unwrap();
                        t >= start && t <= end
                    })
                    .collect();
                lines.sort_by_key(|l| std::cmp::Reverse(l.timestamp));
                lines.truncate(limit);
                let mut streams: HashMap<String, Vec<Value>> = HashMap::new();
                for l in lines {
                    let level = format!("{:?}", l.level).to_lowercase();
                    streams.entry(level).or_default().push(json!([
                        l.timestamp.timestamp_nanos_opt().unwrap().to_string(),
                        l.message
                    ]));
                }
                let result: Vec<Value> = streams
                    .into_iter()
                    .map(|(level, values)| json!({"stream": {"service": service, "level": level}, "values": values}))
                    .collect();
                Json(json!({"status": "success", "data": {"resultType": "streams", "result": result}}))
            }
        }),
    ))
    .await
}

/// GitHub answering from the scenario: repository `acme/<service>`, every deployment with one
/// `success` status.
async fn github(s: Arc<Scenario>) -> FakeServer {
    let listed = s.clone();
    FakeServer::start(
        Router::new()
            .route(
                "/repos/{owner}/{repo}/deployments",
                get(move |Path((_, repo)): Path<(String, String)>| {
                    let s = listed.clone();
                    async move {
                        let mut ds: Vec<(usize, &Deployment)> = s
                            .deployments
                            .iter()
                            .enumerate()
                            .filter(|(_, d)| d.service == repo)
                            .collect();
                        ds.sort_by_key(|(_, d)| std::cmp::Reverse(d.timestamp));
                        let body: Vec<Value> = ds
                            .into_iter()
                            .map(|(i, d)| json!({
                                "id": i + 1, "sha": "0123456789abcdef0123456789abcdef01234567",
                                "ref": d.version, "task": "deploy", "environment": "production",
                                "description": d.description, "creator": {"login": d.author},
                                "created_at": d.timestamp.to_rfc3339(), "updated_at": d.timestamp.to_rfc3339(),
                            }))
                            .collect();
                        Json(Value::Array(body))
                    }
                }),
            )
            .route(
                "/repos/{owner}/{repo}/deployments/{id}/statuses",
                get(move |Path((_, _, id)): Path<(String, String, usize)>| {
                    let s = s.clone();
                    async move {
                        let d = &s.deployments[id - 1];
                        Json(json!([{"id": id * 10, "state": "success", "created_at": d.timestamp.to_rfc3339()}]))
                    }
                }),
            ),
    )
    .await
}

fn deps(
    s: &Arc<Scenario>,
    logs: Vec<Arc<dyn LogSource>>,
    metrics: Vec<Arc<dyn MetricSource>>,
    deployments: Vec<Arc<dyn DeploymentSource>>,
) -> Deps {
    Deps::builder(Arc::new(MemoryStore::default()))
        .evidence(EvidenceSources {
            logs,
            metrics,
            deployments,
            topology: vec![Arc::new(s.sources())],
        })
        .notifier(Arc::new(RecordingNotifier::default()))
        .pager(Arc::new(RecordingPager::default()))
        .executor(Arc::new(FailingExecutor::default()))
        .clock(Arc::new(ManualClock::at(s.alert.timestamp)))
        .source_timeout(Duration::from_secs(10))
        .build()
}

/// The first attempt's evidence and the offline analyst's root cause from it.
async fn investigate(deps: &Deps, alert: &Alert) -> (ContextBundle, RootCauseHypothesis) {
    let id = ingest(deps, alert.clone())
        .await
        .unwrap()
        .incident_id
        .expect("an incident");
    triage(
        deps,
        &IncidentRef {
            incident_id: id.clone(),
        },
    )
    .await
    .unwrap();
    gather_context(
        deps,
        &AttemptInput {
            incident_id: id.clone(),
            attempt: 1,
        },
    )
    .await
    .unwrap();
    let incident = deps.store.get_incident(&id).await.unwrap().unwrap();
    let context = deps.store.attempts(&id).await.unwrap().remove(0).context;
    let hypothesis = iras_core::analyst::rca(alert, incident.triage.as_ref().unwrap(), &context);
    (context, hypothesis)
}

#[tokio::test]
async fn a_scenario_served_by_fake_backends_gives_the_same_evidence_and_root_cause() {
    let scenario = Arc::new(Scenario::load(&scenario_path()).unwrap());
    let prom = prometheus(scenario.clone()).await;
    let loki = loki(scenario.clone()).await;
    let gh = github(scenario.clone()).await;

    let default_names = [
        "error_rate",
        "latency_p50",
        "latency_p99",
        "request_rate",
        "cpu_usage_cores",
        "memory_working_set_bytes",
    ];
    let deployed: BTreeSet<&str> = scenario
        .deployments
        .iter()
        .map(|d| d.service.as_str())
        .collect();
    let mut vars: HashMap<String, String> = [
        ("PROMETHEUS_BASE_URL", prom.url.clone()),
        ("LOKI_BASE_URL", loki.url.clone()),
        ("GITHUB_API_URL", gh.url.clone()),
        ("GITHUB_TOKEN", "ghp_test".into()),
        (
            "GITHUB_REPOS",
            deployed
                .iter()
                .map(|s| format!("{s}=acme/{s}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // The scenario's other series (JVM heap, database connections, ...) as extra signals,
    // with their units.
    for m in &scenario.metrics {
        if !default_names.contains(&m.name.as_str()) {
            vars.insert(
                format!("PROMETHEUS_QUERY_{}", m.name.to_uppercase()),
                format!("{}{{service=\"{{service}}\"}}{{offset}}", m.name),
            );
            vars.insert(
                format!("PROMETHEUS_UNIT_{}", m.name.to_uppercase()),
                m.unit.clone(),
            );
        }
    }
    let integrations = integrations_from_env(&vars).unwrap();
    assert_eq!(integrations.evidence.metrics.len(), 1);
    assert_eq!(integrations.evidence.logs.len(), 1);
    assert_eq!(integrations.evidence.deployments.len(), 1);

    let through_adapters = deps(
        &scenario,
        integrations.evidence.logs,
        integrations.evidence.metrics,
        integrations.evidence.deployments,
    );
    let src = Arc::new(scenario.sources());
    let direct = deps(&scenario, vec![src.clone()], vec![src.clone()], vec![src]);
    let (a, hyp_a) = investigate(&through_adapters, &scenario.alert).await;
    let (b, hyp_b) = investigate(&direct, &scenario.alert).await;

    assert!(a.failed_sources.is_empty(), "{:?}", a.failed_sources);
    assert_eq!(a.services, b.services);
    assert!(a.services.contains(&"payment-service".to_string()));

    // Metrics: every series the scenario has for the investigated services, same values,
    // same baseline.
    assert_eq!(a.metrics.len(), b.metrics.len(), "no series lost");
    for want in &b.metrics {
        let got = a
            .metrics
            .iter()
            .find(|m| m.service == want.service && m.name == want.name)
            .unwrap_or_else(|| panic!("missing {} {}", want.service, want.name));
        assert_eq!(got.points, want.points, "{} {}", want.service, want.name);
        assert_eq!(
            got.baseline, want.baseline,
            "{} {} baseline",
            want.service, want.name
        );
    }
    assert_eq!(a.anomalies, b.anomalies);

    // Logs: the problem lines, word for word, with their levels.
    let problems: Vec<&LogLine> = b
        .logs
        .iter()
        .filter(|l| is_problem_line(&l.message))
        .collect();
    assert!(!problems.is_empty());
    assert_eq!(a.logs.iter().collect::<Vec<_>>(), problems);
    assert!(a
        .logs
        .iter()
        .any(|l| l.message.contains("NullPointerException")));

    // Deployments: the same ones, v2.3.1 among them.
    assert_eq!(a.deployments, b.deployments);
    assert!(a.deployments.iter().any(|d| d.version == "v2.3.1"));

    // The analyst reaches the same conclusion.
    assert_eq!(hyp_a.candidates[0].service, hyp_b.candidates[0].service);
    assert_eq!(hyp_a.root_cause_service, "payment-service");
    assert_eq!(hyp_a.root_cause_service, hyp_b.root_cause_service);
    assert_eq!(hyp_a.fault, hyp_b.fault);
    assert_eq!(
        hyp_a.suspect_deployment.as_ref().map(|d| &d.version),
        hyp_b.suspect_deployment.as_ref().map(|d| &d.version)
    );
}

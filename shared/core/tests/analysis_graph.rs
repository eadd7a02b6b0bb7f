//! The service graph read as explanations, on bundles small enough to reason about by hand:
//! the deepest anomalous callee explains its callers, a healthy service in between breaks the
//! chain, failed requests (not failure shares) decide which callee explains a caller's errors,
//! and symptoms of the kind the alert is not about weigh less.

use chrono::DateTime;
use iras_core::analyst;
use iras_core::*;

const AT: i64 = 1_700_000_000;

/// Five 5-minute samples (two before the alert) and a 36-sample baseline with some noise.
fn series(service: &str, name: &str, normal: f64, incident: &[f64]) -> MetricSeries {
    let noise = |i: usize| 1.0 + 0.02 * ((i % 5) as f64 - 2.0) / 2.0;
    let mut points: Vec<(i64, Option<f64>)> = (0..2)
        .map(|i| (AT - 600 + 300 * i as i64, Some(normal * noise(i))))
        .collect();
    points.extend(
        incident
            .iter()
            .enumerate()
            .map(|(i, v)| (AT + 300 * i as i64, Some(*v))),
    );
    MetricSeries {
        service: service.into(),
        name: name.into(),
        unit: String::new(),
        points,
        baseline: (0..36)
            .map(|i| (AT - 86_400 + 300 * i as i64, Some(normal * noise(i))))
            .collect(),
    }
}

/// Availability at 100 over a flat request count, then `failing` of those requests failing.
fn availability(service: &str, requests: f64, failing: &[f64]) -> Vec<MetricSeries> {
    let baseline = |v: f64| -> Vec<(i64, Option<f64>)> {
        (0..36)
            .map(|i| (AT - 86_400 + 300 * i as i64, Some(v)))
            .collect()
    };
    let times: Vec<i64> = (0..5).map(|i| AT - 600 + 300 * i as i64).collect();
    let avail = MetricSeries {
        service: service.into(),
        name: "availability_avg".into(),
        unit: "percent".into(),
        points: times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let f = if i >= 2 { failing[i - 2] } else { 0.0 };
                (*t, Some(100.0 * (1.0 - f / requests)))
            })
            .collect(),
        baseline: baseline(100.0),
    };
    let reqs = MetricSeries {
        service: service.into(),
        name: "requests_sum".into(),
        unit: "count".into(),
        points: times.iter().map(|t| (*t, Some(requests))).collect(),
        baseline: baseline(requests),
    };
    vec![avail, reqs]
}

fn edge(a: &str, b: &str) -> ServiceEdge {
    ServiceEdge {
        from: a.into(),
        to: b.into(),
    }
}

fn rank(title: &str, topology: Vec<ServiceEdge>, metrics: Vec<MetricSeries>) -> Vec<String> {
    let alert = Alert::from_json(serde_json::json!({
        "title": title,
        "timestamp": DateTime::from_timestamp(AT, 0).unwrap().to_rfc3339(),
        "service": "gateway",
    }))
    .unwrap();
    let ctx = ContextBundle {
        attempt: 1,
        topology,
        metrics,
        ..Default::default()
    };
    let h = analyst::rca(&alert, &analyst::triage(&alert), &ctx);
    assert!(
        h.confidence < 0.7,
        "metrics alone never make a confident answer: {h:#?}"
    );
    h.candidates.into_iter().map(|c| c.service).collect()
}

#[test]
fn the_deepest_anomalous_callee_explains_the_chain() {
    let order = rank(
        "High latency on gateway",
        vec![edge("gateway", "a"), edge("a", "b"), edge("b", "db")],
        vec![
            series("gateway", "latency_avg", 0.10, &[0.62, 0.60, 0.61]),
            series("a", "latency_avg", 0.05, &[0.56, 0.55, 0.55]),
            series("b", "latency_avg", 0.03, &[0.53, 0.52, 0.53]),
            series("db", "latency_avg", 0.01, &[0.50, 0.50, 0.51]),
        ],
    );
    assert_eq!(order[0], "db", "{order:?}");
}

#[test]
fn a_healthy_service_in_between_breaks_the_chain() {
    // deep is slow, but mid (between it and the gateway) is not: deep is another story.
    let order = rank(
        "High latency on gateway",
        vec![
            edge("gateway", "mid"),
            edge("mid", "deep"),
            edge("gateway", "search"),
        ],
        vec![
            series("gateway", "latency_avg", 0.10, &[0.40, 0.41, 0.40]),
            series("mid", "latency_avg", 0.05, &[0.05, 0.05, 0.05]),
            series("deep", "latency_avg", 0.02, &[2.0, 2.1, 2.0]),
            series("search", "latency_avg", 0.04, &[0.33, 0.34, 0.33]),
        ],
    );
    assert_eq!(order[0], "search", "{order:?}");
}

#[test]
fn failed_requests_decide_which_callee_explains_the_errors() {
    // big fails 3% of 1000 requests (30), small 25% of 16 (4); the gateway loses 28 of 700.
    let mut metrics = availability("gateway", 700.0, &[28.0, 27.0, 28.0]);
    metrics.extend(availability("big", 1000.0, &[30.0, 29.0, 31.0]));
    metrics.extend(availability("small", 16.0, &[4.0, 4.0, 4.0]));
    let order = rank(
        "Availability drop on gateway",
        vec![edge("gateway", "big"), edge("gateway", "small")],
        metrics,
    );
    assert_eq!(order[0], "big", "{order:?}");
}

#[test]
fn symptoms_of_the_kind_the_alert_is_not_about_weigh_less() {
    // A latency alert: the callee that is slow explains it; the one throwing errors (the
    // gateway shows none) is something else.
    let mut metrics = vec![
        series("gateway", "latency_avg", 0.10, &[0.45, 0.44, 0.45]),
        series("slow", "latency_avg", 0.05, &[0.40, 0.39, 0.40]),
        series("slow", "error_rate", 0.001, &[0.001, 0.001, 0.001]),
        series("noisy", "latency_avg", 0.05, &[0.05, 0.05, 0.05]),
        series("noisy", "error_rate", 0.001, &[0.30, 0.32, 0.31]),
    ];
    metrics.push(series(
        "gateway",
        "error_rate",
        0.001,
        &[0.001, 0.001, 0.001],
    ));
    let order = rank(
        "High latency on gateway",
        vec![edge("gateway", "slow"), edge("gateway", "noisy")],
        metrics,
    );
    assert_eq!(order[0], "slow", "{order:?}");
}

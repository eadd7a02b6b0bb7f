//! `PrometheusSource` against a fake `/api/v1/query_range`.

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use iras_adapters::prometheus::{default_signals, BASELINE_OFFSET_SECONDS};
use iras_adapters::{PrometheusConfig, PrometheusSource, Signal};
use iras_core::{MetricSource, SourceError};
use serde_json::json;
use std::collections::HashMap;

use crate::support::*;

const ALERT: &str = "2024-03-12T14:07:30Z";

fn source(fake: &FakeServer) -> PrometheusSource {
    let mut c = PrometheusConfig::new(fake.url());
    c.bearer_token = Some("prom-token".into());
    PrometheusSource::new(c).unwrap()
}

/// Answers each range query with three samples at its own grid, the last one `NaN`; the
/// baseline (`offset 7d`) at a tenth of the value.
async fn matrix_fake() -> FakeServer {
    FakeServer::start(Router::new().route(
        "/api/v1/query_range",
        get(|Query(p): Query<HashMap<String, String>>| async move {
            let start: i64 = p["start"].parse().unwrap();
            let step: i64 = p["step"].trim_end_matches('s').parse().unwrap();
            let v = if p["query"].contains("offset 7d") {
                0.1
            } else {
                1.0
            };
            axum::Json(json!({
                "status": "success",
                "data": {"resultType": "matrix", "result": [{
                    "metric": {"service": "payment-service"},
                    "values": [
                        [start + 30 * step, format!("{}", v)],
                        [start + 31 * step, format!("{}", 2.0 * v)],
                        [start + 32 * step, "NaN"],
                    ]
                }]}
            }))
        }),
    ))
    .await
}

#[tokio::test]
async fn a_normal_answer_gives_every_signal_with_its_week_old_baseline() {
    let fake = matrix_fake().await;
    let q = evidence_query(&["payment-service"], ALERT);
    let series = source(&fake).metrics(&q).await.unwrap();

    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "error_rate",
            "latency_p50",
            "latency_p99",
            "request_rate",
            "cpu_usage_cores",
            "memory_working_set_bytes"
        ]
    );
    let error_rate = &series[0];
    assert_eq!(error_rate.service, "payment-service");
    assert_eq!(error_rate.unit, "ratio");
    let values: Vec<Option<f64>> = error_rate.points.iter().map(|p| p.1).collect();
    assert_eq!(
        values,
        vec![Some(1.0), Some(2.0), None],
        "NaN is a missing sample"
    );
    let base: Vec<Option<f64>> = error_rate.baseline.iter().map(|p| p.1).collect();
    assert_eq!(base, vec![Some(0.1), Some(0.2), None]);
    for (now, then) in error_rate.points.iter().zip(&error_rate.baseline) {
        assert_eq!(
            now.0 - then.0,
            BASELINE_OFFSET_SECONDS,
            "baseline stored at its own time"
        );
    }

    // What Prometheus was asked: 12 range queries (6 signals, window and baseline), each
    // with an aligned range and a step keeping the window near 120 points or fewer.
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 12);
    let window_start = q.window.start.timestamp();
    for r in &reqs {
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/api/v1/query_range");
        assert_eq!(r.header("authorization"), Some("Bearer prom-token"));
        let start: i64 = r.param("start").unwrap().parse().unwrap();
        let end: i64 = r.param("end").unwrap().parse().unwrap();
        assert_eq!(r.param("step").as_deref(), Some("60s"));
        assert_eq!(start % 60, 0);
        assert!(start <= window_start && window_start - start < 60);
        assert!((end - start) / 60 <= 120);
        assert!(r.param("timeout").is_some());
    }
    let queries: Vec<String> = reqs.iter().map(|r| r.param("query").unwrap()).collect();
    assert!(queries.contains(&default_signals()[0].render("payment-service", false)));
    assert!(queries.contains(
        &r#"sum(rate(http_requests_total{service="payment-service",code=~"5.."}[5m] offset 7d)) / sum(rate(http_requests_total{service="payment-service"}[5m] offset 7d))"#
            .to_string()
    ));
    assert_eq!(
        queries.iter().filter(|q| q.contains("offset 7d")).count(),
        6
    );
}

#[tokio::test]
async fn a_hostile_service_name_stays_inside_its_label_value() {
    let fake = matrix_fake().await;
    let name = r#"pay"} or vector(1) #"#;
    let q = evidence_query(&[name], ALERT);
    source(&fake).metrics(&q).await.unwrap();
    for r in fake.requests() {
        let promql = r.param("query").unwrap();
        assert!(
            promql.contains(r#"service="pay\"} or vector(1) #""#)
                || promql.contains(r#"container="pay\"} or vector(1) #""#),
            "{promql}"
        );
        let label = if promql.contains("container=") {
            "container"
        } else {
            "service"
        };
        assert_eq!(label_value(&promql, label).as_deref(), Some(name));
        assert!(
            !promql.contains(r#"pay"}"#),
            "raw quote reached the query: {promql}"
        );
    }
}

#[tokio::test]
async fn a_template_without_offset_reads_the_earlier_range_itself() {
    let fake = matrix_fake().await;
    let mut c = PrometheusConfig::new(fake.url());
    c.signals = vec![Signal::new(
        "queue_depth",
        "",
        r#"queue_depth{app="{service}"}"#,
    )];
    let q = evidence_query(&["worker"], ALERT);
    let series = PrometheusSource::new(c).unwrap().metrics(&q).await.unwrap();
    assert_eq!(series.len(), 1);
    let reqs = fake.requests();
    let starts: Vec<i64> = reqs
        .iter()
        .map(|r| r.param("start").unwrap().parse().unwrap())
        .collect();
    assert_eq!(starts[0] - starts[1], BASELINE_OFFSET_SECONDS);
    assert!(reqs
        .iter()
        .all(|r| !r.param("query").unwrap().contains("offset")));
}

#[tokio::test]
async fn an_empty_answer_is_no_series() {
    let fake = FakeServer::fixed(
        200,
        &[("content-type", "application/json")],
        r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
    )
    .await;
    let q = evidence_query(&["payment-service"], ALERT);
    assert_eq!(source(&fake).metrics(&q).await.unwrap(), vec![]);
}

#[tokio::test]
async fn no_service_and_no_alert_service_asks_nothing() {
    let fake = matrix_fake().await;
    let mut q = evidence_query(&[], ALERT);
    q.alert.service = None;
    assert!(source(&fake).metrics(&q).await.unwrap().is_empty());
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn prometheus_error_bodies_are_reported_with_their_error_type() {
    let fake = FakeServer::fixed(
        400,
        &[("content-type", "application/json")],
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:10: parse error: unexpected \"}\""}"#,
    )
    .await;
    let q = evidence_query(&["payment-service"], ALERT);
    let e = source(&fake).metrics(&q).await.unwrap_err();
    let SourceError::Unavailable(msg) = e else {
        panic!("{e:?}")
    };
    assert!(
        msg.contains("bad_data") && msg.contains("parse error"),
        "{msg}"
    );
    assert!(msg.contains("error_rate of payment-service"), "{msg}");
}

#[tokio::test]
async fn a_gateway_error_page_is_unavailable() {
    let fake = FakeServer::fixed(503, &[("content-type", "text/html")], "<html>503</html>").await;
    let q = evidence_query(&["payment-service"], ALERT);
    let e = source(&fake).metrics(&q).await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Unavailable(m) if m.contains("HTTP 503")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_slow_prometheus_times_out() {
    let fake = FakeServer::slow(FAKE_DELAY, "{}").await;
    let mut c = PrometheusConfig::new(fake.url());
    c.timeout = SHORT_TIMEOUT;
    let q = evidence_query(&["payment-service"], ALERT);
    let started = std::time::Instant::now();
    let e = PrometheusSource::new(c)
        .unwrap()
        .metrics(&q)
        .await
        .unwrap_err();
    assert_eq!(e, SourceError::Timeout(SHORT_TIMEOUT.as_millis() as u64));
    assert!(started.elapsed() < FAKE_DELAY);
}

#[tokio::test]
async fn malformed_bodies_are_bad_responses() {
    for body in [
        r#"{"status":"success","data":"#,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"lots"]]}]}}"#,
        r#"["not", "an", "object"]"#,
    ] {
        let fake = FakeServer::fixed(200, &[], body).await;
        let q = evidence_query(&["payment-service"], ALERT);
        let e = source(&fake).metrics(&q).await.unwrap_err();
        assert!(matches!(e, SourceError::BadResponse(_)), "{body}: {e:?}");
    }
}

#[tokio::test]
async fn several_series_for_one_signal_keep_their_labels() {
    let fake = FakeServer::fixed(
        200,
        &[],
        &json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"pod": "a"}, "values": [[1710252000, "1"]]},
            {"metric": {"pod": "b"}, "values": [[1710252000, "2"]]},
        ]}})
        .to_string(),
    )
    .await;
    let mut c = PrometheusConfig::new(fake.url());
    c.signals = vec![Signal::new(
        "restarts",
        "",
        r#"restarts{app="{service}"}{offset}"#,
    )];
    let q = evidence_query(&["cart"], ALERT);
    let series = PrometheusSource::new(c).unwrap().metrics(&q).await.unwrap();
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["restarts{pod=a}", "restarts{pod=b}"]);
}

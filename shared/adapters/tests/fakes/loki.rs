//! `LokiSource` against a fake `/loki/api/v1/query_range`.

use iras_adapters::logs::MAX_LINE_CHARS;
use iras_adapters::{LokiConfig, LokiSource};
use iras_core::{LogLevel, LogSource, SourceError};
use serde_json::json;

use crate::support::*;

const ALERT: &str = "2024-03-12T14:07:30Z";

fn source(fake: &FakeServer) -> LokiSource {
    let mut c = LokiConfig::new(fake.url());
    c.tenant = Some("team-payments".into());
    c.limit = 200;
    LokiSource::new(c).unwrap()
}

fn ns(s: &str) -> String {
    at(s).timestamp_nanos_opt().unwrap().to_string()
}

#[tokio::test]
async fn a_normal_answer_gives_problem_lines_oldest_first() {
    let long = format!("ERROR {}", "x".repeat(MAX_LINE_CHARS * 2));
    let body = json!({
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": [
                {"stream": {"service": "payment-service", "level": "error"},
                 "values": [
                    [ns("2024-03-12T14:05:02Z"), "NullPointerException at BillingAddress.country"],
                    [ns("2024-03-12T14:01:00Z"), "charge failed"]
                 ]},
                {"stream": {"service": "payment-service"},
                 "values": [
                    [ns("2024-03-12T14:03:00Z"), "level=warn msg=\"retrying stripe\""],
                    [ns("2024-03-12T14:04:00Z"), long, {"trace_id": "abc"}]
                 ]}
            ],
            "stats": {}
        }
    });
    let fake = FakeServer::fixed(200, &[], &body.to_string()).await;
    let q = evidence_query(&["payment-service"], ALERT);
    let lines = source(&fake).logs(&q).await.unwrap();

    let times: Vec<String> = lines
        .iter()
        .map(|l| l.timestamp.format("%H:%M:%S").to_string())
        .collect();
    assert_eq!(times, vec!["14:01:00", "14:03:00", "14:04:00", "14:05:02"]);
    assert!(lines.iter().all(|l| l.service == "payment-service"));
    assert_eq!(
        lines[0].level,
        LogLevel::Error,
        "from the stream's level label"
    );
    assert_eq!(lines[1].level, LogLevel::Warn, "from level= in the line");
    assert_eq!(
        lines[2].level,
        LogLevel::Error,
        "from the words in the line"
    );
    assert!(lines[2].message.ends_with("…[truncated]"));
    assert!(lines[2].message.chars().count() < MAX_LINE_CHARS + 20);
    assert_eq!(
        lines[3].message,
        "NullPointerException at BillingAddress.country"
    );

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/loki/api/v1/query_range");
    assert_eq!(
        r.param("query").as_deref(),
        Some(r#"{service="payment-service"} |~ "(?i)(warn|error|fatal|exception|panic)""#)
    );
    assert_eq!(r.param("start"), Some(ns("2024-03-12T13:37:30Z")));
    assert_eq!(r.param("end"), Some(ns("2024-03-12T14:22:30Z")));
    assert_eq!(r.param("limit").as_deref(), Some("200"));
    assert_eq!(r.param("direction").as_deref(), Some("backward"));
    assert_eq!(r.header("x-scope-orgid"), Some("team-payments"));
}

#[tokio::test]
async fn each_service_is_asked_separately_with_its_name_escaped() {
    let fake = FakeServer::fixed(
        200,
        &[],
        r#"{"status":"success","data":{"resultType":"streams","result":[]}}"#,
    )
    .await;
    let hostile = "pay\"} or vector(1) #\n{x=\"y\"}";
    let q = evidence_query(&["cart-service", hostile], ALERT);
    assert!(
        source(&fake).logs(&q).await.unwrap().is_empty(),
        "empty streams: no lines"
    );
    let queries: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.param("query").unwrap())
        .collect();
    assert_eq!(queries.len(), 2);
    assert!(queries[0].starts_with(r#"{service="cart-service"}"#));
    assert!(
        queries[1].starts_with(r#"{service="pay\"} or vector(1) #\n{x=\"y\"}"} |~ "#),
        "{}",
        queries[1]
    );
    assert!(
        !queries[1].contains('\n'),
        "a newline never reaches the query"
    );
    assert_eq!(
        label_value(&queries[1], "service").as_deref(),
        Some(hostile)
    );
}

#[tokio::test]
async fn a_rejected_query_is_reported_with_lokis_reason() {
    let fake = FakeServer::fixed(
        400,
        &[("content-type", "text/plain; charset=utf-8")],
        "parse error at line 1, col 12: syntax error: unexpected IDENTIFIER",
    )
    .await;
    let q = evidence_query(&["payment-service"], ALERT);
    let e = source(&fake).logs(&q).await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Unavailable(m) if m.contains("HTTP 400") && m.contains("parse error")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_slow_loki_times_out() {
    let fake = FakeServer::slow(FAKE_DELAY, "{}").await;
    let mut c = LokiConfig::new(fake.url());
    c.timeout = SHORT_TIMEOUT;
    let q = evidence_query(&["payment-service"], ALERT);
    let e = LokiSource::new(c).unwrap().logs(&q).await.unwrap_err();
    assert_eq!(e, SourceError::Timeout(SHORT_TIMEOUT.as_millis() as u64));
}

#[tokio::test]
async fn malformed_bodies_are_bad_responses() {
    for body in [
        "not json",
        r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        r#"{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[[1710252450000000000,"x"]]}]}}"#,
        r#"{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["yesterday","x"]]}]}}"#,
    ] {
        let fake = FakeServer::fixed(200, &[], body).await;
        let q = evidence_query(&["payment-service"], ALERT);
        let e = source(&fake).logs(&q).await.unwrap_err();
        assert!(matches!(e, SourceError::BadResponse(_)), "{body}: {e:?}");
    }
}

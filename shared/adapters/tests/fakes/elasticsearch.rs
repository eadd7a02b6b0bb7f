//! `ElasticsearchSource` against a fake `POST /<index>/_search`.

use iras_adapters::{ElasticsearchAuth, ElasticsearchConfig, ElasticsearchSource};
use iras_core::{LogLevel, LogSource, SourceError};
use serde_json::json;

use crate::support::*;

const ALERT: &str = "2024-03-12T14:07:30Z";

fn source(fake: &FakeServer, auth: ElasticsearchAuth) -> ElasticsearchSource {
    let mut c = ElasticsearchConfig::new(fake.url());
    c.auth = auth;
    c.limit = 50;
    ElasticsearchSource::new(c).unwrap()
}

#[tokio::test]
async fn a_normal_answer_reads_hits_sources_nested_or_dotted() {
    let body = json!({
        "took": 5, "timed_out": false,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": 3, "relation": "eq"}, "max_score": null, "hits": [
            {"_index": "logs-2024.03.12", "_id": "1", "_score": null, "sort": [1],
             "_source": {"@timestamp": "2024-03-12T14:05:02.000Z",
                         "service": {"name": "payment-service"},
                         "log": {"level": "ERROR"},
                         "message": "NullPointerException at BillingAddress.country"}},
            {"_index": "logs-2024.03.12", "_id": "2", "_score": null,
             "_source": {"@timestamp": 1710252180000i64,
                         "service.name": "payment-service",
                         "log.level": "warn",
                         "message": "retrying stripe"}},
            {"_index": "logs-2024.03.12", "_id": "3", "_score": null,
             "_source": {"@timestamp": "2024-03-12T14:04:00Z",
                         "service": {"name": "payments-db"},
                         "message": "FATAL: too many connections"}}
        ]}
    });
    let fake = FakeServer::fixed(
        200,
        &[("content-type", "application/json")],
        &body.to_string(),
    )
    .await;
    let q = evidence_query(&["payment-service", "payments-db"], ALERT);
    let lines = source(&fake, ElasticsearchAuth::ApiKey("a2V5OnNlY3JldA==".into()))
        .logs(&q)
        .await
        .unwrap();
    let seen: Vec<(String, LogLevel, String)> = lines
        .iter()
        .map(|l| {
            (
                l.timestamp.format("%H:%M:%S").to_string(),
                l.level,
                l.service.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("14:03:00".into(), LogLevel::Warn, "payment-service".into()),
            ("14:04:00".into(), LogLevel::Fatal, "payments-db".into()),
            ("14:05:02".into(), LogLevel::Error, "payment-service".into()),
        ]
    );

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/logs-*/_search");
    assert_eq!(r.header("authorization"), Some("ApiKey a2V5OnNlY3JldA=="));
    let dsl = r.json();
    assert_eq!(dsl["size"], 50);
    assert_eq!(dsl["sort"][0]["@timestamp"]["order"], "desc");
    let filter = dsl["query"]["bool"]["filter"].as_array().unwrap();
    assert_eq!(
        filter[0]["range"]["@timestamp"]["gte"],
        "2024-03-12T13:37:30.000Z"
    );
    assert_eq!(
        filter[0]["range"]["@timestamp"]["lte"],
        "2024-03-12T14:22:30.000Z"
    );
    assert_eq!(
        filter[1]["terms"]["service.name"],
        json!(["payment-service", "payments-db"])
    );
    assert!(filter[2]["terms"]["log.level"]
        .as_array()
        .unwrap()
        .contains(&json!("error")));
}

#[tokio::test]
async fn service_names_travel_as_json_values_and_basic_auth_is_sent() {
    let fake = FakeServer::fixed(200, &[], r#"{"hits":{"hits":[]}}"#).await;
    let hostile = r#"pay"} or vector(1) #"#;
    let q = evidence_query(&[hostile], ALERT);
    let auth = ElasticsearchAuth::Basic {
        username: "elastic".into(),
        password: "changeme".into(),
    };
    assert!(source(&fake, auth).logs(&q).await.unwrap().is_empty());
    let r = &fake.requests()[0];
    assert_eq!(
        r.json()["query"]["bool"]["filter"][1]["terms"]["service.name"],
        json!([hostile])
    );
    // base64("elastic:changeme")
    assert_eq!(
        r.header("authorization"),
        Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==")
    );
}

#[tokio::test]
async fn an_elasticsearch_error_is_reported_with_its_type_and_reason() {
    let fake = FakeServer::fixed(
        404,
        &[("content-type", "application/json")],
        r#"{"error":{"root_cause":[{"type":"index_not_found_exception","reason":"no such index [logs-*]","index":"logs-*"}],"type":"index_not_found_exception","reason":"no such index [logs-*]","index":"logs-*"},"status":404}"#,
    )
    .await;
    let q = evidence_query(&["payment-service"], ALERT);
    let e = source(&fake, ElasticsearchAuth::None)
        .logs(&q)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SourceError::Unavailable(m) if m.contains("index_not_found_exception") && m.contains("HTTP 404")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_slow_cluster_times_out() {
    let fake = FakeServer::slow(FAKE_DELAY, "{}").await;
    let mut c = ElasticsearchConfig::new(fake.url());
    c.timeout = SHORT_TIMEOUT;
    let q = evidence_query(&["payment-service"], ALERT);
    let e = ElasticsearchSource::new(c)
        .unwrap()
        .logs(&q)
        .await
        .unwrap_err();
    assert_eq!(e, SourceError::Timeout(SHORT_TIMEOUT.as_millis() as u64));
}

#[tokio::test]
async fn malformed_bodies_are_bad_responses() {
    for body in [
        r#"{"hits": 3}"#,
        "<html>",
        r#"{"hits":{"hits":[{"_source":{"message":"x","@timestamp":"yesterday"}}]}}"#,
    ] {
        let fake = FakeServer::fixed(200, &[], body).await;
        let q = evidence_query(&["payment-service"], ALERT);
        let e = source(&fake, ElasticsearchAuth::None)
            .logs(&q)
            .await
            .unwrap_err();
        assert!(matches!(e, SourceError::BadResponse(_)), "{body}: {e:?}");
    }
}

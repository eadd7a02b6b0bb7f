//! CloudWatch evidence against moto. moto runs Logs Insights queries for real only in part:
//! it reads the groups named, applies the time range, `sort @timestamp` and `limit`, and
//! ignores `filter` (so these tests seed problem lines only and never claim the line filter
//! or the service-field filter works; the query text itself is unit-tested in
//! `src/cloudwatch.rs`). moto 5.2.5 cannot speak CloudWatch metrics' wire protocol (the SDK
//! sends Smithy RPC v2 CBOR, moto parses query/JSON only), so `GetMetricData` is covered by
//! unit tests of the queries and the result parsing, and here only by how an unreachable
//! endpoint fails.

use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use iras_aws::{aws_evidence_from_vars, emulator_config};
use iras_core::{Alert, EvidenceQuery, EvidenceWindow, LogLevel, LogSource, SourceError};

use crate::support::Moto;

use iras_core::testing::vars;

fn query(service: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> EvidenceQuery {
    EvidenceQuery {
        services: vec![service.to_string()],
        window: EvidenceWindow {
            start,
            end,
            deployments_since: start - Duration::hours(24),
        },
        alert: Alert {
            origin: None,
            title: format!("High error rate on {service}"),
            timestamp: end,
            service: Some(service.to_string()),
            fields: Default::default(),
        },
        since_change: None,
    }
}

async fn seed(moto: &Moto, group: &str, events: &[(DateTime<Utc>, &str)]) {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.config);
    logs.create_log_group()
        .log_group_name(group)
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(group)
        .log_stream_name("task-1")
        .send()
        .await
        .unwrap();
    let mut put = logs
        .put_log_events()
        .log_group_name(group)
        .log_stream_name("task-1");
    for (t, message) in events {
        put = put.log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(t.timestamp_millis())
                .message(*message)
                .build()
                .unwrap(),
        );
    }
    put.send().await.unwrap();
}

fn logs_source(moto: &Moto, pairs: &[(&str, &str)]) -> Arc<dyn LogSource> {
    let mut e = aws_evidence_from_vars(&vars(pairs), &moto.config).unwrap();
    assert_eq!(e.evidence.logs.len(), 1, "{e:?}");
    e.evidence.logs.remove(0)
}

#[tokio::test]
async fn the_alerts_service_newest_lines_in_the_window_come_back_bounded() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let start = now - Duration::minutes(30);
    seed(
        &moto,
        "/ecs/checkout",
        &[
            (start - Duration::minutes(5), "ERROR before the window"),
            (start + Duration::minutes(1), "WARN pool 80% used"),
            (
                start + Duration::minutes(2),
                "ERROR timeout calling payments",
            ),
            (
                start + Duration::minutes(3),
                r#"{"level":"error","msg":"card declined 502"}"#,
            ),
            (start + Duration::minutes(4), "panic: nil map in handler"),
        ],
    )
    .await;
    seed(
        &moto,
        "/ecs/payments",
        &[(start + Duration::minutes(2), "ERROR payments own failure")],
    )
    .await;

    let source = logs_source(
        &moto,
        &[
            ("CLOUDWATCH_LOG_GROUPS", "/ecs/{service}"),
            ("CLOUDWATCH_LOGS_LIMIT", "3"),
        ],
    );
    assert_eq!(source.name(), "cloudwatch-logs");
    let lines = source.logs(&query("checkout", start, now)).await.unwrap();

    // Newest three of the window (the limit), oldest first, none of payments' lines.
    let got: Vec<(i64, &str, LogLevel)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l.service, "checkout");
            (
                (l.timestamp - start).num_minutes(),
                l.message.as_str(),
                l.level,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "ERROR timeout calling payments", LogLevel::Error),
            (
                3,
                r#"{"level":"error","msg":"card declined 502"}"#,
                LogLevel::Error
            ),
            (4, "panic: nil map in handler", LogLevel::Fatal),
        ]
    );
    assert_eq!(lines[2].timestamp, start + Duration::minutes(4));

    // A window before every line reads nothing.
    let early = source
        .logs(&query(
            "checkout",
            start - Duration::hours(2),
            start - Duration::hours(1),
        ))
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
}

#[tokio::test]
async fn a_missing_log_group_is_a_source_error_naming_it() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let source = logs_source(&moto, &[("CLOUDWATCH_LOG_GROUPS", "checkout=/ecs/gone")]);
    let now = Utc::now();
    let err = source
        .logs(&query("checkout", now - Duration::minutes(30), now))
        .await
        .unwrap_err();
    match &err {
        SourceError::Unavailable(m) => {
            assert!(
                m.starts_with("cloudwatch logs: logs of checkout in /ecs/gone: "),
                "{m}"
            );
            assert!(m.contains("ResourceNotFoundException"), "{m}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_injected_service_name_reaches_no_log_group() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    seed(
        &moto,
        "/ecs/checkout",
        &[(now - Duration::minutes(1), "ERROR checkout secret")],
    )
    .await;
    let source = logs_source(&moto, &[("CLOUDWATCH_LOG_GROUPS", "/ecs/{service}")]);
    for evil in [
        r#"checkout" | fields @message"#,
        "checkout,/ecs/checkout",
        "checkout\n",
        "checkout *",
    ] {
        let lines = source
            .logs(&query(evil, now - Duration::minutes(30), now))
            .await
            .unwrap();
        assert!(lines.is_empty(), "{evil}: {lines:?}");
    }
    // The plain name does read the group: the empty answers above are not a broken source.
    let lines = source
        .logs(&query("checkout", now - Duration::minutes(30), now))
        .await
        .unwrap();
    assert_eq!(lines.len(), 1);
}

#[tokio::test]
async fn an_unreachable_cloudwatch_is_a_source_error_not_a_panic() {
    // Nothing listens on port 1; the SDK's retries end in a dispatch failure.
    let sdk = emulator_config("http://127.0.0.1:1").await;
    let e = aws_evidence_from_vars(
        &vars(&[
            ("CLOUDWATCH_LOG_GROUPS", "/ecs/{service}"),
            ("CLOUDWATCH_METRICS", "lambda"),
            ("INTEGRATION_TIMEOUT_SECONDS", "2"),
        ]),
        &sdk,
    )
    .unwrap();
    let now = Utc::now();
    let q = query("checkout", now - Duration::minutes(30), now);
    match e.evidence.metrics[0].metrics(&q).await.unwrap_err() {
        SourceError::Unavailable(m) | SourceError::BadResponse(m) => {
            assert!(m.starts_with("cloudwatch metrics: "), "{m}");
            assert!(m.contains("checkout"), "{m}");
        }
        SourceError::Timeout(ms) => assert_eq!(ms, 2000),
    }
    match e.evidence.logs[0].logs(&q).await.unwrap_err() {
        SourceError::Unavailable(m) | SourceError::BadResponse(m) => {
            assert!(m.starts_with("cloudwatch logs: logs of checkout"), "{m}")
        }
        SourceError::Timeout(ms) => assert_eq!(ms, 2000),
    }
}

#[tokio::test]
async fn nothing_set_builds_nothing_and_bad_values_name_their_variable() {
    let sdk = emulator_config("http://127.0.0.1:1").await;
    let e = aws_evidence_from_vars(&vars(&[]), &sdk).unwrap();
    assert!(
        e.evidence.logs.is_empty()
            && e.evidence.metrics.is_empty()
            && e.evidence.deployments.is_empty()
    );
    assert_eq!(e.notes.len(), 4, "{:?}", e.notes);
    for (pairs, name) in [
        (
            vec![("CLOUDWATCH_LOG_GROUPS", "checkout")],
            "CLOUDWATCH_LOG_GROUPS",
        ),
        (
            vec![("CLOUDWATCH_LOG_GROUPS", "a=/x y")],
            "CLOUDWATCH_LOG_GROUPS",
        ),
        (
            vec![
                ("CLOUDWATCH_LOG_GROUPS", "/x/{service}"),
                ("CLOUDWATCH_LOGS_LIMIT", "0"),
            ],
            "CLOUDWATCH_LOGS_LIMIT",
        ),
        (
            vec![
                ("CLOUDWATCH_LOG_GROUPS", "/x/{service}"),
                ("CLOUDWATCH_LOG_SERVICE_FIELD", "svc\" or 1"),
            ],
            "CLOUDWATCH_LOG_SERVICE_FIELD",
        ),
        (vec![("CLOUDWATCH_METRICS", "ecs")], "CLOUDWATCH_METRICS"),
        (vec![("ECS_SERVICES", "{service}")], "ECS_CLUSTER"),
        (vec![("ECS_CLUSTER", "prod cluster")], "ECS_CLUSTER"),
        (
            vec![("CODEDEPLOY_APPLICATION", "shop/x")],
            "CODEDEPLOY_APPLICATION",
        ),
        (
            vec![
                ("CODEDEPLOY_APPLICATION", "shop"),
                ("CODEDEPLOY_DEPLOYMENT_GROUPS", "x"),
            ],
            "CODEDEPLOY_DEPLOYMENT_GROUPS",
        ),
    ] {
        let err = aws_evidence_from_vars(&vars(&pairs), &sdk).unwrap_err();
        assert_eq!(err.name, name, "{pairs:?}: {err}");
    }
}

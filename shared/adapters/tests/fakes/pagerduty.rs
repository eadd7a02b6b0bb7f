//! `PagerDutyPager` against a fake Events API v2 (`POST /v2/enqueue`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use iras_adapters::{PagerDutyConfig, PagerDutyPager};
use iras_core::*;
use serde_json::json;

use crate::slack::incident;
use crate::support::*;

const KEY: &str = "R0UTINGKEY0000000000000000000001";

fn pager(fake: &FakeServer) -> PagerDutyPager {
    let url = reqwest::Url::parse(&format!("{}/v2/enqueue", fake.url)).unwrap();
    let mut c = PagerDutyConfig::new(url, KEY);
    c.public_url = Some(reqwest::Url::parse("https://iras.example").unwrap());
    PagerDutyPager::new(c).unwrap()
}

fn escalation(reason: EscalationReason) -> Escalation {
    Escalation {
        reason,
        detail: "rejected by bob: rollback looks risky".into(),
        escalated_at: at("2024-03-12T14:12:00Z"),
        paged_via: "pagerduty".into(),
    }
}

async fn accepting() -> FakeServer {
    FakeServer::start(Router::new().route(
        "/v2/enqueue",
        post(|body: axum::Json<serde_json::Value>| async move {
            Canned::json(
                202,
                json!({"status": "success", "message": "Event processed",
                       "dedup_key": body["dedup_key"]}),
            )
            .into_response()
        }),
    ))
    .await
}

#[tokio::test]
async fn an_escalation_pages_with_the_full_context_keyed_by_incident() {
    let fake = accepting().await;
    let pd = pager(&fake);
    let mut inc = incident();
    inc.severity = Some(Severity::P0);
    pd.page(&inc, &escalation(EscalationReason::Rejected))
        .await
        .unwrap();
    // A retried escalation sends the same dedup_key: PagerDuty keeps one alert.
    pd.page(&inc, &escalation(EscalationReason::Rejected))
        .await
        .unwrap();
    pd.resolve(&inc).await.unwrap();

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    let trigger = reqs[0].json();
    assert_eq!(reqs[0].path, "/v2/enqueue");
    assert_eq!(trigger["routing_key"], KEY);
    assert_eq!(trigger["event_action"], "trigger");
    // Keyed by the source's alert, not the IRAS incident: re-pages collapse in PagerDuty.
    assert_eq!(trigger["dedup_key"], inc.page_key());
    assert!(inc.page_key().starts_with("iras-"));
    assert_eq!(reqs[1].json()["dedup_key"], inc.page_key());
    let payload = &trigger["payload"];
    assert_eq!(payload["severity"], "critical", "P0 is critical");
    assert_eq!(payload["source"], "payment-service");
    assert!(payload["summary"]
        .as_str()
        .unwrap()
        .starts_with("[P0] High error rate on payment-service"));
    let details = &payload["custom_details"];
    assert_eq!(details["title"], inc.title);
    assert_eq!(details["severity"], "P0");
    assert_eq!(details["reason"], "rejected");
    assert_eq!(details["reason_text"], "the remediation plan was rejected");
    assert_eq!(details["detail"], "rejected by bob: rollback looks risky");
    assert_eq!(details["root_cause"]["service"], "payment-service");
    assert_eq!(details["root_cause"]["confidence"], 0.87);
    assert_eq!(
        details["plan"]["steps"][0]["command"],
        "aws ecs update-service --cluster shop --service payment-service --task-definition payment-service:41"
    );
    assert_eq!(
        details["plan"]["steps"][1]["rollback"],
        "(none: irreversible)"
    );
    assert_eq!(details["link"], "https://iras.example/incidents/inc-0001");
    assert_eq!(
        trigger["links"][0]["href"],
        "https://iras.example/incidents/inc-0001"
    );
    let raw = String::from_utf8(reqs[0].body.clone()).unwrap();
    assert!(
        !raw.contains("task-token"),
        "the task token is not paged out"
    );

    let resolve = reqs[2].json();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], inc.page_key());
    assert_eq!(resolve["routing_key"], KEY);
}

#[tokio::test]
async fn every_escalation_reason_and_severity_maps() {
    let fake = accepting().await;
    let pd = pager(&fake);
    let mut inc = incident();
    for (sev, want) in [
        (Some(Severity::P1), "error"),
        (Some(Severity::P2), "warning"),
        (Some(Severity::P3), "info"),
        (None, "error"),
    ] {
        inc.severity = sev;
        pd.page(&inc, &escalation(EscalationReason::ApprovalTimeout))
            .await
            .unwrap();
        let last = fake.requests().pop().unwrap().json();
        assert_eq!(last["payload"]["severity"], want, "{sev:?}");
    }
    for reason in [
        EscalationReason::LowConfidence,
        EscalationReason::RemediationFailed,
        EscalationReason::StageFailure,
        EscalationReason::NoRemediation,
        EscalationReason::PolicyBlocked,
    ] {
        pd.page(&inc, &escalation(reason)).await.unwrap();
        let last = fake.requests().pop().unwrap().json();
        assert_eq!(last["payload"]["custom_details"]["reason"], reason.as_str());
    }
}

#[tokio::test]
async fn an_invalid_event_is_reported_with_pagerdutys_errors() {
    let fake = FakeServer::fixed(
        400,
        &[("content-type", "application/json")],
        r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}"#,
    )
    .await;
    let e = pager(&fake)
        .page(&incident(), &escalation(EscalationReason::Rejected))
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("invalid event") && m.contains("routing_key"),
        "{m}"
    );
}

#[tokio::test]
async fn a_rate_limit_is_retried_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = FakeServer::start(Router::new().route(
        "/v2/enqueue",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Canned::new(429, &[], "").into_response()
                } else {
                    Canned::json(202, json!({"status": "success", "message": "Event processed", "dedup_key": "inc-0001"}))
                        .into_response()
                }
            }
        }),
    ))
    .await;
    pager(&fake)
        .page(&incident(), &escalation(EscalationReason::Rejected))
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 2);

    let always = FakeServer::fixed(429, &[("retry-after", "0")], "").await;
    let e = pager(&always)
        .page(&incident(), &escalation(EscalationReason::Rejected))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("rate limited"), "{e}");
    assert_eq!(always.requests().len(), 2);
}

#[tokio::test]
async fn a_slow_pagerduty_times_out() {
    let fake = FakeServer::slow(FAKE_DELAY, "{}").await;
    let mut c = PagerDutyConfig::new(fake.url(), KEY);
    c.timeout = SHORT_TIMEOUT;
    let e = PagerDutyPager::new(c)
        .unwrap()
        .page(&incident(), &escalation(EscalationReason::Rejected))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[tokio::test]
async fn empty_and_malformed_answers_are_errors() {
    for (status, body) in [
        (202, ""),
        (202, "<html>"),
        (202, r#"{"status":"queued?"}"#),
        (500, "internal error"),
    ] {
        let fake = FakeServer::fixed(status, &[], body).await;
        let e = pager(&fake)
            .page(&incident(), &escalation(EscalationReason::Rejected))
            .await;
        assert!(e.is_err(), "{status} {body:?}");
    }
}

#[tokio::test]
async fn a_page_carries_the_sources_service_component_group_and_links() {
    let fake = accepting().await;
    let pd = pager(&fake);
    let mut inc = incident();
    inc.alert.origin = Some(AlertOrigin {
        source: "alertmanager".into(),
        key: Some("1a30ba71cca2921f".into()),
        host: Some("10.0.3.7:9100".into()),
        component: Some("api".into()),
        group: Some("shop".into()),
        links: vec![
            AlertLink {
                kind: "generator".into(),
                href: "http://prometheus.example.org:9090/graph?g0.expr=up".into(),
            },
            AlertLink {
                kind: "runbook".into(),
                href: "https://runbooks.example.org/payment".into(),
            },
        ],
        ..AlertOrigin::default()
    });
    inc.fingerprint = inc.alert.fingerprint();
    pd.page(&inc, &escalation(EscalationReason::LowConfidence))
        .await
        .unwrap();
    let event = fake.requests().pop().unwrap().json();
    let payload = &event["payload"];
    assert_eq!(payload["source"], "payment-service", "the affected service");
    assert_eq!(payload["component"], "api");
    assert_eq!(payload["group"], "shop");
    let hrefs: Vec<&str> = event["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["href"].as_str().unwrap())
        .collect();
    assert!(hrefs.contains(&"http://prometheus.example.org:9090/graph?g0.expr=up"));
    assert!(hrefs.contains(&"https://runbooks.example.org/payment"));
    assert_eq!(event["dedup_key"], inc.page_key());
    // Another IRAS incident for the same source alert pages under the same key.
    let mut later = inc.clone();
    later.incident_id = IncidentId("inc-0002".into());
    assert_eq!(later.page_key(), inc.page_key());
}

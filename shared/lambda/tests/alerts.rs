//! The vendors' documented payloads (shared/intake/tests/fixtures) through each way they reach
//! IRAS on AWS: API Gateway into the router the `api` function serves, EventBridge and SNS
//! events into the `ingest` function's handler.

mod support;

use iras_core::ports::IncidentStore;
use iras_core::{AlertState, IncidentId, IncidentStatus, Severity};
use iras_lambda::Function;
use serde_json::{json, Value};
use support::*;

fn vendor(rel: &str) -> Value {
    serde_json::from_str(&read(&format!("shared/intake/tests/fixtures/{rel}"))).unwrap()
}

/// `body` as API Gateway (HTTP API, payload 2.0) hands `POST <path>` to the function.
fn apigw(path: &str, body: &Value, content_type: &str) -> String {
    let mut event = sample("api", SAMPLE_ID);
    event["routeKey"] = json!("POST /webhook/{source}");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["routeKey"] = json!("POST /webhook/{source}");
    event["headers"]["content-type"] = json!(content_type);
    event["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    event["body"] = json!(body.to_string());
    event.to_string()
}

async fn incident(w: &World, id: &str) -> iras_core::Incident {
    w.store
        .get_incident(&IncidentId(id.to_string()))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn every_vendor_payload_posted_through_api_gateway_opens_its_incident() {
    let w = world();
    let mut pd = vendor("pagerduty/webhook-v3-incident-priority-updated.json");
    pd["event"]["event_type"] = json!("incident.triggered");
    let cases = [
        (
            "/webhook/alertmanager",
            vendor("alertmanager/v4-probe-failure.json"),
            "BlackBox Probe Failure: https://server.example.org",
            Some("http_checks"),
            "alertmanager:1a30ba71cca2921f",
            Some(Severity::P1),
        ),
        (
            "/webhook/grafana",
            vendor("grafana/webhook.json"),
            "This alert was triggered for zone us-1",
            None,
            "grafana:c6eadffa33fcdf37",
            None,
        ),
        (
            "/webhook/pagerduty",
            pd,
            "A little bump in the road",
            Some("API Service"),
            "pagerduty:d3640fbd41094207a1c11e58e46b1662",
            Some(Severity::P0),
        ),
        (
            "/webhook/pagerduty",
            vendor("pagerduty/events-v2-trigger.json"),
            "Example alert on host1.example.com",
            Some("postgres"),
            "pagerduty:samplekeyhere",
            Some(Severity::P3),
        ),
        (
            "/webhook/opsgenie",
            vendor("opsgenie/create.json"),
            "test alert",
            None,
            "opsgenie:aliastest",
            None, // the documented sample sends no priority
        ),
        (
            "/webhook/sentry",
            vendor("sentry/issue-alert.json"),
            "ReferenceError: heck is not defined",
            Some("front-end"),
            "sentry:1117540176",
            Some(Severity::P2),
        ),
        (
            "/webhook/alert",
            vendor("cloudwatch/eventbridge-single-metric-alarm.json"),
            "ServerCpuTooHigh: Threshold Crossed",
            None,
            "cloudwatch:arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh",
            None,
        ),
    ];
    // Grafana's payload holds two rules: one incident each.
    let expected = cases.len() + 1;
    for (path, body, title, service, key, severity) in cases {
        let (status, reply) = w
            .http(Function::Api, &apigw(path, &body, "application/json"))
            .await;
        assert_eq!(status, 202, "{path}: {reply}");
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["outcome"], "opened", "{path}");
        let inc = incident(&w, reply["incident_id"].as_str().unwrap()).await;
        assert!(inc.title.starts_with(title), "{path}: {}", inc.title);
        assert_eq!(inc.service.as_deref(), service, "{path}");
        assert_eq!(inc.fingerprint, key, "{path}");
        let origin = inc
            .alert
            .origin
            .as_ref()
            .expect("read by its source's parser");
        assert_eq!(origin.state, AlertState::Firing, "{path}");
        assert_eq!(
            origin.severity, severity,
            "{path}: the documented severity table"
        );
    }
    assert_eq!(w.incident_count().await, expected);
}

#[tokio::test]
async fn a_form_body_is_refused_as_an_unsupported_media_type() {
    let w = world();
    let (status, body) = w
        .http(
            Function::Api,
            &apigw(
                "/webhook/alertmanager",
                &vendor("alertmanager/v4-probe-failure.json"),
                "application/x-www-form-urlencoded",
            ),
        )
        .await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(w.incident_count().await, 0);
}

/// The docs' EventBridge alarm, its OK transition (state and previous state swapped).
fn alarm(ok: bool) -> Value {
    let mut e = vendor("cloudwatch/eventbridge-single-metric-alarm.json");
    if ok {
        let d = e["detail"].as_object_mut().unwrap();
        let (s, p) = (d["state"].clone(), d["previousState"].clone());
        d.insert("state".into(), p);
        d.insert("previousState".into(), s);
    }
    e
}

#[tokio::test]
async fn an_eventbridge_alarm_opens_and_its_ok_records_the_recovery() {
    let w = world();
    let fired = w.ingest(alarm(false)).await.unwrap();
    assert_eq!(fired.outcome, "opened");
    let id = fired.incident_id.unwrap();
    let ok = w.ingest(alarm(true)).await.unwrap();
    assert_eq!(ok.outcome, "recovered");
    assert_eq!(ok.incident_id.as_ref(), Some(&id));
    let inc = w.store.get_incident(&id).await.unwrap().unwrap();
    assert!(inc.source_recovered_at.is_some());
    assert_eq!(inc.status, IncidentStatus::Processing);
    assert_eq!(w.incident_count().await, 1);
    assert_eq!(
        w.starter.started.lock().unwrap().len(),
        1,
        "the OK starts nothing"
    );
}

#[tokio::test]
async fn an_sns_event_of_a_cloudwatch_alarm_opens_and_its_ok_recovers_the_same_incident() {
    let w = world();
    let event = vendor("sns/lambda-event-cloudwatch-alarm.json");
    let fired = w.ingest(event.clone()).await.unwrap();
    assert_eq!(fired.outcome, "opened");
    let id = fired.incident_id.unwrap();
    let inc = w.store.get_incident(&id).await.unwrap().unwrap();
    assert_eq!(
        inc.fingerprint,
        "cloudwatch:arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"
    );
    let mut ok = event;
    let message = ok["Records"][0]["Sns"]["Message"]
        .as_str()
        .unwrap()
        .replace("\"NewStateValue\": \"ALARM\"", "\"NewStateValue\": \"OK\"");
    ok["Records"][0]["Sns"]["Message"] = json!(message);
    let recovered = w.ingest(ok).await.unwrap();
    assert_eq!(recovered.outcome, "recovered");
    assert_eq!(recovered.incident_id.as_ref(), Some(&id));
    assert_eq!(w.incident_count().await, 1);
}

#[tokio::test]
async fn a_vendor_payload_on_the_iras_bus_is_detected_and_read() {
    let w = world();
    let event = json!({
        "version": "0", "id": "1", "detail-type": "Alert", "source": "iras.alert",
        "account": "123456789012", "time": "2026-03-02T03:04:40Z", "region": "us-east-1",
        "resources": [], "detail": vendor("grafana/webhook.json")
    });
    let out = w.ingest(event).await.unwrap();
    assert_eq!(out.results.len(), 2, "one incident per Grafana rule");
    assert_eq!(w.incident_count().await, 2);
}

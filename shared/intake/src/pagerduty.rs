//! PagerDuty, both ways it talks: Webhooks v3 (`event.event_type` `incident.triggered`,
//! `incident.acknowledged`, `incident.resolved`, ...; the incident's `incident_key` is the key)
//! and the Events API v2 body (`event_action` trigger / acknowledge / resolve, `dedup_key`,
//! nested `payload`). Both key by the same thing (`incident_key` is the v2 `dedup_key`), so an
//! alert seen both ways is one incident.

use iras_core::{Alert, AlertState, Timestamp};
use serde_json::Value;

use crate::common::{parse_time, text, time_at, Draft};
use crate::IntakeError;

pub fn parse(body: &Value, now: Timestamp) -> Result<Vec<Alert>, IntakeError> {
    if let Some(event) = body.get("event") {
        return webhook_v3(event, now);
    }
    events_v2(body, now)
}

fn webhook_v3(event: &Value, now: Timestamp) -> Result<Vec<Alert>, IntakeError> {
    let event_type = text(event, "event_type")
        .ok_or_else(|| IntakeError::new("event.event_type", "a string"))?;
    let data = event
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| IntakeError::new("event.data", "an object"))?;
    // Notes, responders, services: about no alert's state.
    if data.get("type").and_then(Value::as_str) != Some("incident") {
        return Ok(Vec::new());
    }
    let state = match event_type.as_str() {
        "incident.resolved" => AlertState::Resolved,
        "incident.acknowledged" => AlertState::Acknowledged,
        _ => AlertState::Firing,
    };
    let at = time_at(event, "occurred_at", "event.occurred_at")?.unwrap_or(now);
    let mut d = Draft::new("pagerduty", state, at);
    d.key(text(data, "incident_key").or_else(|| text(data, "id")));
    d.title = text(data, "title");
    // `service` is an object here: its name is the summary; the object is kept as raw data.
    d.service = data.get("service").and_then(|s| text(s, "summary"));
    let priority = data.get("priority").and_then(|p| text(p, "summary"));
    d.severity(priority.clone());
    if d.origin.severity.is_none() {
        d.severity(text(data, "urgency").map(|u| match u.as_str() {
            "high" => "critical".to_string(),
            _ => "warning".to_string(),
        }));
    }
    d.origin.group = data
        .get("escalation_policy")
        .and_then(|p| text(p, "summary"));
    d.link("source", text(data, "html_url"));
    d.field("event_type", Value::String(event_type))
        .field(
            "urgency",
            data.get("urgency").cloned().unwrap_or(Value::Null),
        )
        .field(
            "priority",
            priority.map(Value::String).unwrap_or(Value::Null),
        )
        .field("raw", event.clone());
    Ok(vec![d.finish("event.data.title")?])
}

fn events_v2(body: &Value, now: Timestamp) -> Result<Vec<Alert>, IntakeError> {
    let action = text(body, "event_action")
        .ok_or_else(|| IntakeError::new("event_action", "trigger, acknowledge or resolve"))?;
    let state = match action.as_str() {
        "trigger" => AlertState::Firing,
        "acknowledge" => AlertState::Acknowledged,
        "resolve" => AlertState::Resolved,
        _ => {
            return Err(IntakeError::new(
                "event_action",
                "trigger, acknowledge or resolve",
            ))
        }
    };
    let dedup_key = text(body, "dedup_key");
    if state != AlertState::Firing && dedup_key.is_none() {
        return Err(IntakeError::new(
            "dedup_key",
            "the key of the alert being acknowledged or resolved",
        ));
    }
    let payload = body.get("payload").cloned().unwrap_or(Value::Null);
    if state == AlertState::Firing && !payload.is_object() {
        return Err(IntakeError::new("payload", "an object"));
    }
    let at = text(&payload, "timestamp")
        .map(|t| {
            parse_time(&t)
                .ok_or_else(|| IntakeError::new("payload.timestamp", "an ISO 8601 date-time"))
        })
        .transpose()?
        .unwrap_or(now);
    let mut d = Draft::new("pagerduty", state, at);
    d.key(dedup_key.clone());
    d.title = text(&payload, "summary").or_else(|| {
        dedup_key
            .as_ref()
            .map(|k| format!("PagerDuty alert {k} ({action})"))
    });
    let details = payload
        .get("custom_details")
        .cloned()
        .unwrap_or(Value::Null);
    d.service = text(&details, "service").or_else(|| text(&payload, "component"));
    d.severity(text(&payload, "severity"));
    d.origin.host = text(&payload, "source");
    d.origin.component = text(&payload, "component");
    d.origin.group = text(&payload, "group");
    if let Some(links) = body.get("links").and_then(Value::as_array) {
        for l in links {
            d.link("source", text(l, "href"));
        }
    }
    d.link("client", text(body, "client_url"));
    d.field(
        "class",
        payload.get("class").cloned().unwrap_or(Value::Null),
    )
    .field("custom_details", details);
    // The routing key is a credential: it is not kept.
    let mut raw = body.clone();
    if let Some(m) = raw.as_object_mut() {
        m.remove("routing_key");
    }
    d.field("raw", raw);
    Ok(vec![d.finish("payload.summary")?])
}

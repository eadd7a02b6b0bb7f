//! Opsgenie's webhook integration: `action` `Create` / `Close` / `Acknowledge` (others, such as
//! `AddNote`, say nothing about the alert's state and are ignored), keyed by the alert's
//! `alias`, its `alertId` when it has none.

use chrono::{TimeZone, Utc};
use iras_core::{Alert, AlertState, Timestamp};
use serde_json::Value;

use crate::common::{text, Draft};
use crate::IntakeError;

/// Opsgenie sends `createdAt` in milliseconds and `updatedAt` in nanoseconds.
fn epoch_any(v: Option<&Value>) -> Option<Timestamp> {
    let n = v?.as_i64()?;
    let ms = if n > 100_000_000_000_000 {
        n / 1_000_000
    } else {
        n
    };
    Utc.timestamp_millis_opt(ms).single()
}

pub fn parse(body: &Value, now: Timestamp) -> Result<Vec<Alert>, IntakeError> {
    let action = text(body, "action").ok_or_else(|| IntakeError::new("action", "a string"))?;
    let alert = body
        .get("alert")
        .filter(|a| a.is_object())
        .ok_or_else(|| IntakeError::new("alert", "an object"))?;
    let state = match action.as_str() {
        "Create" | "UnAcknowledge" | "Escalate" => AlertState::Firing,
        "Close" => AlertState::Resolved,
        "Acknowledge" => AlertState::Acknowledged,
        _ => return Ok(Vec::new()),
    };
    let at = match state {
        AlertState::Firing if action == "Create" => {
            epoch_any(alert.get("createdAt")).or(epoch_any(alert.get("updatedAt")))
        }
        _ => epoch_any(alert.get("updatedAt")).or(epoch_any(alert.get("createdAt"))),
    }
    .unwrap_or(now);
    let mut d = Draft::new("opsgenie", state, at);
    d.key(text(alert, "alias").or_else(|| text(alert, "alertId")));
    d.title = text(alert, "message");
    let tags: Vec<String> = alert
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    d.service = tags
        .iter()
        .find_map(|t| t.strip_prefix("service:").map(str::to_string))
        .or_else(|| text(alert, "entity"));
    d.severity(text(alert, "priority"));
    d.origin.host = text(alert, "entity");
    d.origin.group = text(body, "integrationName");
    d.field("action", Value::String(action))
        .field("tags", Value::from(tags))
        .field(
            "description",
            alert.get("description").cloned().unwrap_or(Value::Null),
        )
        .field("raw", body.clone());
    Ok(vec![d.finish("alert.message")?])
}

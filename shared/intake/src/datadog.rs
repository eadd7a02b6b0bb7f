//! Datadog webhooks: the default payload, or a custom one using the documented variables
//! (`$ALERT_ID`, `$AGGREG_KEY`, `$ALERT_TRANSITION`, `$ALERT_PRIORITY`, `$DATE`, `$TAGS`, ...).
//! A variable Datadog left unfilled (`"$ALERT_ID"` as sent) counts as absent.

use iras_core::{Alert, AlertState, Timestamp};
use serde_json::Value;

use crate::common::{epoch_millis, parse_time, Draft};
use crate::IntakeError;

/// The field's text, unless it is empty or a variable Datadog did not fill.
fn filled(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => {
            let s = s.trim();
            (!s.is_empty() && !s.starts_with('$') && s != "Null").then(|| s.to_string())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `$TAGS` is `key:value,key:value`.
fn tag(tags: Option<&str>, key: &str) -> Option<String> {
    tags?.split(',').find_map(|t| {
        let (k, v) = t.trim().split_once(':')?;
        (k.trim() == key && !v.trim().is_empty()).then(|| v.trim().to_string())
    })
}

pub fn parse(body: &Value, now: Timestamp) -> Result<Vec<Alert>, IntakeError> {
    if !body.is_object() {
        return Err(IntakeError::new("body", "a JSON object"));
    }
    // `$ALERT_TRANSITION`: Recovered, Triggered/Re-Triggered, No Data/Re-No Data, Warn/Re-Warn,
    // Renotify.
    let transition = filled(body, "alert_transition");
    let state = match transition
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("recovered") => AlertState::Resolved,
        Some("no data") | Some("re-no data") => AlertState::NoData,
        _ => AlertState::Firing,
    };
    let at = epoch_millis(
        body.get("date")
            .filter(|d| !d.as_str().is_some_and(|s| s.starts_with('$'))),
    )
    .or_else(|| filled(body, "last_updated").and_then(|s| parse_time(&s)))
    .unwrap_or(now);
    let tags = filled(body, "tags");
    let mut d = Draft::new("datadog", state, at);
    // A monitor alerts once per group: the aggregation key, else the monitor and its scope.
    let key = filled(body, "aggreg_key").or_else(|| {
        filled(body, "alert_id").map(|id| match filled(body, "alert_scope") {
            Some(scope) => format!("{id}/{scope}"),
            None => id,
        })
    });
    d.key(key);
    d.title = filled(body, "alert_title")
        .or_else(|| filled(body, "title"))
        .or_else(|| filled(body, "event_title"));
    d.service = tag(tags.as_deref(), "service")
        .or_else(|| tag(filled(body, "alert_scope").as_deref(), "service"));
    d.severity(
        filled(body, "alert_priority")
            .or_else(|| filled(body, "priority").filter(|p| p.starts_with(['P', 'p']))),
    );
    d.origin.host = filled(body, "host_name").or_else(|| filled(body, "hostname"));
    d.origin.component = filled(body, "alert_metric");
    d.origin.group = tag(tags.as_deref(), "env");
    d.link("source", filled(body, "link"))
        .link("snapshot", filled(body, "snapshot"));
    for (from, to) in [
        ("body", "body"),
        ("alert_status", "summary"),
        ("alert_query", "query"),
        ("alert_type", "alert_type"),
        ("alert_transition", "transition"),
        ("alert_metric", "metric"),
        ("event_type", "event_type"),
    ] {
        if let Some(v) = filled(body, from) {
            d.field(to, Value::String(v));
        }
    }
    if let Some(t) = tags {
        d.field("tags", Value::String(t));
    }
    d.field("raw", body.clone());
    Ok(vec![d.finish("alert_title")?])
}

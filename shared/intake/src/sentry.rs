//! Sentry issue alerts (`Sentry-Hook-Resource: event_alert`): the issue is the key, its
//! `level` the severity, its project the service.

use iras_core::{Alert, AlertState, Timestamp};
use serde_json::Value;

use crate::common::{text, time_at, Draft};
use crate::IntakeError;

/// The project's slug from an event's API URL: `.../projects/<org>/<project>/events/...`.
fn project_slug(url: &str) -> Option<String> {
    let rest = url.split("/projects/").nth(1)?;
    let mut parts = rest.split('/');
    let _org = parts.next()?;
    parts.next().filter(|p| !p.is_empty()).map(str::to_string)
}

/// A tag of the event (`[["level", "error"], ...]`).
fn tag(event: &Value, key: &str) -> Option<String> {
    event.get("tags")?.as_array()?.iter().find_map(|t| {
        let pair = t.as_array()?;
        (pair.first()?.as_str()? == key)
            .then(|| pair.get(1)?.as_str().map(str::to_string))
            .flatten()
    })
}

pub fn parse(body: &Value, now: Timestamp) -> Result<Vec<Alert>, IntakeError> {
    let event = body
        .get("data")
        .and_then(|d| d.get("event"))
        .filter(|e| e.is_object())
        .ok_or_else(|| IntakeError::new("data.event", "an object"))?;
    let at = time_at(event, "datetime", "data.event.datetime")?.unwrap_or(now);
    let mut d = Draft::new("sentry", AlertState::Firing, at);
    let issue = match event.get("issue_id") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    d.key(issue);
    d.title = text(event, "title");
    d.service = tag(event, "service").or_else(|| text(event, "url").and_then(|u| project_slug(&u)));
    d.severity(text(event, "level"));
    d.origin.host = tag(event, "server_name");
    d.origin.component = text(event, "culprit");
    d.origin.group = tag(event, "environment");
    d.link("source", text(event, "web_url"))
        .link("issue", text(event, "issue_url"));
    d.field("level", event.get("level").cloned().unwrap_or(Value::Null))
        .field(
            "project",
            event.get("project").cloned().unwrap_or(Value::Null),
        )
        .field(
            "rule",
            body.get("data")
                .and_then(|d| d.get("triggered_rule"))
                .cloned()
                .unwrap_or(Value::Null),
        )
        .field("raw", event.clone());
    Ok(vec![d.finish("data.event.title")?])
}

//! Prometheus Alertmanager webhook (version 4) and Grafana unified alerting, which sends the
//! same shape with a few fields more. One IRAS alert per `alerts[]` entry, keyed by its
//! `fingerprint` (or a stable hash of its labels when an old Alertmanager sends none), never by
//! `groupKey`: Grafana's documented `groupKey` is `"{}:{}"` for every rule.

use iras_core::{Alert, AlertState, Timestamp};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::common::{string_map, text, time_at, Draft};
use crate::{IntakeConfig, IntakeError, Source};

/// The group-level labels that name where an alert lives, first match wins.
const GROUP_LABELS: [&str; 3] = ["namespace", "cluster", "kubernetes_namespace"];
const HOST_LABELS: [&str; 3] = ["instance", "host", "pod"];

/// Alertmanager's "no end yet".
fn is_zero_time(s: Option<&str>) -> bool {
    s.is_none_or(|s| s.starts_with("0001-01-01"))
}

/// A stable key from the labels, for an Alertmanager too old to send `fingerprint`.
fn labels_fingerprint(labels: &Map<String, Value>) -> String {
    let mut pairs: Vec<(&String, &str)> = labels
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k, v)))
        .collect();
    pairs.sort();
    let mut h = Sha256::new();
    for (k, v) in pairs {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    format!("labels:{}", &hex::encode(h.finalize())[..16])
}

pub fn parse(
    body: &Value,
    now: Timestamp,
    config: &IntakeConfig,
    source: Source,
) -> Result<Vec<Alert>, IntakeError> {
    if !body.is_object() {
        return Err(IntakeError::new("body", "a JSON object"));
    }
    let alerts = body
        .get("alerts")
        .and_then(Value::as_array)
        .ok_or_else(|| IntakeError::new("alerts", "an array of alerts"))?;
    let common_labels = string_map(body, "commonLabels");
    let common_annotations = string_map(body, "commonAnnotations");
    let external = text(body, "externalURL");
    let group_status = text(body, "status");
    alerts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let path = |f: &str| format!("alerts[{i}].{f}");
            if !a.is_object() {
                return Err(IntakeError::new(format!("alerts[{i}]"), "an object"));
            }
            let mut labels = common_labels.clone();
            labels.extend(string_map(a, "labels"));
            let mut annotations = common_annotations.clone();
            annotations.extend(string_map(a, "annotations"));
            let label = |k: &str| labels.get(k).and_then(Value::as_str).map(str::to_string);
            let note = |k: &str| {
                annotations
                    .get(k)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let status = text(a, "status").or(group_status.clone());
            let state = match status.as_deref() {
                Some("resolved") => AlertState::Resolved,
                Some("firing") | None => AlertState::Firing,
                Some(_) => return Err(IntakeError::new(path("status"), "`firing` or `resolved`")),
            };
            let starts = time_at(a, "startsAt", &path("startsAt"))?;
            let ends = if is_zero_time(a.get("endsAt").and_then(Value::as_str)) {
                None
            } else {
                time_at(a, "endsAt", &path("endsAt"))?
            };
            let at = match state {
                AlertState::Resolved => ends.or(starts),
                _ => starts,
            }
            .unwrap_or(now);
            let mut d = Draft::new(source.as_str(), state, at);
            d.key(text(a, "fingerprint").or_else(|| Some(labels_fingerprint(&labels))));
            d.title = note("summary")
                .or_else(|| label("alertname"))
                .or_else(|| note("description"));
            d.service = config.service_labels.iter().find_map(|k| label(k));
            d.severity(label("severity").or_else(|| label("priority")));
            d.origin.host = HOST_LABELS.iter().find_map(|k| label(k));
            d.origin.component = label("container").or_else(|| label("job"));
            d.origin.group = GROUP_LABELS.iter().find_map(|k| label(k));
            d.link("generator", text(a, "generatorURL"))
                .link("runbook", note("runbook_url"))
                .link("dashboard", text(a, "dashboardURL"))
                .link("panel", text(a, "panelURL"))
                .link("silence", text(a, "silenceURL"))
                .link("image", text(a, "imageURL"))
                .link("source", external.clone());
            d.field("labels", Value::Object(labels.clone()))
                .field("annotations", Value::Object(annotations.clone()))
                .field(
                    "receiver",
                    body.get("receiver").cloned().unwrap_or(Value::Null),
                )
                .field(
                    "startsAt",
                    a.get("startsAt").cloned().unwrap_or(Value::Null),
                )
                .field("endsAt", a.get("endsAt").cloned().unwrap_or(Value::Null));
            if let Some(v) = a.get("values").filter(|v| v.is_object()) {
                d.field("values", v.clone());
            }
            for k in ["summary", "description"] {
                if let Some(v) = note(k) {
                    d.field(k, Value::String(v));
                }
            }
            d.finish(&path("labels.alertname"))
        })
        .collect()
}

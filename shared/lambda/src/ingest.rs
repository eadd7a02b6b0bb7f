//! The `ingest` function: EventBridge and SNS events in, alerts through their lifecycle.
//!
//! Three kinds of event carry alerts:
//! - `source: "aws.cloudwatch"`, `detail-type: "CloudWatch Alarm State Change"`, from the
//!   default bus: read by [`iras_intake::cloudwatch`]. `ALARM` fires (an incident opens, or a
//!   repeat attaches), `OK` records the source's recovery, `INSUFFICIENT_DATA` is noted; the key
//!   is the alarm's ARN and the whole `detail` is kept on the alert.
//! - `source: "iras.alert"` ([`ALERT_SOURCE`]), any `detail-type`, on the IRAS bus: `detail` is
//!   any payload the webhook reads (IRAS's flat shape, or a monitoring tool's, detected); a
//!   flat alert without `timestamp` happened at the event's `time`.
//! - An SNS event (`Records[].Sns`, a topic subscribed to this function): each record's
//!   `Message` is a CloudWatch alarm or an alert as JSON. SNS delivers to Lambda under IAM, so
//!   no signature check is needed here (the HTTPS route checks them).
//!
//! Anything else is refused with an error naming what arrived, and nothing is written.

use aws_lambda_events::event::sns::SnsEvent;
use chrono::{DateTime, SecondsFormat, Utc};
use iras_core::ports::{PipelineStarter, TaskCallbacks};
use iras_core::stages::{self, Deps, IngestFailure, Ingested, StageError};
use iras_core::{Alert, IncidentId};
use iras_intake::{cloudwatch, detect, parse, IntakeConfig, IntakeError, Source};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `source` of alerts sent to the IRAS bus. Not `iras`: that is the source of the
/// lifecycle events IRAS publishes itself, which must never come back in as alerts.
pub const ALERT_SOURCE: &str = "iras.alert";
pub const CLOUDWATCH_SOURCE: &str = cloudwatch::SOURCE;
pub const ALARM_STATE_CHANGE: &str = cloudwatch::ALARM_STATE_CHANGE;

/// The EventBridge envelope, as EventBridge delivers it to a Lambda target.
#[derive(Debug, Clone, Deserialize)]
pub struct EventBridgeEvent {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    #[serde(default)]
    pub account: Option<String>,
    pub time: DateTime<Utc>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub detail: Value,
}

/// Why an event opened no incident. `error_type` is what Lambda reports.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    #[error("not an EventBridge or SNS event: {0}")]
    NotAnEvent(String),
    #[error(
        "IRAS has no use for `{detail_type}` events from `{event_source}`: it ingests \
         `{CLOUDWATCH_SOURCE}` \"{ALARM_STATE_CHANGE}\" and `{ALERT_SOURCE}` events"
    )]
    UnknownEvent {
        event_source: String,
        detail_type: String,
    },
    #[error("{0}")]
    InvalidAlert(String),
    #[error("{0}")]
    Stage(StageError),
    #[error("incident {incident_id} was recorded but its pipeline did not start: {problem}")]
    NotStarted {
        incident_id: IncidentId,
        problem: String,
    },
}

impl IngestError {
    pub fn error_type(&self) -> &'static str {
        match self {
            IngestError::NotAnEvent(_) | IngestError::InvalidAlert(_) => "InvalidInput",
            IngestError::UnknownEvent { .. } => "UnknownEvent",
            IngestError::Stage(e) => e.name(),
            IngestError::NotStarted { .. } => "PipelineNotStarted",
        }
    }
}

impl From<IngestFailure> for IngestError {
    fn from(f: IngestFailure) -> Self {
        match f {
            IngestFailure::NotRecorded(e) => IngestError::Stage(e),
            IngestFailure::NotStarted {
                incident_id,
                problem,
            } => IngestError::NotStarted {
                incident_id,
                problem,
            },
        }
    }
}

impl From<IntakeError> for IngestError {
    fn from(e: IntakeError) -> Self {
        IngestError::InvalidAlert(e.to_string())
    }
}

impl From<IngestError> for Diagnostic {
    fn from(e: IngestError) -> Diagnostic {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// What became of one alert of the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestResult {
    pub incident_id: Option<IncidentId>,
    pub status: Option<String>,
    pub outcome: String,
    /// A repeat, recurrence or lifecycle note on an existing incident.
    pub deduplicated: bool,
}

/// What became of the event: its first alert's result, and every alert's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestOutput {
    pub incident_id: Option<IncidentId>,
    pub status: Option<String>,
    pub outcome: String,
    pub deduplicated: bool,
    pub results: Vec<IngestResult>,
}

fn result_of(i: &Ingested) -> IngestResult {
    IngestResult {
        incident_id: i.incident_id.clone(),
        status: i.status.map(|s| s.as_str().to_string()),
        outcome: i.outcome.as_str().to_string(),
        deduplicated: i.is_repeat(),
    }
}

/// The alerts an EventBridge or SNS event carries, or why it carries none.
pub fn alerts_from_event(event: Value) -> Result<Vec<Alert>, IngestError> {
    if event.get("Records").is_some() {
        return sns_alerts(event);
    }
    let envelope: EventBridgeEvent = serde_json::from_value(event.clone())
        .map_err(|e| IngestError::NotAnEvent(e.to_string()))?;
    match (envelope.source.as_str(), envelope.detail_type.as_str()) {
        (CLOUDWATCH_SOURCE, ALARM_STATE_CHANGE) => Ok(vec![cloudwatch::from_eventbridge(&event)?]),
        (ALERT_SOURCE, _) => bus_alerts(envelope),
        _ => Err(IngestError::UnknownEvent {
            event_source: envelope.source,
            detail_type: envelope.detail_type,
        }),
    }
}

/// An `iras.alert` event's detail: any payload the webhook reads, detected.
fn bus_alerts(event: EventBridgeEvent) -> Result<Vec<Alert>, IngestError> {
    let Value::Object(mut fields) = event.detail else {
        return Err(IngestError::InvalidAlert(format!(
            "an `{ALERT_SOURCE}` event's detail must be the alert as a JSON object"
        )));
    };
    let depth = iras_core::json_depth(&Value::Object(fields.clone()));
    if depth > iras_core::MAX_ALERT_DEPTH {
        return Err(IngestError::InvalidAlert(format!(
            "the alert nests {depth} levels deep; IRAS keeps at most {}",
            iras_core::MAX_ALERT_DEPTH
        )));
    }
    let detail = Value::Object(fields.clone());
    let source = detect(&detail);
    if source == Source::Generic && matches!(fields.get("timestamp"), None | Some(Value::Null)) {
        fields.insert("timestamp".into(), Value::String(rfc3339(event.time)));
    }
    if source == Source::Sns {
        return Err(IngestError::InvalidAlert(
            "an SNS message on the IRAS bus cannot be verified: subscribe the topic to the \
             ingest function or to /webhook/sns"
                .into(),
        ));
    }
    Ok(parse(
        source,
        Value::Object(fields),
        event.time,
        &IntakeConfig::default(),
    )?)
}

/// Each SNS record's message: a CloudWatch alarm, or an alert as JSON.
fn sns_alerts(event: Value) -> Result<Vec<Alert>, IngestError> {
    let event: SnsEvent =
        serde_json::from_value(event).map_err(|e| IngestError::NotAnEvent(e.to_string()))?;
    let mut alerts = Vec::new();
    for record in event.records {
        let m = record.sns;
        if let Some(alarm) = cloudwatch::from_sns_message(&m.message, m.timestamp)? {
            alerts.push(alarm);
            continue;
        }
        let mut v: Value = serde_json::from_str(&m.message).map_err(|_| {
            IngestError::InvalidAlert(format!(
                "SNS message {} is neither a CloudWatch alarm nor an alert as JSON",
                m.message_id
            ))
        })?;
        if v.get("timestamp").is_none() && v.is_object() {
            v["timestamp"] = Value::String(rfc3339(m.timestamp));
        }
        let source = detect(&v);
        alerts.extend(parse(source, v, m.timestamp, &IntakeConfig::default())?);
    }
    Ok(alerts)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Takes each alert of the event through [`stages::open_and_start`], as the webhook does: a
/// retried event heals an incident whose first start failed.
pub async fn ingest_event(
    deps: &Deps,
    starter: &dyn PipelineStarter,
    callbacks: &dyn TaskCallbacks,
    event: Value,
) -> Result<IngestOutput, IngestError> {
    let alerts = alerts_from_event(event)?;
    let mut results = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let ingested = stages::open_and_start(deps, starter, callbacks, alert).await?;
        results.push(result_of(&ingested));
    }
    let first = results.first().cloned().unwrap_or(IngestResult {
        incident_id: None,
        status: None,
        outcome: "none".into(),
        deduplicated: false,
    });
    Ok(IngestOutput {
        incident_id: first.incident_id,
        status: first.status,
        outcome: first.outcome,
        deduplicated: first.deduplicated,
        results,
    })
}

/// The Lambda handler.
pub async fn handle(
    deps: &Deps,
    starter: &dyn PipelineStarter,
    callbacks: &dyn TaskCallbacks,
    event: LambdaEvent<Value>,
) -> Result<IngestOutput, Diagnostic> {
    match ingest_event(deps, starter, callbacks, event.payload).await {
        Ok(out) => {
            tracing::info!(incident = ?out.incident_id, outcome = %out.outcome, alerts = out.results.len(), "event ingested");
            Ok(out)
        }
        Err(e) => {
            tracing::warn!(error_type = e.error_type(), error = %e, "event not ingested");
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iras_core::AlertState;
    use serde_json::json;

    fn alarm_event(from: &str, to: &str) -> Value {
        json!({
            "version": "0",
            "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": "123456789012",
            "time": "2026-03-02T03:04:40Z",
            "region": "us-east-1",
            "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-5xx"],
            "detail": {
                "alarmName": "orders-5xx",
                "state": {"value": to, "reason": "Threshold Crossed",
                          "timestamp": "2026-03-02T03:04:40.989+0000"},
                "previousState": {"value": from, "reason": "ok",
                                  "timestamp": "2026-03-02T02:04:40.989+0000"},
                "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {
                    "namespace": "AWS/ApplicationELB", "name": "HTTPCode_Target_5XX_Count",
                    "dimensions": {"LoadBalancer": "app/shop/1", "ServiceName": "orders"}},
                    "period": 60, "stat": "Sum"}}]}
            }
        })
    }

    fn one(event: Value) -> Alert {
        let mut alerts = alerts_from_event(event).unwrap();
        assert_eq!(alerts.len(), 1);
        alerts.remove(0)
    }

    #[test]
    fn the_alarm_tag_names_the_service_before_any_dimension() {
        let mut e = alarm_event("OK", "ALARM");
        e["detail"]["alarmTags"] = json!({"service": "checkout"});
        assert_eq!(one(e).service.as_deref(), Some("checkout"));
        let plain = one(alarm_event("OK", "ALARM"));
        assert_eq!(plain.service.as_deref(), Some("orders"));
    }

    #[test]
    fn an_alarm_fires_on_alarm_recovers_on_ok_and_notes_insufficient_data() {
        for (from, to, state) in [
            ("OK", "ALARM", AlertState::Firing),
            ("INSUFFICIENT_DATA", "ALARM", AlertState::Firing),
            ("ALARM", "OK", AlertState::Resolved),
            ("OK", "INSUFFICIENT_DATA", AlertState::NoData),
        ] {
            let a = one(alarm_event(from, to));
            assert_eq!(a.state(), state, "{from} → {to}");
            assert_eq!(
                a.fingerprint(),
                "cloudwatch:arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-5xx"
            );
        }
    }

    #[test]
    fn an_iras_alert_without_timestamp_happened_when_the_event_did() {
        let e = json!({
            "version": "0", "id": "1", "detail-type": "Alert", "source": "iras.alert",
            "account": "123456789012", "time": "2026-03-02T03:04:40Z", "region": "us-east-1",
            "resources": [], "detail": {"title": "Disk full on ledger-db"}
        });
        assert_eq!(one(e).timestamp.to_rfc3339(), "2026-03-02T03:04:40+00:00");
    }

    #[test]
    fn an_iras_alert_without_title_is_refused_naming_the_field() {
        let e = json!({
            "detail-type": "Alert", "source": "iras.alert", "time": "2026-03-02T03:04:40Z",
            "detail": {"timestamp": "2026-03-02T03:04:40Z"}
        });
        let e = alerts_from_event(e).unwrap_err();
        assert_eq!(e.error_type(), "InvalidInput");
        assert!(e.to_string().contains("title"), "{e}");
    }

    #[test]
    fn our_own_lifecycle_events_are_not_alerts() {
        let e = json!({
            "detail-type": "IncidentOpened", "source": "iras", "time": "2026-03-02T03:04:40Z",
            "detail": {"incident_id": "inc-1", "title": "x"}
        });
        assert_eq!(
            alerts_from_event(e).unwrap_err().error_type(),
            "UnknownEvent"
        );
    }
}

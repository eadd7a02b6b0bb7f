//! The `ingest` function: EventBridge events in, incidents opened and pipelines started.
//!
//! Two kinds of event open incidents:
//! - `source: "aws.cloudwatch"`, `detail-type: "CloudWatch Alarm State Change"`, from the
//!   default bus: only a transition INTO `ALARM`. The title is the alarm's name and the state's
//!   reason, the time is the event's, the service comes from the alarm's `service` tag or its
//!   metric's dimensions, the fingerprint is the alarm's ARN (so every repeat of one alarm
//!   attaches to its open incident) and the whole `detail` is kept on the alert.
//! - `source: "iras.alert"` ([`ALERT_SOURCE`]), any `detail-type`, on the IRAS bus: `detail` is
//!   the generic alert JSON the webhook takes (`title`, `timestamp`, any other fields); a
//!   missing `timestamp` is the event's `time`.
//!
//! Anything else is refused with an error naming what arrived, and nothing is written.

use chrono::{DateTime, SecondsFormat, Utc};
use iras_core::ports::PipelineStarter;
use iras_core::stages::{self, Deps, IngestFailure, StageError};
use iras_core::{Alert, IncidentId};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `source` of alerts sent to the IRAS bus. Not `iras`: that is the source of the
/// lifecycle events IRAS publishes itself, which must never come back in as alerts.
pub const ALERT_SOURCE: &str = "iras.alert";
pub const CLOUDWATCH_SOURCE: &str = "aws.cloudwatch";
pub const ALARM_STATE_CHANGE: &str = "CloudWatch Alarm State Change";

/// An alarm reason is a sentence; a title is not an essay.
const MAX_TITLE_CHARS: usize = 300;

/// Dimensions that name the service an alarm watches, in order of preference.
const SERVICE_DIMENSIONS: [&str; 5] = [
    "service",
    "Service",
    "ServiceName",
    "FunctionName",
    "TableName",
];

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

/// The parts of a CloudWatch alarm state change that make an alert.
#[derive(Debug, Clone, Deserialize)]
struct AlarmDetail {
    #[serde(rename = "alarmName")]
    alarm_name: String,
    state: AlarmState,
    #[serde(rename = "previousState", default)]
    previous_state: Option<AlarmState>,
    #[serde(default)]
    configuration: AlarmConfiguration,
    /// Present when the alarm's tags are propagated to its events.
    #[serde(rename = "alarmTags", default)]
    alarm_tags: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct AlarmState {
    value: String,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct AlarmConfiguration {
    #[serde(default)]
    metrics: Vec<AlarmMetric>,
}

#[derive(Debug, Clone, Deserialize)]
struct AlarmMetric {
    #[serde(rename = "metricStat", default)]
    metric_stat: Option<MetricStat>,
}

#[derive(Debug, Clone, Deserialize)]
struct MetricStat {
    metric: MetricRef,
}

#[derive(Debug, Clone, Deserialize)]
struct MetricRef {
    #[serde(default)]
    dimensions: Map<String, Value>,
}

/// Why an event opened no incident. `error_type` is what Lambda reports.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    #[error("not an EventBridge event: {0}")]
    NotAnEvent(String),
    #[error(
        "IRAS has no use for `{detail_type}` events from `{event_source}`: it ingests \
         `{CLOUDWATCH_SOURCE}` \"{ALARM_STATE_CHANGE}\" and `{ALERT_SOURCE}` events"
    )]
    UnknownEvent {
        event_source: String,
        detail_type: String,
    },
    #[error(
        "alarm {alarm} went from {from} to {to}: only a transition into ALARM opens an incident"
    )]
    NotIntoAlarm {
        alarm: String,
        from: String,
        to: String,
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
            IngestError::NotIntoAlarm { .. } => "AlarmNotFiring",
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

impl From<IngestError> for Diagnostic {
    fn from(e: IngestError) -> Diagnostic {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// What became of the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestOutput {
    pub incident_id: IncidentId,
    pub status: String,
    /// A repeat of an alert whose incident is still open: attached to it.
    pub deduplicated: bool,
}

/// The alert an EventBridge event carries, or why it carries none.
pub fn alert_from_event(event: Value) -> Result<Alert, IngestError> {
    let event: EventBridgeEvent =
        serde_json::from_value(event).map_err(|e| IngestError::NotAnEvent(e.to_string()))?;
    match (event.source.as_str(), event.detail_type.as_str()) {
        (CLOUDWATCH_SOURCE, ALARM_STATE_CHANGE) => alarm_alert(event),
        (ALERT_SOURCE, _) => generic_alert(event),
        _ => Err(IngestError::UnknownEvent {
            event_source: event.source,
            detail_type: event.detail_type,
        }),
    }
}

fn alarm_alert(event: EventBridgeEvent) -> Result<Alert, IngestError> {
    let Value::Object(fields) = event.detail else {
        return Err(IngestError::InvalidAlert(
            "the alarm event's detail is not an object".into(),
        ));
    };
    let alarm: AlarmDetail = serde_json::from_value(Value::Object(fields.clone()))
        .map_err(|e| IngestError::InvalidAlert(format!("alarm event detail: {e}")))?;
    let from = alarm
        .previous_state
        .as_ref()
        .map(|s| s.value.clone())
        .unwrap_or_else(|| "unknown".into());
    if alarm.state.value != "ALARM" || from == "ALARM" {
        return Err(IngestError::NotIntoAlarm {
            alarm: alarm.alarm_name,
            from,
            to: alarm.state.value,
        });
    }
    let reason = alarm.state.reason.trim();
    let title: String = if reason.is_empty() {
        format!("{} is in ALARM", alarm.alarm_name)
    } else {
        format!("{}: {reason}", alarm.alarm_name)
    }
    .chars()
    .take(MAX_TITLE_CHARS)
    .collect();
    let arn = event
        .resources
        .iter()
        .find(|r| r.contains(":alarm:"))
        .cloned()
        .unwrap_or_else(|| match (&event.region, &event.account) {
            (Some(region), Some(account)) => {
                format!(
                    "arn:aws:cloudwatch:{region}:{account}:alarm:{}",
                    alarm.alarm_name
                )
            }
            _ => format!("alarm:{}", alarm.alarm_name),
        });

    // The whole detail is kept; the alert's own fields are set over it.
    let mut alert = fields;
    alert.insert("title".into(), Value::String(title));
    alert.insert("timestamp".into(), Value::String(rfc3339(event.time)));
    match alarm_service(&alarm) {
        Some(s) => alert.insert("service".into(), Value::String(s)),
        None => alert.remove("service"),
    };
    alert.insert("fingerprint".into(), Value::String(arn.clone()));
    alert.insert("alarm_arn".into(), Value::String(arn));
    alert.insert(
        "alert_source".into(),
        Value::String(CLOUDWATCH_SOURCE.into()),
    );
    if let Some(account) = event.account {
        alert.insert("account".into(), Value::String(account));
    }
    if let Some(region) = event.region {
        alert.insert("region".into(), Value::String(region));
    }
    Alert::from_json(Value::Object(alert)).map_err(|e| IngestError::InvalidAlert(e.to_string()))
}

/// The alarm's `service` tag, else the first dimension that names a service.
fn alarm_service(alarm: &AlarmDetail) -> Option<String> {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let tagged = ["service", "Service"]
        .iter()
        .find_map(|k| text(alarm.alarm_tags.get(*k)));
    tagged.or_else(|| {
        let dimensions: Vec<&Map<String, Value>> = alarm
            .configuration
            .metrics
            .iter()
            .filter_map(|m| m.metric_stat.as_ref())
            .map(|s| &s.metric.dimensions)
            .collect();
        SERVICE_DIMENSIONS
            .iter()
            .find_map(|k| dimensions.iter().find_map(|d| text(d.get(*k))))
    })
}

fn generic_alert(event: EventBridgeEvent) -> Result<Alert, IngestError> {
    let Value::Object(mut fields) = event.detail else {
        return Err(IngestError::InvalidAlert(format!(
            "an `{ALERT_SOURCE}` event's detail must be the alert as a JSON object"
        )));
    };
    if matches!(fields.get("timestamp"), None | Some(Value::Null)) {
        fields.insert("timestamp".into(), Value::String(rfc3339(event.time)));
    }
    Alert::from_json(Value::Object(fields)).map_err(|e| IngestError::InvalidAlert(e.to_string()))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Opens (or attaches to) the incident for the event's alert and starts its pipeline
/// ([`stages::open_and_start`], as the webhook does): a retried event heals an incident whose
/// first start failed.
pub async fn ingest_event(
    deps: &Deps,
    starter: &dyn PipelineStarter,
    event: Value,
) -> Result<IngestOutput, IngestError> {
    let alert = alert_from_event(event)?;
    let ingested = stages::open_and_start(deps, starter, alert).await?;
    let incident = ingested.incident();
    Ok(IngestOutput {
        incident_id: incident.incident_id.clone(),
        status: incident.status.as_str().to_string(),
        deduplicated: ingested.is_repeat(),
    })
}

/// The Lambda handler.
pub async fn handle(
    deps: &Deps,
    starter: &dyn PipelineStarter,
    event: LambdaEvent<Value>,
) -> Result<IngestOutput, Diagnostic> {
    match ingest_event(deps, starter, event.payload).await {
        Ok(out) => {
            tracing::info!(incident = %out.incident_id, deduplicated = out.deduplicated, "alert ingested");
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
                "state": {"value": to, "reason": "Threshold Crossed"},
                "previousState": {"value": from, "reason": "ok"},
                "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {
                    "namespace": "AWS/ApplicationELB", "name": "HTTPCode_Target_5XX_Count",
                    "dimensions": {"LoadBalancer": "app/shop/1", "ServiceName": "orders"}}}}]}
            }
        })
    }

    #[test]
    fn the_alarm_tag_names_the_service_before_any_dimension() {
        let mut e = alarm_event("OK", "ALARM");
        e["detail"]["alarmTags"] = json!({"service": "checkout"});
        assert_eq!(
            alert_from_event(e).unwrap().service.as_deref(),
            Some("checkout")
        );
        let plain = alert_from_event(alarm_event("OK", "ALARM")).unwrap();
        assert_eq!(plain.service.as_deref(), Some("orders"));
    }

    #[test]
    fn insufficient_data_to_alarm_is_a_transition_into_alarm() {
        assert!(alert_from_event(alarm_event("INSUFFICIENT_DATA", "ALARM")).is_ok());
    }

    #[test]
    fn recovery_and_repeats_are_not_alerts() {
        for (from, to) in [
            ("ALARM", "OK"),
            ("ALARM", "ALARM"),
            ("OK", "INSUFFICIENT_DATA"),
        ] {
            let e = alert_from_event(alarm_event(from, to)).unwrap_err();
            assert_eq!(e.error_type(), "AlarmNotFiring", "{from} → {to}");
        }
    }

    #[test]
    fn an_iras_alert_without_timestamp_happened_when_the_event_did() {
        let e = json!({
            "version": "0", "id": "1", "detail-type": "Alert", "source": "iras.alert",
            "account": "123456789012", "time": "2026-03-02T03:04:40Z", "region": "us-east-1",
            "resources": [], "detail": {"title": "Disk full on ledger-db"}
        });
        let alert = alert_from_event(e).unwrap();
        assert_eq!(alert.timestamp.to_rfc3339(), "2026-03-02T03:04:40+00:00");
    }

    #[test]
    fn an_iras_alert_without_title_is_refused_naming_the_field() {
        let e = json!({
            "detail-type": "Alert", "source": "iras.alert", "time": "2026-03-02T03:04:40Z",
            "detail": {"timestamp": "2026-03-02T03:04:40Z"}
        });
        let e = alert_from_event(e).unwrap_err();
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
            alert_from_event(e).unwrap_err().error_type(),
            "UnknownEvent"
        );
    }
}

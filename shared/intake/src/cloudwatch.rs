//! CloudWatch alarms, both ways they arrive: the EventBridge "CloudWatch Alarm State Change"
//! event and the alarm message an SNS topic carries. Both are read with the typed payloads of
//! `aws_lambda_events` and key by the alarm's ARN, so the same alarm is one incident whichever
//! way it came. `ALARM` fires, `OK` resolves, `INSUFFICIENT_DATA` is recorded.

use aws_lambda_events::event::cloudwatch_alarms::{CloudWatchAlarmData, CloudWatchAlarmStateValue};
use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_lambda_events::event::sns::CloudWatchAlarmPayload;
use iras_core::{Alert, AlertState, Timestamp};
use serde_json::{Map, Value};

use crate::common::{parse_time, Draft};
use crate::IntakeError;

pub const SOURCE: &str = "aws.cloudwatch";
pub const ALARM_STATE_CHANGE: &str = "CloudWatch Alarm State Change";

/// Dimensions that name the service an alarm watches, in order of preference.
const SERVICE_DIMENSIONS: [&str; 5] = [
    "service",
    "Service",
    "ServiceName",
    "FunctionName",
    "TableName",
];

fn state_of(value: &str) -> AlertState {
    match value {
        "ALARM" => AlertState::Firing,
        "OK" => AlertState::Resolved,
        _ => AlertState::NoData,
    }
}

fn title(alarm: &str, reason: &str, state: AlertState) -> String {
    let reason = reason.trim();
    match (state, reason.is_empty()) {
        (AlertState::Firing, true) => format!("{alarm} is in ALARM"),
        (AlertState::Resolved, true) => format!("{alarm} is OK"),
        (_, true) => format!("{alarm} has insufficient data"),
        (_, false) => format!("{alarm}: {reason}"),
    }
}

fn service_from(
    tags: Option<&Map<String, Value>>,
    dimensions: &[(String, String)],
) -> Option<String> {
    let tagged = ["service", "Service"].iter().find_map(|k| {
        tags?
            .get(*k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    });
    tagged.or_else(|| {
        SERVICE_DIMENSIONS.iter().find_map(|k| {
            dimensions
                .iter()
                .find(|(name, v)| name == k && !v.trim().is_empty())
                .map(|(_, v)| v.clone())
        })
    })
}

/// The console page of an alarm, for the person paged.
fn console_link(region: Option<&str>, alarm: &str) -> Option<String> {
    let region = region.filter(|r| r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))?;
    let name: String = alarm
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    Some(format!(
        "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#alarmsV2:alarm/{name}"
    ))
}

/// An EventBridge "CloudWatch Alarm State Change" event.
pub fn from_eventbridge(event: &Value) -> Result<Alert, IntakeError> {
    let typed: CloudWatchEvent<CloudWatchAlarmData> = serde_json::from_value(event.clone())
        .map_err(|e| {
            IntakeError::new("detail", format!("a CloudWatch alarm state change ({e})"))
        })?;
    let detail = typed
        .detail
        .as_ref()
        .ok_or_else(|| IntakeError::new("detail", "the alarm's state change"))?;
    let state = detail
        .state
        .as_ref()
        .ok_or_else(|| IntakeError::new("detail.state", "the alarm's new state"))?;
    let value = match state.value {
        CloudWatchAlarmStateValue::Alarm => "ALARM",
        CloudWatchAlarmStateValue::Ok => "OK",
        _ => "INSUFFICIENT_DATA",
    };
    let alert_state = state_of(value);
    let alarm = detail.alarm_name.clone();
    let arn = typed
        .resources
        .iter()
        .find(|r| r.contains(":alarm:"))
        .cloned()
        .unwrap_or_else(|| match (&typed.region, &typed.account_id) {
            (Some(region), Some(account)) => {
                format!("arn:aws:cloudwatch:{region}:{account}:alarm:{alarm}")
            }
            _ => format!("alarm:{alarm}"),
        });
    let raw_detail = event.get("detail").cloned().unwrap_or(Value::Null);
    // The typed configuration is generic; dimensions and tags are read from it as sent.
    let dimensions: Vec<(String, String)> = raw_detail
        .pointer("/configuration/metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.pointer("/metricStat/metric/dimensions")?.as_object())
        .flat_map(|d| {
            d.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        })
        .collect();
    let tags = raw_detail.get("alarmTags").and_then(Value::as_object);
    let mut d = Draft::new("cloudwatch", alert_state, typed.time);
    d.key(Some(arn.clone()));
    d.title = Some(title(&alarm, &state.reason, alert_state));
    d.service = service_from(tags, &dimensions);
    d.origin.component = raw_detail
        .pointer("/configuration/metrics/0/metricStat/metric/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    d.origin.group = typed.account_id.clone();
    d.origin.host = dimensions
        .iter()
        .find(|(k, _)| k == "InstanceId")
        .map(|(_, v)| v.clone());
    d.link("source", console_link(typed.region.as_deref(), &alarm));
    if let Value::Object(m) = &raw_detail {
        // The alarm's own detail stays on the record for the investigator.
        for (k, v) in m {
            d.field(k, v.clone());
        }
    }
    d.field("alarm_arn", Value::String(arn))
        .field("alert_source", Value::String(SOURCE.into()))
        .field("state_value", Value::String(value.into()));
    if let Some(a) = &typed.account_id {
        d.field("account", Value::String(a.clone()));
    }
    if let Some(r) = &typed.region {
        d.field("region", Value::String(r.clone()));
    }
    d.finish("detail.alarmName")
}

/// The alarm an SNS notification's `Message` carries, or `None` when it carries none.
pub fn from_sns_message(message: &str, sent_at: Timestamp) -> Result<Option<Alert>, IntakeError> {
    let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(message) else {
        return Ok(None);
    };
    if !m.contains_key("AlarmName") || !m.contains_key("NewStateValue") {
        return Ok(None);
    }
    // CloudWatch sends `null` for an alarm without a description, and omits a few trigger
    // fields the typed payload requires: both mean "empty".
    for k in [
        "AlarmDescription",
        "OldStateValue",
        "NewStateReason",
        "Region",
        "AlarmArn",
        "AWSAccountId",
        "StateChangeTime",
    ] {
        if m.get(k).is_none_or(Value::is_null) {
            m.insert(k.into(), Value::String(String::new()));
        }
    }
    if let Some(Value::Object(t)) = m.get_mut("Trigger") {
        for k in [
            "ComparisonOperator",
            "TreatMissingData",
            "EvaluateLowSampleCountPercentile",
        ] {
            if t.get(k).is_none_or(Value::is_null) {
                t.insert(k.into(), Value::String(String::new()));
            }
        }
        for k in ["Period", "EvaluationPeriods"] {
            if t.get(k).is_none_or(Value::is_null) {
                t.insert(k.into(), Value::from(0));
            }
        }
        if t.get("Threshold").is_none_or(Value::is_null) {
            t.insert("Threshold".into(), Value::from(0.0));
        }
    }
    let raw = Value::Object(m);
    let typed: CloudWatchAlarmPayload = serde_json::from_value(raw.clone())
        .map_err(|e| IntakeError::new("Message", format!("a CloudWatch alarm message ({e})")))?;
    let alert_state = state_of(&typed.new_state_value);
    let at = parse_time(&typed.state_change_time).unwrap_or(sent_at);
    let dimensions: Vec<(String, String)> = typed
        .trigger
        .dimensions
        .iter()
        .map(|d| (d.name.clone(), d.value.clone()))
        .collect();
    let arn = if typed.alarm_arn.is_empty() {
        format!("alarm:{}", typed.alarm_name)
    } else {
        typed.alarm_arn.clone()
    };
    let region = arn.split(':').nth(3).map(str::to_string);
    let mut d = Draft::new("cloudwatch", alert_state, at);
    d.key(Some(arn.clone()));
    d.title = Some(title(
        &typed.alarm_name,
        &typed.new_state_reason,
        alert_state,
    ));
    d.service = service_from(None, &dimensions);
    d.origin.component = typed.trigger.metric_name.clone();
    d.origin.group = Some(typed.aws_account_id.clone()).filter(|a| !a.is_empty());
    d.origin.host = dimensions
        .iter()
        .find(|(k, _)| k == "InstanceId")
        .map(|(_, v)| v.clone());
    d.link("source", console_link(region.as_deref(), &typed.alarm_name));
    d.field("alarm_arn", Value::String(arn))
        .field("alert_source", Value::String(SOURCE.into()))
        .field("state_value", Value::String(typed.new_state_value.clone()))
        .field(
            "NewStateReason",
            Value::String(typed.new_state_reason.clone()),
        )
        .field(
            "AlarmDescription",
            Value::String(typed.alarm_description.clone()),
        )
        .field("raw", raw);
    if let Some(ns) = &typed.trigger.namespace {
        d.field("metric_namespace", Value::String(ns.clone()));
    }
    d.finish("Message.AlarmName").map(Some)
}

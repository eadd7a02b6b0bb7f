//! What monitoring tools send, read into IRAS alerts: one module per source, each turning one
//! delivery into zero or more [`Alert`]s with the source's key, state (firing, resolved,
//! acknowledged, no data), severity (through core's documented table), service and links.
//!
//! Pure: no HTTP client, no SDK. The one thing that needs the network, fetching an SNS signing
//! certificate and confirming a subscription, goes through [`sns::SnsTransport`], which the
//! caller provides (tests use a locally generated key and certificate).

pub mod alertmanager;
pub mod cloudwatch;
mod common;
pub mod datadog;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod opsgenie;
pub mod pagerduty;
pub mod sentry;
pub mod sns;

use iras_core::config::EnvVars;
use iras_core::{Alert, AlertError, Timestamp};
use serde_json::Value;

pub use common::parse_time;

/// The senders IRAS reads natively, each with its own route (`/webhook/<route>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Alertmanager,
    Grafana,
    Datadog,
    PagerDuty,
    Opsgenie,
    Sentry,
    Sns,
    /// EventBridge "CloudWatch Alarm State Change" events.
    CloudWatch,
    /// Anything else with `title` and `timestamp` (IRAS's own flat shape).
    Generic,
}

impl Source {
    pub const ALL: [Source; 9] = [
        Source::Alertmanager,
        Source::Grafana,
        Source::Datadog,
        Source::PagerDuty,
        Source::Opsgenie,
        Source::Sentry,
        Source::Sns,
        Source::CloudWatch,
        Source::Generic,
    ];

    /// The route segment and the name in `Alert::origin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::Datadog => "datadog",
            Source::PagerDuty => "pagerduty",
            Source::Opsgenie => "opsgenie",
            Source::Sentry => "sentry",
            Source::Sns => "sns",
            Source::CloudWatch => "cloudwatch",
            Source::Generic => "generic",
        }
    }

    /// The source a `/webhook/<route>` serves; `alert` is the auto-detecting one (`None`).
    pub fn from_route(route: &str) -> Option<Option<Source>> {
        if route == "alert" {
            return Some(None);
        }
        Source::ALL
            .into_iter()
            .find(|s| s.as_str() == route && *s != Source::Generic)
            .map(Some)
    }

    /// The name of its own secret: `WEBHOOK_SECRET_ALERTMANAGER`, ...
    pub fn secret_var(self) -> String {
        format!("WEBHOOK_SECRET_{}", self.as_str().to_ascii_uppercase())
    }
}

/// What the parsers may be told by the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeConfig {
    /// `ALERT_SERVICE_LABELS`: the labels that name the affected service, first match wins.
    pub service_labels: Vec<String>,
}

/// Where Alertmanager and Grafana alerts usually say which service they are about.
pub const DEFAULT_SERVICE_LABELS: [&str; 4] = ["service", "app", "job", "container"];

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            service_labels: DEFAULT_SERVICE_LABELS.map(String::from).to_vec(),
        }
    }
}

impl IntakeConfig {
    pub fn from_vars(vars: &std::collections::HashMap<String, String>) -> IntakeConfig {
        let labels = EnvVars(vars).list("ALERT_SERVICE_LABELS");
        if labels.is_empty() {
            IntakeConfig::default()
        } else {
            IntakeConfig {
                service_labels: labels,
            }
        }
    }
}

/// A delivery IRAS cannot read: `field` names where (`alerts[1].startsAt`), so a sender can fix
/// it. The webhook answers 422.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}` must be {expected}")]
pub struct IntakeError {
    pub field: String,
    pub expected: String,
}

impl IntakeError {
    pub fn new(field: impl Into<String>, expected: impl Into<String>) -> Self {
        IntakeError {
            field: field.into(),
            expected: expected.into(),
        }
    }
}

impl From<AlertError> for IntakeError {
    fn from(e: AlertError) -> Self {
        match e {
            AlertError::Missing(f) => IntakeError::new(f, "present"),
            AlertError::Invalid { field, expected } => IntakeError::new(field, expected),
            AlertError::NotAnObject => IntakeError::new("body", "a JSON object"),
            AlertError::TooDeep { depth, max } => IntakeError::new(
                "body",
                format!("nested at most {max} levels deep (it nests {depth})"),
            ),
        }
    }
}

/// Which source sent `body`, from the shape each documents.
pub fn detect(body: &Value) -> Source {
    let has = |k: &str| body.get(k).is_some();
    let text = |k: &str| body.get(k).and_then(Value::as_str);
    if body.get("Type").and_then(Value::as_str).is_some() && has("TopicArn") {
        return Source::Sns;
    }
    if text("detail-type") == Some(cloudwatch::ALARM_STATE_CHANGE) {
        return Source::CloudWatch;
    }
    if let Some(alerts) = body.get("alerts").and_then(Value::as_array) {
        let grafana_only = [
            "silenceURL",
            "values",
            "dashboardURL",
            "panelURL",
            "valueString",
        ];
        let grafana = has("orgId")
            || alerts
                .iter()
                .any(|a| grafana_only.iter().any(|k| a.get(*k).is_some()));
        if grafana {
            return Source::Grafana;
        }
        if has("groupKey") || has("receiver") {
            return Source::Alertmanager;
        }
    }
    if body
        .get("event")
        .and_then(|e| e.get("event_type"))
        .and_then(Value::as_str)
        .is_some()
    {
        return Source::PagerDuty;
    }
    if has("event_action") && (has("routing_key") || has("dedup_key") || has("payload")) {
        return Source::PagerDuty;
    }
    if text("action").is_some()
        && body
            .get("alert")
            .is_some_and(|a| a.get("alertId").is_some() || a.get("alias").is_some())
    {
        return Source::Opsgenie;
    }
    if body
        .get("data")
        .and_then(|d| d.get("event"))
        .and_then(|e| e.get("issue_id"))
        .is_some()
    {
        return Source::Sentry;
    }
    if has("alert_transition") || (has("alert_id") && has("event_type")) {
        return Source::Datadog;
    }
    Source::Generic
}

/// One delivery from `source` (never [`Source::Sns`], whose envelope must be verified first:
/// see [`sns`]) into its alerts. `now` stands in for a time the source did not send.
pub fn parse(
    source: Source,
    body: Value,
    now: Timestamp,
    config: &IntakeConfig,
) -> Result<Vec<Alert>, IntakeError> {
    match source {
        Source::Alertmanager => alertmanager::parse(&body, now, config, Source::Alertmanager),
        Source::Grafana => alertmanager::parse(&body, now, config, Source::Grafana),
        Source::Datadog => datadog::parse(&body, now),
        Source::PagerDuty => pagerduty::parse(&body, now),
        Source::Opsgenie => opsgenie::parse(&body, now),
        Source::Sentry => sentry::parse(&body, now),
        Source::CloudWatch => cloudwatch::from_eventbridge(&body).map(|a| vec![a]),
        Source::Sns => Err(IntakeError::new(
            "Type",
            "checked by the SNS route, which verifies the signature first",
        )),
        Source::Generic => Ok(vec![Alert::from_json(body)?]),
    }
}

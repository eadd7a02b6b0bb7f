//! The vendors' documented payloads this crate is tested against (`tests/fixtures`, each with
//! its source URL there), for the fuzz targets and the alert-storm bench of other crates: the
//! files stay owned here, and nothing outside reaches into this crate's folders.

/// `(path under tests/fixtures, the payload as published)`.
pub const VENDOR_PAYLOADS: [(&str, &str); 19] = [
    (
        "alertmanager/v4-probe-failure.json",
        include_str!("../tests/fixtures/alertmanager/v4-probe-failure.json"),
    ),
    (
        "cloudwatch/eventbridge-metric-math-alarm.json",
        include_str!("../tests/fixtures/cloudwatch/eventbridge-metric-math-alarm.json"),
    ),
    (
        "cloudwatch/eventbridge-single-metric-alarm.json",
        include_str!("../tests/fixtures/cloudwatch/eventbridge-single-metric-alarm.json"),
    ),
    (
        "datadog/payload-template.json",
        include_str!("../tests/fixtures/datadog/payload-template.json"),
    ),
    (
        "grafana/webhook.json",
        include_str!("../tests/fixtures/grafana/webhook.json"),
    ),
    (
        "opsgenie/acknowledge.json",
        include_str!("../tests/fixtures/opsgenie/acknowledge.json"),
    ),
    (
        "opsgenie/callback-create.json",
        include_str!("../tests/fixtures/opsgenie/callback-create.json"),
    ),
    (
        "opsgenie/create.json",
        include_str!("../tests/fixtures/opsgenie/create.json"),
    ),
    (
        "pagerduty/events-v2-acknowledge.json",
        include_str!("../tests/fixtures/pagerduty/events-v2-acknowledge.json"),
    ),
    (
        "pagerduty/events-v2-resolve.json",
        include_str!("../tests/fixtures/pagerduty/events-v2-resolve.json"),
    ),
    (
        "pagerduty/events-v2-trigger.json",
        include_str!("../tests/fixtures/pagerduty/events-v2-trigger.json"),
    ),
    (
        "pagerduty/webhook-v3-incident-priority-updated.json",
        include_str!("../tests/fixtures/pagerduty/webhook-v3-incident-priority-updated.json"),
    ),
    (
        "sentry/issue-alert.json",
        include_str!("../tests/fixtures/sentry/issue-alert.json"),
    ),
    (
        "sns/lambda-event-cloudwatch-alarm.json",
        include_str!("../tests/fixtures/sns/lambda-event-cloudwatch-alarm.json"),
    ),
    (
        "sns/notification.json",
        include_str!("../tests/fixtures/sns/notification.json"),
    ),
    (
        "sns/signed-v1-notification.json",
        include_str!("../tests/fixtures/sns/signed-v1-notification.json"),
    ),
    (
        "sns/signed-v1-subscription-confirmation.json",
        include_str!("../tests/fixtures/sns/signed-v1-subscription-confirmation.json"),
    ),
    (
        "sns/subscription-confirmation.json",
        include_str!("../tests/fixtures/sns/subscription-confirmation.json"),
    ),
    (
        "sns/unsubscribe-confirmation.json",
        include_str!("../tests/fixtures/sns/unsubscribe-confirmation.json"),
    ),
];

/// The payload at `rel` (as in [`VENDOR_PAYLOADS`]).
pub fn vendor_payload(rel: &str) -> Option<&'static str> {
    VENDOR_PAYLOADS
        .iter()
        .find(|(path, _)| *path == rel)
        .map(|(_, json)| *json)
}

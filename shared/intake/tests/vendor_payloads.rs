//! Every vendor's documented payload (tests/fixtures, sources in its README) read into the
//! alert an on-call engineer needs: title, service, severity, the source's key, state, links.

use chrono::{TimeZone, Utc};
use iras_core::{Alert, AlertState, Severity, Timestamp};
use iras_intake::{detect, parse, IntakeConfig, Source};
use serde_json::{json, Value};

fn fixture(rel: &str) -> Value {
    let path = format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 2, 3, 4, 40).unwrap()
}

/// Parses as the auto-detecting route does, checking the source is recognised.
fn read(rel: &str, source: Source) -> Vec<Alert> {
    let body = fixture(rel);
    assert_eq!(detect(&body), source, "{rel} is detected as {source:?}");
    parse(source, body, now(), &IntakeConfig::default()).unwrap()
}

fn origin(a: &Alert) -> &iras_core::AlertOrigin {
    a.origin
        .as_ref()
        .expect("parsed alerts say where they come from")
}

fn link(a: &Alert, kind: &str) -> Option<String> {
    a.links()
        .iter()
        .find(|l| l.kind == kind)
        .map(|l| l.href.clone())
}

#[test]
fn alertmanager_v4_reads_labels_annotations_and_links_per_alert() {
    let alerts = read("alertmanager/v4-probe-failure.json", Source::Alertmanager);
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(
        a.title,
        "BlackBox Probe Failure: https://server.example.org"
    );
    assert_eq!(a.fingerprint(), "alertmanager:1a30ba71cca2921f");
    assert_eq!(a.service.as_deref(), Some("http_checks"), "the `job` label");
    assert_eq!(a.state(), AlertState::Firing);
    assert_eq!(origin(a).source_severity.as_deref(), Some("critical"));
    assert_eq!(origin(a).severity, Some(Severity::P1));
    assert_eq!(
        origin(a).host.as_deref(),
        Some("https://server.example.org")
    );
    assert_eq!(
        a.timestamp,
        Utc.with_ymd_and_hms(2023, 2, 6, 13, 8, 45).unwrap() + chrono::Duration::milliseconds(828)
    );
    assert_eq!(
        link(a, "generator").as_deref(),
        Some("http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0&g0.tab=1")
    );
    assert_eq!(
        link(a, "source").as_deref(),
        Some("http://prometheus.example.org:9093")
    );
    // The triage and the plan read these as they always did.
    assert_eq!(a.text("severity").as_deref(), Some("critical"));
    assert_eq!(
        a.text("description").as_deref(),
        Some("Instance https://server.example.org has been down for over 5m. Job: http_checks")
    );
}

#[test]
fn an_alertmanager_group_of_two_alerts_is_two_alerts_each_with_its_own_labels() {
    let mut body = fixture("alertmanager/v4-probe-failure.json");
    let mut second = body["alerts"][0].clone();
    second["fingerprint"] = json!("2b40cb82ddb3a3e0");
    second["labels"]["service"] = json!("checkout");
    second["labels"]["namespace"] = json!("shop");
    second["annotations"]["summary"] = json!("checkout is down");
    body["alerts"].as_array_mut().unwrap().push(second);
    let alerts = parse(Source::Alertmanager, body, now(), &IntakeConfig::default()).unwrap();
    assert_eq!(alerts.len(), 2);
    assert_ne!(alerts[0].fingerprint(), alerts[1].fingerprint());
    assert_eq!(
        alerts[1].service.as_deref(),
        Some("checkout"),
        "`service` before `job`"
    );
    assert_eq!(alerts[1].text("namespace").as_deref(), Some("shop"));
    assert_eq!(origin(&alerts[1]).group.as_deref(), Some("shop"));
}

#[test]
fn a_resolved_alertmanager_alert_is_resolved_at_its_end() {
    let mut body = fixture("alertmanager/v4-probe-failure.json");
    body["status"] = json!("resolved");
    body["alerts"][0]["status"] = json!("resolved");
    body["alerts"][0]["endsAt"] = json!("2023-02-06T13:20:00Z");
    let a = &parse(Source::Alertmanager, body, now(), &IntakeConfig::default()).unwrap()[0];
    assert_eq!(a.state(), AlertState::Resolved);
    assert_eq!(
        a.fingerprint(),
        "alertmanager:1a30ba71cca2921f",
        "same key as when firing"
    );
    assert_eq!(
        a.timestamp,
        Utc.with_ymd_and_hms(2023, 2, 6, 13, 20, 0).unwrap()
    );
}

#[test]
fn an_old_alertmanager_without_fingerprints_is_keyed_by_a_stable_hash_of_the_labels() {
    let mut body = fixture("alertmanager/v4-probe-failure.json");
    body["alerts"][0]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint");
    let a = parse(
        Source::Alertmanager,
        body.clone(),
        now(),
        &IntakeConfig::default(),
    )
    .unwrap();
    let b = parse(
        Source::Alertmanager,
        body.clone(),
        now(),
        &IntakeConfig::default(),
    )
    .unwrap();
    assert_eq!(a[0].fingerprint(), b[0].fingerprint());
    assert!(a[0].fingerprint().starts_with("alertmanager:labels:"));
    body["alerts"][0]["labels"]["instance"] = json!("https://other.example.org");
    let c = parse(Source::Alertmanager, body, now(), &IntakeConfig::default()).unwrap();
    assert_ne!(a[0].fingerprint(), c[0].fingerprint());
}

#[test]
fn service_labels_are_configurable() {
    let config = IntakeConfig {
        service_labels: vec!["monitor".into()],
    };
    let a = parse(
        Source::Alertmanager,
        fixture("alertmanager/v4-probe-failure.json"),
        now(),
        &config,
    )
    .unwrap();
    assert_eq!(a[0].service.as_deref(), Some("master"));
}

#[test]
fn a_bad_alertmanager_time_is_refused_naming_the_field() {
    let mut body = fixture("alertmanager/v4-probe-failure.json");
    body["alerts"][0]["startsAt"] = json!("yesterday");
    let e = parse(Source::Alertmanager, body, now(), &IntakeConfig::default()).unwrap_err();
    assert_eq!(e.field, "alerts[0].startsAt");
}

#[test]
fn grafana_rules_under_the_documented_group_key_stay_two_alerts() {
    let body = fixture("grafana/webhook.json");
    assert_eq!(body["groupKey"], json!("{}:{}"));
    let alerts = read("grafana/webhook.json", Source::Grafana);
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].fingerprint(), "grafana:c6eadffa33fcdf37");
    assert_eq!(alerts[1].fingerprint(), "grafana:bc97ff14869b13e3");
    let a = &alerts[0];
    assert_eq!(a.title, "This alert was triggered for zone us-1");
    assert_eq!(a.state(), AlertState::Firing);
    assert_eq!(a.fields["values"]["B"], json!(44.23943737541908));
    assert_eq!(
        link(a, "runbook").as_deref(),
        Some("https://myrunbook.com/runbook/1234")
    );
    assert!(link(a, "silence")
        .unwrap()
        .starts_with("https://play.grafana.org/alerting/silence/"));
    assert_eq!(
        link(a, "generator").as_deref(),
        Some("https://play.grafana.org/alerting/1afz29v7z/edit")
    );
    assert_eq!(
        link(a, "dashboard"),
        None,
        "an empty dashboardURL is no link"
    );
    assert_eq!(a.service, None, "no label names a service");
}

/// The documented template, filled with the documented example values, as Datadog sends it.
fn datadog(transition: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/datadog/payload-template.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let filled = [
        ("$EVENT_MSG", "@webhook-iras Sending to the webhook"),
        ("$LAST_UPDATED", "2014-07-29T19:37:52.000Z"),
        ("$EVENT_TYPE", "metric_alert_monitor"),
        ("$EVENT_TITLE", "[Triggered] [Memory Alert]"),
        ("$DATE", "1406662672000"),
        ("$ORG_ID", "123456"),
        ("$ORG_NAME", "Acme"),
        ("$ID", "1234567890"),
        ("$ALERT_ID", "1234"),
        ("$ALERT_METRIC", "system.load.1"),
        ("$ALERT_PRIORITY", "P1"),
        ("$ALERT_TRANSITION", transition),
        (
            "$ALERT_STATUS",
            "system.load.1 over host:my-host was > 0 at least once during the last 1m",
        ),
        (
            "$ALERT_TITLE",
            "[Triggered on {host:ip-012345}] Host is Down",
        ),
        ("$ALERT_TYPE", "error"),
        ("$HOSTNAME", "my-host"),
        ("$PRIORITY", "normal"),
        ("$TAGS", "env:prod,service:checkout,role:computing-node"),
        (
            "$ALERT_SCOPE",
            "availability-zone:us-east-1a, role:computing-node",
        ),
    ];
    let mut text = text;
    // Longest first, so `$ALERT_ID` never eats into a longer variable's name.
    let mut filled = filled.to_vec();
    filled.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (k, v) in filled {
        text = text.replace(k, v);
    }
    serde_json::from_str(&text).unwrap()
}

#[test]
fn datadog_reads_the_documented_variables() {
    let body = datadog("Triggered");
    assert_eq!(detect(&body), Source::Datadog);
    let a = &parse(Source::Datadog, body, now(), &IntakeConfig::default()).unwrap()[0];
    assert_eq!(a.title, "[Triggered on {host:ip-012345}] Host is Down");
    assert_eq!(
        a.fingerprint(),
        "datadog:1234/availability-zone:us-east-1a, role:computing-node"
    );
    assert_eq!(a.state(), AlertState::Firing);
    assert_eq!(a.service.as_deref(), Some("checkout"), "from $TAGS");
    assert_eq!(origin(a).severity, Some(Severity::P0), "$ALERT_PRIORITY P1");
    assert_eq!(origin(a).host.as_deref(), Some("my-host"));
    assert_eq!(
        a.timestamp,
        Utc.timestamp_millis_opt(1406662672000).unwrap(),
        "$DATE epoch"
    );
    let recovered = datadog("Recovered");
    let r = &parse(Source::Datadog, recovered, now(), &IntakeConfig::default()).unwrap()[0];
    assert_eq!(r.state(), AlertState::Resolved);
    assert_eq!(r.fingerprint(), a.fingerprint());
    let no_data = datadog("No Data");
    let n = &parse(Source::Datadog, no_data, now(), &IntakeConfig::default()).unwrap()[0];
    assert_eq!(n.state(), AlertState::NoData);
}

#[test]
fn datadog_variables_left_unfilled_count_as_absent() {
    let body = fixture("datadog/payload-template.json");
    let e = parse(Source::Datadog, body, now(), &IntakeConfig::default()).unwrap_err();
    assert_eq!(e.field, "alert_title", "no title was filled in");
}

fn pagerduty_v3(event_type: &str) -> Value {
    let mut body = fixture("pagerduty/webhook-v3-incident-priority-updated.json");
    body["event"]["event_type"] = json!(event_type);
    body
}

#[test]
fn pagerduty_webhooks_v3_follow_the_incident_through_its_states() {
    let a = &read(
        "pagerduty/webhook-v3-incident-priority-updated.json",
        Source::PagerDuty,
    )[0];
    assert_eq!(a.title, "A little bump in the road");
    assert_eq!(
        a.fingerprint(),
        "pagerduty:d3640fbd41094207a1c11e58e46b1662"
    );
    assert_eq!(
        a.service.as_deref(),
        Some("API Service"),
        "the service object's name"
    );
    assert_eq!(origin(a).source_severity.as_deref(), Some("P1"));
    assert_eq!(origin(a).severity, Some(Severity::P0));
    assert_eq!(
        link(a, "source").as_deref(),
        Some("https://acme.pagerduty.com/incidents/PGR0VU2")
    );
    for (event_type, state) in [
        ("incident.triggered", AlertState::Firing),
        ("incident.acknowledged", AlertState::Acknowledged),
        ("incident.resolved", AlertState::Resolved),
    ] {
        let alerts = parse(
            Source::PagerDuty,
            pagerduty_v3(event_type),
            now(),
            &IntakeConfig::default(),
        )
        .unwrap();
        assert_eq!(alerts[0].state(), state, "{event_type}");
        assert_eq!(alerts[0].fingerprint(), a.fingerprint());
    }
    let mut note = pagerduty_v3("incident.annotated");
    note["event"]["data"] = json!({"type": "incident_note", "content": "hi"});
    let none = parse(Source::PagerDuty, note, now(), &IntakeConfig::default()).unwrap();
    assert!(
        none.is_empty(),
        "a note says nothing about the alert's state"
    );
}

#[test]
fn pagerduty_events_v2_trigger_acknowledge_and_resolve_share_the_dedup_key() {
    let t = &read("pagerduty/events-v2-trigger.json", Source::PagerDuty)[0];
    assert_eq!(t.title, "Example alert on host1.example.com");
    assert_eq!(t.fingerprint(), "pagerduty:samplekeyhere");
    assert_eq!(t.state(), AlertState::Firing);
    assert_eq!(origin(t).severity, Some(Severity::P3), "info");
    assert_eq!(t.service.as_deref(), Some("postgres"), "the component");
    assert_eq!(origin(t).group.as_deref(), Some("prod-datapipe"));
    assert_eq!(
        origin(t).host.as_deref(),
        Some(
            "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003"
        )
    );
    assert_eq!(link(t, "source").as_deref(), Some("https://example.com/"));
    assert!(
        t.fields["raw"].get("routing_key").is_none(),
        "the routing key is a credential and is not kept"
    );
    let ack = &read("pagerduty/events-v2-acknowledge.json", Source::PagerDuty)[0];
    assert_eq!(ack.state(), AlertState::Acknowledged);
    assert_eq!(ack.fingerprint(), "pagerduty:dedupkeyhere");
    let res = &read("pagerduty/events-v2-resolve.json", Source::PagerDuty)[0];
    assert_eq!(res.state(), AlertState::Resolved);
    assert_eq!(res.fingerprint(), ack.fingerprint());
}

#[test]
fn opsgenie_create_acknowledge_and_close_key_by_alias() {
    let c = &read("opsgenie/create.json", Source::Opsgenie)[0];
    assert_eq!(c.title, "test alert");
    assert_eq!(c.fingerprint(), "opsgenie:aliastest");
    assert_eq!(c.state(), AlertState::Firing);
    assert_eq!(
        c.timestamp,
        Utc.timestamp_millis_opt(1420452191104).unwrap()
    );
    let a = &read("opsgenie/acknowledge.json", Source::Opsgenie)[0];
    assert_eq!(a.state(), AlertState::Acknowledged);
    assert_eq!(a.fingerprint(), c.fingerprint());
    let mut close = fixture("opsgenie/callback-create.json");
    assert_eq!(
        read("opsgenie/callback-create.json", Source::Opsgenie)[0].fingerprint(),
        "opsgenie:webhooktest"
    );
    close["action"] = json!("Close");
    let closed = &parse(Source::Opsgenie, close, now(), &IntakeConfig::default()).unwrap()[0];
    assert_eq!(closed.state(), AlertState::Resolved);
    assert_eq!(closed.fingerprint(), "opsgenie:webhooktest");
    let mut note = fixture("opsgenie/create.json");
    note["action"] = json!("AddNote");
    assert!(
        parse(Source::Opsgenie, note, now(), &IntakeConfig::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_sentry_issue_alert_is_keyed_by_the_issue_with_its_level_and_project() {
    let a = &read("sentry/issue-alert.json", Source::Sentry)[0];
    assert_eq!(a.title, "ReferenceError: heck is not defined");
    assert_eq!(a.fingerprint(), "sentry:1117540176");
    assert_eq!(
        a.service.as_deref(),
        Some("front-end"),
        "the project's slug"
    );
    assert_eq!(origin(a).severity, Some(Severity::P2), "level error");
    assert_eq!(a.state(), AlertState::Firing);
    assert_eq!(
        link(a, "source").as_deref(),
        Some("https://sentry.io/organizations/test-org/issues/1117540176/events/e4874d664c3540c1a32eab185f12c5ab/")
    );
}

#[test]
fn eventbridge_alarm_changes_fire_resolve_and_key_by_the_alarm_arn() {
    let a = &read(
        "cloudwatch/eventbridge-single-metric-alarm.json",
        Source::CloudWatch,
    )[0];
    assert!(
        a.title.starts_with("ServerCpuTooHigh: Threshold Crossed"),
        "{}",
        a.title
    );
    assert_eq!(
        a.fingerprint(),
        "cloudwatch:arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh"
    );
    assert_eq!(a.state(), AlertState::Firing);
    assert_eq!(origin(a).host.as_deref(), Some("i-12345678901234567"));
    assert_eq!(origin(a).component.as_deref(), Some("CPUUtilization"));
    assert!(link(a, "source")
        .unwrap()
        .contains("alarm/ServerCpuTooHigh"));
    let mut ok = fixture("cloudwatch/eventbridge-single-metric-alarm.json");
    let detail = ok["detail"].as_object_mut().unwrap();
    let (state, previous) = (detail["state"].clone(), detail["previousState"].clone());
    detail.insert("state".into(), previous);
    detail.insert("previousState".into(), state);
    let r = &parse(Source::CloudWatch, ok, now(), &IntakeConfig::default()).unwrap()[0];
    assert_eq!(r.state(), AlertState::Resolved);
    assert_eq!(r.fingerprint(), a.fingerprint());
    let math = &read(
        "cloudwatch/eventbridge-metric-math-alarm.json",
        Source::CloudWatch,
    )[0];
    assert_eq!(
        math.state(),
        AlertState::Firing,
        "INSUFFICIENT_DATA → ALARM"
    );
}

#[test]
fn a_flat_iras_alert_is_still_generic_and_keeps_its_key() {
    let body = json!({"title": "Disk full", "timestamp": "2026-03-02T03:04:40Z",
                      "service": "ledger-db", "fingerprint": "disk-ledger"});
    let a = &read_value(body, Source::Generic)[0];
    assert_eq!(a.fingerprint(), "disk-ledger");
    let resolved = json!({"title": "Disk full", "timestamp": "2026-03-02T03:04:40Z",
                          "fingerprint": "disk-ledger", "status": "resolved"});
    assert_eq!(
        read_value(resolved, Source::Generic)[0].state(),
        AlertState::Resolved
    );
}

#[test]
fn a_generic_sender_cannot_forge_where_an_alert_comes_from() {
    let body = json!({"title": "x", "timestamp": "2026-03-02T03:04:40Z",
                      "_iras": {"source": "alertmanager", "key": "other", "state": "resolved",
                                "severity": "P0"}});
    let a = &read_value(body, Source::Generic)[0];
    assert_eq!(origin(a).source, "generic");
    assert_eq!(a.state(), AlertState::Firing);
    assert_eq!(origin(a).severity, None);
}

fn read_value(body: Value, source: Source) -> Vec<Alert> {
    assert_eq!(detect(&body), source);
    parse(source, body, now(), &IntakeConfig::default()).unwrap()
}

#[test]
fn every_parsed_alert_is_stored_and_read_back_unchanged() {
    let mut all = Vec::new();
    for (rel, source) in [
        ("alertmanager/v4-probe-failure.json", Source::Alertmanager),
        ("grafana/webhook.json", Source::Grafana),
        (
            "pagerduty/webhook-v3-incident-priority-updated.json",
            Source::PagerDuty,
        ),
        ("pagerduty/events-v2-trigger.json", Source::PagerDuty),
        ("opsgenie/create.json", Source::Opsgenie),
        ("sentry/issue-alert.json", Source::Sentry),
        (
            "cloudwatch/eventbridge-single-metric-alarm.json",
            Source::CloudWatch,
        ),
    ] {
        all.extend(read(rel, source));
    }
    all.extend(
        parse(
            Source::Datadog,
            datadog("Triggered"),
            now(),
            &IntakeConfig::default(),
        )
        .unwrap(),
    );
    for a in all {
        let text = serde_json::to_string(&a).unwrap();
        let back: Alert = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(back, a);
    }
}

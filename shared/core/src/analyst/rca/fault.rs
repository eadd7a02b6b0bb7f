//! The kind of fault, from the words around the root-cause service.

use super::features::Features;
use super::onset::current_start;
use super::Analysis;
use crate::analyst::logs::ServiceLogs;
use chrono::Duration;

use crate::analyst::metrics::{self, Deviation, MetricKind};
use crate::analyst::text::is_flag_deployment;
use crate::domain::Timestamp;

/// Guesses the kind of fault from the words around the root-cause service.
pub(super) fn fault_of(
    svc: &str,
    f: &Features,
    a: &Analysis,
    graph_leaf: bool,
    has_callers: bool,
) -> String {
    let mut text = String::new();
    for (_, d) in &f.devs {
        text.push_str(&metrics::tokens(&d.anomaly.metric).join("_"));
        text.push(' ');
    }
    if let Some(s) = a.findings.services.get(svc) {
        for t in &s.new_templates {
            text.push_str(t);
            text.push(' ');
        }
    }
    if let Some(b) = a.findings.blame.get(svc) {
        for t in &b.templates {
            text.push_str(t);
            text.push(' ');
        }
    }
    let name = svc.to_ascii_lowercase();
    text.push_str(&name);
    let has = |ws: &[&str]| ws.iter().any(|w| text.contains(w));
    let recent_deploy = f.deploy >= 0.5;
    let flag = f.deployment.as_ref().is_some_and(is_flag_deployment);
    let traffic_surge = f.devs.iter().any(|(_, d)| {
        metrics::metric_kind(&d.anomaly.metric) == MetricKind::Traffic
            && d.anomaly.current > d.anomaly.baseline * 2.0
    });

    if has(&[
        "certificate",
        "x509",
        "tls",
        "pkix",
        "cert_expiry",
        "expired",
    ]) {
        return "certificate_expiry".into();
    }
    if has(&[
        "no space left",
        "disk_used",
        "filesystem",
        "disk full",
        "volume full",
        "inode",
    ]) {
        return "disk_full".into();
    }
    if recent_deploy && flag {
        return "config_change".into();
    }
    if has(&[
        "dns",
        "servfail",
        "nxdomain",
        "name resolution",
        "could not resolve",
        "no such host",
        "name or service not known",
    ]) {
        return "dns_resolution_failure".into();
    }
    if has(&["throttl", "provisionedthroughput"]) {
        if has(&[
            "dynamodb",
            "provisionedthroughput",
            "capacity_units",
            "table",
        ]) {
            return "dynamodb_throttling".into();
        }
        return "throttling".into();
    }
    if f.contention > 0.0 {
        return "noisy_neighbour".into();
    }
    if has(&["evict", "hit_ratio", "maxmemory", "cache miss"]) {
        return "cache_eviction".into();
    }
    if has(&["oom", "out of memory", "memory cgroup"])
        || (has(&["memory", "heap"]) && has(&["restart"]))
    {
        return "memory_leak".into();
    }
    if has(&[
        "hikari",
        "connection is not available",
        "connections_pending",
        "pool exhausted",
        "too many connections",
        "connection pool",
    ]) {
        return "connection_pool_exhaustion".into();
    }
    if recent_deploy {
        return "bad_deploy".into();
    }
    if traffic_surge && has(&["retry", "retries", "retrying", "load shedding"]) {
        return "retry_storm".into();
    }
    if graph_leaf
        && has_callers
        && (name.ends_with("-api")
            || name.contains("external")
            || has(&[
                "statuspage",
                "status page",
                "timed out",
                "timeout",
                "readtimeout",
            ]))
    {
        return "dependency_outage".into();
    }
    if let Some(kind) = kind_of_own_signal(f, a.findings.services.get(svc), a.onset) {
        return kind.into();
    }
    if has(&[
        "cpu",
        "saturat",
        "threads_busy",
        "goroutines",
        "load shedding",
    ]) {
        return "resource_exhaustion".into();
    }
    if has(&["memory", "heap"]) {
        return "memory_leak".into();
    }
    if has(&["up ", "panic", "crash", "fatal"]) {
        return "crash".into();
    }
    if f.deployment.is_some() && flag {
        return "config_change".into();
    }
    "unknown".into()
}

/// When no word names the fault, the kind of the service's own signals that began with the
/// incident does: its CPU use rising among them (the service is busy, not waiting), else
/// requests failing in it (its own code throws), else only time added (a slow path or a slow
/// network). A deviation that began minutes before the incident's onset is an older story in
/// the same window (a previous fault on the same pod), so it does not name this one; a
/// deviation that is only a symptom of something else was discounted before the ranking, so
/// the first candidate's own signals are read as what happened to it.
fn kind_of_own_signal(
    f: &Features,
    logs: Option<&ServiceLogs>,
    onset: Timestamp,
) -> Option<&'static str> {
    // The excursion still running at the end of the window, and begun about when the
    // incident did: a deviation over by then, or begun minutes earlier, is an older story.
    let began_with_it = |d: &&Deviation| {
        current_start(d).is_some_and(|s| s >= onset - Duration::minutes(OLDER_STORY_MINUTES))
    };
    let current: Vec<&Deviation> = f
        .devs
        .iter()
        .map(|(_, d)| d)
        .filter(began_with_it)
        .collect();
    kind_of(&current, logs).or_else(|| {
        // With nothing telling that began with the incident, the strongest signals say it.
        let strongest: Vec<&Deviation> = f.devs.iter().take(2).map(|(_, d)| d).collect();
        kind_of(&strongest, logs)
    })
}

fn kind_of(read: &[&Deviation], logs: Option<&ServiceLogs>) -> Option<&'static str> {
    let cpu_rising = read.iter().any(|d| {
        let t = metrics::tokens(&d.anomaly.metric);
        t.iter().any(|w| w == "cpu") && d.anomaly.current > d.anomaly.baseline
    });
    if cpu_rising {
        return Some("cpu_saturation");
    }
    let failing = read
        .iter()
        .any(|d| metrics::symptom_class(&d.anomaly.metric) == Some(metrics::SymptomClass::Failure))
        || logs.is_some_and(|l| !l.new_templates.is_empty() && l.errors_after > 0);
    if failing {
        return Some("code_error");
    }
    let slower = read.iter().any(|d| {
        metrics::symptom_class(&d.anomaly.metric) == Some(metrics::SymptomClass::Slowness)
    });
    slower.then_some("network_delay")
}

/// A deviation that began this many minutes or more before the incident's onset belongs to
/// an earlier fault.
const OLDER_STORY_MINUTES: i64 = 3;

/// Every fault type the offline analyst names, with how a sentence says it. A plan acts on
/// the type (roll back, scale out, restart, fail over), so the types are kinds of fix as much as
/// kinds of failure.
pub const FAULT_TYPES: &[(&str, &str)] = &[
    ("bad_deploy", "a faulty deployment"),
    ("config_change", "a configuration / feature-flag change"),
    ("code_error", "errors thrown by the service's own code"),
    ("cpu_saturation", "CPU saturation"),
    ("memory_leak", "a memory leak (OOM kills and restarts)"),
    (
        "network_delay",
        "added latency (network delay or a slow path)",
    ),
    ("dependency_outage", "a dependency outage"),
    ("certificate_expiry", "an expired TLS certificate"),
    ("disk_full", "a full disk"),
    ("dns_resolution_failure", "DNS resolution failures"),
    ("dynamodb_throttling", "DynamoDB write throttling"),
    ("throttling", "throttling"),
    (
        "noisy_neighbour",
        "a noisy neighbour starving shared resources",
    ),
    ("cache_eviction", "cache evictions (memory limit reached)"),
    ("connection_pool_exhaustion", "connection pool exhaustion"),
    (
        "retry_storm",
        "a retry storm (overload from callers' retries)",
    ),
    ("resource_exhaustion", "resource exhaustion"),
    ("crash", "crashes"),
    ("unknown", "an unidentified fault"),
];

/// How a sentence names `fault`.
pub fn fault_phrase(fault: &str) -> &'static str {
    FAULT_TYPES
        .iter()
        .find(|(f, _)| *f == fault)
        .map_or("an unidentified fault", |(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MetricSeries;
    use chrono::DateTime;

    const ALERT: i64 = 1_700_000_000;

    /// A 30-minute window of 1-minute samples at `normal`, at `high` from `from` to `to`
    /// (minutes into the window, inclusive), with a quiet hour of baseline before it.
    fn series(name: &str, normal: f64, high: f64, from: i64, to: i64) -> Deviation {
        let start = ALERT - 30 * 60;
        let wobble = |i: i64| normal * (1.0 + 0.05 * ((i % 3) as f64 - 1.0));
        let s = MetricSeries {
            service: "emailservice".into(),
            name: name.into(),
            unit: String::new(),
            points: (0..=30)
                .map(|i| {
                    let v = if (from..=to).contains(&i) {
                        high
                    } else {
                        wobble(i)
                    };
                    (start + i * 60, Some(v))
                })
                .collect(),
            baseline: (0..60)
                .map(|i| (start - 95 * 60 + i * 60, Some(wobble(i))))
                .collect(),
        };
        let at = DateTime::from_timestamp(ALERT, 0).unwrap();
        metrics::deviation_with(&s, at, None).expect("a clear excursion is a deviation")
    }

    fn features(devs: Vec<Deviation>) -> Features {
        Features {
            // The older CPU excursion is the bigger one, so it comes first.
            devs: devs.into_iter().map(|d| (d.anomaly.score, d)).collect(),
            ..Features::default()
        }
    }

    fn onset() -> Timestamp {
        DateTime::from_timestamp(ALERT - 3 * 60, 0).unwrap()
    }

    #[test]
    fn a_cpu_excursion_over_before_the_incident_does_not_name_its_fault() {
        // A previous fault pinned the CPU from minute 8 to 13; the latency that the alert is
        // about began at minute 27, with the CPU back to normal.
        let f = features(vec![
            series("cpu_usage_rate", 0.5, 100.0, 8, 13),
            series("server_latency_p90", 0.005, 0.45, 27, 30),
        ]);
        assert_eq!(kind_of_own_signal(&f, None, onset()), Some("network_delay"));
    }

    #[test]
    fn cpu_rising_with_the_incident_names_it() {
        let f = features(vec![
            series("server_latency_p90", 0.005, 0.45, 27, 30),
            series("cpu_usage_rate", 0.5, 90.0, 28, 30),
        ]);
        assert_eq!(
            kind_of_own_signal(&f, None, onset()),
            Some("cpu_saturation")
        );
    }

    #[test]
    fn with_nothing_begun_with_the_incident_the_strongest_signals_still_speak() {
        // Everything began long before the onset: an older story is still the best reading.
        let f = features(vec![series("cpu_usage_rate", 0.5, 100.0, 8, 30)]);
        assert_eq!(
            kind_of_own_signal(&f, None, onset()),
            Some("cpu_saturation")
        );
    }
}

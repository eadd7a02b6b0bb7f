//! The kind of fault, from the words around the root-cause service.

use super::features::Features;
use super::Analysis;
use crate::analyst::logs::ServiceLogs;
use crate::analyst::metrics::{self, MetricKind};
use crate::analyst::text::is_flag_deployment;

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
    if let Some(kind) = kind_of_own_signal(f, a.findings.services.get(svc)) {
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

/// When no word names the fault, the kind of the service's own strongest signals does: its CPU
/// use rising among them (the service is busy, not waiting), else requests failing in it (its
/// own code throws), else only time added (a slow path or a slow network). A deviation that is
/// only a symptom of something else was discounted before the ranking, so the first
/// candidate's own signals are read as what happened to it.
fn kind_of_own_signal(f: &Features, logs: Option<&ServiceLogs>) -> Option<&'static str> {
    let strongest = || f.devs.iter().take(2).map(|(_, d)| d);
    let cpu_rising = strongest().any(|d| {
        let t = metrics::tokens(&d.anomaly.metric);
        t.iter().any(|w| w == "cpu") && d.anomaly.current > d.anomaly.baseline
    });
    if cpu_rising {
        return Some("cpu_saturation");
    }
    let failing = f.devs.iter().any(|(_, d)| {
        metrics::symptom_class(&d.anomaly.metric) == Some(metrics::SymptomClass::Failure)
    }) || logs.is_some_and(|l| !l.new_templates.is_empty() && l.errors_after > 0);
    if failing {
        return Some("code_error");
    }
    let slower = strongest().any(|d| {
        metrics::symptom_class(&d.anomaly.metric) == Some(metrics::SymptomClass::Slowness)
    });
    slower.then_some("network_delay")
}

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

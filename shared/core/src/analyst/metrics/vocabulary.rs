//! What a metric's name says: which way is bad, whether it is a symptom (travels to callers),
//! a cause (points at its own service) or traffic, and which family of symptom it belongs to.

use crate::domain::BadDirection;

/// What a metric says about the service that emits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Saturation, resource use, expiry, throttling, evictions, restarts, pools: these rarely
    /// propagate to callers, so they point at the service itself.
    Cause,
    /// Errors, latency, availability: propagate upstream to every caller.
    Symptom,
    /// Request volume: mostly driven by callers, so weak evidence against the service itself.
    Traffic,
    /// Unknown name: some weight, not much.
    Other,
}

/// Splits `ConsumedWriteCapacityUnits` / `5XXErrorRate` / `latency_p99` into lowercase tokens.
pub(crate) fn tokens(name: &str) -> Vec<String> {
    // Bytes, not chars: only ASCII letters and digits make tokens, and every byte of a
    // non-ASCII character separates them as the character itself would.
    let b = name.as_bytes();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in b.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_ascii_uppercase() && !cur.is_empty() {
            let prev = b[i - 1];
            let next_lower = b.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            // camelCase boundary, or the end of an acronym (`XXError` -> `xx`, `error`).
            if prev.is_ascii_lowercase() || (prev.is_ascii_uppercase() && next_lower) {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.push(c.to_ascii_lowercase() as char);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

pub(crate) fn has_any(toks: &[String], words: &[&str]) -> bool {
    toks.iter().any(|t| words.contains(&t.as_str()))
}

pub(crate) fn has_prefix(toks: &[String], prefixes: &[&str]) -> bool {
    toks.iter()
        .any(|t| prefixes.iter().any(|p| t.starts_with(p)))
}

const TIME_WORDS: &[&str] = &[
    "latency",
    "duration",
    "p50",
    "p75",
    "p90",
    "p95",
    "p99",
    "p999",
    "lag",
    "age",
    "wait",
    "waiting",
    "delay",
    "rt",
    "responsetime",
    "ttfb",
];
const DOWN_WORDS: &[&str] = &[
    "availability",
    "available",
    "avail",
    "success",
    "successful",
    "succeeded",
    "hit",
    "hits",
    "ready",
    "up",
    "healthy",
    "health",
    "free",
    "expiry",
    "expiration",
    "remaining",
    "ttl",
    "apdex",
    "uptime",
    "alive",
    "ok",
];
const UP_WORDS: &[&str] = &[
    "error",
    "errors",
    "err",
    "5xx",
    "4xx",
    "fault",
    "faults",
    "fail",
    "failed",
    "failure",
    "failures",
    "throttle",
    "throttled",
    "throttles",
    "throttling",
    "cpu",
    "memory",
    "mem",
    "heap",
    "restart",
    "restarts",
    "evict",
    "evicted",
    "evictions",
    "pending",
    "queue",
    "queued",
    "backlog",
    "timeout",
    "timeouts",
    "retry",
    "retries",
    "oom",
    "oomkilled",
    "used",
    "usage",
    "utilization",
    "utilisation",
    "util",
    "saturation",
    "pressure",
    "dropped",
    "drops",
    "rejected",
    "rejections",
    "servfail",
    "nxdomain",
    "miss",
    "misses",
    "killed",
    "crash",
    "crashes",
    "panic",
    "exception",
    "exceptions",
    "goroutines",
    "threads",
    "busy",
    "inflight",
    "concurrent",
    "concurrency",
    "idle",
    "blocked",
    "deadlocks",
    "swap",
    "iowait",
    "inodes",
    "gc",
    "conflicts",
    "locks",
    "slow",
    "retained",
    "unavailable",
    "unhealthy",
    "down",
    "stalls",
];
const TRAFFIC_WORDS: &[&str] = &[
    "request",
    "requests",
    "rate",
    "throughput",
    "count",
    "invocations",
    "qps",
    "tps",
    "rps",
    "ops",
    "commands",
    "transactions",
    "queries",
    "calls",
    "hits_total",
    "sum",
    "per",
];

/// Which way the metric goes when things are bad. Latency-like words win over success-like
/// ones (`SuccessfulRequestLatency` is a latency), and request volume is `Either`: a collapse
/// in traffic is as telling as a surge.
pub fn bad_direction(metric_name: &str, unit: &str) -> BadDirection {
    bad_direction_of(&tokens(metric_name), unit)
}

/// [`bad_direction`] from the name's [`tokens`], for a caller that reads them more than once.
pub(crate) fn bad_direction_of(toks: &[String], unit: &str) -> BadDirection {
    if has_any(toks, TIME_WORDS) {
        return BadDirection::Up;
    }
    // `error_rate` and `5XXErrorRate` are errors first; `request_rate` is traffic.
    if has_any(
        toks,
        &["error", "errors", "err", "5xx", "4xx", "fault", "faults"],
    ) {
        return BadDirection::Up;
    }
    if has_any(toks, DOWN_WORDS) && !has_any(toks, &["unavailable", "unhealthy"]) {
        return BadDirection::Down;
    }
    if has_any(toks, UP_WORDS) {
        return BadDirection::Up;
    }
    let unit = unit.trim().to_ascii_lowercase();
    if matches!(
        unit.as_str(),
        "s" | "ms" | "us" | "seconds" | "milliseconds"
    ) {
        return BadDirection::Up;
    }
    if unit == "bool" {
        return BadDirection::Down;
    }
    BadDirection::Either
}

/// The two families of symptoms an alert is usually about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymptomClass {
    /// Latency, durations, lag.
    Slowness,
    /// Errors, failures, lost availability or success.
    Failure,
}

/// The symptom family of a metric, if it is a symptom of either kind.
pub fn symptom_class(metric_name: &str) -> Option<SymptomClass> {
    let toks = tokens(metric_name);
    if has_any(
        &toks,
        &[
            "error",
            "errors",
            "err",
            "5xx",
            "4xx",
            "fault",
            "faults",
            "fail",
            "failed",
            "failure",
            "failures",
            "availability",
            "available",
            "success",
            "successful",
            "apdex",
            "unavailable",
        ],
    ) && !has_any(&toks, &["latency", "duration"])
    {
        return Some(SymptomClass::Failure);
    }
    if has_any(&toks, TIME_WORDS) {
        return Some(SymptomClass::Slowness);
    }
    None
}

/// How much a metric's deviation says about its own service (see [`MetricKind`]).
/// A measurement a service takes of the calls it makes (`client_latency_p99`,
/// `outbound_request_duration`): it describes how its callees (or the network to them) answer,
/// not how the service itself does.
pub fn is_client_side(metric_name: &str) -> bool {
    has_any(&tokens(metric_name), &["client", "outbound"])
}

pub fn metric_kind(metric_name: &str) -> MetricKind {
    metric_kind_of(&tokens(metric_name))
}

/// [`metric_kind`] from the name's [`tokens`].
pub(crate) fn metric_kind_of(toks: &[String]) -> MetricKind {
    // Errors, latency and availability propagate to callers: symptoms.
    let symptom_words = [
        "error",
        "errors",
        "err",
        "5xx",
        "4xx",
        "fault",
        "faults",
        "latency",
        "duration",
        "p50",
        "p75",
        "p90",
        "p95",
        "p99",
        "p999",
        "availability",
        "success",
        "successful",
        "apdex",
        "timeout",
        "timeouts",
        "retries",
        "retry",
        "responsetime",
        // Requests in flight follow from latency (Little's law): a slow callee fills them.
        "inflight",
        "concurrent",
        "concurrency",
    ];
    let cause_words = [
        "cpu",
        "memory",
        "mem",
        "heap",
        "restart",
        "restarts",
        "evict",
        "evicted",
        "evictions",
        "pending",
        "throttle",
        "throttled",
        "throttles",
        "throttling",
        "oom",
        "oomkilled",
        "disk",
        "filesystem",
        "inodes",
        "expiry",
        "expiration",
        "cert",
        "certificate",
        "tls",
        "pressure",
        "saturation",
        "utilization",
        "utilisation",
        "util",
        "goroutines",
        "threads",
        "busy",
        "servfail",
        "nxdomain",
        "swap",
        "iowait",
        "connections",
        "pool",
        "hikaricp",
        "gc",
        "replicas",
        "ready",
        "up",
        "hit",
        "miss",
        "misses",
        "lag",
        "backlog",
        "queue",
        "wal",
        "capacity",
        "slot",
        "iterator",
        "age",
        "used",
        "usage",
        "free",
        "avail",
        "maxmemory",
        "deadlocks",
        "locks",
    ];
    // Consumed capacity is throughput under another name.
    if has_any(toks, &["consumed"]) {
        return MetricKind::Traffic;
    }
    // Time spent waiting for a shared resource is what a victim of contention feels: a
    // symptom, like latency, not evidence that the service itself hogs the resource.
    if has_any(toks, &["pressure", "waiting", "steal", "throttled"])
        && has_any(toks, &["cpu", "io", "memory"])
    {
        return MetricKind::Symptom;
    }
    // Resource words win unless the name is plainly an error count (`connection_errors`).
    if has_any(toks, &cause_words) && !has_any(toks, &["error", "errors", "5xx"]) {
        return MetricKind::Cause;
    }
    // `error` inside a token too (`dberrors`, `errorcount`).
    if has_any(toks, &symptom_words) || toks.iter().any(|t| t.contains("error")) {
        return MetricKind::Symptom;
    }
    if has_any(toks, TRAFFIC_WORDS) || has_prefix(toks, &["request"]) {
        return MetricKind::Traffic;
    }
    MetricKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_follow_the_metric_meaning() {
        use BadDirection::*;
        for (name, unit, want) in [
            ("error_rate", "ratio", Up),
            ("5XXErrorRate", "", Up),
            ("latency_p99", "s", Up),
            ("SuccessfulRequestLatency", "ms", Up),
            ("WriteThrottleEvents", "", Up),
            ("container_restarts", "", Up),
            ("evicted_keys_per_second", "", Up),
            ("hikaricp_connections_pending", "", Up),
            ("event_loop_lag_p99", "s", Up),
            ("cpu_usage_cores", "", Up),
            ("availability_avg", "%", Down),
            ("login_success_ratio", "", Down),
            ("keyspace_hit_ratio", "", Down),
            ("ready_replicas", "", Down),
            ("up", "bool", Down),
            ("filesystem_avail_bytes", "", Down),
            ("tls_cert_expiry_seconds", "s", Down),
            ("request_rate", "req/s", Either),
            ("requests_sum", "", Either),
            ("throughput", "", Either),
        ] {
            assert_eq!(bad_direction(name, unit), want, "{name}");
        }
    }

    #[test]
    fn kinds_separate_causes_from_symptoms_and_traffic() {
        assert_eq!(metric_kind("cpu_usage_cores"), MetricKind::Cause);
        assert_eq!(metric_kind("WriteThrottleEvents"), MetricKind::Cause);
        assert_eq!(metric_kind("error_rate"), MetricKind::Symptom);
        assert_eq!(metric_kind("latency_p99"), MetricKind::Symptom);
        assert_eq!(metric_kind("request_rate"), MetricKind::Traffic);
        assert_eq!(metric_kind("Invocations"), MetricKind::Traffic);
    }

    #[test]
    fn symptom_classes_separate_slowness_from_failure() {
        assert_eq!(symptom_class("latency_p99"), Some(SymptomClass::Slowness));
        assert_eq!(symptom_class("Duration_p99"), Some(SymptomClass::Slowness));
        assert_eq!(
            symptom_class("availability_avg"),
            Some(SymptomClass::Failure)
        );
        assert_eq!(symptom_class("5XXErrorRate"), Some(SymptomClass::Failure));
        assert_eq!(symptom_class("cpu_usage_cores"), None);
        assert_eq!(symptom_class("requests_sum"), None);
    }
}

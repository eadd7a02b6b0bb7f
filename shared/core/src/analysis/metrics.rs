//! Metric deviations: which way a signal goes when things are bad, and how far a series has moved
//! from its normal behaviour, measured robustly so that one noisy sample or a broken baseline
//! does not decide the analysis.

use chrono::DateTime;

use crate::domain::{BadDirection, MetricAnomaly, MetricSeries, Timestamp};

/// Robust score from which a deviation counts as an anomaly. Scores are in units of the
/// baseline's spread (MAD/IQR scaled to a standard deviation), so 4 is well outside noise.
pub const SIGNIFICANT_SCORE: f64 = 4.0;

/// A point counts as outside the normal band from this score on (onset detection).
const BAND_SCORE: f64 = 3.5;

/// Scores are capped: beyond this, "how much more anomalous" carries no information and an
/// all-zero baseline would otherwise produce astronomically large numbers.
pub const MAX_SCORE: f64 = 1000.0;

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
    let chars: Vec<char> = name.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_ascii_uppercase() && !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            // camelCase boundary, or the end of an acronym (`XXError` -> `xx`, `error`).
            if prev.is_ascii_lowercase() || (prev.is_ascii_uppercase() && next_lower) {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn has_any(toks: &[String], words: &[&str]) -> bool {
    toks.iter().any(|t| words.contains(&t.as_str()))
}

fn has_prefix(toks: &[String], prefixes: &[&str]) -> bool {
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
    let toks = tokens(metric_name);
    if has_any(&toks, TIME_WORDS) {
        return BadDirection::Up;
    }
    // `error_rate` and `5XXErrorRate` are errors first; `request_rate` is traffic.
    if has_any(
        &toks,
        &["error", "errors", "err", "5xx", "4xx", "fault", "faults"],
    ) {
        return BadDirection::Up;
    }
    if has_any(&toks, DOWN_WORDS) && !has_any(&toks, &["unavailable", "unhealthy"]) {
        return BadDirection::Down;
    }
    if has_any(&toks, UP_WORDS) {
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

/// How much a metric's deviation says about its own service (see [`MetricKind`]).
pub fn metric_kind(metric_name: &str) -> MetricKind {
    let toks = tokens(metric_name);
    let joined = toks.join("_");
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
    if has_any(&toks, &["consumed"]) {
        return MetricKind::Traffic;
    }
    // Time spent waiting for a shared resource is what a victim of contention feels: a
    // symptom, like latency, not evidence that the service itself hogs the resource.
    if has_any(&toks, &["pressure", "waiting", "steal", "throttled"])
        && has_any(&toks, &["cpu", "io", "memory"])
    {
        return MetricKind::Symptom;
    }
    // Resource words win unless the name is plainly an error count (`connection_errors`).
    if has_any(&toks, &cause_words) && !has_any(&toks, &["error", "errors", "5xx"]) {
        return MetricKind::Cause;
    }
    if has_any(&toks, &symptom_words) || joined.contains("error") {
        return MetricKind::Symptom;
    }
    if has_any(&toks, TRAFFIC_WORDS) || has_prefix(&toks, &["request"]) {
        return MetricKind::Traffic;
    }
    MetricKind::Other
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The full measurement behind a [`MetricAnomaly`], with what the record has no field for.
#[derive(Debug, Clone, PartialEq)]
pub struct Deviation {
    pub anomaly: MetricAnomaly,
    /// Share of the points from the onset on that stay outside the normal band: a lone spike
    /// (a restart, one slow scrape) is near 0, a level shift near 1.
    pub persistence: f64,
    /// Unix seconds of the last usable point, and its value (e.g. the current replica count).
    pub last: (i64, f64),
}

fn usable(points: &[(i64, Option<f64>)]) -> Vec<(i64, f64)> {
    points
        .iter()
        .filter_map(|&(t, v)| v.filter(|x| x.is_finite()).map(|x| (t, x)))
        .collect()
}

/// Where the window's own normal part ends, when the baseline cannot be used: the split into
/// two segments that best explains the series (least squares on segment means), if it explains
/// at least half of the variance; otherwise the first third. The earlier segment is taken as
/// normal: evidence windows start well before the alert.
fn quiet_prefix(window: &[(i64, f64)]) -> usize {
    let n = window.len();
    let third = n.div_ceil(3).clamp(1, n.saturating_sub(1).max(1));
    if n < 4 {
        return third;
    }
    let mut sum = vec![0.0; n + 1];
    let mut sq = vec![0.0; n + 1];
    for (i, (_, v)) in window.iter().enumerate() {
        sum[i + 1] = sum[i] + v;
        sq[i + 1] = sq[i] + v * v;
    }
    let sse = |a: usize, b: usize| {
        let len = (b - a) as f64;
        let s = sum[b] - sum[a];
        (sq[b] - sq[a]) - s * s / len
    };
    let total = sse(0, n);
    if total <= 0.0 {
        return third;
    }
    let (k, best) =
        (2..=n - 2)
            .map(|k| (k, sse(0, k) + sse(k, n)))
            .fold(
                (third, f64::INFINITY),
                |acc, x| if x.1 < acc.1 { x } else { acc },
            );
    if best < 0.5 * total {
        k
    } else {
        third
    }
}

/// The reference a window is compared with: the baseline when it is usable, else the window's
/// own quiet start (flagged as estimated).
fn reference(window: &[(i64, f64)], baseline: &[f64]) -> (Vec<f64>, bool) {
    let base_all_zero = baseline.iter().all(|v| v.abs() < 1e-12);
    let early_n = window
        .len()
        .div_ceil(3)
        .clamp(1, window.len().saturating_sub(1).max(1));
    let early_sorted = sorted(window[..early_n].iter().map(|p| p.1));
    let early_level = median(&early_sorted).abs();
    // A baseline of zeros while the window's own quiet start is clearly non-zero is a broken
    // baseline (a missing export, a renamed series), not a week of silence.
    let degenerate = baseline.len() < 3 || (base_all_zero && early_level > 1e-9);
    if degenerate {
        let k = quiet_prefix(window);
        (window[..k].iter().map(|p| p.1).collect(), true)
    } else {
        (baseline.to_vec(), false)
    }
}

/// Measures one series against its baseline. `None` when fewer than 2 usable points.
pub fn deviation(series: &MetricSeries, alert_time: Timestamp) -> Option<Deviation> {
    let _ = alert_time; // the stage already cut the window around the alert
    let window = usable(&series.points);
    if window.len() < 2 {
        return None;
    }
    let base: Vec<f64> = usable(&series.baseline).into_iter().map(|p| p.1).collect();
    let (reference, estimated) = reference(&window, &base);
    let ref_sorted = sorted(reference.iter().copied());
    let med = median(&ref_sorted);
    let abs_dev = sorted(ref_sorted.iter().map(|v| (v - med).abs()));
    let mad = 1.4826 * median(&abs_dev);
    let iqr = (quantile(&ref_sorted, 0.75) - quantile(&ref_sorted, 0.25)) / 1.349;
    let max_abs = window
        .iter()
        .map(|p| p.1.abs())
        .chain(reference.iter().map(|v| v.abs()))
        .fold(0.0_f64, f64::max);
    // Floors keep a flat baseline (replicas always 4, zero evictions) from dividing by zero:
    // 2% of the level (availability sitting at exactly 100 then dropping to 80 is a large
    // deviation), or 0.1% of the largest magnitude seen.
    // Whole-number series (sessions, replicas, restarts) move in steps of one: a step is not
    // an anomaly, so their spread is at least half a step.
    let integral = max_abs >= 1.0
        && window
            .iter()
            .map(|p| p.1)
            .chain(reference.iter().copied())
            .all(|v| v.fract() == 0.0);
    let scale = mad
        .max(iqr)
        .max(0.02 * med.abs())
        .max(1e-3 * max_abs)
        .max(if integral { 0.5 } else { 1e-9 });
    let direction = bad_direction(&series.name, &series.unit);
    let bad = |v: f64| -> f64 {
        let z = (v - med) / scale;
        match direction {
            BadDirection::Up => z,
            BadDirection::Down => -z,
            BadDirection::Either => z.abs(),
        }
    };
    let scores: Vec<f64> = window.iter().map(|p| bad(p.1)).collect();
    let (best_i, best) =
        scores
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |acc, (i, s)| if s > acc.1 { (i, s) } else { acc },
            );
    let score = best.clamp(-MAX_SCORE, MAX_SCORE);
    let mut onset = None;
    let mut persistence = 0.0;
    if score >= BAND_SCORE {
        let out: Vec<bool> = scores.iter().map(|s| *s >= BAND_SCORE).collect();
        // First point that leaves the band and is confirmed by one of the next two; a lone
        // excursion falls back to the most deviant point itself.
        let confirmed = (0..out.len()).find(|&i| {
            out[i] && (i + 1 == out.len() || out[i + 1] || out.get(i + 2).copied().unwrap_or(false))
        });
        let start = confirmed.unwrap_or(best_i);
        let tail = &out[start..];
        persistence = tail.iter().filter(|o| **o).count() as f64 / tail.len() as f64;
        onset = DateTime::from_timestamp(window[start].0, 0);
    }
    let last = *window.last().expect("at least two points");
    Some(Deviation {
        anomaly: MetricAnomaly {
            service: series.service.clone(),
            metric: series.name.clone(),
            unit: series.unit.clone(),
            current: window[best_i].1,
            baseline: med,
            score: round2(score),
            direction,
            onset,
            baseline_estimated: estimated,
        },
        persistence,
        last,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Robust deviation of a series from its baseline, signed so that positive means "in the bad
/// direction". Returned for every series with at least 2 usable points: callers decide what
/// counts (see [`is_significant`]).
pub fn anomaly(series: &MetricSeries, alert_time: Timestamp) -> Option<MetricAnomaly> {
    deviation(series, alert_time).map(|d| d.anomaly)
}

pub fn is_significant(a: &MetricAnomaly) -> bool {
    a.score >= SIGNIFICANT_SCORE
}

/// Compact human number: `0.47`, `1570`, `2.1e10`.
pub(crate) fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{x:.2e}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[f64], baseline: &[Option<f64>]) -> MetricSeries {
        MetricSeries {
            service: "svc".into(),
            name: name.into(),
            unit: String::new(),
            points: points
                .iter()
                .enumerate()
                .map(|(i, v)| (1_700_000_000 + 60 * i as i64, Some(*v)))
                .collect(),
            baseline: baseline
                .iter()
                .enumerate()
                .map(|(i, v)| (1_699_000_000 + 60 * i as i64, *v))
                .collect(),
        }
    }

    fn at() -> Timestamp {
        DateTime::from_timestamp(1_700_001_000, 0).unwrap()
    }

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
    fn error_spike_scores_high_with_onset_at_the_jump() {
        let mut pts = vec![0.002; 15];
        pts.extend(vec![0.45; 10]);
        let base: Vec<Option<f64>> = (0..25)
            .map(|i| Some(0.001 + 0.0002 * (i % 5) as f64))
            .collect();
        let a = anomaly(&series("error_rate", &pts, &base), at()).unwrap();
        assert!(a.score > 100.0, "{a:?}");
        assert_eq!(a.current, 0.45);
        assert!(!a.baseline_estimated);
        assert_eq!(a.onset.unwrap().timestamp(), 1_700_000_000 + 15 * 60);
    }

    #[test]
    fn quiet_series_is_not_significant() {
        let pts: Vec<f64> = (0..20).map(|i| 40.0 + (i % 4) as f64).collect();
        let base: Vec<Option<f64>> = (0..20).map(|i| Some(40.0 + (i % 3) as f64)).collect();
        let a = anomaly(&series("request_rate", &pts, &base), at()).unwrap();
        assert!(!is_significant(&a), "{a:?}");
        assert!(a.onset.is_none());
    }

    #[test]
    fn availability_drop_is_positive_and_increase_is_not() {
        let mut pts = vec![100.0; 6];
        pts.extend([80.0, 75.0, 70.0]);
        let base: Vec<Option<f64>> = (0..9).map(|i| Some(99.5 + 0.1 * (i % 3) as f64)).collect();
        let a = anomaly(&series("availability_avg", &pts, &base), at()).unwrap();
        assert!(a.score > SIGNIFICANT_SCORE && a.current == 70.0, "{a:?}");
        let b = anomaly(&series("latency_p99", &[1.0, 1.0, 0.2, 0.2], &base), at()).unwrap();
        assert!(
            b.score < SIGNIFICANT_SCORE,
            "a latency drop is not bad: {b:?}"
        );
    }

    #[test]
    fn broken_zero_baseline_falls_back_to_the_window() {
        // PetShop-style: baseline all zeros while the window sits at ~100 and then dips.
        let pts = [100.0, 100.0, 99.9, 100.0, 100.0, 100.0, 85.0, 80.0, 82.0];
        let base = vec![Some(0.0); 9];
        let a = anomaly(&series("availability_avg", &pts, &base), at()).unwrap();
        assert!(a.baseline_estimated);
        assert!(a.score > SIGNIFICANT_SCORE, "{a:?}");
        assert!((a.baseline - 100.0).abs() < 0.5);
        // All-null baseline: same fallback.
        let a = anomaly(&series("availability_avg", &pts, &[None, None, None]), at()).unwrap();
        assert!(a.baseline_estimated);
    }

    #[test]
    fn genuine_zero_baseline_is_kept_and_flat_spread_is_guarded() {
        let pts = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 500.0, 1200.0, 1500.0];
        let base = vec![Some(0.0); 9];
        let a = anomaly(&series("WriteThrottleEvents", &pts, &base), at()).unwrap();
        assert!(!a.baseline_estimated, "the window's own start is zero too");
        assert!(a.score.is_finite() && a.score >= SIGNIFICANT_SCORE && a.score <= MAX_SCORE);
        let flat = anomaly(&series("ready_replicas", &[4.0; 9], &[Some(4.0); 9]), at()).unwrap();
        assert_eq!(flat.score, 0.0);
    }

    #[test]
    fn too_few_points_is_none() {
        assert!(anomaly(&series("error_rate", &[0.5], &[]), at()).is_none());
        let mut s = series("error_rate", &[0.5, 0.4], &[]);
        s.points[1].1 = None;
        assert!(anomaly(&s, at()).is_none());
    }

    #[test]
    fn lone_spike_has_low_persistence() {
        let mut pts = vec![1.0; 20];
        pts[10] = 2.7;
        let base: Vec<Option<f64>> = (0..20)
            .map(|i| Some(0.95 + 0.02 * (i % 5) as f64))
            .collect();
        let d = deviation(&series("cpu_usage_cores", &pts, &base), at()).unwrap();
        assert!(d.anomaly.score > SIGNIFICANT_SCORE);
        assert!(d.persistence < 0.2, "{d:?}");
    }
}

//! Root-cause ranking from the evidence bundle.
//!
//! Each service gets evidence of its own (metric deviations weighted by what the metric means
//! and by whether they are the kind of symptom the alert is about, a burst of new problem log
//! lines) and evidence received (callers naming it in their errors, a co-timed resource surge
//! next to a starved neighbour).
//!
//! Symptoms travel from callee to caller, so the graph is read as explanations: a callee
//! explains a caller in proportion to how much of the caller's change it matches in the same
//! measurement (failed requests for availability, time added over all requests for a mean
//! latency, the series' unit otherwise), through chains of anomalous services only, and only
//! if it did not start later than the caller (to within a sample). A service explained by
//! something below it is discounted; the deepest explanation gets the credit for every
//! anomalous caller it accounts for, the alerted service most of all; an anomalous service that
//! no anomalous chain links to the alert is another story. Deployments shortly before the
//! onset and being first to deviate add weight only to services that show evidence
//! themselves: a deploy alone proves nothing. Confidence is computed separately, from how many
//! independent kinds of evidence agree and how clearly the first candidate leads the second.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Duration;

use super::graph::Graph;
use super::logs::{self, LogFindings};
use super::metrics::{self, fmt_num, Deviation, MetricKind};
use super::text::{clean, is_flag_deployment};
use crate::domain::*;

/// What one service's evidence adds up to (kept for the explanation, not just the score).
#[derive(Debug, Clone, Default)]
struct Features {
    cause: f64,
    symptom: f64,
    traffic: f64,
    other: f64,
    logs: f64,
    blamed: f64,
    contention: f64,
    deploy: f64,
    deployment: Option<Deployment>,
    onset: Option<Timestamp>,
    /// Significant deviations, strongest first: (weighted strength, deviation).
    devs: Vec<(f64, Deviation)>,
    contention_note: Option<String>,
    own: f64,
    received: f64,
    explained: f64,
    explained_by: Option<String>,
    explains: Vec<String>,
    /// Sum over the anomalous callers it explains of how much of each it explains.
    coverage: f64,
    /// How much of the alerted service's deviation it explains, through anomalous callers.
    alert_explained: f64,
    /// Neighbours it starves of a shared resource, with how surely (0..1).
    starves: Vec<(String, f64)>,
    /// In the graph, but no chain of anomalous services links it to the alerted one.
    disconnected: bool,
    score: f64,
}

/// Weight of a symptom of the family the alert is not about (latency on an error alert).
const OTHER_SYMPTOM_WEIGHT: f64 = 0.35;

/// What the alert is about: slowness or failures (`None` when both or neither).
fn alert_symptom(alert: &Alert) -> Option<metrics::SymptomClass> {
    let text = super::triage::alert_text(alert);
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    let slow = has(&[
        "latency", "slow", "p99", "p95", "p90", "duration", "timing", "slowness",
    ]);
    let failing = has(&[
        "error",
        "errors",
        "5xx",
        "500",
        "503",
        "failure",
        "failures",
        "failing",
        "exception",
        "exceptions",
        "availability",
        "unavailable",
        "down",
        "outage",
    ]);
    match (slow, failing) {
        (true, false) => Some(metrics::SymptomClass::Slowness),
        (false, true) => Some(metrics::SymptomClass::Failure),
        _ => None,
    }
}

/// How far a symptom series moved: in its own unit (or failed requests), and as time added
/// over all requests for a mean latency with a known request count.
type Moved = (f64, Option<f64>);

/// A service counts as anomalous (for explanation chains) from this much evidence on.
const ANOMALOUS: f64 = 0.12;

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

/// Breadth-first from `s` along calls (`Down`) or callers (`Up`), entering only services for
/// which `keep` holds, up to `max_depth` hops; each with its distance.
fn walk(
    graph: &Graph,
    s: &str,
    max_depth: usize,
    dir: Direction,
    keep: &dyn Fn(&str) -> bool,
) -> Vec<(String, usize)> {
    let mut seen: BTreeSet<String> = BTreeSet::from([s.to_string()]);
    let mut out = Vec::new();
    let mut frontier = vec![s.to_string()];
    for depth in 1..=max_depth {
        let mut next = Vec::new();
        for cur in &frontier {
            let neighbours: Vec<&String> = match dir {
                Direction::Down => graph.callees(cur).collect(),
                Direction::Up => graph.callers(cur).collect(),
            };
            for n in neighbours {
                if keep(n) && seen.insert(n.clone()) {
                    out.push((n.clone(), depth));
                    next.push(n.clone());
                }
            }
        }
        frontier = next;
    }
    out
}

fn saturate(z: f64) -> f64 {
    ((1.0 + z / metrics::SIGNIFICANT_SCORE).ln() / 51f64.ln()).clamp(0.0, 1.0)
}

fn combine(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| b.total_cmp(a));
    v.iter()
        .take(3)
        .zip([1.0, 0.5, 0.25])
        .map(|(x, w)| x * w)
        .sum()
}

fn minutes(d: Duration) -> f64 {
    d.num_seconds() as f64 / 60.0
}

pub(crate) fn describe_gap(d: Duration) -> String {
    let m = d.num_minutes();
    if m.abs() < 1 {
        "under a minute".to_string()
    } else if m.abs() < 120 {
        format!("{} min", m.abs())
    } else if m.abs() < 48 * 60 {
        format!("{} h", m.abs() / 60)
    } else {
        format!("{} days", m.abs() / (24 * 60))
    }
}

fn is_usage_metric(name: &str) -> bool {
    let t = metrics::tokens(name);
    let has = |w: &[&str]| t.iter().any(|x| w.contains(&x.as_str()));
    has(&["cpu", "memory", "mem"]) && !has(&["pressure", "waiting", "steal", "throttled", "limit"])
}

/// A mean latency (not a percentile): what callees add to it adds up.
fn is_mean_latency(name: &str) -> bool {
    let t = metrics::tokens(name);
    let has = |w: &[&str]| t.iter().any(|x| w.contains(&x.as_str()));
    metrics::symptom_class(name) == Some(metrics::SymptomClass::Slowness)
        && has(&["avg", "mean", "average"])
}

fn is_pressure_metric(name: &str) -> bool {
    let t = metrics::tokens(name);
    let has = |w: &[&str]| t.iter().any(|x| w.contains(&x.as_str()));
    has(&["pressure", "waiting", "steal", "throttled"]) && has(&["cpu", "io", "memory"])
}

/// A callee deviating at `callee` can explain a caller deviating at `caller`: not more than
/// `slack` later (a few minutes, or one sample when metrics are coarser than that).
fn timely(callee: Option<Timestamp>, caller: Option<Timestamp>, slack: Duration) -> bool {
    match (callee, caller) {
        (Some(c), Some(s)) => c <= s + slack,
        _ => true,
    }
}

/// The usual spacing of metric samples (median over series), if any series has two points.
fn sample_step(ctx: &ContextBundle) -> Option<Duration> {
    let mut steps: Vec<i64> = ctx
        .metrics
        .iter()
        .filter_map(|m| {
            let t: Vec<i64> = m.points.iter().map(|p| p.0).collect();
            let mut d: Vec<i64> = t
                .windows(2)
                .map(|w| w[1] - w[0])
                .filter(|d| *d > 0)
                .collect();
            d.sort_unstable();
            d.get(d.len() / 2).copied()
        })
        .collect();
    steps.sort_unstable();
    steps.get(steps.len() / 2).map(|s| Duration::seconds(*s))
}

/// The evidence window: the bundle's, else what the evidence itself covers.
fn window_of(alert: &Alert, ctx: &ContextBundle) -> (Timestamp, Timestamp) {
    if let Some(w) = ctx.window {
        return (w.start, w.end);
    }
    let mut lo = alert.timestamp - Duration::minutes(30);
    let mut hi = alert.timestamp + Duration::minutes(15);
    for l in &ctx.logs {
        lo = lo.min(l.timestamp);
        hi = hi.max(l.timestamp);
    }
    (lo, hi)
}

/// Per service, the series that counts its requests per sample (`requests_sum`,
/// `Invocations`, `RequestCount`): it gives a ratio's resolution (one request's worth) and the
/// weight of a mean latency. Rates and cumulative counters (`*_total`) do not count.
fn request_counts(series: &[MetricSeries]) -> HashMap<&str, &MetricSeries> {
    let mut out: HashMap<&str, &MetricSeries> = HashMap::new();
    for m in series {
        let toks = metrics::tokens(&m.name);
        let has = |w: &[&str]| toks.iter().any(|t| w.contains(&t.as_str()));
        let unit = m.unit.to_ascii_lowercase();
        let counts = has(&["requests", "request", "invocations", "calls", "count"])
            && !has(&[
                "rate", "per", "second", "seconds", "ps", "error", "errors", "latency", "total",
                "bucket", "duration",
            ])
            && !unit.contains("/s")
            && !unit.contains("per");
        if counts {
            out.entry(m.service.as_str()).or_insert(m);
        }
    }
    out
}

struct Analysis {
    features: BTreeMap<String, Features>,
    onset: Timestamp,
    onset_known: bool,
    findings: LogFindings,
    significant: usize,
    all_estimated: bool,
}

fn analyse(alert: &Alert, ctx: &ContextBundle) -> Analysis {
    let at = alert.timestamp;
    let graph = Graph::new(&ctx.topology);
    let window = window_of(alert, ctx);

    // Deviations: from the raw series when present (they carry persistence), else the
    // stage's precomputed anomalies.
    let volumes = request_counts(&ctx.metrics);
    let mut devs: Vec<Deviation> = ctx
        .metrics
        .iter()
        .filter_map(|s| metrics::deviation_with(s, at, volumes.get(s.service.as_str()).copied()))
        .collect();
    let known: BTreeSet<(String, String)> = devs
        .iter()
        .map(|d| (d.anomaly.service.clone(), d.anomaly.metric.clone()))
        .collect();
    for a in &ctx.anomalies {
        if !known.contains(&(a.service.clone(), a.metric.clone())) {
            devs.push(Deviation {
                anomaly: a.clone(),
                persistence: 1.0,
                last: (0, a.current),
                pre_existing: 0.0,
                profile: Vec::new(),
                magnitude: (a.current - a.baseline).abs(),
                failing_share: None,
                failing_requests: None,
                requests_at_peak: None,
            });
        }
    }
    devs.retain(|d| metrics::is_significant(&d.anomaly));
    let significant = devs.len();
    let all_estimated = !devs.is_empty() && devs.iter().all(|d| d.anomaly.baseline_estimated);

    // Universe of services.
    let mut universe: BTreeSet<String> = ctx.services.iter().cloned().collect();
    universe.extend(graph.services().cloned());
    universe.extend(ctx.metrics.iter().map(|m| m.service.clone()));
    universe.extend(ctx.anomalies.iter().map(|m| m.service.clone()));
    universe.extend(ctx.logs.iter().map(|l| l.service.clone()));
    universe.extend(ctx.deployments.iter().map(|d| d.service.clone()));
    universe.extend(alert.service.clone());
    universe.retain(|s| !s.trim().is_empty());

    // The incident's onset: the first lasting symptom (what the alert is about), else the
    // first lasting deviation of any kind, else shortly before the alert.
    let lasting = |d: &&Deviation| d.persistence >= 0.5 && d.anomaly.onset.is_some();
    let symptom_onset = devs
        .iter()
        .filter(lasting)
        .filter(|d| metrics::metric_kind(&d.anomaly.metric) == MetricKind::Symptom)
        .filter_map(|d| d.anomaly.onset)
        .min();
    let any_onset = devs
        .iter()
        .filter(lasting)
        .filter_map(|d| d.anomaly.onset)
        .min();
    let onset_known = symptom_onset.or(any_onset).is_some();
    let onset = symptom_onset
        .or(any_onset)
        .unwrap_or(at - Duration::minutes(10));
    // Logs are compared with the quiet time before anything clearly moved: precursors (leak
    // warnings, first retries) that come before the symptoms are part of the incident.
    let first_move = devs
        .iter()
        .filter(lasting)
        .filter(|d| {
            d.anomaly.score >= 2.0 * metrics::SIGNIFICANT_SCORE
                && metrics::metric_kind(&d.anomaly.metric) != MetricKind::Traffic
        })
        .filter_map(|d| d.anomaly.onset)
        .min()
        .map_or(onset, |t| t.min(onset));

    let services: Vec<String> = universe.iter().cloned().collect();
    let findings = logs::analyse(&ctx.logs, first_move, window, &services, &graph);

    let mut features: BTreeMap<String, Features> = universe
        .iter()
        .map(|s| (s.clone(), Features::default()))
        .collect();

    let alert_class = alert_symptom(alert);
    for d in devs {
        let a = &d.anomaly;
        let kind = metrics::metric_kind(&a.metric);
        // Kinds are weighted later (cause 1, symptom 0.6, traffic 0.25); here only how far
        // and how lastingly the series moved.
        // For an availability-like ratio the share of requests failing is what users feel
        // (4% failing is a strong signal at any z-score), tempered when it is only a handful
        // of requests.
        let strength = match d.failing_share {
            Some(share) => {
                let count = d.failing_requests.map_or(1.0, |n| n / (n + 2.0));
                saturate(a.score).max(count * share / (share + 0.02))
            }
            None => saturate(a.score),
        };
        let mut w = strength * (0.4 + 0.6 * d.persistence);
        if a.baseline_estimated {
            w *= 0.7;
        }
        // The alert says what is wrong (slow, or failing): symptoms of the other family are
        // usually another story running at the same time.
        if kind == MetricKind::Symptom {
            if let (Some(want), Some(got)) = (alert_class, metrics::symptom_class(&a.metric)) {
                if want != got {
                    w *= OTHER_SYMPTOM_WEIGHT;
                }
            }
        }
        let f = features.entry(a.service.clone()).or_default();
        // Only clear, lasting deviations date the service: a weak level shift (a capacity
        // setting that differs from last week) is "different", not "started failing".
        // Traffic follows callers and users, so it does not date a failure either.
        if d.persistence >= 0.3
            && a.score >= 2.0 * metrics::SIGNIFICANT_SCORE
            && kind != MetricKind::Traffic
        {
            if let Some(o) = a.onset {
                f.onset = Some(f.onset.map_or(o, |x: Timestamp| x.min(o)));
            }
        }
        f.devs.push((w, d.clone()));
    }
    for f in features.values_mut() {
        f.devs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let by = |k: MetricKind| -> Vec<f64> {
            f.devs
                .iter()
                .filter(|(_, d)| metrics::metric_kind(&d.anomaly.metric) == k)
                .map(|(w, _)| *w)
                .collect()
        };
        f.cause = combine(by(MetricKind::Cause));
        f.symptom = combine(by(MetricKind::Symptom));
        f.traffic = combine(by(MetricKind::Traffic));
        f.other = combine(by(MetricKind::Other));
    }

    for (svc, s) in &findings.services {
        let f = features.entry(svc.clone()).or_default();
        f.logs = s.strength();
        if f.logs >= 0.2 {
            if let Some(t) = s.first_new_at {
                f.onset = Some(f.onset.map_or(t, |x: Timestamp| x.min(t)));
            }
        }
    }
    for (svc, b) in &findings.blame {
        let f = features.entry(svc.clone()).or_default();
        f.blamed = b.strength();
        if f.blamed >= 0.2 {
            if let Some(t) = b.first_at {
                f.onset = Some(f.onset.map_or(t, |x: Timestamp| x.min(t)));
            }
        }
    }

    // Deployments: closer before the onset is stronger; long before still counts a little
    // (leaks and dark launches bite later); after the onset it cannot be the cause.
    for d in &ctx.deployments {
        let gap = onset - d.timestamp;
        let w = if gap < -Duration::seconds(60) {
            0.03
        } else if gap > Duration::hours(24) {
            0.08
        } else {
            0.15 + 0.85 * (-minutes(gap).max(0.0) / 30.0).exp()
        };
        let f = features.entry(d.service.clone()).or_default();
        if w > f.deploy {
            f.deploy = w;
            f.deployment = Some(d.clone());
        }
    }

    // Resource contention: a service starved of a shared resource (CPU pressure) while its own
    // usage did not rise, next to a service whose usage surged at the same time.
    let victims: Vec<(String, f64, Timestamp, String)> = features
        .iter()
        .filter_map(|(svc, f)| {
            let own_usage_up = f.devs.iter().any(|(_, d)| {
                is_usage_metric(&d.anomaly.metric) && d.anomaly.direction != BadDirection::Down
            });
            if own_usage_up {
                return None;
            }
            f.devs
                .iter()
                .find(|(_, d)| is_pressure_metric(&d.anomaly.metric))
                .and_then(|(w, d)| {
                    d.anomaly
                        .onset
                        .map(|o| (svc.clone(), *w, o, d.anomaly.metric.clone()))
                })
        })
        .collect();
    for (victim, w, v_onset, metric) in victims {
        let contenders: Vec<String> = features
            .iter()
            .filter(|(svc, f)| {
                **svc != victim
                    && f.devs.iter().any(|(_, d)| {
                        is_usage_metric(&d.anomaly.metric)
                            && d.anomaly
                                .onset
                                .is_some_and(|o| o <= v_onset + Duration::minutes(2))
                    })
            })
            .map(|(s, _)| s.clone())
            .collect();
        if contenders.is_empty() {
            continue;
        }
        for c in &contenders {
            let f = features.get_mut(c).expect("contender exists");
            // The bigger the surge, the likelier it is the one starving the neighbour.
            let surge = f
                .devs
                .iter()
                .filter(|(_, d)| is_usage_metric(&d.anomaly.metric))
                .map(|(_, d)| saturate(d.anomaly.score))
                .fold(0.0, f64::max);
            f.contention = f.contention.max(0.8 * w * surge);
            f.starves.push((victim.clone(), 0.8 * surge));
            f.contention_note = Some(format!(
                "resource surge co-timed with {victim}'s {metric} (starved neighbour)"
            ));
            f.explains.push(victim.clone());
        }
        let f = features.get_mut(&victim).expect("victim exists");
        f.explained = f.explained.max(0.8);
        f.explained_by = Some(contenders.join(", "));
    }

    for f in features.values_mut() {
        f.own = f.cause + 0.6 * f.symptom + 0.25 * f.traffic + 0.3 * f.other + 0.9 * f.logs;
        f.received = 0.9 * f.blamed + f.contention;
    }

    let raw: HashMap<String, (f64, Option<Timestamp>)> = features
        .iter()
        .map(|(s, f)| (s.clone(), (f.own + f.received, f.onset)))
        .collect();
    // Onsets are only known to a sample: one sample of disagreement is no disagreement.
    let slack = sample_step(ctx).map_or(Duration::minutes(3), |s| s.max(Duration::minutes(3)));
    // Share of a service's own evidence made of things that travel from callee to caller.
    let propagating: HashMap<String, f64> = features
        .iter()
        .map(|(s, f)| {
            let p = 0.6 * f.symptom + 0.25 * f.traffic + 0.3 * f.other + 0.9 * f.logs;
            let share = if f.own > 1e-9 {
                (p / f.own).min(1.0)
            } else {
                1.0
            };
            (s.clone(), share)
        })
        .collect();
    let logs_of: HashMap<String, f64> = features.iter().map(|(s, f)| (s.clone(), f.logs)).collect();
    let own_of: HashMap<String, f64> = features.iter().map(|(s, f)| (s.clone(), f.own)).collect();
    let alerted = alert.service.clone().unwrap_or_default();
    // The alerted service is anomalous by definition: the alert fired.
    let anomalous = |s: &str| s == alerted || raw.get(s).is_some_and(|(r, _)| *r >= ANOMALOUS);
    // Per service, how far each of its symptom series moved: failed requests for ratios with
    // a known volume, else the series' own unit; and for a mean latency with a known volume,
    // the time added over all requests (a callee adds its extra time to its callers' mean in
    // proportion to how many calls it serves).
    let magnitudes: HashMap<String, HashMap<String, Moved>> = features
        .iter()
        .map(|(s, f)| {
            let mut m: HashMap<String, Moved> = HashMap::new();
            for (_, d) in &f.devs {
                if metrics::metric_kind(&d.anomaly.metric) == MetricKind::Symptom {
                    let plain = d.failing_requests.unwrap_or(d.magnitude);
                    let total = d
                        .requests_at_peak
                        .filter(|_| is_mean_latency(&d.anomaly.metric))
                        .map(|n| d.magnitude * n);
                    let e = m.entry(d.anomaly.metric.clone()).or_insert((0.0, None));
                    e.0 = e.0.max(plain);
                    e.1 = match (e.1, total) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            (s.clone(), m)
        })
        .collect();
    // Symptoms of the kind the alert is about, when it says.
    let relevant =
        |metric: &str| alert_class.is_none() || metrics::symptom_class(metric) == alert_class;
    let names: Vec<String> = features.keys().cloned().collect();
    let starved: HashMap<String, Vec<(String, f64)>> = features
        .iter()
        .map(|(s, f)| (s.clone(), f.starves.clone()))
        .collect();
    // How much of `caller`'s deviation `callee` accounts for, 0..1.
    let explanation = |callee: &str, caller: &str| -> f64 {
        let named = findings
            .blame
            .get(callee)
            .is_some_and(|b| b.by.contains_key(caller));
        let (raw_c, onset_c) = raw.get(callee).copied().unwrap_or((0.0, None));
        let onset_s = raw.get(caller).and_then(|r| r.1);
        // A caller naming the callee in its errors beats minute-resolution timing.
        if !named && !timely(onset_c, onset_s, slack) {
            return 0.0;
        }
        // The same measurement on both sides (latency added, availability lost): the callee
        // explains the caller in proportion to how much of the caller's change it matches.
        let (mc, ms) = (&magnitudes[callee], &magnitudes[caller]);
        // Compare what the alert is about when the caller shows it, else whatever it shows.
        let caller_relevant = ms.keys().any(|k| relevant(k));
        let shared: Vec<(&Moved, &Moved)> = ms
            .iter()
            .filter(|(k, v)| v.0 > 0.0 && (!caller_relevant || relevant(k)))
            .filter_map(|(k, v)| mc.get(k).map(|c| (c, v)))
            .collect();
        // Time added over all requests, when both sides have it, says more than percentiles
        // (which do not add up, and a callee serving a few calls can have any p99).
        let weighted: Vec<f64> = shared
            .iter()
            .filter_map(|(c, v)| match (c.1, v.1) {
                (Some(tc), Some(ts)) if ts > 0.0 => Some((tc / ts).min(1.0)),
                _ => None,
            })
            .collect();
        let ratio = if weighted.is_empty() {
            shared
                .iter()
                .map(|(c, v)| (c.0 / v.0).min(1.0))
                .fold(None, |acc: Option<f64>, x| {
                    Some(acc.map_or(x, |a| a.max(x)))
                })
        } else {
            weighted.into_iter().reduce(f64::max)
        };
        let own_s = own_of.get(caller).copied().unwrap_or(0.0);
        let dominance = raw_c / (raw_c + own_s).max(1e-9);
        let x = match ratio {
            Some(r) => r,
            // Only symptoms travel upstream: a caller whose own evidence is its resources (a
            // batch job burning CPU) is not explained by what it calls.
            None if ms.is_empty() && logs_of.get(caller).is_none_or(|l| *l < 0.3) => 0.0,
            // Different measurements on the two sides: a callee's own resources or logs can
            // explain a caller's symptoms; a symptom of another kind only weakly.
            None if mc.is_empty() || ms.is_empty() => dominance,
            None => 0.3 * dominance,
        };
        // What the caller shows of its own resources is not a callee's doing.
        let share = propagating.get(caller).copied().unwrap_or(1.0);
        ((x + if named { 0.3 } else { 0.0 }).min(1.0)) * share
    };

    // Explanation by an anomalous downstream service, reached through anomalous services only:
    // a healthy service in between breaks the chain.
    for s in &names {
        if !anomalous(s) {
            continue;
        }
        let mut best: (f64, Option<String>) = (0.0, None);
        for (c, depth) in walk(&graph, s, 3, Direction::Down, &anomalous) {
            let x = explanation(&c, s) * 0.9f64.powi(depth as i32 - 1);
            if x > best.0 {
                best = (x, Some(c));
            }
        }
        let f = features.get_mut(s).expect("exists");
        if best.0 > f.explained {
            f.explained = best.0;
            f.explained_by = best.1;
        }
    }

    // Which anomalous callers each service would explain, and how much of them.
    let alert_in_graph = graph.contains(&alerted);
    for s in &names {
        // Only a service with evidence of its own explains anything.
        if !anomalous(s) {
            continue;
        }
        // Starting points: the service itself, and the neighbours it starves (contention
        // explains them as a callee would).
        let mut starts: Vec<(String, f64)> = vec![(s.clone(), 1.0)];
        starts.extend(starved[s].iter().cloned());
        let mut coverage = 0.0;
        let mut alert_explained: f64 = 0.0;
        let mut ex = Vec::new();
        let mut connected = !alert_in_graph || *s == alerted;
        for (origin, strength) in &starts {
            if *origin != *s {
                coverage += strength * raw.get(origin).map_or(0.0, |r| r.0.min(1.0));
                if *origin == alerted {
                    alert_explained = alert_explained.max(*strength);
                }
            }
            let reached = walk(&graph, origin, 4, Direction::Up, &anomalous);
            for (u, depth) in &reached {
                if u == s {
                    continue;
                }
                let x = if origin == s {
                    explanation(s, u)
                } else {
                    strength * explanation(origin, u)
                } * 0.9f64.powi(*depth as i32 - 1);
                if x >= 0.2 {
                    coverage += x * raw[u].0.min(1.0);
                    if !ex.contains(u) {
                        ex.push(u.clone());
                    }
                    if *u == alerted {
                        alert_explained = alert_explained.max(x);
                    }
                }
            }
            // Connected to the alert: the alerted service itself, or a chain of anomalous
            // callers that ends at a callee of the alerted service.
            connected = connected
                || !graph.contains(origin)
                || std::iter::once(origin)
                    .chain(reached.iter().map(|(u, _)| u))
                    .any(|n| *n == alerted || graph.callers(n).any(|c| *c == alerted));
        }
        let f = features.get_mut(s).expect("exists");
        ex.retain(|u| !f.explains.contains(u));
        f.explains.extend(ex);
        f.coverage += coverage;
        f.alert_explained = alert_explained;
        f.disconnected = !connected;
    }

    let resolution = sample_step(ctx)
        .map_or(Duration::zero(), |s| s - Duration::minutes(1))
        .max(Duration::zero());
    let earliest = features
        .values()
        .filter(|f| f.own + f.received >= ANOMALOUS)
        .filter_map(|f| f.onset)
        .min();
    for (s, f) in features.iter_mut() {
        let x = f.explained;
        let evidence = f.cause * (1.0 - 0.2 * x)
            + 0.6 * f.symptom * (1.0 - 0.8 * x)
            + 0.25 * f.traffic * (1.0 - 0.5 * x)
            + 0.3 * f.other
            + 0.9 * f.logs * (1.0 - 0.4 * x)
            + 0.9 * f.blamed * (1.0 - 0.5 * x)
            + f.contention;
        let gate = ((f.own + f.received) / 0.8).min(1.0);
        // Within one sample of the first, a service is as early as the first.
        let onset_bonus = match (earliest, f.onset) {
            (Some(e), Some(o)) => (-(minutes(o - e - resolution).max(0.0)) / 5.0).exp(),
            _ => 0.0,
        };
        // Credit for explaining others goes to the deepest explanation, not to a service that
        // is itself explained by another.
        let explains = (0.1 * f.explains.len().min(3) as f64
            + 0.15 * f.coverage.min(4.0)
            + 0.3 * f.alert_explained)
            * (1.0 - x);
        f.score = (evidence + gate * (0.9 * f.deploy + 0.3 * onset_bonus + explains))
            * if f.disconnected { 0.6 } else { 1.0 }
            + if *s == alerted { 0.05 } else { 0.0 };
    }

    Analysis {
        features,
        onset,
        onset_known,
        findings,
        significant,
        all_estimated,
    }
}

/// Guesses the kind of fault from the words around the root-cause service.
fn fault_of(svc: &str, f: &Features, a: &Analysis, graph_leaf: bool, has_callers: bool) -> String {
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

pub(crate) fn fault_phrase(fault: &str) -> &'static str {
    match fault {
        "bad_deploy" => "a faulty deployment",
        "config_change" => "a configuration / feature-flag change",
        "certificate_expiry" => "an expired TLS certificate",
        "disk_full" => "a full disk",
        "dns_resolution_failure" => "DNS resolution failures",
        "dynamodb_throttling" => "DynamoDB write throttling",
        "throttling" => "throttling",
        "noisy_neighbour" => "a noisy neighbour starving shared resources",
        "cache_eviction" => "cache evictions (memory limit reached)",
        "memory_leak" => "a memory leak (OOM kills and restarts)",
        "connection_pool_exhaustion" => "connection pool exhaustion",
        "retry_storm" => "a retry storm (overload from callers' retries)",
        "dependency_outage" => "a dependency outage",
        "resource_exhaustion" => "resource exhaustion",
        "crash" => "crashes",
        _ => "an unidentified fault",
    }
}

fn evidence_lines(svc: &str, f: &Features, a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    for (_, d) in f.devs.iter().take(3) {
        let m = &d.anomaly;
        let mut line = format!(
            "{} {} vs baseline {} (score {:.0}",
            clean(&m.metric, 60),
            fmt_num(m.current),
            fmt_num(m.baseline),
            m.score
        );
        if m.baseline_estimated {
            line.push_str(", baseline estimated from the window");
        }
        if d.persistence < 0.34 {
            line.push_str(", brief spike");
        }
        if let Some(o) = m.onset {
            line.push_str(&format!(", from {}", o.format("%H:%M")));
        }
        line.push(')');
        out.push(line);
    }
    if let Some(s) = a.findings.services.get(svc) {
        if s.problems_after > 0 && f.logs > 0.05 {
            let mut parts = Vec::new();
            if s.fatal_after > 0 {
                parts.push(format!("{} FATAL", s.fatal_after));
            }
            if s.errors_after > 0 {
                parts.push(format!("{} ERROR", s.errors_after));
            }
            if s.warn_after > 0 {
                parts.push(format!("{} WARN", s.warn_after));
            }
            let mut line = format!(
                "{} lines since the onset ({} before)",
                parts.join(" + "),
                s.problems_before
            );
            if let Some((t, n)) = &s.top_new_template {
                line.push_str(&format!(", new template \"{}\" x{n}", clean(t, 90)));
            }
            out.push(line);
        }
    }
    if let Some(b) = a.findings.blame.get(svc) {
        if f.blamed > 0.05 {
            let by: Vec<String> =
                b.by.iter()
                    .map(|(s, n)| format!("{} ({n})", clean(s, 40)))
                    .collect();
            out.push(format!(
                "named in {} problem lines of {}",
                b.lines,
                by.join(", ")
            ));
        }
    }
    if let Some(note) = &f.contention_note {
        out.push(note.clone());
    }
    if let Some(d) = &f.deployment {
        let gap = a.onset - d.timestamp;
        let what = if is_flag_deployment(d) {
            "config change"
        } else {
            "deployed"
        };
        let when = if gap >= Duration::zero() {
            format!("{} before onset", describe_gap(gap))
        } else {
            format!("{} after onset", describe_gap(gap))
        };
        let desc = if d.description.is_empty() {
            String::new()
        } else {
            format!(" ({})", clean(&d.description, 80))
        };
        out.push(format!("{what} {} {when}{desc}", clean(&d.version, 60)));
    }
    if !f.explains.is_empty() {
        let list: Vec<String> = f.explains.iter().take(4).map(|s| clean(s, 40)).collect();
        out.push(format!("would explain anomalous {}", list.join(", ")));
    }
    if let (Some(by), true) = (&f.explained_by, f.explained >= 0.5) {
        out.push(format!("itself explained by {}", clean(by, 60)));
    }
    if let Some(o) = f.onset {
        out.push(format!("first deviation at {}", o.format("%H:%M:%S")));
    }
    out
}

/// Ranks root-cause candidates. Never fails: with no evidence at all it names the alerted
/// service with confidence ≤ 0.2, so the pipeline widens the window and then escalates
/// instead of treating "nothing found" as an error.
pub fn rca(alert: &Alert, triage: &TriageResult, ctx: &ContextBundle) -> RootCauseHypothesis {
    let _ = triage; // severity does not change what the evidence says
    let a = analyse(alert, ctx);
    let graph = Graph::new(&ctx.topology);
    let alerted = alert
        .service
        .clone()
        .or_else(|| triage.affected_services.first().cloned())
        .unwrap_or_else(|| "unknown".into());

    let mut ranked: Vec<(&String, &Features)> = a.features.iter().collect();
    ranked.sort_by(|x, y| y.1.score.total_cmp(&x.1.score).then(x.0.cmp(y.0)));

    let any_evidence = a.significant > 0
        || a.findings.services.values().any(|s| s.strength() > 0.1)
        || a.findings.blame.values().any(|b| b.strength() > 0.1);
    let failed: Vec<String> = ctx
        .failed_sources
        .iter()
        .map(|f| {
            format!(
                "{} ({}) failed: {}",
                clean(&f.source, 40),
                clean(&f.kind, 20),
                clean(&f.error, 80)
            )
        })
        .collect();

    if !any_evidence || ranked.is_empty() {
        let mut factors = failed.clone();
        factors.push("no anomalous metric, log burst or blaming log line in the window".into());
        return RootCauseHypothesis {
            primary_cause: format!(
                "No evidence points at a cause yet; {} is only the alerted service",
                clean(&alerted, 60)
            ),
            root_cause_service: alerted.clone(),
            fault: "unknown".into(),
            candidates: vec![RootCauseCandidate {
                service: alerted,
                score: 0.0,
                fault: "unknown".into(),
                evidence: vec!["alerted service; no evidence gathered".into()],
            }],
            contributing_factors: factors,
            evidence: vec![format!(
                "attempt {}: {} log lines, {} metric series, {} deployments, no significant deviation",
                ctx.attempt,
                ctx.logs.len(),
                ctx.metrics.len().max(ctx.anomalies.len()),
                ctx.deployments.len()
            )],
            confidence: if ctx.failed_sources.is_empty() { 0.1 } else { 0.05 },
            alternatives: vec![],
            suspect_deployment: None,
            analyst: "offline".into(),
        };
    }

    let (top, tf) = ranked[0];
    let s1 = tf.score.max(1e-9);
    let s2 = ranked.get(1).map(|r| r.1.score).unwrap_or(0.0);
    let leaf = graph.callees(top).next().is_none();
    let has_callers = graph.callers(top).next().is_some();
    let fault = fault_of(top, tf, &a, leaf, has_callers);

    let mut candidates = Vec::new();
    for (svc, f) in ranked.iter().take(6) {
        if f.score < 0.05 && !candidates.is_empty() {
            break;
        }
        let l = graph.callees(svc).next().is_none();
        let c = graph.callers(svc).next().is_some();
        candidates.push(RootCauseCandidate {
            service: (*svc).clone(),
            score: (f.score * 100.0).round() / 100.0,
            fault: fault_of(svc, f, &a, l, c),
            evidence: evidence_lines(svc, f, &a),
        });
    }

    // Confidence: independent kinds of evidence that agree, then how clearly we lead.
    let metric_support = (tf.cause + tf.symptom + 0.5 * tf.other).min(1.0);
    let log_support = if tf.logs >= 0.3 { tf.logs } else { 0.0 };
    let blame_support = tf.blamed.max(tf.contention.min(1.0));
    let deploy_support = tf.deploy;
    // Services the top candidate explains are its symptoms: their timing is not a rival's.
    let earliest_onset = a
        .features
        .iter()
        .filter(|(s, f)| f.own + f.received >= 0.3 && (*s == top || !tf.explains.contains(s)))
        .filter_map(|(_, f)| f.onset)
        .min();
    // Shared infrastructure outside the call graph (DNS, nodes, network) hits many services at
    // once: several anomalous services starting with it is the graph evidence it can have.
    let co_timed = match tf.onset {
        Some(o) if !graph.contains(top) => a
            .features
            .iter()
            .filter(|(s, f)| {
                *s != top
                    && f.own + f.received >= 0.3
                    && f.onset.is_some_and(|x| {
                        x >= o - Duration::minutes(1) && x <= o + Duration::minutes(5)
                    })
            })
            .count(),
        _ => 0,
    };
    // The graph agrees when the candidate accounts for the alerted service's deviation (or
    // for anomalous callers), or is the alerted service with nothing below it to blame.
    let graph_support = if !tf.explains.is_empty() {
        (0.6 + 0.4 * tf.alert_explained).max(if *top == alerted { 1.0 } else { 0.0 })
    } else if co_timed >= 2 || (*top == alerted && tf.explained < 0.3) {
        0.5
    } else {
        0.0
    };
    let first = match (tf.onset, earliest_onset) {
        (Some(o), Some(e)) => o <= e + Duration::minutes(2),
        _ => false,
    };
    let mut conf = 0.1
        + 0.25 * metric_support
        + 0.15 * log_support
        + 0.15 * blame_support
        + 0.15 * deploy_support
        + 0.1 * graph_support
        + if first { 0.1 } else { 0.0 };
    let ratio = s2 / s1;
    if ratio > 0.5 {
        conf *= 1.0 - 0.8 * (ratio - 0.5);
    }
    let mut notes = Vec::new();
    // A first candidate that something anomalous below it would explain is likelier a symptom.
    if tf.explained >= 0.5 {
        conf *= 1.0 - 0.5 * tf.explained;
        notes.push(format!(
            "{} could itself be a symptom of {}",
            clean(top, 40),
            clean(
                tf.explained_by.as_deref().unwrap_or("a service it calls"),
                60
            )
        ));
    }
    // Thin evidence: one deviation and nothing else cannot carry a confident answer.
    let items = a.significant
        + a.findings
            .services
            .values()
            .filter(|s| s.strength() >= 0.3)
            .count()
        + a.findings
            .blame
            .values()
            .filter(|b| b.strength() >= 0.3)
            .count();
    if items <= 1 {
        conf = conf.min(0.35);
        notes.push("evidence is thin: a single signal".to_string());
    }
    if a.all_estimated && log_support == 0.0 && blame_support < 0.3 {
        conf *= 0.8;
        notes.push("every baseline was estimated from the window itself".to_string());
    }
    if !a.onset_known {
        conf *= 0.9;
    }
    if !ctx.failed_sources.is_empty() {
        conf *= 0.9f64.powi(ctx.failed_sources.len().min(3) as i32);
    }
    if let (Some(o), Some(e)) = (tf.onset, earliest_onset) {
        if o > e + Duration::minutes(5) {
            conf *= 0.85;
            notes.push("another service deviated more than 5 minutes earlier".to_string());
        }
    }
    let confidence = (conf.clamp(0.05, 0.95) * 100.0).round() / 100.0;

    let suspect_deployment = tf
        .deployment
        .clone()
        .filter(|d| d.timestamp <= a.onset + Duration::seconds(60));

    let mut evidence = candidates[0].evidence.clone();
    evidence.truncate(8);
    let mut contributing = Vec::new();
    let victims: Vec<String> = tf.explains.iter().take(5).map(|s| clean(s, 40)).collect();
    if !victims.is_empty() {
        contributing.push(format!(
            "symptoms propagated to {} (callers or neighbours of {})",
            victims.join(", "),
            clean(top, 40)
        ));
    }
    for d in &ctx.deployments {
        if d.service != *top && (a.onset - d.timestamp).num_minutes().abs() <= 60 {
            let f = a.features.get(&d.service);
            let quiet = f.is_none_or(|f| f.own < 0.3);
            contributing.push(format!(
                "{} deployed {} {} the onset{}",
                clean(&d.service, 40),
                clean(&d.version, 40),
                if d.timestamp <= a.onset {
                    "before"
                } else {
                    "after"
                },
                if quiet {
                    " (its own signals are quiet: likely unrelated)"
                } else {
                    ""
                }
            ));
        }
    }
    contributing.extend(failed);
    contributing.extend(notes);
    contributing.truncate(8);

    let alternatives: Vec<String> = candidates
        .iter()
        .skip(1)
        .take(3)
        .map(|c| {
            format!(
                "{} ({}, score {:.2}){}",
                clean(&c.service, 40),
                c.fault,
                c.score,
                c.evidence
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        })
        .collect();

    // The sentence leads with the strongest kinds: the change that preceded it, the top
    // deviation, the new log template, who named it.
    let ev = &candidates[0].evidence;
    let pick = |pred: &dyn Fn(&String) -> bool| ev.iter().find(|e| pred(e)).cloned();
    let mut key_parts: Vec<String> = Vec::new();
    if tf.deploy >= 0.5 {
        key_parts.extend(pick(&|e| {
            e.starts_with("deployed ") || e.starts_with("config change ")
        }));
    }
    key_parts.extend(pick(&|e| e.contains(" vs baseline ")));
    key_parts.extend(pick(&|e| e.contains(" lines since the onset")));
    if key_parts.len() < 3 {
        key_parts.extend(pick(&|e| {
            e.starts_with("named in ") || e.starts_with("resource surge")
        }));
    }
    if key_parts.is_empty() {
        key_parts.extend(ev.first().cloned());
    }
    let key = key_parts.join("; ");
    let primary_cause = format!(
        "{} in {}: {}",
        capitalise(fault_phrase(&fault)),
        clean(top, 60),
        key
    );

    RootCauseHypothesis {
        primary_cause,
        root_cause_service: top.clone(),
        fault,
        candidates,
        contributing_factors: contributing,
        evidence,
        confidence,
        alternatives,
        suspect_deployment,
        analyst: "offline".into(),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

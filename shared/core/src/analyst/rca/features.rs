//! Phase 2, features: what each service's own evidence adds up to (metric deviations weighted
//! by what the metric means and whether it is the kind of symptom the alert is about, a burst
//! of new problem log lines) and the evidence it receives (callers naming it in their errors,
//! a co-timed resource surge next to a starved neighbour, a deployment shortly before).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Duration;

use super::onset::minutes;
use crate::analyst::graph::Graph;
use crate::analyst::logs::LogFindings;
use crate::analyst::metrics::{self, Deviation, MetricKind};
use crate::domain::*;

/// What one service's evidence adds up to (kept for the explanation, not just the score).
#[derive(Debug, Clone, Default)]
pub(super) struct Features {
    pub cause: f64,
    pub symptom: f64,
    pub traffic: f64,
    pub other: f64,
    pub logs: f64,
    pub blamed: f64,
    pub contention: f64,
    /// How long its callers wait on calls they make (their client-side latency), shared among
    /// the services they call: delay on a service's network shows only at its callers.
    pub callers_wait: f64,
    /// Its own client-side latency, weighted: evidence about its callees, not itself.
    pub waits_on_callees: f64,
    pub deploy: f64,
    pub deployment: Option<Deployment>,
    pub onset: Option<Timestamp>,
    /// Significant deviations, strongest first: (weighted strength, deviation).
    pub devs: Vec<(f64, Deviation)>,
    pub contention_note: Option<String>,
    pub own: f64,
    pub received: f64,
    pub explained: f64,
    pub explained_by: Option<String>,
    pub explains: Vec<String>,
    /// Sum over the anomalous callers it explains of how much of each it explains.
    pub coverage: f64,
    /// How much of the alerted service's deviation it explains, through anomalous callers.
    pub alert_explained: f64,
    /// Neighbours it starves of a shared resource, with how surely (0..1).
    pub starves: Vec<(String, f64)>,
    /// In the graph, but no chain of anomalous services links it to the alerted one.
    pub disconnected: bool,
    pub score: f64,
}

/// Weight of a symptom of the family the alert is not about (latency on an error alert).
const OTHER_SYMPTOM_WEIGHT: f64 = 0.35;

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

fn is_usage_metric(name: &str) -> bool {
    let t = metrics::tokens(name);
    let has = |w: &[&str]| t.iter().any(|x| w.contains(&x.as_str()));
    has(&["cpu", "memory", "mem"]) && !has(&["pressure", "waiting", "steal", "throttled", "limit"])
}

fn is_pressure_metric(name: &str) -> bool {
    let t = metrics::tokens(name);
    let has = |w: &[&str]| t.iter().any(|x| w.contains(&x.as_str()));
    has(&["pressure", "waiting", "steal", "throttled"]) && has(&["cpu", "io", "memory"])
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

/// Deviations: from the raw series when present (they carry persistence), else the stage's
/// precomputed anomalies; only the significant ones.
pub(super) fn deviations(alert: &Alert, ctx: &ContextBundle) -> Vec<Deviation> {
    let at = alert.timestamp;
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
    devs
}

/// Every service the evidence mentions, and the alerted one.
pub(super) fn universe(alert: &Alert, ctx: &ContextBundle, graph: &Graph) -> BTreeSet<String> {
    let mut universe: BTreeSet<String> = ctx.services.iter().cloned().collect();
    universe.extend(graph.services().cloned());
    universe.extend(ctx.metrics.iter().map(|m| m.service.clone()));
    universe.extend(ctx.anomalies.iter().map(|m| m.service.clone()));
    universe.extend(ctx.logs.iter().map(|l| l.service.clone()));
    universe.extend(ctx.deployments.iter().map(|d| d.service.clone()));
    universe.extend(alert.service.clone());
    universe.retain(|s| !s.trim().is_empty());
    universe
}

/// Weight kept by a deviation that was over before the incident began: the alert is about
/// what went wrong from its onset on, and a spike that came and went minutes earlier is an
/// older story (real incidents overlap: the previous one is often still inside the window).
const OVER_BEFORE_ONSET: f64 = 0.25;

/// Whether the series was last out of its band before `onset`, and is back in it now.
fn over_before(d: &Deviation, onset: Timestamp) -> bool {
    if d.profile.is_empty() || super::onset::current_start(d).is_some() {
        return false;
    }
    let last_out = d
        .profile
        .iter()
        .rev()
        .find(|p| p.1 >= metrics::BAND_SCORE)
        .map(|p| p.0);
    last_out.is_some_and(|t| t < onset.timestamp())
}

/// Per service, its significant deviations, strongest first, combined per kind of metric.
pub(super) fn from_metrics(
    universe: &BTreeSet<String>,
    devs: Vec<Deviation>,
    alert_class: Option<metrics::SymptomClass>,
    onset: Timestamp,
) -> BTreeMap<String, Features> {
    let mut features: BTreeMap<String, Features> = universe
        .iter()
        .map(|s| (s.clone(), Features::default()))
        .collect();
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
        if over_before(&d, onset) {
            w *= OVER_BEFORE_ONSET;
        }
        let f = features.entry(a.service.clone()).or_default();
        if kind == MetricKind::Symptom && metrics::is_client_side(&a.metric) {
            f.waits_on_callees = f.waits_on_callees.max(w);
            w *= CLIENT_SIDE_OWN;
        }
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
        // Only clear, lasting deviations date the service: a weak level shift (a capacity
        // setting that differs from last week) is "different", not "started failing".
        // Traffic follows callers and users, so it does not date a failure either.
        if d.persistence >= 0.3
            && a.score >= 2.0 * metrics::SIGNIFICANT_SCORE
            && kind != MetricKind::Traffic
        {
            // The excursion still running dates the service, not an earlier one that is over.
            let dated = super::onset::current_start(&d).or(a.onset);
            if let Some(o) = dated {
                f.onset = Some(f.onset.map_or(o, |x: Timestamp| x.min(o)));
            }
        }
        f.devs.push((w, d));
    }
    for f in features.values_mut() {
        f.devs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut cause, mut symptom, mut traffic, mut other) = (vec![], vec![], vec![], vec![]);
        for (w, d) in &f.devs {
            match metrics::metric_kind(&d.anomaly.metric) {
                MetricKind::Cause => cause.push(*w),
                MetricKind::Symptom => symptom.push(*w),
                MetricKind::Traffic => traffic.push(*w),
                MetricKind::Other => other.push(*w),
            }
        }
        f.cause = combine(cause);
        f.symptom = combine(symptom);
        f.traffic = combine(traffic);
        f.other = combine(other);
    }
    features
}

/// Weight a service's own client-side latency keeps as evidence against itself: it waits on
/// its callees, and is slow itself only as far as its server side says so.
const CLIENT_SIDE_OWN: f64 = 0.3;

/// Callers' waiting, handed to what they call: each callee of a waiting caller gets an equal
/// share of that caller's client-side latency; several callers waiting add up (a service all
/// its callers wait on is likelier the slow one than a callee of one of them).
pub(super) fn add_callers_wait(features: &mut BTreeMap<String, Features>, graph: &Graph) {
    let mut shares: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (svc, f) in features.iter() {
        if f.waits_on_callees <= 0.0 {
            continue;
        }
        let callees: Vec<&String> = graph.callees(svc).collect();
        for c in &callees {
            shares
                .entry((*c).clone())
                .or_default()
                .push(f.waits_on_callees / callees.len() as f64);
        }
    }
    for (svc, v) in shares {
        features.entry(svc).or_default().callers_wait = combine(v).min(1.0);
    }
}

/// What the logs say of each service itself, and who is named in others' problem lines.
pub(super) fn add_logs(features: &mut BTreeMap<String, Features>, findings: &LogFindings) {
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
}

// Deployments: closer before the onset is stronger; long before still counts a little
// (leaks and dark launches bite later); after the onset it cannot be the cause.
pub(super) fn add_deployments(
    features: &mut BTreeMap<String, Features>,
    deployments: &[Deployment],
    onset: Timestamp,
) {
    for d in deployments {
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
}

// Resource contention: a service starved of a shared resource (CPU pressure) while its own
// usage did not rise, next to a service whose usage surged at the same time.
pub(super) fn add_contention(features: &mut BTreeMap<String, Features>) {
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
}

/// A service's own evidence, and what it receives from others' (blame, contention).
///
/// Being named in others' errors is a suspicion, not evidence: a service whose own metrics are
/// in the bundle and stay quiet keeps only a quarter of it (callers name what they called when
/// they failed, whoever failed). One with no telemetry at all (an external API) keeps all of it,
/// since its callers are the only witnesses.
pub(super) fn totals(features: &mut BTreeMap<String, Features>, observed: &BTreeSet<String>) {
    for (svc, f) in features.iter_mut() {
        f.own = f.cause + 0.6 * f.symptom + 0.25 * f.traffic + 0.3 * f.other + 0.9 * f.logs;
        if observed.contains(svc) {
            let agree = (f.own / CORROBORATES).min(1.0);
            f.blamed *= 0.25 + 0.75 * agree;
        }
        f.received = 0.9 * f.blamed + f.contention + CALLERS_WAIT * f.callers_wait;
    }
}

/// Weight of callers' waiting in a callee's evidence, as a symptom's (0.6) discounted for being
/// shared among every callee.
pub(super) const CALLERS_WAIT: f64 = 0.5;

/// Own evidence from which a service's signals fully back what others' errors say of it.
const CORROBORATES: f64 = 0.3;

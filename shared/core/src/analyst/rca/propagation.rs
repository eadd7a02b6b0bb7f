//! Phase 3, propagation: symptoms travel from callee to caller, so the graph is read as
//! explanations. A callee explains a caller in proportion to how much of the caller's change
//! it matches in the same measurement (failed requests for availability, time added over all
//! requests for a mean latency, the series' unit otherwise), through chains of anomalous
//! services only, and only if it did not start later than the caller (to within a sample).
//! A service explained by something below it is discounted; the deepest explanation gets the
//! credit for every anomalous caller it accounts for, the alerted service most of all; an
//! anomalous service that no anomalous chain links to the alert is another story.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Duration;

use super::features::Features;
use super::onset::sample_step;
use super::ANOMALOUS;
use crate::analyst::graph::Graph;
use crate::analyst::logs::LogFindings;
use crate::analyst::metrics::{self, MetricKind, SymptomClass};
use crate::domain::*;

/// How far a symptom series moved: in its own unit (or failed requests), and as time added
/// over all requests for a mean latency with a known request count.
type Moved = (f64, Option<f64>);

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

/// A mean latency (not a percentile): what callees add to it adds up.
fn is_mean_latency(name: &str) -> bool {
    let t = metrics::tokens(name);
    let has = |w: &[&str]| t.iter().any(|x| w.contains(&x.as_str()));
    metrics::symptom_class(name) == Some(metrics::SymptomClass::Slowness)
        && has(&["avg", "mean", "average"])
}

/// A callee deviating at `callee` can explain a caller deviating at `caller`: not more than
/// `slack` later (a few minutes, or one sample when metrics are coarser than that).
fn timely(callee: Option<Timestamp>, caller: Option<Timestamp>, slack: Duration) -> bool {
    match (callee, caller) {
        (Some(c), Some(s)) => c <= s + slack,
        _ => true,
    }
}

/// Reads the graph as explanations: who is explained by an anomalous service below it, whom
/// each service would explain above it, and which anomalous services no anomalous chain links
/// to the alert.
pub(super) fn propagate(
    features: &mut BTreeMap<String, Features>,
    graph: &Graph,
    findings: &LogFindings,
    alert: &Alert,
    alert_class: Option<SymptomClass>,
    ctx: &ContextBundle,
) {
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
        for (c, depth) in walk(graph, s, 3, Direction::Down, &anomalous) {
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
            let reached = walk(graph, origin, 4, Direction::Up, &anomalous);
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
}

//! Root-cause ranking from the evidence bundle.
//!
//! Each service gets evidence of its own (metric deviations weighted by what the metric means,
//! a burst of new problem log lines) and evidence received (callers naming it in their errors,
//! a co-timed resource surge next to a starved neighbour). Symptoms travel from callee to
//! caller, so a service whose anomalous downstream explains it is discounted, and one that
//! explains anomalous callers gets credit. Deployments shortly before the onset and being first
//! to deviate add weight only to services that show evidence themselves: a deploy alone proves
//! nothing. Confidence is computed separately, from how many independent kinds of evidence agree
//! and how clearly the first candidate leads the second.

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
    score: f64,
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

fn is_pressure_metric(name: &str) -> bool {
    let t = metrics::tokens(name);
    let has = |w: &[&str]| t.iter().any(|x| w.contains(&x.as_str()));
    has(&["pressure", "waiting", "steal", "throttled"]) && has(&["cpu", "io", "memory"])
}

/// A callee deviating at `callee` can explain a caller deviating at `caller`: not more than a
/// few minutes later (metrics are sampled per minute or coarser).
fn timely(callee: Option<Timestamp>, caller: Option<Timestamp>) -> bool {
    match (callee, caller) {
        (Some(c), Some(s)) => c <= s + Duration::minutes(3),
        _ => true,
    }
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
    let mut devs: Vec<Deviation> = ctx
        .metrics
        .iter()
        .filter_map(|s| metrics::deviation(s, at))
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

    for d in devs {
        let a = &d.anomaly;
        let kind = metrics::metric_kind(&a.metric);
        // Kinds are weighted later (cause 1, symptom 0.6, traffic 0.25); here only how far
        // and how lastingly the series moved.
        let mut w = saturate(a.score) * (0.4 + 0.6 * d.persistence);
        if a.baseline_estimated {
            w *= 0.7;
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
            f.contention = f.contention.max(0.8 * w);
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

    // Explanation by an anomalous downstream service that deviated no later than this one.
    let raw: HashMap<String, (f64, Option<Timestamp>)> = features
        .iter()
        .map(|(s, f)| (s.clone(), (f.own + f.received, f.onset)))
        .collect();
    let names: Vec<String> = features.keys().cloned().collect();
    for s in &names {
        let (own_s, onset_s) = {
            let f = &features[s];
            (f.own, f.onset)
        };
        if own_s + features[s].received <= 0.0 {
            continue;
        }
        let mut best: (f64, Option<String>) = (0.0, None);
        for (c, depth) in graph.downstream(s, 2) {
            let Some(&(raw_c, onset_c)) = raw.get(&c) else {
                continue;
            };
            if raw_c < 0.3 {
                continue;
            }
            let named = findings
                .blame
                .get(&c)
                .is_some_and(|b| b.by.contains_key(s.as_str()));
            // A caller naming the callee in its errors beats minute-resolution timing.
            if !named && !timely(onset_c, onset_s) {
                continue;
            }
            let dominance = raw_c / (raw_c + own_s);
            let x = ((dominance + if named { 0.3 } else { 0.0 }).min(1.0))
                * if depth == 1 { 1.0 } else { 0.8 };
            if x > best.0 {
                best = (x, Some(c.clone()));
            }
        }
        let f = features.get_mut(s).expect("exists");
        if best.0 > f.explained {
            f.explained = best.0;
            f.explained_by = best.1;
        }
    }

    // Which anomalous callers each service would explain.
    for s in &names {
        let onset_s = features[s].onset;
        let mut ex: Vec<String> = graph
            .upstream(s, 2)
            .into_iter()
            .filter(|(u, _)| {
                let named = findings
                    .blame
                    .get(s)
                    .is_some_and(|b| b.by.contains_key(u.as_str()));
                raw.get(u)
                    .is_some_and(|(r, o)| *r >= 0.3 && (named || timely(onset_s, *o)))
            })
            .map(|(u, _)| u)
            .collect();
        let f = features.get_mut(s).expect("exists");
        // Only a service with evidence of its own explains anything.
        if f.own + f.received < 0.3 {
            continue;
        }
        ex.retain(|u| !f.explains.contains(u));
        f.explains.extend(ex);
    }

    let earliest = features
        .values()
        .filter(|f| f.own + f.received >= 0.3)
        .filter_map(|f| f.onset)
        .min();
    let alerted = alert.service.clone().unwrap_or_default();
    for (s, f) in features.iter_mut() {
        let x = f.explained;
        let evidence = f.cause * (1.0 - 0.2 * x)
            + 0.6 * f.symptom * (1.0 - 0.7 * x)
            + 0.25 * f.traffic
            + 0.3 * f.other
            + 0.9 * f.logs * (1.0 - 0.4 * x)
            + 0.9 * f.blamed * (1.0 - 0.5 * x)
            + f.contention;
        let gate = ((f.own + f.received) / 0.8).min(1.0);
        let onset_bonus = match (earliest, f.onset) {
            (Some(e), Some(o)) => (-(minutes(o - e).max(0.0)) / 5.0).exp(),
            _ => 0.0,
        };
        let explains = f.explains.len().min(3) as f64;
        f.score = evidence
            + gate * (0.9 * f.deploy + 0.3 * onset_bonus + 0.1 * explains)
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
    let graph_support = if !tf.explains.is_empty() {
        1.0
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

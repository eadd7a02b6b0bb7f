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
//!
//! The analysis runs in phases, one module each: [`onset`] (when it began), [`features`] (what
//! each service's evidence adds up to), [`propagation`] (what explains what along the graph),
//! [`scoring`] (the ranking), then [`confidence`], [`fault`] and [`explain`] for the
//! hypothesis.

pub mod calibration;
mod confidence;
mod explain;
pub mod fault;
mod features;
mod onset;
mod propagation;
mod scoring;

use std::collections::BTreeMap;

use chrono::Duration;

use self::features::Features;
use crate::analyst::graph::Graph;
use crate::analyst::logs::{self, LogFindings};
use crate::analyst::metrics;
use crate::analyst::symptoms::AlertSymptoms;
use crate::analyst::text::clean;
use crate::domain::*;

pub use calibration::Calibration;
pub use fault::{fault_phrase, FAULT_TYPES};

/// What the alert is about: slowness or failures (`None` when both or neither).
fn alert_symptom(alert: &Alert) -> Option<metrics::SymptomClass> {
    let said = AlertSymptoms::read(&crate::analyst::triage::alert_text(alert));
    match (said.slowness, said.failing()) {
        (true, false) => Some(metrics::SymptomClass::Slowness),
        (false, true) => Some(metrics::SymptomClass::Failure),
        _ => None,
    }
}

/// The only evidence line of the answer given when nothing points anywhere.
const NO_EVIDENCE: &str = "alerted service; no evidence gathered";

/// Whether `h` is the offline analyst's no-evidence answer, whose fixed low confidence is not
/// the analysis' figure and so is neither calibrated nor fitted on.
pub fn is_no_evidence_answer(h: &RootCauseHypothesis) -> bool {
    h.analyst == "offline"
        && h.candidates.len() == 1
        && h.candidates[0].evidence.first().map(String::as_str) == Some(NO_EVIDENCE)
}

/// A service counts as anomalous (for explanation chains) from this much evidence on.
const ANOMALOUS: f64 = 0.12;

struct Analysis {
    features: BTreeMap<String, Features>,
    onset: Timestamp,
    onset_known: bool,
    findings: LogFindings,
    significant: usize,
    all_estimated: bool,
}

fn analyse(alert: &Alert, ctx: &ContextBundle) -> Analysis {
    let graph = Graph::new(&ctx.topology);
    let window = onset::window_of(alert, ctx);
    let devs = features::deviations(alert, ctx);
    let significant = devs.len();
    let all_estimated = !devs.is_empty() && devs.iter().all(|d| d.anomaly.baseline_estimated);
    let universe = features::universe(alert, ctx, &graph);
    let onset = onset::incident_onset(&devs, alert.timestamp);
    let services: Vec<String> = universe.iter().cloned().collect();
    let findings = logs::analyse(&ctx.logs, onset.first_move, window, &services, &graph);

    let alert_class = alert_symptom(alert);
    // Deviations over before the onset are older stories; an onset the metrics place after
    // the alert (a late window) still leaves what came before the alert in this incident.
    let current_from = onset.at.min(alert.timestamp);
    let mut features = features::from_metrics(&universe, devs, alert_class, current_from);
    features::add_logs(&mut features, &findings);
    features::add_deployments(&mut features, &ctx.deployments, onset.at);
    features::add_contention(&mut features);
    features::add_callers_wait(&mut features, &graph);
    let observed: std::collections::BTreeSet<String> =
        ctx.metrics.iter().map(|m| m.service.clone()).collect();
    features::totals(&mut features, &observed);
    propagation::propagate(&mut features, &graph, &findings, alert, alert_class, ctx);
    scoring::score(
        &mut features,
        ctx,
        alert.service.as_deref().unwrap_or_default(),
    );
    Analysis {
        features,
        onset: onset.at,
        onset_known: onset.known,
        findings,
        significant,
        all_estimated,
    }
}

/// Ranks root-cause candidates. Never fails: with no evidence at all it names the alerted
/// service with confidence ≤ 0.2, so the pipeline widens the window and then escalates
/// instead of treating "nothing found" as an error.
pub fn rca(alert: &Alert, triage: &TriageResult, ctx: &ContextBundle) -> RootCauseHypothesis {
    rca_with(alert, triage, ctx, Calibration::shipped())
}

/// [`rca`] with confidence read through `calibration` instead of the shipped map
/// ([`Calibration::identity`] gives the analysis' raw confidence, which the eval fits on).
pub fn rca_with(
    alert: &Alert,
    triage: &TriageResult,
    ctx: &ContextBundle,
    calibration: &Calibration,
) -> RootCauseHypothesis {
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
                evidence: vec![NO_EVIDENCE.into()],
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
    let leaf = graph.callees(top).next().is_none();
    let has_callers = graph.callers(top).next().is_some();
    let fault = fault::fault_of(top, tf, &a, leaf, has_callers);

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
            fault: fault::fault_of(svc, f, &a, l, c),
            evidence: explain::evidence_lines(svc, f, &a),
        });
    }

    let (raw, notes) = confidence::confidence(top, tf, &ranked, &a, &graph, &alerted, ctx);
    // The no-evidence answer above keeps its fixed low figure: there is nothing to calibrate.
    let confidence = calibration.apply(raw);
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
        explain::capitalise(fault_phrase(&fault)),
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

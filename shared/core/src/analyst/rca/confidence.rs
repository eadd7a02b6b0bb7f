//! How sure the first candidate is: how many independent kinds of evidence agree, and how
//! clearly it leads the second.

use chrono::Duration;

use super::features::Features;
use super::Analysis;
use crate::analyst::graph::Graph;
use crate::analyst::text::clean;
use crate::domain::*;

/// The confidence of `top` (0.05..0.95, two decimals) and notes on what lowered it.
pub(super) fn confidence(
    top: &String,
    tf: &Features,
    ranked: &[(&String, &Features)],
    a: &Analysis,
    graph: &Graph,
    alerted: &str,
    ctx: &ContextBundle,
) -> (f64, Vec<String>) {
    let s1 = tf.score.max(1e-9);
    let s2 = ranked.get(1).map(|r| r.1.score).unwrap_or(0.0);
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
    // How much agrees (0..1): kinds of evidence that point the same way.
    let support = (0.25 * metric_support
        + 0.15 * log_support
        + 0.15 * blame_support
        + 0.15 * deploy_support
        + 0.1 * graph_support
        + if first { 0.1 } else { 0.0 })
        / 0.9;
    // How clearly it leads (0..1): the share of its score the second candidate lacks. Of the
    // two this is what separates right answers from wrong ones within a system, and what
    // means the same thing from one system to another: the same evidence total reads as
    // strong on a quiet system and weak on a noisy one, but a rival close behind is a real
    // doubt on both (measured on the development sets: AUROC of the lead alone 0.70-0.92 per
    // set, of the previous evidence-total confidence 0.51-0.73). Both must hold, a clear lead
    // on thin evidence or much evidence with a rival close behind is doubt, hence the
    // geometric mean, which either weak factor pulls down.
    let lead = (1.0 - s2 / s1).clamp(0.0, 1.0);
    let mut conf = 0.1 + 0.85 * (support * lead).sqrt();
    let mut notes = Vec::new();
    if lead < 0.2 {
        if let Some((rival, _)) = ranked.get(1) {
            notes.push(format!(
                "{} scores almost as high ({:.2} vs {:.2})",
                clean(rival, 40),
                s2,
                tf.score
            ));
        }
    }
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
    (confidence, notes)
}

//! BARO, the RCAEval baseline (Pham et al., "BARO: Robust Root Cause Analysis for
//! Microservices via Multivariate Bayesian Online Change Point Detection", FSE 2024), as its
//! root-cause ranking step is usually run: every metric series is scaled with a robust scaler
//! fitted on the normal period (median and inter-quartile range, an IQR of 0 counting as 1),
//! scored by the largest scaled value in the anomalous window, and services are ranked by the
//! first appearance of one of their series in the list of scores, highest first.
//!
//! It reads the same [`ContextBundle`] as the offline analyst, so `iras eval --analyst baro`
//! shows the baseline beside ours on the same evidence. It is deliberately naive: no notion of
//! which way a metric is bad, of broken baselines or of the call graph. That is the point of a
//! baseline.

use async_trait::async_trait;

use super::text::clean;
use crate::domain::*;
use crate::ports::{Analyst, AnalystError, PostMortemFacts, PostMortemNarrative};

/// One series' BARO score.
#[derive(Debug, Clone, PartialEq)]
pub struct BaroScore {
    pub service: String,
    pub metric: String,
    /// max over the window of (x - median) / IQR of the baseline.
    pub score: f64,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    // Linear interpolation between closest ranks, as numpy's default (what RobustScaler uses).
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The BARO score of one series; `None` when it has no usable baseline or window point.
pub fn score_series(series: &MetricSeries) -> Option<f64> {
    let mut base: Vec<f64> = series
        .baseline
        .iter()
        .filter_map(|(_, v)| v.filter(|x| x.is_finite()))
        .collect();
    if base.is_empty() {
        return None;
    }
    base.sort_by(f64::total_cmp);
    let median = quantile(&base, 0.5);
    let iqr = quantile(&base, 0.75) - quantile(&base, 0.25);
    let scale = if iqr.abs() < f64::EPSILON { 1.0 } else { iqr };
    series
        .points
        .iter()
        .filter_map(|(_, v)| v.filter(|x| x.is_finite()))
        .map(|x| (x - median) / scale)
        .reduce(f64::max)
}

/// Every scorable series, highest score first (ties keep the bundle's order).
pub fn scores(ctx: &ContextBundle) -> Vec<BaroScore> {
    let mut out: Vec<BaroScore> = ctx
        .metrics
        .iter()
        .filter_map(|m| {
            score_series(m).map(|score| BaroScore {
                service: m.service.clone(),
                metric: m.name.clone(),
                score,
            })
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Services in the order their first series appears in [`scores`], with that series' score.
pub fn rank(ctx: &ContextBundle) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for s in scores(ctx) {
        if !out.iter().any(|(svc, _)| *svc == s.service) {
            out.push((s.service, s.score));
        }
    }
    out
}

/// BARO as an [`Analyst`]: its own ranking for RCA, the offline analyst for everything else.
#[derive(Debug, Clone, Default)]
pub struct BaroAnalyst {}

impl BaroAnalyst {
    pub fn new() -> Self {
        BaroAnalyst {}
    }
}

/// BARO's ranking as a hypothesis. BARO has no notion of confidence; the one given here is
/// the relative margin of the first service over the second (not calibrated).
pub fn rca(alert: &Alert, ctx: &ContextBundle) -> RootCauseHypothesis {
    let ranked = rank(ctx);
    let by_service = scores(ctx);
    let Some((top, s1)) = ranked.first().cloned() else {
        let alerted = alert.service.clone().unwrap_or_else(|| "unknown".into());
        return RootCauseHypothesis {
            primary_cause: "BARO: no metric series with a baseline to score".into(),
            root_cause_service: alerted.clone(),
            fault: "unknown".into(),
            candidates: vec![RootCauseCandidate {
                service: alerted,
                score: 0.0,
                fault: "unknown".into(),
                evidence: vec![],
            }],
            contributing_factors: vec![],
            evidence: vec![],
            confidence: 0.05,
            alternatives: vec![],
            suspect_deployment: None,
            analyst: "baro".into(),
        };
    };
    let s2 = ranked.get(1).map(|r| r.1).unwrap_or(0.0);
    let confidence = if s1 > 0.0 {
        (1.0 - s2.max(0.0) / s1).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let candidates: Vec<RootCauseCandidate> = ranked
        .iter()
        .take(10)
        .map(|(svc, score)| RootCauseCandidate {
            service: svc.clone(),
            score: (score * 100.0).round() / 100.0,
            fault: "unknown".into(),
            evidence: by_service
                .iter()
                .filter(|s| s.service == *svc)
                .take(3)
                .map(|s| format!("{} robust score {:.1}", clean(&s.metric, 60), s.score))
                .collect(),
        })
        .collect();
    RootCauseHypothesis {
        primary_cause: format!(
            "BARO: {} has the most anomalous series (robust score {:.1})",
            clean(&top, 60),
            s1
        ),
        root_cause_service: top,
        fault: "unknown".into(),
        evidence: candidates[0].evidence.clone(),
        alternatives: candidates
            .iter()
            .skip(1)
            .take(3)
            .map(|c| format!("{} (score {:.2})", clean(&c.service, 60), c.score))
            .collect(),
        candidates,
        contributing_factors: vec![],
        confidence: (confidence * 100.0).round() / 100.0,
        suspect_deployment: None,
        analyst: "baro".into(),
    }
}

#[async_trait]
impl Analyst for BaroAnalyst {
    fn name(&self) -> String {
        "baro".into()
    }

    async fn triage(&self, alert: &Alert) -> Result<TriageResult, AnalystError> {
        Ok(super::triage::triage(alert))
    }

    async fn rca(
        &self,
        alert: &Alert,
        _triage: &TriageResult,
        context: &ContextBundle,
    ) -> Result<RootCauseHypothesis, AnalystError> {
        Ok(rca(alert, context))
    }

    async fn plan(
        &self,
        alert: &Alert,
        hypothesis: &RootCauseHypothesis,
        context: &ContextBundle,
    ) -> Result<RemediationPlan, AnalystError> {
        Ok(super::plan::plan(alert, hypothesis, context))
    }

    async fn postmortem(
        &self,
        facts: &PostMortemFacts<'_>,
    ) -> Result<PostMortemNarrative, AnalystError> {
        Ok(super::postmortem::postmortem(facts))
    }
}

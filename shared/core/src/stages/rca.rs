//! Rca: the root-cause hypothesis for one attempt, and the flags the `IsConfident` Choice reads.

use super::*;
use crate::usage;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RcaOutput {
    pub attempt: u32,
    pub confidence: f64,
    /// Confidence cleared `RCA_CONFIDENCE_THRESHOLD`.
    pub confident: bool,
    /// Not confident and no attempts left (`RCA_MAX_ATTEMPTS`).
    pub exhausted: bool,
    pub root_cause_service: String,
    pub summary: String,
}

pub async fn rca(deps: &Deps, input: &AttemptInput) -> Result<RcaOutput, StageError> {
    let incident = load(deps, &input.incident_id).await?;
    let attempts = deps.store.attempts(&input.incident_id).await?;
    let Some(mut attempt) = attempts.into_iter().find(|a| a.attempt == input.attempt) else {
        return Err(StageError::ContextMissing(format!(
            "no evidence gathered for attempt {}",
            input.attempt
        )));
    };
    let hypothesis = match attempt.hypothesis.clone() {
        Some(h) => h,
        None => {
            let triage = incident.triage.clone().ok_or_else(|| {
                StageError::InvalidInput("rca before triage: incident has no triage".into())
            })?;
            let (h, calls) =
                usage::collect(deps.analyst.rca(&incident.alert, &triage, &attempt.context)).await;
            keep_calls(deps, &input.incident_id, calls).await?;
            let mut h = h?;
            sanitize_hypothesis(&mut h, &incident, &attempt.context);
            attempt.hypothesis = Some(h.clone());
            deps.store.put_attempt(&input.incident_id, attempt).await?;
            h
        }
    };
    let threshold = deps.config.rca_confidence_threshold;
    let confident = hypothesis.confidence >= threshold;
    let exhausted = !confident && input.attempt >= deps.config.rca_max_attempts;
    let now = deps.clock.now();
    let n = input.attempt;
    let h = hypothesis.clone();
    mutate(deps, &input.incident_id, |inc| {
        let key = format!("rca:{n}");
        if inc.has_event(&key) {
            return Ok(false);
        }
        inc.rca_attempts = inc.rca_attempts.max(n);
        let verdict = if confident {
            "confident".to_string()
        } else if exhausted {
            "below threshold, no attempts left".to_string()
        } else {
            format!("below threshold {threshold:.2}, widening the evidence window")
        };
        inc.record(
            now,
            key,
            "rca",
            format!(
                "attempt {n}: {} (confidence {:.2}, {verdict})",
                h.primary_cause, h.confidence
            ),
        );
        inc.hypothesis = Some(h.clone());
        Ok(true)
    })
    .await?;
    Ok(RcaOutput {
        attempt: n,
        confidence: hypothesis.confidence,
        confident,
        exhausted,
        summary: format!(
            "{} · confidence {:.2}{}",
            hypothesis.root_cause_service,
            hypothesis.confidence,
            if confident { "" } else { " (below threshold)" }
        ),
        root_cause_service: hypothesis.root_cause_service,
    })
}

/// An analyst may name a service nobody has heard of; the record must not pretend otherwise.
fn sanitize_hypothesis(h: &mut RootCauseHypothesis, incident: &Incident, ctx: &ContextBundle) {
    h.confidence = clamp_confidence(h.confidence);
    let known = |s: &str| {
        incident.service.as_deref() == Some(s)
            || ctx.services.iter().any(|x| x == s)
            || ctx.topology.iter().any(|e| e.from == s || e.to == s)
            || ctx.anomalies.iter().any(|a| a.service == s)
            || ctx.logs.iter().any(|l| l.service == s)
            || ctx.deployments.iter().any(|d| d.service == s)
    };
    if !known(&h.root_cause_service) {
        h.contributing_factors.push(format!(
            "the analyst named `{}`, which appears nowhere in the evidence; confidence capped",
            h.root_cause_service
        ));
        h.confidence = h.confidence.min(0.2);
    }
    for c in h.candidates.iter_mut() {
        c.score = if c.score.is_finite() { c.score } else { 0.0 };
    }
}

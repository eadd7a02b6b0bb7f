//! Verify: after the plan is applied (and the state machine's `Wait`), read the incident's
//! symptom series again through the same evidence sources and compare them with what was
//! anomalous. Recovered resolves the incident as verified; still anomalous after
//! `VERIFY_ATTEMPTS` reads sends the state machine to roll the plan back and escalate.

use serde::{Deserialize, Serialize};

use super::{load, mutate_first, tell, Deps, StageError};
use crate::domain::*;
use crate::executor::DRY_RUN;
use crate::ports::*;

/// The symptoms read again: the strongest anomalies of the alerted and root-cause services.
const MAX_SYMPTOMS: usize = 3;
/// Recovered once at most this share of the anomalous excursion from baseline remains.
const RECOVERED_SHARE: f64 = 0.25;

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyInput {
    pub incident_id: IncidentId,
    #[serde(default = "one")]
    pub attempt: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyOutput {
    pub attempt: u32,
    pub outcome: VerificationOutcome,
    /// The state machine's next `Wait` before another read.
    pub wait_seconds: u64,
    pub summary: String,
}

/// How far `v` lies from `baseline` in the direction that is bad for this metric.
fn excess(direction: BadDirection, v: f64, baseline: f64) -> f64 {
    match direction {
        BadDirection::Up => v - baseline,
        BadDirection::Down => baseline - v,
        BadDirection::Either => (v - baseline).abs(),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The anomalies worth re-reading, strongest first: the alerted service's and the root
/// cause's, or the strongest overall when neither has one.
pub fn symptoms(incident: &Incident, context: &ContextBundle) -> Vec<MetricAnomaly> {
    let wanted: Vec<&str> = incident
        .service
        .iter()
        .map(String::as_str)
        .chain(
            incident
                .hypothesis
                .iter()
                .map(|h| h.root_cause_service.as_str()),
        )
        .collect();
    let mut picked: Vec<MetricAnomaly> = context
        .anomalies
        .iter()
        .filter(|a| wanted.contains(&a.service.as_str()))
        .filter(|a| excess(a.direction, a.current, a.baseline) > 0.0)
        .cloned()
        .collect();
    if picked.is_empty() {
        picked = context
            .anomalies
            .iter()
            .filter(|a| excess(a.direction, a.current, a.baseline) > 0.0)
            .cloned()
            .collect();
    }
    picked.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
    picked.truncate(MAX_SYMPTOMS);
    picked
}

/// One symptom against the samples read since the change.
pub fn check(a: &MetricAnomaly, series: &[MetricSeries], window: &EvidenceWindow) -> SymptomCheck {
    let (start, end) = (window.start.timestamp(), window.end.timestamp());
    let values: Vec<f64> = series
        .iter()
        .filter(|s| s.service == a.service && s.name == a.metric)
        .flat_map(|s| s.points.iter())
        .filter(|(t, _)| *t >= start && *t <= end)
        .filter_map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .collect();
    let samples = values.len();
    let since_change = median(values);
    let during = excess(a.direction, a.current, a.baseline);
    let recovered = since_change
        .is_some_and(|v| excess(a.direction, v, a.baseline) <= RECOVERED_SHARE * during);
    SymptomCheck {
        service: a.service.clone(),
        metric: a.metric.clone(),
        unit: a.unit.clone(),
        baseline: a.baseline,
        during_incident: a.current,
        since_change,
        samples,
        recovered,
    }
}

/// The outcome of one read: recovered only when the strongest symptom has samples and every
/// symptom with samples is back near its baseline.
pub fn judge(checks: &[SymptomCheck], last_attempt: bool) -> VerificationOutcome {
    let primary_seen = checks.first().is_some_and(|c| c.samples > 0);
    let all_ok = checks.iter().filter(|c| c.samples > 0).all(|c| c.recovered);
    if primary_seen && all_ok {
        return VerificationOutcome::Recovered;
    }
    if !last_attempt {
        return VerificationOutcome::Pending;
    }
    if checks.iter().all(|c| c.samples == 0) {
        VerificationOutcome::Unverified
    } else {
        VerificationOutcome::NotRecovered
    }
}

pub async fn verify(deps: &Deps, input: &VerifyInput) -> Result<VerifyOutput, StageError> {
    let id = &input.incident_id;
    let attempt = input.attempt.max(1);
    let wait_seconds = deps.config.verify_after_seconds;
    let incident = load(deps, id).await?;
    if let Some(v) = &incident.verification {
        // A retried invocation, or a read already made: answer what was recorded.
        if v.outcome != VerificationOutcome::Pending || v.attempts >= attempt {
            return Ok(VerifyOutput {
                attempt: v.attempts,
                outcome: v.outcome,
                wait_seconds,
                summary: v.headline(),
            });
        }
    }
    if incident.remediation != Some(RemediationOutcome::Applied) {
        return Err(StageError::InvalidInput(
            "verify before the plan was applied".into(),
        ));
    }
    let steps = deps.store.steps(id).await?;
    let applied: Vec<&StepRecord> = steps
        .iter()
        .filter(|r| r.phase == StepPhase::Apply && r.status == StepStatus::Succeeded)
        .collect();
    let now = deps.clock.now();
    let changed_nothing = !deps.config.executor.for_real() && !deps.executor.changes_systems();
    if changed_nothing || applied.iter().all(|r| r.executor == DRY_RUN) {
        let v = Verification {
            outcome: VerificationOutcome::Skipped,
            attempts: attempt,
            checks: Vec::new(),
            checked_at: now,
            note: format!("the {} executor changed nothing", deps.executor.name()),
        };
        record(deps, id, &v, now).await?;
        return Ok(VerifyOutput {
            attempt,
            outcome: v.outcome,
            wait_seconds,
            summary: v.headline(),
        });
    }
    let applied_at = applied
        .iter()
        .filter_map(|r| r.ended_at)
        .max()
        .unwrap_or(now);
    let context = deps
        .store
        .attempts(id)
        .await?
        .into_iter()
        .next_back()
        .map(|a| a.context)
        .unwrap_or_default();
    let symptoms = symptoms(&incident, &context);
    // The window ends where the state machine's waits say it does: with scaled-down waits
    // (tests, demos) the clock has not got there yet, on AWS `now` is already past it.
    let planned_end = applied_at
        + chrono::Duration::seconds((u64::from(attempt) * wait_seconds).min(86_400) as i64);
    let window = EvidenceWindow {
        start: applied_at,
        end: now.max(planned_end),
        deployments_since: applied_at,
    };
    let mut services: Vec<String> = symptoms.iter().map(|s| s.service.clone()).collect();
    services.sort();
    services.dedup();
    let query = EvidenceQuery {
        services,
        window,
        alert: incident.alert.clone(),
        since_change: Some(applied_at),
    };
    let mut series = Vec::new();
    let mut failed = Vec::new();
    for source in &deps.evidence.metrics {
        match tokio::time::timeout(deps.source_timeout, source.metrics(&query)).await {
            Ok(Ok(s)) => series.extend(s),
            Ok(Err(e)) => failed.push(format!("{}: {e}", source.name())),
            Err(_) => failed.push(format!("{}: timed out", source.name())),
        }
    }
    let checks: Vec<SymptomCheck> = symptoms
        .iter()
        .map(|a| check(a, &series, &window))
        .collect();
    let last = attempt >= deps.config.verify_attempts;
    let outcome = if checks.is_empty() && last {
        VerificationOutcome::Unverified
    } else {
        judge(&checks, last)
    };
    let mut note = String::new();
    if checks.is_empty() {
        note = "the investigation found no anomalous metric to read again".into();
    }
    if !failed.is_empty() {
        if !note.is_empty() {
            note.push_str("; ");
        }
        note.push_str(&format!("sources that failed: {}", failed.join(", ")));
    }
    let v = Verification {
        outcome,
        attempts: attempt,
        checks,
        checked_at: now,
        note,
    };
    record(deps, id, &v, now).await?;
    Ok(VerifyOutput {
        attempt,
        outcome,
        wait_seconds,
        summary: v.headline(),
    })
}

async fn record(
    deps: &Deps,
    id: &IncidentId,
    v: &Verification,
    now: Timestamp,
) -> Result<(), StageError> {
    let (stored, first) = mutate_first(deps, id, |inc| {
        if inc.verification.as_ref().is_some_and(|old| {
            old.outcome != VerificationOutcome::Pending || old.attempts >= v.attempts
        }) {
            return Ok(false);
        }
        let figures = v.figures();
        inc.record(
            now,
            format!("verify:{}", v.attempts),
            "verify",
            if figures.is_empty() {
                v.headline()
            } else {
                format!("{}: {figures}", v.headline())
            },
        );
        if matches!(
            v.outcome,
            VerificationOutcome::Recovered | VerificationOutcome::Skipped
        ) {
            inc.status = IncidentStatus::Resolved;
            inc.resolved_at = Some(now);
            inc.record(
                now,
                "resolved",
                "verify",
                match v.outcome {
                    VerificationOutcome::Recovered => {
                        "incident resolved: recovery verified".to_string()
                    }
                    _ => "incident resolved; recovery not verified (dry-run)".to_string(),
                },
            );
        }
        inc.verification = Some(v.clone());
        Ok(true)
    })
    .await?;
    // Said once it is settled: each attempt that still waits would only be noise.
    if first && v.outcome != VerificationOutcome::Pending {
        let figures = v.figures();
        let news = if figures.is_empty() {
            v.headline()
        } else {
            format!("{}: {figures}", v.headline())
        };
        tell(deps, &stored, &news).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anomaly(current: f64, baseline: f64) -> MetricAnomaly {
        MetricAnomaly {
            service: "checkout".into(),
            metric: "error_rate".into(),
            unit: "ratio".into(),
            current,
            baseline,
            score: 40.0,
            direction: BadDirection::Up,
            onset: None,
            baseline_estimated: false,
        }
    }

    fn window() -> EvidenceWindow {
        let t = chrono::DateTime::from_timestamp(1_000, 0).unwrap();
        EvidenceWindow {
            start: t,
            end: t + chrono::Duration::seconds(300),
            deployments_since: t,
        }
    }

    fn series(points: &[(i64, f64)]) -> Vec<MetricSeries> {
        vec![MetricSeries {
            service: "checkout".into(),
            name: "error_rate".into(),
            unit: "ratio".into(),
            points: points.iter().map(|(t, v)| (*t, Some(*v))).collect(),
            baseline: vec![],
        }]
    }

    #[test]
    fn an_error_rate_back_near_its_baseline_has_recovered() {
        let c = check(
            &anomaly(0.45, 0.002),
            &series(&[(1_060, 0.004), (1_120, 0.003)]),
            &window(),
        );
        assert!(c.recovered, "{c:?}");
        assert_eq!(c.samples, 2);
        assert_eq!(judge(&[c], false), VerificationOutcome::Recovered);
    }

    #[test]
    fn an_error_rate_still_high_has_not_and_samples_before_the_change_do_not_count() {
        let c = check(
            &anomaly(0.45, 0.002),
            &series(&[(900, 0.001), (1_060, 0.41), (1_120, 0.38)]),
            &window(),
        );
        assert!(!c.recovered);
        assert_eq!(c.samples, 2, "the sample before the change is not read");
        assert_eq!(
            judge(std::slice::from_ref(&c), false),
            VerificationOutcome::Pending
        );
        assert_eq!(judge(&[c], true), VerificationOutcome::NotRecovered);
    }

    #[test]
    fn no_samples_is_not_a_recovery() {
        let c = check(&anomaly(0.45, 0.002), &[], &window());
        assert_eq!(
            judge(std::slice::from_ref(&c), false),
            VerificationOutcome::Pending
        );
        assert_eq!(judge(&[c], true), VerificationOutcome::Unverified);
    }
}

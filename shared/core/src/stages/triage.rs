//! Triage: severity, affected services and the approval window.

use super::*;
use crate::usage;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriageOutput {
    pub severity: Severity,
    pub approval_timeout_seconds: u64,
    pub affected_services: Vec<String>,
    pub summary: String,
}

pub async fn triage(deps: &Deps, input: &IncidentRef) -> Result<TriageOutput, StageError> {
    let incident = load(deps, &input.incident_id).await?;
    let triage = match incident.triage.clone() {
        Some(t) => t,
        None => {
            let (t, calls) = usage::collect(deps.analyst.triage(&incident.alert)).await;
            keep_calls(deps, &input.incident_id, calls).await?;
            let mut t = t?;
            sanitize_triage(&mut t, &incident.alert);
            t
        }
    };
    let timeout = deps.config.approval_timeout_seconds(triage.severity);
    let now = deps.clock.now();
    let recorded = triage.clone();
    mutate(deps, &input.incident_id, |inc| {
        if inc.triage.is_some() {
            return Ok(false);
        }
        inc.severity = Some(recorded.severity);
        inc.approval_timeout_seconds = timeout;
        inc.record(
            now,
            "triage",
            "triage",
            format!(
                "triaged {} (confidence {:.2}): {}; affected: {}",
                recorded.severity,
                recorded.confidence,
                recorded.blast_radius,
                recorded.affected_services.join(", ")
            ),
        );
        inc.triage = Some(recorded.clone());
        Ok(true)
    })
    .await?;
    Ok(TriageOutput {
        severity: triage.severity,
        approval_timeout_seconds: timeout,
        summary: format!(
            "severity {} · affected {}",
            triage.severity,
            triage.affected_services.join(", ")
        ),
        affected_services: triage.affected_services,
    })
}

fn sanitize_triage(t: &mut TriageResult, alert: &Alert) {
    t.confidence = clamp_confidence(t.confidence);
    // No analyst may rate an incident less severe than the rules do: text in the alert (or a
    // model persuaded by it) can raise severity, never lower it.
    let rules = crate::analyst::triage(alert).severity;
    // The source's own severity, through the documented table, is a floor too.
    let floor = match alert.origin.as_ref().and_then(|o| o.severity) {
        Some(source) => rules.min(source),
        None => rules,
    };
    if t.severity > floor {
        t.reasoning.push_str(&format!(
            " [severity raised from {} to {} by the severity rules]",
            t.severity, floor
        ));
        t.severity = floor;
    }
    if let Some(s) = &alert.service {
        if !t.affected_services.contains(s) {
            t.affected_services.insert(0, s.clone());
        }
    }
    t.affected_services.retain(|s| !s.trim().is_empty());
    t.affected_services.dedup();
}

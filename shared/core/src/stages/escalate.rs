//! Escalate: page a person with the full context; every path that IRAS cannot finish ends here.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscalationInput {
    pub reason: EscalationReason,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscalateInput {
    pub incident_id: IncidentId,
    pub escalation: EscalationInput,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscalateOutput {
    pub reason: EscalationReason,
    pub paged_via: String,
    pub summary: String,
}

pub async fn escalate(deps: &Deps, input: &EscalateInput) -> Result<EscalateOutput, StageError> {
    let mut late_decision = None;
    if input.escalation.reason == EscalationReason::ApprovalTimeout {
        // The window closed: a decision recorded but never delivered did not take effect.
        late_decision = request_approval::decision_missed_window(deps, &input.incident_id).await?;
    } else {
        request_approval::decision_reached_pipeline(deps, &input.incident_id).await?;
    }
    let incident = load(deps, &input.incident_id).await?;
    if let Some(e) = &incident.escalation {
        // A retry after a crash between the record and the log.
        audit_or_warn(deps, &input.incident_id, escalation_draft(e)).await;
        return Ok(EscalateOutput {
            reason: e.reason,
            paged_via: e.paged_via.clone(),
            summary: format!("already escalated ({})", e.reason.as_str()),
        });
    }
    let reason = input.escalation.reason;
    let mut detail = reason.describe().to_string();
    if let Some(err) = &input.escalation.error {
        detail.push_str(&format!(": {err}"));
        if let Some(cause) = input.escalation.cause.as_deref().filter(|c| !c.is_empty()) {
            let cause: String = cause.chars().take(500).collect();
            detail.push_str(&format!(" ({cause})"));
        }
    }
    if reason == EscalationReason::ApprovalTimeout {
        if let Some(late) = late_decision.or_else(|| missed_window_note(&incident)) {
            // "Nobody decided" would be false beside the decision on the timeline.
            detail = format!("{}: {late}", reason.describe());
        }
    }
    if reason == EscalationReason::NoRemediation {
        if let Some(p) = &incident.plan {
            detail.push_str(&format!("; guidance: {}", p.summary));
        }
    }
    if matches!(
        reason,
        EscalationReason::NotRecovered | EscalationReason::Unverified
    ) {
        if let Some(v) = &incident.verification {
            let figures = v.figures();
            if !figures.is_empty() {
                detail.push_str(&format!("; {figures}"));
            }
        }
    }
    if reason == EscalationReason::LowConfidence {
        if let Some(h) = &incident.hypothesis {
            detail.push_str(&format!(
                "; best guess {} at confidence {:.2}",
                h.root_cause_service, h.confidence
            ));
        }
    }
    let escalation = Escalation {
        reason,
        detail,
        escalated_at: deps.clock.now(),
        paged_via: deps.pager.name(),
    };
    // Page before recording: a failed page is retried by the state machine, and the pager
    // deduplicates by incident id so a retry after a lost answer is still one page.
    deps.pager
        .page(&incident, &escalation)
        .await
        .map_err(|e| StageError::PagerFailed(e.to_string()))?;
    let now = deps.clock.now();
    let esc = escalation.clone();
    let stored = mutate(deps, &input.incident_id, |inc| {
        if inc.escalation.is_some() {
            return Ok(false);
        }
        inc.status = IncidentStatus::Escalated;
        inc.record(
            now,
            "escalate",
            "escalate",
            format!(
                "escalated ({}): {}; paged via {}",
                esc.reason.as_str(),
                esc.detail,
                esc.paged_via
            ),
        );
        inc.escalation = Some(esc.clone());
        Ok(true)
    })
    .await?;
    // The page went out already; a log that cannot be written now must not hold it back.
    audit_or_warn(deps, &input.incident_id, escalation_draft(&escalation)).await;
    let _ = deps
        .notifier
        .incident_updated(&stored, &format!("escalated: {}", escalation.detail))
        .await;
    announce(
        deps,
        lifecycle::INCIDENT_ESCALATED,
        &stored,
        serde_json::json!({"reason": reason, "detail": escalation.detail}),
    )
    .await;
    Ok(EscalateOutput {
        reason,
        paged_via: escalation.paged_via.clone(),
        summary: format!("{} · paged via {}", reason.as_str(), escalation.paged_via),
    })
}

/// A retried Escalate finds the late decision already taken back: its note is on the timeline.
fn missed_window_note(incident: &Incident) -> Option<String> {
    incident
        .timeline
        .iter()
        .find(|e| e.key == "approval:missed-window")
        .map(|e| e.message.clone())
}

/// The escalation's audit entry: one per incident, as the escalation itself.
pub(crate) fn escalation_draft(e: &Escalation) -> AuditDraft {
    AuditDraft {
        key: "escalation".into(),
        at: e.escalated_at,
        actor: "iras".into(),
        event: AuditEvent::Escalation {
            reason: e.reason.as_str().to_string(),
            detail: e.detail.clone(),
            paged_via: e.paged_via.clone(),
        },
    }
}

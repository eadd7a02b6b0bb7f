//! PostMortem: always written, from recorded timestamps and counts; the analyst only writes prose.

use super::*;
use crate::usage;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostMortemOutput {
    pub outcome: PostMortemOutcome,
    pub duration_seconds: i64,
    pub summary: String,
}

pub async fn postmortem(deps: &Deps, input: &IncidentRef) -> Result<PostMortemOutput, StageError> {
    // Every wait ends before this stage: a decision still marked pending was acted on.
    request_approval::decision_reached_pipeline(deps, &input.incident_id).await?;
    if let Some(pm) = deps.store.postmortem(&input.incident_id).await? {
        return Ok(PostMortemOutput {
            outcome: pm.outcome,
            duration_seconds: pm.duration_seconds,
            summary: "post-mortem already written".into(),
        });
    }
    let now = deps.clock.now();
    // An incident that reaches the post-mortem without being resolved was not finished by
    // IRAS: it is recorded as escalated, never as silently done.
    let incident = mutate(deps, &input.incident_id, |inc| {
        if inc.status.is_final() {
            return Ok(false);
        }
        if ended_by_recovery(inc) {
            // The source recovered and the wait was ended: closed, with nothing applied.
            inc.status = IncidentStatus::Resolved;
            inc.resolved_at = inc.source_recovered_at.or(Some(now));
            inc.record(
                now,
                "closed-recovered",
                "postmortem",
                "closed: the source recovered while the plan awaited approval; nothing was \
                 applied"
                    .into(),
            );
            return Ok(true);
        }
        inc.status = IncidentStatus::Escalated;
        inc.record(
            now,
            "closed-unfinished",
            "postmortem",
            "pipeline ended before the incident was resolved".into(),
        );
        Ok(true)
    })
    .await?;
    audit_catch_up(deps, &incident).await;
    let steps = deps.store.steps(&input.incident_id).await?;
    let attempts = deps.store.attempts(&input.incident_id).await?;
    let facts = PostMortemFacts {
        incident: &incident,
        steps: &steps,
        attempts: &attempts,
    };
    let (narrative, calls) = usage::collect(deps.analyst.postmortem(&facts)).await;
    let mut llm_calls = incident.llm_calls.clone();
    llm_calls.extend(calls.iter().cloned());
    keep_calls(deps, &input.incident_id, calls).await?;
    let (narrative, analyst) = match narrative {
        Ok(n) => (n, deps.analyst.name()),
        // The post-mortem is always written: fall back to the offline narrative.
        Err(e) => {
            tracing::warn!(incident = %incident.incident_id, error = %e, "analyst failed on the post-mortem; using the offline narrative");
            (
                OfflineAnalyst::default().postmortem(&facts).await?,
                "offline".to_string(),
            )
        }
    };
    let outcome = if ended_by_recovery(&incident) {
        PostMortemOutcome::Recovered
    } else if incident.status == IncidentStatus::Resolved {
        PostMortemOutcome::Resolved
    } else {
        PostMortemOutcome::Escalated
    };
    let resolution = match (outcome, incident.source_recovered_at) {
        // A fact from the record, whatever the narrative says.
        (PostMortemOutcome::Recovered, Some(at)) => format!(
            "The source reported recovery at {} while the plan awaited approval; \
             AUTO_CANCEL_ON_RECOVERY ended the wait and no remediation step was applied.",
            format_time(at)
        ),
        _ => narrative.resolution,
    };
    let started_at = incident.alert.timestamp.min(incident.created_at);
    let ended_at = incident
        .resolved_at
        .or(incident.escalation.as_ref().map(|e| e.escalated_at))
        .unwrap_or(now);
    let mut timeline = incident.timeline.clone();
    timeline.sort_by_key(|e| e.at);
    let count = |phase: StepPhase| {
        steps
            .iter()
            .filter(|s| s.phase == phase && s.status == StepStatus::Succeeded)
            .count()
    };
    let pm = PostMortem {
        incident_id: incident.incident_id.clone(),
        title: incident.title.clone(),
        severity: incident.severity,
        outcome,
        summary: narrative.summary,
        root_cause: narrative.root_cause,
        resolution,
        timeline,
        action_items: narrative.action_items,
        lessons: narrative.lessons,
        started_at,
        ended_at,
        duration_seconds: (ended_at - started_at).num_seconds(),
        rca_attempts: incident.rca_attempts,
        steps_applied: count(StepPhase::Apply),
        steps_rolled_back: count(StepPhase::Rollback),
        written_at: now,
        analyst,
        llm_usage: usage::LlmUsage::of(&llm_calls),
        verification: incident.verification.clone(),
    };
    deps.store.put_postmortem(&pm).await?;
    let (stored, first) = mutate_first(deps, &input.incident_id, |inc| {
        if inc.has_event("postmortem") {
            return Ok(false);
        }
        inc.record(
            now,
            "postmortem",
            "postmortem",
            "post-mortem written".into(),
        );
        Ok(true)
    })
    .await?;
    announce(
        deps,
        lifecycle::POSTMORTEM_PUBLISHED,
        &stored,
        serde_json::json!({"outcome": pm.outcome, "duration_seconds": pm.duration_seconds}),
    )
    .await;
    if first {
        // The last word in the thread, and the message's final state.
        let news = format!(
            "{}: post-mortem written after {}",
            stored.status.as_str(),
            format_duration(pm.duration_seconds)
        );
        tell(deps, &stored, &news).await;
    }
    if stored.status == IncidentStatus::Resolved {
        // Closes the page if one was ever opened; best effort, the record is what counts.
        let _ = deps.pager.resolve(&stored).await;
    }
    Ok(PostMortemOutput {
        outcome,
        duration_seconds: pm.duration_seconds,
        summary: format!(
            "{} after {}",
            outcome.as_str(),
            format_duration(pm.duration_seconds)
        ),
    })
}

/// The approval wait was ended because the source recovered (`AUTO_CANCEL_ON_RECOVERY`).
fn ended_by_recovery(inc: &Incident) -> bool {
    inc.approval
        .as_ref()
        .and_then(|a| a.decision.as_ref())
        .is_some_and(|d| d.decision == Decision::Recovered)
}

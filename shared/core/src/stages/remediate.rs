//! Remediate: apply the approved plan step by step, each start and end recorded before moving
//! on; on failure roll the completed steps back in reverse.

use serde::{Deserialize, Serialize};

use super::{announce, lifecycle, load, mutate, Deps, IncidentRef, StageError};
use crate::domain::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemediateOutput {
    /// `applied` or `rolled_back`.
    pub outcome: RemediationOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<usize>,
    pub summary: String,
}

enum StepRun {
    Done,
    Failed(String),
}

/// Runs one command exactly once across retries: the start is claimed in the store first, and
/// a start found without an end (a crash mid-command) is reported, never re-run.
async fn run_once(
    deps: &Deps,
    id: &IncidentId,
    phase: StepPhase,
    index: usize,
    command: &str,
    rollback_command: &str,
) -> Result<StepRun, StageError> {
    let existing = deps
        .store
        .steps(id)
        .await?
        .into_iter()
        .find(|r| r.phase == phase && r.step == index);
    if let Some(rec) = existing {
        return Ok(match rec.status {
            StepStatus::Succeeded => StepRun::Done,
            StepStatus::Failed => StepRun::Failed(rec.output),
            StepStatus::Started => {
                let mut rec = rec;
                rec.status = StepStatus::Failed;
                rec.ended_at = Some(deps.clock.now());
                rec.output = "interrupted: the stage stopped while this command ran; its outcome is unknown and it was not run again".into();
                deps.store.finish_step(id, &rec).await?;
                StepRun::Failed(rec.output)
            }
        });
    }
    let mut rec = StepRecord {
        phase,
        step: index,
        command: command.to_string(),
        rollback_command: rollback_command.to_string(),
        status: StepStatus::Started,
        executor: deps.executor.name(),
        started_at: deps.clock.now(),
        ended_at: None,
        output: String::new(),
    };
    if !deps.store.claim_step(id, &rec).await? {
        // Another invocation claimed it between our read and our claim.
        return Err(StageError::StoreConflict(format!(
            "step {index} is being run by another invocation"
        )));
    }
    let result = deps.executor.run(id, phase, index, command).await;
    rec.ended_at = Some(deps.clock.now());
    let outcome = match result {
        Ok(out) => {
            rec.status = StepStatus::Succeeded;
            rec.output = out;
            StepRun::Done
        }
        Err(e) => {
            rec.status = StepStatus::Failed;
            rec.output = e.to_string();
            StepRun::Failed(rec.output.clone())
        }
    };
    deps.store.finish_step(id, &rec).await?;
    Ok(outcome)
}

pub async fn remediate(deps: &Deps, input: &IncidentRef) -> Result<RemediateOutput, StageError> {
    let id = &input.incident_id;
    let incident = load(deps, id).await?;
    if let Some(outcome) = incident.remediation {
        return Ok(RemediateOutput {
            outcome,
            failed_step: None,
            summary: "remediation already finished".into(),
        });
    }
    let plan = incident
        .plan
        .clone()
        .ok_or_else(|| StageError::InvalidInput("no remediation plan".into()))?;
    // The last line of defence: whatever path led here, an unapproved or blocked plan never runs,
    // and an empty plan never marks an incident resolved.
    if plan.steps.is_empty() {
        return Err(StageError::NothingToApply(
            "the plan has no steps: nothing IRAS can apply".into(),
        ));
    }
    if plan.blocked_by_policy {
        return Err(StageError::PolicyViolation(
            "the plan has commands outside the remediation policy".into(),
        ));
    }
    let approved = matches!(
        incident.approval.as_ref().and_then(|a| a.decision.as_ref()),
        Some(d) if d.decision == Decision::Approved
    );
    if plan.requires_human_approval && !approved {
        return Err(StageError::ApprovalMissing(
            "the plan requires human approval and has none".into(),
        ));
    }
    let now = deps.clock.now();
    mutate(deps, id, |inc| {
        if inc.status == IncidentStatus::Remediating {
            return Ok(false);
        }
        inc.status = IncidentStatus::Remediating;
        inc.record(
            now,
            "remediate:start",
            "remediate",
            format!(
                "applying {} step(s) with the {} executor",
                plan.steps.len(),
                deps.executor.name()
            ),
        );
        Ok(true)
    })
    .await?;

    let mut failed: Option<(usize, String)> = None;
    for (i, step) in plan.steps.iter().enumerate() {
        match run_once(
            deps,
            id,
            StepPhase::Apply,
            i,
            &step.command,
            &step.rollback_command,
        )
        .await?
        {
            StepRun::Done => note_step(deps, id, StepPhase::Apply, i, &step.command, true).await?,
            StepRun::Failed(why) => {
                note_step(deps, id, StepPhase::Apply, i, &step.command, false).await?;
                failed = Some((i, why));
                break;
            }
        }
    }

    let Some((failed_step, why)) = failed else {
        let done = deps.clock.now();
        let stored = mutate(deps, id, |inc| {
            if inc.remediation.is_some() {
                return Ok(false);
            }
            inc.remediation = Some(RemediationOutcome::Applied);
            inc.status = IncidentStatus::Resolved;
            inc.resolved_at = Some(done);
            inc.record(
                done,
                "resolved",
                "remediate",
                "all steps applied; incident resolved".into(),
            );
            Ok(true)
        })
        .await?;
        announce(
            deps,
            lifecycle::REMEDIATION_APPLIED,
            &stored,
            serde_json::json!({"steps": plan.steps.len(), "executor": deps.executor.name()}),
        )
        .await;
        return Ok(RemediateOutput {
            outcome: RemediationOutcome::Applied,
            failed_step: None,
            summary: format!("{} step(s) applied", plan.steps.len()),
        });
    };

    // Undo what completed, newest first. A rollback that fails is recorded and the rest still
    // run: leaving later steps in place would be worse than a partial undo.
    let mut rolled_back = 0;
    let mut rollback_failures = Vec::new();
    for i in (0..failed_step).rev() {
        let step = &plan.steps[i];
        if !step.has_rollback() {
            rollback_failures.push(format!("step {} has no rollback", i + 1));
            continue;
        }
        match run_once(deps, id, StepPhase::Rollback, i, &step.rollback_command, "").await? {
            StepRun::Done => {
                rolled_back += 1;
                note_step(
                    deps,
                    id,
                    StepPhase::Rollback,
                    i,
                    &step.rollback_command,
                    true,
                )
                .await?
            }
            StepRun::Failed(e) => {
                note_step(
                    deps,
                    id,
                    StepPhase::Rollback,
                    i,
                    &step.rollback_command,
                    false,
                )
                .await?;
                rollback_failures.push(format!("rollback of step {} failed: {e}", i + 1));
            }
        }
    }
    let done = deps.clock.now();
    let detail = format!(
        "step {} failed ({why}); {rolled_back} completed step(s) rolled back{}",
        failed_step + 1,
        if rollback_failures.is_empty() {
            String::new()
        } else {
            format!("; {}", rollback_failures.join("; "))
        }
    );
    let line = detail.clone();
    mutate(deps, id, |inc| {
        if inc.remediation.is_some() {
            return Ok(false);
        }
        inc.remediation = Some(RemediationOutcome::RolledBack);
        inc.record(done, "remediate:failed", "remediate", line.clone());
        Ok(true)
    })
    .await?;
    Ok(RemediateOutput {
        outcome: RemediationOutcome::RolledBack,
        failed_step: Some(failed_step),
        summary: detail,
    })
}

async fn note_step(
    deps: &Deps,
    id: &IncidentId,
    phase: StepPhase,
    index: usize,
    command: &str,
    ok: bool,
) -> Result<(), StageError> {
    let now = deps.clock.now();
    let verb = match phase {
        StepPhase::Apply => "step",
        StepPhase::Rollback => "rollback of step",
    };
    let key = format!(
        "{}:{index}",
        match phase {
            StepPhase::Apply => "apply",
            StepPhase::Rollback => "rollback",
        }
    );
    let message = format!(
        "{verb} {} {}: {command}",
        index + 1,
        if ok { "succeeded" } else { "FAILED" }
    );
    mutate(deps, id, |inc| {
        if inc.has_event(&key) {
            return Ok(false);
        }
        inc.record(now, key.clone(), "remediate", message.clone());
        Ok(true)
    })
    .await?;
    Ok(())
}

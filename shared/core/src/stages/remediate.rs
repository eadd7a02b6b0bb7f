//! Remediate: apply the approved plan step by step, each step's prior state read and recorded
//! before anything changes; on failure restore the recorded states in reverse. Invoked again
//! with `rollback` (after Verify found the plan did not help), it restores every applied step.

use serde::{Deserialize, Serialize};

use super::{
    announce, audit, audit_or_warn, lifecycle, load, mutate, mutate_first, request_approval, tell,
    Deps, StageError,
};
use crate::audit::{AuditDraft, AuditEvent};
use crate::domain::*;
use crate::ports::{ExecError, StepCall};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemediateInput {
    pub incident_id: IncidentId,
    /// Set by the state machine after verification: undo the applied plan, for this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<EscalationReason>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemediateOutput {
    /// `applied` or `rolled_back`.
    pub outcome: RemediationOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<usize>,
    pub summary: String,
    /// The Wait before Verify: `VERIFY_AFTER_SECONDS`, or 0 when nothing was changed.
    #[serde(default)]
    pub verify_after_seconds: u64,
}

enum StepRun {
    Done,
    /// Failed; `restore` when the resource may have been changed and must be put back too.
    Failed {
        why: String,
        restore: bool,
    },
}

fn phase_name(phase: StepPhase) -> &'static str {
    match phase {
        StepPhase::Apply => "apply",
        StepPhase::Rollback => "rollback",
    }
}

/// Runs one phase of one step at most once across retries. The start is claimed in the store
/// first; for an apply, the live state is read and recorded before anything changes. A start
/// found with its prior state recorded (a crash mid-step) is resumed: the executor compares
/// the live state with the target, so the change is never made twice. A start recorded by an
/// older IRAS, with no prior state, is reported and never re-run.
async fn run_once(
    deps: &Deps,
    id: &IncidentId,
    phase: StepPhase,
    index: usize,
    step: &RemediationStep,
    prior_for_rollback: Option<&ResourceState>,
) -> Result<StepRun, StageError> {
    let Some(action) = step.action.as_ref() else {
        return Ok(StepRun::Failed {
            why: "recorded as a command by an earlier IRAS: it cannot run".into(),
            restore: false,
        });
    };
    let text = action.render();
    let call = StepCall {
        incident: id,
        step: index,
        phase,
        action,
        timeout: step.timeout(),
    };
    let existing = deps
        .store
        .steps(id)
        .await?
        .into_iter()
        .find(|r| r.phase == phase && r.step == index);
    let mut rec = match existing {
        Some(rec) => match rec.status {
            StepStatus::Succeeded => return Ok(StepRun::Done),
            StepStatus::Failed => {
                return Ok(StepRun::Failed {
                    restore: rec.prior.is_some() && rec.after.is_none(),
                    why: rec.output,
                })
            }
            StepStatus::Started if rec.action.is_none() => {
                let mut rec = rec;
                rec.status = StepStatus::Failed;
                rec.ended_at = Some(deps.clock.now());
                rec.output = "interrupted: the stage stopped while this command ran; its outcome is unknown and it was not run again".into();
                deps.store.finish_step(id, &rec).await?;
                return Ok(StepRun::Failed {
                    why: rec.output,
                    restore: false,
                });
            }
            StepStatus::Started => rec,
        },
        None => {
            let rec = StepRecord {
                phase,
                step: index,
                command: text.cli.clone(),
                rollback_command: text.rollback.clone(),
                action: Some(action.clone()),
                prior: None,
                after: None,
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
            rec
        }
    };
    let result = match phase {
        StepPhase::Apply => {
            let prior = match rec.prior.clone() {
                Some(p) => p,
                None => match deps.executor.observe(&call).await {
                    Ok(p) => {
                        // Recorded before anything changes: rollback restores exactly this.
                        rec.prior = Some(p.clone());
                        deps.store.finish_step(id, &rec).await?;
                        p
                    }
                    Err(e) => {
                        return finish(deps, id, rec, Err(e)).await;
                    }
                },
            };
            deps.executor.apply(&call, &prior).await
        }
        StepPhase::Rollback => match prior_for_rollback {
            Some(prior) => {
                rec.prior = Some(prior.clone());
                deps.executor.restore(&call, prior).await
            }
            None => Err(ExecError::Refused(
                "no prior state was recorded for this step: nothing to restore to".into(),
            )),
        },
    };
    finish(deps, id, rec, result).await
}

async fn finish(
    deps: &Deps,
    id: &IncidentId,
    mut rec: StepRecord,
    result: Result<crate::ports::StepOutcome, ExecError>,
) -> Result<StepRun, StageError> {
    rec.ended_at = Some(deps.clock.now());
    let outcome = match result {
        Ok(out) => {
            rec.status = StepStatus::Succeeded;
            rec.after = Some(out.after);
            rec.output = out.output;
            StepRun::Done
        }
        Err(e) => {
            rec.status = StepStatus::Failed;
            rec.output = e.to_string();
            StepRun::Failed {
                restore: e.may_have_changed(),
                why: rec.output.clone(),
            }
        }
    };
    deps.store.finish_step(id, &rec).await?;
    Ok(outcome)
}

/// The last line of defence: whatever path led here, an unapproved, blocked, edited or
/// out-of-policy plan never reaches an executor.
fn check_runnable(
    deps: &Deps,
    incident: &Incident,
    plan: &RemediationPlan,
) -> Result<(), StageError> {
    if plan.steps.is_empty() {
        return Err(StageError::NothingToApply(
            "the plan has no steps: nothing IRAS can apply".into(),
        ));
    }
    if plan.blocked_by_policy {
        return Err(StageError::PolicyViolation(
            "the plan has actions outside the remediation policy".into(),
        ));
    }
    let policy = &deps.config.policy;
    let for_real = deps.executor.changes_systems() || deps.config.executor.for_real();
    if for_real && !policy.permits_real_execution {
        return Err(StageError::PolicyViolation(format!(
            "the {} executor changes real systems and no remediation policy allows it (REMEDIATION_POLICY)",
            deps.executor.name()
        )));
    }
    // The policy may have changed since the plan was made: every step is checked again.
    for (i, step) in plan.steps.iter().enumerate() {
        let Some(action) = &step.action else {
            return Err(StageError::PolicyViolation(format!(
                "step {} is not a typed action",
                i + 1
            )));
        };
        policy
            .check(action)
            .map_err(|why| StageError::PolicyViolation(format!("step {}: {why}", i + 1)))?;
    }
    let approval = incident.approval.as_ref();
    let approved = matches!(
        approval.and_then(|a| a.decision.as_ref()),
        Some(d) if d.decision == Decision::Approved
    );
    if plan.requires_human_approval && !approved {
        return Err(StageError::ApprovalMissing(
            "the plan requires human approval and has none".into(),
        ));
    }
    if let Some(a) = approval.filter(|_| approved) {
        if a.plan_hash != plan.actions_hash() {
            return Err(StageError::PlanChanged(
                "the stored plan's actions differ from the ones approved".into(),
            ));
        }
        let people = a.approvals.len() as u32;
        if people < plan.required_approvers.max(1) {
            return Err(StageError::ApprovalMissing(format!(
                "the policy asks {} people to approve; {people} did",
                plan.required_approvers
            )));
        }
    }
    Ok(())
}

pub async fn remediate(deps: &Deps, input: &RemediateInput) -> Result<RemediateOutput, StageError> {
    if let Some(reason) = input.rollback {
        return roll_back_applied(deps, &input.incident_id, reason).await;
    }
    let id = &input.incident_id;
    // Remediate runs only after the approval task completed: its decision got through.
    request_approval::decision_reached_pipeline(deps, id).await?;
    let incident = load(deps, id).await?;
    let verify_after_seconds = if deps.executor.changes_systems() {
        deps.config.verify_after_seconds
    } else {
        0
    };
    if let Some(outcome) = incident.remediation {
        return Ok(RemediateOutput {
            outcome,
            failed_step: None,
            summary: "remediation already finished".into(),
            verify_after_seconds,
        });
    }
    let plan = incident
        .plan
        .clone()
        .ok_or_else(|| StageError::InvalidInput("no remediation plan".into()))?;
    check_runnable(deps, &incident, &plan)?;
    // Nothing is applied on a decision the audit log does not hold: this fails the stage
    // (retried, then escalated) rather than act unaudited. The decision's own path wrote it
    // already; this finds it there, or writes it after a crash in between.
    for draft in decisions_to_audit(&incident, &plan, deps.clock.now()) {
        audit(deps, id, draft).await?;
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

    let mut failed: Option<(usize, String, bool)> = None;
    for (i, step) in plan.steps.iter().enumerate() {
        match run_once(deps, id, StepPhase::Apply, i, step, None).await? {
            StepRun::Done => note_step(deps, id, StepPhase::Apply, i, step, true).await?,
            StepRun::Failed { why, restore } => {
                note_step(deps, id, StepPhase::Apply, i, step, false).await?;
                failed = Some((i, why, restore));
                break;
            }
        }
    }

    let Some((failed_step, why, restore_failed)) = failed else {
        let done = deps.clock.now();
        let (stored, first) = mutate_first(deps, id, |inc| {
            if inc.remediation.is_some() {
                return Ok(false);
            }
            inc.remediation = Some(RemediationOutcome::Applied);
            inc.record(
                done,
                "remediate:applied",
                "remediate",
                format!(
                    "all {} step(s) applied with the {} executor",
                    plan.steps.len(),
                    deps.executor.name()
                ),
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
        if first {
            let check = if verify_after_seconds > 0 {
                format!(
                    "; checking in {} whether the symptom is gone",
                    crate::format_duration(verify_after_seconds as i64)
                )
            } else {
                String::new()
            };
            let news = format!(
                "applied: {} step(s) with the {} executor{check}",
                plan.steps.len(),
                deps.executor.name()
            );
            tell(deps, &stored, &news).await;
        }
        return Ok(RemediateOutput {
            outcome: RemediationOutcome::Applied,
            failed_step: None,
            summary: format!(
                "{} step(s) applied with the {} executor",
                plan.steps.len(),
                deps.executor.name()
            ),
            verify_after_seconds,
        });
    };

    // Undo what completed, newest first (and the failed step when it may have changed its
    // resource). A rollback that fails is recorded and the rest still run: leaving later steps
    // in place would be worse than a partial undo.
    let last = if restore_failed {
        failed_step + 1
    } else {
        failed_step
    };
    let (rolled_back, rollback_failures) = roll_back(deps, id, &plan, last).await?;
    let done = deps.clock.now();
    let detail = format!(
        "step {} failed ({why}); {rolled_back} step(s) restored to their recorded state{}",
        failed_step + 1,
        if rollback_failures.is_empty() {
            String::new()
        } else {
            format!("; {}", rollback_failures.join("; "))
        }
    );
    let line = detail.clone();
    let (stored, first) = mutate_first(deps, id, |inc| {
        if inc.remediation.is_some() {
            return Ok(false);
        }
        inc.remediation = Some(RemediationOutcome::RolledBack);
        inc.record(done, "remediate:failed", "remediate", line.clone());
        Ok(true)
    })
    .await?;
    if first {
        tell(deps, &stored, &format!("rolled back: {detail}")).await;
    }
    Ok(RemediateOutput {
        outcome: RemediationOutcome::RolledBack,
        failed_step: Some(failed_step),
        summary: detail,
        verify_after_seconds: 0,
    })
}

/// Restores steps `0..end` in reverse, each to the prior state its apply recorded.
async fn roll_back(
    deps: &Deps,
    id: &IncidentId,
    plan: &RemediationPlan,
    end: usize,
) -> Result<(usize, Vec<String>), StageError> {
    let records = deps.store.steps(id).await?;
    let mut rolled_back = 0;
    let mut failures = Vec::new();
    for i in (0..end.min(plan.steps.len())).rev() {
        let step = &plan.steps[i];
        if !step.has_rollback() {
            failures.push(format!("step {} cannot be undone", i + 1));
            continue;
        }
        let prior = records
            .iter()
            .find(|r| r.phase == StepPhase::Apply && r.step == i)
            .and_then(|r| r.prior.clone());
        match run_once(deps, id, StepPhase::Rollback, i, step, prior.as_ref()).await? {
            StepRun::Done => {
                rolled_back += 1;
                note_step(deps, id, StepPhase::Rollback, i, step, true).await?
            }
            StepRun::Failed { why, .. } => {
                note_step(deps, id, StepPhase::Rollback, i, step, false).await?;
                failures.push(format!("rollback of step {} failed: {why}", i + 1));
            }
        }
    }
    Ok((rolled_back, failures))
}

/// After Verify: the plan was applied but did not help, so every applied step is restored.
async fn roll_back_applied(
    deps: &Deps,
    id: &IncidentId,
    reason: EscalationReason,
) -> Result<RemediateOutput, StageError> {
    let incident = load(deps, id).await?;
    if incident.remediation == Some(RemediationOutcome::RolledBack) {
        return Ok(RemediateOutput {
            outcome: RemediationOutcome::RolledBack,
            failed_step: None,
            summary: "already rolled back".into(),
            verify_after_seconds: 0,
        });
    }
    let plan = incident
        .plan
        .clone()
        .ok_or_else(|| StageError::InvalidInput("no remediation plan to roll back".into()))?;
    let applied = deps
        .store
        .steps(id)
        .await?
        .iter()
        .filter(|r| r.phase == StepPhase::Apply && r.status == StepStatus::Succeeded)
        .map(|r| r.step + 1)
        .max()
        .unwrap_or(0);
    let (rolled_back, failures) = roll_back(deps, id, &plan, applied).await?;
    let done = deps.clock.now();
    let detail = format!(
        "{}; {rolled_back} step(s) restored to their recorded state{}",
        reason.describe(),
        if failures.is_empty() {
            String::new()
        } else {
            format!("; {}", failures.join("; "))
        }
    );
    let line = detail.clone();
    let (stored, first) = mutate_first(deps, id, |inc| {
        if inc.remediation == Some(RemediationOutcome::RolledBack) {
            return Ok(false);
        }
        inc.remediation = Some(RemediationOutcome::RolledBack);
        inc.record(done, "remediate:rolled-back", "remediate", line.clone());
        Ok(true)
    })
    .await?;
    if first {
        tell(deps, &stored, &format!("rolled back: {detail}")).await;
    }
    Ok(RemediateOutput {
        outcome: RemediationOutcome::RolledBack,
        failed_step: None,
        summary: detail,
        verify_after_seconds: 0,
    })
}

async fn note_step(
    deps: &Deps,
    id: &IncidentId,
    phase: StepPhase,
    index: usize,
    step: &RemediationStep,
    ok: bool,
) -> Result<(), StageError> {
    let now = deps.clock.now();
    let verb = match phase {
        StepPhase::Apply => "step",
        StepPhase::Rollback => "rollback of step",
    };
    let key = format!("{}:{index}", phase_name(phase));
    let text = step.text();
    let message = format!(
        "{verb} {} {}: {} ({})",
        index + 1,
        if ok { "succeeded" } else { "FAILED" },
        text.cli,
        match phase {
            StepPhase::Apply => text.change,
            StepPhase::Rollback => text.rollback,
        }
    );
    mutate(deps, id, |inc| {
        if inc.has_event(&key) {
            return Ok(false);
        }
        inc.record(now, key.clone(), "remediate", message.clone());
        Ok(true)
    })
    .await?;
    audit_steps(deps, id).await;
    Ok(())
}

/// The decisions that let this plan run: the people's, or the policy's when the plan needed
/// no one.
fn decisions_to_audit(
    incident: &Incident,
    plan: &RemediationPlan,
    now: Timestamp,
) -> Vec<AuditDraft> {
    let people = request_approval::decision_drafts(incident);
    if !people.is_empty() {
        return people;
    }
    let plan_hash = plan.actions_hash();
    vec![AuditDraft {
        key: format!("decision:policy:{plan_hash}"),
        at: now,
        actor: "remediation policy".into(),
        event: AuditEvent::Decision {
            decision: "auto_approved".into(),
            approver: "remediation policy".into(),
            channel: "policy".into(),
            comment: Some(
                "every step within the auto-approve risk, reversible and allowed by the policy"
                    .into(),
            ),
            approval_id: None,
            plan_hash,
            approvals: 0,
            required: 0,
        },
    }]
}

/// The audit entry of a finished step record; `None` while it runs.
fn step_draft(rec: &StepRecord) -> Option<AuditDraft> {
    let step = rec.step as u64 + 1;
    let executor = rec.executor.clone();
    let event = match (rec.phase, rec.status) {
        (_, StepStatus::Started) => return None,
        (StepPhase::Apply, StepStatus::Succeeded) => AuditEvent::StepApplied {
            step,
            command: rec.command.clone(),
            executor,
            prior: rec.prior.as_ref().map(ResourceState::describe),
            after: rec.after.as_ref().map(ResourceState::describe),
            output: rec.output.clone(),
        },
        (StepPhase::Apply, StepStatus::Failed) => AuditEvent::StepFailed {
            step,
            command: rec.command.clone(),
            executor,
            error: rec.output.clone(),
        },
        (StepPhase::Rollback, status) => AuditEvent::Rollback {
            step,
            command: if rec.rollback_command.is_empty() {
                rec.command.clone()
            } else {
                rec.rollback_command.clone()
            },
            executor,
            succeeded: status == StepStatus::Succeeded,
            output: rec.output.clone(),
        },
    };
    Some(AuditDraft {
        key: format!("step:{}:{}", phase_name(rec.phase), rec.step),
        at: rec.ended_at.unwrap_or(rec.started_at),
        actor: format!("executor {}", rec.executor),
        event,
    })
}

/// Writes the entry of every finished step the log does not have yet. A step's entry only
/// warns when it cannot be written: stopping between a failed step and its rollback would
/// leave systems half-changed, which is worse than an entry written late (PostMortem runs
/// this again).
pub(crate) async fn audit_steps(deps: &Deps, id: &IncidentId) {
    let (records, log) = match (deps.store.steps(id).await, deps.store.audit(id).await) {
        (Ok(r), Ok(l)) => (r, l),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(incident = %id, error = %e, "step audit entries not written yet");
            return;
        }
    };
    for draft in records.iter().filter_map(step_draft) {
        if !log.iter().any(|e| e.key == draft.key) {
            audit_or_warn(deps, id, draft).await;
        }
    }
}

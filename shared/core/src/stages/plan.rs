//! Plan: the remediation plan, with every safety rule recomputed whatever the analyst said.

use super::*;
use crate::policy;
use crate::usage;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanOutput {
    pub needs_approval: bool,
    pub blocked: bool,
    pub reversible: bool,
    pub steps: usize,
    pub summary: String,
}

pub async fn plan(deps: &Deps, input: &IncidentRef) -> Result<PlanOutput, StageError> {
    let incident = load(deps, &input.incident_id).await?;
    let plan = match incident.plan.clone() {
        Some(p) => p,
        None => {
            let hypothesis = incident.hypothesis.clone().ok_or_else(|| {
                StageError::InvalidInput("plan before rca: incident has no hypothesis".into())
            })?;
            let attempts = deps.store.attempts(&input.incident_id).await?;
            let context = attempts
                .into_iter()
                .next_back()
                .map(|a| a.context)
                .unwrap_or_default();
            let (proposed, calls) =
                usage::collect(deps.analyst.plan(&incident.alert, &hypothesis, &context)).await;
            keep_calls(deps, &input.incident_id, calls).await?;
            let proposed = proposed?;
            // Whatever the analyst said about safety is recomputed here.
            policy::enforce(
                proposed,
                &deps.config.policy,
                deps.config.auto_approve_max_risk,
                deps.config.executor.for_real(),
            )
        }
    };
    let now = deps.clock.now();
    let p = plan.clone();
    mutate(deps, &input.incident_id, |inc| {
        if inc.plan.is_some() {
            return Ok(false);
        }
        let verdict = if p.steps.is_empty() {
            "no automated action fits; a person must act"
        } else if p.blocked_by_policy {
            "blocked by the remediation policy"
        } else if p.required_approvers > 1 {
            "needs two people's approval"
        } else if p.requires_human_approval {
            "needs human approval"
        } else {
            "allowed to run without approval by policy"
        };
        inc.record(
            now,
            "plan",
            "plan",
            format!(
                "plan: {} step(s), {}, {verdict}",
                p.steps.len(),
                if p.reversible {
                    "reversible"
                } else {
                    "irreversible"
                }
            ),
        );
        inc.plan = Some(p.clone());
        Ok(true)
    })
    .await?;
    Ok(PlanOutput {
        needs_approval: plan.requires_human_approval,
        blocked: plan.blocked_by_policy,
        reversible: plan.reversible,
        steps: plan.steps.len(),
        summary: format!(
            "{} step(s){}{}",
            plan.steps.len(),
            if plan.blocked_by_policy {
                " · BLOCKED by policy"
            } else {
                ""
            },
            if plan.requires_human_approval {
                " · approval required"
            } else {
                ""
            }
        ),
    })
}

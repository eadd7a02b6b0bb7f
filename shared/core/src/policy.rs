//! "We don't trust the model", in code: whatever an analyst proposes, these rules decide
//! whether a plan may run and how many people must approve it.
//!
//! The operator's policy is a JSON or YAML file (`REMEDIATION_POLICY`): which action types may
//! run, on which resources, with how many approvers. Without one, IRAS plans and dry-runs but
//! nothing runs for real.
//!
//! ```yaml
//! account: "123456789012"     # optional: lets resource patterns be ARNs
//! region: us-east-1
//! rules:
//!   - actions: [ecs_set_task_definition, ecs_set_desired_count]
//!     resources: ["shop/*"]                  # cluster/service
//!     approvers: 1
//!   - actions: [ssm_run_command]
//!     documents: [AWS-RestartService]       # the documents that may run
//!     resources: ["i-*", "tag:Role=web"]
//!     approvers: 2                           # two distinct people
//! ```

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::domain::{PolicyVerdict, RemediationPlan, RiskLevel};

fn one() -> u32 {
    1
}

/// One rule: these action types, on resources matching these patterns, with this many
/// approvers. `*` in a pattern matches any run of characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    pub actions: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    /// For `ssm_run_command` and `ssm_start_automation`: the documents that may run.
    #[serde(default)]
    pub documents: Vec<String>,
    #[serde(default = "one")]
    pub approvers: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    rules: Vec<PolicyRule>,
}

/// The operator's remediation policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RemediationPolicy {
    pub rules: Vec<PolicyRule>,
    pub account: Option<String>,
    pub region: Option<String>,
    /// Where it came from, for people: a path, `inline`, or the built-in default.
    pub origin: String,
    /// False for the built-in default: every well-formed action may be planned and dry-run,
    /// none may run for real.
    pub permits_real_execution: bool,
}

/// What the policy grants one action.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub approvers: u32,
    pub reason: String,
}

impl Default for RemediationPolicy {
    fn default() -> Self {
        RemediationPolicy {
            rules: Vec::new(),
            account: None,
            region: None,
            origin: "built-in default (dry-run only)".into(),
            permits_real_execution: false,
        }
    }
}

/// `*` matches any run (possibly empty) of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

impl RemediationPolicy {
    /// A policy file's text, JSON or YAML (JSON is YAML). Unknown keys and action types are
    /// errors: a typo must not silently widen or narrow what may run.
    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let file: PolicyFile =
            serde_norway::from_str(text).map_err(|e| format!("{origin}: not a policy: {e}"))?;
        for (i, r) in file.rules.iter().enumerate() {
            if r.actions.is_empty() {
                return Err(format!("{origin}: rules[{i}] names no action type"));
            }
            for a in &r.actions {
                if a != "*" && !Action::KINDS.contains(&a.as_str()) {
                    return Err(format!(
                        "{origin}: rules[{i}]: `{a}` is not an action type (one of {})",
                        Action::KINDS.join(", ")
                    ));
                }
            }
            if r.resources.is_empty() {
                return Err(format!(
                    "{origin}: rules[{i}] names no resource pattern (use \"*\" for any)"
                ));
            }
            if !(1..=2).contains(&r.approvers) {
                return Err(format!(
                    "{origin}: rules[{i}].approvers must be 1 or 2 (got {})",
                    r.approvers
                ));
            }
        }
        Ok(RemediationPolicy {
            rules: file.rules,
            account: file.account,
            region: file.region,
            origin: origin.to_string(),
            permits_real_execution: true,
        })
    }

    /// `REMEDIATION_POLICY`: a path to the file, or the policy itself (on Lambda, where a
    /// template parameter carries it).
    pub fn load(value: &str) -> Result<Self, String> {
        let v = value.trim();
        if v.starts_with('{') || v.contains('\n') || v.starts_with("rules:") {
            return RemediationPolicy::parse(v, "inline policy");
        }
        let text = std::fs::read_to_string(v).map_err(|e| format!("cannot read {v}: {e}"))?;
        RemediationPolicy::parse(&text, v)
    }

    /// The rule that allows `action`, or why none does.
    pub fn check(&self, action: &Action) -> Result<Grant, String> {
        action.validate()?;
        if !self.permits_real_execution {
            return Ok(Grant {
                approvers: 1,
                reason: format!("{}: planned and dry-run only", self.origin),
            });
        }
        let resources = action.resources(self.account.as_deref(), self.region.as_deref());
        if resources.is_empty() {
            return Err("the action names no resource".into());
        }
        let kind = action.kind();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.actions.iter().any(|a| a == "*" || a == kind) {
                continue;
            }
            if let Some(doc) = action.document() {
                if !rule.documents.iter().any(|d| glob(d, doc)) {
                    continue;
                }
            }
            // Every resource touched must be named by some pattern, by its name or its ARN.
            let ok = resources.iter().all(|(name, arn)| {
                rule.resources
                    .iter()
                    .any(|p| glob(p, name) || arn.as_ref().is_some_and(|a| glob(p, a)))
            });
            if ok {
                return Ok(Grant {
                    approvers: rule.approvers,
                    reason: format!("allowed by rule {} of {}", i + 1, self.origin),
                });
            }
        }
        let shown: Vec<&str> = resources.iter().map(|(n, _)| n.as_str()).collect();
        Err(format!(
            "no rule of {} allows {kind} on {}",
            self.origin,
            shown.join(", ")
        ))
    }
}

/// The least risk an action can carry, whatever an analyst calls it: only read-only checks
/// and flag-style parameter changes (instant, exact undo) may be low.
pub fn minimum_risk(action: &Action) -> RiskLevel {
    match action {
        a if a.read_only() => RiskLevel::Low,
        Action::SsmPutParameter { .. } => RiskLevel::Low,
        Action::Runner { operation, .. } if operation == "feature_flag.set" => RiskLevel::Low,
        _ => RiskLevel::Medium,
    }
}

/// Applies the safety invariants to an analyst's plan. Whatever the analyst claimed about
/// reversibility, approval or policy is discarded and recomputed here. `for_real` says
/// whether the configured executor changes real systems.
pub fn enforce(
    mut plan: RemediationPlan,
    policy: &RemediationPolicy,
    auto_approve_max_risk: Option<RiskLevel>,
    for_real: bool,
) -> RemediationPlan {
    let claimed_approval = plan.requires_human_approval;
    let claimed_reversible = plan.reversible;
    let mut notes = Vec::new();
    let mut verdicts = Vec::new();

    let mut reversible = true;
    let mut any_high = false;
    let mut max_risk = RiskLevel::Low;
    let mut approvers = 1;
    for (i, step) in plan.steps.iter_mut().enumerate() {
        let Some(action) = step.action.clone() else {
            reversible = false;
            notes.push(format!(
                "step {} is a command recorded by an earlier IRAS, not a typed action",
                i + 1
            ));
            verdicts.push(PolicyVerdict {
                step: i,
                allowed: false,
                reason: "not a typed action: it cannot run".into(),
            });
            continue;
        };
        let floor = minimum_risk(&action);
        if step.risk_level < floor {
            notes.push(format!(
                "step {} raised from {} to {} risk: it changes a running system",
                i + 1,
                step.risk_level.as_str(),
                floor.as_str()
            ));
            step.risk_level = floor;
        }
        if !action.reversible() {
            reversible = false;
            notes.push(format!(
                "step {} cannot be undone: the plan is irreversible",
                i + 1
            ));
        }
        if step.risk_level == RiskLevel::High {
            any_high = true;
        }
        max_risk = max_risk.max(step.risk_level);
        let verdict = match policy.check(&action) {
            Ok(g) => {
                approvers = approvers.max(g.approvers);
                PolicyVerdict {
                    step: i,
                    allowed: true,
                    reason: g.reason,
                }
            }
            Err(why) => PolicyVerdict {
                step: i,
                allowed: false,
                reason: why,
            },
        };
        if !verdict.allowed {
            notes.push(format!("step {} blocked: {}", i + 1, verdict.reason));
        }
        verdicts.push(verdict);
    }
    let mut blocked = verdicts.iter().any(|v| !v.allowed);
    if for_real && !policy.permits_real_execution && !plan.steps.is_empty() {
        blocked = true;
        notes.push(
            "no remediation policy is configured (REMEDIATION_POLICY): nothing runs for real"
                .into(),
        );
    }
    if plan.steps.is_empty() {
        notes.push("the plan has no steps: a human must decide what to do".into());
    }
    if any_high {
        notes.push("a step is high risk: human approval required".into());
    }
    if approvers > 1 {
        notes.push(format!(
            "the policy asks {approvers} distinct people to approve"
        ));
    }
    let auto_ok = match auto_approve_max_risk {
        Some(limit) => !plan.steps.is_empty() && max_risk <= limit && approvers == 1,
        None => false,
    };
    let requires_approval = !auto_ok || any_high || !reversible || blocked || plan.steps.is_empty();
    if claimed_reversible && !reversible {
        notes.push("the analyst called the plan reversible; it is not".into());
    }
    if !claimed_approval && requires_approval && (any_high || !reversible) {
        notes.push("the analyst said no approval was needed; overridden".into());
    }
    plan.reversible = reversible && !plan.steps.is_empty();
    plan.requires_human_approval = requires_approval;
    plan.blocked_by_policy = blocked;
    plan.policy = verdicts;
    plan.safety_notes = notes;
    plan.required_approvers = approvers;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RemediationStep;

    fn ecs(service: &str) -> Action {
        Action::EcsSetTaskDefinition {
            cluster: "shop".into(),
            service: service.into(),
            task_definition: "payment:41".into(),
            from: None,
        }
    }

    fn step(action: Action, risk: RiskLevel) -> RemediationStep {
        RemediationStep::new("d".into(), action, risk, 60)
    }

    /// An analyst that claims everything is fine.
    fn lying_plan(steps: Vec<RemediationStep>) -> RemediationPlan {
        RemediationPlan {
            summary: "trust me".into(),
            steps,
            reversible: true,
            requires_human_approval: false,
            blocked_by_policy: false,
            policy: vec![],
            safety_notes: vec![],
            analyst: "liar".into(),
            required_approvers: 1,
        }
    }

    const POLICY: &str = r#"
account: "123456789012"
region: us-east-1
rules:
  - actions: [ecs_set_task_definition]
    resources: ["shop/payment*"]
  - actions: [lambda_set_alias]
    resources: ["arn:aws:lambda:us-east-1:123456789012:function:pay-*"]
    approvers: 2
  - actions: [ssm_run_command]
    documents: [AWS-RestartService]
    resources: ["i-*"]
"#;

    #[test]
    fn a_yaml_policy_allows_its_actions_on_its_resources_only() {
        let p = RemediationPolicy::parse(POLICY, "policy.yaml").unwrap();
        assert_eq!(p.check(&ecs("payment")).unwrap().approvers, 1);
        assert!(p.check(&ecs("orders")).is_err());
        let alias = |f: &str| Action::LambdaSetAlias {
            function_name: f.into(),
            alias: "live".into(),
            version: "3".into(),
            from: None,
        };
        assert_eq!(p.check(&alias("pay-api")).unwrap().approvers, 2);
        assert!(p.check(&alias("orders-api")).is_err());
        let cmd = |doc: &str| Action::SsmRunCommand {
            document: doc.into(),
            parameters: Default::default(),
            targets: crate::action::CommandTargets::InstanceIds {
                instance_ids: vec!["i-0abc".into()],
            },
        };
        assert!(p.check(&cmd("AWS-RestartService")).is_ok());
        assert!(
            p.check(&cmd("AWS-RunShellScript")).is_err(),
            "a document not on the rule's list never runs"
        );
    }

    #[test]
    fn json_is_accepted_and_typos_are_errors() {
        let p = RemediationPolicy::parse(
            r#"{"rules":[{"actions":["ssm_put_parameter"],"resources":["/flags/*"]}]}"#,
            "p.json",
        )
        .unwrap();
        assert!(p
            .check(&Action::SsmPutParameter {
                name: "/flags/x".into(),
                value: "off".into()
            })
            .is_ok());
        let e = RemediationPolicy::parse(
            r#"{"rules":[{"actions":["ecs_rollback"],"resources":["*"]}]}"#,
            "p.json",
        )
        .unwrap_err();
        assert!(e.contains("ecs_rollback"), "{e}");
        assert!(RemediationPolicy::parse(
            r#"{"rules":[{"actions":["runner"],"resource":["*"]}]}"#,
            "p.json"
        )
        .is_err());
        assert!(RemediationPolicy::parse(
            r#"{"rules":[{"actions":["runner"],"resources":["*"],"approvers":3}]}"#,
            "p.json"
        )
        .is_err());
    }

    #[test]
    fn the_default_policy_lets_nothing_run_for_real() {
        let dry = enforce(
            lying_plan(vec![step(ecs("payment"), RiskLevel::Medium)]),
            &RemediationPolicy::default(),
            None,
            false,
        );
        assert!(!dry.blocked_by_policy, "planning and dry-run are fine");
        let real = enforce(
            lying_plan(vec![step(ecs("payment"), RiskLevel::Medium)]),
            &RemediationPolicy::default(),
            None,
            true,
        );
        assert!(real.blocked_by_policy);
    }

    #[test]
    fn high_risk_step_forces_approval_even_with_auto_approve() {
        let p = enforce(
            lying_plan(vec![step(ecs("payment"), RiskLevel::High)]),
            &RemediationPolicy::default(),
            Some(RiskLevel::Medium),
            false,
        );
        assert!(p.requires_human_approval);
        assert!(!p.blocked_by_policy);
    }

    #[test]
    fn an_irreversible_action_makes_the_plan_irreversible_and_forces_approval() {
        let p = enforce(
            lying_plan(vec![step(
                Action::EcsForceNewDeployment {
                    cluster: "shop".into(),
                    service: "payment".into(),
                },
                RiskLevel::Medium,
            )]),
            &RemediationPolicy::default(),
            Some(RiskLevel::Medium),
            false,
        );
        assert!(!p.reversible);
        assert!(p.requires_human_approval);
    }

    #[test]
    fn an_action_outside_the_policy_blocks_the_plan() {
        let policy = RemediationPolicy::parse(POLICY, "policy.yaml").unwrap();
        let p = enforce(
            lying_plan(vec![step(ecs("orders"), RiskLevel::Low)]),
            &policy,
            None,
            true,
        );
        assert!(p.blocked_by_policy);
        assert!(!p.policy[0].allowed);
    }

    #[test]
    fn a_legacy_command_step_never_runs() {
        let mut s = step(ecs("payment"), RiskLevel::Medium);
        s.action = None;
        s.command = "kubectl rollout undo deployment/x -n shop".into();
        let p = enforce(
            lying_plan(vec![s]),
            &RemediationPolicy::default(),
            None,
            false,
        );
        assert!(p.blocked_by_policy);
    }

    #[test]
    fn two_approvers_in_the_policy_reach_the_plan_and_stop_auto_approval() {
        let policy = RemediationPolicy::parse(POLICY, "policy.yaml").unwrap();
        let p = enforce(
            lying_plan(vec![step(
                Action::LambdaSetAlias {
                    function_name: "pay-api".into(),
                    alias: "live".into(),
                    version: "3".into(),
                    from: None,
                },
                RiskLevel::Medium,
            )]),
            &policy,
            Some(RiskLevel::Medium),
            true,
        );
        assert_eq!(p.required_approvers, 2);
        assert!(p.requires_human_approval);
    }

    #[test]
    fn a_rollback_called_low_risk_is_raised_and_cannot_run_unattended() {
        let p = enforce(
            lying_plan(vec![step(ecs("payment"), RiskLevel::Low)]),
            &RemediationPolicy::default(),
            Some(RiskLevel::Low),
            false,
        );
        assert_eq!(p.steps[0].risk_level, RiskLevel::Medium);
        assert!(p.requires_human_approval);
        let check = Action::Runner {
            operation: "kubernetes.rollout_status".into(),
            target: "shop/deployment/x".into(),
            parameters: Default::default(),
        };
        let p = enforce(
            lying_plan(vec![step(check, RiskLevel::Low)]),
            &RemediationPolicy::default(),
            Some(RiskLevel::Low),
            false,
        );
        assert!(
            !p.requires_human_approval,
            "a read-only check may run unattended"
        );
    }

    #[test]
    fn empty_plan_needs_a_human() {
        let p = enforce(
            lying_plan(vec![]),
            &RemediationPolicy::default(),
            Some(RiskLevel::Medium),
            false,
        );
        assert!(p.requires_human_approval);
        assert!(!p.reversible);
    }

    #[test]
    fn globs_match_within_the_whole_name() {
        assert!(glob("shop/*", "shop/payment"));
        assert!(!glob("shop/*", "shopx/payment"));
        assert!(glob("*-api", "pay-api"));
        assert!(!glob("pay", "payment"));
    }
}

//! "We don't trust the model", in code: whatever an analyst proposes, these rules decide
//! whether a plan may run and whether a human must approve it.

use crate::domain::{PolicyVerdict, RemediationPlan, RiskLevel};

/// Characters that would let one allowed command smuggle in another.
const SHELL_META: &[char] = &[
    ';', '&', '|', '`', '$', '(', ')', '<', '>', '\\', '\n', '\r', '\'', '"', '{', '}', '*', '?',
    '!', '#', '~',
];

/// The operator's allowlist of remediation actions.
///
/// A pattern is matched against the whole command, token by token (whitespace-separated):
/// `*` inside a token matches any run of characters within that token, and a final `**`
/// token matches any remaining arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct RemediationPolicy {
    pub patterns: Vec<String>,
}

/// The offline analyst's catalogue of safe actions, each with its own undo.
pub const DEFAULT_PATTERNS: &[&str] = &[
    "kubectl rollout undo deployment/* -n *",
    "kubectl rollout restart deployment/* -n *",
    "kubectl rollout status deployment/* -n *",
    "kubectl scale deployment/* -n * --replicas=*",
    "ldcli flags toggle-off --flag * --environment *",
    "ldcli flags toggle-on --flag * --environment *",
    "aws ecs update-service --cluster * --service * **",
    "aws lambda update-alias --function-name * --name * --function-version *",
    "aws lambda put-function-concurrency --function-name * --reserved-concurrent-executions *",
    "aws lambda delete-function-concurrency --function-name *",
    "aws dynamodb update-table --table-name * **",
];

impl Default for RemediationPolicy {
    fn default() -> Self {
        RemediationPolicy {
            patterns: DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl RemediationPolicy {
    /// Patterns separated by newlines or `;` (a `;` can never be part of an allowed command).
    pub fn parse(text: &str) -> Result<Self, String> {
        let patterns: Vec<String> = text
            .split(['\n', ';'])
            .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|p| !p.is_empty() && !p.starts_with('#'))
            .collect();
        if patterns.is_empty() {
            return Err("the policy has no patterns".into());
        }
        Ok(RemediationPolicy { patterns })
    }

    /// `Ok(pattern)` that allowed the command, or why it is refused.
    pub fn check(&self, command: &str) -> Result<&str, String> {
        if command.trim().is_empty() {
            return Err("empty command".into());
        }
        if let Some(c) = command.chars().find(|c| SHELL_META.contains(c)) {
            return Err(format!(
                "contains shell metacharacter `{}`",
                c.escape_debug()
            ));
        }
        let tokens: Vec<&str> = command.split_whitespace().collect();
        self.patterns
            .iter()
            .find(|p| matches_pattern(p, &tokens))
            .map(String::as_str)
            .ok_or_else(|| "not in the remediation policy".to_string())
    }
}

fn matches_pattern(pattern: &str, tokens: &[&str]) -> bool {
    let pat: Vec<&str> = pattern.split_whitespace().collect();
    let mut i = 0;
    for (pi, p) in pat.iter().enumerate() {
        if *p == "**" && pi == pat.len() - 1 {
            return true;
        }
        match tokens.get(i) {
            Some(t) if glob_token(p, t) => i += 1,
            _ => return false,
        }
    }
    i == tokens.len()
}

/// `*` matches any run (possibly empty) of characters within one token.
fn glob_token(pattern: &str, token: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == token;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !token.starts_with(first) || token.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &token[first.len()..];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The least risk a command can carry, whatever an analyst calls it: only read-only checks and
/// feature-flag toggles (instant, exact undo) may be low; anything that changes running
/// systems is at least medium.
pub fn minimum_risk(command: &str) -> RiskLevel {
    let tokens: Vec<&str> = command.split_whitespace().collect();
    match tokens.as_slice() {
        ["kubectl", "rollout", "status", ..] => RiskLevel::Low,
        ["ldcli", "flags", "toggle-off" | "toggle-on", ..] => RiskLevel::Low,
        _ => RiskLevel::Medium,
    }
}

/// Applies the safety invariants to an analyst's plan. Whatever the analyst claimed about
/// reversibility, approval or policy is discarded and recomputed here.
pub fn enforce(
    mut plan: RemediationPlan,
    policy: &RemediationPolicy,
    auto_approve_max_risk: Option<RiskLevel>,
) -> RemediationPlan {
    let claimed_approval = plan.requires_human_approval;
    let claimed_reversible = plan.reversible;
    let mut notes = Vec::new();
    let mut verdicts = Vec::new();

    let mut reversible = true;
    let mut any_high = false;
    let mut max_risk = RiskLevel::Low;
    for (i, step) in plan.steps.iter_mut().enumerate() {
        let floor = minimum_risk(&step.command);
        if step.risk_level < floor {
            notes.push(format!(
                "step {} raised from {} to {} risk: it changes a running system",
                i + 1,
                step.risk_level.as_str(),
                floor.as_str()
            ));
            step.risk_level = floor;
        }
        if !step.has_rollback() {
            reversible = false;
            notes.push(format!(
                "step {} has no rollback command: the plan is irreversible",
                i + 1
            ));
        }
        if step.risk_level == RiskLevel::High {
            any_high = true;
        }
        max_risk = max_risk.max(step.risk_level);
        let mut verdict = match policy.check(&step.command) {
            Ok(p) => PolicyVerdict {
                step: i,
                allowed: true,
                reason: format!("allowed by `{p}`"),
            },
            Err(why) => PolicyVerdict {
                step: i,
                allowed: false,
                reason: format!("command {why}"),
            },
        };
        // A rollback runs unattended after a failure, so it must be allowed too.
        if verdict.allowed && step.has_rollback() {
            if let Err(why) = policy.check(&step.rollback_command) {
                verdict = PolicyVerdict {
                    step: i,
                    allowed: false,
                    reason: format!("rollback command {why}"),
                };
            }
        }
        if !verdict.allowed {
            notes.push(format!("step {} blocked: {}", i + 1, verdict.reason));
        }
        verdicts.push(verdict);
    }
    let blocked = verdicts.iter().any(|v| !v.allowed);
    if plan.steps.is_empty() {
        notes.push("the plan has no steps: a human must decide what to do".into());
    }
    if any_high {
        notes.push("a step is high risk: human approval required".into());
    }
    let auto_ok = match auto_approve_max_risk {
        Some(limit) => !plan.steps.is_empty() && max_risk <= limit,
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
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RemediationStep;

    fn step(cmd: &str, rollback: &str, risk: RiskLevel) -> RemediationStep {
        RemediationStep {
            description: "d".into(),
            command: cmd.into(),
            rollback_command: rollback.into(),
            risk_level: risk,
            estimated_duration_seconds: 60,
        }
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
        }
    }

    const UNDO: &str = "kubectl rollout undo deployment/payment-service -n shop";

    #[test]
    fn high_risk_step_forces_approval_even_with_auto_approve() {
        let p = enforce(
            lying_plan(vec![step(UNDO, UNDO, RiskLevel::High)]),
            &RemediationPolicy::default(),
            Some(RiskLevel::Medium),
        );
        assert!(p.requires_human_approval);
        assert!(!p.blocked_by_policy);
    }

    #[test]
    fn blank_rollback_makes_plan_irreversible_and_forces_approval() {
        for blank in ["", "   ", "\t\n"] {
            let p = enforce(
                lying_plan(vec![step(UNDO, blank, RiskLevel::Low)]),
                &RemediationPolicy::default(),
                Some(RiskLevel::Medium),
            );
            assert!(!p.reversible, "rollback {blank:?}");
            assert!(p.requires_human_approval);
        }
    }

    #[test]
    fn command_outside_policy_blocks_plan() {
        let p = enforce(
            lying_plan(vec![step(
                "kubectl delete namespace shop",
                UNDO,
                RiskLevel::Low,
            )]),
            &RemediationPolicy::default(),
            None,
        );
        assert!(p.blocked_by_policy);
        assert!(!p.policy[0].allowed);
    }

    #[test]
    fn chained_command_is_refused_even_if_prefix_is_allowed() {
        let policy = RemediationPolicy::default();
        assert!(policy.check(UNDO).is_ok());
        for evil in [
            "kubectl rollout undo deployment/x -n shop; rm -rf /",
            "kubectl rollout undo deployment/x -n shop && curl evil",
            "kubectl rollout undo deployment/$(whoami) -n shop",
            "kubectl rollout undo deployment/x -n shop extra-arg",
        ] {
            assert!(policy.check(evil).is_err(), "{evil}");
        }
    }

    #[test]
    fn disallowed_rollback_blocks_plan() {
        let p = enforce(
            lying_plan(vec![step(
                UNDO,
                "kubectl delete deployment/x -n shop",
                RiskLevel::Low,
            )]),
            &RemediationPolicy::default(),
            None,
        );
        assert!(p.blocked_by_policy);
    }

    #[test]
    fn auto_approve_applies_only_within_limits() {
        let plan = lying_plan(vec![step(UNDO, UNDO, RiskLevel::Medium)]);
        let p = enforce(
            plan.clone(),
            &RemediationPolicy::default(),
            Some(RiskLevel::Medium),
        );
        assert!(!p.requires_human_approval);
        let p = enforce(plan, &RemediationPolicy::default(), None);
        assert!(
            p.requires_human_approval,
            "default policy always asks a human"
        );
    }

    #[test]
    fn a_rollback_called_low_risk_is_raised_and_cannot_run_unattended() {
        let p = enforce(
            lying_plan(vec![step(UNDO, UNDO, RiskLevel::Low)]),
            &RemediationPolicy::default(),
            Some(RiskLevel::Low),
        );
        assert_eq!(p.steps[0].risk_level, RiskLevel::Medium);
        assert!(p.requires_human_approval);
        let check = "kubectl rollout status deployment/x -n y";
        let p = enforce(
            lying_plan(vec![step(check, check, RiskLevel::Low)]),
            &RemediationPolicy::default(),
            Some(RiskLevel::Low),
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
        );
        assert!(p.requires_human_approval);
        assert!(!p.reversible);
    }

    #[test]
    fn policy_parses_operator_patterns() {
        let p = RemediationPolicy::parse("systemctl restart *\n# comment\n; echo ok").unwrap();
        assert!(p.check("systemctl restart nginx").is_ok());
        assert!(p.check("echo ok").is_ok());
        assert!(p.check("systemctl stop nginx").is_err());
        assert!(RemediationPolicy::parse(" \n ").is_err());
    }

    #[test]
    fn trailing_double_star_allows_remaining_arguments() {
        let p = RemediationPolicy::default();
        assert!(p
            .check("aws ecs update-service --cluster prod --service petsearch --task-definition petsearch:41")
            .is_ok());
    }
}

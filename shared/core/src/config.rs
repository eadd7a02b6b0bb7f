//! Thresholds and rules an operator sets. Read once per process; stages only read them.

use std::collections::HashMap;

use crate::audit::AuditKey;
use crate::domain::{RiskLevel, Severity};

/// The variable holding the audit log's signing key (a secret: `AUDIT_SIGNING_KEY_PARAM` on AWS).
pub const AUDIT_SIGNING_KEY: &str = "AUDIT_SIGNING_KEY";
use crate::policy::RemediationPolicy;

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The Rca stage turns this into the `confident` flag the state machine's Choice reads.
    pub rca_confidence_threshold: f64,
    pub rca_max_attempts: u32,
    pub approval_timeout_p0_minutes: u64,
    pub approval_timeout_default_minutes: u64,
    /// Replaces both windows when set (the demo's `--approval-timeout 2s`).
    pub approval_timeout_override_seconds: Option<u64>,
    /// Plans whose every step is at or below this risk, reversible and policy-allowed may run
    /// without a human. `None` (the default) means every plan waits for approval.
    pub auto_approve_max_risk: Option<RiskLevel>,
    pub policy: RemediationPolicy,
    /// Where approval pages are served and the key that signs their links; without it,
    /// notifications carry no link.
    pub approval_links: Option<ApprovalLinks>,
    /// Minutes of logs and metrics before the alert on the first attempt; doubled per retry.
    pub evidence_lookback_minutes: i64,
    /// Hours of deployments before the alert on the first attempt; tripled per retry.
    pub deployment_lookback_hours: i64,
    /// Minutes after the alert still worth reading (what an investigator sees on arrival).
    pub evidence_horizon_minutes: i64,
    /// `REOPEN_COOLDOWN_MINUTES`: an alert firing again this soon after its incident closed is
    /// a recurrence of it (counted as a flap), not a new incident and a new page.
    pub reopen_cooldown_minutes: i64,
    /// `AUTO_CANCEL_ON_RECOVERY`: when the source recovers while a plan waits for approval,
    /// the wait ends through the state machine (outcome `recovered`) instead of running on.
    pub auto_cancel_on_recovery: bool,
    /// `REMEDIATION_EXECUTOR`: which executor the remediate function uses. Every function
    /// reads it, so the plan stage knows whether a plan would run for real.
    pub executor: ExecutorKind,
    /// `VERIFY_AFTER_SECONDS`: how long after the plan is applied the symptoms are read again.
    pub verify_after_seconds: u64,
    /// `VERIFY_ATTEMPTS`: how many reads before an applied plan that did not help is rolled back.
    pub verify_attempts: u32,
    /// `AUDIT_SIGNING_KEY`: signs each audit entry, so that someone who can write the store
    /// but does not hold the key cannot rewrite the log consistently. Unset: hash chain only.
    pub audit_key: Option<AuditKey>,
}

/// Who carries out an approved plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Says what it would do and changes nothing (the default).
    DryRun,
    /// The AWS SDK (ECS, Lambda, CodeDeploy, Auto Scaling, DynamoDB, SSM); runner actions go
    /// to the runner when one is configured.
    Aws,
    /// Every action is a signed call to the operator's runner.
    Runner,
}

impl ExecutorKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dry-run" | "dryrun" | "dry_run" => Some(ExecutorKind::DryRun),
            "aws" => Some(ExecutorKind::Aws),
            "runner" => Some(ExecutorKind::Runner),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::DryRun => "dry-run",
            ExecutorKind::Aws => "aws",
            ExecutorKind::Runner => "runner",
        }
    }
    /// True for the executors that change real systems.
    pub fn for_real(self) -> bool {
        self != ExecutorKind::DryRun
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            rca_confidence_threshold: 0.7,
            rca_max_attempts: 3,
            approval_timeout_p0_minutes: 15,
            approval_timeout_default_minutes: 120,
            approval_timeout_override_seconds: None,
            auto_approve_max_risk: None,
            policy: RemediationPolicy::default(),
            approval_links: None,
            evidence_lookback_minutes: 30,
            deployment_lookback_hours: 24,
            evidence_horizon_minutes: 15,
            reopen_cooldown_minutes: 30,
            auto_cancel_on_recovery: false,
            executor: ExecutorKind::DryRun,
            verify_after_seconds: 120,
            verify_attempts: 3,
            audit_key: None,
        }
    }
}

/// Base URL of the approval pages and the key signing their links.
#[derive(Clone, PartialEq)]
pub struct ApprovalLinks {
    pub base_url: String,
    pub signing_key: Vec<u8>,
}

impl std::fmt::Debug for ApprovalLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalLinks")
            .field("base_url", &self.base_url)
            .field("signing_key", &"<redacted>")
            .finish()
    }
}

impl ApprovalLinks {
    pub fn url(&self, approval_id: &str, expires_at: crate::domain::Timestamp) -> String {
        format!(
            "{}{}",
            self.base_url.trim_end_matches('/'),
            crate::signing::approval_path(&self.signing_key, approval_id, expires_at.timestamp())
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("configuration variable {name}: {problem}")]
pub struct ConfigError {
    pub name: String,
    pub problem: String,
}

impl PipelineConfig {
    pub fn approval_timeout_seconds(&self, severity: Severity) -> u64 {
        if let Some(s) = self.approval_timeout_override_seconds {
            return s.max(1);
        }
        let minutes = match severity {
            Severity::P0 => self.approval_timeout_p0_minutes,
            _ => self.approval_timeout_default_minutes,
        };
        minutes * 60
    }

    /// Reads the documented variables; unset ones keep their defaults, bad ones are errors.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut c = PipelineConfig::default();
        let env = EnvVars(vars);
        let get = |k: &str| env.get(k);
        fn parse<T: std::str::FromStr>(name: &str, v: &str, what: &str) -> Result<T, ConfigError> {
            v.parse().map_err(|_| ConfigError {
                name: name.into(),
                problem: format!("`{v}` is not {what}"),
            })
        }
        if let Some(v) = get("RCA_CONFIDENCE_THRESHOLD") {
            let t: f64 = parse("RCA_CONFIDENCE_THRESHOLD", v, "a number")?;
            if !(0.0..=1.0).contains(&t) {
                return Err(ConfigError {
                    name: "RCA_CONFIDENCE_THRESHOLD".into(),
                    problem: format!("{t} is outside 0..1"),
                });
            }
            c.rca_confidence_threshold = t;
        }
        if let Some(v) = get("RCA_MAX_ATTEMPTS") {
            let n: u32 = parse("RCA_MAX_ATTEMPTS", v, "a whole number")?;
            if n == 0 {
                return Err(ConfigError {
                    name: "RCA_MAX_ATTEMPTS".into(),
                    problem: "must be at least 1".into(),
                });
            }
            c.rca_max_attempts = n;
        }
        if let Some(v) = get("APPROVAL_TIMEOUT_P0_MINUTES") {
            c.approval_timeout_p0_minutes = parse("APPROVAL_TIMEOUT_P0_MINUTES", v, "minutes")?;
        }
        if let Some(v) = get("APPROVAL_TIMEOUT_DEFAULT_MINUTES") {
            c.approval_timeout_default_minutes =
                parse("APPROVAL_TIMEOUT_DEFAULT_MINUTES", v, "minutes")?;
        }
        if let Some(v) = get("AUTO_APPROVE_MAX_RISK") {
            c.auto_approve_max_risk = match v.to_ascii_lowercase().as_str() {
                "none" | "off" => None,
                "low" => Some(RiskLevel::Low),
                "medium" => Some(RiskLevel::Medium),
                other => {
                    return Err(ConfigError {
                        name: "AUTO_APPROVE_MAX_RISK".into(),
                        problem: format!("`{other}` is not one of none, low, medium"),
                    })
                }
            };
        }
        c.reopen_cooldown_minutes =
            env.number("REOPEN_COOLDOWN_MINUTES", 30, (0, 7 * 24 * 60))? as i64;
        if let Some(v) = get("AUTO_CANCEL_ON_RECOVERY") {
            c.auto_cancel_on_recovery = match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                other => {
                    return Err(ConfigError {
                        name: "AUTO_CANCEL_ON_RECOVERY".into(),
                        problem: format!("`{other}` is not true or false"),
                    })
                }
            };
        }
        if let Some(v) = get("REMEDIATION_POLICY") {
            c.policy = RemediationPolicy::load(v).map_err(|e| ConfigError {
                name: "REMEDIATION_POLICY".into(),
                problem: e,
            })?;
        }
        if let Some(v) = get("REMEDIATION_EXECUTOR") {
            c.executor = ExecutorKind::parse(v).ok_or_else(|| ConfigError {
                name: "REMEDIATION_EXECUTOR".into(),
                problem: format!("`{v}` is not one of dry-run, aws, runner"),
            })?;
        }
        c.verify_after_seconds = env.number("VERIFY_AFTER_SECONDS", 120, (0, 3600))?;
        c.verify_attempts = env.number("VERIFY_ATTEMPTS", 3, (1, 20))? as u32;
        c.audit_key = get(AUDIT_SIGNING_KEY).and_then(|k| AuditKey::new(k.as_bytes()));
        Ok(c)
    }
}

/// Request timeout of every integration (HTTP or AWS) unless `INTEGRATION_TIMEOUT_SECONDS`
/// says otherwise.
pub const DEFAULT_INTEGRATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The one reader of IRAS's environment variables: blank counts as unset (a template passes
/// `""` for every optional parameter), a badly formed value is an error naming the variable.
#[derive(Clone, Copy)]
pub struct EnvVars<'a>(pub &'a HashMap<String, String>);

impl<'a> EnvVars<'a> {
    /// The trimmed value, `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// A comma-separated list, blanks dropped (`APPROVAL_API_KEY=k1, ,k2` is two keys).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A whole number within `range`, `default` when unset.
    pub fn number(&self, name: &str, default: u64, range: (u64, u64)) -> Result<u64, ConfigError> {
        let problem = |p: String| ConfigError {
            name: name.to_string(),
            problem: p,
        };
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        let n: u64 = v
            .parse()
            .map_err(|_| problem(format!("`{v}` is not a whole number")))?;
        if n < range.0 || n > range.1 {
            return Err(problem(format!("{n} is outside {}..={}", range.0, range.1)));
        }
        Ok(n)
    }

    /// `INTEGRATION_TIMEOUT_SECONDS` (1..=300), default [`DEFAULT_INTEGRATION_TIMEOUT`].
    pub fn timeout(&self) -> Result<std::time::Duration, ConfigError> {
        self.number(
            "INTEGRATION_TIMEOUT_SECONDS",
            DEFAULT_INTEGRATION_TIMEOUT.as_secs(),
            (1, 300),
        )
        .map(std::time::Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::vars;

    #[test]
    fn p0_gets_the_short_approval_window() {
        let c = PipelineConfig::default();
        assert_eq!(c.approval_timeout_seconds(Severity::P0), 15 * 60);
        assert_eq!(c.approval_timeout_seconds(Severity::P2), 120 * 60);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e =
            PipelineConfig::from_vars(&vars(&[("RCA_CONFIDENCE_THRESHOLD", "high")])).unwrap_err();
        assert_eq!(e.name, "RCA_CONFIDENCE_THRESHOLD");
        let e = PipelineConfig::from_vars(&vars(&[("RCA_MAX_ATTEMPTS", "0")])).unwrap_err();
        assert_eq!(e.name, "RCA_MAX_ATTEMPTS");
    }

    #[test]
    fn variables_override_defaults() {
        let c = PipelineConfig::from_vars(&vars(&[
            ("RCA_CONFIDENCE_THRESHOLD", "0.9"),
            ("RCA_MAX_ATTEMPTS", "5"),
            ("APPROVAL_TIMEOUT_P0_MINUTES", "5"),
        ]))
        .unwrap();
        assert_eq!(c.rca_confidence_threshold, 0.9);
        assert_eq!(c.rca_max_attempts, 5);
        assert_eq!(c.approval_timeout_seconds(Severity::P0), 300);
    }

    #[test]
    fn dry_run_is_the_default_executor_and_others_are_named() {
        let c = PipelineConfig::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.executor, ExecutorKind::DryRun);
        assert_eq!((c.verify_after_seconds, c.verify_attempts), (120, 3));
        let c = PipelineConfig::from_vars(&vars(&[
            ("REMEDIATION_EXECUTOR", "aws"),
            ("VERIFY_AFTER_SECONDS", "30"),
        ]))
        .unwrap();
        assert_eq!(c.executor, ExecutorKind::Aws);
        assert_eq!(c.verify_after_seconds, 30);
        let e = PipelineConfig::from_vars(&vars(&[("REMEDIATION_EXECUTOR", "ssh")])).unwrap_err();
        assert_eq!(e.name, "REMEDIATION_EXECUTOR");
    }

    #[test]
    fn the_policy_is_read_from_a_file_or_inline() {
        let dir = std::env::temp_dir().join(format!("iras-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.yaml");
        std::fs::write(
            &path,
            "rules:\n  - actions: [ssm_put_parameter]\n    resources: [\"/flags/*\"]\n",
        )
        .unwrap();
        let c = PipelineConfig::from_vars(&vars(&[("REMEDIATION_POLICY", path.to_str().unwrap())]))
            .unwrap();
        assert!(c.policy.permits_real_execution);
        assert_eq!(c.policy.rules.len(), 1);
        let inline = PipelineConfig::from_vars(&vars(&[(
            "REMEDIATION_POLICY",
            r#"{"rules":[{"actions":["runner"],"resources":["shop/*"]}]}"#,
        )]))
        .unwrap();
        assert_eq!(inline.policy.origin, "inline policy");
        let e = PipelineConfig::from_vars(&vars(&[("REMEDIATION_POLICY", "/nonexistent.yaml")]))
            .unwrap_err();
        assert_eq!(e.name, "REMEDIATION_POLICY");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_lifecycle_variables_default_and_refuse_nonsense_by_name() {
        let c = PipelineConfig::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.reopen_cooldown_minutes, 30);
        assert!(!c.auto_cancel_on_recovery);
        let c = PipelineConfig::from_vars(&vars(&[
            ("REOPEN_COOLDOWN_MINUTES", "5"),
            ("AUTO_CANCEL_ON_RECOVERY", "true"),
        ]))
        .unwrap();
        assert_eq!(c.reopen_cooldown_minutes, 5);
        assert!(c.auto_cancel_on_recovery);
        let e =
            PipelineConfig::from_vars(&vars(&[("AUTO_CANCEL_ON_RECOVERY", "maybe")])).unwrap_err();
        assert_eq!(e.name, "AUTO_CANCEL_ON_RECOVERY");
        let e =
            PipelineConfig::from_vars(&vars(&[("REOPEN_COOLDOWN_MINUTES", "soon")])).unwrap_err();
        assert_eq!(e.name, "REOPEN_COOLDOWN_MINUTES");
    }
}

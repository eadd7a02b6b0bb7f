//! What the model must answer, as Rust types. Each stage's tool `input_schema` is generated from
//! these types (so the schema and the parser cannot drift), and each answer is validated
//! against the evidence before it becomes a domain value.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use iras_core::analyst::text::clean;
use iras_core::domain::*;
use iras_core::ports::PostMortemNarrative;

use crate::client::ToolSpec;

/// An answer the model gives by calling the tool named `TOOL`.
pub trait Answer: DeserializeOwned + JsonSchema {
    const TOOL: &'static str;
    const DESCRIPTION: &'static str;

    fn tool() -> ToolSpec {
        ToolSpec {
            name: Self::TOOL,
            description: Self::DESCRIPTION,
            input_schema: input_schema::<Self>(),
        }
    }
}

/// The JSON Schema of `T`, self-contained (no `$ref`), as a tool's `input_schema`.
pub fn input_schema<T: JsonSchema>() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let mut v = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    if let Some(o) = v.as_object_mut() {
        o.remove("title");
        o.remove("$schema");
    }
    v
}

/// Longest text kept from any answer field.
const MAX_TEXT: usize = 2000;
const MAX_ITEMS: usize = 12;

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn text(s: &str) -> String {
    clean(s.trim(), MAX_TEXT)
}

fn texts(v: &[String]) -> Vec<String> {
    v.iter()
        .filter(|s| !blank(s))
        .take(MAX_ITEMS)
        .map(|s| text(s))
        .collect()
}

fn check_confidence(errors: &mut Vec<String>, field: &str, c: f64) {
    if !c.is_finite() || !(0.0..=1.0).contains(&c) {
        errors.push(format!("`{field}` must be a number from 0 to 1 (got {c})"));
    }
}

fn check_text(errors: &mut Vec<String>, field: &str, s: &str) {
    if blank(s) {
        errors.push(format!("`{field}` must not be empty"));
    }
}

fn verdict<T>(errors: Vec<String>, value: T) -> Result<T, String> {
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors.join("; "))
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum SeverityLevel {
    P0,
    P1,
    P2,
    P3,
}

impl From<SeverityLevel> for Severity {
    fn from(s: SeverityLevel) -> Severity {
        match s {
            SeverityLevel::P0 => Severity::P0,
            SeverityLevel::P1 => Severity::P1,
            SeverityLevel::P2 => Severity::P2,
            SeverityLevel::P3 => Severity::P3,
        }
    }
}

/// The triage of one alert.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TriageAnswer {
    /// P0: a user-facing outage or data loss now. P1: a major degradation of a user-facing
    /// path. P2: a partial or internal degradation. P3: minor, no user impact yet.
    pub severity: SeverityLevel,
    /// Services affected, each named in the alert.
    #[schemars(length(min = 1))]
    pub affected_services: Vec<String>,
    /// Which users, paths or systems are hit, in one sentence.
    #[schemars(length(min = 1))]
    pub blast_radius: String,
    /// What users experience, in one sentence.
    #[schemars(length(min = 1))]
    pub estimated_user_impact: String,
    /// 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: f64,
    /// Why this severity, citing the alert's fields.
    #[schemars(length(min = 1))]
    pub reasoning: String,
}

impl Answer for TriageAnswer {
    const TOOL: &'static str = "submit_triage";
    const DESCRIPTION: &'static str =
        "Record the triage of the alert: severity, affected services, blast radius, user impact.";
}

impl TriageAnswer {
    /// Every affected service must be named somewhere in the alert.
    pub fn validate(self, alert: &Alert, analyst: &str) -> Result<TriageResult, String> {
        let mut errors = Vec::new();
        check_confidence(&mut errors, "confidence", self.confidence);
        check_text(&mut errors, "blast_radius", &self.blast_radius);
        check_text(
            &mut errors,
            "estimated_user_impact",
            &self.estimated_user_impact,
        );
        check_text(&mut errors, "reasoning", &self.reasoning);
        let alert_text = serde_json::to_string(alert)
            .unwrap_or_default()
            .to_lowercase();
        let services: Vec<String> = self
            .affected_services
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if services.is_empty() {
            errors.push("`affected_services` must name at least one service".into());
        }
        for s in &services {
            if !alert_text.contains(&s.to_lowercase()) {
                errors.push(format!(
                    "`affected_services` names `{}`, which the alert does not mention",
                    clean(s, 80)
                ));
            }
        }
        verdict(
            errors,
            TriageResult {
                severity: self.severity.into(),
                affected_services: services.iter().take(MAX_ITEMS).map(|s| text(s)).collect(),
                blast_radius: text(&self.blast_radius),
                estimated_user_impact: text(&self.estimated_user_impact),
                confidence: self.confidence,
                reasoning: text(&self.reasoning),
                analyst: analyst.to_string(),
            },
        )
    }
}

/// The kinds of fault IRAS knows how to plan for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    BadDeploy,
    ConfigChange,
    CertificateExpiry,
    DiskFull,
    DnsResolutionFailure,
    DynamodbThrottling,
    Throttling,
    NoisyNeighbour,
    CacheEviction,
    MemoryLeak,
    ConnectionPoolExhaustion,
    RetryStorm,
    DependencyOutage,
    ResourceExhaustion,
    Crash,
    Unknown,
}

impl FaultKind {
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CandidateAnswer {
    /// A service that appears in the evidence.
    pub service: String,
    pub fault: FaultKind,
    /// 0 to 1: how well this candidate explains the evidence.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub score: f64,
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// A deployment from the evidence, by service and version.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentRef {
    pub service: String,
    pub version: String,
}

/// The root cause of the incident, as far as the evidence shows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RcaAnswer {
    /// One sentence: what failed, where, and the evidence that says so.
    #[schemars(length(min = 1))]
    pub primary_cause: String,
    /// The service where the fault is; it must appear in the evidence.
    #[schemars(length(min = 1))]
    pub root_cause_service: String,
    pub fault: FaultKind,
    /// 0 to 1. High only when independent kinds of evidence agree.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: f64,
    /// The facts from the evidence that support the root cause (at least one).
    #[schemars(length(min = 1))]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub contributing_factors: Vec<String>,
    /// Ranked candidates, best first; the first is the root cause.
    #[serde(default)]
    pub candidates: Vec<CandidateAnswer>,
    /// Other explanations worth ruling out, one sentence each.
    #[serde(default)]
    pub alternatives: Vec<String>,
    /// The deployment that triggered the fault, if one did; it must be listed in the evidence.
    #[serde(default)]
    pub suspect_deployment: Option<DeploymentRef>,
}

impl Answer for RcaAnswer {
    const TOOL: &'static str = "submit_root_cause";
    const DESCRIPTION: &'static str =
        "Record the root-cause hypothesis: the faulty service, the kind of fault, the supporting evidence and a calibrated confidence.";
}

/// Services the evidence knows; the same set the Rca stage accepts.
pub fn known_services(alert: &Alert, ctx: &ContextBundle) -> Vec<String> {
    let mut v: Vec<String> = alert.service.iter().cloned().collect();
    v.extend(ctx.services.iter().cloned());
    for e in &ctx.topology {
        v.push(e.from.clone());
        v.push(e.to.clone());
    }
    v.extend(ctx.anomalies.iter().map(|a| a.service.clone()));
    v.extend(ctx.metrics.iter().map(|m| m.service.clone()));
    v.extend(ctx.logs.iter().map(|l| l.service.clone()));
    v.extend(ctx.deployments.iter().map(|d| d.service.clone()));
    v.sort();
    v.dedup();
    v
}

impl RcaAnswer {
    pub fn validate(
        self,
        alert: &Alert,
        ctx: &ContextBundle,
        analyst: &str,
    ) -> Result<RootCauseHypothesis, String> {
        let known = known_services(alert, ctx);
        let is_known = |s: &str| known.iter().any(|k| k == s.trim());
        let mut errors = Vec::new();
        check_text(&mut errors, "primary_cause", &self.primary_cause);
        check_confidence(&mut errors, "confidence", self.confidence);
        if !is_known(&self.root_cause_service) {
            errors.push(format!(
                "`root_cause_service` is `{}`, which appears nowhere in the evidence; use one of: {}",
                clean(&self.root_cause_service, 80),
                known
                    .iter()
                    .take(30)
                    .map(|s| clean(s, 60))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.evidence.iter().all(|e| blank(e)) {
            errors.push("`evidence` must list at least one supporting fact".into());
        }
        for (i, c) in self.candidates.iter().enumerate() {
            if !is_known(&c.service) {
                errors.push(format!(
                    "`candidates[{i}].service` is `{}`, which appears nowhere in the evidence",
                    clean(&c.service, 80)
                ));
            }
            check_confidence(&mut errors, &format!("candidates[{i}].score"), c.score);
        }
        let suspect = match &self.suspect_deployment {
            None => None,
            Some(d) => {
                let found = ctx
                    .deployments
                    .iter()
                    .find(|x| x.service == d.service.trim() && x.version == d.version.trim());
                if found.is_none() {
                    errors.push(format!(
                        "`suspect_deployment` {} {} is not among the deployments in the evidence",
                        clean(&d.service, 60),
                        clean(&d.version, 60)
                    ));
                }
                found.cloned()
            }
        };
        let root = self.root_cause_service.trim().to_string();
        let evidence = texts(&self.evidence);
        let mut candidates: Vec<RootCauseCandidate> = self
            .candidates
            .iter()
            .take(6)
            .map(|c| RootCauseCandidate {
                service: c.service.trim().to_string(),
                score: c.score,
                fault: c.fault.as_str(),
                evidence: texts(&c.evidence),
            })
            .collect();
        if candidates.first().map(|c| c.service.as_str()) != Some(root.as_str()) {
            candidates.retain(|c| c.service != root);
            candidates.insert(
                0,
                RootCauseCandidate {
                    service: root.clone(),
                    score: self.confidence,
                    fault: self.fault.as_str(),
                    evidence: evidence.clone(),
                },
            );
        }
        verdict(
            errors,
            RootCauseHypothesis {
                primary_cause: text(&self.primary_cause),
                root_cause_service: root,
                fault: self.fault.as_str(),
                candidates,
                contributing_factors: texts(&self.contributing_factors),
                evidence,
                confidence: self.confidence,
                alternatives: texts(&self.alternatives),
                suspect_deployment: suspect,
                analyst: analyst.to_string(),
            },
        )
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl From<Risk> for RiskLevel {
    fn from(r: Risk) -> RiskLevel {
        match r {
            Risk::Low => RiskLevel::Low,
            Risk::Medium => RiskLevel::Medium,
            Risk::High => RiskLevel::High,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StepAnswer {
    /// What the step does and why, in one sentence.
    #[schemars(length(min = 1))]
    pub description: String,
    /// Exactly one typed action; the operator's policy must allow its type on its resource.
    /// IRAS records the live state first and restores it on rollback.
    pub action: Action,
    /// low: read-only or a flag toggle; medium: changes a running service and can be undone;
    /// high: may lose data or capacity, or cannot be undone quickly.
    pub risk_level: Risk,
    #[schemars(range(min = 1, max = 86400))]
    pub estimated_duration_seconds: u64,
}

/// A remediation plan: the smallest safe, reversible actions that fix the root cause.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlanAnswer {
    /// What the plan does; when it has no steps, what a person should do instead.
    #[schemars(length(min = 1))]
    pub summary: String,
    /// In order. Empty when no allowed action fits.
    #[schemars(length(max = 8))]
    pub steps: Vec<StepAnswer>,
}

impl Answer for PlanAnswer {
    const TOOL: &'static str = "submit_remediation_plan";
    const DESCRIPTION: &'static str =
        "Record the remediation plan: ordered steps, each one typed action with a risk level and a duration.";
}

/// The least risk an action can have, whatever the model says: see core's policy.
pub fn risk_floor(action: &Action) -> RiskLevel {
    iras_core::policy::minimum_risk(action)
}

impl PlanAnswer {
    pub fn validate(self, analyst: &str) -> Result<RemediationPlan, String> {
        let mut errors = Vec::new();
        check_text(&mut errors, "summary", &self.summary);
        if self.steps.len() > 8 {
            errors.push(format!("at most 8 steps (got {})", self.steps.len()));
        }
        for (i, s) in self.steps.iter().enumerate() {
            check_text(
                &mut errors,
                &format!("steps[{i}].description"),
                &s.description,
            );
            if let Err(e) = s.action.validate() {
                errors.push(format!("`steps[{i}].action`: {e}"));
            }
            if !(1..=86_400).contains(&s.estimated_duration_seconds) {
                errors.push(format!(
                    "`steps[{i}].estimated_duration_seconds` must be 1..86400 (got {})",
                    s.estimated_duration_seconds
                ));
            }
        }
        let steps: Vec<RemediationStep> = self
            .steps
            .iter()
            .map(|s| {
                let claimed: RiskLevel = s.risk_level.into();
                let floor = risk_floor(&s.action);
                let mut description = text(&s.description);
                if claimed < floor {
                    description.push_str(&format!(
                        " [risk raised from {} to {}: the action changes a running service]",
                        claimed.as_str(),
                        floor.as_str()
                    ));
                }
                RemediationStep::new(
                    description,
                    s.action.clone(),
                    claimed.max(floor),
                    s.estimated_duration_seconds,
                )
            })
            .collect();
        let reversible = !steps.is_empty() && steps.iter().all(RemediationStep::has_rollback);
        verdict(
            errors,
            RemediationPlan {
                summary: text(&self.summary),
                steps,
                // Never taken from the model: the plan stage recomputes both.
                reversible,
                requires_human_approval: true,
                blocked_by_policy: false,
                policy: vec![],
                safety_notes: vec![],
                analyst: analyst.to_string(),
                required_approvers: 1,
            },
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    Medium,
    Low,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ActionItemAnswer {
    #[schemars(length(min = 1))]
    pub description: String,
    /// A team or role; empty when unknown.
    #[serde(default)]
    pub owner: String,
    pub priority: Priority,
}

/// The post-mortem's prose. Timeline, durations and counts are IRAS's, from its records.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PostMortemAnswer {
    /// What happened and how it ended, in two or three sentences.
    #[schemars(length(min = 1))]
    pub summary: String,
    #[schemars(length(min = 1))]
    pub root_cause: String,
    /// What was done (or what remains for a person, if the incident was escalated).
    #[schemars(length(min = 1))]
    pub resolution: String,
    #[schemars(length(min = 1, max = 8))]
    pub action_items: Vec<ActionItemAnswer>,
    #[serde(default)]
    pub lessons: Vec<String>,
}

impl Answer for PostMortemAnswer {
    const TOOL: &'static str = "submit_postmortem";
    const DESCRIPTION: &'static str =
        "Record the post-mortem narrative: summary, root cause, resolution, action items, lessons.";
}

impl PostMortemAnswer {
    pub fn validate(self) -> Result<PostMortemNarrative, String> {
        let mut errors = Vec::new();
        check_text(&mut errors, "summary", &self.summary);
        check_text(&mut errors, "root_cause", &self.root_cause);
        check_text(&mut errors, "resolution", &self.resolution);
        if self.action_items.is_empty() {
            errors.push("`action_items` must list at least one action".into());
        }
        if self.action_items.len() > 8 {
            errors.push(format!(
                "at most 8 action items (got {})",
                self.action_items.len()
            ));
        }
        for (i, a) in self.action_items.iter().enumerate() {
            check_text(
                &mut errors,
                &format!("action_items[{i}].description"),
                &a.description,
            );
        }
        verdict(
            errors,
            PostMortemNarrative {
                summary: text(&self.summary),
                root_cause: text(&self.root_cause),
                resolution: text(&self.resolution),
                action_items: self
                    .action_items
                    .iter()
                    .take(8)
                    .map(|a| ActionItem {
                        description: text(&a.description),
                        owner: clean(a.owner.trim(), 80),
                        priority: match a.priority {
                            Priority::High => "high",
                            Priority::Medium => "medium",
                            Priority::Low => "low",
                        }
                        .into(),
                    })
                    .collect(),
                lessons: texts(&self.lessons),
            },
        )
    }
}

/// Reads the tool input into `T`; a model that sent the object as a JSON string is forgiven.
pub fn parse_input<T: DeserializeOwned>(input: &Value) -> Result<T, String> {
    let owned;
    let v = match input {
        Value::String(s) => {
            owned = serde_json::from_str::<Value>(s)
                .map_err(|e| format!("the tool input is a string that is not JSON: {e}"))?;
            &owned
        }
        other => other,
    };
    if !v.is_object() {
        return Err("the tool input must be a JSON object".into());
    }
    serde_json::from_value(v.clone())
        .map_err(|e| format!("the tool input does not match the schema: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert() -> Alert {
        Alert::from_json(json!({
            "title": "High error rate on payment-service",
            "timestamp": "2024-03-12T14:07:30Z",
            "service": "payment-service",
            "labels": {"namespace": "shop"},
        }))
        .unwrap()
    }

    #[test]
    fn schemas_are_generated_from_the_types_and_self_contained() {
        for (name, schema) in [
            (TriageAnswer::TOOL, TriageAnswer::tool().input_schema),
            (RcaAnswer::TOOL, RcaAnswer::tool().input_schema),
            (PlanAnswer::TOOL, PlanAnswer::tool().input_schema),
            (
                PostMortemAnswer::TOOL,
                PostMortemAnswer::tool().input_schema,
            ),
        ] {
            assert_eq!(schema["type"], "object", "{name}");
            let text = schema.to_string();
            assert!(!text.contains("$ref"), "{name} has a $ref: {text}");
            assert!(!text.contains("$schema"), "{name}");
        }
        let t = TriageAnswer::tool().input_schema;
        assert_eq!(
            t["properties"]["severity"]["enum"],
            json!(["P0", "P1", "P2", "P3"])
        );
        assert_eq!(t["properties"]["confidence"]["maximum"], json!(1.0));
        let required = t["required"].as_array().unwrap();
        assert!(required.contains(&json!("severity")));
        let p = PlanAnswer::tool().input_schema;
        let risk = &p["properties"]["steps"]["items"]["properties"]["risk_level"]["enum"];
        assert_eq!(risk, &json!(["low", "medium", "high"]));
    }

    #[test]
    fn triage_out_of_range_and_unknown_services_are_refused() {
        let a: TriageAnswer = parse_input(&json!({
            "severity": "P1", "affected_services": ["payment-service", "mainframe-9"],
            "blast_radius": "checkout", "estimated_user_impact": "payments fail",
            "confidence": 1.7, "reasoning": " "
        }))
        .unwrap();
        let err = a.validate(&alert(), "m").unwrap_err();
        assert!(err.contains("`confidence`"), "{err}");
        assert!(err.contains("mainframe-9"), "{err}");
        assert!(err.contains("`reasoning`"), "{err}");
    }

    #[test]
    fn bad_enum_values_are_schema_errors() {
        let e = parse_input::<TriageAnswer>(&json!({
            "severity": "P5", "affected_services": ["payment-service"], "blast_radius": "x",
            "estimated_user_impact": "x", "confidence": 0.5, "reasoning": "x"
        }))
        .unwrap_err();
        assert!(e.contains("P5"), "{e}");
        assert!(parse_input::<TriageAnswer>(&json!("not json {")).is_err());
        assert!(parse_input::<TriageAnswer>(&json!([1, 2])).is_err());
    }

    #[test]
    fn plan_risk_is_raised_to_the_floor_and_an_irreversible_action_stays_irreversible() {
        let a: PlanAnswer = parse_input(&json!({
            "summary": "replace the tasks",
            "steps": [{
                "description": "restart",
                "action": {"type": "ecs_force_new_deployment", "cluster": "shop", "service": "payment"},
                "risk_level": "low", "estimated_duration_seconds": 60
            }]
        }))
        .unwrap();
        let p = a.validate("m").unwrap();
        assert_eq!(p.steps[0].risk_level, RiskLevel::Medium);
        assert!(p.steps[0].description.contains("risk raised"));
        assert!(!p.steps[0].has_rollback());
        assert!(!p.reversible);
        assert!(p.requires_human_approval);
    }

    #[test]
    fn the_plan_tool_schema_is_the_action_type_and_a_made_up_action_is_refused() {
        let schema = input_schema::<PlanAnswer>().to_string();
        for kind in iras_core::Action::KINDS {
            assert!(schema.contains(kind), "{kind} missing from the tool schema");
        }
        let made_up = parse_input::<PlanAnswer>(&json!({
            "summary": "s",
            "steps": [{"description": "d", "action": {"type": "shell", "command": "rm -rf /"},
                "risk_level": "low", "estimated_duration_seconds": 1}]
        }));
        assert!(made_up.is_err());
        let smuggled: PlanAnswer = parse_input(&json!({
            "summary": "s",
            "steps": [{"description": "d",
                "action": {"type": "ecs_force_new_deployment", "cluster": "shop", "service": "x; rm -rf /"},
                "risk_level": "medium", "estimated_duration_seconds": 1}]
        }))
        .unwrap();
        assert!(smuggled.validate("m").is_err());
    }

    #[test]
    fn rca_names_must_come_from_the_evidence() {
        let ctx = ContextBundle {
            services: vec!["payment-service".into()],
            deployments: vec![Deployment {
                service: "payment-service".into(),
                version: "v2.3.1".into(),
                timestamp: alert().timestamp,
                description: String::new(),
                author: String::new(),
            }],
            ..Default::default()
        };
        let good: RcaAnswer = parse_input(&json!({
            "primary_cause": "bad deploy", "root_cause_service": "payment-service",
            "fault": "bad_deploy", "confidence": 0.9, "evidence": ["errors since v2.3.1"],
            "suspect_deployment": {"service": "payment-service", "version": "v2.3.1"}
        }))
        .unwrap();
        let h = good.validate(&alert(), &ctx, "m").unwrap();
        assert_eq!(h.candidates[0].service, "payment-service");
        assert_eq!(h.suspect_deployment.unwrap().version, "v2.3.1");
        let bad: RcaAnswer = parse_input(&json!({
            "primary_cause": "x", "root_cause_service": "mystery-db", "fault": "crash",
            "confidence": 0.9, "evidence": [],
            "suspect_deployment": {"service": "payment-service", "version": "v9"}
        }))
        .unwrap();
        let err = bad.validate(&alert(), &ctx, "m").unwrap_err();
        assert!(err.contains("mystery-db"), "{err}");
        assert!(err.contains("`evidence`"), "{err}");
        assert!(err.contains("v9"), "{err}");
    }
}

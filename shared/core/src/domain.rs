//! The incident's vocabulary: what an on-call engineer reads in the record.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::action::{Action, ActionText, CommandTargets, ResourceState, TableCapacity};

pub type Timestamp = DateTime<Utc>;

/// An incident id doubles as the Step Functions execution name, so it must stay within
/// `[A-Za-z0-9-_]` and 80 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(pub String);

impl IncidentId {
    /// Time-ordered (UUIDv7) so that ids sort newest-last and listing by id is by age.
    pub fn generate() -> Self {
        IncidentId(format!("inc-{}", uuid::Uuid::now_v7().simple()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Ids arrive in URLs and CLI arguments: accept only what we would have generated's alphabet.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 80
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        ok.then(|| IncidentId(s.to_string()))
    }
}

impl fmt::Display for IncidentId {
    /// Honours width and alignment (`{:<38}`), so ids line up in tables.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Where an alert stands at its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Firing: opens an incident, or repeats on the one it has.
    #[default]
    Firing,
    /// The source says the problem is over: recorded, never opens an incident.
    Resolved,
    /// A person at the source took it: recorded, never opens an incident.
    Acknowledged,
    /// The source cannot tell (CloudWatch `INSUFFICIENT_DATA`): recorded, never opens one.
    NoData,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
            AlertState::Acknowledged => "acknowledged",
            AlertState::NoData => "no_data",
        }
    }
}

/// A link the source sent with the alert (`generator`, `runbook`, `dashboard`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertLink {
    pub kind: String,
    pub href: String,
}

/// What IRAS read from the source's own payload, by the parser of that source. Only parsers
/// set it: a generic alert's `_iras` field is dropped at the door, so a sender cannot forge it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AlertOrigin {
    /// `alertmanager`, `grafana`, `datadog`, `pagerduty`, `opsgenie`, `sentry`, `cloudwatch`,
    /// `generic`.
    pub source: String,
    /// The source's own key for this alert (its dedup key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub state: AlertState,
    /// The source's severity or priority through the documented table (README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The source's severity or priority as it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<AlertLink>,
}

/// The field name of [`Alert::origin`]: unlikely in a monitoring payload, and stripped from
/// generic alerts at the door.
pub const ORIGIN_FIELD: &str = "_iras";

/// Nesting an alert may have: the stored record wraps it a few levels deeper, and serde_json
/// refuses to read back more than 128.
pub const MAX_ALERT_DEPTH: usize = 64;

/// How deeply `v` nests (a scalar is 0, `{}` and `[]` are 1), without recursion.
pub fn json_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => {
                deepest = deepest.max(d + 1);
                stack.extend(m.values().map(|c| (c, d + 1)));
            }
            Value::Array(a) => {
                deepest = deepest.max(d + 1);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => deepest = deepest.max(d),
        }
    }
    deepest
}

/// An alert as a monitoring system sent it. `title` and `timestamp` are required; every other
/// field is kept verbatim in `fields` and shown to the analyst as untrusted data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub title: String,
    pub timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, rename = "_iras", skip_serializing_if = "Option::is_none")]
    pub origin: Option<AlertOrigin>,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlertError {
    #[error("alert must be a JSON object")]
    NotAnObject,
    #[error("alert is missing required field `{0}`")]
    Missing(&'static str),
    #[error("alert field `{field}` must be {expected}")]
    Invalid {
        field: &'static str,
        expected: &'static str,
    },
    #[error("the alert nests {depth} levels deep; IRAS keeps at most {max}")]
    TooDeep { depth: usize, max: usize },
}

impl AlertError {
    pub fn field(&self) -> Option<&'static str> {
        match self {
            AlertError::NotAnObject | AlertError::TooDeep { .. } => None,
            AlertError::Missing(f) => Some(f),
            AlertError::Invalid { field, .. } => Some(field),
        }
    }
}

/// A sample kept of a repeat: past this size only its title, time and service are kept.
pub const MAX_SAMPLE_BYTES: usize = 16 * 1024;

/// The alert an incident's record keeps: the record must fit one DynamoDB item (400 KB) with
/// everything the pipeline adds, whatever `WEBHOOK_BODY_LIMIT_BYTES` lets in.
pub const MAX_ALERT_BYTES: usize = 128 * 1024;

impl Alert {
    /// Validates a webhook body or scenario alert. Errors name the field so a sender can fix it.
    pub fn from_json(value: Value) -> Result<Alert, AlertError> {
        let depth = json_depth(&value);
        if depth > MAX_ALERT_DEPTH {
            return Err(AlertError::TooDeep {
                depth,
                max: MAX_ALERT_DEPTH,
            });
        }
        let Value::Object(mut fields) = value else {
            return Err(AlertError::NotAnObject);
        };
        // Only a parser may say where an alert comes from.
        fields.remove(ORIGIN_FIELD);
        let title = match fields.remove("title") {
            None | Some(Value::Null) => return Err(AlertError::Missing("title")),
            Some(Value::String(s)) if !s.trim().is_empty() => s,
            Some(_) => {
                return Err(AlertError::Invalid {
                    field: "title",
                    expected: "a non-empty string",
                })
            }
        };
        let timestamp = match fields.remove("timestamp") {
            None | Some(Value::Null) => return Err(AlertError::Missing("timestamp")),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(&s)
                .map_err(|_| AlertError::Invalid {
                    field: "timestamp",
                    expected: "an RFC 3339 date-time string",
                })?
                .with_timezone(&Utc),
            Some(_) => {
                return Err(AlertError::Invalid {
                    field: "timestamp",
                    expected: "an RFC 3339 date-time string",
                })
            }
        };
        // `service` is read back as a string: anything else would poison the stored record.
        let service = match fields.remove("service") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                return Err(AlertError::Invalid {
                    field: "service",
                    expected: "a string",
                })
            }
        };
        let service = service.or_else(|| {
            fields
                .get("labels")
                .and_then(|l| l.get("service"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let state = match fields.get("status").and_then(Value::as_str) {
            Some("resolved") => AlertState::Resolved,
            Some("acknowledged") => AlertState::Acknowledged,
            _ => AlertState::Firing,
        };
        let key = ["fingerprint", "dedup_key"].iter().find_map(|k| {
            fields
                .get(*k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        });
        let word = ["severity", "priority"]
            .iter()
            .find_map(|k| text_of(fields.get(*k)));
        Ok(Alert {
            title,
            timestamp,
            service,
            origin: Some(AlertOrigin {
                source: "generic".into(),
                key,
                state,
                // A flat alert's words are read by triage's own rules, as before.
                severity: None,
                source_severity: word,
                ..AlertOrigin::default()
            }),
            fields,
        })
    }

    /// Where the source says this alert stands (firing when it does not say).
    pub fn state(&self) -> AlertState {
        self.origin.as_ref().map(|o| o.state).unwrap_or_default()
    }

    /// The source's own dedup key where it has one, else title + service. Keys of the native
    /// sources are namespaced by source, so two tools can never share an incident by accident.
    pub fn fingerprint(&self) -> String {
        if let Some(o) = &self.origin {
            if let Some(k) = o.key.as_deref().filter(|k| !k.is_empty()) {
                return match o.source.as_str() {
                    // A generic alert's key is the sender's own, as before parsers existed.
                    "generic" | "" => k.to_string(),
                    source => format!("{source}:{k}"),
                };
            }
        }
        for key in ["fingerprint", "dedup_key"] {
            if let Some(v) = self.fields.get(key).and_then(Value::as_str) {
                if !v.is_empty() {
                    return v.to_string();
                }
            }
        }
        format!(
            "{}|{}",
            self.service.as_deref().unwrap_or("-"),
            self.title.trim().to_lowercase()
        )
    }

    /// The links the source sent.
    pub fn links(&self) -> &[AlertLink] {
        self.origin
            .as_ref()
            .map(|o| o.links.as_slice())
            .unwrap_or_default()
    }

    /// A copy small enough to keep as a repeat's sample: over `max` bytes of JSON, only its
    /// title, time, service and origin are kept.
    pub fn sample(&self, max: usize) -> Alert {
        let size = serde_json::to_vec(self)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size <= max {
            return self.clone();
        }
        let mut cut = self.clone();
        cut.fields = Map::new();
        cut.fields.insert(
            "note".into(),
            Value::String(format!("body of {size} bytes not kept")),
        );
        cut
    }

    /// The alert cut to at most `max` bytes of JSON for the incident's record: its largest
    /// fields go first, and what went is said (`None` when nothing had to).
    pub fn bounded(mut self, max: usize) -> (Alert, Option<String>) {
        let size = |a: &Alert| serde_json::to_vec(a).map(|v| v.len()).unwrap_or(usize::MAX);
        let total = size(&self);
        if total <= max {
            return (self, None);
        }
        let mut by_size: Vec<(usize, String)> = self
            .fields
            .iter()
            .map(|(k, v)| {
                (
                    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0),
                    k.clone(),
                )
            })
            .collect();
        by_size.sort_by(|a, b| b.cmp(a));
        let mut dropped = Vec::new();
        for (_, k) in by_size {
            if size(&self) <= max {
                break;
            }
            self.fields.remove(&k);
            dropped.push(k);
        }
        let note = format!(
            "the alert's {total} bytes were cut to fit the record's {} KB: fields {} not kept",
            max / 1024,
            dropped.join(", ")
        );
        (self, Some(note))
    }

    /// A field by name, as text, looking in `labels` and `annotations` too.
    pub fn text(&self, key: &str) -> Option<String> {
        let direct = self.fields.get(key);
        let nested = || {
            ["labels", "annotations"]
                .iter()
                .find_map(|k| self.fields.get(*k).and_then(|o| o.get(key)))
        };
        match direct.or_else(nested)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn number(&self, key: &str) -> Option<f64> {
        match self.fields.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The documented table from a source's severity or priority to IRAS's P0–P3 (README,
/// "Severity"). What it gives is a floor: triage may rate an incident more severe, never less.
pub mod severity_table {
    use super::Severity;

    /// A severity word (`critical`, `warning`, Sentry's `fatal`, PagerDuty's `error`, ...) or a
    /// priority (`P1`–`P5`, `sev1`); `None` for anything the table does not list.
    pub fn from_source(value: &str) -> Option<Severity> {
        let v = value.trim().to_ascii_lowercase();
        let v = v.as_str();
        Some(match v {
            // Five-level priorities (Opsgenie, PagerDuty, Datadog): P1 is the worst.
            "p1" | "sev0" | "sev-0" | "sev1" | "sev-1" | "emergency" | "disaster" => Severity::P0,
            "p2" | "sev2" | "sev-2" | "critical" | "crit" | "fatal" | "page" | "high" => {
                Severity::P1
            }
            "p3" | "sev3" | "sev-3" | "error" | "err" | "major" => Severity::P2,
            "p4" | "p5" | "sev4" | "sev-4" | "warning" | "warn" | "medium" | "moderate"
            | "minor" | "low" | "info" | "informational" | "debug" | "none" | "normal" => {
                Severity::P3
            }
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    P0,
    P1,
    P2,
    P3,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_uppercase().as_str() {
            "P0" => Some(Severity::P0),
            "P1" => Some(Severity::P1),
            "P2" => Some(Severity::P2),
            "P3" => Some(Severity::P3),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Processing,
    AwaitingApproval,
    Remediating,
    Resolved,
    Escalated,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Processing => "processing",
            IncidentStatus::AwaitingApproval => "awaiting_approval",
            IncidentStatus::Remediating => "remediating",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Escalated => "escalated",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }
    pub fn is_final(self) -> bool {
        matches!(self, IncidentStatus::Resolved | IncidentStatus::Escalated)
    }
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageResult {
    pub severity: Severity,
    pub affected_services: Vec<String>,
    pub blast_radius: String,
    pub estimated_user_impact: String,
    pub confidence: f64,
    pub reasoning: String,
    /// Which analyst produced this (`offline`, a model id, ...).
    #[serde(default)]
    pub analyst: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "TRACE" => Some(LogLevel::Trace),
            "DEBUG" => Some(LogLevel::Debug),
            "INFO" => Some(LogLevel::Info),
            "WARN" | "WARNING" => Some(LogLevel::Warn),
            "ERROR" | "ERR" => Some(LogLevel::Error),
            "FATAL" | "CRITICAL" | "PANIC" => Some(LogLevel::Fatal),
            _ => None,
        }
    }
    pub fn is_problem(self) -> bool {
        matches!(self, LogLevel::Warn | LogLevel::Error | LogLevel::Fatal)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub timestamp: Timestamp,
    pub service: String,
    pub level: LogLevel,
    pub message: String,
}

/// One metric series around the alert, with the same series in a normal period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    pub service: String,
    pub name: String,
    #[serde(default)]
    pub unit: String,
    /// `(unix seconds, value)`, ascending; `None` is a missing sample.
    pub points: Vec<(i64, Option<f64>)>,
    #[serde(default)]
    pub baseline: Vec<(i64, Option<f64>)>,
}

/// Which way a signal goes when things are bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadDirection {
    Up,
    Down,
    Either,
}

/// A metric's deviation from its baseline, computed from the series (evidence, not opinion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricAnomaly {
    pub service: String,
    pub metric: String,
    #[serde(default)]
    pub unit: String,
    /// The most deviant value in the window (in the bad direction).
    pub current: f64,
    /// The baseline's median.
    pub baseline: f64,
    /// Robust score: deviation in units of the baseline's spread, signed by the bad direction.
    pub score: f64,
    pub direction: BadDirection,
    /// First point that left the baseline's normal range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<Timestamp>,
    /// True when the baseline was absent or degenerate and the window's own start stood in.
    #[serde(default)]
    pub baseline_estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub service: String,
    pub version: String,
    pub timestamp: Timestamp,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub author: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceEdge {
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedSource {
    pub source: String,
    pub kind: String,
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvidenceWindow {
    pub start: Timestamp,
    pub end: Timestamp,
    /// Deployments are looked for further back than logs and metrics: leaks and dark launches
    /// bite hours after the deploy.
    pub deployments_since: Timestamp,
}

/// Everything gathered for one investigation attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContextBundle {
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<EvidenceWindow>,
    /// The services the evidence was gathered for.
    pub services: Vec<String>,
    pub topology: Vec<ServiceEdge>,
    pub logs: Vec<LogLine>,
    pub metrics: Vec<MetricSeries>,
    pub anomalies: Vec<MetricAnomaly>,
    pub deployments: Vec<Deployment>,
    pub failed_sources: Vec<FailedSource>,
    /// Which sources answered (`scenario:logs`, `prometheus`, ...).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Set when evidence was cut to stay within bounds; says what was dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootCauseCandidate {
    pub service: String,
    pub score: f64,
    /// The kind of fault the evidence suggests (`bad_deploy`, `resource_exhaustion`, ...).
    #[serde(default)]
    pub fault: String,
    #[serde(default)]
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootCauseHypothesis {
    pub primary_cause: String,
    pub root_cause_service: String,
    #[serde(default)]
    pub fault: String,
    /// Best first.
    pub candidates: Vec<RootCauseCandidate>,
    pub contributing_factors: Vec<String>,
    pub evidence: Vec<String>,
    pub confidence: f64,
    pub alternatives: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect_deployment: Option<Deployment>,
    #[serde(default)]
    pub analyst: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationStep {
    pub description: String,
    /// What the step changes. `None` only in steps recorded by an IRAS older than typed
    /// actions, which kept a shell command instead: those are shown, never run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The command an older IRAS recorded (display only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rollback_command: String,
    pub risk_level: RiskLevel,
    pub estimated_duration_seconds: u64,
    /// How long the executor waits for the resource to be stable; default from the estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

impl RemediationStep {
    pub fn new(description: String, action: Action, risk: RiskLevel, seconds: u64) -> Self {
        RemediationStep {
            description,
            action: Some(action),
            command: String::new(),
            rollback_command: String::new(),
            risk_level: risk,
            estimated_duration_seconds: seconds,
            timeout_seconds: None,
        }
    }

    /// True when the executor can restore what was live before this step.
    pub fn has_rollback(&self) -> bool {
        self.action.as_ref().is_some_and(Action::reversible)
    }

    /// The wait for stability, bounded: twice the estimate, between one and fifteen minutes.
    pub fn timeout(&self) -> std::time::Duration {
        let s = self
            .timeout_seconds
            .unwrap_or(self.estimated_duration_seconds.saturating_mul(2))
            .clamp(60, 900);
        std::time::Duration::from_secs(s)
    }

    /// What a person reads: rendered from the action, or the recorded command of an old step.
    pub fn text(&self) -> ActionText {
        match &self.action {
            Some(a) => a.render(),
            None => ActionText {
                cli: self.command.clone(),
                resource: "recorded as a command by an earlier IRAS".into(),
                change: "not a typed action: it cannot run".into(),
                rollback: if self.rollback_command.trim().is_empty() {
                    "none".into()
                } else {
                    self.rollback_command.clone()
                },
            },
        }
    }
}

/// The operator's remediation policy's verdict on one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVerdict {
    pub step: usize,
    pub allowed: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationPlan {
    pub summary: String,
    pub steps: Vec<RemediationStep>,
    /// Set by the plan stage, never taken from the analyst.
    pub reversible: bool,
    pub requires_human_approval: bool,
    /// True when some command is outside the remediation policy: the plan must not run.
    #[serde(default)]
    pub blocked_by_policy: bool,
    #[serde(default)]
    pub policy: Vec<PolicyVerdict>,
    /// Why the stage overrode what the analyst proposed.
    #[serde(default)]
    pub safety_notes: Vec<String>,
    #[serde(default)]
    pub analyst: String,
    /// How many distinct people must approve (from the policy); set by the plan stage.
    #[serde(default = "one")]
    pub required_approvers: u32,
}

fn one() -> u32 {
    1
}

impl RemediationPlan {
    /// The hash the approval is bound to: see [`crate::action::actions_hash`].
    pub fn actions_hash(&self) -> String {
        crate::action::actions_hash(&self.steps)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Rejected,
    /// Nobody decided: the source recovered and `AUTO_CANCEL_ON_RECOVERY` ended the wait.
    Recovered,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
            Decision::Recovered => "recovered",
        }
    }
}

/// Who decided, as far as IRAS could check it. The approver's name is for people to read;
/// this is what makes two approvals two people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApproverIdentity {
    /// The named API key that authenticated the request (`APPROVAL_API_KEYS=name:key`).
    ApiKey { name: String },
    /// A Slack user, by the id Slack signed into the click (names can be changed; ids not).
    Slack {
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        team_id: Option<String>,
    },
    /// A name typed on the approval page (empty when left blank), checked by nobody: what is
    /// known is that whoever typed it held the signed link, and where that link was sent.
    SelfDeclared {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link_sent_to: Option<String>,
    },
    /// Whoever runs `iras` on this machine (the CLI, the demo).
    Local { name: String },
    /// The IAM principal whose SigV4 signature API Gateway checked (`API_AUTH=iam`).
    Iam { arn: String },
}

impl ApproverIdentity {
    /// What two approvals must differ in. A verified identity is its key or id; a typed name
    /// is only the name, whatever its case or spacing.
    pub fn key(&self) -> String {
        match self {
            ApproverIdentity::ApiKey { name } => format!("api-key:{name}"),
            ApproverIdentity::Slack { user_id, team_id } => {
                format!("slack:{}/{user_id}", team_id.as_deref().unwrap_or(""))
            }
            ApproverIdentity::SelfDeclared { name, .. } => {
                format!("self-declared:{}", name.trim().to_lowercase())
            }
            ApproverIdentity::Local { name } => format!("local:{}", name.trim().to_lowercase()),
            ApproverIdentity::Iam { arn } => format!("iam:{arn}"),
        }
    }

    /// How the decision reached IRAS, as the timeline and the on-call channel tell it.
    pub fn via(identity: Option<&ApproverIdentity>, channel: &str) -> String {
        match identity {
            Some(ApproverIdentity::SelfDeclared {
                link_sent_to: Some(to),
                ..
            }) => format!("{channel}, through the link sent to {to}"),
            _ => channel.to_string(),
        }
    }

    /// Whether two decisions are one person's. The same checked identity is; so is the same
    /// name when either side is only a name (typed on the page, or recorded before identities
    /// were): "alice" typed on the page and the key named alice count once, as a careful
    /// reader would count them.
    pub fn same_person(
        a: (&str, Option<&ApproverIdentity>),
        b: (&str, Option<&ApproverIdentity>),
    ) -> bool {
        let name = |(approver, identity): (&str, Option<&ApproverIdentity>)| {
            let n = match identity {
                Some(ApproverIdentity::SelfDeclared { name, .. }) if !name.trim().is_empty() => {
                    name.as_str()
                }
                Some(ApproverIdentity::ApiKey { name })
                | Some(ApproverIdentity::Local { name }) => name.as_str(),
                _ => approver,
            };
            n.trim().to_lowercase()
        };
        let key = |(approver, identity): (&str, Option<&ApproverIdentity>)| match identity {
            Some(i) => i.key(),
            None => format!("self-declared:{}", approver.trim().to_lowercase()),
        };
        let checked = |i: Option<&ApproverIdentity>| i.is_some_and(ApproverIdentity::verified);
        key(a) == key(b) || ((!checked(a.1) || !checked(b.1)) && name(a) == name(b))
    }

    /// True when IRAS checked who this is (a key or a signed Slack click).
    pub fn verified(&self) -> bool {
        matches!(
            self,
            ApproverIdentity::ApiKey { .. }
                | ApproverIdentity::Slack { .. }
                | ApproverIdentity::Iam { .. }
        )
    }

    /// How it reads beside the name: "API key ops-bot", "Slack user U123", "self-declared".
    pub fn describe(&self) -> String {
        match self {
            ApproverIdentity::ApiKey { name } => format!("API key {name}"),
            ApproverIdentity::Slack { user_id, .. } => format!("Slack user {user_id}"),
            ApproverIdentity::SelfDeclared {
                link_sent_to: Some(to),
                ..
            } => format!("self-declared, through the link sent to {to}"),
            ApproverIdentity::SelfDeclared { .. } => "self-declared".into(),
            ApproverIdentity::Local { .. } => "local operator".into(),
            ApproverIdentity::Iam { arn } => format!("IAM principal {arn}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    pub decision: Decision,
    pub approver: String,
    /// Records written before identities existed have none: their name is all there is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ApproverIdentity>,
    /// `cli`, `api`, `page`, `slack`, `demo`.
    pub channel: String,
    pub decided_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The plan this person saw and decided on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plan_hash: String,
    /// The decision is recorded but the waiting execution has not yet been told (the outbox):
    /// a crash or an unreachable pipeline between the two leaves this set, and
    /// [`crate::stages::reconcile_decisions`] delivers it again. Records written before the
    /// field existed were delivered in the same call, so absent means delivered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delivery_pending: bool,
}

/// The pending approval. The task token stays in the store: it is never serialised into
/// API views (see `Incident::redacted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub approval_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task_token: String,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ApprovalDecision>,
    /// Where the notifier posted the request (for Slack: channel and message ts), so a later
    /// stage — on AWS another Lambda — threads its updates under it and edits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ref: Option<String>,
    /// The hash of the plan's actions when approval was requested; Remediate runs only a plan
    /// that still hashes to this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plan_hash: String,
    /// How many distinct people must approve before the plan runs.
    #[serde(default = "one")]
    pub required_approvers: u32,
    /// Approvals so far, one per person, while more are needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalDecision>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationReason {
    LowConfidence,
    Rejected,
    ApprovalTimeout,
    RemediationFailed,
    PolicyBlocked,
    /// The root cause is known but no safe automated action fits: a person must act.
    NoRemediation,
    StageFailure,
    /// The plan was applied, the symptoms did not recover, and it was rolled back.
    NotRecovered,
    /// The plan was applied but no samples came back to tell whether it helped.
    Unverified,
    /// The stored plan no longer matches the one approved.
    PlanChanged,
}

impl EscalationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationReason::LowConfidence => "low_confidence",
            EscalationReason::Rejected => "rejected",
            EscalationReason::ApprovalTimeout => "approval_timeout",
            EscalationReason::RemediationFailed => "remediation_failed",
            EscalationReason::PolicyBlocked => "policy_blocked",
            EscalationReason::NoRemediation => "no_remediation",
            EscalationReason::StageFailure => "stage_failure",
            EscalationReason::NotRecovered => "not_recovered",
            EscalationReason::Unverified => "unverified",
            EscalationReason::PlanChanged => "plan_changed",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            EscalationReason::LowConfidence => {
                "root cause not found with enough confidence after every attempt"
            }
            EscalationReason::Rejected => "the remediation plan was rejected",
            EscalationReason::ApprovalTimeout => "no decision on the plan reached IRAS in time",
            EscalationReason::RemediationFailed => {
                "a remediation step failed; completed steps were rolled back"
            }
            EscalationReason::PolicyBlocked => {
                "the plan contains commands outside the remediation policy"
            }
            EscalationReason::NoRemediation => {
                "no safe automated remediation fits this root cause; manual action needed"
            }
            EscalationReason::StageFailure => "a pipeline stage kept failing",
            EscalationReason::NotRecovered => {
                "applied but did not help: the symptoms did not recover, so the plan was rolled back"
            }
            EscalationReason::Unverified => {
                "applied, but recovery could not be verified: the symptom series returned no samples"
            }
            EscalationReason::PlanChanged => {
                "the stored plan differs from the one approved: it was not run"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub reason: EscalationReason,
    pub detail: String,
    pub escalated_at: Timestamp,
    /// Which pager took it (`console`, `pagerduty`, ...), or the error if paging failed.
    pub paged_via: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepPhase {
    Apply,
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Recorded before the command runs; still `started` after a crash means "outcome unknown".
    Started,
    Succeeded,
    Failed,
}

/// One action run (or that would have run, in dry-run) against the operator's systems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub phase: StepPhase,
    /// Index of the plan step this applies or rolls back.
    pub step: usize,
    /// The action's CLI equivalent, for people (older records: the command that ran).
    pub command: String,
    #[serde(default)]
    pub rollback_command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// What was live before the change, read and recorded before anything was changed;
    /// rollback restores exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<ResourceState>,
    /// What was live once the step ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ResourceState>,
    pub status: StepStatus,
    pub executor: String,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    #[serde(default)]
    pub output: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemediationOutcome {
    Applied,
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub at: Timestamp,
    /// Deterministic per fact (`triage`, `rca:2`, `step:apply:0:end`, ...): a retried stage
    /// that records the same fact again does not duplicate it.
    pub key: String,
    pub stage: String,
    pub message: String,
}

/// One investigation attempt: the evidence gathered and the hypothesis drawn from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvestigationAttempt {
    pub attempt: u32,
    pub context: ContextBundle,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis: Option<RootCauseHypothesis>,
    pub gathered_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub incident_id: IncidentId,
    pub status: IncidentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub fingerprint: String,
    pub alert: Alert,
    /// What the source kept sending: counted beside the record by the store, never in it.
    #[serde(default, skip_serializing_if = "AlertRepeats::is_empty")]
    pub repeats: AlertRepeats,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// When the incident reached a final status: the reopen cool-down counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    /// When the source last said the problem was over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_recovered_at: Option<Timestamp>,
    /// When a person acknowledged the alert at the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_acknowledged_at: Option<Timestamp>,
    /// Optimistic concurrency: every write must name the version it read.
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<TriageResult>,
    #[serde(default)]
    pub approval_timeout_seconds: u64,
    #[serde(default)]
    pub rca_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis: Option<RootCauseHypothesis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<RemediationPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<RemediationOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    /// Whether the applied plan made the symptoms go away, with the figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    #[serde(default)]
    pub timeline: Vec<TimelineEvent>,
    /// Every model call made for this incident (none with the offline analyst).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub llm_calls: Vec<crate::usage::LlmCall>,
}

/// Deliveries of an incident's alert after the one that opened it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AlertRepeats {
    /// Every repeat, recurrences included.
    pub count: u64,
    /// Repeats that came within the cool-down after the incident closed (flaps).
    #[serde(default)]
    pub recurrences: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// The first few repeats as sent (each bounded by [`MAX_SAMPLE_BYTES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Alert>,
}

impl AlertRepeats {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// One more delivery of an incident's alert, for [`crate::ports::IncidentStore::record_repeat`].
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRepeat {
    pub at: Timestamp,
    /// It came after the incident closed, within the cool-down.
    pub recurrence: bool,
    /// Bounded by the caller ([`Alert::sample`]).
    pub sample: Alert,
}

impl Incident {
    /// The key PagerDuty deduplicates pages by: derived from the source's key, so pages for
    /// the same alert collapse into one PagerDuty incident across IRAS incidents.
    pub fn page_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.fingerprint.as_bytes());
        format!("iras-{}", &hex::encode(digest)[..32])
    }

    /// The source has said the problem is over since it last fired.
    pub fn source_recovered(&self) -> bool {
        match (self.source_recovered_at, self.repeats.last_seen) {
            (Some(r), Some(fired)) => r >= fired,
            (Some(_), None) => true,
            _ => false,
        }
    }

    pub fn open(id: IncidentId, alert: Alert, now: Timestamp) -> Incident {
        let fingerprint = alert.fingerprint();
        Incident {
            incident_id: id,
            status: IncidentStatus::Processing,
            severity: None,
            title: alert.title.clone(),
            service: alert.service.clone(),
            fingerprint,
            created_at: now,
            updated_at: now,
            resolved_at: None,
            version: 0,
            triage: None,
            approval_timeout_seconds: 0,
            rca_attempts: 0,
            hypothesis: None,
            plan: None,
            approval: None,
            remediation: None,
            escalation: None,
            verification: None,
            timeline: vec![TimelineEvent {
                at: alert.timestamp,
                key: "alert".into(),
                stage: "alert".into(),
                message: format!("alert fired: {}", alert.title),
            }],
            repeats: AlertRepeats::default(),
            closed_at: None,
            source_recovered_at: None,
            source_acknowledged_at: None,
            llm_calls: Vec::new(),
            alert,
        }
    }

    /// Appends a timeline event unless one with the same key is already there.
    pub fn record(&mut self, at: Timestamp, key: impl Into<String>, stage: &str, message: String) {
        let key = key.into();
        if self.timeline.iter().any(|e| e.key == key) {
            return;
        }
        self.timeline.push(TimelineEvent {
            at,
            key,
            stage: stage.to_string(),
            message,
        });
    }

    pub fn has_event(&self, key: &str) -> bool {
        self.timeline.iter().any(|e| e.key == key)
    }

    /// The record as shown outside the store: without the task token.
    /// A decision is recorded but the waiting execution has not yet been told of it.
    pub fn decision_delivery_pending(&self) -> bool {
        self.approval
            .as_ref()
            .and_then(|a| a.decision.as_ref())
            .is_some_and(|d| d.delivery_pending)
    }

    pub fn redacted(&self) -> Incident {
        let mut copy = self.clone();
        if let Some(a) = copy.approval.as_mut() {
            a.task_token.clear();
        }
        copy
    }
}

/// How a verification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationOutcome {
    /// Every symptom series is back near its baseline.
    Recovered,
    /// Samples came back and some series are still anomalous; more attempts follow.
    Pending,
    /// Still anomalous after the last attempt.
    NotRecovered,
    /// No samples for any symptom series after the last attempt.
    Unverified,
    /// Nothing was changed (dry-run), so there is nothing to verify.
    Skipped,
}

impl VerificationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationOutcome::Recovered => "recovered",
            VerificationOutcome::Pending => "pending",
            VerificationOutcome::NotRecovered => "not_recovered",
            VerificationOutcome::Unverified => "unverified",
            VerificationOutcome::Skipped => "skipped",
        }
    }
}

/// One symptom series, read again after the plan was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymptomCheck {
    pub service: String,
    pub metric: String,
    #[serde(default)]
    pub unit: String,
    pub baseline: f64,
    /// The anomalous value the investigation saw.
    pub during_incident: f64,
    /// The median of the samples since the change; `None` when no sample came back.
    pub since_change: Option<f64>,
    pub samples: usize,
    pub recovered: bool,
}

impl SymptomCheck {
    pub fn describe(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        match self.since_change {
            Some(v) => format!(
                "{} {}: {:.4}{unit} during the incident, {:.4}{unit} since the change ({} sample(s)), baseline {:.4}{unit}: {}",
                self.service,
                self.metric,
                self.during_incident,
                v,
                self.samples,
                self.baseline,
                if self.recovered { "recovered" } else { "NOT recovered" }
            ),
            None => format!(
                "{} {}: {:.4}{unit} during the incident, no sample since the change, baseline {:.4}{unit}",
                self.service, self.metric, self.during_incident, self.baseline
            ),
        }
    }
}

/// What the Verify stage found, attempt by attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub outcome: VerificationOutcome,
    pub attempts: u32,
    pub checks: Vec<SymptomCheck>,
    pub checked_at: Timestamp,
    #[serde(default)]
    pub note: String,
}

impl Verification {
    pub fn verified(&self) -> bool {
        self.outcome == VerificationOutcome::Recovered
    }

    pub fn headline(&self) -> String {
        let what = match self.outcome {
            VerificationOutcome::Recovered => "verified: the symptoms recovered",
            VerificationOutcome::Pending => "not yet verified",
            VerificationOutcome::NotRecovered => "not verified: applied but did not help",
            VerificationOutcome::Unverified => "not verified: no samples since the change",
            VerificationOutcome::Skipped => "not verified: nothing was changed (dry-run)",
        };
        let mut s = format!("{what} (after {} check(s))", self.attempts);
        if !self.note.is_empty() {
            s.push_str(&format!("; {}", self.note));
        }
        s
    }

    /// The figures on one line, for an escalation or a timeline entry.
    pub fn figures(&self) -> String {
        self.checks
            .iter()
            .map(SymptomCheck::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Who did what, for the post-mortem's action list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionItem {
    pub description: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub priority: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostMortemOutcome {
    Resolved,
    Escalated,
    /// The source recovered while the plan waited for approval, and the wait was ended
    /// (`AUTO_CANCEL_ON_RECOVERY`): nothing was applied.
    Recovered,
}

impl PostMortemOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PostMortemOutcome::Resolved => "resolved",
            PostMortemOutcome::Escalated => "escalated",
            PostMortemOutcome::Recovered => "recovered",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostMortem {
    pub incident_id: IncidentId,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    pub outcome: PostMortemOutcome,
    pub summary: String,
    pub root_cause: String,
    pub resolution: String,
    /// From recorded timestamps, never from a model.
    pub timeline: Vec<TimelineEvent>,
    pub action_items: Vec<ActionItem>,
    pub lessons: Vec<String>,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub duration_seconds: i64,
    pub rca_attempts: u32,
    pub steps_applied: usize,
    pub steps_rolled_back: usize,
    pub written_at: Timestamp,
    #[serde(default)]
    pub analyst: String,
    /// Model calls summed from the incident's records.
    #[serde(default)]
    pub llm_usage: crate::usage::LlmUsage,
    /// Whether recovery was verified after the plan was applied, with the numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

impl PostMortem {
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut md = String::new();
        let _ = writeln!(md, "# Post-mortem: {}", self.title);
        let _ = writeln!(md);
        let _ = writeln!(md, "- **Incident**: {}", self.incident_id);
        let _ = writeln!(
            md,
            "- **Severity**: {}",
            self.severity.map(|s| s.as_str()).unwrap_or("untriaged")
        );
        let outcome = self.outcome.as_str();
        let _ = writeln!(md, "- **Outcome**: {outcome}");
        let _ = writeln!(
            md,
            "- **Duration**: {} (from {} to {})",
            format_duration(self.duration_seconds),
            format_time(self.started_at),
            format_time(self.ended_at)
        );
        let _ = writeln!(
            md,
            "- **RCA attempts**: {}; steps applied: {}; rolled back: {}",
            self.rca_attempts, self.steps_applied, self.steps_rolled_back
        );
        if self.llm_usage.calls > 0 {
            let u = &self.llm_usage;
            let _ = writeln!(
                md,
                "- **Model calls**: {} ({} failed); {} tokens in, {} out; {} ms; estimated cost ${:.4}",
                u.calls, u.failed_calls, u.input_tokens, u.output_tokens, u.latency_ms,
                u.estimated_cost_usd
            );
        }
        let _ = writeln!(md, "\n## Summary\n\n{}", self.summary);
        let _ = writeln!(md, "\n## Root cause\n\n{}", self.root_cause);
        let _ = writeln!(md, "\n## Resolution\n\n{}", self.resolution);
        if let Some(v) = &self.verification {
            let _ = writeln!(md, "\n## Verification\n\n{}", v.headline());
            for c in &v.checks {
                let _ = writeln!(md, "- {}", c.describe());
            }
        }
        let _ = writeln!(md, "\n## Timeline (UTC)\n");
        for e in &self.timeline {
            let _ = writeln!(
                md,
                "- {} [{}] {}",
                e.at.format("%Y-%m-%d %H:%M:%S"),
                e.stage,
                e.message
            );
        }
        let _ = writeln!(md, "\n## Action items\n");
        for a in &self.action_items {
            let owner = if a.owner.is_empty() {
                String::new()
            } else {
                format!(" (owner: {})", a.owner)
            };
            let _ = writeln!(md, "- [ ] {}{owner}", a.description);
        }
        if !self.lessons.is_empty() {
            let _ = writeln!(md, "\n## Lessons\n");
            for l in &self.lessons {
                let _ = writeln!(md, "- {l}");
            }
        }
        md
    }
}

/// A duration as a person reads it: `45s`, `2m 5s`, `1h 30m`.
pub fn format_duration(seconds: i64) -> String {
    let s = u64::try_from(seconds).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
}

/// A moment as a person reads it, to the second: `2024-03-12 14:07:30 UTC`.
pub fn format_time(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn people_read_durations_and_times_to_the_second() {
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(125), "2m 5s");
        assert_eq!(format_duration(5400), "1h 30m");
        assert_eq!(format_duration(-3), "0s");
        let t = DateTime::parse_from_rfc3339("2024-03-12T14:07:30.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_time(t), "2024-03-12 14:07:30 UTC");
    }

    #[test]
    fn alert_without_title_names_the_field() {
        let err = Alert::from_json(json!({"timestamp": "2024-03-12T14:07:30Z"})).unwrap_err();
        assert_eq!(err, AlertError::Missing("title"));
        assert!(err.to_string().contains("`title`"));
    }

    #[test]
    fn alert_without_timestamp_names_the_field() {
        let err = Alert::from_json(json!({"title": "x"})).unwrap_err();
        assert_eq!(err.field(), Some("timestamp"));
    }

    #[test]
    fn alert_with_non_rfc3339_timestamp_is_refused() {
        let err = Alert::from_json(json!({"title": "x", "timestamp": "yesterday"})).unwrap_err();
        assert_eq!(err.field(), Some("timestamp"));
        let err = Alert::from_json(json!({"title": "x", "timestamp": 1710252450})).unwrap_err();
        assert_eq!(err.field(), Some("timestamp"));
    }

    #[test]
    fn alert_keeps_extra_fields_and_finds_service_in_labels() {
        let a = Alert::from_json(json!({
            "title": "High error rate", "timestamp": "2024-03-12T14:07:30+01:00",
            "labels": {"service": "payment-service"}, "value": 0.45, "note": "<b>é</b>"
        }))
        .unwrap();
        assert_eq!(a.service.as_deref(), Some("payment-service"));
        assert_eq!(a.timestamp.to_rfc3339(), "2024-03-12T13:07:30+00:00");
        assert_eq!(a.number("value"), Some(0.45));
        assert_eq!(a.fields["note"], json!("<b>é</b>"));
    }

    #[test]
    fn fingerprint_prefers_the_sources_dedup_key() {
        let a = Alert::from_json(
            json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z", "fingerprint": "abc"}),
        )
        .unwrap();
        assert_eq!(a.fingerprint(), "abc");
        let b = Alert::from_json(
            json!({"title": "T ", "timestamp": "2024-03-12T14:07:30Z", "service": "s"}),
        )
        .unwrap();
        assert_eq!(b.fingerprint(), "s|t");
    }

    #[test]
    fn a_service_that_is_not_a_string_is_refused_naming_it() {
        for service in [json!(42), json!({"name": "api"}), json!(["a"])] {
            let e = Alert::from_json(
                json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z", "service": service}),
            )
            .unwrap_err();
            assert_eq!(e.field(), Some("service"));
        }
    }

    #[test]
    fn nesting_deeper_than_the_store_reads_back_is_refused() {
        let mut deep = json!(1);
        for _ in 0..MAX_ALERT_DEPTH {
            deep = json!([deep]);
        }
        let e = Alert::from_json(
            json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z", "deep": deep}),
        )
        .unwrap_err();
        assert!(matches!(e, AlertError::TooDeep { .. }), "{e}");
        assert_eq!(json_depth(&json!({"a": [1, {"b": 2}]})), 3);
        assert_eq!(json_depth(&json!(1)), 0);
    }

    #[test]
    fn an_accepted_alert_always_reads_back_from_its_record() {
        let a = Alert::from_json(json!({
            "title": "t", "timestamp": "2024-03-12T14:07:30Z", "service": "s",
            "_iras": {"source": "forged"}, "status": "resolved", "severity": "critical"
        }))
        .unwrap();
        assert_eq!(a.state(), AlertState::Resolved);
        assert_eq!(a.origin.as_ref().unwrap().source, "generic");
        let back: Alert = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn an_alert_too_large_for_the_record_loses_its_largest_fields_and_says_so() {
        let a = Alert::from_json(json!({
            "title": "t", "timestamp": "2024-03-12T14:07:30Z", "service": "s",
            "raw": "x".repeat(200_000), "labels": {"namespace": "shop"}
        }))
        .unwrap();
        let (cut, note) = a.bounded(MAX_ALERT_BYTES);
        assert!(serde_json::to_vec(&cut).unwrap().len() <= MAX_ALERT_BYTES);
        assert!(cut.fields.get("raw").is_none());
        assert_eq!(cut.text("namespace").as_deref(), Some("shop"));
        assert!(note.unwrap().contains("raw"));
        let small =
            Alert::from_json(json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z"})).unwrap();
        assert_eq!(small.clone().bounded(MAX_ALERT_BYTES), (small, None));
    }

    #[test]
    fn a_large_repeat_keeps_only_a_small_sample() {
        let a = Alert::from_json(json!({
            "title": "t", "timestamp": "2024-03-12T14:07:30Z", "blob": "x".repeat(100_000)
        }))
        .unwrap();
        let s = a.sample(MAX_SAMPLE_BYTES);
        assert!(serde_json::to_vec(&s).unwrap().len() < MAX_SAMPLE_BYTES);
        assert_eq!(s.title, "t");
        let small =
            Alert::from_json(json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z"})).unwrap();
        assert_eq!(small.sample(MAX_SAMPLE_BYTES), small);
    }

    #[test]
    fn the_severity_table_shifts_five_level_priorities_by_one() {
        use severity_table::from_source;
        assert_eq!(from_source("P1"), Some(Severity::P0));
        assert_eq!(from_source("critical"), Some(Severity::P1));
        assert_eq!(from_source("error"), Some(Severity::P2));
        assert_eq!(from_source("warning"), Some(Severity::P3));
        assert_eq!(from_source("P5"), Some(Severity::P3));
        assert_eq!(from_source("whatever"), None);
    }

    #[test]
    fn redacted_incident_hides_the_task_token() {
        let alert =
            Alert::from_json(json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z"})).unwrap();
        let now = alert.timestamp;
        let mut inc = Incident::open(IncidentId::generate(), alert, now);
        inc.approval = Some(ApprovalRequest {
            approval_id: "a".into(),
            task_token: "secret-token".into(),
            requested_at: now,
            expires_at: now,
            decision: None,
            message_ref: None,
            plan_hash: String::new(),
            required_approvers: 1,
            approvals: vec![],
        });
        let shown = serde_json::to_string(&inc.redacted()).unwrap();
        assert!(!shown.contains("secret-token"));
    }

    #[test]
    fn a_decision_stored_before_identities_loads_without_one_and_a_page_one_round_trips() {
        let old: ApprovalDecision = serde_json::from_value(json!({
            "decision": "approved", "approver": "alice", "channel": "api",
            "decided_at": "2024-03-12T14:07:30Z"
        }))
        .unwrap();
        assert_eq!(old.identity, None);
        let shown = serde_json::to_value(&old).unwrap();
        assert!(shown.get("identity").is_none(), "{shown}");

        let page = ApprovalDecision {
            identity: Some(ApproverIdentity::SelfDeclared {
                name: "alice".into(),
                link_sent_to: Some("Slack channel C1".into()),
            }),
            ..old
        };
        let stored = serde_json::to_value(&page).unwrap();
        assert_eq!(
            stored["identity"],
            json!({"kind": "self_declared", "name": "alice", "link_sent_to": "Slack channel C1"})
        );
        let back: ApprovalDecision = serde_json::from_value(stored).unwrap();
        assert_eq!(back, page);
        assert_eq!(
            ApproverIdentity::via(back.identity.as_ref(), "page"),
            "page, through the link sent to Slack channel C1"
        );
    }

    #[test]
    fn one_person_is_one_identity_or_one_name_where_a_name_is_all_there_is() {
        let key = |n: &str| ApproverIdentity::ApiKey { name: n.into() };
        let typed = |n: &str| ApproverIdentity::SelfDeclared {
            name: n.into(),
            link_sent_to: None,
        };
        let slack = ApproverIdentity::Slack {
            user_id: "U060R4BJ4".into(),
            team_id: None,
        };
        let same = ApproverIdentity::same_person;
        assert!(same(("x", Some(&key("ops"))), ("y", Some(&key("ops")))));
        assert!(!same(
            ("alice", Some(&key("alice"))),
            ("bob", Some(&key("bob")))
        ));
        // A name typed on the page matches the same name by any channel.
        assert!(same(
            ("alice (self-declared)", Some(&typed(" Alice "))),
            ("alice", Some(&key("alice")))
        ));
        assert!(same(("alice", None), ("Alice", Some(&typed("alice")))));
        // Two checked identities with one display name are two people.
        assert!(!same(("alice", Some(&slack)), ("alice", Some(&key("ops")))));
        assert!(!same(
            ("carol", Some(&typed("carol"))),
            ("dave", Some(&typed("dave")))
        ));
    }

    #[test]
    fn a_step_recorded_as_a_command_by_an_earlier_iras_still_reads_and_displays() {
        let old_step: RemediationStep = serde_json::from_value(json!({
            "description": "undo", "command": "kubectl rollout undo deployment/x -n shop",
            "rollback_command": "kubectl rollout undo deployment/x -n shop",
            "risk_level": "medium", "estimated_duration_seconds": 60
        }))
        .unwrap();
        assert!(old_step.action.is_none());
        assert_eq!(
            old_step.text().cli,
            "kubectl rollout undo deployment/x -n shop"
        );
        assert!(
            !old_step.has_rollback(),
            "an untyped step is never restored"
        );
        let old_record: StepRecord = serde_json::from_value(json!({
            "phase": "apply", "step": 0, "command": "kubectl rollout undo deployment/x -n shop",
            "status": "succeeded", "executor": "dry-run", "started_at": "2024-03-12T14:07:30Z"
        }))
        .unwrap();
        assert!(old_record.prior.is_none() && old_record.action.is_none());
        let old_plan: RemediationPlan = serde_json::from_value(json!({
            "summary": "s", "steps": [], "reversible": false, "requires_human_approval": true
        }))
        .unwrap();
        assert_eq!(old_plan.required_approvers, 1);
    }

    #[test]
    fn incident_ids_are_safe_execution_names() {
        let id = IncidentId::generate();
        assert!(IncidentId::parse(id.as_str()).is_some());
        assert!(IncidentId::parse("../etc").is_none());
        assert!(IncidentId::parse("").is_none());
    }
}

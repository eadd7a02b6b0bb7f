//! Paging through PagerDuty's Events API v2 (`POST /v2/enqueue`): `trigger` on escalation
//! and `resolve` after, both keyed by [`Incident::page_key`] (derived from the source's own
//! alert key) as `dedup_key`: a retried escalation is one page, and so is the same alert
//! escalated again by a later IRAS incident while the first page is open.

use std::time::Duration;

use async_trait::async_trait;
use iras_core::config::ConfigError;
use iras_core::{Escalation, Incident, NotifyError, Pager, Severity};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};

use crate::client::{Caller, Failure, RateLimit};
use crate::config::{error, parse_base_url, Vars};
use crate::escape::clip;

pub const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limit on `payload.summary`.
const MAX_SUMMARY_CHARS: usize = 1024;
/// Waited before the one retry of a 429 (PagerDuty may not say how long).
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);
const RATE_LIMIT: RateLimit = RateLimit {
    default_wait: RATE_LIMIT_WAIT,
    max_wait: MAX_RETRY_WAIT,
};

/// P0 wakes people (`critical`); an untriaged incident pages as `error`: someone must look.
pub fn pagerduty_severity(severity: Option<Severity>) -> &'static str {
    match severity {
        Some(Severity::P0) => "critical",
        Some(Severity::P1) | None => "error",
        Some(Severity::P2) => "warning",
        Some(Severity::P3) => "info",
    }
}

#[derive(Clone)]
pub struct PagerDutyConfig {
    pub events_url: Url,
    /// The Events API v2 integration key of the service to page (`routing_key`).
    pub routing_key: String,
    /// Base of links back to the incident (`IRAS_PUBLIC_URL`).
    pub public_url: Option<Url>,
    pub timeout: Duration,
}

impl std::fmt::Debug for PagerDutyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutyConfig")
            .field("events_url", &self.events_url.as_str())
            .field("routing_key", &"<redacted>")
            .field("public_url", &self.public_url.as_ref().map(Url::as_str))
            .finish()
    }
}

impl PagerDutyConfig {
    pub fn new(events_url: Url, routing_key: &str) -> Self {
        PagerDutyConfig {
            events_url,
            routing_key: routing_key.into(),
            public_url: None,
            timeout: crate::config::DEFAULT_TIMEOUT,
        }
    }

    pub(crate) fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let Some(key) = vars.get("PAGERDUTY_INTEGRATION_KEY") else {
            return Ok(None);
        };
        // The events URL is a full endpoint, not a base.
        let events_url = match vars.get("PAGERDUTY_EVENTS_URL") {
            Some(v) => parse_base_url(v).map_err(|p| error("PAGERDUTY_EVENTS_URL", p))?,
            None => {
                parse_base_url(DEFAULT_EVENTS_URL).map_err(|p| error("PAGERDUTY_EVENTS_URL", p))?
            }
        };
        let mut c = PagerDutyConfig::new(events_url, key);
        c.public_url = vars.url("IRAS_PUBLIC_URL")?;
        c.timeout = vars.timeout()?;
        Ok(Some(c))
    }
}

pub struct PagerDutyPager {
    config: PagerDutyConfig,
    caller: Caller,
}

impl std::fmt::Debug for PagerDutyPager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(f)
    }
}

impl PagerDutyPager {
    pub fn new(config: PagerDutyConfig) -> Result<Self, ConfigError> {
        let caller = Caller::new("pagerduty", config.timeout)
            .map_err(|e| error("PAGERDUTY_EVENTS_URL", e))?;
        Ok(PagerDutyPager { config, caller })
    }

    fn link(&self, incident: &Incident) -> Option<String> {
        self.config.public_url.as_ref().map(|base| {
            format!(
                "{}/incidents/{}",
                base.as_str().trim_end_matches('/'),
                incident.incident_id
            )
        })
    }

    /// The trigger event: everything the person paged needs before opening a laptop.
    pub fn trigger_event(&self, incident: &Incident, escalation: &Escalation) -> Value {
        let link = self.link(incident);
        let summary = clip(
            &format!(
                "[{}] {}: {}",
                incident.severity.map(|s| s.as_str()).unwrap_or("untriaged"),
                incident.title,
                escalation.reason.describe()
            ),
            MAX_SUMMARY_CHARS,
        );
        let root_cause = incident.hypothesis.as_ref().map(|h| {
            json!({
                "service": h.root_cause_service,
                "cause": h.primary_cause,
                "fault": h.fault,
                "confidence": h.confidence,
                "evidence": h.evidence.iter().take(5).collect::<Vec<_>>(),
            })
        });
        let plan = incident.plan.as_ref().map(|p| {
            json!({
                "summary": p.summary,
                "blocked_by_policy": p.blocked_by_policy,
                "steps": p.steps.iter().enumerate().map(|(i, s)| {
                    let text = s.text();
                    json!({
                        "step": i + 1,
                        "description": s.description,
                        "command": text.cli,
                        "resource": text.resource,
                        "change": text.change,
                        "rollback": if s.has_rollback() { text.rollback } else { "(none: irreversible)".into() },
                        "risk": s.risk_level.as_str(),
                    })
                }).collect::<Vec<_>>(),
            })
        });
        let decision = incident
            .approval
            .as_ref()
            .and_then(|a| a.decision.as_ref())
            .map(|d| {
                json!({
                    "decision": d.decision.as_str(),
                    "approver": d.approver,
                    "channel": d.channel,
                    "at": d.decided_at.to_rfc3339(),
                    "comment": d.comment,
                })
            });
        let origin = incident.alert.origin.as_ref();
        // The affected service, else the host the source named.
        let source = incident
            .service
            .clone()
            .or_else(|| origin.and_then(|o| o.host.clone()))
            .unwrap_or_else(|| "iras".into());
        let component = origin
            .and_then(|o| o.component.clone())
            .or_else(|| incident.service.clone());
        let group = origin.and_then(|o| o.group.clone());
        let mut event = json!({
            "routing_key": self.config.routing_key,
            "event_action": "trigger",
            "dedup_key": incident.page_key(),
            "client": "IRAS",
            "payload": {
                "summary": summary,
                "source": source,
                "severity": pagerduty_severity(incident.severity),
                "timestamp": escalation.escalated_at.to_rfc3339(),
                "component": component,
                "group": group,
                "class": escalation.reason.as_str(),
                "custom_details": {
                    "incident_id": incident.incident_id.as_str(),
                    "title": incident.title,
                    "severity": incident.severity.map(|s| s.as_str()),
                    "service": incident.service,
                    "reason": escalation.reason.as_str(),
                    "reason_text": escalation.reason.describe(),
                    "detail": escalation.detail,
                    "root_cause": root_cause,
                    "plan": plan,
                    "approval": decision,
                    "rca_attempts": incident.rca_attempts,
                    "link": link,
                    "alert_source": origin.map(|o| o.source.as_str()),
                    "alert_key": origin.and_then(|o| o.key.as_deref()),
                    "repeats": incident.repeats.count,
                    "recurrences": incident.repeats.recurrences,
                },
            },
        });
        let mut links: Vec<Value> = Vec::new();
        if let Some(link) = &link {
            event["client_url"] = json!(link);
            links.push(json!({"href": link, "text": "Incident in IRAS"}));
        }
        // The source's own links: generator, runbook, dashboard, ...
        for l in incident.alert.links() {
            links.push(json!({"href": l.href, "text": l.kind}));
        }
        if !links.is_empty() {
            event["links"] = Value::Array(links);
        }
        event
    }

    /// Sends one event; 202 means PagerDuty took it. A 429 is retried once.
    async fn enqueue(&self, event: &Value, what: &str) -> Result<(), Failure> {
        let reply = self
            .caller
            .call_retrying_429(what, RATE_LIMIT, || {
                self.caller
                    .client
                    .post(self.config.events_url.clone())
                    .json(event)
            })
            .await?;
        match reply.status {
            s if s.is_success() => {
                let body: Value = self.caller.json(&reply)?;
                if body.get("status").and_then(Value::as_str) != Some("success") {
                    return Err(Failure::BadResponse(format!(
                        "pagerduty: {what}: accepted without status success: {}",
                        crate::client::snippet(&reply.body)
                    )));
                }
                Ok(())
            }
            StatusCode::BAD_REQUEST => {
                // `{"status":"invalid event","message":"...","errors":["..."]}`
                let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
                let errors: Vec<&str> = body
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                Err(Failure::Unavailable(format!(
                    "pagerduty: {what}: invalid event: {}{}",
                    body.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("no message"),
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                )))
            }
            _ => Err(self.caller.status_failure(&reply, what)),
        }
    }
}

#[async_trait]
impl Pager for PagerDutyPager {
    fn name(&self) -> String {
        "pagerduty".into()
    }

    async fn page(&self, incident: &Incident, escalation: &Escalation) -> Result<(), NotifyError> {
        self.enqueue(&self.trigger_event(incident, escalation), "trigger")
            .await
            .map_err(NotifyError::from)
    }

    async fn resolve(&self, incident: &Incident) -> Result<(), NotifyError> {
        let event = json!({
            "routing_key": self.config.routing_key,
            "event_action": "resolve",
            "dedup_key": incident.page_key(),
        });
        self.enqueue(&event, "resolve")
            .await
            .map_err(NotifyError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_map_to_pagerduty_levels() {
        assert_eq!(pagerduty_severity(Some(Severity::P0)), "critical");
        assert_eq!(pagerduty_severity(Some(Severity::P1)), "error");
        assert_eq!(pagerduty_severity(Some(Severity::P2)), "warning");
        assert_eq!(pagerduty_severity(Some(Severity::P3)), "info");
        assert_eq!(pagerduty_severity(None), "error");
    }
}

//! The notifier and pager when Slack and PagerDuty are not configured: structured log lines
//! (in CloudWatch Logs on AWS), one per notification, so the on-call trail exists even then
//! (and a log metric filter can alarm on `notification = "page"`).

use crate::domain::{Escalation, Incident};
use crate::ports::{Notifier, NotifyError, Pager};
use async_trait::async_trait;

/// Logs what Slack would be told.
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    fn name(&self) -> String {
        "log".into()
    }

    async fn approval_requested(
        &self,
        incident: &Incident,
        approval_url: Option<&str>,
    ) -> Result<Option<String>, NotifyError> {
        let steps = incident.plan.as_ref().map(|p| p.steps.len()).unwrap_or(0);
        let summary = incident
            .plan
            .as_ref()
            .map(|p| p.summary.as_str())
            .unwrap_or("");
        tracing::info!(
            notification = "approval_requested",
            incident = %incident.incident_id,
            severity = incident.severity.map(|s| s.as_str()).unwrap_or("?"),
            steps,
            plan = summary,
            approval_url = approval_url.unwrap_or("(no link: IRAS_PUBLIC_URL or the signing key is unset)"),
            "approval needed"
        );
        Ok(None)
    }

    async fn incident_updated(
        &self,
        incident: &Incident,
        message: &str,
    ) -> Result<(), NotifyError> {
        tracing::info!(
            notification = "incident_updated",
            incident = %incident.incident_id,
            status = incident.status.as_str(),
            message,
            "incident updated"
        );
        Ok(())
    }
}

/// Logs what PagerDuty would be sent, keyed by incident id (its dedup key there too).
pub struct LogPager;

#[async_trait]
impl Pager for LogPager {
    fn name(&self) -> String {
        "log".into()
    }

    async fn page(&self, incident: &Incident, escalation: &Escalation) -> Result<(), NotifyError> {
        tracing::warn!(
            notification = "page",
            dedup_key = %incident.incident_id,
            title = %incident.title,
            severity = incident.severity.map(|s| s.as_str()).unwrap_or("?"),
            reason = escalation.reason.as_str(),
            detail = %escalation.detail,
            "paging on-call"
        );
        Ok(())
    }

    async fn resolve(&self, incident: &Incident) -> Result<(), NotifyError> {
        tracing::info!(
            notification = "page_resolved",
            dedup_key = %incident.incident_id,
            "page resolved"
        );
        Ok(())
    }
}

//! Notifier and pager for a person at a terminal: what Slack and PagerDuty would say, on stderr.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use iras_core::ports::{Notifier, NotifyError, Pager};
use iras_core::{Escalation, Incident};

/// Prints to stderr unless quiet (tests), and remembers pages so one incident pages once.
#[derive(Default)]
pub struct Console {
    pub quiet: bool,
    paged: Mutex<HashSet<String>>,
}

impl Console {
    pub fn new(quiet: bool) -> Self {
        Console {
            quiet,
            paged: Mutex::new(HashSet::new()),
        }
    }

    fn say(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }
}

#[async_trait]
impl Notifier for Console {
    fn name(&self) -> String {
        "console".into()
    }

    async fn approval_requested(
        &self,
        incident: &Incident,
        approval_url: Option<&str>,
    ) -> Result<Option<String>, NotifyError> {
        let Some(plan) = &incident.plan else {
            return Ok(None);
        };
        let mut text = format!(
            "  ┌ approval needed for {} ({}): {}\n",
            incident.incident_id,
            incident.severity.map(|s| s.as_str()).unwrap_or("?"),
            plan.summary
        );
        for (i, s) in plan.steps.iter().enumerate() {
            let shown = s.text();
            text.push_str(&format!(
                "  │ {}. [{}] {}\n  │    run:      {}\n  │    change:   {}: {}\n  │    rollback: {}\n",
                i + 1,
                s.risk_level.as_str(),
                s.description,
                shown.cli,
                shown.resource,
                shown.change,
                if s.has_rollback() {
                    shown.rollback.as_str()
                } else {
                    "(none: irreversible)"
                }
            ));
        }
        for n in &plan.safety_notes {
            text.push_str(&format!("  │ safety: {n}\n"));
        }
        match approval_url {
            Some(url) => text.push_str(&format!("  └ decide at {url}")),
            None => text.push_str(&format!(
                "  └ decide with `iras approve {0}` or `iras reject {0}`",
                incident.incident_id
            )),
        }
        self.say(&text);
        Ok(None)
    }

    async fn incident_updated(
        &self,
        _incident: &Incident,
        _message: &str,
    ) -> Result<(), NotifyError> {
        Ok(())
    }
}

#[async_trait]
impl Pager for Console {
    fn name(&self) -> String {
        "console".into()
    }

    async fn page(&self, incident: &Incident, escalation: &Escalation) -> Result<(), NotifyError> {
        let first = self
            .paged
            .lock()
            .map_err(|_| NotifyError::Failed("console lock poisoned".into()))?
            .insert(incident.incident_id.to_string());
        if first {
            self.say(&format!(
                "  ☎ PAGE on-call for {} [{}]: {}",
                incident.incident_id,
                escalation.reason.as_str(),
                escalation.detail
            ));
        }
        Ok(())
    }

    async fn resolve(&self, _incident: &Incident) -> Result<(), NotifyError> {
        Ok(())
    }
}

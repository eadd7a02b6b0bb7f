//! The on-call channel in Slack (Web API `chat.postMessage` and `chat.update`): the approval
//! request as a Block Kit message with Approve / Reject buttons, and each later update as a
//! reply in its thread plus an edit of the original message showing the decision.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use iras_core::config::ConfigError;
use iras_core::{
    ApproverIdentity, Decision, Incident, IncidentStatus, Notifier, NotifyError, SlackWorkspace,
};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::{Caller, Failure, RateLimit};
use crate::config::{endpoint, error, Vars};
use crate::escape::{clip, slack_mrkdwn};

pub const DEFAULT_API_URL: &str = "https://slack.com/api";
/// `action_id`s of the buttons; `POST /slack/interactions` reads them back.
pub const APPROVE_ACTION: &str = "iras_approve";
pub const REJECT_ACTION: &str = "iras_reject";
pub const OPEN_PAGE_ACTION: &str = "iras_open_page";
/// Steps shown in the message; the approval page shows every one.
const STEPS_SHOWN: usize = 20;
/// Waited before the one retry of a 429 that names no wait.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
/// A `Retry-After` longer than this is not waited for: the stage has its own deadline.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
const RATE_LIMIT: RateLimit = RateLimit {
    default_wait: RATE_LIMIT_WAIT,
    max_wait: MAX_RETRY_WAIT,
};

/// The button `value`: what a click must name so it decides this approval and no other.
/// Never the task token, which stays in the store.
pub fn button_value(incident_id: &str, approval_id: &str) -> String {
    format!("{incident_id}:{approval_id}")
}

/// The inverse of [`button_value`].
pub fn parse_button_value(value: &str) -> Option<(&str, &str)> {
    let (incident, approval) = value.split_once(':')?;
    (!incident.is_empty() && !approval.is_empty()).then_some((incident, approval))
}

#[derive(Clone)]
pub struct SlackConfig {
    pub api_url: Url,
    /// Bot token (`xoxb-…`) with `chat:write`.
    pub token: String,
    /// Channel id (`C…`) of the on-call channel.
    pub channel: String,
    /// `SLACK_ONCALL_USERGROUP` (`S…`): mentioned in each approval request, so the people on
    /// call are notified, not just the channel.
    pub oncall_usergroup: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackConfig")
            .field("api_url", &self.api_url.as_str())
            .field("token", &"<redacted>")
            .field("channel", &self.channel)
            .field("oncall_usergroup", &self.oncall_usergroup)
            .finish()
    }
}

impl SlackConfig {
    pub fn new(api_url: Url, token: &str, channel: &str) -> Self {
        SlackConfig {
            api_url,
            token: token.into(),
            channel: channel.into(),
            oncall_usergroup: None,
            timeout: crate::config::DEFAULT_TIMEOUT,
        }
    }

    pub(crate) fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let (token, channel) = match (
            vars.get("SLACK_BOT_TOKEN"),
            vars.get("SLACK_ONCALL_CHANNEL_ID"),
        ) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(error(
                    "SLACK_ONCALL_CHANNEL_ID",
                    "SLACK_BOT_TOKEN is set but not the channel to post in",
                ))
            }
            (None, Some(_)) => {
                return Err(error(
                    "SLACK_BOT_TOKEN",
                    "SLACK_ONCALL_CHANNEL_ID is set but not the bot token",
                ))
            }
            (Some(t), Some(c)) => (t, c),
        };
        let mut c = SlackConfig::new(
            vars.url_or("SLACK_API_URL", DEFAULT_API_URL)?,
            token,
            channel,
        );
        c.timeout = vars.timeout()?;
        if let Some(group) = vars.get("SLACK_ONCALL_USERGROUP") {
            if !is_slack_id(group, 'S') {
                return Err(error(
                    "SLACK_ONCALL_USERGROUP",
                    "expected a user group id like S0604QSJC (its handle is not enough)",
                ));
            }
            c.oncall_usergroup = Some(group.to_string());
        }
        Ok(Some(c))
    }
}

/// Where an incident's approval message is, so updates can thread under it and edit it.
/// Serialised as the approval's `message_ref`, so another process (another Lambda) finds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Posted {
    channel: String,
    ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approval_url: Option<String>,
}

pub struct SlackNotifier {
    config: SlackConfig,
    caller: Caller,
    /// What this process posted; another process reads the approval's `message_ref`.
    posted: Mutex<HashMap<String, Posted>>,
}

impl std::fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(f)
    }
}

/// An encoded Slack id (`U0604QSJC`, `S0604QSJC`): the kind's letter, then capitals and
/// digits. Only such ids are put inside `<…>` mentions, so nothing typed becomes markup.
pub fn is_slack_id(id: &str, kind: char) -> bool {
    id.len() >= 3
        && id.len() <= 32
        && id.starts_with(kind)
        && id[1..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// A time each reader sees in their own time zone (Slack's date formatting), with the UTC
/// text for clients that cannot render it.
pub fn slack_date(at: iras_core::Timestamp) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        at.timestamp(),
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

/// Who decided: a Slack user as a mention (Slack shows their current name), anyone else by
/// the name recorded and how IRAS knows it.
fn approver_text(d: &iras_core::ApprovalDecision) -> String {
    match &d.identity {
        Some(ApproverIdentity::Slack { user_id, .. })
            if is_slack_id(user_id, 'U') || is_slack_id(user_id, 'W') =>
        {
            format!("<@{user_id}>")
        }
        // The page already wrote "(self-declared)" into the name.
        Some(ApproverIdentity::SelfDeclared { .. }) | None => md(&d.approver, 200),
        Some(identity) => format!(
            "{} ({})",
            md(&d.approver, 200),
            md(&identity.describe(), 200)
        ),
    }
}

fn md(text: &str, max: usize) -> String {
    slack_mrkdwn(&clip(text, max))
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&text, 3000)}})
}

fn decision_line(incident: &Incident) -> Option<String> {
    let d = incident.approval.as_ref()?.decision.as_ref()?;
    let (icon, verb) = match d.decision {
        Decision::Approved => (":white_check_mark:", "Approved"),
        Decision::Rejected => (":x:", "Rejected"),
        Decision::Recovered => (":large_green_circle:", "Ended: the source recovered"),
    };
    Some(format!(
        "{icon} *{verb}* by {} via {} at {}{}",
        approver_text(d),
        md(&d.channel, 40),
        slack_date(d.decided_at),
        d.comment
            .as_deref()
            .map(|c| format!(": {}", md(c, 500)))
            .unwrap_or_default()
    ))
}

/// The approval message. With `update`, the buttons give way to the decision and the
/// latest news; every text that came from an alert, a model or a person is escaped.
pub fn approval_blocks(
    incident: &Incident,
    approval_url: Option<&str>,
    update: Option<&str>,
) -> Vec<Value> {
    let decided = decision_line(incident);
    let awaiting = incident.status == IncidentStatus::AwaitingApproval
        && decided.is_none()
        && update.is_none();
    let heading = if awaiting {
        format!("Approval needed: {}", incident.title)
    } else {
        incident.title.clone()
    };
    let mut blocks = Vec::new();
    // plain_text: Slack renders it as typed, so it needs no escaping.
    blocks.push(json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&heading, 150), "emoji": false}
    }));
    let severity = incident.severity.map(|s| s.as_str()).unwrap_or("untriaged");
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{severity}")}),
        json!({"type": "mrkdwn", "text": format!("*Incident*\n{}", md(incident.incident_id.as_str(), 80))}),
    ];
    if let Some(service) = &incident.service {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Service*\n{}", md(service, 200))}));
    }
    if let Some(a) = &incident.approval {
        fields.push(
            json!({"type": "mrkdwn", "text": format!("*Decide by*\n{}", slack_date(a.expires_at))}),
        );
    }
    blocks.push(json!({"type": "section", "fields": fields}));

    match &incident.hypothesis {
        Some(h) => {
            let mut text = format!(
                "*Root cause* ({:.0}% confidence): {}",
                h.confidence * 100.0,
                md(&h.primary_cause, 600)
            );
            if !h.root_cause_service.is_empty() {
                text.push_str(&format!(" _(service {})_", md(&h.root_cause_service, 200)));
            }
            for e in h.evidence.iter().take(3) {
                text.push_str(&format!("\n• {}", md(e, 300)));
            }
            blocks.push(section(text));
        }
        None => blocks.push(section("*Root cause*: not determined".into())),
    }

    if let Some(plan) = &incident.plan {
        let mut text = format!("*Plan*: {}", md(&plan.summary, 600));
        if !plan.reversible {
            text.push_str("\n:warning: Not every step can be rolled back.");
        }
        if plan.blocked_by_policy {
            text.push_str("\n:no_entry: Some actions are outside the remediation policy: the plan will not run.");
        }
        for note in plan.safety_notes.iter().take(5) {
            text.push_str(&format!("\n_{}_", md(note, 300)));
        }
        blocks.push(section(text));
        for (i, step) in plan.steps.iter().enumerate().take(STEPS_SHOWN) {
            let verdict = match plan.policy.iter().find(|v| v.step == i) {
                Some(v) if v.allowed => ":white_check_mark: policy allows".to_string(),
                Some(v) => format!(":no_entry: policy blocks: {}", md(&v.reason, 300)),
                None => "policy: not checked".to_string(),
            };
            let shown = step.text();
            let rollback = if step.has_rollback() {
                md(&shown.rollback, 800)
            } else {
                "_none: this step cannot be undone_".to_string()
            };
            blocks.push(section(format!(
                "*{}. {}*\nrisk *{}* · {verdict}\n*Run:* `{}`\n*Resource:* {}\n*Change:* {}\n*Rollback:* {rollback}",
                i + 1,
                md(&step.description, 300),
                step.risk_level.as_str(),
                md(&shown.cli, 800),
                md(&shown.resource, 300),
                md(&shown.change, 300),
            )));
        }
        if plan.steps.len() > STEPS_SHOWN {
            blocks.push(section(format!(
                "…and {} more steps: see the approval page.",
                plan.steps.len() - STEPS_SHOWN
            )));
        }
    }

    if let Some(line) = &decided {
        blocks.push(section(line.clone()));
    }
    if let Some(news) = update {
        blocks.push(section(format!(
            "*Status*: {} · {}",
            incident.status.as_str(),
            md(news, 1000)
        )));
    }
    let mut actions = Vec::new();
    if let (true, Some(a)) = (awaiting, incident.approval.as_ref()) {
        let value = button_value(incident.incident_id.as_str(), &a.approval_id);
        actions.push(json!({
            "type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": value,
            "text": {"type": "plain_text", "text": "Approve"},
            "confirm": {
                "title": {"type": "plain_text", "text": "Run this plan?"},
                "text": {"type": "mrkdwn", "text": "IRAS will run every step above, rolling back if one fails."},
                "confirm": {"type": "plain_text", "text": "Approve"},
                "deny": {"type": "plain_text", "text": "Cancel"}
            }
        }));
        actions.push(json!({
            "type": "button", "action_id": REJECT_ACTION, "style": "danger", "value": value,
            "text": {"type": "plain_text", "text": "Reject"}
        }));
    }
    if let (true, Some(url)) = (awaiting, approval_url) {
        actions.push(json!({
            "type": "button", "action_id": OPEN_PAGE_ACTION, "url": url,
            "text": {"type": "plain_text", "text": "Open approval page"}
        }));
    }
    if !actions.is_empty() {
        blocks.push(json!({"type": "actions", "block_id": "iras_approval", "elements": actions}));
    }
    blocks
}

impl SlackNotifier {
    pub fn new(config: SlackConfig) -> Result<Self, ConfigError> {
        let caller = Caller::new("slack", config.timeout).map_err(|e| error("SLACK_API_URL", e))?;
        Ok(SlackNotifier {
            config,
            caller,
            posted: Mutex::new(HashMap::new()),
        })
    }

    /// One Web API call. Slack answers 200 with `"ok": false` when it refuses; a 429 is
    /// retried once after its `Retry-After`.
    async fn api(&self, method: &str, body: &Value) -> Result<Value, Failure> {
        let url = endpoint(&self.config.api_url, &[method]);
        let payload = serde_json::to_vec(body).map_err(|e| Failure::BadResponse(e.to_string()))?;
        let reply = self
            .caller
            .call_retrying_429(method, RATE_LIMIT, || {
                self.caller
                    .client
                    .post(url.clone())
                    .bearer_auth(&self.config.token)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/json; charset=utf-8",
                    )
                    .body(payload.clone())
            })
            .await?;
        if !reply.status.is_success() {
            return Err(self.caller.status_failure(&reply, method));
        }
        let answer: Value = self.caller.json(&reply)?;
        if answer.get("ok") != Some(&Value::Bool(true)) {
            let reason = answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error given");
            return Err(Failure::Unavailable(format!("slack: {method}: {reason}")));
        }
        Ok(answer)
    }

    fn remembered(&self, incident: &Incident) -> Option<Posted> {
        let here = self
            .posted
            .lock()
            .ok()
            .and_then(|p| p.get(incident.incident_id.as_str()).cloned());
        here.or_else(|| {
            let stored = incident.approval.as_ref()?.message_ref.as_deref()?;
            // A reference another notifier wrote (or a damaged one) is not ours to follow:
            // the update is posted as a new message instead.
            serde_json::from_str(stored).ok()
        })
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn name(&self) -> String {
        "slack".into()
    }

    async fn approval_requested(
        &self,
        incident: &Incident,
        approval_url: Option<&str>,
    ) -> Result<Option<String>, NotifyError> {
        let mention = self
            .config
            .oncall_usergroup
            .as_deref()
            .map(|g| format!("<!subteam^{g}> "))
            .unwrap_or_default();
        let text = format!(
            "{mention}Approval needed for {} ({}): {}",
            incident.incident_id,
            incident.severity.map(|s| s.as_str()).unwrap_or("untriaged"),
            md(&incident.title, 300)
        );
        let mut blocks = approval_blocks(incident, approval_url, None);
        if !mention.is_empty() {
            // In the blocks too: a message with blocks shows them, not `text`, and only a
            // mention in what is shown notifies the group.
            blocks.insert(1, section(format!("{mention}your approval is needed")));
        }
        let answer = self
            .api(
                "chat.postMessage",
                &json!({
                    "channel": self.config.channel,
                    "text": text,
                    "blocks": blocks,
                    "unfurl_links": false,
                    "unfurl_media": false,
                }),
            )
            .await?;
        let ts = answer.get("ts").and_then(Value::as_str);
        let channel = answer
            .get("channel")
            .and_then(Value::as_str)
            .unwrap_or(&self.config.channel);
        match ts {
            Some(ts) => {
                let posted = Posted {
                    channel: channel.to_string(),
                    ts: ts.to_string(),
                    approval_url: approval_url.map(str::to_string),
                };
                let message_ref = serde_json::to_string(&posted).ok();
                if let Ok(mut remembered) = self.posted.lock() {
                    remembered.insert(incident.incident_id.to_string(), posted);
                }
                Ok(message_ref)
            }
            None => Err(NotifyError::Failed(
                "slack: chat.postMessage: answer without `ts`".into(),
            )),
        }
    }

    async fn incident_updated(
        &self,
        incident: &Incident,
        message: &str,
    ) -> Result<(), NotifyError> {
        let Some(posted) = self.remembered(incident) else {
            self.api(
                "chat.postMessage",
                &json!({
                    "channel": self.config.channel,
                    "text": format!("*{}* ({}): {}", md(&incident.title, 300), incident.incident_id, md(message, 2000)),
                    "unfurl_links": false,
                }),
            )
            .await?;
            return Ok(());
        };
        let reply = self
            .api(
                "chat.postMessage",
                &json!({
                    "channel": posted.channel,
                    "thread_ts": posted.ts,
                    "text": md(message, 3000),
                    "unfurl_links": false,
                }),
            )
            .await;
        let edit = self
            .api(
                "chat.update",
                &json!({
                    "channel": posted.channel,
                    "ts": posted.ts,
                    "text": format!("{} ({}): {}", md(&incident.title, 300), incident.incident_id, md(message, 1000)),
                    "blocks": approval_blocks(incident, posted.approval_url.as_deref(), Some(message)),
                }),
            )
            .await;
        reply?;
        edit?;
        Ok(())
    }
}

#[async_trait]
impl SlackWorkspace for SlackNotifier {
    async fn usergroup_members(&self, usergroup: &str) -> Result<Vec<String>, NotifyError> {
        const METHOD: &str = "usergroups.users.list";
        // This method takes a query string or a form body, not JSON (Slack's reference).
        let mut url = endpoint(&self.config.api_url, &[METHOD]);
        url.query_pairs_mut().append_pair("usergroup", usergroup);
        let reply = self
            .caller
            .call_retrying_429(METHOD, RATE_LIMIT, || {
                self.caller
                    .client
                    .get(url.clone())
                    .bearer_auth(&self.config.token)
            })
            .await?;
        if !reply.status.is_success() {
            return Err(self.caller.status_failure(&reply, METHOD).into());
        }
        let answer: Value = self.caller.json(&reply)?;
        if answer.get("ok") != Some(&Value::Bool(true)) {
            let reason = answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error given");
            return Err(NotifyError::Failed(format!("slack: {METHOD}: {reason}")));
        }
        Ok(answer
            .get("users")
            .and_then(Value::as_array)
            .map(|u| {
                u.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn reply_privately(&self, response_url: &str, text: &str) -> Result<(), NotifyError> {
        let url = Url::parse(response_url)
            .map_err(|e| NotifyError::Failed(format!("slack: response_url: {e}")))?;
        let body = json!({
            "response_type": "ephemeral",
            "replace_original": false,
            "text": text,
        });
        let reply = self
            .caller
            .call(
                self.caller
                    .client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string()),
            )
            .await?;
        if !reply.status.is_success() {
            // 404 `expired_url` / `used_url`: after 30 minutes or 5 uses Slack takes no more.
            return Err(self.caller.status_failure(&reply, "response_url").into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_values_round_trip() {
        let v = button_value("inc-1", "apr-2");
        assert_eq!(parse_button_value(&v), Some(("inc-1", "apr-2")));
        assert_eq!(parse_button_value("inc-1"), None);
        assert_eq!(parse_button_value(":apr"), None);
    }

    #[test]
    fn missing_half_of_the_slack_config_is_an_error() {
        let vars: HashMap<String, String> =
            [("SLACK_BOT_TOKEN".to_string(), "xoxb-1".to_string())].into();
        assert_eq!(
            SlackConfig::from_vars(&Vars(&vars)).unwrap_err().name,
            "SLACK_ONCALL_CHANNEL_ID"
        );
    }

    #[test]
    fn the_oncall_user_group_must_be_an_id_not_a_handle() {
        let vars = |g: &str| -> HashMap<String, String> {
            [
                ("SLACK_BOT_TOKEN".to_string(), "xoxb-1".to_string()),
                (
                    "SLACK_ONCALL_CHANNEL_ID".to_string(),
                    "C0ONCALL".to_string(),
                ),
                ("SLACK_ONCALL_USERGROUP".to_string(), g.to_string()),
            ]
            .into()
        };
        let ok = SlackConfig::from_vars(&Vars(&vars("S0604QSJC")))
            .unwrap()
            .unwrap();
        assert_eq!(ok.oncall_usergroup.as_deref(), Some("S0604QSJC"));
        for bad in ["@oncall", "s0604qsjc", "S0>", "U0604QSJC"] {
            let e = SlackConfig::from_vars(&Vars(&vars(bad))).unwrap_err();
            assert_eq!(e.name, "SLACK_ONCALL_USERGROUP", "{bad}");
        }
    }
}

//! `GET /approvals/{approval_id}`: the page a person reads before deciding on a plan, and
//! `POST` of its form: the decision. The link's signature is the credential (it came to the
//! on-call channel); GET never decides, because link previewers and scanners fetch links.
//! A POST decides only as the page's own form (see [`crate::cross_site`]), and the name typed
//! in it is recorded for what it is: self-declared, by someone who held the link.

use std::fmt::Write;

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use iras_core::signing::verify_approval;
use iras_core::stages::{decide, DecideError, DecisionRequest};
use iras_core::{
    format_duration, ApprovalRequest, ApproverIdentity, Decision, Incident, IncidentStatus,
    InvestigationAttempt, LogLine, RemediationPlan, Timestamp,
};
use maud::{html, Markup, Render};
use serde::Deserialize;
use serde_json::Value;

use crate::approvals::{describe_decision, recorded_decision, MAX_APPROVER_CHARS};
use crate::cross_site::{self, Refused, FORM_TOKEN_MAX_AGE_SECONDS};
use crate::html::{document, message_page, message_page_with, respond};
use crate::AppState;

/// Problem log lines quoted on the page; the full evidence is in the incident record.
const LOG_LINES_SHOWN: usize = 12;
/// Approval ids are `apr-` + 32 hex digits; anything far from that is not one of ours.
const MAX_APPROVAL_ID_LEN: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LinkQuery {
    exp: Option<String>,
    sig: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DecisionForm {
    decision: Option<String>,
    exp: Option<String>,
    sig: Option<String>,
    approver: Option<String>,
    comment: Option<String>,
    /// This render's form token (see [`crate::cross_site`]).
    form_token: Option<String>,
}

/// A page that refuses (or cannot yet offer) a decision: small enough to pass around in
/// `Err`, rendered only at the end.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    heading: &'static str,
    text: String,
}

impl Refusal {
    fn new(status: StatusCode, heading: &'static str, text: impl Into<String>) -> Self {
        Refusal {
            status,
            heading,
            text: text.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        message_page(self.status, self.heading, &self.text)
    }
}

fn fmt_time(t: &Timestamp) -> String {
    iras_core::format_time(*t)
}

fn invalid_link() -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        "This approval link is not valid",
        "The link was altered, is incomplete, or was replaced by a newer approval request. \
         Use the latest link from the on-call channel.",
    )
}

/// A request that is not the page's own form. Nothing about the approval is read or said.
fn not_from_the_page(approval_id: &str, why: Refused) -> Refusal {
    tracing::warn!(approval = approval_id, refused = ?why, "approval form refused: not the page's own");
    match why {
        Refused::FromAnotherSite(_) | Refused::ForeignOrigin(_) => Refusal::new(
            StatusCode::FORBIDDEN,
            "Refused: sent from another site",
            "This decision was sent by a page on another site, not by the approval page. \
             Nothing was decided. Open the approval link from the on-call channel and decide there.",
        ),
        Refused::NoToken | Refused::BadToken => Refusal::new(
            StatusCode::FORBIDDEN,
            "Refused: not this approval's form",
            "This decision did not come from a page IRAS showed for this approval (its form \
             token is missing or does not match). Nothing was decided. Open the approval link \
             again and decide there.",
        ),
        Refused::StaleToken => Refusal::new(
            StatusCode::FORBIDDEN,
            "This page is out of date",
            format!(
                "The page was opened more than {} minutes ago. Nothing was decided. Open the \
                 approval link again to see the incident as it is now, and decide there.",
                FORM_TOKEN_MAX_AGE_SECONDS / 60
            ),
        ),
    }
}

fn unknown_approval() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "Unknown approval",
        "There is no approval request with this id.",
    )
}

fn unavailable(detail: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %detail, "approval page could not reach the store");
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again shortly",
        "The incident record could not be read or written right now. Nothing was decided.",
    )
}

fn already_used(approval: &ApprovalRequest) -> Option<Refusal> {
    let d = approval.decision.as_ref()?;
    let mut text = format!("This approval was already used: {}", describe_decision(d));
    if let Some(c) = d.comment.as_deref().filter(|c| !c.is_empty()) {
        let _ = write!(text, " (comment: {c})");
    }
    text.push('.');
    Some(Refusal::new(StatusCode::CONFLICT, "Already decided", text))
}

fn window_closed(expires_at: &Timestamp) -> Refusal {
    Refusal::new(
        StatusCode::GONE,
        "The approval window has closed",
        format!(
            "The approval window closed at {}: this plan can no longer be approved or rejected. \
             An incident nobody decided on in time is escalated to on-call.",
            fmt_time(expires_at)
        ),
    )
}

/// Everything a link must prove before its incident is even read: a configured key, a
/// well-formed id, an expiry and a signature over both. Returns the expiry it carries.
fn check_signature(
    state: &AppState,
    approval_id: &str,
    exp: Option<&str>,
    sig: Option<&str>,
) -> Result<i64, Refusal> {
    let key = &state.app.http.approval_signing_key;
    if key.is_empty() {
        // An empty HMAC key would make every link forgeable.
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "Approval pages are disabled",
            "This deployment has no APPROVAL_SIGNING_KEY, so approval links cannot be verified. \
             Decide with the CLI or the API instead.",
        ));
    }
    let well_formed = !approval_id.is_empty()
        && approval_id.len() <= MAX_APPROVAL_ID_LEN
        && approval_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !well_formed {
        return Err(unknown_approval());
    }
    let (Some(exp), Some(sig)) = (exp, sig) else {
        return Err(invalid_link());
    };
    let Ok(exp) = exp.trim().parse::<i64>() else {
        return Err(invalid_link());
    };
    if !verify_approval(key, approval_id, exp, sig.trim()) {
        tracing::warn!(approval = approval_id, "approval link with a bad signature");
        return Err(invalid_link());
    }
    Ok(exp)
}

/// The incident behind a verified link, if the link's expiry is still this approval's.
async fn load(
    state: &AppState,
    approval_id: &str,
    exp: i64,
) -> Result<(Incident, ApprovalRequest), Refusal> {
    let incident = match state.app.deps.store.find_by_approval_id(approval_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return Err(unknown_approval()),
        Err(e) => return Err(unavailable(e)),
    };
    let Some(approval) = incident
        .approval
        .clone()
        .filter(|a| a.approval_id == approval_id)
    else {
        return Err(unknown_approval());
    };
    if approval.expires_at.timestamp() != exp {
        return Err(invalid_link());
    }
    Ok((incident, approval))
}

/// Why this approval cannot be decided now, as the page that says so.
fn not_decidable(
    state: &AppState,
    incident: &Incident,
    approval: &ApprovalRequest,
) -> Option<Refusal> {
    if let Some(page) = already_used(approval) {
        return Some(page);
    }
    if state.app.deps.clock.now() > approval.expires_at {
        return Some(window_closed(&approval.expires_at));
    }
    if incident.status != IncidentStatus::AwaitingApproval {
        return Some(Refusal::new(
            StatusCode::CONFLICT,
            "Not waiting for approval",
            format!(
                "Incident {} is no longer waiting for approval (it is {}).",
                incident.incident_id,
                incident.status.as_str().replace('_', " ")
            ),
        ));
    }
    None
}

fn path_id(raw: Result<Path<String>, PathRejection>) -> Result<String, Refusal> {
    raw.map(|Path(id)| id).map_err(|_| unknown_approval())
}

pub(crate) async fn show(
    State(state): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    let approval_id = path_id(raw)?;
    // A malformed query string is just a link without a valid signature.
    let Query(query) = query.unwrap_or_default();
    let exp = check_signature(
        &state,
        &approval_id,
        query.exp.as_deref(),
        query.sig.as_deref(),
    )?;
    let (incident, approval) = load(&state, &approval_id, exp).await?;
    if let Some(refusal) = not_decidable(&state, &incident, &approval) {
        return Err(refusal);
    }
    // The evidence is context, not a precondition: without it the page still shows the plan.
    let attempts = match state.app.deps.store.attempts(&incident.incident_id).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(incident = %incident.incident_id, error = %e, "attempts unavailable for the approval page");
            Vec::new()
        }
    };
    let now = state.app.deps.clock.now();
    let sig = query.sig.unwrap_or_default();
    let form_token = cross_site::form_token(&state, &approval_id, exp);
    let link = LinkFields {
        exp,
        sig: sig.trim(),
        form_token: &form_token,
    };
    let sent_to = link_sent_to(&state, &incident, &approval);
    Ok(respond(
        StatusCode::OK,
        render(&incident, &approval, &attempts, now, &link, &sent_to),
    ))
}

/// Where this approval's link was sent, as far as the approval request tells: the Slack
/// message's channel when the notifier kept one, else what the notifier is. The page says it
/// before the decision, and the decision records it.
fn link_sent_to(state: &AppState, incident: &Incident, approval: &ApprovalRequest) -> String {
    let notifier = state.app.deps.notifier.name();
    let channel = approval
        .message_ref
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|r| r.get("channel")?.as_str().map(str::to_string))
        .filter(|c| !c.trim().is_empty());
    if let Some(channel) = channel {
        return match notifier.as_str() {
            "slack" => format!("Slack channel {channel}"),
            _ => format!("channel {channel}"),
        };
    }
    let failed = incident
        .timeline
        .iter()
        .any(|e| e.key == "approval:notify-failed" && e.at >= approval.requested_at);
    if failed {
        return format!(
            "no channel: the {notifier} notification failed, so the link was read from the server's log"
        );
    }
    match notifier.as_str() {
        "log" => "the server's log (no chat channel is configured)".to_string(),
        "slack" => "Slack".to_string(),
        other => other.to_string(),
    }
}

fn read_form(form: Result<Form<DecisionForm>, FormRejection>) -> Result<DecisionForm, Refusal> {
    match form {
        Ok(Form(f)) => Ok(f),
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too long",
            "The form is too large; shorten the comment and try again. Nothing was decided.",
        )),
        Err(_) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "Unreadable form",
            "The form could not be read. Open the approval link again. Nothing was decided.",
        )),
    }
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let approval_id = path_id(raw)?;
    // Where it came from before what it says: another site's POST is refused unread.
    cross_site::check_request_source(&state, &headers)
        .map_err(|why| not_from_the_page(&approval_id, why))?;
    let form = read_form(form)?;
    let exp = check_signature(
        &state,
        &approval_id,
        form.exp.as_deref(),
        form.sig.as_deref(),
    )?;
    cross_site::check_form_token(&state, &approval_id, exp, form.form_token.as_deref())
        .map_err(|why| not_from_the_page(&approval_id, why))?;
    let decision = match form.decision.as_deref().map(str::trim) {
        Some("approve") => Decision::Approved,
        Some("reject") => Decision::Rejected,
        _ => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "No decision",
                "Choose Approve or Reject. Nothing was decided.",
            ))
        }
    };
    let typed = form
        .approver
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    if typed
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_APPROVER_CHARS)
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "Name too long",
            format!(
                "Your name must be at most {MAX_APPROVER_CHARS} characters. Nothing was decided."
            ),
        ));
    }
    let comment = form
        .comment
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    let (incident, approval) = load(&state, &approval_id, exp).await?;
    if let Some(refusal) = not_decidable(&state, &incident, &approval) {
        return Err(refusal);
    }
    let id = incident.incident_id.clone();
    // Every text that names the approver (timeline, post-mortem, Slack, PagerDuty) prints
    // this string, so it says itself that nobody checked it.
    let approver = match &typed {
        Some(name) => format!("{name} (self-declared)"),
        None => "someone who gave no name (self-declared)".to_string(),
    };
    let identity = ApproverIdentity::SelfDeclared {
        name: typed.unwrap_or_default(),
        link_sent_to: Some(link_sent_to(&state, &incident, &approval)),
    };
    let recorded = format!(
        "Recorded as {approver}, via {}.",
        ApproverIdentity::via(Some(&identity), "the approval page")
    );
    let request = DecisionRequest {
        approval_id: Some(approval.approval_id.clone()),
        decision,
        approver: approver.clone(),
        identity: Some(identity),
        channel: "page".into(),
        comment,
    };
    let app = &state.app;
    match decide(&app.deps, app.callbacks.as_ref(), &id, request).await {
        Ok(stored) => {
            tracing::info!(incident = %id, decision = decision.as_str(), %approver, "plan decided via approval page");
            let waiting = stored
                .approval
                .as_ref()
                .is_some_and(|a| a.decision.is_none());
            let (heading, outcome) = match decision {
                Decision::Approved if waiting => (
                    "Approval recorded",
                    "Approval recorded — the policy asks a second person to approve before it runs.",
                ),
                Decision::Approved if stored.decision_delivery_pending() => (
                    "Approval recorded",
                    "Approval recorded — the pipeline could not be reached just now; IRAS delivers it and applies the plan as soon as it answers.",
                ),
                Decision::Approved => ("Approved", "Approved — the plan is being applied."),
                Decision::Rejected => ("Rejected", "Rejected — on-call has been paged."),
                Decision::Recovered => ("Closed", "The source recovered; nothing was applied."),
            };
            Ok(message_page_with(
                StatusCode::OK,
                heading,
                outcome,
                Some(&recorded),
            ))
        }
        // Someone decided between our read and our write: say who.
        Err(DecideError::AlreadyDecided(what)) => {
            let text = match recorded_decision(app.deps.store.as_ref(), &id).await {
                Some(d) => format!("This approval was already used: {}.", describe_decision(&d)),
                None => format!("This approval was already used: {what}."),
            };
            Err(Refusal::new(StatusCode::CONFLICT, "Already decided", text))
        }
        Err(DecideError::Expired(at)) => Err(window_closed(&at)),
        Err(DecideError::NotFound(_)) => Err(unknown_approval()),
        Err(DecideError::NotAwaiting(_)) => Err(Refusal::new(
            StatusCode::CONFLICT,
            "Not waiting for approval",
            format!("Incident {id} is no longer waiting for approval."),
        )),
        Err(DecideError::AlreadyApproved(who)) => Err(Refusal::new(
            StatusCode::CONFLICT,
            "Already approved by you",
            format!("{who} already approved this plan: it needs another person's approval."),
        )),
        Err(DecideError::SecondApprovalUnchecked(who)) => Err(Refusal::new(
            StatusCode::CONFLICT,
            "Another checked approval needed",
            format!(
                "{who} already approved through this page. This plan needs two people, and two \
                 names typed here cannot tell two people apart: the second approval must come \
                 through the API with a named key, or from Slack."
            ),
        )),
        Err(DecideError::Unavailable(e)) => Err(unavailable(e)),
    }
}

/// A JSON value as text: strings as they are, anything else as compact JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One term and its value in a `<dl>`.
fn row(term: &str, value: impl Render) -> Markup {
    html! {
        dt { (term) }
        dd { (value) }
    }
}

fn render_plan(plan: &RemediationPlan) -> Markup {
    html! {
        section #plan {
            h2 { "Remediation plan" }
            p.summary { (plan.summary) }
            @if plan.blocked_by_policy {
                p.notice.danger {
                    "Some actions are outside the remediation policy: this plan will not run even if approved."
                }
            }
            p {
                (plan.steps.len()) " step(s), "
                @if plan.reversible {
                    "every step has a rollback"
                } @else {
                    span.irreversible { "at least one step cannot be rolled back" }
                }
                "."
            }
            ol.steps {
                @for (i, step) in plan.steps.iter().enumerate() {
                    @let n = i + 1;
                    // Rendered from the action: what is approved here is exactly what runs.
                    @let text = step.text();
                    @let risk = step.risk_level.as_str();
                    li.step id={ "step-" (n) } {
                        h3 { "Step " (n) ": " span.description { (step.description) } }
                        dl {
                            (row("Command", html! { code.command { (text.cli) } }))
                            (row("Resource", html! { span.resource { (text.resource) } }))
                            (row("Change", html! { span.change { (text.change) } }))
                            @if step.has_rollback() {
                                (row("Rollback", html! { span.rollback { (text.rollback) } }))
                            } @else {
                                (row("Rollback", html! { span.rollback.irreversible { "none — irreversible" } }))
                            }
                            (row("Risk", html! { span class={ "risk risk-" (risk) } { (risk) } }))
                            (row("Takes about", format_duration(step.estimated_duration_seconds as i64)))
                            (row("Policy", policy_verdict(plan, i)))
                        }
                    }
                }
            }
            @if !plan.safety_notes.is_empty() {
                h3 { "Safety notes" }
                ul.safety-notes {
                    @for note in &plan.safety_notes {
                        li { (note) }
                    }
                }
            }
        }
    }
}

fn policy_verdict(plan: &RemediationPlan, step: usize) -> Markup {
    html! {
        @match plan.policy.iter().find(|v| v.step == step) {
            // The policy's reason usually starts with "allowed by …"; don't say it twice.
            Some(v) if v.allowed => {
                span.policy.allowed { "allowed" }
                @match v.reason.strip_prefix("allowed ") {
                    Some(rest) => { " " (rest) }
                    None => { " — " (v.reason) }
                }
            }
            Some(v) => { span.policy.refused { "refused" } " — " (v.reason) }
            None => { span.policy.muted { "not checked" } }
        }
    }
}

fn problem_lines(attempts: &[InvestigationAttempt]) -> Vec<&LogLine> {
    attempts
        .iter()
        .next_back()
        .map(|a| {
            a.context
                .logs
                .iter()
                .filter(|l| l.level.is_problem())
                .take(LOG_LINES_SHOWN)
                .collect()
        })
        .unwrap_or_default()
}

/// A log line's first line, with a mark when more was cut: stack traces are in the incident
/// record, not needed to decide.
fn log_line(l: &LogLine) -> String {
    let mut message = l.message.lines();
    let first = message.next().unwrap_or("");
    let more = if message.next().is_some() { " …" } else { "" };
    format!(
        "{} {} {}: {first}{more}",
        l.timestamp.format("%H:%M:%S"),
        format!("{:?}", l.level).to_uppercase(),
        l.service,
    )
}

fn repeats_text(incident: &Incident) -> String {
    let r = &incident.repeats;
    let mut text = format!("fired again {} time(s)", r.count);
    if let (Some(first), Some(last)) = (r.first_seen, r.last_seen) {
        text.push_str(&format!(
            ", from {} to {}",
            fmt_time(&first),
            fmt_time(&last)
        ));
    }
    if r.recurrences > 0 {
        text.push_str(&format!("; flapped {} time(s)", r.recurrences));
    }
    text
}

fn render_alert(incident: &Incident) -> Markup {
    let alert = &incident.alert;
    html! {
        // The alert, as the monitoring system sent it.
        section #alert {
            h2 { "Alert" }
            dl {
                (row("Title", &alert.title))
                (row("Service", alert.service.as_deref().unwrap_or("unknown")))
                (row("Fired at", fmt_time(&alert.timestamp)))
                @for (key, value) in &alert.fields {
                    (row(key, value_text(value)))
                }
                @if !incident.repeats.is_empty() {
                    (row("Repeats", repeats_text(incident)))
                }
                @for link in alert.links() {
                    (row(&format!("Link ({})", link.kind), html! {
                        a href=(link.href) rel="noopener noreferrer" { (link.href) }
                    }))
                }
                @if incident.source_recovered() {
                    @if let Some(at) = incident.source_recovered_at {
                        (row("Source", html! {
                            strong #recovered {
                                "The source reports the alert recovered at " (fmt_time(&at)) "."
                            }
                            " Check whether the plan is still needed."
                        }))
                    }
                }
            }
        }
    }
}

fn render_impact(incident: &Incident) -> Markup {
    let severity = incident.severity.map(|s| s.as_str()).unwrap_or("untriaged");
    html! {
        section #impact {
            h2 { "Impact" }
            dl {
                (row("Severity", html! { span.badge.severity { (severity) } }))
                @if let Some(t) = &incident.triage {
                    (row("Blast radius", &t.blast_radius))
                    (row("User impact", &t.estimated_user_impact))
                    (row("Affected services", t.affected_services.join(", ")))
                }
            }
        }
    }
}

fn render_root_cause(incident: &Incident, attempts: &[InvestigationAttempt]) -> Markup {
    let lines = problem_lines(attempts);
    html! {
        section #root-cause {
            h2 { "Root cause" }
            @match &incident.hypothesis {
                Some(h) => {
                    p.primary-cause { (h.primary_cause) }
                    dl {
                        (row("Service", &h.root_cause_service))
                        @if !h.fault.is_empty() {
                            (row("Fault", h.fault.replace('_', " ")))
                        }
                        (row("Confidence", html! {
                            span.confidence { (format!("{:.0}%", h.confidence * 100.0)) }
                            (format!(" ({:.2})", h.confidence))
                        }))
                        @if let Some(d) = &h.suspect_deployment {
                            (row("Suspect deploy", html! {
                                (d.service) " " (d.version) " at " (fmt_time(&d.timestamp))
                                @if !d.description.is_empty() { " — " (d.description) }
                            }))
                        }
                    }
                    (list("Evidence", "evidence", &h.evidence))
                    (list("Contributing factors", "contributing", &h.contributing_factors))
                    (list("Alternatives considered", "alternatives", &h.alternatives))
                }
                None => { p.muted { "No root cause was recorded." } }
            }
            @if !lines.is_empty() {
                h3 { "Log lines " span.muted { "(first line of each)" } }
                pre.logs {
                    @for l in lines {
                        (log_line(l)) "\n"
                    }
                }
            }
        }
    }
}

fn list(heading: &str, class: &str, items: &[String]) -> Markup {
    html! {
        @if !items.is_empty() {
            h3 { (heading) }
            ul class=(class) {
                @for item in items {
                    li { (item) }
                }
            }
        }
    }
}

/// The decision form. `token` is this render's form token; `exp` and `sig` are the link's.
fn render_form(approval: &ApprovalRequest, link: &LinkFields<'_>, sent_to: &str) -> Markup {
    html! {
        // Relative action: resolves to /approvals/{id} under whatever prefix served this page
        // (an API Gateway stage, a proxy path), and drops the query string.
        form method="post" action=(approval.approval_id) {
            h2 { "Your decision" }
            p {
                "Approve runs the steps above in order; if one fails, the completed steps are \
                 rolled back and on-call is paged. Reject pages on-call without running anything."
            }
            input type="hidden" name="exp" value=(link.exp);
            input type="hidden" name="sig" value=(link.sig);
            input type="hidden" name="form_token" value=(link.form_token);
            label for="approver" { "Your name" }
            input type="text" id="approver" name="approver" maxlength=(MAX_APPROVER_CHARS)
                autocomplete="name" placeholder="optional";
            p #identity.muted {
                "This link was sent to " (sent_to) ". IRAS cannot check the name you type: \
                 it is recorded as self-declared, with that channel."
            }
            label for="comment" { "Comment" }
            textarea id="comment" name="comment" placeholder="optional" {}
            div.buttons {
                button type="submit" id="approve" name="decision" value="approve" { "Approve" }
                button type="submit" id="reject" name="decision" value="reject" { "Reject" }
            }
        }
    }
}

/// What the form carries back: the link's expiry and signature, and this render's token.
struct LinkFields<'a> {
    exp: i64,
    sig: &'a str,
    form_token: &'a str,
}

fn render(
    incident: &Incident,
    approval: &ApprovalRequest,
    attempts: &[InvestigationAttempt],
    now: Timestamp,
    link: &LinkFields<'_>,
    sent_to: &str,
) -> String {
    let remaining = (approval.expires_at - now).num_seconds();
    let body = html! {
        p.kicker { "IRAS · approval requested · " (incident.incident_id.as_str()) }
        h1 #title { (incident.title) }
        p #deadline {
            "Decide by " (fmt_time(&approval.expires_at)) " (" (format_duration(remaining))
            " left). If nobody decides in time, the incident is escalated to on-call."
        }
        (render_alert(incident))
        (render_impact(incident))
        (render_root_cause(incident, attempts))
        @match &incident.plan {
            Some(plan) => { (render_plan(plan)) }
            None => { p.notice.danger { "No plan is recorded." } }
        }
        (render_form(approval, link, sent_to))
    };
    document(&format!("Approve? {}", incident.title), "", body)
}

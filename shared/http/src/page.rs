//! `GET /approvals/{approval_id}`: the page a person reads before deciding on a plan, and
//! `POST` of its form: the decision. The link's signature is the credential (it came to the
//! on-call channel); GET never decides, because link previewers and scanners fetch links.

use std::fmt::Write;

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use iras_core::signing::verify_approval;
use iras_core::stages::{decide, DecideError, DecisionRequest};
use iras_core::{
    format_duration, ApprovalRequest, Decision, Incident, IncidentStatus, InvestigationAttempt,
    LogLine, RemediationPlan, Timestamp,
};
use serde::Deserialize;
use serde_json::Value;

use crate::approvals::{describe_decision, recorded_decision, MAX_APPROVER_CHARS};
use crate::html::{document, escape, message_page, respond};
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
    Ok(respond(
        StatusCode::OK,
        render(&incident, &approval, &attempts, now, exp, sig.trim()),
    ))
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
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let approval_id = path_id(raw)?;
    let form = read_form(form)?;
    let exp = check_signature(
        &state,
        &approval_id,
        form.exp.as_deref(),
        form.sig.as_deref(),
    )?;
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
    let approver = form
        .approver
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("approval page")
        .to_string();
    if approver.chars().count() > MAX_APPROVER_CHARS {
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
    let request = DecisionRequest {
        approval_id: Some(approval.approval_id.clone()),
        decision,
        approver: approver.clone(),
        identity: Some(iras_core::ApproverIdentity::SelfDeclared {
            name: approver.clone(),
            via: None,
        }),
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
            Ok(message_page(StatusCode::OK, heading, outcome))
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

fn dl_row(out: &mut String, term: &str, html_value: &str) {
    let _ = writeln!(out, "<dt>{}</dt><dd>{html_value}</dd>", escape(term));
}

fn render_plan(out: &mut String, plan: &RemediationPlan) {
    let _ = writeln!(out, "<section id=\"plan\">\n<h2>Remediation plan</h2>");
    let _ = writeln!(out, "<p class=\"summary\">{}</p>", escape(&plan.summary));
    if plan.blocked_by_policy {
        let _ = writeln!(
            out,
            "<p class=\"notice danger\">Some actions are outside the remediation policy: \
             this plan will not run even if approved.</p>"
        );
    }
    let _ = writeln!(
        out,
        "<p>{} step(s), {}.</p>",
        plan.steps.len(),
        if plan.reversible {
            "every step has a rollback"
        } else {
            "<span class=\"irreversible\">at least one step cannot be rolled back</span>"
        }
    );
    let _ = writeln!(out, "<ol class=\"steps\">");
    for (i, step) in plan.steps.iter().enumerate() {
        let n = i + 1;
        let _ = writeln!(out, "<li class=\"step\" id=\"step-{n}\">");
        let _ = writeln!(
            out,
            "<h3>Step {n}: <span class=\"description\">{}</span></h3>\n<dl>",
            escape(&step.description)
        );
        // Rendered from the action: what is approved here is exactly what runs.
        let text = step.text();
        dl_row(
            out,
            "Command",
            &format!("<code class=\"command\">{}</code>", escape(&text.cli)),
        );
        dl_row(
            out,
            "Resource",
            &format!("<span class=\"resource\">{}</span>", escape(&text.resource)),
        );
        dl_row(
            out,
            "Change",
            &format!("<span class=\"change\">{}</span>", escape(&text.change)),
        );
        let rollback = if step.has_rollback() {
            format!("<span class=\"rollback\">{}</span>", escape(&text.rollback))
        } else {
            "<span class=\"rollback irreversible\">none — irreversible</span>".to_string()
        };
        dl_row(out, "Rollback", &rollback);
        let risk = step.risk_level.as_str();
        dl_row(
            out,
            "Risk",
            &format!("<span class=\"risk risk-{risk}\">{risk}</span>"),
        );
        dl_row(
            out,
            "Takes about",
            &escape(&format_duration(step.estimated_duration_seconds as i64)),
        );
        let verdict = match plan.policy.iter().find(|v| v.step == i) {
            // The policy's reason usually starts with "allowed by …"; don't say it twice.
            Some(v) if v.allowed => match v.reason.strip_prefix("allowed ") {
                Some(rest) => format!(
                    "<span class=\"policy allowed\">allowed</span> {}",
                    escape(rest)
                ),
                None => format!(
                    "<span class=\"policy allowed\">allowed</span> — {}",
                    escape(&v.reason)
                ),
            },
            Some(v) => format!(
                "<span class=\"policy refused\">refused</span> — {}",
                escape(&v.reason)
            ),
            None => "<span class=\"policy muted\">not checked</span>".to_string(),
        };
        dl_row(out, "Policy", &verdict);
        let _ = writeln!(out, "</dl>\n</li>");
    }
    let _ = writeln!(out, "</ol>");
    if !plan.safety_notes.is_empty() {
        let _ = writeln!(out, "<h3>Safety notes</h3>\n<ul class=\"safety-notes\">");
        for note in &plan.safety_notes {
            let _ = writeln!(out, "<li>{}</li>", escape(note));
        }
        let _ = writeln!(out, "</ul>");
    }
    let _ = writeln!(out, "</section>");
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

fn render(
    incident: &Incident,
    approval: &ApprovalRequest,
    attempts: &[InvestigationAttempt],
    now: Timestamp,
    exp: i64,
    sig: &str,
) -> String {
    let mut out = String::new();
    let alert = &incident.alert;
    let _ = writeln!(
        out,
        "<p class=\"kicker\">IRAS · approval requested · {}</p>\n<h1 id=\"title\">{}</h1>",
        escape(incident.incident_id.as_str()),
        escape(&incident.title)
    );
    let remaining = (approval.expires_at - now).num_seconds();
    let _ = writeln!(
        out,
        "<p id=\"deadline\">Decide by {} ({} left). If nobody decides in time, the incident \
         is escalated to on-call.</p>",
        fmt_time(&approval.expires_at),
        escape(&format_duration(remaining))
    );

    // The alert, as the monitoring system sent it.
    let _ = writeln!(out, "<section id=\"alert\">\n<h2>Alert</h2>\n<dl>");
    dl_row(&mut out, "Title", &escape(&alert.title));
    dl_row(
        &mut out,
        "Service",
        &escape(alert.service.as_deref().unwrap_or("unknown")),
    );
    dl_row(&mut out, "Fired at", &escape(&fmt_time(&alert.timestamp)));
    for (key, value) in &alert.fields {
        dl_row(&mut out, key, &escape(&value_text(value)));
    }
    if !incident.repeats.is_empty() {
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
        dl_row(&mut out, "Repeats", &escape(&text));
    }
    for link in alert.links() {
        dl_row(
            &mut out,
            &format!("Link ({})", link.kind),
            &format!(
                "<a href=\"{}\" rel=\"noopener noreferrer\">{}</a>",
                escape(&link.href),
                escape(&link.href)
            ),
        );
    }
    if incident.source_recovered() {
        if let Some(at) = incident.source_recovered_at {
            dl_row(
                &mut out,
                "Source",
                &format!(
                    "<strong id=\"recovered\">The source reports the alert recovered at {}.</strong> \
                     Check whether the plan is still needed.",
                    escape(&fmt_time(&at))
                ),
            );
        }
    }
    let _ = writeln!(out, "</dl>\n</section>");

    let _ = writeln!(out, "<section id=\"impact\">\n<h2>Impact</h2>\n<dl>");
    let severity = incident.severity.map(|s| s.as_str()).unwrap_or("untriaged");
    dl_row(
        &mut out,
        "Severity",
        &format!("<span class=\"badge severity\">{severity}</span>"),
    );
    if let Some(t) = &incident.triage {
        dl_row(&mut out, "Blast radius", &escape(&t.blast_radius));
        dl_row(&mut out, "User impact", &escape(&t.estimated_user_impact));
        dl_row(
            &mut out,
            "Affected services",
            &escape(&t.affected_services.join(", ")),
        );
    }
    let _ = writeln!(out, "</dl>\n</section>");

    let _ = writeln!(out, "<section id=\"root-cause\">\n<h2>Root cause</h2>");
    match &incident.hypothesis {
        Some(h) => {
            let _ = writeln!(
                out,
                "<p class=\"primary-cause\">{}</p>\n<dl>",
                escape(&h.primary_cause)
            );
            dl_row(&mut out, "Service", &escape(&h.root_cause_service));
            if !h.fault.is_empty() {
                dl_row(&mut out, "Fault", &escape(&h.fault.replace('_', " ")));
            }
            dl_row(
                &mut out,
                "Confidence",
                &format!(
                    "<span class=\"confidence\">{:.0}%</span> ({:.2})",
                    h.confidence * 100.0,
                    h.confidence
                ),
            );
            if let Some(d) = &h.suspect_deployment {
                dl_row(
                    &mut out,
                    "Suspect deploy",
                    &escape(&format!(
                        "{} {} at {}{}",
                        d.service,
                        d.version,
                        fmt_time(&d.timestamp),
                        if d.description.is_empty() {
                            String::new()
                        } else {
                            format!(" — {}", d.description)
                        }
                    )),
                );
            }
            let _ = writeln!(out, "</dl>");
            let list = |out: &mut String, heading: &str, class: &str, items: &[String]| {
                if items.is_empty() {
                    return;
                }
                let _ = writeln!(out, "<h3>{heading}</h3>\n<ul class=\"{class}\">");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", escape(item));
                }
                let _ = writeln!(out, "</ul>");
            };
            list(&mut out, "Evidence", "evidence", &h.evidence);
            list(
                &mut out,
                "Contributing factors",
                "contributing",
                &h.contributing_factors,
            );
            list(
                &mut out,
                "Alternatives considered",
                "alternatives",
                &h.alternatives,
            );
        }
        None => {
            let _ = writeln!(out, "<p class=\"muted\">No root cause was recorded.</p>");
        }
    }
    let lines = problem_lines(attempts);
    if !lines.is_empty() {
        // First line of each: stack traces are in the incident record, not needed to decide.
        let _ = writeln!(
            out,
            "<h3>Log lines <span class=\"muted\">(first line of each)</span></h3>\n<pre class=\"logs\">"
        );
        for l in lines {
            let mut message = l.message.lines();
            let first = message.next().unwrap_or("");
            let more = if message.next().is_some() { " …" } else { "" };
            let _ = writeln!(
                out,
                "{}",
                escape(&format!(
                    "{} {} {}: {first}{more}",
                    l.timestamp.format("%H:%M:%S"),
                    format!("{:?}", l.level).to_uppercase(),
                    l.service,
                ))
            );
        }
        let _ = writeln!(out, "</pre>");
    }
    let _ = writeln!(out, "</section>");

    match &incident.plan {
        Some(plan) => render_plan(&mut out, plan),
        None => {
            let _ = writeln!(out, "<p class=\"notice danger\">No plan is recorded.</p>");
        }
    }

    // Relative action: resolves to /approvals/{id} under whatever prefix served this page
    // (an API Gateway stage, a proxy path), and drops the query string.
    let _ = writeln!(
        out,
        "<form method=\"post\" action=\"{id}\">\n\
         <h2>Your decision</h2>\n\
         <p>Approve runs the steps above in order; if one fails, the completed steps are \
         rolled back and on-call is paged. Reject pages on-call without running anything.</p>\n\
         <input type=\"hidden\" name=\"exp\" value=\"{exp}\">\n\
         <input type=\"hidden\" name=\"sig\" value=\"{sig}\">\n\
         <label for=\"approver\">Your name</label>\n\
         <input type=\"text\" id=\"approver\" name=\"approver\" maxlength=\"{MAX_APPROVER_CHARS}\" \
         autocomplete=\"name\" placeholder=\"optional\">\n\
         <label for=\"comment\">Comment</label>\n\
         <textarea id=\"comment\" name=\"comment\" placeholder=\"optional\"></textarea>\n\
         <div class=\"buttons\">\n\
         <button type=\"submit\" id=\"approve\" name=\"decision\" value=\"approve\">Approve</button>\n\
         <button type=\"submit\" id=\"reject\" name=\"decision\" value=\"reject\">Reject</button>\n\
         </div>\n</form>",
        id = escape(&approval.approval_id),
        sig = escape(sig),
    );
    document(&format!("Approve? {}", incident.title), "", &out)
}

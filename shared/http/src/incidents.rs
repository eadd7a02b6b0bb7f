//! `GET /incidents`, `/incidents/{id}`, `/incidents/{id}/postmortem`, `/incidents/{id}/audit`:
//! read-only views.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use iras_core::audit::Verification;
use iras_core::report::incident_report;
use iras_core::{Incident, IncidentId, IncidentQuery, IncidentStatus, Severity};
use serde_json::{json, Value};

use crate::approvals::authorize_read;
use crate::error::ApiError;
use crate::{AppState, GatewayCaller};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;
/// Cursors are opaque store tokens; this only stops absurd ones reaching the store.
const MAX_CURSOR_LEN: usize = 1024;

/// Ids arrive in URLs: anything `IncidentId::parse` refuses cannot exist, so it is a 404.
pub(crate) fn parse_id(raw: Result<Path<String>, PathRejection>) -> Result<IncidentId, ApiError> {
    let no_such = || ApiError::not_found("No such incident.");
    let Path(raw) = raw.map_err(|_| no_such())?;
    IncidentId::parse(&raw).ok_or_else(no_such)
}

fn unknown(id: &IncidentId) -> ApiError {
    ApiError::not_found(format!("No incident {id}."))
}

/// `next` is the last incident id of a page: `inc-` and 32 hex digits (a UUIDv7).
fn is_handed_out_cursor(c: &str) -> bool {
    c.strip_prefix("inc-")
        .is_some_and(|h| h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

fn parse_query(params: &HashMap<String, String>) -> Result<IncidentQuery, ApiError> {
    let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let status = get("status")
        .map(|v| {
            IncidentStatus::parse(v).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Unknown status {v:?}: use one of processing, awaiting_approval, \
                         remediating, resolved, escalated."
                    ),
                )
                .field("status")
            })
        })
        .transpose()?;
    let severity = get("severity")
        .map(|v| {
            Severity::parse(v).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("Unknown severity {v:?}: use one of P0, P1, P2, P3."),
                )
                .field("severity")
            })
        })
        .transpose()?;
    let limit = match get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            // Asking for more than the maximum gets the maximum, as the page's `next` says.
            Ok(n) if n > 0 => n.min(MAX_LIMIT),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}."),
                )
                .field("limit"))
            }
        },
    };
    let cursor = match get("cursor") {
        // The cursors this API hands out are incident ids; anything else would quietly list
        // an empty page, so it is refused.
        Some(c) if c.len() > MAX_CURSOR_LEN || !is_handed_out_cursor(c) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "The cursor is not one this API handed out.",
            )
            .field("cursor"))
        }
        c => c.map(str::to_string),
    };
    Ok(IncidentQuery {
        status,
        severity,
        limit,
        cursor,
    })
}

/// One line of the list: what an on-call engineer scans for.
pub(crate) fn summary(i: &Incident) -> Value {
    let awaiting = i.status == IncidentStatus::AwaitingApproval;
    json!({
        "incident_id": i.incident_id,
        "title": i.title,
        "status": i.status.as_str(),
        "severity": i.severity.map(|s| s.as_str()),
        "service": i.service,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
        "root_cause_service": i.hypothesis.as_ref().map(|h| &h.root_cause_service),
        "confidence": i.hypothesis.as_ref().map(|h| h.confidence),
        "approval_id": i
            .approval
            .as_ref()
            .filter(|a| awaiting && a.decision.is_none())
            .map(|a| &a.approval_id),
        "repeats": i.repeats.count,
        "recurrences": i.repeats.recurrences,
        "source_recovered": i.source_recovered(),
    })
}

pub(crate) async fn list(
    State(state): State<AppState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    caller: Option<Extension<GatewayCaller>>,
) -> Result<Response, ApiError> {
    authorize_read(&state.app.http, &headers, caller.as_ref().map(|c| &c.0))?;
    let Query(params) = params.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("The query string is malformed ({}).", e.body_text()),
        )
    })?;
    let query = parse_query(&params)?;
    let page = state
        .app
        .deps
        .store
        .list_incidents(&query)
        .await
        .map_err(|e| ApiError::unavailable("Incidents could not be listed", e))?;
    let incidents: Vec<Value> = page.incidents.iter().map(summary).collect();
    let unreadable: Vec<Value> = page
        .unreadable
        .iter()
        .map(|u| json!({"incident_id": u.incident_id, "error": u.error}))
        .collect();
    if !unreadable.is_empty() {
        tracing::error!(
            count = unreadable.len(),
            "incident records that cannot be read were left out of the listing"
        );
    }
    Ok(
        Json(json!({ "incidents": incidents, "next": page.next, "unreadable": unreadable }))
            .into_response(),
    )
}

pub(crate) async fn report(
    State(state): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    caller: Option<Extension<GatewayCaller>>,
) -> Result<Response, ApiError> {
    authorize_read(&state.app.http, &headers, caller.as_ref().map(|c| &c.0))?;
    let id = parse_id(raw)?;
    match incident_report(state.app.deps.store.as_ref(), &id).await {
        Ok(Some(report)) => Ok(Json(report).into_response()),
        Ok(None) => Err(unknown(&id)),
        // This record alone is broken: say so, for this incident only.
        Err(iras_core::StoreError::Corrupt(e)) => {
            tracing::error!(incident = %id, error = %e, "incident record cannot be read");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "The record of incident {id} cannot be read; other incidents are not affected."
                ),
            )
            .with("incident_id", id.to_string()))
        }
        Err(e) => Err(ApiError::unavailable("The incident could not be read", e)),
    }
}

/// The incident's audit log and whether it is intact: the entries as stored, and the first
/// one that does not verify. A broken log is still `200`: the read worked, and what it found
/// is the answer.
pub(crate) async fn audit(
    State(state): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    caller: Option<Extension<GatewayCaller>>,
) -> Result<Response, ApiError> {
    authorize_read(&state.app.http, &headers, caller.as_ref().map(|c| &c.0))?;
    let id = parse_id(raw)?;
    let store = state.app.deps.store.as_ref();
    let key = state.app.deps.config.audit_key.as_ref();
    let (entries, verification) = match store.audit(&id).await {
        Ok(entries) => {
            let v = Verification::of(&id, &entries, key);
            (entries, json!(v))
        }
        // An entry edited into something unreadable is a broken log, not a broken server.
        Err(iras_core::StoreError::Corrupt(e)) => (
            Vec::new(),
            json!({
                "intact": false,
                "signatures_checked": key.is_some(),
                "problem": {"fault": "unreadable"},
                "message": e,
            }),
        ),
        Err(e) => return Err(ApiError::unavailable("The audit log could not be read", e)),
    };
    if entries.is_empty() && verification["intact"] == true {
        let exists = store
            .get_incident(&id)
            .await
            .map_err(|e| ApiError::unavailable("The incident could not be read", e))?
            .is_some();
        if !exists {
            return Err(unknown(&id));
        }
    }
    if verification["intact"] != true {
        tracing::error!(incident = %id, problem = %verification["message"], "audit log does not verify");
    }
    Ok(Json(json!({
        "incident_id": id,
        "entries": entries,
        "verification": verification,
    }))
    .into_response())
}

pub(crate) async fn postmortem(
    State(state): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    caller: Option<Extension<GatewayCaller>>,
) -> Result<Response, ApiError> {
    authorize_read(&state.app.http, &headers, caller.as_ref().map(|c| &c.0))?;
    let id = parse_id(raw)?;
    let store = state.app.deps.store.as_ref();
    let pm = store
        .postmortem(&id)
        .await
        .map_err(|e| ApiError::unavailable("The post-mortem could not be read", e))?;
    let Some(pm) = pm else {
        let exists = store
            .get_incident(&id)
            .await
            .map_err(|e| ApiError::unavailable("The incident could not be read", e))?
            .is_some();
        return Err(if exists {
            ApiError::not_found(format!(
                "The post-mortem of {id} has not been written yet: it is written when the \
                 incident is resolved or escalated."
            ))
        } else {
            unknown(&id)
        });
    };
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut response = if prefers_json(accept) {
        Json(&pm).into_response()
    } else {
        (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/markdown; charset=utf-8"),
            )],
            pm.to_markdown(),
        )
            .into_response()
    };
    // Caches must key on Accept: the same URL has two representations.
    response
        .headers_mut()
        .insert(VARY, HeaderValue::from_static("Accept"));
    Ok(response)
}

/// How an `Accept` header rates a media type: (q, specificity) of the best-matching range,
/// where specificity is 2 for an exact match, 1 for `type/*`, 0 for `*/*`.
fn rating(accept: &str, media: &str) -> Option<(f32, u8)> {
    let (mtype, _) = media.split_once('/')?;
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let specificity = if name == media {
            2
        } else if name.strip_suffix("/*") == Some(mtype) {
            1
        } else if name == "*/*" {
            0
        } else {
            continue;
        };
        // The most specific matching range decides (RFC 9110 §12.5.1).
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map(|(s, q)| (q, s))
}

/// Markdown is the default; JSON only when the client rates it above markdown (or equally,
/// but by name rather than by wildcard, as `Accept: application/json, */*` does).
fn prefers_json(accept: &str) -> bool {
    let Some((qj, sj)) = rating(accept, "application/json") else {
        return false;
    };
    if qj <= 0.0 {
        return false;
    }
    match rating(accept, "text/markdown") {
        None => true,
        Some((qm, sm)) => qj > qm || (qj == qm && sj > sm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert!(!prefers_json(""));
        assert!(!prefers_json("*/*"));
        assert!(!prefers_json("text/markdown"));
        assert!(!prefers_json("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert!(prefers_json("application/json"));
        assert!(prefers_json("Application/JSON"));
        assert!(prefers_json("application/json, */*;q=0.5"));
        assert!(prefers_json("application/json, */*"));
        assert!(prefers_json("text/markdown;q=0.5, application/json"));
        assert!(!prefers_json("application/json;q=0.5, text/markdown"));
        assert!(!prefers_json("application/json, text/markdown"));
        assert!(!prefers_json("application/json;q=0"));
        assert!(prefers_json("application/*"));
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_parsing_names_the_bad_field() {
        let q = parse_query(&params(&[("status", "resolved"), ("severity", "p1")])).unwrap();
        assert_eq!(q.status, Some(IncidentStatus::Resolved));
        assert_eq!(q.severity, Some(Severity::P1));
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert_eq!(
            parse_query(&params(&[("limit", "5000")])).unwrap().limit,
            MAX_LIMIT
        );
        for (k, v) in [
            ("status", "done"),
            ("severity", "P9"),
            ("limit", "0"),
            ("limit", "x"),
        ] {
            let e = parse_query(&params(&[(k, v)])).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(k), "{k}={v}");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
        // Blank means "no filter", as an HTML form would send it.
        assert_eq!(
            parse_query(&params(&[("status", "")])).unwrap().status,
            None
        );
    }
}

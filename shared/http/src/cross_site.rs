//! The approval page resists cross-site use: a decision is taken only from a form this server
//! rendered for that approval, recently, and posted by the page itself.
//!
//! Three checks, each enough against a different attacker, all before the store is read:
//! - a form token (`signing::decision_form_token`): signed with the link key, bound to the
//!   approval id and its link, issued when the page was rendered and valid for
//!   [`FORM_TOKEN_MAX_AGE_SECONDS`]. Another site cannot read our page, so it cannot have one.
//! - `Sec-Fetch-Site` (Fetch Metadata): browsers since 2023 say where a request came from;
//!   only `same-origin` (our own form) and `none` (the person's own action) may decide.
//!   Absent, from a client that predates the header, the token alone decides.
//! - `Origin`: when sent, it must be this server's own origin — the one its links are made
//!   of (`IRAS_PUBLIC_URL`), or the `Host` the request was sent to.

use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;
use iras_core::signing::{new_decision_form_token, verify_decision_form_token, FormTokenError};
use url::Url;

use crate::AppState;

/// How long a rendered page's form may be posted: long enough to read the plan and ask a
/// colleague, short enough that a page left open all night must be reloaded and show the
/// incident as it is now. The approval window still closes decisions on its own.
pub(crate) const FORM_TOKEN_MAX_AGE_SECONDS: i64 = 30 * 60;

pub(crate) const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Why a decision was not taken from this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `Sec-Fetch-Site` named another site (its value).
    FromAnotherSite(String),
    /// `Origin` was not ours (its value, for the log).
    ForeignOrigin(String),
    /// No form token: not a form this server rendered.
    NoToken,
    /// A token that does not hold for this approval and link.
    BadToken,
    /// A token older than [`FORM_TOKEN_MAX_AGE_SECONDS`].
    StaleToken,
}

/// A form token for a page about to be rendered for `approval_id` via the link expiring at
/// `link_exp`.
pub(crate) fn form_token(state: &AppState, approval_id: &str, link_exp: i64) -> String {
    new_decision_form_token(
        &state.app.http.approval_signing_key,
        approval_id,
        link_exp,
        state.app.deps.clock.now().timestamp(),
    )
}

/// Where the request says it came from: `Sec-Fetch-Site`, then `Origin`.
pub(crate) fn check_request_source(state: &AppState, headers: &HeaderMap) -> Result<(), Refused> {
    // Fetch Metadata: `same-site` is refused too — it is a sibling subdomain's page, never
    // ours (our form posts to its own origin). An unknown value is no browser we know.
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        let site = site.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(site.as_str(), "same-origin" | "none") {
            return Err(Refused::FromAnotherSite(site));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("").trim();
        if !is_own_origin(state, headers, origin) {
            return Err(Refused::ForeignOrigin(origin.chars().take(200).collect()));
        }
    }
    Ok(())
}

/// `Origin: null` (an opaque origin: a sandboxed frame, a `data:` page) is never ours. Our own
/// pages send their real origin, because they are served with `Referrer-Policy: same-origin`.
fn is_own_origin(state: &AppState, headers: &HeaderMap, origin: &str) -> bool {
    let Ok(url) = Url::parse(origin) else {
        return false;
    };
    let origin = url.origin();
    if !origin.is_tuple() {
        return false;
    }
    // The origin the links are made of: behind a proxy or API Gateway, the only name the
    // person's browser knows, whatever `Host` reaches us.
    let public = state
        .app
        .deps
        .config
        .approval_links
        .as_ref()
        .and_then(|l| Url::parse(&l.base_url).ok());
    if public.is_some_and(|p| p.origin() == origin) {
        return true;
    }
    // The name the browser sent this request to. A browser sets `Host` itself, so a page on
    // another site cannot make the two agree (a DNS-rebinding page can: `ALLOWED_HOSTS`
    // refuses its name before this runs, and it still has no form token).
    let Some(host) = url.host_str() else {
        return false;
    };
    let Some(sent_to) = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase())
    else {
        return false;
    };
    let explicit = url.port_or_known_default().map(|p| format!("{host}:{p}"));
    // A default port is left out of `Host` by browsers, and out of the parsed URL's `port()`.
    let implicit = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    sent_to == implicit || explicit.is_some_and(|e| sent_to == e)
}

/// The form token: present, signed for this approval and link, and fresh.
pub(crate) fn check_form_token(
    state: &AppState,
    approval_id: &str,
    link_exp: i64,
    token: Option<&str>,
) -> Result<(), Refused> {
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(Refused::NoToken);
    };
    verify_decision_form_token(
        &state.app.http.approval_signing_key,
        approval_id,
        link_exp,
        token,
        state.app.deps.clock.now().timestamp(),
        FORM_TOKEN_MAX_AGE_SECONDS,
    )
    .map_err(|e| match e {
        FormTokenError::Expired => Refused::StaleToken,
        FormTokenError::Malformed | FormTokenError::Forged | FormTokenError::NotYetValid => {
            Refused::BadToken
        }
    })
}

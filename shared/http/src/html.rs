//! HTML for the approval pages: the shared layout, and the headers that keep a page holding
//! secrets (a signed link) out of caches, frames and other sites' referrers. Pages are maud
//! templates: every value interpolated into one is escaped by the template itself, so text
//! that came from outside (alert fields, log lines, evidence, commands, names) cannot become
//! markup — an alert is written by whoever can reach the webhook, not by us.

use std::sync::LazyLock;

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use sha2::{Digest, Sha256};

/// Plain and readable on a phone at 3 a.m.; no external assets, no scripts.
const STYLE: &str = "
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #57606a; --bg: #ffffff;
  --panel: #f6f8fa; --line: #d0d7de; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117;
  --panel: #161b22; --line: #30363d; --ok: #3fb950; --bad: #f85149; --warn: #d29922; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
main { max-width: 52rem; margin: 0 auto; padding: 1.5rem 1rem 4rem; }
h1 { font-size: 1.5rem; line-height: 1.25; margin: .25rem 0 .5rem; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; padding-bottom: .25rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 1rem 0 .5rem; overflow-wrap: anywhere; }
.step h3 { margin-top: 0; }
.kicker, .muted { color: var(--muted); }
.kicker { margin: 0; font-size: .875rem; }
dl { display: grid; grid-template-columns: minmax(7rem, max-content) 1fr; gap: .25rem 1rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; min-width: 0; overflow-wrap: anywhere; white-space: pre-wrap; }
code, pre { font: .875rem/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { background: var(--panel); border: 1px solid var(--line); border-radius: 4px; padding: 0 .25rem;
  white-space: pre-wrap; overflow-wrap: anywhere; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .5rem .75rem;
  white-space: pre-wrap; overflow-wrap: anywhere; margin: .25rem 0; }
ul, ol { padding-left: 1.25rem; }
/* One log line per line: scrolling sideways reads better than wrapped stack traces. */
pre.logs { white-space: pre; overflow-x: auto; }
li { overflow-wrap: anywhere; }
.steps { list-style: none; padding: 0; }
.step { border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; margin: .75rem 0; }
.risk, .badge { display: inline-block; font-weight: 600; padding: 0 .5rem; border-radius: 999px;
  border: 1px solid currentColor; }
.risk-low { color: var(--ok); } .risk-medium { color: var(--warn); } .risk-high { color: var(--bad); }
.irreversible, .refused { color: var(--bad); font-weight: 600; }
.allowed { color: var(--ok); }
.notice { border-left: 4px solid var(--warn); background: var(--panel); padding: .5rem .75rem; margin: 1rem 0; }
.notice.danger { border-left-color: var(--bad); }
#deadline { font-weight: 600; }
form h2 { margin-top: 0; }
form { margin-top: 2rem; padding: 1rem; border: 2px solid var(--line); border-radius: 8px; background: var(--panel); }
label { display: block; font-weight: 600; margin: .75rem 0 .25rem; }
input[type=text], textarea { width: 100%; font: inherit; padding: .5rem; border: 1px solid var(--line);
  border-radius: 6px; background: var(--bg); color: var(--fg); }
textarea { min-height: 5rem; }
.buttons { display: flex; gap: 1rem; flex-wrap: wrap; margin-top: 1rem; }
button { font: inherit; font-weight: 700; padding: .6rem 1.5rem; border-radius: 6px; border: 0;
  color: #fff; cursor: pointer; }
#approve { background: var(--ok); } #reject { background: var(--bad); }
button:focus-visible, input:focus-visible, textarea:focus-visible { outline: 3px solid var(--warn); outline-offset: 2px; }
#outcome { font-size: 1.25rem; font-weight: 600; }
.outcome-ok #outcome { color: var(--ok); }
.outcome-refused #outcome { color: var(--bad); }
";

/// RFC 4648 base64 with padding, as CSP hash sources are written.
fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// No scripts at all; the one inline style block is allowed by its hash rather than by
/// `'unsafe-inline'`, so even an escaping bug could not inject styling. Forms may only post
/// back to us, and no other site may frame the page (clickjacking the Approve button).
static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64(&Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
});

pub(crate) fn content_security_policy() -> &'static str {
    &CSP
}

/// A whole document around `body`. `class` goes on `<body>` (`outcome-ok` / `outcome-refused`
/// colour the result).
pub(crate) fn document(title: &str, class: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex, nofollow";
                title { (title) " · IRAS" }
                // Ours, verbatim: the CSP allows exactly these bytes by their hash.
                style { (PreEscaped(STYLE)) }
            }
            body class=[(!class.is_empty()).then_some(class)] {
                main { (body) }
            }
        }
    }
    .into_string()
}

/// An HTML response with the headers every approval page needs: the URL carries a signature,
/// so nothing may cache it, frame it or send it to another site in a Referer.
///
/// `Referrer-Policy: same-origin`, not `no-referrer`: no other site ever sees where the page
/// was, and a form posted back to us keeps its real `Origin` — under `no-referrer` the Fetch
/// standard sends `Origin: null` with every POST, which would leave the origin check
/// nothing to check.
pub(crate) fn respond(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        HeaderName::from_static("x-robots-tag"),
        HeaderValue::from_static("noindex, nofollow"),
    );
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(content_security_policy()).expect("the CSP is ASCII"),
    );
    r
}

/// A page that only states an outcome (a decision, or why there can be none).
pub(crate) fn message_page(status: StatusCode, heading: &str, outcome: &str) -> Response {
    message_page_with(status, heading, outcome, None)
}

/// [`message_page`] with a second line under the outcome (what was recorded, and how).
pub(crate) fn message_page_with(
    status: StatusCode,
    heading: &str,
    outcome: &str,
    recorded: Option<&str>,
) -> Response {
    let class = if status.is_success() {
        "outcome-ok"
    } else {
        "outcome-refused"
    };
    let body = html! {
        p.kicker { "IRAS · approval" }
        h1 { (heading) }
        p #outcome { (outcome) }
        @if let Some(recorded) = recorded {
            p #recorded { (recorded) }
        }
    };
    respond(status, document(heading, class, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_escapes_what_it_is_given() {
        let page = document(
            "<script>alert(1)</script>",
            "x\" onload=\"alert(2)",
            html! { p { "ok" } },
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt; · IRAS</title>"));
        assert!(
            page.contains(r#"<body class="x&quot; onload=&quot;alert(2)">"#),
            "{page}"
        );
        assert!(
            document("t", "", html! {}).contains("<body>"),
            "no empty class"
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn csp_hashes_use_the_standard_alphabet_with_padding() {
        // The RFC vectors hold no `+` or `/`: only this tells the standard alphabet from the URL-safe one.
        assert_eq!(
            base64(&Sha256::digest(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn the_csp_allows_exactly_our_style_and_no_script() {
        let csp = content_security_policy();
        assert!(!csp.contains("script-src"));
        assert!(csp.contains("default-src 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        let hash = base64(&Sha256::digest(STYLE.as_bytes()));
        assert!(csp.contains(&hash));
        assert!(document("t", "", html! {}).contains(&format!("<style>{STYLE}</style>")));
    }

    #[test]
    fn pages_carry_the_protective_headers() {
        let r = message_page(StatusCode::FORBIDDEN, "No", "<b>x</b>");
        let h = r.headers();
        assert_eq!(h[CACHE_CONTROL], "no-store");
        assert_eq!(h[X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[REFERRER_POLICY], "same-origin");
        assert!(h[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    }
}

//! Fake services on 127.0.0.1: an axum router on a free port that records every request it
//! receives, stopped when the test drops it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, Utc};
use iras_core::{Alert, EvidenceQuery, EvidenceWindow};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    /// A query parameter, decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(&format!("http://x/?{}", self.query)).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

type Log = Arc<Mutex<Vec<Recorded>>>;

pub struct FakeServer {
    pub url: String,
    log: Log,
    task: tokio::task::JoinHandle<()>,
}

async fn record(State(log): State<Log>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap();
    log.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts.headers.clone(),
        body: bytes.to_vec(),
    });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

impl FakeServer {
    pub async fn start(router: Router) -> FakeServer {
        let log: Log = Arc::default();
        let app = router.layer(middleware::from_fn_with_state(log.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeServer {
            url: format!("http://{addr}"),
            log,
            task,
        }
    }

    /// Answers every request the same way.
    pub async fn fixed(status: u16, headers: &[(&str, &str)], body: &str) -> FakeServer {
        let reply = Canned::new(status, headers, body);
        FakeServer::start(Router::new().fallback(move || {
            let reply = reply.clone();
            async move { reply.into_response() }
        }))
        .await
    }

    /// Answers every request, but only after `delay`.
    pub async fn slow(delay: Duration, body: &str) -> FakeServer {
        let body = body.to_string();
        FakeServer::start(Router::new().fallback(move || {
            let body = body.clone();
            async move {
                tokio::time::sleep(delay).await;
                body
            }
        }))
        .await
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    pub fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&self.url).unwrap()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fixed response: status, headers, body.
#[derive(Clone)]
pub struct Canned {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: String,
}

impl Canned {
    pub fn new(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        Canned {
            status: StatusCode::from_u16(status).unwrap(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_string(),
        }
    }

    pub fn json(status: u16, body: Value) -> Self {
        Canned::new(
            status,
            &[("content-type", "application/json")],
            &body.to_string(),
        )
    }
}

impl IntoResponse for Canned {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body).into_response();
        for (k, v) in self.headers {
            r.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        r
    }
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn alert(service: Option<&str>, time: &str) -> Alert {
    let mut a = serde_json::json!({"title": "High error rate", "timestamp": time});
    if let Some(s) = service {
        a["service"] = Value::String(s.into());
    }
    Alert::from_json(a).unwrap()
}

/// The window of a first attempt for an alert at `time`: 30 min before, 15 after, a day of
/// deployments.
pub fn evidence_query(services: &[&str], time: &str) -> EvidenceQuery {
    let t = at(time);
    EvidenceQuery {
        services: services.iter().map(|s| s.to_string()).collect(),
        window: EvidenceWindow {
            start: t - chrono::Duration::minutes(30),
            end: t + chrono::Duration::minutes(15),
            deployments_since: t - chrono::Duration::hours(24),
        },
        alert: alert(services.first().copied(), time),
        since_change: None,
    }
}

/// A short request timeout for the tests that make a fake sleep past it.
pub const SHORT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long those fakes sleep.
pub const FAKE_DELAY: Duration = Duration::from_secs(3);

/// Reads a Go-style quoted string starting right after an opening `"`: the value and the
/// rest after the closing quote. What a PromQL/LogQL lexer would see.
pub fn read_quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                'r' => value.push('\r'),
                't' => value.push('\t'),
                'u' => {
                    let hex: String = (0..4).filter_map(|_| chars.next().map(|x| x.1)).collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// The value of the first `label="..."` matcher in a query, unescaped.
pub fn label_value(query: &str, label: &str) -> Option<String> {
    let start = query.find(&format!("{label}=\""))? + label.len() + 2;
    read_quoted(&query[start..]).map(|(v, _)| v)
}

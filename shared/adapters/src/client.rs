//! What every integration shares: a client with a request timeout, response bodies read with a
//! size cap, the one retry of a rate-limited call, and transport failures turned into the
//! ports' errors, named after the service.

use std::time::{Duration, SystemTime};

use backon::{ConstantBuilder, Retryable};
use iras_core::{NotifyError, SourceError};
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

pub(crate) const USER_AGENT: &str = concat!("iras/", env!("CARGO_PKG_VERSION"));

/// An answer larger than this is not evidence anyone reads; refuse it rather than hold it.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Characters of a response body quoted in an error message.
const SNIPPET_CHARS: usize = 300;

/// Why a call to a service failed, before it becomes a `SourceError` or a `NotifyError`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    Timeout(u64),
    Unavailable(String),
    BadResponse(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(ms) => write!(f, "timed out after {ms} ms"),
            Failure::Unavailable(s) => f.write_str(s),
            Failure::BadResponse(s) => write!(f, "bad response: {s}"),
        }
    }
}

impl From<Failure> for SourceError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Timeout(ms) => SourceError::Timeout(ms),
            Failure::Unavailable(s) => SourceError::Unavailable(s),
            Failure::BadResponse(s) => SourceError::BadResponse(s),
        }
    }
}

impl From<Failure> for NotifyError {
    fn from(f: Failure) -> Self {
        NotifyError::Failed(f.to_string())
    }
}

pub(crate) fn build_client(timeout: Duration) -> Result<Client, String> {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// One service's HTTP calls: its name for error messages and the timeout its client uses.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub service: &'static str,
    pub client: Client,
    pub timeout: Duration,
}

/// How long a notifier waits before its one retry of a 429.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateLimit {
    /// When the server names no wait.
    pub default_wait: Duration,
    /// A longer `Retry-After` is cut to this: the stage has its own deadline.
    pub max_wait: Duration,
}

/// One attempt of [`Caller::call_retrying_429`]: a 429 (with the server's `Retry-After`) is
/// the only failure worth another try.
enum Attempt {
    RateLimited(Option<Duration>),
    Failed(Failure),
}

/// A response read in full: status, headers and the (capped) body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: reqwest::StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Caller {
    pub fn new(service: &'static str, timeout: Duration) -> Result<Self, String> {
        Ok(Caller {
            service,
            client: build_client(timeout)?,
            timeout,
        })
    }

    fn transport(&self, e: reqwest::Error) -> Failure {
        if e.is_timeout() {
            return Failure::Timeout(self.timeout.as_millis() as u64);
        }
        let what = if e.is_connect() {
            "cannot connect"
        } else if e.is_body() || e.is_decode() {
            "the response broke off"
        } else {
            "request failed"
        };
        // Without the URL: it is long, and the cause is what the operator needs.
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        Failure::Unavailable(format!("{}: {what}: {detail}", self.service))
    }

    /// Sends the request and reads the whole body (at most [`MAX_BODY_BYTES`]).
    pub async fn call(&self, request: RequestBuilder) -> Result<Reply, Failure> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        self.read(response).await
    }

    /// [`Caller::call`] with the one retry a 429 gets: after the server's `Retry-After` (at
    /// most `limit.max_wait`), else after `limit.default_wait`. A second 429 is `Unavailable`;
    /// any other answer or failure is returned as it came. `request` builds each attempt.
    pub async fn call_retrying_429(
        &self,
        what: &str,
        limit: RateLimit,
        request: impl Fn() -> RequestBuilder,
    ) -> Result<Reply, Failure> {
        let request = &request;
        let attempt = move || async move {
            let reply = self.call(request()).await.map_err(Attempt::Failed)?;
            if reply.status == StatusCode::TOO_MANY_REQUESTS {
                return Err(Attempt::RateLimited(retry_after(&reply.headers)));
            }
            Ok(reply)
        };
        let once = ConstantBuilder::new()
            .with_delay(limit.default_wait.min(limit.max_wait))
            .with_max_times(1);
        let outcome = attempt
            .retry(once)
            .when(|e| matches!(e, Attempt::RateLimited(_)))
            // `planned` is None once the one retry is spent; the server's wait must not revive it.
            .adjust(|e, planned| match (e, planned) {
                (Attempt::RateLimited(Some(asked)), Some(_)) => Some((*asked).min(limit.max_wait)),
                _ => planned,
            })
            .notify(|_, wait| {
                tracing::warn!(
                    service = self.service,
                    what,
                    wait_ms = wait.as_millis() as u64,
                    "rate limited; retrying once"
                )
            })
            .await;
        outcome.map_err(|e| match e {
            Attempt::Failed(f) => f,
            Attempt::RateLimited(_) => Failure::Unavailable(format!(
                "{}: {what}: rate limited (429) twice",
                self.service
            )),
        })
    }

    async fn read(&self, mut response: Response) -> Result<Reply, Failure> {
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Failure::BadResponse(format!(
                    "{}: response larger than {} MB",
                    self.service,
                    MAX_BODY_BYTES / (1024 * 1024)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// The body as `T`, or a `BadResponse` quoting the start of what came instead.
    pub fn json<T: DeserializeOwned>(&self, reply: &Reply) -> Result<T, Failure> {
        serde_json::from_slice(&reply.body).map_err(|e| {
            Failure::BadResponse(format!(
                "{}: not the expected JSON ({e}): {}",
                self.service,
                snippet(&reply.body)
            ))
        })
    }

    /// `Unavailable` naming the status and quoting the body.
    pub fn status_failure(&self, reply: &Reply, what: &str) -> Failure {
        Failure::Unavailable(format!(
            "{}: {what}: HTTP {}: {}",
            self.service,
            reply.status.as_u16(),
            snippet(&reply.body)
        ))
    }
}

/// The start of a body, on one line, for an error message.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    if out.trim().is_empty() {
        "(empty body)".into()
    } else {
        out.trim().to_string()
    }
}

/// `Retry-After` in delta-seconds (as Slack and GitHub send it) or as an HTTP-date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    retry_after_at(value, SystemTime::now())
}

/// The wait a `Retry-After` value asks for at `now`; a date already past means no wait.
// iras-llm has its own twin: neither crate depends on the other, and core stays free of HTTP.
fn retry_after_at(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use axum::response::IntoResponse;

    use super::*;

    #[test]
    fn snippets_are_one_bounded_line() {
        assert_eq!(snippet(b""), "(empty body)");
        assert_eq!(snippet(b"a\nb"), "a b");
        let long = vec![b'x'; 1000];
        assert_eq!(snippet(&long).chars().count(), SNIPPET_CHARS + 1);
    }

    /// A service on 127.0.0.1 answering each request with the next of `answers` (status,
    /// `Retry-After`), the last one repeated; returns its URL and how many requests it saw.
    async fn service(answers: Vec<(u16, Option<&'static str>)>) -> (String, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let app = axum::Router::new().fallback(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (status, wait) = answers[n.min(answers.len() - 1)];
            async move {
                let mut r = axum::http::StatusCode::from_u16(status)
                    .unwrap()
                    .into_response();
                if let Some(wait) = wait {
                    r.headers_mut()
                        .insert(reqwest::header::RETRY_AFTER, wait.parse().unwrap());
                }
                r
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    async fn call(url: &str, limit: RateLimit) -> Result<Reply, Failure> {
        let caller = Caller::new("chat", Duration::from_secs(5)).unwrap();
        caller
            .call_retrying_429("post", limit, || caller.client.post(url))
            .await
    }

    #[tokio::test]
    async fn a_429_without_retry_after_waits_the_default_then_succeeds() {
        let (url, seen) = service(vec![(429, None), (200, None)]).await;
        let started = Instant::now();
        let limit = RateLimit {
            default_wait: Duration::from_millis(300),
            max_wait: Duration::from_secs(10),
        };
        let reply = call(&url, limit).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_long_retry_after_is_cut_to_the_cap_and_a_second_429_gives_up() {
        let (url, seen) = service(vec![(429, Some("3600"))]).await;
        let started = Instant::now();
        let limit = RateLimit {
            default_wait: Duration::from_secs(30),
            max_wait: Duration::from_millis(200),
        };
        let e = call(&url, limit).await.unwrap_err();
        assert_eq!(
            e,
            Failure::Unavailable("chat: post: rate limited (429) twice".into())
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2, "one retry, not more");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn only_a_429_is_retried() {
        let (url, seen) = service(vec![(503, Some("0")), (200, None)]).await;
        let limit = RateLimit {
            default_wait: Duration::ZERO,
            max_wait: Duration::ZERO,
        };
        let reply = call(&url, limit).await.unwrap();
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_is_read_as_an_http_date() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let at = httpdate::parse_http_date(date).unwrap();
        let before = at - Duration::from_secs(90);
        assert_eq!(retry_after_at(date, before), Some(Duration::from_secs(90)));
        // RFC 9110 asks recipients to read the two obsolete date forms too.
        assert_eq!(
            retry_after_at("Sunday, 06-Nov-94 08:49:37 GMT", before),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after_at("Sun Nov  6 08:49:37 1994", before),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after_at(date, at + Duration::from_secs(5)),
            Some(Duration::ZERO),
            "a date already past: retry now"
        );
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, date.parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn a_garbled_retry_after_is_ignored() {
        let now = SystemTime::now();
        for garbage in [
            "",
            "soon",
            "-1",
            "1.5",
            "Sun, 06 Nov 1994 25:61:00 GMT",
            "2024-03-12T14:03:00Z",
        ] {
            assert_eq!(retry_after_at(garbage, now), None, "{garbage:?}");
        }
    }
}

//! What every integration shares: a client with a request timeout, response bodies read with a
//! size cap, and transport failures turned into the ports' errors, named after the service.

use std::time::Duration;

use iras_core::{NotifyError, SourceError};
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, Response};
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

/// `Retry-After` in seconds, as Slack and GitHub send it.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_bounded_line() {
        assert_eq!(snippet(b""), "(empty body)");
        assert_eq!(snippet(b"a\nb"), "a b");
        let long = vec![b'x'; 1000];
        assert_eq!(snippet(&long).chars().count(), SNIPPET_CHARS + 1);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }
}

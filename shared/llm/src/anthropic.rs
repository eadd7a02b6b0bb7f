//! The Anthropic Messages API (`POST {base}/v1/messages`) over reqwest.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::client::{Block, CallError, ModelClient, ModelRequest, ModelResponse, Role, Usage};

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct AnthropicClient {
    http: reqwest::Client,
    url: String,
    api_key: String,
}

impl std::fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

impl AnthropicClient {
    /// `base_url` like `https://api.anthropic.com` (no `/v1`).
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, String> {
        let base = base_url.trim().trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!("`{base}` is not an http(s) URL"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(AnthropicClient {
            http,
            url: format!("{base}/v1/messages"),
            api_key: api_key.to_string(),
        })
    }
}

/// The request body. The system prompt is one text block marked for prompt caching: with the
/// tool before it, it is the fixed prefix every incident shares.
pub fn request_body(req: &ModelRequest) -> Value {
    let tool_choice = if req.force_tool {
        json!({"type": "tool", "name": req.tool.name})
    } else {
        json!({"type": "auto"})
    };
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|t| {
            json!({
                "role": match t.role { Role::User => "user", Role::Assistant => "assistant" },
                "content": t.content.iter().map(block_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "model": req.model,
        "max_tokens": req.max_tokens,
        "system": [{
            "type": "text",
            "text": req.system,
            "cache_control": {"type": "ephemeral"},
        }],
        "tools": [{
            "name": req.tool.name,
            "description": req.tool.description,
            "input_schema": req.tool.input_schema,
        }],
        "tool_choice": tool_choice,
        "messages": messages,
    })
}

fn block_json(b: &Block) -> Value {
    match b {
        Block::Text(t) => json!({"type": "text", "text": t}),
        Block::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => json!({
            "type": "tool_result",
            "tool_use_id": tool_use_id,
            "content": content,
            "is_error": is_error,
        }),
        Block::Opaque(v) => v.clone(),
    }
}

/// Reads a 200 response. Anything that is not a Messages response comes back as `malformed`.
pub fn parse_response(body: &str) -> ModelResponse {
    let malformed = |why: String| ModelResponse {
        content: vec![],
        stop_reason: String::new(),
        usage: Usage::default(),
        malformed: Some(why),
    };
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return malformed(format!("the response is not JSON: {e}")),
    };
    let Some(blocks) = v.get("content").and_then(Value::as_array) else {
        return malformed("the response has no `content` array".into());
    };
    let content = blocks
        .iter()
        .map(|b| match b.get("type").and_then(Value::as_str) {
            Some("text") => Block::Text(
                b.get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
            Some("tool_use") => Block::ToolUse {
                id: b
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                name: b
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                input: b.get("input").cloned().unwrap_or(Value::Null),
            },
            _ => Block::Opaque(b.clone()),
        })
        .collect();
    let u = v.get("usage");
    let n = |k: &str| {
        u.and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    ModelResponse {
        content,
        stop_reason: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        usage: Usage {
            input_tokens: n("input_tokens"),
            output_tokens: n("output_tokens"),
            cache_read_tokens: n("cache_read_input_tokens"),
            cache_write_tokens: n("cache_creation_input_tokens"),
        },
        malformed: None,
    }
}

/// An error response: `{"type":"error","error":{"type":"overloaded_error","message":…}}`.
pub fn parse_error(status: u16, body: &str, retry_after: Option<Duration>) -> CallError {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let err = v.as_ref().and_then(|v| v.get("error"));
    let kind = err
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| match status {
            429 => "rate_limit_error".into(),
            529 => "overloaded_error".into(),
            s if s >= 500 => "api_error".into(),
            _ => "http_error".into(),
        });
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.chars().take(300).collect());
    CallError::Http {
        status,
        kind,
        message,
        retry_after,
    }
}

/// `retry-after` in seconds (integer or decimal) or as an HTTP-date, at most an hour.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    retry_after_at(value?, SystemTime::now())
}

/// The wait a `retry-after` value asks for at `now`; a date already past means no wait.
// iras-adapters has its own twin: neither crate depends on the other, and core stays free of HTTP.
fn retry_after_at(value: &str, now: SystemTime) -> Option<Duration> {
    const MAX: Duration = Duration::from_secs(3600);
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        // Capped before converting: `from_secs_f64` panics past `Duration::MAX`.
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(MAX))
}

#[async_trait]
impl ModelClient for AnthropicClient {
    fn provider(&self) -> &'static str {
        "anthropic"
    }

    async fn send(&self, req: &ModelRequest) -> Result<ModelResponse, CallError> {
        let resp = self
            .http
            .post(&self.url)
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header("content-type", "application/json")
            .body(request_body(req).to_string())
            .send()
            .await
            .map_err(|e| CallError::Transport(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let retry_after = parse_retry_after(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
        );
        let body = resp
            .text()
            .await
            .map_err(|e| CallError::Transport(error_chain(&e)))?;
        if status == 200 {
            Ok(parse_response(&body))
        } else {
            Err(parse_error(status, &body, retry_after))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ToolSpec, Turn};

    fn request(force: bool) -> ModelRequest {
        ModelRequest {
            model: "claude-haiku-4-5".into(),
            system: "rules".into(),
            tool: ToolSpec {
                name: "submit_triage",
                description: "d",
                input_schema: json!({"type": "object"}),
            },
            force_tool: force,
            max_tokens: 100,
            messages: vec![Turn {
                role: Role::User,
                content: vec![Block::Text("q".into())],
            }],
        }
    }

    #[test]
    fn body_forces_the_tool_and_caches_the_system_prompt() {
        let b = request_body(&request(true));
        assert_eq!(
            b["tool_choice"],
            json!({"type": "tool", "name": "submit_triage"})
        );
        assert_eq!(b["system"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(request_body(&request(false))["tool_choice"]["type"], "auto");
    }

    #[test]
    fn response_blocks_and_usage_are_read() {
        let r = parse_response(
            r#"{"id":"msg_1","type":"message","role":"assistant","model":"m",
            "content":[{"type":"thinking","thinking":"","signature":"s"},
                       {"type":"tool_use","id":"toolu_1","name":"submit_triage","input":{"a":1}}],
            "stop_reason":"tool_use",
            "usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":7,"cache_creation_input_tokens":3}}"#,
        );
        assert!(r.malformed.is_none());
        assert!(matches!(r.content[0], Block::Opaque(_)));
        assert!(matches!(&r.content[1], Block::ToolUse { name, .. } if name == "submit_triage"));
        assert_eq!(r.usage.cache_read_tokens, 7);
        assert_eq!(r.usage.cache_write_tokens, 3);
        assert!(parse_response("{not json").malformed.is_some());
    }

    #[test]
    fn errors_keep_the_type_and_retry_after() {
        let e = parse_error(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            None,
        );
        assert!(e.retryable());
        assert!(e.outcome().contains("529 overloaded_error"));
        let e = parse_error(429, "", parse_retry_after(Some("2")));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        let e = parse_error(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"tool_choice forcing tool use is not supported with this model"}}"#,
            None,
        );
        assert!(!e.retryable());
        assert!(e.rejects_forced_tool_choice());
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_as_an_http_date() {
        assert_eq!(parse_retry_after(None), None);
        assert_eq!(
            parse_retry_after(Some(" 1.5 ")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after(Some("86400")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_retry_after(Some("1e30")),
            Some(Duration::from_secs(3600))
        );
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let at = httpdate::parse_http_date(date).unwrap();
        assert_eq!(
            retry_after_at(date, at - Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after_at(date, at - Duration::from_secs(86_400)),
            Some(Duration::from_secs(3600)),
            "a far date is capped like a long delay"
        );
        assert_eq!(
            parse_retry_after(Some(date)),
            Some(Duration::ZERO),
            "a date already past: retry now"
        );
    }

    #[test]
    fn a_garbled_retry_after_is_ignored() {
        for garbage in [
            "",
            "soon",
            "-1",
            "NaN",
            "inf",
            "Sun, 06 Nov 1994 25:61:00 GMT",
        ] {
            assert_eq!(parse_retry_after(Some(garbage)), None, "{garbage:?}");
        }
    }
}

//! One model call, independent of the provider: a fixed system prompt, one tool whose input
//! schema is the answer's type, and a short conversation (the question, and on a repair the
//! model's answer and the validation error).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

/// The answer's tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema generated from the answer's Rust type.
    pub input_schema: Value,
}

/// A content block of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        is_error: bool,
    },
    /// A provider block passed back verbatim (Anthropic `thinking`), never read.
    Opaque(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub content: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    pub model: String,
    pub system: String,
    pub tool: ToolSpec,
    /// Force the tool (`{"type":"tool"}`), or leave the choice `auto`.
    pub force_tool: bool,
    pub max_tokens: u32,
    pub messages: Vec<Turn>,
}

impl ModelRequest {
    /// ~4 characters a token over everything sent: system prompt, tool, conversation.
    pub fn estimated_tokens(&self) -> usize {
        let mut chars = self.system.len()
            + self.tool.name.len()
            + self.tool.description.len()
            + self.tool.input_schema.to_string().len()
            + 200;
        for t in &self.messages {
            for b in &t.content {
                chars += match b {
                    Block::Text(s) => s.len(),
                    Block::ToolUse { id, name, input } => {
                        id.len() + name.len() + input.to_string().len()
                    }
                    Block::ToolResult {
                        tool_use_id,
                        content,
                        ..
                    } => tool_use_id.len() + content.len(),
                    Block::Opaque(v) => v.to_string().len(),
                } + 40;
            }
        }
        estimate_tokens_of_len(chars)
    }
}

/// ~4 characters a token, rounded up.
pub fn estimate_tokens(text: &str) -> usize {
    estimate_tokens_of_len(text.len())
}

fn estimate_tokens_of_len(chars: usize) -> usize {
    chars.div_ceil(4)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uncached input.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelResponse {
    /// The assistant's content, in order.
    pub content: Vec<Block>,
    pub stop_reason: String,
    pub usage: Usage,
    /// Set when the provider answered 200 but the body could not be read as a response.
    pub malformed: Option<String>,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("connection failed: {0}")]
    Transport(String),
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("{status} {kind}: {message}")]
    Http {
        status: u16,
        /// `overloaded_error`, `rate_limit_error`, `ThrottlingException`, …
        kind: String,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl CallError {
    /// Worth another try: the network, a timeout, throttling, overload, server errors.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Transport(_) | CallError::Timeout(_) => true,
            CallError::Http { status, .. } => matches!(status, 408 | 409 | 429) || *status >= 500,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The model refuses a forced tool choice (Claude 5 and later, or thinking enabled).
    pub fn rejects_forced_tool_choice(&self) -> bool {
        match self {
            CallError::Http {
                status: 400,
                message,
                ..
            } => {
                let m = message.to_ascii_lowercase();
                m.contains("tool_choice") || m.contains("tool choice") || m.contains("toolchoice")
            }
            _ => false,
        }
    }

    /// Short, for the call record.
    pub fn outcome(&self) -> String {
        let s = match self {
            CallError::Transport(e) => format!("error: connection failed ({})", first_line(e, 120)),
            CallError::Timeout(d) => format!("error: timeout after {} ms", d.as_millis()),
            CallError::Http {
                status,
                kind,
                message,
                ..
            } => format!("error: {status} {kind} ({})", first_line(message, 120)),
        };
        s
    }
}

fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    iras_core::analyst::text::clean(line, max)
}

/// A provider: sends one request, no retries (the analyst retries, so that the budget, the
/// circuit breaker and the record see every attempt).
#[async_trait]
pub trait ModelClient: Send + Sync {
    fn provider(&self) -> &'static str;
    async fn send(&self, request: &ModelRequest) -> Result<ModelResponse, CallError>;
}

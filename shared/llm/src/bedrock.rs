//! Amazon Bedrock's Converse API through the AWS SDK: IAM credentials from the default chain,
//! no API key to manage on AWS.

use async_trait::async_trait;
use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::types::{
    AutoToolChoice, CachePointBlock, CachePointType, ContentBlock, ConversationRole,
    ConverseOutput as Output, InferenceConfiguration, Message, SpecificToolChoice,
    SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolResultStatus, ToolSpecification, ToolUseBlock,
};
use aws_sdk_bedrockruntime::Client;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::{Document, Number};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Mutex;
use tokio::sync::OnceCell;

use crate::client::{Block, CallError, ModelClient, ModelRequest, ModelResponse, Role, Usage};

/// Where the client comes from: built already (tests, callers with their own config), or
/// loaded from the default chain on first use (the environment, in a Lambda).
enum Source {
    Ready(Client),
    FromEnv {
        region: Option<String>,
        endpoint_url: Option<String>,
    },
}

pub struct BedrockClient {
    source: Source,
    client: OnceCell<Client>,
    /// Models that refused a cache point: asked without one from then on.
    no_cache: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for BedrockClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BedrockClient")
    }
}

impl BedrockClient {
    /// The SDK's own retries are the caller's business; this client is used with them off.
    pub fn from_client(client: Client) -> Self {
        BedrockClient {
            source: Source::Ready(client),
            client: OnceCell::new(),
            no_cache: Mutex::new(HashSet::new()),
        }
    }

    /// Credentials, region and endpoint from the default chain, loaded on the first call.
    pub fn from_env(region: Option<String>, endpoint_url: Option<String>) -> Self {
        BedrockClient {
            source: Source::FromEnv {
                region,
                endpoint_url,
            },
            client: OnceCell::new(),
            no_cache: Mutex::new(HashSet::new()),
        }
    }

    /// A client for a local endpoint with fixed, fake credentials (the SDK signs anyway).
    pub fn for_endpoint(endpoint_url: &str, region: &str) -> Self {
        let conf = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint_url)
            .credentials_provider(Credentials::new(
                "AKIDIRASTEST",
                "iras-test-secret",
                None,
                None,
                "iras-test",
            ))
            .retry_config(RetryConfig::disabled())
            .build();
        BedrockClient::from_client(Client::from_conf(conf))
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                match &self.source {
                    Source::Ready(c) => c.clone(),
                    Source::FromEnv {
                        region,
                        endpoint_url,
                    } => {
                        let mut loader = aws_config::defaults(BehaviorVersion::latest());
                        if let Some(r) = region {
                            loader = loader.region(Region::new(r.clone()));
                        }
                        let sdk = loader.load().await;
                        let mut conf = aws_sdk_bedrockruntime::config::Builder::from(&sdk)
                            .retry_config(RetryConfig::disabled());
                        if let Some(url) = endpoint_url {
                            conf = conf.endpoint_url(url);
                        }
                        Client::from_conf(conf.build())
                    }
                }
            })
            .await
    }
}

/// serde_json → Smithy document (tool schemas and tool inputs).
pub fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Document::Number(Number::PosInt(u))
            } else if let Some(i) = n.as_i64() {
                Document::Number(Number::NegInt(i))
            } else {
                Document::Number(Number::Float(n.as_f64().unwrap_or(0.0)))
            }
        }
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => {
            Document::Object(o.iter().map(|(k, v)| (k.clone(), to_document(v))).collect())
        }
    }
}

/// Smithy document → serde_json.
pub fn to_json(d: &Document) -> Value {
    match d {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Document::String(s) => Value::String(s.clone()),
        Document::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Document::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

fn build_err(e: impl std::fmt::Display) -> CallError {
    CallError::Http {
        status: 400,
        kind: "request_build_error".into(),
        message: e.to_string(),
        retry_after: None,
    }
}

fn content_block(b: &Block) -> Result<Option<ContentBlock>, CallError> {
    Ok(match b {
        Block::Text(t) => Some(ContentBlock::Text(t.clone())),
        Block::ToolUse { id, name, input } => Some(ContentBlock::ToolUse(
            ToolUseBlock::builder()
                .tool_use_id(id)
                .name(name)
                .input(to_document(input))
                .build()
                .map_err(build_err)?,
        )),
        Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => Some(ContentBlock::ToolResult(
            ToolResultBlock::builder()
                .tool_use_id(tool_use_id)
                .content(ToolResultContentBlock::Text(content.clone()))
                .status(if *is_error {
                    ToolResultStatus::Error
                } else {
                    ToolResultStatus::Success
                })
                .build()
                .map_err(build_err)?,
        )),
        // Provider blocks of another API are not replayed here.
        Block::Opaque(_) => None,
    })
}

fn read_output(out: aws_sdk_bedrockruntime::operation::converse::ConverseOutput) -> ModelResponse {
    let content = match out.output {
        Some(Output::Message(m)) => m
            .content
            .into_iter()
            .map(|c| match c {
                ContentBlock::Text(t) => Block::Text(t),
                ContentBlock::ToolUse(t) => Block::ToolUse {
                    id: t.tool_use_id,
                    name: t.name,
                    input: to_json(&t.input),
                },
                other => Block::Opaque(Value::String(format!("{other:?}"))),
            })
            .collect(),
        _ => vec![],
    };
    let usage = out.usage.map(|u| Usage {
        input_tokens: u.input_tokens.max(0) as u64,
        output_tokens: u.output_tokens.max(0) as u64,
        cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0).max(0) as u64,
        cache_write_tokens: u.cache_write_input_tokens.unwrap_or(0).max(0) as u64,
    });
    ModelResponse {
        content,
        stop_reason: out.stop_reason.as_str().to_string(),
        usage: usage.unwrap_or_default(),
        malformed: None,
    }
}

fn map_error(e: SdkError<ConverseError, HttpResponse>) -> Result<ModelResponse, CallError> {
    match &e {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let retry_after =
                crate::anthropic::parse_retry_after(ctx.raw().headers().get("retry-after"));
            let err = ctx.err();
            Err(CallError::Http {
                status,
                kind: err.code().unwrap_or("UnknownError").to_string(),
                message: err.message().unwrap_or_default().to_string(),
                retry_after,
            })
        }
        // A 200 whose body the SDK could not read: the model answered, but not usably.
        SdkError::ResponseError(ctx) if ctx.raw().status().is_success() => Ok(ModelResponse {
            content: vec![],
            stop_reason: String::new(),
            usage: Usage::default(),
            malformed: Some(format!("the response could not be read: {e}")),
        }),
        SdkError::TimeoutError(_) => Err(CallError::Transport(format!("SDK timeout: {e}"))),
        _ => Err(CallError::Transport(
            aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
        )),
    }
}

#[async_trait]
impl ModelClient for BedrockClient {
    fn provider(&self) -> &'static str {
        "bedrock"
    }

    async fn send(&self, req: &ModelRequest) -> Result<ModelResponse, CallError> {
        let cache = supports_cache_point(&req.model)
            && !self
                .no_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&req.model);
        match self.converse(req, cache).await {
            // Prompt caching is per model and Region: without it the call still works.
            Err(CallError::Http {
                status: 400,
                message,
                ..
            }) if cache && message.to_ascii_lowercase().contains("cach") => {
                self.no_cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(req.model.clone());
                self.converse(req, false).await
            }
            other => other,
        }
    }
}

/// Bedrock prompt caching (a `cachePoint` block) is offered for Claude 3.5 Haiku, 3.7 Sonnet
/// and the Claude 4 generation onwards, and for Amazon Nova; other models may refuse it.
pub fn supports_cache_point(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    if m.contains("nova") || m.contains("claude-3-7") || m.contains("claude-3-5-haiku") {
        return true;
    }
    let Some(at) = m.find("claude-") else {
        return false;
    };
    m[at + "claude-".len()..]
        .split(['-', '.', ':'])
        .find(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
        .and_then(|t| t.parse::<u32>().ok())
        .is_some_and(|major| major >= 4)
}

impl BedrockClient {
    async fn converse(&self, req: &ModelRequest, cache: bool) -> Result<ModelResponse, CallError> {
        let spec = ToolSpecification::builder()
            .name(req.tool.name)
            .description(req.tool.description)
            .input_schema(ToolInputSchema::Json(to_document(&req.tool.input_schema)))
            .build()
            .map_err(build_err)?;
        let choice = if req.force_tool {
            ToolChoice::Tool(
                SpecificToolChoice::builder()
                    .name(req.tool.name)
                    .build()
                    .map_err(build_err)?,
            )
        } else {
            ToolChoice::Auto(AutoToolChoice::builder().build())
        };
        let tools = ToolConfiguration::builder()
            .tools(Tool::ToolSpec(spec))
            .tool_choice(choice)
            .build()
            .map_err(build_err)?;
        let mut call = self
            .client()
            .await
            .converse()
            .model_id(&req.model)
            .system(SystemContentBlock::Text(req.system.clone()))
            .tool_config(tools)
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(req.max_tokens.min(i32::MAX as u32) as i32)
                    .build(),
            );
        if cache {
            // The fixed system prompt (and the tool before it) is the cached prefix.
            call = call.system(SystemContentBlock::CachePoint(
                CachePointBlock::builder()
                    .r#type(CachePointType::Default)
                    .build()
                    .map_err(build_err)?,
            ));
        }
        for turn in &req.messages {
            let mut m = Message::builder().role(match turn.role {
                Role::User => ConversationRole::User,
                Role::Assistant => ConversationRole::Assistant,
            });
            for b in &turn.content {
                if let Some(c) = content_block(b)? {
                    m = m.content(c);
                }
            }
            call = call.messages(m.build().map_err(build_err)?);
        }
        match call.send().await {
            Ok(out) => Ok(read_output(out)),
            Err(e) => map_error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cache_points_go_only_to_models_that_take_them() {
        assert!(supports_cache_point(
            "global.anthropic.claude-haiku-4-5-20251001-v1:0"
        ));
        assert!(supports_cache_point("global.anthropic.claude-sonnet-4-6"));
        assert!(supports_cache_point(
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
        ));
        assert!(supports_cache_point("us.amazon.nova-pro-v1:0"));
        assert!(!supports_cache_point(
            "anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(!supports_cache_point("meta.llama3-70b-instruct-v1:0"));
    }

    #[test]
    fn documents_round_trip() {
        let v = json!({"a": [1, -2, 0.5, "x", null, true], "b": {"c": {}}});
        assert_eq!(to_json(&to_document(&v)), v);
    }
}

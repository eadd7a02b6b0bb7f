//! `LlmAnalyst`: the `Analyst` port over a model, with the offline analyst behind it.
//!
//! Per stage: build a bounded, fenced prompt from the offline analysis; force a tool call whose
//! schema is the answer's type; validate the answer against the evidence; on invalid output
//! send the validation error back once; on anything else (provider down, budget spent,
//! circuit open, still invalid) answer with the offline analyst and say so in `analyst`.
//! Every request is recorded with `iras_core::usage::record`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use iras_core::analyst;
use iras_core::config::ConfigError;
use iras_core::domain::*;
use iras_core::ports::{Analyst, AnalystError, PostMortemFacts, PostMortemNarrative};
use iras_core::usage::{self, LlmCall};

use crate::answers::{parse_input, Answer, PlanAnswer, PostMortemAnswer, RcaAnswer, TriageAnswer};
use crate::anthropic::AnthropicClient;
use crate::bedrock::BedrockClient;
use crate::client::{
    Block, CallError, ModelClient, ModelRequest, ModelResponse, Role, Turn, Usage,
};
use crate::config::{accepts_forced_tool_choice, LlmSettings, ToolChoiceMode};
use crate::pricing;
use crate::prompt::{self, Question, Stage};
use crate::resilience::{backoff, CircuitBreaker, CircuitStatus};

/// The model-backed analyst. Cheap to share: build once per process.
pub struct LlmAnalyst {
    client: Arc<dyn ModelClient>,
    settings: LlmSettings,
    breaker: CircuitBreaker,
    /// Models that answered a forced tool choice with a 400: asked with `auto` from then on.
    auto_models: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for LlmAnalyst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmAnalyst")
            .field("provider", &self.client.provider())
            .field("settings", &self.settings)
            .finish()
    }
}

/// Why the model's answer was not used.
#[derive(Debug, Clone, PartialEq)]
enum Failure {
    Unavailable(String),
    Invalid(String),
    OverBudget(String),
}

impl Failure {
    fn reason(&self) -> String {
        match self {
            Failure::Unavailable(e) => format!("provider unavailable: {e}"),
            Failure::Invalid(e) => format!("invalid model output: {e}"),
            Failure::OverBudget(e) => format!("prompt over the token budget: {e}"),
        }
    }
}

/// The `analyst` of an answer the offline analyst gave instead of the model.
pub fn fallback_label(reason: &str) -> String {
    format!(
        "offline (fallback: {})",
        iras_core::analyst::text::clean(reason, 300)
    )
}

impl LlmAnalyst {
    pub fn with_client(client: Arc<dyn ModelClient>, settings: LlmSettings) -> Self {
        LlmAnalyst {
            breaker: CircuitBreaker::new(settings.circuit.clone()),
            client,
            settings,
            auto_models: Mutex::new(HashSet::new()),
        }
    }

    /// The Messages API at `base_url` (`https://api.anthropic.com`, or a local fake).
    pub fn anthropic(
        base_url: &str,
        api_key: &str,
        settings: LlmSettings,
    ) -> Result<Self, ConfigError> {
        let client = AnthropicClient::new(base_url, api_key).map_err(|problem| ConfigError {
            name: "ANTHROPIC_BASE_URL".into(),
            problem,
        })?;
        Ok(LlmAnalyst::with_client(Arc::new(client), settings))
    }

    pub fn bedrock(client: BedrockClient, settings: LlmSettings) -> Self {
        LlmAnalyst::with_client(Arc::new(client), settings)
    }

    /// Bedrock at a local endpoint with fake credentials (tests).
    pub fn bedrock_at(endpoint_url: &str, settings: LlmSettings) -> Self {
        LlmAnalyst::bedrock(
            BedrockClient::for_endpoint(endpoint_url, "us-east-1"),
            settings,
        )
    }

    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    pub fn circuit(&self) -> CircuitStatus {
        self.breaker.status()
    }

    fn label(&self, model: &str) -> String {
        format!("{}:{model}", self.client.provider())
    }

    fn force_tool(&self, model: &str) -> bool {
        match self.settings.tool_choice {
            ToolChoiceMode::Forced => true,
            ToolChoiceMode::Auto => false,
            ToolChoiceMode::Detect => {
                accepts_forced_tool_choice(model)
                    && !self
                        .auto_models
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(model)
            }
        }
    }

    fn record(&self, stage: Stage, model: &str, usage: Usage, latency: Duration, outcome: String) {
        usage::record(LlmCall {
            stage: stage.as_str().into(),
            provider: self.client.provider().into(),
            model: model.into(),
            input_tokens: usage.input_tokens + usage.cache_write_tokens,
            output_tokens: usage.output_tokens,
            cache_read_tokens: usage.cache_read_tokens,
            latency_ms: latency.as_millis() as u64,
            outcome,
            estimated_cost_usd: pricing::estimate_usd(
                model,
                usage.input_tokens,
                usage.cache_write_tokens,
                usage.cache_read_tokens,
                usage.output_tokens,
            ),
            at: chrono::Utc::now(),
        });
    }

    /// One request, retried on transient failures within the stage's deadline. Every attempt
    /// is recorded; the breaker sees every failure.
    async fn send(
        &self,
        stage: Stage,
        req: &mut ModelRequest,
        deadline: Instant,
    ) -> Result<(ModelResponse, Duration), Failure> {
        let mut retry = 0u32;
        loop {
            if let Some(left) = self.breaker.open_for() {
                self.record(
                    stage,
                    &req.model,
                    Usage::default(),
                    Duration::ZERO,
                    "circuit_open".into(),
                );
                return Err(Failure::Unavailable(format!(
                    "circuit open after repeated provider failures (retrying in {} s)",
                    left.as_secs().max(1)
                )));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Failure::Unavailable(
                    "the stage's time budget is spent".into(),
                ));
            }
            let limit = self.settings.request_timeout.min(remaining);
            let started = Instant::now();
            let result = match tokio::time::timeout(limit, self.client.send(req)).await {
                Ok(r) => r,
                Err(_) => Err(CallError::Timeout(limit)),
            };
            let latency = started.elapsed();
            let error = match result {
                Ok(resp) => {
                    self.breaker.success();
                    return Ok((resp, latency));
                }
                Err(e) => e,
            };
            if req.force_tool && error.rejects_forced_tool_choice() {
                // Not an outage: this model will not be forced. Ask it with `auto` instead.
                self.record(
                    stage,
                    &req.model,
                    Usage::default(),
                    latency,
                    format!("{}; retrying with tool_choice auto", error.outcome()),
                );
                self.auto_models
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(req.model.clone());
                req.force_tool = false;
                if let Some(first) = req.messages.first_mut() {
                    first
                        .content
                        .push(Block::Text(auto_instruction(req.tool.name)));
                }
                continue;
            }
            let opened = self.breaker.failure();
            let mut outcome = error.outcome();
            if opened {
                outcome.push_str("; circuit opened");
            }
            self.record(stage, &req.model, Usage::default(), latency, outcome);
            tracing::warn!(stage = stage.as_str(), model = %req.model, error = %error, retry, "model call failed");
            if !error.retryable() || retry >= self.settings.retry.max_retries {
                return Err(Failure::Unavailable(error.to_string()));
            }
            let wait = match error.retry_after() {
                Some(ra) if ra > self.settings.retry.max_retry_after => {
                    return Err(Failure::Unavailable(format!(
                        "{error}; retry-after {} s is longer than this stage waits",
                        ra.as_secs()
                    )))
                }
                Some(ra) => ra,
                None => backoff(&self.settings.retry, retry),
            };
            if wait >= deadline.saturating_duration_since(Instant::now()) {
                return Err(Failure::Unavailable(format!(
                    "{error}; no time left in the stage's budget to retry"
                )));
            }
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    /// Asks for an `A`, validates it with `validate`, and repairs once.
    async fn ask<A: Answer, O>(
        &self,
        stage: Stage,
        model: &str,
        question: &Question,
        deadline: Instant,
        validate: impl Fn(A) -> Result<O, String>,
    ) -> Result<O, Failure> {
        let tool = A::tool();
        let system = stage.system_prompt();
        let mut req = ModelRequest {
            model: model.to_string(),
            system,
            tool,
            force_tool: self.force_tool(model),
            max_tokens: self.settings.max_output_tokens,
            messages: vec![],
        };
        // The budget is checked on the request as sent: system prompt and schema included.
        let auto_note = (!req.force_tool).then(|| auto_instruction(A::TOOL));
        let fixed = req.estimated_tokens()
            + auto_note
                .as_deref()
                .map_or(0, crate::client::estimate_tokens);
        let fitted = question
            .fit(self.settings.max_input_tokens, fixed)
            .map_err(Failure::OverBudget)?;
        if !fitted.dropped.is_empty() {
            tracing::info!(stage = stage.as_str(), dropped = ?fitted.dropped, "evidence trimmed to the token budget");
        }
        let mut content = vec![Block::Text(fitted.text)];
        content.extend(auto_note.map(Block::Text));
        req.messages.push(Turn {
            role: Role::User,
            content,
        });
        for round in 0..2 {
            let (resp, latency) = self.send(stage, &mut req, deadline).await?;
            let checked = read_answer::<A>(&resp, A::TOOL).and_then(&validate);
            match checked {
                Ok(out) => {
                    let outcome = if round == 0 { "ok" } else { "repaired" };
                    self.record(stage, model, resp.usage, latency, outcome.into());
                    return Ok(out);
                }
                Err(why) => {
                    self.record(
                        stage,
                        model,
                        resp.usage,
                        latency,
                        format!(
                            "invalid_output: {}",
                            iras_core::analyst::text::clean(&why, 200)
                        ),
                    );
                    tracing::warn!(stage = stage.as_str(), model, round, error = %why, "invalid model output");
                    if round == 1 {
                        return Err(Failure::Invalid(why));
                    }
                    repair_turns(&mut req, &resp, A::TOOL, &why);
                }
            }
        }
        unreachable!("the loop returns on its second round")
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.settings.stage_timeout
    }
}

/// Said when the tool choice cannot be forced.
fn auto_instruction(tool: &str) -> String {
    format!("Answer only by calling the tool `{tool}`, once; do not answer in text.")
}

/// The answer from the response: the first call to `tool`.
fn read_answer<A: Answer>(resp: &ModelResponse, tool: &str) -> Result<A, String> {
    if let Some(m) = &resp.malformed {
        return Err(format!("malformed response: {m}"));
    }
    let call = resp.content.iter().find_map(|b| match b {
        Block::ToolUse { name, input, .. } if name == tool => Some(input),
        _ => None,
    });
    match call {
        Some(input) => parse_input::<A>(input),
        None => {
            let other = resp.content.iter().find_map(|b| match b {
                Block::ToolUse { name, .. } => Some(name.clone()),
                _ => None,
            });
            let mut why = match other {
                Some(n) => format!(
                    "called `{}` instead of `{tool}`",
                    iras_core::analyst::text::clean(&n, 60)
                ),
                None => format!("no call to `{tool}`"),
            };
            if resp.stop_reason == "max_tokens" {
                why.push_str(" (the answer was cut off at max_tokens: be briefer)");
            } else if resp.stop_reason == "refusal" {
                why.push_str(" (the model refused)");
            }
            Err(why)
        }
    }
}

/// The repair: the model's own answer, then the validation error as the tool's result.
fn repair_turns(req: &mut ModelRequest, resp: &ModelResponse, tool: &str, why: &str) {
    let message = format!(
        "Your answer was rejected: {why}. Call `{tool}` again, once, with corrected input that matches the schema and names only what the evidence contains."
    );
    let tool_uses: Vec<String> = resp
        .content
        .iter()
        .filter_map(|b| match b {
            Block::ToolUse { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    if resp.content.is_empty() {
        // Nothing to answer to: add the correction to the question itself.
        if let Some(last) = req.messages.last_mut() {
            last.content.push(Block::Text(message));
        }
        return;
    }
    req.messages.push(Turn {
        role: Role::Assistant,
        content: resp.content.clone(),
    });
    let content = if tool_uses.is_empty() {
        vec![Block::Text(message)]
    } else {
        // Every tool call needs its result; the first carries the error.
        tool_uses
            .iter()
            .enumerate()
            .map(|(i, id)| Block::ToolResult {
                tool_use_id: id.clone(),
                content: if i == 0 {
                    message.clone()
                } else {
                    "Ignored: call the tool only once.".into()
                },
                is_error: true,
            })
            .collect()
    };
    req.messages.push(Turn {
        role: Role::User,
        content,
    });
}

#[async_trait]
impl Analyst for LlmAnalyst {
    fn name(&self) -> String {
        self.label(&self.settings.strong_model)
    }

    async fn triage(&self, alert: &Alert) -> Result<TriageResult, AnalystError> {
        let rules = analyst::triage(alert);
        let model = self.settings.fast_model.clone();
        let label = self.label(&model);
        let question = prompt::triage_question(alert, &rules);
        let answer = self
            .ask::<TriageAnswer, _>(Stage::Triage, &model, &question, self.deadline(), |a| {
                a.validate(alert, &label)
            })
            .await;
        Ok(match answer {
            Ok(mut t) => {
                // The rules are a floor: evidence text cannot talk the severity down.
                if t.severity > rules.severity {
                    t.reasoning.push_str(&format!(
                        " [severity raised from {} to {} by the severity rules]",
                        t.severity, rules.severity
                    ));
                    t.severity = rules.severity;
                }
                t
            }
            Err(f) => TriageResult {
                analyst: fallback_label(&f.reason()),
                ..rules
            },
        })
    }

    async fn rca(
        &self,
        alert: &Alert,
        triage: &TriageResult,
        context: &ContextBundle,
    ) -> Result<RootCauseHypothesis, AnalystError> {
        let offline = analyst::rca(alert, triage, context);
        let model = self.settings.strong_model.clone();
        let label = self.label(&model);
        let question = prompt::rca_question(alert, triage, context, &offline);
        let answer = self
            .ask::<RcaAnswer, _>(Stage::Rca, &model, &question, self.deadline(), |a| {
                a.validate(alert, context, &label)
            })
            .await;
        Ok(match answer {
            Ok(h) => h,
            Err(f) => RootCauseHypothesis {
                analyst: fallback_label(&f.reason()),
                ..offline
            },
        })
    }

    async fn plan(
        &self,
        alert: &Alert,
        hypothesis: &RootCauseHypothesis,
        context: &ContextBundle,
    ) -> Result<RemediationPlan, AnalystError> {
        let offline = analyst::plan(alert, hypothesis, context);
        let model = self.settings.strong_model.clone();
        let label = self.label(&model);
        let question =
            prompt::plan_question(alert, hypothesis, context, &offline, &self.settings.policy);
        let answer = self
            .ask::<PlanAnswer, _>(Stage::Plan, &model, &question, self.deadline(), |a| {
                a.validate(&label)
            })
            .await;
        Ok(match answer {
            Ok(p) => p,
            Err(f) => RemediationPlan {
                analyst: fallback_label(&f.reason()),
                ..offline
            },
        })
    }

    /// On failure this returns the error, and the stage writes the offline narrative under
    /// the name `offline`: the post-mortem's `analyst` must not claim a model wrote it.
    async fn postmortem(
        &self,
        facts: &PostMortemFacts<'_>,
    ) -> Result<PostMortemNarrative, AnalystError> {
        let draft = analyst::postmortem(facts);
        let model = self.settings.strong_model.clone();
        let question = prompt::postmortem_question(facts, &draft);
        self.ask::<PostMortemAnswer, _>(
            Stage::PostMortem,
            &model,
            &question,
            self.deadline(),
            |a| a.validate(),
        )
        .await
        .map_err(|f| match f {
            Failure::Invalid(e) => AnalystError::InvalidOutput(e),
            other => AnalystError::Unavailable(other.reason()),
        })
    }
}

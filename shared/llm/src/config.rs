//! What an operator sets for the LLM analyst, read once per process from the environment.

use std::collections::HashMap;
use std::time::Duration;

use iras_core::config::ConfigError;
use iras_core::policy::RemediationPolicy;

/// Which API the analyst talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Anthropic,
    Bedrock,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::Bedrock => "bedrock",
        }
    }
}

/// Anthropic Messages API defaults: the newest models that accept a forced tool choice
/// (Claude Sonnet 5.5 and later answer a forced `tool_choice` with a 400; see `ToolChoiceMode`).
pub const ANTHROPIC_FAST_MODEL: &str = "claude-haiku-4-5";
pub const ANTHROPIC_STRONG_MODEL: &str = "claude-sonnet-4-6";
/// Bedrock Converse defaults: global cross-Region inference profiles (Claude 4.x models are
/// served on demand only through an inference profile).
pub const BEDROCK_FAST_MODEL: &str = "global.anthropic.claude-haiku-4-5-20251001-v1:0";
pub const BEDROCK_STRONG_MODEL: &str = "global.anthropic.claude-sonnet-4-6";
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

/// How the typed answer is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChoiceMode {
    /// Forced where the model accepts it (`{"type":"tool","name":…}`), otherwise `auto` with the
    /// instruction to call the tool; a model that refuses a forced choice with a 400 is
    /// switched to `auto` for the rest of the process.
    Detect,
    /// Always `{"type":"tool","name":…}` / Bedrock `toolChoice.tool`.
    Forced,
    /// Always `auto`: the model is told to call the tool, and validation catches it if not.
    Auto,
}

/// Retries of one model call: exponential backoff from `base_delay`, capped at `max_delay`;
/// a `retry-after` header wins when it fits in the stage's remaining time.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `retry-after` longer than this is not waited for: the stage falls back instead.
    pub max_retry_after: Duration,
}

/// After `failures` consecutive failed requests the provider is skipped for `cooldown`.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitSettings {
    pub failures: u32,
    pub cooldown: Duration,
}

/// Every knob of the analyst. `LlmSettings::default()` is what an unset environment gives.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSettings {
    /// Triage.
    pub fast_model: String,
    /// Rca, plan and post-mortem.
    pub strong_model: String,
    /// Per stage, estimated at ~4 characters a token, enforced before sending.
    pub max_input_tokens: usize,
    pub max_output_tokens: u32,
    /// One HTTP request.
    pub request_timeout: Duration,
    /// Everything one stage spends on the model (retries and the repair included); the state
    /// machine's Task timeouts are 120–300 s, so this stays well inside them.
    pub stage_timeout: Duration,
    pub retry: RetryPolicy,
    pub circuit: CircuitSettings,
    pub tool_choice: ToolChoiceMode,
    /// The operator's policy, shown to the model so it proposes actions that can run.
    pub policy: RemediationPolicy,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            fast_model: ANTHROPIC_FAST_MODEL.into(),
            strong_model: ANTHROPIC_STRONG_MODEL.into(),
            max_input_tokens: 12_000,
            max_output_tokens: 2048,
            request_timeout: Duration::from_secs(30),
            stage_timeout: Duration::from_secs(60),
            retry: RetryPolicy {
                max_retries: 2,
                base_delay: Duration::from_millis(1000),
                max_delay: Duration::from_secs(8),
                max_retry_after: Duration::from_secs(20),
            },
            circuit: CircuitSettings {
                failures: 5,
                cooldown: Duration::from_secs(60),
            },
            tool_choice: ToolChoiceMode::Detect,
            policy: RemediationPolicy::default(),
        }
    }
}

impl LlmSettings {
    pub fn for_provider(provider: Provider) -> Self {
        let mut s = LlmSettings::default();
        if provider == Provider::Bedrock {
            s.fast_model = BEDROCK_FAST_MODEL.into();
            s.strong_model = BEDROCK_STRONG_MODEL.into();
        }
        s
    }

    /// Fast enough for tests: millisecond backoff, short timeouts, a short cool-down.
    pub fn for_tests() -> Self {
        LlmSettings {
            request_timeout: Duration::from_secs(5),
            stage_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_retries: 2,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                max_retry_after: Duration::from_secs(3),
            },
            circuit: CircuitSettings {
                failures: 5,
                cooldown: Duration::from_secs(30),
            },
            ..LlmSettings::default()
        }
    }

    /// Reads the documented variables over `for_provider`'s defaults; bad values name the
    /// variable.
    pub fn from_vars(
        provider: Provider,
        vars: &HashMap<String, String>,
    ) -> Result<LlmSettings, ConfigError> {
        let mut s = LlmSettings::for_provider(provider);
        let env = iras_core::config::EnvVars(vars);
        let get = |k: &str| env.get(k);
        if let Some(v) = get("LLM_MODEL_FAST") {
            s.fast_model = v.to_string();
        }
        if let Some(v) = get("LLM_MODEL_STRONG") {
            s.strong_model = v.to_string();
        }
        if let Some(v) = get("LLM_MAX_INPUT_TOKENS") {
            s.max_input_tokens = number("LLM_MAX_INPUT_TOKENS", v, 1000, 1_000_000)? as usize;
        }
        if let Some(v) = get("LLM_MAX_OUTPUT_TOKENS") {
            s.max_output_tokens = number("LLM_MAX_OUTPUT_TOKENS", v, 256, 64_000)? as u32;
        }
        if let Some(v) = get("LLM_REQUEST_TIMEOUT_SECONDS") {
            s.request_timeout =
                Duration::from_secs(number("LLM_REQUEST_TIMEOUT_SECONDS", v, 1, 600)?);
        }
        if let Some(v) = get("LLM_STAGE_TIMEOUT_SECONDS") {
            s.stage_timeout = Duration::from_secs(number("LLM_STAGE_TIMEOUT_SECONDS", v, 1, 900)?);
        }
        if let Some(v) = get("LLM_MAX_RETRIES") {
            s.retry.max_retries = number("LLM_MAX_RETRIES", v, 0, 10)? as u32;
        }
        if let Some(v) = get("LLM_CIRCUIT_FAILURES") {
            s.circuit.failures = number("LLM_CIRCUIT_FAILURES", v, 1, 1000)? as u32;
        }
        if let Some(v) = get("LLM_CIRCUIT_COOLDOWN_SECONDS") {
            s.circuit.cooldown =
                Duration::from_secs(number("LLM_CIRCUIT_COOLDOWN_SECONDS", v, 1, 86_400)?);
        }
        if let Some(v) = get("LLM_TOOL_CHOICE") {
            s.tool_choice = match v.to_ascii_lowercase().as_str() {
                "detect" => ToolChoiceMode::Detect,
                "forced" | "tool" => ToolChoiceMode::Forced,
                "auto" => ToolChoiceMode::Auto,
                other => {
                    return Err(ConfigError {
                        name: "LLM_TOOL_CHOICE".into(),
                        problem: format!("`{other}` is not one of detect, forced, auto"),
                    })
                }
            };
        }
        if s.stage_timeout < s.request_timeout {
            return Err(ConfigError {
                name: "LLM_STAGE_TIMEOUT_SECONDS".into(),
                problem: format!(
                    "{} s is shorter than LLM_REQUEST_TIMEOUT_SECONDS ({} s)",
                    s.stage_timeout.as_secs(),
                    s.request_timeout.as_secs()
                ),
            });
        }
        if let Some(v) = get("REMEDIATION_POLICY") {
            s.policy = RemediationPolicy::load(v).map_err(|e| ConfigError {
                name: "REMEDIATION_POLICY".into(),
                problem: e,
            })?;
        }
        Ok(s)
    }
}

fn number(name: &str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let n: u64 = v.parse().map_err(|_| ConfigError {
        name: name.into(),
        problem: format!("`{v}` is not a whole number"),
    })?;
    if n < min || n > max {
        return Err(ConfigError {
            name: name.into(),
            problem: format!("{n} is outside {min}..={max}"),
        });
    }
    Ok(n)
}

/// Whether a model accepts `tool_choice: {"type":"tool"}`. Models that think by default
/// (Claude 5 and later, Fable, Mythos) reject a forced tool choice with a 400.
pub fn accepts_forced_tool_choice(model: &str) -> bool {
    let lower = model.to_ascii_lowercase();
    if lower.contains("fable") || lower.contains("mythos") {
        return false;
    }
    // `claude-sonnet-4-6`, `global.anthropic.claude-haiku-4-5-20251001-v1:0`,
    // `claude-3-5-sonnet-20241022`: the first all-digit token after `claude-` is the major.
    let Some(at) = lower.find("claude-") else {
        return true;
    };
    let major = lower[at + "claude-".len()..]
        .split(['-', '.', ':'])
        .find(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
        .and_then(|t| t.parse::<u32>().ok());
    match major {
        Some(m) => m < 5,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use iras_core::testing::vars;

    #[test]
    fn forced_tool_choice_is_detected_from_the_model_generation() {
        for ok in [
            "claude-haiku-4-5",
            "claude-sonnet-4-6",
            "claude-haiku-4-5-20251001",
            "claude-3-5-sonnet-20241022",
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "some-other-model",
        ] {
            assert!(accepts_forced_tool_choice(ok), "{ok}");
        }
        for no in [
            "claude-sonnet-5-5",
            "claude-haiku-5-5",
            "claude-opus-5",
            "global.anthropic.claude-sonnet-5-5",
            "claude-fable-5-1",
        ] {
            assert!(!accepts_forced_tool_choice(no), "{no}");
        }
    }

    #[test]
    fn unset_environment_gives_the_documented_defaults() {
        let s = LlmSettings::from_vars(Provider::Anthropic, &vars(&[])).unwrap();
        assert_eq!(s.fast_model, ANTHROPIC_FAST_MODEL);
        assert_eq!(s.strong_model, ANTHROPIC_STRONG_MODEL);
        assert_eq!(s.max_input_tokens, 12_000);
        assert_eq!(s.stage_timeout, Duration::from_secs(60));
        let b = LlmSettings::from_vars(Provider::Bedrock, &vars(&[])).unwrap();
        assert_eq!(b.fast_model, BEDROCK_FAST_MODEL);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("LLM_MAX_INPUT_TOKENS", "lots"),
            ("LLM_MAX_INPUT_TOKENS", "10"),
            ("LLM_TOOL_CHOICE", "maybe"),
            ("LLM_CIRCUIT_FAILURES", "0"),
            ("REMEDIATION_POLICY", "{\"rules\": 3}"),
        ] {
            let e = LlmSettings::from_vars(Provider::Anthropic, &vars(&[(k, v)])).unwrap_err();
            assert_eq!(e.name, k, "{v}");
        }
        let e = LlmSettings::from_vars(
            Provider::Anthropic,
            &vars(&[
                ("LLM_REQUEST_TIMEOUT_SECONDS", "90"),
                ("LLM_STAGE_TIMEOUT_SECONDS", "30"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.name, "LLM_STAGE_TIMEOUT_SECONDS");
    }
}

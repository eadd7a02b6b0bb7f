//! The LLM analyst of IRAS: Claude through the Anthropic Messages API or Amazon Bedrock's
//! Converse API, behind core's `Analyst` port.
//!
//! What it guarantees, whatever the model does:
//! - typed answers: each stage forces one tool call whose input schema is generated from a Rust
//!   type ([`answers`]), parsed with serde and validated against the evidence; an invalid
//!   answer gets one repair attempt, then the offline analyst answers;
//! - bounded, fenced prompts: evidence is pre-ranked by the offline analysis, trimmed to
//!   `LLM_MAX_INPUT_TOKENS` before sending, and sent inside `<untrusted_evidence>` with every
//!   `<`/`>` escaped ([`prompt`]);
//! - bounded time: per-request timeouts, retries with backoff honouring `retry-after`, a
//!   per-stage time budget and a circuit breaker, so an outage degrades to offline analysis;
//! - a record of every request (`iras_core::usage::record`) with tokens, latency, outcome and an
//!   estimated cost ([`pricing`]).
//!
//! The safety rules themselves (approval, reversibility, the remediation policy) stay in core's
//! stage code; this crate only adds floors that can make an answer more careful.

pub mod analyst;
pub mod answers;
pub mod anthropic;
pub mod bedrock;
pub mod client;
pub mod config;
pub mod pricing;
pub mod prompt;
pub mod resilience;

#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::sync::Arc;

use iras_core::analyst::OfflineAnalyst;
use iras_core::config::ConfigError;
use iras_core::ports::Analyst;

pub use analyst::{fallback_label, LlmAnalyst};
pub use bedrock::BedrockClient;
pub use config::{LlmSettings, Provider, ToolChoiceMode};

/// The analyst the environment asks for.
///
/// `LLM_PROVIDER` unset, empty or `none`: the offline analyst. `anthropic`: needs
/// `ANTHROPIC_API_KEY`; `ANTHROPIC_BASE_URL` defaults to `https://api.anthropic.com`.
/// `bedrock`: IAM credentials from the default chain, region from `AWS_REGION` /
/// `AWS_DEFAULT_REGION`, endpoint override `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`. The knobs are in
/// [`LlmSettings::from_vars`]. A bad value is an error naming the variable.
pub fn analyst_from_env(vars: &HashMap<String, String>) -> Result<Arc<dyn Analyst>, ConfigError> {
    let get = |k: &str| {
        vars.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let provider = get("LLM_PROVIDER").map(|p| p.to_ascii_lowercase());
    match provider.as_deref() {
        None | Some("none") | Some("offline") => Ok(Arc::new(OfflineAnalyst::default())),
        Some("anthropic") => {
            let key = get("ANTHROPIC_API_KEY").ok_or_else(|| ConfigError {
                name: "ANTHROPIC_API_KEY".into(),
                problem: "must be set when LLM_PROVIDER=anthropic".into(),
            })?;
            let base = get("ANTHROPIC_BASE_URL")
                .unwrap_or_else(|| config::DEFAULT_ANTHROPIC_BASE_URL.to_string());
            let settings = LlmSettings::from_vars(Provider::Anthropic, vars)?;
            Ok(Arc::new(LlmAnalyst::anthropic(&base, &key, settings)?))
        }
        Some("bedrock") => {
            let settings = LlmSettings::from_vars(Provider::Bedrock, vars)?;
            let region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION"));
            let endpoint =
                get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME").or_else(|| get("AWS_ENDPOINT_URL"));
            if let Some(url) = &endpoint {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(ConfigError {
                        name: "AWS_ENDPOINT_URL_BEDROCK_RUNTIME".into(),
                        problem: format!("`{url}` is not an http(s) URL"),
                    });
                }
            }
            Ok(Arc::new(LlmAnalyst::bedrock(
                BedrockClient::from_env(region, endpoint),
                settings,
            )))
        }
        Some(other) => Err(ConfigError {
            name: "LLM_PROVIDER".into(),
            problem: format!("`{other}` is not one of anthropic, bedrock, none"),
        }),
    }
}

/// [`analyst_from_env`] over the process environment.
pub fn analyst_from_process_env() -> Result<Arc<dyn Analyst>, ConfigError> {
    analyst_from_env(&std::env::vars().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use iras_core::testing::vars;

    fn config_error(v: &HashMap<String, String>) -> ConfigError {
        match analyst_from_env(v) {
            Ok(a) => panic!("expected a configuration error, got {}", a.name()),
            Err(e) => e,
        }
    }

    #[test]
    fn no_provider_means_the_offline_analyst() {
        for v in [
            vars(&[]),
            vars(&[("LLM_PROVIDER", "")]),
            vars(&[("LLM_PROVIDER", "none")]),
        ] {
            assert_eq!(analyst_from_env(&v).unwrap().name(), "offline");
        }
    }

    #[test]
    fn anthropic_without_a_key_names_the_variable() {
        let e = config_error(&vars(&[("LLM_PROVIDER", "anthropic")]));
        assert_eq!(e.name, "ANTHROPIC_API_KEY");
        let e = config_error(&vars(&[
            ("LLM_PROVIDER", "anthropic"),
            ("ANTHROPIC_API_KEY", "k"),
            ("ANTHROPIC_BASE_URL", "ftp://x"),
        ]));
        assert_eq!(e.name, "ANTHROPIC_BASE_URL");
    }

    #[test]
    fn unknown_provider_names_the_variable() {
        let e = config_error(&vars(&[("LLM_PROVIDER", "openai")]));
        assert_eq!(e.name, "LLM_PROVIDER");
        assert!(e.to_string().contains("openai"));
    }

    #[test]
    fn configured_providers_name_their_strong_model() {
        let a = analyst_from_env(&vars(&[
            ("LLM_PROVIDER", "Anthropic"),
            ("ANTHROPIC_API_KEY", "k"),
        ]))
        .unwrap();
        assert_eq!(
            a.name(),
            format!("anthropic:{}", config::ANTHROPIC_STRONG_MODEL)
        );
        let b = analyst_from_env(&vars(&[
            ("LLM_PROVIDER", "bedrock"),
            ("AWS_REGION", "eu-west-1"),
            (
                "LLM_MODEL_STRONG",
                "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ),
        ]))
        .unwrap();
        assert_eq!(
            b.name(),
            "bedrock:global.anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
    }
}

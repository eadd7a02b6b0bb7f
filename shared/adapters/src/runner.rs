//! The runner executor: for what IRAS does not drive itself (Kubernetes, on-prem), each step is
//! a signed POST to the operator's runner.
//!
//! Request: JSON `{incident_id, step, phase, idempotency_key, action, prior, timeout_seconds}`
//! with `phase` one of `observe`, `apply`, `rollback`, and headers
//! - `X-Iras-Timestamp`: unix seconds;
//! - `X-Iras-Signature`: `v1=` + hex HMAC-SHA256 of `v1:{timestamp}:{body}` with the shared
//!   secret (the runner rejects a bad signature or a timestamp over 5 minutes old);
//! - `Idempotency-Key`: `{incident}:{step}:{phase}`, the same on every retry of the call: the
//!   runner answers a repeated key with its first answer and does not act again.
//!
//! Answer: `{status: succeeded | failed | running, output, state}`. `state` is the live state
//! (for `observe`, what IRAS records before the change and hands back on `rollback`). `running`
//! is asked again, with the same key, until it settles or the step's timeout passes.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use iras_core::config::{ConfigError, EnvVars};
use iras_core::ports::{ExecError, Executor, StepCall, StepOutcome};
use iras_core::signing::hmac_hex;
use iras_core::ResourceState;
use serde::Deserialize;
use serde_json::{json, Value};

pub const RUNNER_URL: &str = "REMEDIATION_RUNNER_URL";
pub const RUNNER_SECRET: &str = "REMEDIATION_RUNNER_SECRET";

#[derive(Clone)]
pub struct RunnerConfig {
    pub url: String,
    pub secret: Vec<u8>,
    pub timeout: Duration,
    /// Between two asks of a call still `running`.
    pub poll: Duration,
}

impl std::fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl RunnerConfig {
    /// `REMEDIATION_RUNNER_URL` and `REMEDIATION_RUNNER_SECRET` (both, or neither).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Option<Self>, ConfigError> {
        let env = EnvVars(vars);
        match (env.string(RUNNER_URL), env.string(RUNNER_SECRET)) {
            (None, None) => Ok(None),
            (Some(url), Some(secret)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError {
                        name: RUNNER_URL.into(),
                        problem: format!("`{url}` is not an http(s) URL"),
                    });
                }
                Ok(Some(RunnerConfig {
                    url,
                    secret: secret.into_bytes(),
                    timeout: env.timeout()?,
                    poll: Duration::from_secs(2),
                }))
            }
            (Some(_), None) => Err(ConfigError {
                name: RUNNER_SECRET.into(),
                problem: format!("{RUNNER_URL} is set: the runner's calls must be signed"),
            }),
            (None, Some(_)) => Err(ConfigError {
                name: RUNNER_URL.into(),
                problem: format!("{RUNNER_SECRET} is set but no runner URL"),
            }),
        }
    }
}

/// The signature a runner checks: `v1=` + hex HMAC-SHA256 over `v1:{timestamp}:{body}`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut message = format!("v1:{timestamp}:").into_bytes();
    message.extend_from_slice(body);
    format!("v1={}", hmac_hex(secret, &message))
}

#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    output: String,
    #[serde(default)]
    state: Value,
}

pub struct RunnerExecutor {
    client: reqwest::Client,
    config: RunnerConfig,
}

impl RunnerExecutor {
    pub fn new(config: RunnerConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(RunnerExecutor { client, config })
    }

    async fn ask(
        &self,
        call: &StepCall<'_>,
        phase: &str,
        prior: Option<&ResourceState>,
    ) -> Result<Answer, ExecError> {
        let key = format!("{}:{}:{phase}", call.incident, call.step);
        let body = serde_json::to_vec(&json!({
            "incident_id": call.incident,
            "step": call.step,
            "phase": phase,
            "idempotency_key": key,
            "action": call.action,
            "prior": prior.map(|p| match p {
                ResourceState::Runner { state } => state.clone(),
                other => serde_json::to_value(other).unwrap_or(Value::Null),
            }),
            "timeout_seconds": call.timeout.as_secs(),
        }))
        .map_err(|e| ExecError::Failed(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + call.timeout;
        loop {
            // Signed afresh on each ask: the timestamp is part of the signature.
            let ts = chrono::Utc::now().timestamp();
            let reply = self
                .client
                .post(&self.config.url)
                .header("content-type", "application/json")
                .header("x-iras-timestamp", ts.to_string())
                .header("x-iras-signature", sign(&self.config.secret, ts, &body))
                .header("idempotency-key", &key)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| ExecError::Unavailable(format!("runner: {e}")))?;
            let status = reply.status();
            let text = reply
                .text()
                .await
                .map_err(|e| ExecError::Unavailable(format!("runner: {e}")))?;
            if !status.is_success() {
                let shown: String = text.chars().take(300).collect();
                return Err(ExecError::Failed(format!(
                    "runner answered {status}: {shown}"
                )));
            }
            let answer: Answer = serde_json::from_str(&text)
                .map_err(|e| ExecError::Failed(format!("runner answered something else: {e}")))?;
            match answer.status.as_str() {
                "succeeded" => return Ok(answer),
                "failed" => return Err(ExecError::Failed(format!("runner: {}", answer.output))),
                "running" if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(self.config.poll).await;
                }
                "running" => {
                    return Err(ExecError::NotStable(format!(
                        "runner still running after {}s",
                        call.timeout.as_secs()
                    )))
                }
                other => {
                    return Err(ExecError::Failed(format!(
                        "runner answered status `{other}`"
                    )))
                }
            }
        }
    }
}

#[async_trait]
impl Executor for RunnerExecutor {
    fn name(&self) -> String {
        "runner".into()
    }

    async fn observe(&self, call: &StepCall<'_>) -> Result<ResourceState, ExecError> {
        let a = self.ask(call, "observe", None).await?;
        Ok(ResourceState::Runner { state: a.state })
    }

    async fn apply(
        &self,
        call: &StepCall<'_>,
        prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        let a = self.ask(call, "apply", Some(prior)).await?;
        Ok(StepOutcome {
            after: ResourceState::Runner { state: a.state },
            output: a.output,
        })
    }

    async fn restore(
        &self,
        call: &StepCall<'_>,
        prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        let a = self.ask(call, "rollback", Some(prior)).await?;
        Ok(StepOutcome {
            after: ResourceState::Runner { state: a.state },
            output: a.output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_runner_url_without_a_secret_is_refused() {
        let e = RunnerConfig::from_vars(&vars(&[(RUNNER_URL, "http://runner:8080")])).unwrap_err();
        assert_eq!(e.name, RUNNER_SECRET);
        assert!(RunnerConfig::from_vars(&vars(&[])).unwrap().is_none());
        let c = RunnerConfig::from_vars(&vars(&[
            (RUNNER_URL, "http://runner:8080"),
            (RUNNER_SECRET, "s3cret"),
        ]))
        .unwrap()
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}

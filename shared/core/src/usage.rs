//! Model calls made on an incident's behalf: who was asked, what it cost, how it went.
//!
//! An analyst records each call with [`record`]; the stage that asked runs the analyst inside
//! [`collect`] and stores what was recorded on the incident. A task-local keeps the `Analyst`
//! port unchanged: analysts that call no model simply record nothing.

use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::domain::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmCall {
    /// `triage`, `rca`, `plan`, `postmortem`.
    pub stage: String,
    /// `anthropic`, `bedrock`.
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    pub latency_ms: u64,
    /// `ok`, `invalid_output`, `repaired`, `error: ...`, `circuit_open`.
    pub outcome: String,
    /// Estimated from the provider's list prices; an estimate, not a bill.
    #[serde(default)]
    pub estimated_cost_usd: f64,
    pub at: Timestamp,
}

/// Totals shown in the post-mortem.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmUsage {
    pub calls: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
    pub estimated_cost_usd: f64,
    pub failed_calls: usize,
}

impl LlmUsage {
    pub fn of(calls: &[LlmCall]) -> LlmUsage {
        let mut u = LlmUsage::default();
        for c in calls {
            u.calls += 1;
            u.input_tokens += c.input_tokens;
            u.output_tokens += c.output_tokens;
            u.latency_ms += c.latency_ms;
            u.estimated_cost_usd += c.estimated_cost_usd;
            if c.outcome != "ok" && c.outcome != "repaired" {
                u.failed_calls += 1;
            }
        }
        u
    }
}

type Log = Arc<Mutex<Vec<LlmCall>>>;

tokio::task_local! {
    static CALLS: Log;
}

/// Records a call if the current task is collecting; otherwise it is only logged.
pub fn record(call: LlmCall) {
    tracing::info!(
        stage = %call.stage, provider = %call.provider, model = %call.model,
        input_tokens = call.input_tokens, output_tokens = call.output_tokens,
        latency_ms = call.latency_ms, outcome = %call.outcome, "model call"
    );
    let _ = CALLS.try_with(|log| {
        if let Ok(mut v) = log.lock() {
            v.push(call.clone());
        }
    });
}

/// Runs `fut` and returns its output with every call recorded while it ran.
pub async fn collect<F: Future>(fut: F) -> (F::Output, Vec<LlmCall>) {
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let out = CALLS.scope(log.clone(), fut).await;
    let calls = log.lock().map(|v| v.clone()).unwrap_or_default();
    (out, calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(outcome: &str, cost: f64) -> LlmCall {
        LlmCall {
            stage: "rca".into(),
            provider: "anthropic".into(),
            model: "m".into(),
            input_tokens: 100,
            output_tokens: 20,
            cache_read_tokens: 0,
            latency_ms: 5,
            outcome: outcome.into(),
            estimated_cost_usd: cost,
            at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn calls_made_inside_collect_are_returned_and_outside_are_not() {
        record(call("ok", 0.01));
        let (v, calls) = collect(async {
            record(call("ok", 0.01));
            record(call("error: 529 overloaded", 0.0));
            7
        })
        .await;
        assert_eq!(v, 7);
        assert_eq!(calls.len(), 2);
        let u = LlmUsage::of(&calls);
        assert_eq!(u.input_tokens, 200);
        assert_eq!(u.failed_calls, 1);
    }
}

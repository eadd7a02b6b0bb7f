//! The local runtime: IRAS on one machine. An ASL interpreter that executes the very same
//! `statemachine.asl.json` that Step Functions runs, with each stage in-process and one SQLite
//! file for executions and incidents.

pub mod asl;
pub mod console;
pub mod demo;
pub mod eval_cli;
pub mod exec_store;
pub mod local;
pub mod ops;
pub mod progress;
pub mod runtime;
pub mod serve;
pub mod store;

/// The analyst the environment asks for (`LLM_PROVIDER`): a model with the offline analyst as
/// its fallback, or the offline analyst alone.
pub fn analyst_from_env() -> Result<std::sync::Arc<dyn iras_core::Analyst>, String> {
    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    iras_llm::analyst_from_env(&vars).map_err(|e| e.to_string())
}

/// The integrations configured in the environment (Prometheus, Loki, Slack, PagerDuty, ...),
/// with one line on stderr per integration saying what is used and what falls back.
pub fn integrations_from_env() -> Result<iras_adapters::Integrations, String> {
    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    let integrations = iras_adapters::integrations_from_env(&vars).map_err(|e| e.to_string())?;
    for note in &integrations.notes {
        eprintln!("  {note}");
    }
    Ok(integrations)
}

//! The local runtime: IRAS on one machine. An ASL interpreter that executes the very same
//! `statemachine.asl.json` that Step Functions runs, with each stage in-process and one SQLite
//! file for executions and incidents.

pub mod asl;
pub mod console;
pub mod demo;
pub mod exec_store;
pub mod local;
pub mod ops;
pub mod progress;
pub mod runtime;
pub mod serve;
pub mod store;

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

//! `iras`: run IRAS on one machine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use iras_local::demo::{self, DemoDecision, DemoOptions};

#[derive(Parser)]
#[command(
    name = "iras",
    version,
    about = "IRAS: the incident-response agent, on one machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one incident from alert to post-mortem through statemachine.asl.json, with a
    /// temporary store, printing each state as it happens.
    Demo(DemoArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// An `iras-scenario/1` file to replay (default: the payment-service bad deploy).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Approve the plan when asked (the default).
    #[arg(long, group = "decision")]
    approve: bool,
    /// Reject the plan when asked.
    #[arg(long, group = "decision")]
    reject: bool,
    /// Decide nothing: the approval window runs out and the incident is escalated.
    #[arg(long, group = "decision")]
    no_decision: bool,
    /// Override the approval window (e.g. `2s`, `5m`). Defaults to 5s with --no-decision.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    approval_timeout: Option<std::time::Duration>,
    /// Execute another ASL definition instead of statemachine.asl.json.
    #[arg(long, value_name = "FILE")]
    definition: Option<PathBuf>,
    /// Print the final incident record as one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => {
            let decision = if a.reject {
                DemoDecision::Reject
            } else if a.no_decision {
                DemoDecision::None
            } else {
                DemoDecision::Approve
            };
            demo::run(DemoOptions {
                scenario: a.scenario,
                decision,
                approval_timeout: a.approval_timeout,
                definition: a.definition,
                json: a.json,
            })
            .await
            .map(|_| ())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iras: {e}");
            ExitCode::FAILURE
        }
    }
}

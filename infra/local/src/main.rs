//! `iras`: run IRAS on one machine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use iras_core::Decision;
use iras_local::demo::{self, DemoDecision, DemoOptions};
use iras_local::{eval_cli, ops, serve};

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
    /// Serve the webhook, the incidents API and approval pages, running every incident
    /// through the local runtime with a persistent store.
    Serve(ServeArgs),
    /// List incidents, newest first.
    Incidents {
        /// processing, awaiting_approval, remediating, resolved or escalated.
        #[arg(long)]
        status: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = ops::DEFAULT_LIMIT)]
        limit: usize,
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        json: bool,
    },
    /// Show one incident: root cause, plan, approval, timeline.
    Incident {
        id: String,
        #[command(flatten)]
        data: DataArg,
        /// The full record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Score root-cause localisation on a folder of `iras-scenario/1` files (AC@1, AC@3, Avg@5,
    /// confidently wrong), through the same stage code the pipeline runs.
    Eval(eval_cli::EvalArgs),
    /// Approve the plan of an incident awaiting approval (through the running server).
    Approve(DecideArgs),
    /// Reject the plan of an incident awaiting approval; on-call is paged.
    Reject(DecideArgs),
    /// An incident's audit log: every decision, step, rollback, escalation and model call,
    /// hash-chained so that an edited entry is found.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that no entry was edited, deleted or reordered; fails naming the first that was.
    Verify(AuditArgs),
    /// Print every entry, then check the log as `verify` does.
    Show(AuditArgs),
}

#[derive(Args)]
struct AuditArgs {
    id: String,
    #[command(flatten)]
    data: DataArg,
    /// The entries and the verdict as one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DataArg {
    /// The data directory of `iras serve`.
    #[arg(long, value_name = "DIR", default_value = ".iras")]
    data: PathBuf,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: std::net::SocketAddr,
    /// Where incidents, executions and keys are kept.
    #[arg(long, value_name = "DIR", default_value = ".iras")]
    data: PathBuf,
    /// `iras-scenario/1` files that stand in for real evidence backends; each alert gets the
    /// evidence of the scenario whose alert matches it.
    #[arg(long, value_name = "DIR")]
    scenarios: Option<PathBuf>,
}

#[derive(Args)]
struct DecideArgs {
    id: String,
    /// Who decides (recorded in the timeline and the post-mortem).
    #[arg(long = "as", value_name = "NAME")]
    approver: Option<String>,
    #[arg(long)]
    comment: Option<String>,
    #[command(flatten)]
    data: DataArg,
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
        Command::Serve(a) => {
            serve::run(serve::ServeOptions {
                addr: a.addr,
                data: a.data,
                scenarios: a.scenarios,
            })
            .await
        }
        Command::Incidents {
            status,
            limit,
            data,
            json,
        } => ops::list(&data.data, status.as_deref(), limit, json).await,
        Command::Incident { id, data, json } => ops::show(&data.data, &id, json).await,
        Command::Eval(a) => eval_cli::run(a).await,
        Command::Audit { command } => match command {
            AuditCommand::Verify(a) => ops::audit(&a.data.data, &a.id, false, a.json).await,
            AuditCommand::Show(a) => ops::audit(&a.data.data, &a.id, true, a.json).await,
        },
        Command::Approve(a) => {
            ops::decide(
                &a.data.data,
                &a.id,
                Decision::Approved,
                a.approver,
                a.comment,
            )
            .await
        }
        Command::Reject(a) => {
            ops::decide(
                &a.data.data,
                &a.id,
                Decision::Rejected,
                a.approver,
                a.comment,
            )
            .await
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

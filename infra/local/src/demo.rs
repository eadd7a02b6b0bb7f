//! `iras demo`: one incident, alert to post-mortem, through the real state machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use iras_core::stages::DecisionRequest;
use iras_core::*;
use iras_scenarios::{Scenario, DEMO_SCENARIO};
use serde_json::Value;
use sfn_local::ExecutionStatus;

use crate::local::{LocalOptions, LocalPipeline};
use crate::progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoDecision {
    Approve,
    Reject,
    None,
}

pub struct DemoOptions {
    pub scenario: Option<PathBuf>,
    pub decision: DemoDecision,
    pub approval_timeout: Option<Duration>,
    pub definition: Option<PathBuf>,
    pub json: bool,
}

pub struct DemoOutcome {
    pub incident_id: IncidentId,
    pub status: IncidentStatus,
    pub report: Value,
}

/// Without a decision the demo would otherwise sit out a two-hour approval window.
const NO_DECISION_WINDOW: Duration = Duration::from_secs(5);

pub async fn run(opts: DemoOptions) -> Result<DemoOutcome, String> {
    let scenario = match &opts.scenario {
        Some(path) => Scenario::load(path).map_err(|e| e.to_string())?,
        None => Scenario::parse(DEMO_SCENARIO, "bad-deploy-payment-npe.json")
            .map_err(|e| e.to_string())?,
    };
    let definition = match &opts.definition {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read definition {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut config = PipelineConfig::from_env().map_err(|e| e.to_string())?;
    let window = opts.approval_timeout.or(match opts.decision {
        DemoDecision::None => Some(NO_DECISION_WINDOW),
        _ => None,
    });
    if let Some(w) = window {
        config.approval_timeout_override_seconds = Some(w.as_secs().max(1));
    }
    // The demo never changes anything, whatever the environment says.
    config.executor = iras_core::config::ExecutorKind::DryRun;

    // Replayed as if the alert fired now, so durations and windows read naturally.
    let original_time = scenario.alert.timestamp;
    let scenario = Arc::new(scenario.rebased(chrono::Utc::now()));
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary store: {e}"))?;
    let mut options = LocalOptions::new(dir.path().to_path_buf());
    options.definition = definition;
    options.scenario = Some(scenario.clone());
    options.integrations = Some(crate::integrations_from_env().await?);
    options.analyst = Some(crate::analyst_from_env()?);
    options.config = config;
    options.quiet = false;
    let pipeline = LocalPipeline::open(options)
        .await
        .map_err(|e| e.to_string())?;

    eprintln!(
        "IRAS demo · scenario {} (alert of {}, replayed now)",
        scenario.id,
        original_time.format("%Y-%m-%d %H:%M UTC")
    );
    eprintln!("alert: {}", scenario.alert.title);
    let printer = progress::spawn_printer(pipeline.runtime.subscribe());

    let ingested = pipeline
        .ingest(scenario.alert.clone())
        .await
        .map_err(|e| e.to_string())?;
    let id = ingested
        .incident_id
        .clone()
        .ok_or_else(|| "the scenario's alert opened no incident".to_string())?;
    eprintln!("incident {id} opened; execution started under the same name\n");

    let mut decided = false;
    let finished = loop {
        let exec = pipeline
            .runtime
            .describe_execution(id.as_str())
            .await
            .map_err(|e| e.to_string())?;
        if let Some(exec) = exec.filter(|e| e.status != ExecutionStatus::Running) {
            break exec;
        }
        if !decided {
            let inc = pipeline
                .incident(&id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("incident vanished from the store")?;
            if inc.status == IncidentStatus::AwaitingApproval {
                decided = true;
                let decision = match opts.decision {
                    DemoDecision::Approve => Some(Decision::Approved),
                    DemoDecision::Reject => Some(Decision::Rejected),
                    DemoDecision::None => None,
                };
                match decision {
                    Some(d) => {
                        eprintln!("  ✋ on-call engineer (demo) decides: {}", d.as_str());
                        pipeline
                            .decide(
                                &id,
                                DecisionRequest {
                                    approval_id: None,
                                    decision: d,
                                    approver: "demo".into(),
                                    channel: "demo".into(),
                                    comment: None,
                                    identity: iras_core::Identity::Unstated,
                                },
                            )
                            .await
                            .map_err(|e| format!("decision failed: {e}"))?;
                    }
                    None => eprintln!(
                        "  … nobody decides; the approval window ({}s) will run out",
                        inc.approval_timeout_seconds
                    ),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // Let the printer drain what the runtime already said.
    tokio::time::sleep(Duration::from_millis(50)).await;
    printer.abort();

    let report = pipeline.report(&id).await.map_err(|e| e.to_string())?;
    let incident = pipeline
        .incident(&id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("incident vanished from the store")?;
    eprintln!();
    eprintln!(
        "execution {} · incident {} · {}",
        finished.status.as_str(),
        incident.status,
        incident
            .severity
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "untriaged".into())
    );
    if let Some(h) = &incident.hypothesis {
        eprintln!(
            "root cause: {} (confidence {:.2})",
            h.primary_cause, h.confidence
        );
    }
    if let Some(e) = &incident.escalation {
        eprintln!("escalated: {} — {}", e.reason.as_str(), e.detail);
    }
    eprintln!(
        "executor: {} — the demo changes nothing; set REMEDIATION_EXECUTOR with `iras serve` to act for real",
        pipeline.deps.executor.name()
    );
    // The post-mortem is the demo's product: on stdout (`iras demo > pm.md`), progress on stderr.
    match pipeline
        .store
        .postmortem(&id)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(pm) if !opts.json => print!("{}", pm.to_markdown()),
        None if !opts.json => {
            eprintln!("no post-mortem was written (the definition has no PostMortem state?)")
        }
        _ => {}
    }
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    }
    Ok(DemoOutcome {
        incident_id: id,
        status: incident.status,
        report,
    })
}

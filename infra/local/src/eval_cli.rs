//! `iras eval DIR [--analyst offline|baro|llm] [--json]`: scores root-cause localisation on a
//! folder of `iras-scenario/1` files (see `iras_core::eval`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use iras_core::eval::{self, AnalystChoice};
use iras_core::PipelineConfig;

/// Sets from this size get a progress bar on stderr (when stderr is a terminal).
const PROGRESS_FROM: usize = 10;
const BAR_WIDTH: usize = 30;

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// A folder of `iras-scenario/1` files, searched recursively (or a single file).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Which analyst ranks the root-cause candidates: `offline` (IRAS's own), `baro` (the
    /// RCAEval BARO baseline) or `llm`.
    #[arg(long, value_name = "NAME", default_value = "offline", value_parser = parse_analyst)]
    pub analyst: AnalystChoice,
    /// Print one JSON document `{"summary": {...}, "cases": [...]}` instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn parse_analyst(s: &str) -> Result<AnalystChoice, String> {
    s.parse()
}

/// The model-backed analyst `LLM_PROVIDER` configures (it falls back to the offline analyst per
/// call when the model fails, as in the pipeline). Without a provider there is nothing to
/// evaluate: the offline analyst is `--analyst offline`.
fn llm_analyst() -> Result<std::sync::Arc<dyn iras_core::Analyst>, String> {
    let provider = std::env::var("LLM_PROVIDER").unwrap_or_default();
    if matches!(
        provider.trim().to_ascii_lowercase().as_str(),
        "" | "none" | "offline"
    ) {
        return Err("no LLM configured (LLM_PROVIDER unset)".into());
    }
    crate::analyst_from_env()
}

/// Runs the evaluation and prints the report on stdout. The confidence threshold is
/// `RCA_CONFIDENCE_THRESHOLD` (as for the pipeline).
pub async fn run(args: EvalArgs) -> Result<(), String> {
    let config = PipelineConfig::from_env().map_err(|e| e.to_string())?;
    let analyst = match args.analyst {
        AnalystChoice::Llm => llm_analyst()?,
        other => other.analyst().map_err(|e| e.to_string())?,
    };
    let files = eval::scenario_files(&args.dir).map_err(|e| e.to_string())?;
    let show_progress = files.len() >= PROGRESS_FROM && std::io::stderr().is_terminal();
    let mut shown = false;
    let report = eval::evaluate_path(&args.dir, analyst, &config, |done, total| {
        if show_progress {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{}", eval::progress_bar(done, total, BAR_WIDTH));
            let _ = err.flush();
            shown = true;
        }
    })
    .await;
    if shown {
        // Clear the bar's line before anything else is printed.
        eprint!("\r{}\r", " ".repeat(BAR_WIDTH + 24));
    }
    let report = report.map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        report.to_json_pretty() + "\n"
    } else {
        report.render_text()
    };
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| format!("cannot write the report: {e}"))
}

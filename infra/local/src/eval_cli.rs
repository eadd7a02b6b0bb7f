//! `iras eval DIR [--analyst offline|baro|llm] [--json]`: scores root-cause localisation on a
//! folder of `iras-scenario/1` files (see `iras_scenarios::eval`).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use iras_core::PipelineConfig;
use iras_scenarios::eval::{self, AnalystChoice};

/// Sets from this size get a progress bar on stderr (when stderr is a terminal).
const PROGRESS_FROM: usize = 10;

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
    // indicatif draws nothing when stderr is not a terminal (CI, a pipe).
    let bar = if files.len() >= PROGRESS_FROM {
        ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} scenarios · {elapsed} · ETA {eta}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    let report = eval::evaluate_path(&args.dir, analyst, &config, |done, _| {
        bar.set_position(done as u64)
    })
    .await;
    // Cleared before the report, so the table starts on a clean line.
    bar.finish_and_clear();
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

//! `iras eval DIR... [--analyst offline|baro|llm] [--json] [--write-calibration FILE]`: scores
//! root-cause localisation on folders of `iras-scenario/1` files (see `iras_scenarios::eval`).
//!
//! The offline analyst's confidence is calibrated ([`iras_scenarios::calibrate`]): over one folder
//! through the shipped map; over several, each folder through a map fitted on the others
//! (leave-one-set-out), so no set is reported through a fit on itself.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use iras_core::PipelineConfig;
use iras_scenarios::calibrate::{self, ScoredSet};
use iras_scenarios::eval::{self, AnalystChoice, EvalReport};

/// Sets from this size get a progress bar on stderr (when stderr is a terminal).
const PROGRESS_FROM: usize = 10;

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Folders of `iras-scenario/1` files, searched recursively (or single files). Each is a
    /// set: with several, each is reported through a calibration fitted on the others.
    #[arg(value_name = "DIR", required = true, num_args = 1..)]
    pub dir: Vec<PathBuf>,
    /// Which analyst ranks the root-cause candidates: `offline` (IRAS's own), `baro` (the
    /// RCAEval BARO baseline) or `llm`.
    #[arg(long, value_name = "NAME", default_value = "offline", value_parser = parse_analyst)]
    pub analyst: AnalystChoice,
    /// Print one JSON document instead of the table: `{"summary": {...}, "cases": [...]}` for
    /// one folder, `{"sets": [{"set", "summary", "cases"}, ...]}` for several.
    #[arg(long)]
    pub json: bool,
    /// Fit the offline analyst's confidence calibration on every folder given and write it to
    /// FILE (the shipped one is `shared/core/src/analyst/rca/calibration.json`).
    #[arg(long, value_name = "FILE")]
    pub write_calibration: Option<PathBuf>,
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
    let threshold = config.rca_confidence_threshold;
    let offline = args.analyst == AnalystChoice::Offline;
    if args.write_calibration.is_some() && !offline {
        return Err(
            "--write-calibration fits the offline analyst's confidence: drop --analyst".into(),
        );
    }
    // The offline analyst runs uncalibrated; its calibration is applied below, per set.
    let analyst = match args.analyst {
        AnalystChoice::Llm => llm_analyst()?,
        other => other.raw_analyst().map_err(|e| e.to_string())?,
    };
    let mut sets = Vec::new();
    for dir in &args.dir {
        let raw = evaluate_with_progress(dir, analyst.clone(), &config).await?;
        sets.push(ScoredSet {
            name: dir.display().to_string(),
            root: dir.clone(),
            raw,
        });
    }
    if let Some(file) = &args.write_calibration {
        let fitted = calibrate::calibration_file(&sets);
        let text = serde_json::to_string_pretty(&fitted).expect("a calibration is plain data");
        std::fs::write(file, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        eprintln!(
            "wrote a calibration of {} points fitted on {} incidents to {}",
            fitted.calibration.points.len(),
            fitted.fit_on.iter().map(|f| f.n).sum::<usize>(),
            file.display()
        );
    }
    let reports: Vec<EvalReport> = match (offline, sets.len()) {
        (false, _) => sets.iter().map(|s| s.raw.clone()).collect(),
        (true, 1) => vec![calibrate::through_shipped(&sets[0].raw, threshold)],
        (true, _) => calibrate::leave_one_set_out(&sets, threshold),
    };
    let text = if sets.len() == 1 {
        if args.json {
            reports[0].to_json_pretty() + "\n"
        } else {
            reports[0].render_text()
        }
    } else if args.json {
        let sets: Vec<serde_json::Value> = sets
            .iter()
            .zip(&reports)
            .map(
                |(s, r)| serde_json::json!({"set": s.name, "summary": r.summary, "cases": r.cases}),
            )
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({ "sets": sets }))
            .expect("an eval report is plain data")
            + "\n"
    } else {
        let mut out = String::new();
        for (s, r) in sets.iter().zip(&reports) {
            out.push_str(&format!("== {}\n", s.name));
            out.push_str(&r.render_text());
            out.push('\n');
        }
        out.push_str(&overview(&sets, &reports));
        out
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| format!("cannot write the report: {e}"))
}

/// One line per set, for comparing sets at a glance.
fn overview(sets: &[ScoredSet], reports: &[EvalReport]) -> String {
    let mut out = format!(
        "{:<40} {:>4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9} {:>8}\n",
        "set", "n", "AC@1", "AC@3", "Avg@5", "fault", "ECE", "precision", "coverage"
    );
    let f = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    for (set, r) in sets.iter().zip(reports) {
        let s = &r.summary;
        out.push_str(&format!(
            "{:<40} {:>4} {:>6.3} {:>6.3} {:>6.3} {:>6} {:>6.3} {:>9} {:>8.3}\n",
            iras_core::analyst::text::clean(&set.name, 39),
            s.n,
            s.ac1,
            s.ac3,
            s.avg5,
            f(s.fault_accuracy),
            s.ece,
            f(s.would_act_precision),
            s.coverage
        ));
    }
    out
}

async fn evaluate_with_progress(
    dir: &std::path::Path,
    analyst: std::sync::Arc<dyn iras_core::Analyst>,
    config: &PipelineConfig,
) -> Result<EvalReport, String> {
    let files = eval::scenario_files(dir).map_err(|e| e.to_string())?;
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
    let report = eval::evaluate_path(dir, analyst, config, |done, _| {
        bar.set_position(done as u64)
    })
    .await;
    // Cleared before the report, so the table starts on a clean line.
    bar.finish_and_clear();
    report.map_err(|e| e.to_string())
}

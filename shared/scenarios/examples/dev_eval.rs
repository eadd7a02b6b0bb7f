// Development only: evaluate several sets quickly and print per-case lines.
use iras_core::PipelineConfig;
use iras_scenarios::eval::{self, AnalystChoice};
use std::path::Path;
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = std::env::var("V").is_ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = PipelineConfig::default();
    for dir in &args {
        let analyst: Arc<dyn iras_core::Analyst> = if std::env::var("BARO").is_ok() {
            AnalystChoice::Baro.analyst().unwrap()
        } else {
            AnalystChoice::Offline.analyst().unwrap()
        };
        let t = std::time::Instant::now();
        let r = rt
            .block_on(eval::evaluate_path(
                Path::new(dir),
                analyst,
                &config,
                |_, _| {},
            ))
            .unwrap();
        if let Ok(out) = std::env::var("OUT") {
            let name = dir
                .trim_start_matches("scenarios/")
                .trim_start_matches("nezha-dev/")
                .replace('/', "_");
            std::fs::write(format!("{out}/{name}.json"), r.to_json_pretty()).unwrap();
        }
        let s = &r.summary;
        if verbose {
            for c in &r.cases {
                println!(
                    "  {:<40} {:<28} {:<28} {:>3} {:.2} {}",
                    c.id,
                    c.truth.clone().unwrap_or_default(),
                    c.top.clone().unwrap_or_default(),
                    c.rank.map_or("-".into(), |r| r.to_string()),
                    c.confidence,
                    c.fault.clone().unwrap_or_default()
                );
            }
        }
        println!(
            "{:<45} n={:>3} AC@1 {:.3} AC@3 {:.3} Avg@5 {:.3} fault {} ECE {:.3} prec {} cov {:.3} cw {:.3}  {:.2}s",
            dir,
            s.n,
            s.ac1,
            s.ac3,
            s.avg5,
            s.fault_accuracy.map_or("-".into(), |f| format!("{f:.3}")),
            s.ece,
            s.would_act_precision.map_or("-".into(), |f| format!("{f:.3}")),
            s.coverage,
            s.confidently_wrong,
            t.elapsed().as_secs_f64()
        );
    }
}

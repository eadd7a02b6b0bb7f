//! Ranking cost: 100 incidents per set (each set's scenarios repeated), on every set in the
//! repo: PetShop (~250 series each), the Nezha development sets (Online Boutique; TrainTicket,
//! ~450 series and thousands of log lines each) and the synthetic set. Times reading the files,
//! the pipeline's gather + rca stages per incident (in-memory store, the scenario as evidence
//! source), the offline `rca` alone on the gathered bundles, then BARO on the same bundles.
//!
//! `cargo bench -p iras-scenarios --bench rank`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iras_core::analyst::{self, baro, OfflineAnalyst};
use iras_core::PipelineConfig;
use iras_scenarios::eval;
use iras_scenarios::Scenario;

const INCIDENTS: usize = 100;

/// The 2 s target for ranking 100 incidents, files read included.
const TARGET: Duration = Duration::from_secs(2);

const SETS: &[&str] = &[
    "petshop",
    "nezha-dev/online-boutique",
    "nezha-dev/train-ticket",
    "synthetic",
];

fn report(what: &str, took: Duration, n: usize) {
    let ms = took.as_secs_f64() * 1000.0;
    println!(
        "{what:<44} total {ms:>9.1} ms   per incident {:>7.2} ms",
        ms / n as f64
    );
}

fn main() {
    let mut over = Vec::new();
    for set in SETS {
        let total = bench_set(set);
        if total > TARGET {
            over.push(format!("{set}: {:.2} s", total.as_secs_f64()));
        }
    }
    if !over.is_empty() {
        println!(
            "note: above the 2 s target for {INCIDENTS} incidents: {}",
            over.join(", ")
        );
    }
}

/// Times one set; returns reading the files (scaled to 100 incidents) plus gather + rca.
fn bench_set(set: &str) -> Duration {
    println!("== {set}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(set);
    let files = eval::scenario_files(&dir).expect("the set is readable");
    let loaded = Instant::now();
    let mut base: Vec<Scenario> = files
        .iter()
        .map(|f| Scenario::load(f))
        .collect::<Result<_, _>>()
        .expect("the scenarios parse");
    for s in base.iter_mut() {
        s.truth = None;
    }
    assert!(!base.is_empty(), "no scenario under {}", dir.display());
    let series: usize = base.iter().map(|s| s.metrics.len()).sum::<usize>() / base.len();
    let read = loaded.elapsed();
    report(&format!("read {} files", base.len()), read, base.len());
    let incidents: Vec<Scenario> = base.iter().cycle().take(INCIDENTS).cloned().collect();
    println!(
        "{INCIDENTS} incidents, {series} series each on average, {} services",
        base[0].services().len()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = PipelineConfig::default();
    let analyst = Arc::new(OfflineAnalyst::new());

    // Gather + rca through the stages, one incident after the other.
    let started = Instant::now();
    let mut bundles = Vec::with_capacity(INCIDENTS);
    let mut rca_in_stage = Duration::ZERO;
    for s in incidents {
        let g = rt
            .block_on(eval::gather(s, analyst.clone(), &config))
            .expect("gather");
        bundles.push((g.alert.clone(), g.triage.clone(), g.context.clone()));
        let t = Instant::now();
        let inv = rt.block_on(g.rca()).expect("rca");
        rca_in_stage += t.elapsed();
        std::hint::black_box(inv.hypothesis.root_cause_service);
    }
    let total = started.elapsed();
    report("ingest + triage + gather + rca (stages)", total, INCIDENTS);
    report("  of which the rca stage", rca_in_stage, INCIDENTS);

    // The offline analyst alone on the gathered bundles.
    let started = Instant::now();
    for (alert, triage, ctx) in &bundles {
        std::hint::black_box(analyst::rca(alert, triage, ctx));
    }
    report("offline rca alone", started.elapsed(), INCIDENTS);

    let started = Instant::now();
    for (_, _, ctx) in &bundles {
        std::hint::black_box(baro::rank(ctx));
    }
    report("BARO ranking alone", started.elapsed(), INCIDENTS);

    // Reading 100 incidents' files costs what reading this set's files costs, per file.
    let read_100 = read.mul_f64(INCIDENTS as f64 / base.len() as f64);
    let with_files = read_100 + total;
    report("files read + stages", with_files, INCIDENTS);
    with_files
}

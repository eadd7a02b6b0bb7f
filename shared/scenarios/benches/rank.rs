//! Ranking cost at PetShop scale: 100 incidents of ~250 series each (the 52 PetShop scenarios,
//! repeated). Times the pipeline's gather + rca stages per incident (in-memory store, the
//! scenario as evidence source) and the offline `rca` alone on the gathered bundles, then BARO
//! on the same bundles for comparison.
//!
//! `cargo bench -p iras-core --bench rank`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iras_core::analyst::{self, baro, OfflineAnalyst};
use iras_core::PipelineConfig;
use iras_scenarios::eval;
use iras_scenarios::Scenario;

const INCIDENTS: usize = 100;

fn report(what: &str, took: Duration, n: usize) {
    let ms = took.as_secs_f64() * 1000.0;
    println!(
        "{what:<44} total {ms:>9.1} ms   per incident {:>7.2} ms",
        ms / n as f64
    );
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/petshop");
    let files = eval::scenario_files(&dir).expect("scenarios/petshop is readable");
    let loaded = Instant::now();
    let mut base: Vec<Scenario> = files
        .iter()
        .map(|f| Scenario::load(f))
        .collect::<Result<_, _>>()
        .expect("PetShop scenarios parse");
    for s in base.iter_mut() {
        s.truth = None;
    }
    assert!(
        !base.is_empty(),
        "no PetShop scenario under {}",
        dir.display()
    );
    let series: usize = base.iter().map(|s| s.metrics.len()).sum::<usize>() / base.len();
    report(
        &format!("parse {} PetShop files", base.len()),
        loaded.elapsed(),
        base.len(),
    );
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

    if total > Duration::from_secs(2) {
        println!("note: above the 2 s target for {INCIDENTS} incidents");
    }
}

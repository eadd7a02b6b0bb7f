// Development only: print the hypothesis (candidates with evidence) for scenario files.
use iras_core::PipelineConfig;
use iras_scenarios::{eval, Scenario};
use std::path::Path;
use std::sync::Arc;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = PipelineConfig::default();
    for f in std::env::args().skip(1) {
        let s = Scenario::load(Path::new(&f)).unwrap();
        let truth = s.truth.clone();
        let g = rt
            .block_on(eval::gather(
                s,
                Arc::new(iras_core::analyst::OfflineAnalyst::new()),
                &config,
            ))
            .unwrap();
        let inv = rt.block_on(g.rca()).unwrap();
        let h = &inv.hypothesis;
        if let Ok(sp) = std::env::var("LOGSPLIT") {
            let sp: i64 = sp.parse().unwrap();
            let w = inv.context.window.unwrap();
            let services: Vec<String> = inv
                .context
                .metrics
                .iter()
                .map(|m| m.service.clone())
                .chain(inv.context.logs.iter().map(|l| l.service.clone()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let f = iras_core::analyst::logs::analyse(
                &inv.context.logs,
                inv.alert.timestamp + chrono::Duration::seconds(sp),
                (w.start, w.end),
                &services,
                &iras_core::analyst::graph::Graph::new(&inv.context.topology),
            );
            let mut v: Vec<_> = f.services.iter().collect();
            v.sort_by(|a, b| b.1.strength().total_cmp(&a.1.strength()));
            for (s, l) in v.iter().take(8) {
                println!(
                    "   logs {:<30} str {:.2} excess {:.1} before {} after {} new {}",
                    s,
                    l.strength(),
                    l.own_excess,
                    l.problems_before,
                    l.problems_after,
                    l.new_template_lines
                );
            }
        }
        if let Ok(svc) = std::env::var("SVC") {
            for m in inv
                .context
                .metrics
                .iter()
                .filter(|m| svc.split(',').any(|x| x == m.service))
            {
                if let Some(d) = iras_core::analyst::metrics::deviation(m, inv.alert.timestamp) {
                    let rel = |t: Option<chrono::DateTime<chrono::Utc>>| {
                        t.map(|t| (t - inv.alert.timestamp).num_seconds())
                    };
                    let last: Vec<Option<f64>> = m
                        .points
                        .iter()
                        .rev()
                        .take(4)
                        .map(|p| p.1.map(|v| (v * 1000.0).round() / 1000.0))
                        .collect();
                    println!(
                        "   dev {:<22} {:<22} score {:>7.1} onset {:?} pers {:.2} last {:?}",
                        m.service,
                        m.name,
                        d.anomaly.score,
                        rel(d.anomaly.onset),
                        d.persistence,
                        last
                    );
                }
            }
        }
        println!(
            "=== {f} truth={:?} conf={:.2} fault={}",
            truth.map(|t| (t.root_cause_service, t.fault)),
            h.confidence,
            h.fault
        );
        for c in &h.candidates {
            println!("  {:<28} {:.2} {}", c.service, c.score, c.fault);
            for e in c.evidence.iter().take(6) {
                println!("       {e}");
            }
        }
        for n in &h.contributing_factors {
            println!("  note: {n}");
        }
    }
}

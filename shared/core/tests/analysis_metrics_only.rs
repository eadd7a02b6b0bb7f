//! The offline analyst on metrics-only incidents shaped like the PetShop data set: X-Ray node
//! names (`PetSearch_AWS::ECS::Fargate`), `latency_*` / `availability_avg` / `requests_sum`
//! series at 5-minute resolution, baselines that are sometimes broken (all zeros), no logs and
//! no deployments. Incidents are generated from a fixed seed, so the test is deterministic;
//! the fault sits at a random depth and its symptoms propagate to every caller.

use chrono::{DateTime, Duration};
use iras_core::analyst::{self, metrics};
use iras_core::*;

/// Small deterministic generator (no dependency needed for test noise).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }
    fn pick(&mut self, n: usize) -> usize {
        (self.next() * n as f64) as usize % n
    }
}

const KINDS: &[&str] = &[
    "ECS::Fargate",
    "Lambda::Function",
    "EKS::Container",
    "DynamoDB::Table",
];

struct Generated {
    alert: Alert,
    ctx: ContextBundle,
    truth: String,
}

/// A call tree under one entry node; the faulty node degrades from `alert - 20 min`.
fn generate(seed: u64, n_services: usize, broken_baselines: bool) -> Generated {
    let mut rng = Lcg(seed);
    let names: Vec<String> = (0..n_services)
        .map(|i| {
            if i == 0 {
                "PetSite_AWS::EKS::Container".to_string()
            } else {
                format!("Svc{i}_AWS::{}", KINDS[rng.pick(KINDS.len())])
            }
        })
        .collect();
    let mut parent = vec![usize::MAX; n_services];
    let mut topology = Vec::new();
    for (i, p) in parent.iter_mut().enumerate().skip(1) {
        // Callers come from earlier nodes: a tree, mostly 2-4 levels deep.
        *p = rng.pick(i.min(1 + i / 3).max(1));
        topology.push(ServiceEdge {
            from: names[*p].clone(),
            to: names[i].clone(),
        });
    }
    // The faulty node: anything but the entry, preferably one with callers above it.
    let faulty = 1 + rng.pick(n_services - 1);
    let mut affected = vec![0.0f64; n_services];
    let mut cur = faulty;
    let mut strength = 1.0;
    loop {
        affected[cur] = strength;
        if cur == 0 {
            break;
        }
        cur = parent[cur];
        strength *= 0.7;
    }
    let alert_at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let start = alert_at - Duration::minutes(30);
    let onset = alert_at - Duration::minutes(20);
    let mut series = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let base_latency = 20.0 + 200.0 * rng.next();
        let base_requests = 100.0 + 5000.0 * rng.next();
        for metric in [
            "latency_avg",
            "latency_p99",
            "availability_avg",
            "requests_sum",
        ] {
            let normal = |rng: &mut Lcg| -> f64 {
                match metric {
                    "latency_avg" => base_latency * (1.0 + 0.08 * (rng.next() - 0.5)),
                    "latency_p99" => 3.0 * base_latency * (1.0 + 0.15 * (rng.next() - 0.5)),
                    "availability_avg" => 100.0 - 0.3 * rng.next(),
                    _ => (base_requests * (1.0 + 0.1 * (rng.next() - 0.5))).round(),
                }
            };
            let mut points = Vec::new();
            let mut t = start;
            while t <= alert_at + Duration::minutes(15) {
                let mut v = normal(&mut rng);
                let a = affected[i];
                if t >= onset && a > 0.0 {
                    v = match metric {
                        "latency_avg" | "latency_p99" => v * (1.0 + 6.0 * a),
                        "availability_avg" => v - 25.0 * a,
                        _ => v,
                    };
                }
                points.push((t.timestamp(), Some(v)));
                t += Duration::minutes(5);
            }
            let baseline = points
                .iter()
                .map(|(t, _)| {
                    let v = if broken_baselines {
                        0.0
                    } else {
                        normal(&mut rng)
                    };
                    (t - 604_800, Some(v))
                })
                .collect();
            series.push(MetricSeries {
                service: name.clone(),
                name: metric.into(),
                unit: String::new(),
                points,
                baseline,
            });
        }
    }
    let anomalies = series
        .iter()
        .filter_map(|m| metrics::anomaly(m, alert_at))
        .collect();
    let alert = Alert::from_json(serde_json::json!({
        "title": "PetSite availability below 95%",
        "timestamp": alert_at.to_rfc3339(),
        "service": names[0],
    }))
    .unwrap();
    Generated {
        alert,
        ctx: ContextBundle {
            attempt: 1,
            services: names.clone(),
            topology,
            metrics: series,
            anomalies,
            ..Default::default()
        },
        truth: names[faulty].clone(),
    }
}

fn accuracy(broken: bool) -> (usize, usize, f64) {
    let mut hits = 0;
    let mut wrong_confident = 0;
    let n = 40;
    let mut conf_sum = 0.0;
    for seed in 0..n {
        let g = generate(1000 + seed, 20, broken);
        let t = analyst::triage(&g.alert);
        let h = analyst::rca(&g.alert, &t, &g.ctx);
        if h.root_cause_service == g.truth {
            hits += 1;
            conf_sum += h.confidence;
        } else if h.confidence >= 0.7 {
            wrong_confident += 1;
        }
    }
    (hits, wrong_confident, conf_sum / hits.max(1) as f64)
}

#[test]
fn finds_the_degraded_node_from_metrics_and_graph_alone() {
    let (hits, wrong_confident, mean_conf) = accuracy(false);
    println!("metrics only, sound baselines: AC@1 {hits}/40, confident wrong answers {wrong_confident}, mean confidence when right {mean_conf:.2}");
    assert!(hits >= 39, "AC@1 {hits}/40");
    assert!(
        wrong_confident <= 2,
        "{wrong_confident} confident wrong answers"
    );
}

#[test]
fn survives_baselines_that_are_all_zeros() {
    let (hits, wrong_confident, mean_conf) = accuracy(true);
    println!("metrics only, zero baselines: AC@1 {hits}/40, confident wrong answers {wrong_confident}, mean confidence when right {mean_conf:.2}");
    assert!(hits >= 38, "AC@1 {hits}/40");
    assert!(
        wrong_confident <= 2,
        "{wrong_confident} confident wrong answers"
    );
    let g = generate(7, 20, true);
    assert!(g.ctx.anomalies.iter().all(|a| a.baseline_estimated));
}

#[test]
fn ranks_a_hundred_large_bundles_quickly() {
    // ~250 series each (62 nodes x 4 metrics), as in the PetShop set.
    let bundles: Vec<Generated> = (0..100)
        .map(|s| generate(5000 + s, 62, s % 3 == 0))
        .collect();
    let started = std::time::Instant::now();
    for g in &bundles {
        let t = analyst::triage(&g.alert);
        let h = analyst::rca(&g.alert, &t, &g.ctx);
        assert!(!h.root_cause_service.is_empty());
    }
    let took = started.elapsed();
    println!("100 bundles of 248 series ranked in {took:?}");
    // Release builds take a fraction of this; the bound leaves room for debug builds.
    assert!(took.as_secs_f64() < 30.0, "{took:?}");
}

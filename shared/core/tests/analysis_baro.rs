//! The BARO baseline on a bundle small enough to check by hand: robust scores from the
//! baseline's median and inter-quartile range (numpy's linear quantiles, IQR 0 counting as 1),
//! and services ranked by the first appearance of one of their series.

use iras_core::analyst::baro::{self, BaroAnalyst};
use iras_core::*;

fn series(
    service: &str,
    name: &str,
    baseline: &[Option<f64>],
    points: &[Option<f64>],
) -> MetricSeries {
    MetricSeries {
        service: service.into(),
        name: name.into(),
        unit: String::new(),
        points: points
            .iter()
            .enumerate()
            .map(|(i, v)| (1_700_000_000 + 60 * i as i64, *v))
            .collect(),
        baseline: baseline
            .iter()
            .enumerate()
            .map(|(i, v)| (1_699_000_000 + 60 * i as i64, *v))
            .collect(),
    }
}

fn s(v: &[f64]) -> Vec<Option<f64>> {
    v.iter().copied().map(Some).collect()
}

fn bundle() -> ContextBundle {
    ContextBundle {
        attempt: 1,
        metrics: vec![
            // median 3, IQR 4 - 2 = 2: (9 - 3) / 2 = 3
            series(
                "a",
                "latency",
                &s(&[1.0, 2.0, 3.0, 4.0, 5.0]),
                &s(&[3.0, 9.0]),
            ),
            // IQR 0 counts as 1: (5 - 0) / 1 = 5
            series("b", "errors", &s(&[0.0, 0.0, 0.0, 0.0]), &s(&[0.0, 5.0])),
            // median 11, q25 10, q75 12.5 (linear): (16 - 11) / 2.5 = 2
            series("c", "cpu", &s(&[10.0, 10.0, 12.0, 14.0]), &s(&[11.0, 16.0])),
            // b's second series scores lower and does not move b
            series("b", "latency", &s(&[1.0, 1.0, 1.0, 1.0]), &s(&[1.0, 1.5])),
            // missing samples are skipped: (4 - 2) / 1 = 2... on a flat baseline of 2
            series(
                "d",
                "queue",
                &[Some(2.0), None, Some(2.0)],
                &[None, Some(4.0)],
            ),
            // no baseline: not scored at all
            series("e", "latency", &[], &s(&[1.0, 100.0])),
            // BARO has no notion of a bad direction: a drop scores below zero
            series(
                "f",
                "availability",
                &s(&[99.0, 100.0, 100.0, 100.0]),
                &s(&[100.0, 20.0]),
            ),
        ],
        ..Default::default()
    }
}

#[test]
fn series_scores_follow_median_and_iqr_of_the_baseline() {
    let b = bundle();
    let got: Vec<(String, String, f64)> = baro::scores(&b)
        .into_iter()
        .map(|x| (x.service, x.metric, x.score))
        .collect();
    let want = [
        ("b", "errors", 5.0),
        ("a", "latency", 3.0),
        ("c", "cpu", 2.0),
        ("d", "queue", 2.0),
        ("b", "latency", 0.5),
        ("f", "availability", 0.0),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((gs, gm, gv), (ws, wm, wv)) in got.iter().zip(want.iter()) {
        assert_eq!((gs.as_str(), gm.as_str()), (*ws, *wm), "{got:?}");
        assert!((gv - wv).abs() < 1e-9, "{gs}/{gm}: {gv} != {wv}");
    }
    assert!(
        baro::score_series(&b.metrics[5]).is_none(),
        "no baseline, no score"
    );
}

#[test]
fn services_rank_by_their_first_series_in_the_list() {
    let ranked: Vec<String> = baro::rank(&bundle()).into_iter().map(|r| r.0).collect();
    assert_eq!(ranked, vec!["b", "a", "c", "d", "f"]);
}

#[tokio::test]
async fn baro_as_an_analyst_names_the_top_service_with_the_margin_as_confidence() {
    let alert = Alert::from_json(serde_json::json!({
        "title": "High latency on gateway", "timestamp": "2023-11-14T22:13:20Z", "service": "gateway"
    }))
    .unwrap();
    let analyst = BaroAnalyst::new();
    let t = analyst.triage(&alert).await.unwrap();
    let h = analyst.rca(&alert, &t, &bundle()).await.unwrap();
    assert_eq!(analyst.name(), "baro");
    assert_eq!(h.root_cause_service, "b");
    let order: Vec<&str> = h.candidates.iter().map(|c| c.service.as_str()).collect();
    assert_eq!(order, vec!["b", "a", "c", "d", "f"]);
    assert!(
        (h.confidence - 0.4).abs() < 1e-9,
        "1 - 3/5: {}",
        h.confidence
    );
    assert_eq!(h.analyst, "baro");
    // Nothing to score: the alerted service, not confident.
    let empty = analyst
        .rca(&alert, &t, &ContextBundle::default())
        .await
        .unwrap();
    assert_eq!(empty.root_cause_service, "gateway");
    assert!(empty.confidence < 0.1);
}

//! Phase 1, onset: when the incident began (the first lasting symptom), the time resolution of
//! the evidence, and the window it covers.

use chrono::{DateTime, Duration};

use crate::analyst::metrics::{self, Deviation, MetricKind};
use crate::domain::*;

/// When the incident began, as far as the metrics say.
pub(super) struct Onset {
    /// The first lasting symptom, else the first lasting deviation, else shortly before the
    /// alert.
    pub at: Timestamp,
    /// Whether any lasting deviation dated it.
    pub known: bool,
    /// The first clear, lasting move of anything but traffic (never after `at`): logs before
    /// it are the service's normal.
    pub first_move: Timestamp,
}

pub(super) fn minutes(d: Duration) -> f64 {
    d.num_seconds() as f64 / 60.0
}

/// The usual spacing of metric samples (median over series), if any series has two points.
pub(super) fn sample_step(ctx: &ContextBundle) -> Option<Duration> {
    let mut steps: Vec<i64> = ctx
        .metrics
        .iter()
        .filter_map(|m| {
            let t: Vec<i64> = m.points.iter().map(|p| p.0).collect();
            let mut d: Vec<i64> = t
                .windows(2)
                .map(|w| w[1] - w[0])
                .filter(|d| *d > 0)
                .collect();
            d.sort_unstable();
            d.get(d.len() / 2).copied()
        })
        .collect();
    steps.sort_unstable();
    steps.get(steps.len() / 2).map(|s| Duration::seconds(*s))
}

/// The evidence window: the bundle's, else what the evidence itself covers.
pub(super) fn window_of(alert: &Alert, ctx: &ContextBundle) -> (Timestamp, Timestamp) {
    if let Some(w) = ctx.window {
        return (w.start, w.end);
    }
    let mut lo = alert.timestamp - Duration::minutes(30);
    let mut hi = alert.timestamp + Duration::minutes(15);
    for l in &ctx.logs {
        lo = lo.min(l.timestamp);
        hi = hi.max(l.timestamp);
    }
    (lo, hi)
}

/// Where the excursion still running at the end of the window began: walking back from the
/// last sample while the series stays out of its band (one in-band sample is a gap, two end
/// it). `None` when the series is back in its band at the end: whatever it did earlier is
/// over, an older story than the alert. Later faults overlap earlier ones in real incidents,
/// so the start of the current excursion, not the first excursion, dates this one.
pub(super) fn current_start(d: &Deviation) -> Option<Timestamp> {
    let p = &d.profile;
    if p.is_empty() {
        return d.anomaly.onset;
    }
    let out = |i: usize| p[i].1 >= metrics::BAND_SCORE;
    let n = p.len();
    // The excursion must reach one of the last two samples.
    let mut i = (n.saturating_sub(2)..n).rev().find(|&i| out(i))?;
    while i > 0 {
        if out(i - 1) {
            i -= 1;
        } else if i >= 2 && out(i - 2) {
            i -= 2;
        } else {
            break;
        }
    }
    DateTime::from_timestamp(p[i].0, 0)
}

// The incident's onset: the first lasting symptom (what the alert is about), else the
// first lasting deviation of any kind, else shortly before the alert.
pub(super) fn incident_onset(devs: &[Deviation], at: Timestamp) -> Onset {
    let lasting = |d: &&Deviation| d.persistence >= 0.5 && d.anomaly.onset.is_some();
    let symptom_onset = devs
        .iter()
        .filter(lasting)
        .filter(|d| metrics::metric_kind(&d.anomaly.metric) == MetricKind::Symptom)
        .filter_map(current_start)
        .min();
    let any_onset = devs.iter().filter(lasting).filter_map(current_start).min();
    let onset_known = symptom_onset.or(any_onset).is_some();
    let onset = symptom_onset
        .or(any_onset)
        .unwrap_or(at - Duration::minutes(10));
    // Logs are compared with the quiet time before anything clearly moved: precursors (leak
    // warnings, first retries) that come before the symptoms are part of the incident.
    let first_move = devs
        .iter()
        .filter(lasting)
        .filter(|d| {
            d.anomaly.score >= 2.0 * metrics::SIGNIFICANT_SCORE
                && metrics::metric_kind(&d.anomaly.metric) != MetricKind::Traffic
        })
        .filter_map(current_start)
        .min()
        .map_or(onset, |t| t.min(onset));
    Onset {
        at: onset,
        known: onset_known,
        first_move,
    }
}

//! How far one series has moved from its baseline, robustly, with its onset and persistence.

use chrono::DateTime;

use super::stats::{median, quantile, sorted};
use super::vocabulary::{bad_direction_of, has_any, metric_kind_of, tokens, MetricKind};
use super::{BAND_SCORE, MAX_SCORE, SIGNIFICANT_SCORE};
use crate::domain::{BadDirection, MetricAnomaly, MetricSeries, Timestamp};

/// The full measurement behind a [`MetricAnomaly`], with what the record has no field for.
#[derive(Debug, Clone, PartialEq)]
pub struct Deviation {
    pub anomaly: MetricAnomaly,
    /// Share of the points from the onset on that stay outside the normal band: a lone spike
    /// (a restart, one slow scrape) is near 0, a level shift near 1.
    pub persistence: f64,
    /// Unix seconds of the last usable point, and its value (e.g. the current replica count).
    pub last: (i64, f64),
    /// How far (in spread units, bad direction) the series already was from its baseline at the
    /// start of the window, beyond noise. It is taken off the score: a level that differs from
    /// the baseline from the first point on belongs to another regime (a baseline from another
    /// day or release) or to an older problem, not to what started this incident.
    pub pre_existing: f64,
    /// Per usable point: (unix seconds, score in the bad direction after `pre_existing`).
    pub profile: Vec<(i64, f64)>,
    /// The deviation at its peak in the series' own unit, in the bad direction (seconds of
    /// added latency, points of availability lost): comparable between a caller and a callee
    /// measuring the same thing.
    pub magnitude: f64,
    /// For a ratio whose bad direction is down (availability, success): the share of requests
    /// newly failing at the peak, 0..1.
    pub failing_share: Option<f64>,
    /// The same as a number of requests, when the service's request count is known: what a
    /// caller's failures can be compared with (a callee failing 16% of 20 requests cannot
    /// explain a caller failing 5% of 700).
    pub failing_requests: Option<f64>,
    /// The service's request count in the sample of the peak, when known.
    pub requests_at_peak: Option<f64>,
}

fn usable(points: &[(i64, Option<f64>)]) -> Vec<(i64, f64)> {
    points
        .iter()
        .filter_map(|&(t, v)| v.filter(|x| x.is_finite()).map(|x| (t, x)))
        .collect()
}

/// Running sums of a series and of its squares: the squared error of any segment around its
/// own mean in constant time, for the segmentations below.
struct PrefixSums {
    sum: Vec<f64>,
    sq: Vec<f64>,
}

impl PrefixSums {
    fn new(values: impl Iterator<Item = f64>) -> Self {
        let (mut sum, mut sq) = (vec![0.0], vec![0.0]);
        for v in values {
            sum.push(sum[sum.len() - 1] + v);
            sq.push(sq[sq.len() - 1] + v * v);
        }
        PrefixSums { sum, sq }
    }

    /// Squared error of `values[a..b]` around its mean (may be a hair below 0 from rounding).
    fn sse(&self, a: usize, b: usize) -> f64 {
        let s = self.sum[b] - self.sum[a];
        (self.sq[b] - self.sq[a]) - s * s / (b - a) as f64
    }
}

/// Where the window's own normal part ends, when the baseline cannot be used: the split into
/// two segments that best explains the series (least squares on segment means), if it explains
/// at least half of the variance; otherwise the first third. The earlier segment is taken as
/// normal: evidence windows start well before the alert.
fn quiet_prefix(window: &[(i64, f64)]) -> usize {
    let n = window.len();
    let third = n.div_ceil(3).clamp(1, n.saturating_sub(1).max(1));
    if n < 4 {
        return third;
    }
    let sums = PrefixSums::new(window.iter().map(|p| p.1));
    let sse = |a: usize, b: usize| sums.sse(a, b);
    let total = sse(0, n);
    if total <= 0.0 {
        return third;
    }
    let (k, best) =
        (2..=n - 2)
            .map(|k| (k, sse(0, k) + sse(k, n)))
            .fold(
                (third, f64::INFINITY),
                |acc, x| if x.1 < acc.1 { x } else { acc },
            );
    if best < 0.5 * total {
        k
    } else {
        third
    }
}

/// The series cut into steady stretches: where each begins (the first at 0). Optimal
/// partitioning into segments of constant level by least squares, each further segment
/// costing 2σ²·ln n (the BIC penalty of one mean and one change point), σ the noise measured
/// on successive differences so that the level shifts being looked for do not inflate it.
/// Segments hold at least two points; PELT pruning keeps the search near linear.
fn stretches(values: &[f64]) -> Vec<usize> {
    let n = values.len();
    if n < 4 {
        return vec![0];
    }
    let diffs = sorted(values.windows(2).map(|w| (w[1] - w[0]).abs()));
    let mut sigma = 1.4826 * median(&diffs) / std::f64::consts::SQRT_2;
    if sigma < 1e-12 {
        // Mostly flat with a few steps: the mean difference still sees the noise there is.
        sigma = 1.2533 * diffs.iter().sum::<f64>() / diffs.len() as f64 / std::f64::consts::SQRT_2;
    }
    if sigma < 1e-12 {
        return vec![0];
    }
    let penalty = 2.0 * sigma * sigma * (n as f64).ln();
    let sums = PrefixSums::new(values.iter().copied());
    let sse = |a: usize, b: usize| sums.sse(a, b).max(0.0);
    const MIN_LEN: usize = 2;
    // best[t]: the cheapest cut of values[..t]; from[t]: where its last segment starts.
    let mut best = vec![f64::INFINITY; n + 1];
    let mut from = vec![0usize; n + 1];
    best[0] = -penalty;
    let mut candidates: Vec<usize> = vec![0];
    for t in MIN_LEN..=n {
        let mut chosen = (f64::INFINITY, 0);
        for &s in candidates.iter().filter(|&&s| t - s >= MIN_LEN) {
            let cost = best[s] + sse(s, t) + penalty;
            if cost < chosen.0 {
                chosen = (cost, s);
            }
        }
        best[t] = chosen.0;
        from[t] = chosen.1;
        // A start that already costs more than the best cut plus a segment never wins later.
        candidates.retain(|&s| t - s < MIN_LEN || best[s] + sse(s, t) <= best[t]);
        if t <= n - MIN_LEN {
            candidates.push(t);
        }
    }
    let mut starts = Vec::new();
    let mut t = n;
    while t > 0 {
        t = from[t];
        starts.push(t);
    }
    starts.reverse();
    starts
}

/// When the window's latest stretch began recently (in its last third) and an earlier
/// excursion ended before it, the stretch just before it: the level the series had when the
/// current change began. The window's start can lie inside an older incident (incidents
/// overlap), and measuring against it makes an older fault the normal.
fn stretch_before_change(values: &[f64]) -> Option<&[f64]> {
    let starts = stretches(values);
    let n = values.len();
    let &[.., prev, last] = starts.as_slice() else {
        return None;
    };
    if starts.len() < 3 || last < n - n / 3 || last - prev < 3 {
        return None;
    }
    // The stretch before must be the series' usual level, not the older excursion itself
    // (which a recovery now would follow): nearer the window's typical level than the current.
    let level = |r: &[f64]| median(&sorted(r.iter().copied()));
    let typical = level(&values[..last]);
    let before = &values[prev..last];
    ((level(before) - typical).abs() < (level(&values[last..]) - typical).abs()).then_some(before)
}

/// The reference a window is compared with: the baseline when it is usable, else the window's
/// own quiet start, or the steady stretch just before a recent change (flagged as estimated).
fn reference(window: &[(i64, f64)], baseline: &[f64]) -> (Vec<f64>, bool) {
    let base_all_zero = baseline.iter().all(|v| v.abs() < 1e-12);
    let early_n = window
        .len()
        .div_ceil(3)
        .clamp(1, window.len().saturating_sub(1).max(1));
    let early_sorted = sorted(window[..early_n].iter().map(|p| p.1));
    let early_level = median(&early_sorted).abs();
    // A baseline of zeros while the window's own quiet start is clearly non-zero is a broken
    // baseline (a missing export, a renamed series), not a week of silence.
    let degenerate = baseline.len() < 3 || (base_all_zero && early_level > 1e-9);
    if degenerate {
        let values: Vec<f64> = window.iter().map(|p| p.1).collect();
        if let Some(before) = stretch_before_change(&values) {
            return (before.to_vec(), true);
        }
        let k = quiet_prefix(window);
        (window[..k].iter().map(|p| p.1).collect(), true)
    } else {
        (baseline.to_vec(), false)
    }
}

/// The ceiling of a ratio whose bad direction is down (availability, success, hit ratio):
/// 100 for percentages, 1 for fractions. `None` for anything else.
fn ratio_ceiling(
    series: &MetricSeries,
    toks: &[String],
    direction: BadDirection,
    values: impl Iterator<Item = f64> + Clone,
) -> Option<f64> {
    if direction != BadDirection::Down {
        return None;
    }
    let unit = series.unit.trim().to_ascii_lowercase();
    let percent =
        matches!(unit.as_str(), "percent" | "%" | "pct") || has_any(toks, &["percent", "pct"]);
    let ratio = unit == "ratio"
        || has_any(
            toks,
            &[
                "availability",
                "available",
                "success",
                "successful",
                "ratio",
                "apdex",
                "uptime",
            ],
        );
    if !percent && !ratio {
        return None;
    }
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    let top = if percent || max > 1.0 { 100.0 } else { 1.0 };
    let mut values = values;
    values
        .all(|v| v >= -1e-9 && v <= top * (1.0 + 1e-9))
        .then_some(top)
}

/// Request counts of the same service by timestamp, when `volume` is a count per sample.
fn counts_at(volume: Option<&MetricSeries>) -> Vec<(i64, f64)> {
    volume.map(|v| usable(&v.points)).unwrap_or_default()
}

fn count_near(counts: &[(i64, f64)], t: i64) -> Option<f64> {
    counts
        .iter()
        .min_by_key(|(ct, _)| (ct - t).abs())
        .filter(|(ct, _)| (ct - t).abs() <= 90)
        .map(|(_, n)| *n)
}

/// Measures one series against its baseline. `None` when fewer than 2 usable points.
pub fn deviation(series: &MetricSeries, alert_time: Timestamp) -> Option<Deviation> {
    deviation_with(series, alert_time, None)
}

/// [`deviation`], with the service's request count per sample (`volume`) when known: a ratio
/// measured over few requests moves in steps of one request, and one failed request out of
/// three is not an outage.
pub fn deviation_with(
    series: &MetricSeries,
    alert_time: Timestamp,
    volume: Option<&MetricSeries>,
) -> Option<Deviation> {
    let _ = alert_time; // the stage already cut the window around the alert
    let window = usable(&series.points);
    if window.len() < 2 {
        return None;
    }
    let base: Vec<f64> = series
        .baseline
        .iter()
        .filter_map(|&(_, v)| v.filter(|x| x.is_finite()))
        .collect();
    let (reference, estimated) = reference(&window, &base);
    let ref_sorted = sorted(reference.iter().copied());
    let med = median(&ref_sorted);
    let abs_dev = sorted(ref_sorted.iter().map(|v| (v - med).abs()));
    let mad = 1.4826 * median(&abs_dev);
    let iqr = (quantile(&ref_sorted, 0.75) - quantile(&ref_sorted, 0.25)) / 1.349;
    let mut spread = mad.max(iqr);
    if spread < 1e-12 && !abs_dev.is_empty() {
        // A flat baseline with rare excursions (availability at 100 but for one dip): the mean
        // absolute deviation still sees them.
        spread = 1.2533 * abs_dev.iter().sum::<f64>() / abs_dev.len() as f64;
    }
    let toks = tokens(&series.name);
    let direction = bad_direction_of(&toks, &series.unit);
    let all = || window.iter().map(|p| p.1).chain(reference.iter().copied());
    let max_abs = all().map(f64::abs).fold(0.0_f64, f64::max);
    let ceiling = ratio_ceiling(series, &toks, direction, all());
    // Floors keep a flat baseline (replicas always 4, zero evictions) from dividing by zero:
    // 2% of the level, or 0.1% of the largest magnitude seen. For a ratio the level is the
    // failing share (100 - availability): availability sitting at exactly 100 then dropping to
    // 97 is 3% of requests failing, a large deviation.
    // Whole-number series (sessions, replicas, restarts) move in steps of one: a step is not
    // an anomaly, so their spread is at least half a step.
    let integral = ceiling.is_none() && max_abs >= 1.0 && all().all(|v| v.fract() == 0.0);
    let relative = match ceiling {
        Some(top) => (0.02 * (top - med).abs()).max(1e-3 * top),
        None => (0.02 * med.abs()).max(1e-3 * max_abs),
    };
    let scale = spread.max(relative).max(if integral { 0.5 } else { 1e-9 });
    let counts = if ceiling.is_some() {
        counts_at(volume)
    } else {
        Vec::new()
    };
    // A ratio over no requests at all (availability 0 of 0) says nothing.
    let mut window = window;
    window.retain(|p| count_near(&counts, p.0).is_none_or(|n| n > 0.0));
    if window.len() < 2 {
        return None;
    }
    if let (Some(top), Some(vol)) = (ceiling, volume) {
        if let Some(d) = failure_counts(series, &window, &base, top, vol, &counts) {
            return Some(d);
        }
    }
    // Heavy tails (a p99 over a handful of requests) defeat a spread measured on the middle of
    // the baseline: a value the baseline itself reached is not an anomaly, however many IQRs
    // away from the median it is.
    let (ref_lo, ref_hi) = (
        ref_sorted.first().copied().unwrap_or(med),
        ref_sorted.last().copied().unwrap_or(med),
    );
    let range_known = !estimated && ref_sorted.len() >= 8;
    let scale_at = |t: i64| -> f64 {
        // One request's worth of the ratio is its resolution.
        let step = match (ceiling, count_near(&counts, t)) {
            (Some(top), Some(n)) => top / n.max(1.0),
            _ => 0.0,
        };
        scale.max(step)
    };
    let signed = |z: f64| match direction {
        BadDirection::Up => z,
        BadDirection::Down => -z,
        BadDirection::Either => z.abs(),
    };
    let bad = |t: i64, v: f64| -> f64 {
        let z = signed((v - med) / scale_at(t));
        let inside = match direction {
            BadDirection::Up => v <= ref_hi,
            BadDirection::Down => v >= ref_lo,
            BadDirection::Either => v >= ref_lo && v <= ref_hi,
        };
        if range_known && inside {
            z.min(BAND_SCORE - 0.5)
        } else {
            z
        }
    };
    let raw: Vec<f64> = window.iter().map(|p| bad(p.0, p.1)).collect();
    // The least deviant of the window's first points (a quarter of them, at least one) tells
    // whether the series was already off before anything started here.
    let early_k = (window.len() / 4).max(1);
    let (early_i, early) =
        raw[..early_k]
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f64::INFINITY),
                |acc, (i, z)| if z < acc.1 { (i, z) } else { acc },
            );
    // Symptoms and traffic that were already off belong to another regime (a baseline from
    // another day or release) or to an older problem: they are measured from where the window
    // started, and with a spread of at least 10% of that level, since the baseline's spread
    // does not describe the new regime. A resource that was already running out (a disk filling
    // for days, a certificate nearing expiry) is a latent cause: half of its earlier deviation
    // still counts.
    let keep = if metric_kind_of(&toks) == MetricKind::Cause {
        0.5
    } else {
        0.0
    };
    let shifted = !estimated && early > 2.0;
    let latent = keep > 0.0;
    let early_v = window[early_i].1;
    let mut floor = 0.0;
    let mut scores: Vec<f64> = if shifted && latent {
        // Half of what was already there, all of what came on top.
        raw.iter().map(|z| z - (1.0 - keep) * early).collect()
    } else if shifted {
        let center = early_v;
        floor = 0.1
            * match ceiling {
                Some(top) => (top - center).abs().max(1e-3 * top),
                None => center.abs(),
            };
        // Traffic already away from its baseline gets worse by moving further away; coming
        // back is recovery.
        let away = if early_v >= med { 1.0 } else { -1.0 };
        window
            .iter()
            .map(|p| {
                let z = (p.1 - center) / scale_at(p.0).max(floor);
                match direction {
                    BadDirection::Either => away * z,
                    _ => signed(z),
                }
            })
            .collect()
    } else {
        raw
    };
    // Nothing is anomalous that is no worse than where the window started: with ratios over
    // few requests, one request's worth changes from sample to sample and can fake a change.
    let latent_condition = shifted && latent;
    if !estimated && !latent_condition {
        for (sc, p) in scores.iter_mut().zip(window.iter()) {
            let worse = match direction {
                BadDirection::Up => p.1 > early_v,
                BadDirection::Down => p.1 < early_v,
                BadDirection::Either => (p.1 - med).abs() > (early_v - med).abs(),
            };
            if !worse {
                *sc = sc.min(BAND_SCORE - 0.5);
            }
        }
    }
    let pre_existing = if shifted { early } else { 0.0 };
    let best_i = argmax(&scores);
    let score = scores[best_i].clamp(-MAX_SCORE, MAX_SCORE);
    let magnitude = score.max(0.0) * scale_at(window[best_i].0).max(floor);
    Some(finish(
        series,
        &window,
        scores,
        Measured {
            baseline: med,
            direction,
            estimated,
            pre_existing,
            magnitude,
            failing_share: ceiling.map(|top| (magnitude / top).clamp(0.0, 1.0)),
            failing_requests: ceiling
                .and_then(|top| count_near(&counts, window[best_i].0).map(|n| magnitude / top * n)),
            requests: counts_at(volume),
        },
    ))
}

fn argmax(scores: &[f64]) -> usize {
    scores
        .iter()
        .copied()
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |acc, (i, s)| if s > acc.1 { (i, s) } else { acc },
        )
        .0
}

/// What a scoring path found, besides the per-point scores.
struct Measured {
    baseline: f64,
    direction: BadDirection,
    estimated: bool,
    pre_existing: f64,
    magnitude: f64,
    failing_share: Option<f64>,
    failing_requests: Option<f64>,
    requests: Vec<(i64, f64)>,
}

/// Onset, persistence and the record, from per-point scores (bad direction, after any
/// pre-existing level is taken off).
fn finish(
    series: &MetricSeries,
    window: &[(i64, f64)],
    scores: Vec<f64>,
    m: Measured,
) -> Deviation {
    let best_i = argmax(&scores);
    let score = scores[best_i].clamp(-MAX_SCORE, MAX_SCORE);
    let mut onset = None;
    let mut persistence = 0.0;
    if score >= BAND_SCORE {
        let out: Vec<bool> = scores.iter().map(|s| *s >= BAND_SCORE).collect();
        // First point that leaves the band and is confirmed by one of the next two; a lone
        // excursion falls back to the most deviant point itself.
        let confirmed = (0..out.len()).find(|&i| {
            out[i] && (i + 1 == out.len() || out[i + 1] || out.get(i + 2).copied().unwrap_or(false))
        });
        let start = confirmed.unwrap_or(best_i);
        let tail = &out[start..];
        persistence = tail.iter().filter(|o| **o).count() as f64 / tail.len() as f64;
        onset = DateTime::from_timestamp(window[start].0, 0);
    }
    let last = *window.last().expect("at least two points");
    Deviation {
        anomaly: MetricAnomaly {
            service: series.service.clone(),
            metric: series.name.clone(),
            unit: series.unit.clone(),
            current: window[best_i].1,
            baseline: m.baseline,
            score: round2(score),
            direction: m.direction,
            onset,
            baseline_estimated: m.estimated,
        },
        persistence,
        last,
        pre_existing: m.pre_existing,
        magnitude: m.magnitude,
        failing_share: m.failing_share,
        failing_requests: m.failing_requests,
        requests_at_peak: count_near(&m.requests, window[best_i].0),
        profile: window
            .iter()
            .zip(scores.iter())
            .map(|(p, s)| (p.0, s.clamp(-MAX_SCORE, MAX_SCORE)))
            .collect(),
    }
}

/// Signed Poisson deviance residual of `k` events where `lambda` were expected: about a
/// standard normal score, positive when there are more than expected.
fn poisson_z(k: f64, lambda: f64) -> f64 {
    let lambda = lambda.max(1e-9);
    let term = if k > 0.0 { k * (k / lambda).ln() } else { 0.0 };
    let d = (2.0 * (term - (k - lambda))).max(0.0).sqrt();
    if k >= lambda {
        d
    } else {
        -d
    }
}

/// An availability-like ratio with the service's request count per sample: failures are
/// counted (share x requests) and compared with what the baseline's failure rate predicts,
/// as Poisson counts. Three failures where the baseline never failed in thousands of
/// requests are a strong signal; three where it fails that often are not. `None` when some
/// point has no request count.
fn failure_counts(
    series: &MetricSeries,
    window: &[(i64, f64)],
    base: &[f64],
    top: f64,
    volume: &MetricSeries,
    counts: &[(i64, f64)],
) -> Option<Deviation> {
    let n: Vec<f64> = window
        .iter()
        .map(|p| count_near(counts, p.0))
        .collect::<Option<Vec<f64>>>()?;
    let share = |v: f64| ((top - v) / top).clamp(0.0, 1.0);
    let base_volume: f64 = usable(&volume.baseline).iter().map(|p| p.1.max(0.0)).sum();
    let mut sorted_n = n.clone();
    sorted_n.sort_by(f64::total_cmp);
    let n_med = median(&sorted_n).max(1.0);
    let base_requests = if base_volume > 0.0 {
        base_volume
    } else {
        n_med * base.len() as f64
    };
    // With no failure in the baseline, the rate is below one in all its requests.
    let floor = 0.5 / base_requests.max(1.0);
    let estimated = base.len() < 3 || base.iter().all(|v| v.abs() < 1e-12);
    let early_k = (window.len() / 4).max(1);
    let p_base = if estimated {
        window[..early_k].iter().map(|p| share(p.1)).sum::<f64>() / early_k as f64
    } else {
        base.iter().map(|v| share(*v)).sum::<f64>() / base.len() as f64
    };
    let z_with = |p0: f64| -> Vec<f64> {
        window
            .iter()
            .zip(n.iter())
            .map(|(p, n)| poisson_z(share(p.1) * n, p0.max(floor) * n))
            .collect()
    };
    let raw = z_with(p_base);
    let early_i = argmax(&raw[..early_k].iter().map(|z| -z).collect::<Vec<f64>>());
    // Failing already at the start of the window: that rate is the reference.
    let shifted = !estimated && raw[early_i] > 2.0;
    let early_share = share(window[early_i].1);
    let p0 = if shifted { early_share } else { p_base }.max(floor);
    let mut scores = if shifted { z_with(p0) } else { raw.clone() };
    if !estimated {
        for (sc, p) in scores.iter_mut().zip(window.iter()) {
            if share(p.1) <= early_share {
                *sc = sc.min(BAND_SCORE - 0.5);
            }
        }
    }
    let best_i = argmax(&scores);
    let excess_share = (share(window[best_i].1) - p0).max(0.0);
    let direction = BadDirection::Down;
    Some(finish(
        series,
        window,
        scores,
        Measured {
            baseline: top * (1.0 - p0),
            direction,
            estimated,
            pre_existing: if shifted { raw[early_i] } else { 0.0 },
            magnitude: excess_share * top,
            failing_share: Some(excess_share),
            failing_requests: Some(excess_share * n[best_i]),
            requests: counts.to_vec(),
        },
    ))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Robust deviation of a series from its baseline, signed so that positive means "in the bad
/// direction". Returned for every series with at least 2 usable points: callers decide what
/// counts (see [`is_significant`]).
pub fn anomaly(series: &MetricSeries, alert_time: Timestamp) -> Option<MetricAnomaly> {
    deviation(series, alert_time).map(|d| d.anomaly)
}

pub fn is_significant(a: &MetricAnomaly) -> bool {
    a.score >= SIGNIFICANT_SCORE
}

/// Compact human number: `0.47`, `1570`, `2.1e10`.
pub(crate) fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{x:.2e}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[f64], baseline: &[Option<f64>]) -> MetricSeries {
        MetricSeries {
            service: "svc".into(),
            name: name.into(),
            unit: String::new(),
            points: points
                .iter()
                .enumerate()
                .map(|(i, v)| (1_700_000_000 + 60 * i as i64, Some(*v)))
                .collect(),
            baseline: baseline
                .iter()
                .enumerate()
                .map(|(i, v)| (1_699_000_000 + 60 * i as i64, *v))
                .collect(),
        }
    }

    fn at() -> Timestamp {
        DateTime::from_timestamp(1_700_001_000, 0).unwrap()
    }

    #[test]
    fn error_spike_scores_high_with_onset_at_the_jump() {
        let mut pts = vec![0.002; 15];
        pts.extend(vec![0.45; 10]);
        let base: Vec<Option<f64>> = (0..25)
            .map(|i| Some(0.001 + 0.0002 * (i % 5) as f64))
            .collect();
        let a = anomaly(&series("error_rate", &pts, &base), at()).unwrap();
        assert!(a.score > 100.0, "{a:?}");
        assert_eq!(a.current, 0.45);
        assert!(!a.baseline_estimated);
        assert_eq!(a.onset.unwrap().timestamp(), 1_700_000_000 + 15 * 60);
    }

    #[test]
    fn quiet_series_is_not_significant() {
        let pts: Vec<f64> = (0..20).map(|i| 40.0 + (i % 4) as f64).collect();
        let base: Vec<Option<f64>> = (0..20).map(|i| Some(40.0 + (i % 3) as f64)).collect();
        let a = anomaly(&series("request_rate", &pts, &base), at()).unwrap();
        assert!(!is_significant(&a), "{a:?}");
        assert!(a.onset.is_none());
    }

    #[test]
    fn availability_drop_is_positive_and_increase_is_not() {
        let mut pts = vec![100.0; 6];
        pts.extend([80.0, 75.0, 70.0]);
        let base: Vec<Option<f64>> = (0..9).map(|i| Some(99.5 + 0.1 * (i % 3) as f64)).collect();
        let a = anomaly(&series("availability_avg", &pts, &base), at()).unwrap();
        assert!(a.score > SIGNIFICANT_SCORE && a.current == 70.0, "{a:?}");
        let b = anomaly(&series("latency_p99", &[1.0, 1.0, 0.2, 0.2], &base), at()).unwrap();
        assert!(
            b.score < SIGNIFICANT_SCORE,
            "a latency drop is not bad: {b:?}"
        );
    }

    #[test]
    fn broken_zero_baseline_falls_back_to_the_window() {
        // PetShop-style: baseline all zeros while the window sits at ~100 and then dips.
        let pts = [100.0, 100.0, 99.9, 100.0, 100.0, 100.0, 85.0, 80.0, 82.0];
        let base = vec![Some(0.0); 9];
        let a = anomaly(&series("availability_avg", &pts, &base), at()).unwrap();
        assert!(a.baseline_estimated);
        assert!(a.score > SIGNIFICANT_SCORE, "{a:?}");
        assert!((a.baseline - 100.0).abs() < 0.5);
        // All-null baseline: same fallback.
        let a = anomaly(&series("availability_avg", &pts, &[None, None, None]), at()).unwrap();
        assert!(a.baseline_estimated);
    }

    // Nezha Online Boutique, the day's third incident (frontend CPU, no baseline yet): the
    // window opens during the first incident's CPU surge on the same pod, settles, and surges
    // again two minutes before the alert.
    const OLDER_SURGE_THEN_CURRENT: [f64; 22] = [
        26.7, 28.6, 25.7, 80.5, 81.4, 100.2, 82.7, 104.5, 104.9, 87.7, 23.6, 26.1, 15.0, 15.5,
        13.2, 27.6, 19.7, 20.7, 25.7, 27.2, 99.6, 99.9,
    ];

    #[test]
    fn without_a_baseline_the_normal_is_the_level_before_the_current_change() {
        let cpu = series("cpu_usage_rate", &OLDER_SURGE_THEN_CURRENT, &[]);
        let a = anomaly(&cpu, at()).unwrap();
        assert!(a.baseline_estimated);
        assert!(
            is_significant(&a),
            "the surge now is not normal because an older one was in the window: {a:?}"
        );
        assert!(a.baseline < 30.0, "{a:?}");
        let starts = stretches(&OLDER_SURGE_THEN_CURRENT);
        assert!(
            starts.ends_with(&[10, 20]),
            "the settled stretch, then the current surge: {starts:?}"
        );
    }

    #[test]
    fn without_a_baseline_a_recovery_is_not_measured_against_the_older_excursion() {
        // An older surge that ends just before the alert: the normal stays the usual level the
        // series is back at, not the surge (against which the recovery would look like a drop).
        let mut pts: Vec<f64> = (0..12).map(|i| 20.0 + (i % 3) as f64).collect();
        pts.extend([90.0, 92.0, 91.0, 95.0, 90.0, 93.0]);
        pts.extend([21.0, 20.0, 22.0]);
        let a = anomaly(&series("workload", &pts, &[]), at()).unwrap();
        assert!(a.baseline_estimated);
        assert!(a.baseline < 30.0, "{a:?}");
    }

    #[test]
    fn steady_noise_is_one_stretch() {
        let noisy: Vec<f64> = (0..40)
            .map(|i| 50.0 + [3.0, -2.0, 1.0, -4.0, 2.0, 0.0, -1.0][i % 7])
            .collect();
        assert_eq!(stretches(&noisy), vec![0]);
        assert_eq!(stretches(&[5.0; 30]), vec![0]);
    }

    #[test]
    fn genuine_zero_baseline_is_kept_and_flat_spread_is_guarded() {
        let pts = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 500.0, 1200.0, 1500.0];
        let base = vec![Some(0.0); 9];
        let a = anomaly(&series("WriteThrottleEvents", &pts, &base), at()).unwrap();
        assert!(!a.baseline_estimated, "the window's own start is zero too");
        assert!(a.score.is_finite() && a.score >= SIGNIFICANT_SCORE && a.score <= MAX_SCORE);
        let flat = anomaly(&series("ready_replicas", &[4.0; 9], &[Some(4.0); 9]), at()).unwrap();
        assert_eq!(flat.score, 0.0);
    }

    #[test]
    fn too_few_points_is_none() {
        assert!(anomaly(&series("error_rate", &[0.5], &[]), at()).is_none());
        let mut s = series("error_rate", &[0.5, 0.4], &[]);
        s.points[1].1 = None;
        assert!(anomaly(&s, at()).is_none());
    }

    #[test]
    fn lone_spike_has_low_persistence() {
        let mut pts = vec![1.0; 20];
        pts[10] = 2.7;
        let base: Vec<Option<f64>> = (0..20)
            .map(|i| Some(0.95 + 0.02 * (i % 5) as f64))
            .collect();
        let d = deviation(&series("cpu_usage_cores", &pts, &base), at()).unwrap();
        assert!(d.anomaly.score > SIGNIFICANT_SCORE);
        assert!(d.persistence < 0.2, "{d:?}");
    }

    fn with_points(name: &str, points: &[Option<f64>], baseline: &[Option<f64>]) -> MetricSeries {
        let mut s = series(name, &[], baseline);
        s.points = points
            .iter()
            .enumerate()
            .map(|(i, v)| (1_700_000_000 + 300 * i as i64, *v))
            .collect();
        s
    }

    fn noisy(level: f64, spread: f64, n: usize) -> Vec<Option<f64>> {
        (0..n)
            .map(|i| Some(level + spread * ((i % 5) as f64 - 2.0) / 2.0))
            .collect()
    }

    #[test]
    fn a_level_already_off_at_the_window_start_is_not_this_incident() {
        // Latency three times the baseline from the first point on, flat: another regime.
        let pts: Vec<Option<f64>> = vec![Some(3.0), Some(3.01), Some(2.99), Some(3.02), Some(3.0)];
        let d = deviation(
            &with_points("latency_avg", &pts, &noisy(1.0, 0.02, 36)),
            at(),
        )
        .unwrap();
        assert!(d.anomaly.score < SIGNIFICANT_SCORE, "{d:?}");
        assert!(d.pre_existing > SIGNIFICANT_SCORE);
        // The same level reached only after the start is an incident.
        let pts: Vec<Option<f64>> = vec![Some(1.0), Some(1.01), Some(3.0), Some(3.02), Some(3.0)];
        let d = deviation(
            &with_points("latency_avg", &pts, &noisy(1.0, 0.02, 36)),
            at(),
        )
        .unwrap();
        assert!(d.anomaly.score > 50.0 && d.pre_existing == 0.0, "{d:?}");
        // A resource that was already running out keeps half of its deviation.
        let pts: Vec<Option<f64>> = vec![Some(0.9), Some(0.9), Some(0.9), Some(0.9), Some(0.9)];
        let d = deviation(
            &with_points("disk_used_ratio", &pts, &noisy(0.5, 0.01, 36)),
            at(),
        )
        .unwrap();
        assert!(d.anomaly.score > SIGNIFICANT_SCORE, "{d:?}");
    }

    #[test]
    fn recovering_traffic_is_not_a_new_anomaly() {
        // Requests collapsed before the window started, then came back.
        let pts = [Some(0.0), Some(0.0), Some(81.0), Some(141.0), Some(146.0)];
        let d = deviation(
            &with_points("requests_sum", &pts, &noisy(142.0, 4.0, 36)),
            at(),
        )
        .unwrap();
        assert!(d.anomaly.score < SIGNIFICANT_SCORE, "{d:?}");
    }

    #[test]
    fn a_value_the_baseline_itself_reached_is_not_an_anomaly() {
        // A tail-heavy p99: narrow middle, occasional spikes to 1.3 s.
        let mut base = noisy(0.15, 0.02, 36);
        base[7] = Some(1.3);
        base[22] = Some(1.1);
        let pts = [Some(0.15), Some(0.16), Some(1.2), Some(0.15), Some(0.16)];
        let d = deviation(&with_points("latency_p99", &pts, &base), at()).unwrap();
        assert!(d.anomaly.score < SIGNIFICANT_SCORE, "{d:?}");
        let pts = [Some(0.15), Some(0.16), Some(4.0), Some(3.5), Some(0.16)];
        let d = deviation(&with_points("latency_p99", &pts, &base), at()).unwrap();
        assert!(d.anomaly.score > SIGNIFICANT_SCORE, "{d:?}");
    }

    #[test]
    fn availability_with_request_counts_is_scored_as_failed_requests() {
        let base = vec![Some(100.0); 36];
        let volume = |n: f64| {
            let mut v = with_points("requests_sum", &[Some(n); 5], &vec![Some(n); 36]);
            v.unit = "count".into();
            v
        };
        // 3 of 134 requests failing where thousands never failed: a real signal.
        let pts = [
            Some(100.0),
            Some(100.0),
            Some(97.76),
            Some(99.25),
            Some(100.0),
        ];
        let d = deviation_with(
            &with_points("availability_avg", &pts, &base),
            at(),
            Some(&volume(134.0)),
        )
        .unwrap();
        assert!(d.anomaly.score >= SIGNIFICANT_SCORE, "{d:?}");
        let failed = d.failing_requests.unwrap();
        assert!((failed - 3.0).abs() < 0.1, "{failed}");
        assert!((d.failing_share.unwrap() - 0.0224).abs() < 1e-3);
        // One failure out of three requests: a third of the requests, but no outage.
        let pts = [
            Some(100.0),
            Some(100.0),
            Some(66.67),
            Some(100.0),
            Some(100.0),
        ];
        let d = deviation_with(
            &with_points("availability_avg", &pts, &base),
            at(),
            Some(&volume(3.0)),
        )
        .unwrap();
        assert!(d.anomaly.score < SIGNIFICANT_SCORE, "{d:?}");
        // Availability over no requests at all says nothing.
        let mut none = volume(0.0);
        none.points[2].1 = Some(5.0);
        let pts = [Some(0.0), Some(0.0), Some(100.0), Some(0.0), Some(0.0)];
        let d = deviation_with(
            &with_points("availability_avg", &pts, &base),
            at(),
            Some(&none),
        );
        assert!(d.is_none(), "{d:?}");
    }
}

//! From the analysis' raw confidence to a probability that the first candidate is right.
//!
//! The raw figure ([`super::confidence`]) counts kinds of evidence that agree and how clearly the
//! first candidate leads; it orders incidents from doubtful to sure, but its scale is ours, not
//! the world's: on metrics-only incidents it never climbs past about 0.56 even where the first
//! candidate is nearly always right. A calibration maps it onto observed accuracy with a
//! monotone step fit (isotonic regression by pool-adjacent-violators, the standard way to
//! calibrate a score without assuming its shape), so the ordering is kept and only the scale
//! moves. Fitted on several systems, the map keeps the lowest accuracy any of them showed at
//! each raw value ([`Calibration::fit_worst_case`]): acting needs a figure that held everywhere.
//!
//! The shipped map is `calibration.json`, written by `iras eval --write-calibration`; `iras eval`
//! over several sets never reports a set through a map fitted on that set (it fits
//! leave-one-set-out), so the figures it prints are out-of-sample.
//!
//! It ships empty (raw confidence) for now, because no fit has yet been better out of sample
//! than raw: a pooled fit of the five development sets reads raw 0.42 as 0.80 (PetShop is
//! nearly always right there) and, left out of the fit, TrainTicket is then confidently wrong
//! on half its incidents; the worst-case fit is safe but its calibration error is higher than
//! raw on every set. Raw confidence means different things on different systems; a map needs
//! inputs that tell them apart before it can ship.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// Probabilities are kept off 0 and 1: no amount of past agreement makes a new incident certain.
const FLOOR: f64 = 0.01;
const CEILING: f64 = 0.99;

/// A monotone map from raw confidence to probability: `points` are (raw, probability) pairs,
/// raw ascending, probability non-decreasing; between points the map is linear, beyond the
/// ends it is flat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub points: Vec<(f64, f64)>,
}

/// The shipped map with where it came from, as `calibration.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFile {
    /// Whose raw confidence it maps (`offline`).
    pub analyst: String,
    /// The sets it was fitted on and how many incidents each gave.
    pub fit_on: Vec<FitSet>,
    #[serde(flatten)]
    pub calibration: Calibration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSet {
    pub set: String,
    pub n: usize,
}

static SHIPPED: LazyLock<CalibrationFile> = LazyLock::new(|| {
    // A unit test holds that the file parses; an unparsable one would mean raw confidence.
    serde_json::from_str(include_str!("calibration.json")).unwrap_or_else(|_| CalibrationFile {
        analyst: "offline".into(),
        fit_on: Vec::new(),
        calibration: Calibration::identity(),
    })
});

impl Calibration {
    /// Raw confidence unchanged (clamped like any probability).
    pub fn identity() -> Calibration {
        Calibration { points: Vec::new() }
    }

    /// The map IRAS ships (`calibration.json`).
    pub fn shipped() -> &'static Calibration {
        &SHIPPED.calibration
    }

    /// The shipped map with the sets it was fitted on.
    pub fn shipped_file() -> &'static CalibrationFile {
        &SHIPPED
    }

    /// Fits the map on `(raw confidence, first candidate right)` pairs. Equal raw values are
    /// pooled first (they are indistinguishable to the map); pool-adjacent-violators then merges
    /// neighbouring blocks until accuracy never falls as raw rises; each block's accuracy is
    /// smoothed towards ½ by one hit and one miss (Laplace), so a block of three right answers
    /// reads 0.8 rather than a certainty. No pairs: the identity.
    pub fn fit(pairs: &[(f64, bool)]) -> Calibration {
        let mut sorted: Vec<(f64, bool)> = pairs
            .iter()
            .copied()
            .filter(|(raw, _)| raw.is_finite())
            .collect();
        if sorted.is_empty() {
            return Calibration::identity();
        }
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Blocks: (sum of raw, hits, count).
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        let mut last_raw = f64::NAN;
        for (raw, hit) in sorted {
            let h = f64::from(u8::from(hit));
            match blocks.last_mut() {
                Some(b) if raw == last_raw => {
                    b.0 += raw;
                    b.1 += h;
                    b.2 += 1.0;
                }
                _ => blocks.push((raw, h, 1.0)),
            }
            last_raw = raw;
            // Merge backwards while the newest block is less accurate than the one before.
            while blocks.len() >= 2 {
                let n = blocks.len();
                let (prev, cur) = (blocks[n - 2], blocks[n - 1]);
                if cur.1 / cur.2 >= prev.1 / prev.2 {
                    break;
                }
                blocks.truncate(n - 2);
                blocks.push((prev.0 + cur.0, prev.1 + cur.1, prev.2 + cur.2));
            }
        }
        // The blocks' raw accuracies now rise; smoothing can reorder a small block and a large
        // one (2 of 2 reads 0.75, 9 of 10 reads 0.83), so a running maximum keeps the map monotone.
        let mut points = Vec::with_capacity(blocks.len());
        let mut floor: f64 = 0.0;
        for (sum, hits, n) in blocks {
            let p = ((hits + 1.0) / (n + 2.0)).max(floor);
            floor = p;
            points.push((round3(sum / n), round3(p)));
        }
        Calibration { points }
    }

    /// Fits one map per group (a system, a dataset) and keeps, at every raw value, the lowest
    /// probability any of them gives. One pooled fit reads the same raw figure as the average
    /// system's accuracy, and raw confidence does not mean the same on every system (0.45 is
    /// nearly always right on one, mostly wrong on another), so a pooled map would make IRAS act
    /// on the systems where that figure is wrong. The lowest is what held on every system seen.
    /// Groups with no pairs are ignored; none at all gives the identity.
    pub fn fit_worst_case(groups: &[Vec<(f64, bool)>]) -> Calibration {
        let fits: Vec<Calibration> = groups
            .iter()
            .filter(|g| !g.is_empty())
            .map(|g| Calibration::fit(g))
            .collect();
        if fits.len() <= 1 {
            return fits
                .into_iter()
                .next()
                .unwrap_or_else(Calibration::identity);
        }
        let mut xs: Vec<f64> = fits
            .iter()
            .flat_map(|f| f.points.iter().map(|p| p.0))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        // A group speaks only where it has data (between its first and last block): flat
        // extrapolation would let a system seen only at low raw values veto the high ones.
        let mut points: Vec<(f64, f64)> = xs
            .into_iter()
            .map(|x| {
                let p = fits
                    .iter()
                    .filter(|f| f.points[0].0 <= x && x <= f.points[f.points.len() - 1].0)
                    .map(|f| f.exact(x))
                    .fold(f64::INFINITY, f64::min);
                (x, round3(p))
            })
            .collect();
        // Where a less accurate group's range begins the minimum can fall as raw rises; the
        // running minimum from the top keeps the map monotone on the cautious side.
        let mut ceiling = f64::INFINITY;
        for p in points.iter_mut().rev() {
            p.1 = p.1.min(ceiling);
            ceiling = p.1;
        }
        Calibration { points }
    }

    /// The probability that the first candidate is right at raw confidence `raw`, two decimals.
    pub fn apply(&self, raw: f64) -> f64 {
        (self.exact(raw).clamp(FLOOR, CEILING) * 100.0).round() / 100.0
    }

    fn exact(&self, raw: f64) -> f64 {
        let raw = if raw.is_finite() { raw } else { 0.0 };
        match self.points.as_slice() {
            [] => raw,
            [only] => only.1,
            points => {
                let first = points[0];
                let last = points[points.len() - 1];
                if raw <= first.0 {
                    first.1
                } else if raw >= last.0 {
                    last.1
                } else {
                    let i = points.partition_point(|p| p.0 <= raw);
                    let (a, b) = (points[i - 1], points[i]);
                    if b.0 > a.0 {
                        a.1 + (b.1 - a.1) * (raw - a.0) / (b.0 - a.0)
                    } else {
                        b.1
                    }
                }
            }
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_map_parses_and_is_monotone() {
        let shipped = serde_json::from_str::<CalibrationFile>(include_str!("calibration.json"))
            .expect("calibration.json is a calibration file");
        assert_eq!(shipped.analyst, "offline");
        for w in shipped.calibration.points.windows(2) {
            assert!(w[0].0 < w[1].0 && w[0].1 <= w[1].1, "{w:?}");
        }
        assert_eq!(Calibration::shipped(), &shipped.calibration);
    }

    #[test]
    fn the_fit_never_lowers_probability_as_raw_confidence_rises() {
        // Accuracy that dips in the middle: the dip is pooled with its neighbour.
        let pairs = [
            (0.1, false),
            (0.1, false),
            (0.2, true),
            (0.3, false),
            (0.3, false),
            (0.5, true),
            (0.5, true),
            (0.6, true),
            (0.9, true),
        ];
        let c = Calibration::fit(&pairs);
        for w in c.points.windows(2) {
            assert!(w[0].0 < w[1].0 && w[0].1 <= w[1].1, "{:?}", c.points);
        }
        let mut last = 0.0;
        for i in 0..=100 {
            let p = c.apply(i as f64 / 100.0);
            assert!(p >= last, "{p} after {last} at {i}");
            last = p;
        }
        // Mostly wrong below 0.3, always right above 0.5.
        assert!(c.apply(0.1) < 0.3, "{:?}", c.points);
        assert!(c.apply(0.6) > 0.7, "{:?}", c.points);
    }

    #[test]
    fn accuracy_is_smoothed_so_a_few_answers_never_make_a_certainty() {
        let c = Calibration::fit(&[(0.4, true), (0.4, true), (0.4, true)]);
        // (3 + 1) / (3 + 2)
        assert_eq!(c.apply(0.4), 0.8);
        assert_eq!(c.apply(0.0), 0.8, "flat beyond the ends");
        let wrong = Calibration::fit(&[(0.9, false), (0.9, false), (0.9, false)]);
        assert_eq!(wrong.apply(0.95), 0.2);
    }

    #[test]
    fn a_raw_figure_is_worth_what_it_was_worth_on_the_worst_system() {
        // The same raw 0.45: right 9 of 10 on one system, 1 of 10 on another.
        let sure = vec![(0.45, true); 9]
            .into_iter()
            .chain([(0.45, false)])
            .collect();
        let unsure: Vec<(f64, bool)> = vec![(0.45, false); 9]
            .into_iter()
            .chain([(0.45, true)])
            .collect();
        let c = Calibration::fit_worst_case(&[sure, unsure, Vec::new()]);
        assert_eq!(c.apply(0.45), 0.17, "{:?}", c.points);
        let pooled = Calibration::fit(&[(0.45, true); 10]);
        assert!(pooled.apply(0.45) > 0.9);
    }

    #[test]
    fn between_blocks_the_map_is_linear() {
        let c = Calibration {
            points: vec![(0.2, 0.1), (0.6, 0.9)],
        };
        assert_eq!(c.apply(0.4), 0.5);
        assert_eq!(c.apply(0.1), 0.1);
        assert_eq!(c.apply(0.8), 0.9);
    }

    #[test]
    fn the_identity_keeps_raw_confidence_as_a_probability() {
        let c = Calibration::identity();
        assert_eq!(c.apply(0.42), 0.42);
        assert_eq!(c.apply(1.7), 0.99);
        assert_eq!(c.apply(f64::NAN), 0.01);
        assert_eq!(Calibration::fit(&[]), c);
    }
}

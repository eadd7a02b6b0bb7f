//! Metric deviations: which way a signal goes when things are bad, and how far a series has moved
//! from its normal behaviour, measured robustly so that one noisy sample or a broken baseline
//! does not decide the analysis.
//!
//! - Only the bad direction counts (latency and errors up, availability and success down,
//!   traffic either way).
//! - The spread comes from the baseline (MAD / IQR, the mean absolute deviation when both are
//!   zero), with floors; a value the baseline itself reached is never anomalous.
//! - A baseline that cannot be right (all zeros while the window is not) is replaced by the
//!   window's own quiet start, and flagged.
//! - A series already off its baseline at the start of the window is measured from where it
//!   started (another day's baseline, an older problem: not what started this incident).
//! - Availability-like ratios with a known request count are counted as failed requests and
//!   scored as Poisson counts against the baseline's failure rate.
//!
//! The module is cut in three: what a metric's name says ([`vocabulary`]), plain robust
//! statistics ([`stats`]), and how far one series moved from its normal behaviour
//! ([`deviation`]).

pub mod deviation;
pub mod stats;
pub mod vocabulary;

pub use deviation::*;
pub use vocabulary::*;

/// Robust score from which a deviation counts as an anomaly. Scores are in units of the
/// baseline's spread (MAD/IQR scaled to a standard deviation), so 4 is well outside noise.
pub const SIGNIFICANT_SCORE: f64 = 4.0;

/// A point counts as outside the normal band from this score on (onset detection).
pub(crate) const BAND_SCORE: f64 = 3.5;

/// Scores are capped: beyond this, "how much more anomalous" carries no information and an
/// all-zero baseline would otherwise produce astronomically large numbers.
pub const MAX_SCORE: f64 = 1000.0;

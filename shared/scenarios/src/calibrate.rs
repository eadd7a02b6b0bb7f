//! Calibrating the offline analyst's confidence on scored sets, and reporting a set only through a
//! map fitted elsewhere.
//!
//! A calibration fitted on the incidents it is then scored on would read as perfect by
//! construction, so `iras eval` over several sets fits **leave-one-set-out**: each set is
//! reported through a map fitted on the other sets only, and of those only the ones that share no
//! files with it (a folder and a sub-folder of it are one set twice). A file reached through two
//! fitting sets counts once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use iras_core::analyst::rca::calibration::{CalibrationFile, FitSet};
use iras_core::analyst::rca::Calibration;

use crate::eval::{summarize, EvalReport};

/// One evaluated set: where its files are, what it is called in a report, and its report with
/// the analysis' raw confidence ([`crate::eval::AnalystChoice::raw_analyst`]).
#[derive(Debug, Clone)]
pub struct ScoredSet {
    pub name: String,
    pub root: PathBuf,
    pub raw: EvalReport,
}

/// `report` with every calibratable confidence read through `calibration`, the would-act
/// verdicts and the summary redone at `threshold`; `how` says which map it was.
pub fn recalibrate(
    report: &EvalReport,
    calibration: &Calibration,
    threshold: f64,
    how: &str,
) -> EvalReport {
    let mut cases = report.cases.clone();
    for c in cases.iter_mut().filter(|c| c.calibratable) {
        c.confidence = calibration.apply(c.confidence);
        c.would_escalate = c.confidence < threshold;
    }
    let mut summary = summarize(&cases, &report.summary.analyst, threshold);
    summary.calibration = Some(how.to_string());
    EvalReport { summary, cases }
}

/// The files a set's cases came from, as absolute paths where they can be resolved.
fn files_of(set: &ScoredSet) -> Vec<PathBuf> {
    // Case files are relative to the folder evaluated (a single file's own folder).
    let base = if set.root.is_file() {
        set.root.parent().unwrap_or(&set.root)
    } else {
        &set.root
    };
    set.raw
        .cases
        .iter()
        .map(|c| canonical(&base.join(&c.file)))
        .collect()
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// Whether two sets can hold the same file: one's folder is inside the other's.
fn overlap(a: &Path, b: &Path) -> bool {
    let (a, b) = (canonical(a), canonical(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// Fits a calibration on the raw-confidence cases of `sets`, each file once (errors and the
/// no-evidence answer left out), one group per set so that the map is what held on every set
/// ([`Calibration::fit_worst_case`]), and says how many incidents each set gave.
pub fn fit(sets: &[&ScoredSet]) -> (Calibration, Vec<FitSet>) {
    let mut seen = BTreeSet::new();
    let mut groups = Vec::new();
    let mut fit_on = Vec::new();
    for set in sets {
        let mut pairs = Vec::new();
        for (case, file) in set.raw.cases.iter().zip(files_of(set)) {
            if case.calibratable && seen.insert(file) {
                pairs.push((case.confidence, case.hit_at(1)));
            }
        }
        fit_on.push(FitSet {
            set: set.name.clone(),
            n: pairs.len(),
        });
        groups.push(pairs);
    }
    (Calibration::fit_worst_case(&groups), fit_on)
}

/// The file `iras eval --write-calibration` writes: a map fitted on every one of `sets`.
pub fn calibration_file(sets: &[ScoredSet]) -> CalibrationFile {
    let all: Vec<&ScoredSet> = sets.iter().collect();
    let (calibration, fit_on) = fit(&all);
    CalibrationFile {
        analyst: "offline".into(),
        fit_on,
        calibration,
    }
}

fn describe(fit_on: &[FitSet]) -> String {
    let n: usize = fit_on.iter().map(|f| f.n).sum();
    format!(
        "{} incidents of {}",
        n,
        fit_on
            .iter()
            .map(|f| format!("{} ({})", f.set, f.n))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Each set reported through a calibration fitted on the other sets that share no file with it.
/// A set that overlaps every other one has nothing to be fitted on and keeps raw confidence.
pub fn leave_one_set_out(sets: &[ScoredSet], threshold: f64) -> Vec<EvalReport> {
    sets.iter()
        .enumerate()
        .map(|(i, set)| {
            let others: Vec<&ScoredSet> = sets
                .iter()
                .enumerate()
                .filter(|(j, o)| *j != i && !overlap(&o.root, &set.root))
                .map(|(_, o)| o)
                .collect();
            let (calibration, fit_on) = fit(&others);
            let how = if fit_on.iter().all(|f| f.n == 0) {
                "none: no other set to fit on, raw confidence".to_string()
            } else {
                format!("leave-one-set-out, fitted on {}", describe(&fit_on))
            };
            recalibrate(&set.raw, &calibration, threshold, &how)
        })
        .collect()
}

/// A report through the shipped calibration, saying what it was fitted on.
pub fn through_shipped(raw: &EvalReport, threshold: f64) -> EvalReport {
    let shipped = Calibration::shipped_file();
    if shipped.calibration.points.is_empty() {
        return recalibrate(
            raw,
            &shipped.calibration,
            threshold,
            "none: the shipped calibration is empty, confidence is the analysis' own",
        );
    }
    recalibrate(
        raw,
        &shipped.calibration,
        threshold,
        &format!(
            "shipped, fitted on {} (in-sample for those sets; pass several folders for \
             leave-one-set-out figures)",
            describe(&shipped.fit_on)
        ),
    )
}

//! `iras eval`: scores root-cause localisation on a folder of `iras-scenario/1` files.
//!
//! Each scenario runs through the very stage code an incident runs through (`ingest`,
//! `triage`, `gather_context` on attempt 1 with the pipeline's evidence window, `rca`), with
//! the scenario serving as every evidence source, an in-memory store and a clock stopped at
//! the alert. `truth` is taken out of the scenario before anything else sees it and is read
//! only to score the answer.
//!
//! Scores follow the RCAEval convention: AC@k is the share of scenarios whose true service is
//! among the first k candidates, Avg@5 the mean of AC@1..AC@5. A scenario that fails or has no
//! evidence counts as a miss, never skipped. `confidently_wrong` is the share of scenarios
//! whose first candidate is wrong while the confidence clears the pipeline's threshold: the
//! answers that would have gone to a remediation plan instead of a person.
//!
//! Confidence is read as the probability that the first candidate is right, and checked as
//! such: a reliability table (confidence bins, and the share right in each), the expected
//! calibration error (ECE: the bins' gaps between confidence and accuracy, weighted by their
//! size), **coverage** (the share of incidents at or above the threshold, which IRAS would act
//! on) and **would-act precision** (AC@1 among those). Where a scenario names its fault, the
//! hypothesis' fault type is scored through the table in [`crate::faults`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use iras_core::analyst::rca::is_no_evidence_answer;
use iras_core::analyst::text::clean;
use iras_core::analyst::{BaroAnalyst, OfflineAnalyst};
use iras_core::memory::MemoryStore;
use iras_core::stages::{self, AttemptInput, Deps, IncidentRef};
use iras_core::*;

use crate::faults::fault_matches;
use crate::scenario::{is_scenario_file, read_scenario_text, Scenario, FORMAT};

/// How many candidates a case keeps (Avg@5 needs five).
pub const TOP_K: usize = 5;

/// Which analyst ranks the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalystChoice {
    /// The deterministic offline analyst (`iras_core::analyst::rca`).
    Offline,
    /// The RCAEval BARO baseline (`iras_core::analyst::baro`).
    Baro,
    /// A model-backed analyst; none is configured in this build.
    Llm,
}

impl AnalystChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalystChoice::Offline => "offline",
            AnalystChoice::Baro => "baro",
            AnalystChoice::Llm => "llm",
        }
    }

    /// The analyst to run, or why there is none.
    pub fn analyst(self) -> Result<Arc<dyn Analyst>, EvalError> {
        match self {
            AnalystChoice::Offline => Ok(Arc::new(OfflineAnalyst::new())),
            other => other.raw_analyst(),
        }
    }

    /// The analyst with its confidence as the analysis computes it: the offline analyst
    /// uncalibrated (what a calibration is fitted on, see [`leave_one_set_out`]); the others as
    /// [`AnalystChoice::analyst`].
    pub fn raw_analyst(self) -> Result<Arc<dyn Analyst>, EvalError> {
        match self {
            AnalystChoice::Offline => Ok(Arc::new(OfflineAnalyst::uncalibrated())),
            AnalystChoice::Baro => Ok(Arc::new(BaroAnalyst::new())),
            AnalystChoice::Llm => Err(EvalError::Analyst(
                match std::env::var("LLM_PROVIDER")
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                {
                    None => "no LLM configured (LLM_PROVIDER unset)".to_string(),
                    Some(p) => format!(
                        "LLM_PROVIDER is `{}` but no LLM analyst is available in this build",
                        clean(&p, 40)
                    ),
                },
            )),
        }
    }
}

impl std::str::FromStr for AnalystChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "offline" => Ok(AnalystChoice::Offline),
            "baro" => Ok(AnalystChoice::Baro),
            "llm" => Ok(AnalystChoice::Llm),
            other => Err(format!(
                "unknown analyst `{}` (expected offline, baro or llm)",
                clean(other, 40)
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("no {FORMAT} scenario under {0}")]
    NoScenarios(String),
    #[error("{0}")]
    Analyst(String),
}

/// One scenario's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    pub id: String,
    /// The file, relative to the evaluated folder.
    pub file: String,
    /// The true root-cause service (`None` when the file carries no truth).
    pub truth: Option<String>,
    /// The first candidate.
    pub top: Option<String>,
    /// The first [`TOP_K`] candidates, best first.
    pub candidates: Vec<String>,
    /// 1-based rank of the truth among `candidates`; `None` when absent (or on error).
    pub rank: Option<usize>,
    pub confidence: f64,
    /// Confidence below the pipeline's threshold: the incident would go to a person.
    pub would_escalate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The dataset's fault label (`truth.fault_class`, else `truth.fault`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth_fault: Option<String>,
    /// Whether `fault` is an IRAS fault type the label maps to ([`crate::faults`]); `None`
    /// when there is no label or the table does not know it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_correct: Option<bool>,
    /// Why the scenario could not be ranked (it then counts as a miss).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The confidence is the analysis' own figure, which a calibration maps (not an error, nor
    /// the fixed figure of the no-evidence answer).
    #[serde(skip)]
    pub calibratable: bool,
}

impl CaseResult {
    /// The truth is among the first `k` candidates.
    pub fn hit_at(&self, k: usize) -> bool {
        self.error.is_none() && self.rank.is_some_and(|r| r <= k)
    }

    /// The first candidate is wrong while confidence clears the threshold.
    pub fn confidently_wrong(&self) -> bool {
        self.error.is_none() && !self.hit_at(1) && !self.would_escalate
    }

    fn failed(id: String, file: String, truth: Option<String>, error: String) -> CaseResult {
        CaseResult {
            id,
            file,
            truth,
            top: None,
            candidates: Vec::new(),
            rank: None,
            confidence: 0.0,
            would_escalate: true,
            fault: None,
            truth_fault: None,
            fault_correct: None,
            error: Some(error),
            calibratable: false,
        }
    }
}

/// The figures of a run. Fractions are 0..1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub ac1: f64,
    pub ac3: f64,
    pub avg5: f64,
    pub confidently_wrong: f64,
    pub analyst: String,
    pub threshold: f64,
    /// Which calibration the confidence went through, when the report says (see
    /// [`leave_one_set_out`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
    /// AC@1 .. AC@5.
    pub ac_at: Vec<f64>,
    /// Scenarios that could not be ranked (counted as misses).
    pub errors: usize,
    /// Share of scenarios whose confidence is below the threshold.
    pub escalated: f64,
    /// Scenarios at or above the threshold: IRAS would act on them.
    pub would_act: usize,
    /// `would_act` as a share of all scenarios.
    pub coverage: f64,
    /// AC@1 among the scenarios IRAS would act on (`None` when it would act on none).
    pub would_act_precision: Option<f64>,
    /// Expected calibration error over [`RELIABILITY_BINS`] equal confidence bins.
    pub ece: f64,
    /// The non-empty confidence bins, lowest first.
    pub reliability: Vec<ReliabilityBin>,
    /// Scenarios whose fault label the table knows.
    pub fault_scored: usize,
    /// Share of those whose fault type is right (`None` when none is scored).
    pub fault_accuracy: Option<f64>,
}

/// Confidence bins of the reliability table: [0, 0.1), [0.1, 0.2), ... [0.9, 1].
pub const RELIABILITY_BINS: usize = 10;

/// One bin of the reliability table: how often the first candidate is right at that confidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    /// Mean confidence of the bin's scenarios.
    pub confidence: f64,
    /// Share of them whose first candidate is right.
    pub accuracy: f64,
}

/// The reliability table and its expected calibration error.
pub fn reliability(cases: &[CaseResult]) -> (Vec<ReliabilityBin>, f64) {
    let mut bins: Vec<(usize, f64, usize)> = vec![(0, 0.0, 0); RELIABILITY_BINS];
    for c in cases {
        let i = ((c.confidence.clamp(0.0, 1.0) * RELIABILITY_BINS as f64) as usize)
            .min(RELIABILITY_BINS - 1);
        bins[i].0 += 1;
        bins[i].1 += c.confidence;
        bins[i].2 += usize::from(c.hit_at(1));
    }
    let total = cases.len().max(1) as f64;
    let mut ece = 0.0;
    let mut out = Vec::new();
    for (i, (n, conf, hits)) in bins.into_iter().enumerate() {
        if n == 0 {
            continue;
        }
        let (confidence, accuracy) = (conf / n as f64, hits as f64 / n as f64);
        ece += n as f64 / total * (confidence - accuracy).abs();
        out.push(ReliabilityBin {
            lo: i as f64 / RELIABILITY_BINS as f64,
            hi: (i + 1) as f64 / RELIABILITY_BINS as f64,
            n,
            confidence,
            accuracy,
        });
    }
    (out, ece)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub summary: Summary,
    pub cases: Vec<CaseResult>,
}

/// Share of `cases` whose truth is among the first `k` candidates (0 for no cases).
pub fn ac_at(cases: &[CaseResult], k: usize) -> f64 {
    if cases.is_empty() {
        return 0.0;
    }
    cases.iter().filter(|c| c.hit_at(k)).count() as f64 / cases.len() as f64
}

/// Mean of AC@1 .. AC@k.
pub fn avg_at(cases: &[CaseResult], k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    (1..=k).map(|i| ac_at(cases, i)).sum::<f64>() / k as f64
}

pub fn summarize(cases: &[CaseResult], analyst: &str, threshold: f64) -> Summary {
    let n = cases.len();
    let share = |pred: &dyn Fn(&CaseResult) -> bool| {
        if n == 0 {
            0.0
        } else {
            cases.iter().filter(|c| pred(c)).count() as f64 / n as f64
        }
    };
    let acting: Vec<&CaseResult> = cases.iter().filter(|c| !c.would_escalate).collect();
    let scored: Vec<bool> = cases.iter().filter_map(|c| c.fault_correct).collect();
    let (reliability, ece) = reliability(cases);
    Summary {
        n,
        ac1: ac_at(cases, 1),
        ac3: ac_at(cases, 3),
        avg5: avg_at(cases, 5),
        confidently_wrong: share(&|c| c.confidently_wrong()),
        analyst: analyst.to_string(),
        threshold,
        calibration: None,
        ac_at: (1..=5).map(|k| ac_at(cases, k)).collect(),
        errors: cases.iter().filter(|c| c.error.is_some()).count(),
        escalated: share(&|c| c.would_escalate),
        would_act: acting.len(),
        coverage: share(&|c| !c.would_escalate),
        would_act_precision: (!acting.is_empty())
            .then(|| acting.iter().filter(|c| c.hit_at(1)).count() as f64 / acting.len() as f64),
        ece,
        reliability,
        fault_scored: scored.len(),
        fault_accuracy: (!scored.is_empty())
            .then(|| scored.iter().filter(|r| **r).count() as f64 / scored.len() as f64),
    }
}

/// Every `*.json` and `*.json.gz` file under `path` (recursively, sorted), or `path` itself if
/// it is a file.
pub fn scenario_files(path: &Path) -> Result<Vec<PathBuf>, EvalError> {
    let io = |p: &Path, source| EvalError::Io {
        path: p.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
            let p = e.map_err(|e| io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if is_scenario_file(&p) {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// What a file under the folder turned out to be.
enum Loaded {
    Scenario(Box<Scenario>),
    /// A JSON document of some other kind (no `format`, or another one): not counted.
    Other,
    /// Meant as a scenario but unreadable: counted as a miss.
    Broken {
        id: String,
        truth: Option<String>,
        error: String,
    },
}

fn load(path: &Path, shown: &str) -> Loaded {
    let text = match read_scenario_text(path) {
        Ok(t) => t,
        Err(e) => {
            return Loaded::Broken {
                id: shown.to_string(),
                truth: None,
                error: format!("cannot read: {e}"),
            }
        }
    };
    // Most files are scenarios: parsed once. Only a file that does not parse is read again
    // for what it is (another JSON file, or a broken scenario and its id).
    let parsed = match Scenario::parse(&text, shown) {
        Ok(s) => return Loaded::Scenario(Box::new(s)),
        Err(e) => e,
    };
    // Only the fields that decide what the file is: a full `Value` of a large scenario costs as
    // much as the scenario itself.
    let head: Head = match serde_json::from_str(&text) {
        Ok(v) => v,
        // Valid JSON that is no object (an array) is some other file.
        Err(_) if serde_json::from_str::<Value>(&text).is_ok() => return Loaded::Other,
        Err(e) => {
            return Loaded::Broken {
                id: shown.to_string(),
                truth: None,
                error: format!("not valid JSON: {e}"),
            }
        }
    };
    if head.format.as_ref().and_then(Value::as_str) != Some(FORMAT) {
        return Loaded::Other;
    }
    Loaded::Broken {
        id: head
            .id
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or(shown)
            .to_string(),
        truth: head
            .truth
            .as_ref()
            .and_then(|t| t.get("root_cause_service"))
            .and_then(Value::as_str)
            .map(str::to_string),
        error: parsed.to_string(),
    }
}

/// The head of a JSON file under the eval's directory; every other field is skipped unread.
#[derive(Deserialize)]
struct Head {
    format: Option<Value>,
    id: Option<Value>,
    truth: Option<Value>,
}

/// Evaluates every scenario under `path` with `analyst`. `progress(done, total)` is called
/// after each scenario.
///
/// Scenarios are independent incidents, so as many run at once as the machine has cores
/// (on a multi-thread runtime; one after the other on a current-thread one); the report keeps
/// the files' order whatever order they finish in, and at most that many scenarios are held
/// in memory at a time.
pub async fn evaluate_path(
    path: &Path,
    analyst: Arc<dyn Analyst>,
    config: &PipelineConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalReport, EvalError> {
    use futures_util::StreamExt;

    let files = scenario_files(path)?;
    let root = if path.is_file() {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    let total = files.len();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runs = files.into_iter().map(|f| {
        let shown = f
            .strip_prefix(root)
            .unwrap_or(&f)
            .display()
            .to_string()
            .replace('\\', "/");
        let (analyst, config) = (analyst.clone(), config.clone());
        let task = tokio::spawn({
            let shown = shown.clone();
            async move { evaluate_file(&f, shown, analyst, &config).await }
        });
        async move {
            // A scenario whose evaluation panics is that scenario's failure, not the run's.
            task.await.unwrap_or_else(|e| {
                Some(CaseResult::failed(
                    shown.clone(),
                    shown,
                    None,
                    format!("the evaluation failed: {e}"),
                ))
            })
        }
    });
    let mut finished = futures_util::stream::iter(runs).buffered(workers);
    let mut cases = Vec::new();
    let mut done = 0;
    while let Some(case) = finished.next().await {
        cases.extend(case);
        done += 1;
        progress(done, total);
    }
    if cases.is_empty() {
        return Err(EvalError::NoScenarios(path.display().to_string()));
    }
    Ok(EvalReport {
        summary: summarize(&cases, &analyst.name(), config.rca_confidence_threshold),
        cases,
    })
}

/// One file's case (`shown`: its name in the report); `None` for a JSON file that is no scenario.
async fn evaluate_file(
    path: &Path,
    shown: String,
    analyst: Arc<dyn Analyst>,
    config: &PipelineConfig,
) -> Option<CaseResult> {
    match load(path, &shown) {
        Loaded::Scenario(s) => {
            let mut case = evaluate_scenario(*s, analyst, config).await;
            case.file = shown;
            Some(case)
        }
        Loaded::Broken { id, truth, error } => Some(CaseResult::failed(id, shown, truth, error)),
        Loaded::Other => None,
    }
}

/// Scores one scenario. Its `truth` is removed before the pipeline sees the scenario.
pub async fn evaluate_scenario(
    mut scenario: Scenario,
    analyst: Arc<dyn Analyst>,
    config: &PipelineConfig,
) -> CaseResult {
    let taken = scenario.truth.take();
    let truth_fault = taken
        .as_ref()
        .and_then(|t| t.fault_label().map(str::to_string));
    let truth = taken.map(|t| t.root_cause_service);
    let id = scenario.id.clone();
    let threshold = config.rca_confidence_threshold;
    let investigation = match gather(scenario, analyst, config).await {
        Ok(g) => g.rca().await,
        Err(e) => Err(e),
    };
    let inv = match investigation {
        Ok(inv) => inv,
        Err(e) => return CaseResult::failed(id, String::new(), truth, e),
    };
    if !has_evidence(&inv.context) {
        return CaseResult::failed(
            id,
            String::new(),
            truth,
            "no evidence: the sources returned no metrics, logs or deployments".into(),
        );
    }
    let h = &inv.hypothesis;
    let mut candidates: Vec<String> = Vec::new();
    for c in h
        .candidates
        .iter()
        .map(|c| c.service.clone())
        .chain(std::iter::once(h.root_cause_service.clone()))
    {
        if candidates.len() < TOP_K && !candidates.contains(&c) {
            candidates.push(c);
        }
    }
    let rank = truth
        .as_ref()
        .and_then(|t| candidates.iter().position(|c| c == t).map(|p| p + 1));
    CaseResult {
        id,
        file: String::new(),
        truth,
        top: candidates.first().cloned(),
        candidates,
        rank,
        confidence: h.confidence,
        would_escalate: h.confidence < threshold,
        fault: Some(h.fault.clone()).filter(|f| !f.is_empty()),
        fault_correct: truth_fault
            .as_deref()
            .and_then(|label| fault_matches(label, &h.fault)),
        truth_fault,
        error: None,
        calibratable: !is_no_evidence_answer(h),
    }
}

fn has_evidence(ctx: &ContextBundle) -> bool {
    !(ctx.metrics.is_empty()
        && ctx.anomalies.is_empty()
        && ctx.logs.is_empty()
        && ctx.deployments.is_empty())
}

/// An incident opened, triaged and with its attempt-1 evidence gathered, not yet analysed.
pub struct Gathered {
    pub alert: Alert,
    pub triage: TriageResult,
    pub context: ContextBundle,
    deps: Deps,
    input: AttemptInput,
}

/// What the pipeline concluded on attempt 1.
#[derive(Debug, Clone)]
pub struct Investigation {
    pub alert: Alert,
    pub triage: TriageResult,
    pub context: ContextBundle,
    pub hypothesis: RootCauseHypothesis,
}

/// Runs `ingest`, `triage` and `gather_context` (attempt 1) for `scenario`, served by the
/// scenario itself. Any `truth` is dropped first.
pub async fn gather(
    mut scenario: Scenario,
    analyst: Arc<dyn Analyst>,
    config: &PipelineConfig,
) -> Result<Gathered, String> {
    scenario.truth = None;
    let alert = scenario.alert.clone();
    let scenario = Arc::new(scenario);
    let src = Arc::new(scenario.sources());
    let store = Arc::new(MemoryStore::default());
    let deps = Deps::builder(store.clone())
        .analyst(analyst)
        .evidence(EvidenceSources::all_from(src))
        .notifier(Arc::new(Silent))
        .pager(Arc::new(Silent))
        .executor(Arc::new(Silent))
        .clock(Arc::new(StoppedClock(alert.timestamp)))
        .config(config.clone())
        .source_timeout(std::time::Duration::from_secs(30))
        .build();
    let stage = |e: stages::StageError| e.to_string();
    let ingested = stages::ingest(&deps, alert.clone()).await.map_err(stage)?;
    let id = ingested
        .incident_id
        .clone()
        .ok_or("the scenario's alert opened no incident")?;
    stages::triage(
        &deps,
        &IncidentRef {
            incident_id: id.clone(),
        },
    )
    .await
    .map_err(stage)?;
    let input = AttemptInput {
        incident_id: id.clone(),
        attempt: 1,
    };
    stages::gather_context(&deps, &input).await.map_err(stage)?;
    let triage = store
        .get_incident(&id)
        .await
        .map_err(|e| e.to_string())?
        .and_then(|i| i.triage)
        .ok_or("triage left no record")?;
    let context = store
        .attempts(&id)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|a| a.attempt == 1)
        .map(|a| a.context)
        .ok_or("gather_context left no attempt")?;
    Ok(Gathered {
        alert,
        triage,
        context,
        deps,
        input,
    })
}

impl Gathered {
    /// Runs the `rca` stage on the gathered evidence.
    pub async fn rca(self) -> Result<Investigation, String> {
        stages::rca(&self.deps, &self.input)
            .await
            .map_err(|e| e.to_string())?;
        // The incident carries the attempt's hypothesis; reading it spares a copy of the
        // attempt's whole evidence.
        let hypothesis = self
            .deps
            .store
            .get_incident(&self.input.incident_id)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|i| i.hypothesis)
            .ok_or("rca left no hypothesis")?;
        Ok(Investigation {
            alert: self.alert,
            triage: self.triage,
            context: self.context,
            hypothesis,
        })
    }
}

fn fmt_rank(r: Option<usize>) -> String {
    r.map_or_else(|| "-".to_string(), |r| r.to_string())
}

impl EvalReport {
    /// `{"summary": {...}, "cases": [...]}`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("an eval report is plain data")
    }

    /// [`EvalReport::to_json`] as pretty text, fields in declaration order (summary first).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("an eval report is plain data")
    }

    /// A per-scenario table, then the summary.
    pub fn render_text(&self) -> String {
        let w = |s: &str, n: usize| {
            let c = clean(s, n.saturating_sub(1));
            format!("{c:<n$}")
        };
        let mut out = String::new();
        out.push_str(&format!(
            "{} {} {} {:>4} {:>5}  {}\n",
            w("scenario", 36),
            w("truth", 40),
            w("top candidate", 40),
            "rank",
            "conf",
            "verdict"
        ));
        for c in &self.cases {
            let verdict = if let Some(e) = &c.error {
                format!("miss (error: {})", clean(e, 100))
            } else {
                let hit = if c.hit_at(1) {
                    "hit"
                } else if c.confidently_wrong() {
                    "WRONG, confident"
                } else {
                    "miss"
                };
                if c.would_escalate {
                    format!("{hit}, escalate")
                } else {
                    hit.to_string()
                }
            };
            out.push_str(&format!(
                "{} {} {} {:>4} {:>5.2}  {}\n",
                w(&c.id, 36),
                w(c.truth.as_deref().unwrap_or("?"), 40),
                w(c.top.as_deref().unwrap_or("-"), 40),
                fmt_rank(c.rank),
                c.confidence,
                verdict
            ));
        }
        let s = &self.summary;
        out.push_str(&format!(
            "\n{} scenarios · analyst {} · threshold {:.2}\n",
            s.n, s.analyst, s.threshold
        ));
        if let Some(how) = &s.calibration {
            out.push_str(&format!("confidence calibration: {how}\n"));
        }
        out.push_str(&format!(
            "AC@1 {:.3}  AC@3 {:.3}  Avg@5 {:.3}  confidently wrong {:.3}  escalated {:.3}{}\n",
            s.ac1,
            s.ac3,
            s.avg5,
            s.confidently_wrong,
            s.escalated,
            if s.errors > 0 {
                format!("  ({} unranked, counted as misses)", s.errors)
            } else {
                String::new()
            }
        ));
        out.push_str(&format!(
            "would act (confidence >= {:.2}): {} of {} (coverage {:.3}), precision {}  ·  ECE {:.3}\n",
            s.threshold,
            s.would_act,
            s.n,
            s.coverage,
            s.would_act_precision
                .map_or_else(|| "-".to_string(), |p| format!("{p:.3}")),
            s.ece
        ));
        if let Some(acc) = s.fault_accuracy {
            out.push_str(&format!(
                "fault type right: {:.3} of {} scenarios with a known fault label\n",
                acc, s.fault_scored
            ));
        }
        out.push_str("reliability (confidence bin: scenarios, mean confidence, share right):\n");
        for b in &s.reliability {
            out.push_str(&format!(
                "  {:.1}-{:.1}  {:>4}  {:.2}  {:.3}\n",
                b.lo, b.hi, b.n, b.confidence, b.accuracy
            ));
        }
        out.push_str(&format!(
            "AC@k: {}\n",
            s.ac_at
                .iter()
                .enumerate()
                .map(|(i, v)| format!("@{} {:.3}", i + 1, v))
                .collect::<Vec<_>>()
                .join("  ")
        ));
        out
    }
}

/// A clock stopped at the alert: the investigation happens "when the alert fired".
struct StoppedClock(Timestamp);

impl Clock for StoppedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// Notifier, pager and executor of an evaluation: nobody is told, nothing is run.
struct Silent;

#[async_trait]
impl Notifier for Silent {
    fn name(&self) -> String {
        "eval".into()
    }
    async fn approval_requested(
        &self,
        _: &Incident,
        _: Option<&str>,
    ) -> Result<Option<String>, NotifyError> {
        Ok(None)
    }
    async fn incident_updated(&self, _: &Incident, _: &str) -> Result<(), NotifyError> {
        Ok(())
    }
}

#[async_trait]
impl Pager for Silent {
    fn name(&self) -> String {
        "eval".into()
    }
    async fn page(&self, _: &Incident, _: &Escalation) -> Result<(), NotifyError> {
        Ok(())
    }
    async fn resolve(&self, _: &Incident) -> Result<(), NotifyError> {
        Ok(())
    }
}

#[async_trait]
impl Executor for Silent {
    fn name(&self) -> String {
        "eval".into()
    }
    fn changes_systems(&self) -> bool {
        false
    }
    async fn observe(&self, _: &StepCall<'_>) -> Result<ResourceState, ExecError> {
        Err(ExecError::Refused(
            "an evaluation never executes actions".into(),
        ))
    }
    async fn apply(&self, _: &StepCall<'_>, _: &ResourceState) -> Result<StepOutcome, ExecError> {
        Err(ExecError::Refused(
            "an evaluation never executes actions".into(),
        ))
    }
    async fn restore(&self, _: &StepCall<'_>, _: &ResourceState) -> Result<StepOutcome, ExecError> {
        Err(ExecError::Refused(
            "an evaluation never executes actions".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(rank: Option<usize>, confidence: f64) -> CaseResult {
        CaseResult {
            id: "x".into(),
            file: "x.json".into(),
            truth: Some("t".into()),
            top: Some(if rank == Some(1) { "t" } else { "o" }.into()),
            candidates: vec![],
            rank,
            confidence,
            would_escalate: confidence < 0.7,
            fault: None,
            truth_fault: None,
            fault_correct: None,
            error: None,
            calibratable: true,
        }
    }

    #[test]
    fn a_failed_case_is_a_miss_and_never_confidently_wrong() {
        let c = CaseResult::failed("a".into(), "a.json".into(), Some("t".into()), "x".into());
        assert!(!c.hit_at(5));
        assert!(!c.confidently_wrong());
        assert!(c.would_escalate);
        let mut lying = case(Some(1), 0.9);
        lying.error = Some("boom".into());
        assert!(
            !lying.hit_at(1),
            "an error is a miss whatever the rank says"
        );
    }

    #[test]
    fn analyst_choice_parses_and_llm_is_a_clear_error() {
        assert_eq!(
            "BARO".parse::<AnalystChoice>().unwrap(),
            AnalystChoice::Baro
        );
        assert!("gpt".parse::<AnalystChoice>().is_err());
        if std::env::var("LLM_PROVIDER").is_err() {
            let e = AnalystChoice::Llm.analyst().err().unwrap().to_string();
            assert_eq!(e, "no LLM configured (LLM_PROVIDER unset)");
        }
        let _ = case(None, 0.1);
    }
}

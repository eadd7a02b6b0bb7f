//! The eval engine itself: the arithmetic of AC@k and Avg@5, that a scenario which cannot be
//! ranked counts as a miss, the JSON report's shape, and that `truth` never reaches an
//! analyst (or anything the analyst could read).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use iras_core::analyst::OfflineAnalyst;
use iras_core::*;
use iras_scenarios::eval::{self, CaseResult};
use iras_scenarios::Scenario;
use serde_json::{json, Value};

fn case(rank: Option<usize>, confidence: f64, threshold: f64) -> CaseResult {
    CaseResult {
        id: "x".into(),
        file: "x.json".into(),
        truth: Some("t".into()),
        top: Some(if rank == Some(1) { "t" } else { "other" }.into()),
        candidates: vec![],
        rank,
        confidence,
        would_escalate: confidence < threshold,
        fault: None,
        truth_fault: None,
        fault_correct: None,
        error: None,
        calibratable: true,
    }
}

/// A set of `n` cases in folder `root`, all at raw confidence `raw`, all right or all wrong.
fn set(
    root: &std::path::Path,
    n: usize,
    raw: f64,
    right: bool,
) -> iras_scenarios::calibrate::ScoredSet {
    let cases: Vec<CaseResult> = (0..n)
        .map(|i| CaseResult {
            file: format!("{i}.json"),
            ..case(if right { Some(1) } else { None }, raw, 0.7)
        })
        .collect();
    iras_scenarios::calibrate::ScoredSet {
        name: root.display().to_string(),
        root: root.to_path_buf(),
        raw: eval::EvalReport {
            summary: eval::summarize(&cases, "offline", 0.7),
            cases,
        },
    }
}

#[test]
fn leave_one_set_out_never_reports_a_set_through_a_fit_on_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // The same raw figure is always right on one system and always wrong on the other.
    let sets = vec![set(&a, 20, 0.5, true), set(&b, 20, 0.5, false)];
    let reports = iras_scenarios::calibrate::leave_one_set_out(&sets, 0.7);
    // Set a is read through b's record (always wrong), and b through a's (always right).
    assert!(
        reports[0].cases.iter().all(|c| c.confidence < 0.1),
        "{:?}",
        reports[0].cases[0]
    );
    assert!(
        reports[1].cases.iter().all(|c| c.confidence > 0.9),
        "{:?}",
        reports[1].cases[0]
    );
    assert_eq!(reports[1].summary.confidently_wrong, 1.0);
    assert_eq!(reports[0].summary.coverage, 0.0);
    let how = reports[0].summary.calibration.as_deref().unwrap();
    assert!(
        how.starts_with("leave-one-set-out") && how.contains("b (20)"),
        "{how}"
    );

    // A sub-folder of a set is the same incidents: it is not fitted on for its parent.
    let nested = vec![set(&a, 20, 0.5, true), set(&a.join("sub"), 5, 0.5, true)];
    let reports = iras_scenarios::calibrate::leave_one_set_out(&nested, 0.7);
    assert!(reports[0]
        .summary
        .calibration
        .as_deref()
        .unwrap()
        .starts_with("none"));
    assert_eq!(reports[0].cases[0].confidence, 0.5, "raw kept");
}

#[test]
fn a_file_reached_through_two_sets_is_fitted_on_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let sets = vec![set(&a, 4, 0.5, true), set(&a, 4, 0.5, true)];
    let file = iras_scenarios::calibrate::calibration_file(&sets);
    assert_eq!(
        file.fit_on.iter().map(|f| f.n).collect::<Vec<_>>(),
        vec![4, 0]
    );
}

#[test]
fn ac_at_k_and_avg5_follow_the_rcaeval_convention() {
    let cases = vec![
        case(Some(1), 0.9, 0.7),
        case(Some(2), 0.9, 0.7),
        case(Some(3), 0.2, 0.7),
        case(None, 0.1, 0.7),
        case(Some(5), 0.5, 0.7),
    ];
    let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(near(eval::ac_at(&cases, 1), 0.2));
    assert!(near(eval::ac_at(&cases, 2), 0.4));
    assert!(near(eval::ac_at(&cases, 3), 0.6));
    assert!(near(eval::ac_at(&cases, 4), 0.6));
    assert!(near(eval::ac_at(&cases, 5), 0.8));
    // Avg@5 = mean(0.2, 0.4, 0.6, 0.6, 0.8)
    assert!(near(eval::avg_at(&cases, 5), 0.52));
    let s = eval::summarize(&cases, "offline", 0.7);
    assert_eq!(s.n, 5);
    assert!(near(s.ac1, 0.2) && near(s.ac3, 0.6) && near(s.avg5, 0.52));
    // Only the second case is wrong at the top while clearing the threshold.
    assert!(near(s.confidently_wrong, 0.2), "{s:?}");
    assert!(near(s.escalated, 0.6));
    assert_eq!(s.ac_at.len(), 5);
    assert_eq!(eval::ac_at(&[], 1), 0.0);
}

#[test]
fn confidence_is_scored_as_a_probability_of_being_right() {
    let cases = vec![
        case(Some(1), 0.9, 0.7),
        case(Some(2), 0.95, 0.7),
        case(Some(3), 0.2, 0.7),
        case(None, 0.1, 0.7),
        case(Some(5), 0.5, 0.7),
    ];
    let s = eval::summarize(&cases, "offline", 0.7);
    let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
    // Two clear the threshold, one of them right.
    assert_eq!(s.would_act, 2);
    assert!(near(s.coverage, 0.4) && near(s.would_act_precision.unwrap(), 0.5));
    // Bins 0.1, 0.2, 0.5 hold one miss each; bin 0.9 holds a hit and a miss at 0.925 mean.
    let bins: Vec<(f64, usize)> = s.reliability.iter().map(|b| (b.lo, b.n)).collect();
    assert_eq!(bins, vec![(0.1, 1), (0.2, 1), (0.5, 1), (0.9, 2)]);
    let top = s.reliability.last().unwrap();
    assert!(near(top.confidence, 0.925) && near(top.accuracy, 0.5));
    // ECE = (0.1 + 0.2 + 0.5 + 2 x 0.425) / 5
    assert!(near(s.ece, 0.33), "{}", s.ece);
    // Nobody above the threshold: no precision to speak of, rather than a fake 0 or 1.
    let shy = eval::summarize(&[case(Some(1), 0.3, 0.7)], "offline", 0.7);
    assert_eq!(shy.would_act_precision, None);
    assert!(near(shy.ece, 0.7));
}

#[test]
fn fault_accuracy_counts_only_scenarios_whose_label_the_table_knows() {
    let mut right = case(Some(1), 0.9, 0.7);
    right.fault_correct = Some(true);
    let mut wrong = case(Some(1), 0.9, 0.7);
    wrong.fault_correct = Some(false);
    let unlabelled = case(Some(1), 0.9, 0.7);
    let s = eval::summarize(&[right, wrong.clone(), unlabelled], "offline", 0.7);
    assert_eq!(s.fault_scored, 2);
    assert_eq!(s.fault_accuracy, Some(0.5));
    assert_eq!(
        eval::summarize(&[case(None, 0.1, 0.7)], "o", 0.7).fault_accuracy,
        None
    );
    let doc = serde_json::to_value(&s).unwrap();
    for key in [
        "coverage",
        "would_act_precision",
        "ece",
        "reliability",
        "fault_accuracy",
    ] {
        assert!(doc.get(key).is_some(), "summary.{key}");
    }
}

fn scenario_json(truth: &str, fault: &str) -> Value {
    let at = 1_700_000_000i64;
    let pts = |f: &dyn Fn(i64) -> f64| -> Vec<Value> {
        (0..40).map(|i| json!([at - 1800 + 60 * i, f(i)])).collect()
    };
    let base = |v: f64| -> Vec<Value> {
        (0..30)
            .map(|i| json!([at - 604_800 - 1800 + 60 * i, v + 0.0005 * (i % 3) as f64]))
            .collect()
    };
    json!({
        "format": "iras-scenario/1",
        "id": "test/truth-isolation",
        "description": "api fails behind the gateway",
        "alert": {"title": "High error rate on gateway", "timestamp": "2023-11-14T22:13:20Z",
                  "service": "gateway"},
        "topology": [{"from": "gateway", "to": "api"}],
        "metrics": [
            {"service": "api", "name": "error_rate", "unit": "ratio",
             "points": pts(&|i| if i >= 20 { 0.4 } else { 0.001 }), "baseline": base(0.001)},
            {"service": "gateway", "name": "error_rate", "unit": "ratio",
             "points": pts(&|i| if i >= 21 { 0.3 } else { 0.001 }), "baseline": base(0.001)}
        ],
        "logs": [
            {"timestamp": "2023-11-14T22:05:00Z", "service": "api", "level": "ERROR",
             "message": "NullPointerException in handler"},
            {"timestamp": "2023-11-14T22:06:00Z", "service": "gateway", "level": "ERROR",
             "message": "upstream api returned 500"}
        ],
        "truth": {"root_cause_service": truth, "fault": fault}
    })
}

/// Wraps the offline analyst and keeps everything it is shown, serialised.
struct Recording {
    seen: Mutex<Vec<String>>,
    inner: OfflineAnalyst,
}

#[async_trait]
impl Analyst for Recording {
    fn name(&self) -> String {
        "recording".into()
    }
    async fn triage(&self, alert: &Alert) -> Result<TriageResult, AnalystError> {
        self.seen
            .lock()
            .unwrap()
            .push(serde_json::to_string(alert).unwrap());
        self.inner.triage(alert).await
    }
    async fn rca(
        &self,
        alert: &Alert,
        triage: &TriageResult,
        context: &ContextBundle,
    ) -> Result<RootCauseHypothesis, AnalystError> {
        self.seen.lock().unwrap().push(format!(
            "{} {} {}",
            serde_json::to_string(alert).unwrap(),
            serde_json::to_string(triage).unwrap(),
            serde_json::to_string(context).unwrap()
        ));
        self.inner.rca(alert, triage, context).await
    }
    async fn plan(
        &self,
        alert: &Alert,
        hypothesis: &RootCauseHypothesis,
        context: &ContextBundle,
    ) -> Result<RemediationPlan, AnalystError> {
        self.inner.plan(alert, hypothesis, context).await
    }
    async fn postmortem(
        &self,
        facts: &PostMortemFacts<'_>,
    ) -> Result<PostMortemNarrative, AnalystError> {
        self.inner.postmortem(facts).await
    }
}

#[tokio::test]
async fn truth_never_reaches_the_analyst() {
    let text = scenario_json("ghost-service", "fault-marker-7f3a").to_string();
    let s = Scenario::parse(&text, "truth.json").unwrap();
    assert!(s.truth.is_some(), "the file does carry a truth");
    let recording = Arc::new(Recording {
        seen: Mutex::new(Vec::new()),
        inner: OfflineAnalyst::new(),
    });
    let c = eval::evaluate_scenario(s, recording.clone(), &PipelineConfig::default()).await;
    let seen = recording.seen.lock().unwrap().join("\n");
    assert!(
        seen.contains("gateway") && seen.contains("error_rate"),
        "{seen}"
    );
    for secret in [
        "ghost-service",
        "fault-marker-7f3a",
        "\"truth\"",
        "root_cause_service\":\"ghost",
    ] {
        assert!(!seen.contains(secret), "the analyst saw `{secret}`");
    }
    // Scored against the truth all the same: the evidence points at api, not the ghost.
    assert_eq!(c.truth.as_deref(), Some("ghost-service"));
    assert_eq!(c.top.as_deref(), Some("api"), "{c:?}");
    assert_eq!(c.rank, None);
    assert!(!c.candidates.iter().any(|x| x == "ghost-service"));
    assert!(c.error.is_none());
}

#[tokio::test]
async fn a_truth_the_evidence_points_at_is_found() {
    let text = scenario_json("api", "bad_deploy").to_string();
    let s = Scenario::parse(&text, "truth.json").unwrap();
    let c = eval::evaluate_scenario(
        s,
        Arc::new(OfflineAnalyst::new()),
        &PipelineConfig::default(),
    )
    .await;
    assert_eq!(c.rank, Some(1), "{c:?}");
    assert!(c.hit_at(1));
    // The fault label is carried and scored: no deployment in the evidence, so not a bad deploy.
    assert_eq!(c.truth_fault.as_deref(), Some("bad_deploy"));
    assert_eq!(
        c.fault_correct,
        Some(c.fault.as_deref() == Some("bad_deploy"))
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("iras-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("nested")).unwrap();
    d
}

#[tokio::test]
async fn unrankable_scenarios_are_misses_and_other_json_is_ignored() {
    let dir = temp_dir("misses");
    std::fs::write(
        dir.join("nested/good.json"),
        scenario_json("api", "x").to_string(),
    )
    .unwrap();
    // Valid, but the sources have nothing for it: a miss, not a skip.
    std::fs::write(
        dir.join("empty.json"),
        json!({"format": "iras-scenario/1", "id": "empty",
               "alert": {"title": "t", "timestamp": "2023-11-14T22:13:20Z", "service": "api"},
               "truth": {"root_cause_service": "api"}})
        .to_string(),
    )
    .unwrap();
    // Meant as a scenario, broken: a miss naming the file's problem.
    std::fs::write(
        dir.join("broken.json"),
        r#"{"format": "iras-scenario/1", "alert": {"timestamp": "2023-11-14T22:13:20Z"}, "truth": {"root_cause_service": "api"}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("garbage.json"), "{not json").unwrap();
    // Some other JSON document: not a scenario, not counted.
    std::fs::write(dir.join("package.json"), r#"{"name": "x"}"#).unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();

    let mut progress = Vec::new();
    let r = eval::evaluate_path(
        &dir,
        Arc::new(OfflineAnalyst::new()),
        &PipelineConfig::default(),
        |done, total| progress.push((done, total)),
    )
    .await
    .unwrap();
    assert_eq!(r.summary.n, 4, "{:#?}", r.cases);
    assert_eq!(r.summary.errors, 3);
    assert!((r.summary.ac1 - 0.25).abs() < 1e-12);
    let by_file = |f: &str| r.cases.iter().find(|c| c.file == f).unwrap();
    assert!(by_file("nested/good.json").hit_at(1));
    assert!(by_file("empty.json")
        .error
        .as_deref()
        .unwrap()
        .contains("no evidence"));
    assert!(by_file("broken.json")
        .error
        .as_deref()
        .unwrap()
        .contains("title"));
    assert_eq!(by_file("broken.json").truth.as_deref(), Some("api"));
    assert!(by_file("garbage.json").error.is_some());
    assert_eq!(
        progress.last(),
        Some(&(5, 5)),
        "every .json file is looked at"
    );

    let doc = r.to_json();
    for key in [
        "n",
        "ac1",
        "ac3",
        "avg5",
        "confidently_wrong",
        "analyst",
        "threshold",
    ] {
        assert!(doc["summary"].get(key).is_some(), "summary.{key}");
    }
    assert_eq!(doc["summary"]["analyst"], "offline");
    assert_eq!(doc["cases"].as_array().unwrap().len(), 4);
    let text = r.render_text();
    assert!(
        text.contains("AC@1 0.250") && text.contains("miss (error:"),
        "{text}"
    );
    assert!(
        text.contains("would act (confidence >= 0.70)")
            && text.contains("ECE")
            && text.contains("reliability"),
        "{text}"
    );

    let none = temp_dir("none");
    let e = eval::evaluate_path(
        &none,
        Arc::new(OfflineAnalyst::new()),
        &PipelineConfig::default(),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no iras-scenario/1 scenario"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&none);
}

#[test]
fn llm_without_a_provider_is_a_clear_error() {
    if std::env::var("LLM_PROVIDER").is_ok() {
        return;
    }
    let e = eval::AnalystChoice::Llm.analyst().err().unwrap();
    assert_eq!(e.to_string(), "no LLM configured (LLM_PROVIDER unset)");
}

/// `iras eval` runs several scenarios at once on a multi-thread runtime: the report must be
/// the one a run one scenario at a time gives, in the files' order, broken files included.
#[test]
fn concurrent_eval_reports_what_one_at_a_time_reports_in_file_order() {
    let dir = temp_dir("concurrent");
    let synthetic = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/synthetic");
    let mut copied = 0;
    for f in eval::scenario_files(&synthetic).unwrap() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        std::fs::copy(&f, dir.join(&name)).unwrap();
        copied += 1;
    }
    assert!(copied >= 8, "the synthetic set has its scenarios");
    std::fs::write(dir.join("nested/garbage.json"), "{not json").unwrap();
    std::fs::write(dir.join("0-other.json"), r#"{"name": "x"}"#).unwrap();

    let run = |rt: tokio::runtime::Runtime| {
        let mut progress = Vec::new();
        let report = rt
            .block_on(eval::evaluate_path(
                &dir,
                Arc::new(OfflineAnalyst::new()),
                &PipelineConfig::default(),
                |done, total| progress.push((done, total)),
            ))
            .unwrap();
        (report, progress)
    };
    let (one, one_progress) = run(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap());
    let (many, many_progress) = run(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap());

    assert_eq!(many.to_json(), one.to_json());
    assert_eq!(many.cases.len(), copied + 1, "the garbage file is a miss");
    let files: Vec<&str> = many.cases.iter().map(|c| c.file.as_str()).collect();
    let expected: Vec<String> = eval::scenario_files(&dir)
        .unwrap()
        .iter()
        .map(|f| {
            f.strip_prefix(&dir)
                .unwrap()
                .display()
                .to_string()
                .replace('\\', "/")
        })
        .filter(|f| f != "0-other.json")
        .collect();
    assert_eq!(files, expected, "cases in the files' order");
    let total = copied + 2;
    assert_eq!(many_progress, one_progress);
    assert_eq!(
        many_progress,
        (1..=total).map(|d| (d, total)).collect::<Vec<_>>(),
        "progress counts every file once, in order"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! The state machine and the stages speak one error vocabulary: every Task state refuses to
//! retry exactly the errors a retry cannot mend, and every name a `Retry` or `Catch` matches
//! is one the stages (or Step Functions itself) can raise.

use std::collections::BTreeSet;

use iras_core::stages::StageErrorKind;
use serde_json::Value;

const DEFINITION: &str = include_str!("../../../statemachine.asl.json");

fn task_states() -> Vec<(String, Value)> {
    let def: Value = serde_json::from_str(DEFINITION).expect("the definition is JSON");
    def["States"]
        .as_object()
        .expect("States")
        .iter()
        .filter(|(_, s)| s["Type"] == "Task")
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect()
}

fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("ErrorEquals is a list")
        .iter()
        .map(|n| n.as_str().expect("error names are strings").to_string())
        .collect()
}

#[test]
fn every_task_state_refuses_to_retry_exactly_the_non_retryable_stage_errors() {
    let expected: BTreeSet<String> = StageErrorKind::non_retryable()
        .into_iter()
        .map(str::to_string)
        .collect();
    let tasks = task_states();
    // One Task state per stage, and the rollback after an unhelpful plan (Remediate again).
    let called: BTreeSet<String> = tasks
        .iter()
        .map(|(_, s)| {
            s["Parameters"]["FunctionName"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let stages: BTreeSet<String> = iras_core::handler::Stage::ALL
        .iter()
        .map(|s| format!("${{{}}}", s.arn_placeholder()))
        .collect();
    assert_eq!(
        called, stages,
        "every stage's function is called, and only those"
    );
    assert_eq!(tasks.len(), stages.len() + 1);
    for (state, s) in tasks {
        let no_retry: Vec<BTreeSet<String>> = s["Retry"]
            .as_array()
            .unwrap_or_else(|| panic!("{state} has no Retry"))
            .iter()
            .filter(|r| r["MaxAttempts"] == 0)
            .map(|r| names(&r["ErrorEquals"]))
            .collect();
        assert_eq!(
            no_retry,
            vec![expected.clone()],
            "{state}: its MaxAttempts 0 retrier must list exactly StageErrorKind::non_retryable()"
        );
        assert_eq!(
            s["Retry"][0]["MaxAttempts"], 0,
            "{state}: the no-retry list must come first, or a broader retrier matches first"
        );
    }
}

#[test]
fn every_matched_error_name_is_one_that_can_be_raised() {
    let ours: BTreeSet<&str> = StageErrorKind::all().map(StageErrorKind::name).collect();
    for (state, s) in task_states() {
        for list in ["Retry", "Catch"] {
            for r in s[list].as_array().into_iter().flatten() {
                for name in names(&r["ErrorEquals"]) {
                    let known = name.starts_with("States.")
                        || name.starts_with("Lambda.")
                        || ours.contains(name.as_str());
                    assert!(
                        known,
                        "{state}.{list} matches `{name}`, which nothing raises"
                    );
                }
            }
        }
    }
}

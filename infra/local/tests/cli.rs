//! `iras demo` as a newcomer runs it: the binary, its stdout JSON and its errors.

use std::process::{Command, Output};

use serde_json::Value;

fn iras(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iras"))
        .args(args)
        .env_remove("RCA_CONFIDENCE_THRESHOLD")
        .env_remove("RCA_MAX_ATTEMPTS")
        .output()
        .expect("iras runs")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "iras failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn demo_approves_and_resolves_the_payment_incident() {
    let out = iras(&["demo", "--json"]);
    let v = json_of(&out);
    assert_eq!(v["status"], "resolved");
    assert!(v["incident_id"].as_str().unwrap().starts_with("inc-"));
    assert_eq!(v["hypothesis"]["root_cause_service"], "payment-service");
    assert_eq!(v["approval"]["decision"]["decision"], "approved");
    assert!(
        v.get("approval").unwrap().get("task_token").is_none(),
        "the token never leaves the store"
    );
    assert_eq!(v["postmortem"]["outcome"], "resolved");
    let steps = v["steps"].as_array().unwrap();
    assert!(!steps.is_empty());
    // The plan is typed actions, and the dry-run executor ran them: nothing was changed.
    assert_eq!(v["plan"]["steps"][0]["action"]["type"], "runner");
    assert_eq!(
        v["plan"]["steps"][0]["action"]["operation"],
        "kubernetes.rollout_undo"
    );
    assert!(
        steps.iter().all(|s| s["executor"] == "dry-run"),
        "{steps:?}"
    );
    assert_eq!(v["verification"]["outcome"], "skipped");
    // Progress is on stderr, one line per state, so a person can follow it.
    let err = String::from_utf8_lossy(&out.stderr);
    for state in [
        "Triage",
        "GatherContext",
        "Rca",
        "Plan",
        "RequestApproval",
        "Remediate",
        "Verify",
        "PostMortem",
    ] {
        assert!(err.contains(state), "no progress line for {state}:\n{err}");
    }
    assert!(
        err.contains("executor: dry-run"),
        "the demo says which executor ran:\n{err}"
    );
}

/// `iras demo > pm.md` keeps the post-mortem; what a person follows live stays on the terminal.
#[test]
fn the_demo_writes_its_postmortem_on_stdout_and_its_progress_on_stderr() {
    let out = iras(&["demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pm = String::from_utf8_lossy(&out.stdout);
    assert!(pm.starts_with("# Post-mortem: "), "stdout: {pm}");
    assert!(pm.contains("## Timeline (UTC)") && pm.contains("- **Outcome**: resolved"));
    assert!(
        !pm.contains("RequestApproval"),
        "progress lines stay off stdout: {pm}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RequestApproval") && !err.contains("# Post-mortem"),
        "{err}"
    );
}

#[test]
fn demo_reject_escalates() {
    let v = json_of(&iras(&["demo", "--reject", "--json"]));
    assert_eq!(v["status"], "escalated");
    assert_eq!(v["escalation"]["reason"], "rejected");
    assert_eq!(v["steps"].as_array().unwrap().len(), 0);
}

#[test]
fn demo_without_a_decision_escalates_on_timeout() {
    let v = json_of(&iras(&[
        "demo",
        "--no-decision",
        "--approval-timeout",
        "1s",
        "--json",
    ]));
    assert_eq!(v["status"], "escalated");
    assert_eq!(v["escalation"]["reason"], "approval_timeout");
}

#[test]
fn an_unreadable_scenario_is_a_clear_error() {
    let out = iras(&["demo", "--scenario", "/nonexistent/scenario.json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/scenario.json"), "{err}");
}

#[test]
fn a_scenario_alert_without_title_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"format":"iras-scenario/1","alert":{"timestamp":"2024-01-01T00:00:00Z"}}"#,
    )
    .unwrap();
    let out = iras(&["demo", "--scenario", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("title"), "{err}");
}

#[test]
fn an_unsupported_state_type_in_the_definition_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("def.json");
    std::fs::write(
        &path,
        r#"{"StartAt":"Each","States":{"Each":{"Type":"Map","End":true}}}"#,
    )
    .unwrap();
    let out = iras(&["demo", "--definition", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Each") && err.contains("Map"), "{err}");
}

/// `iras demo` honours the integrations' configuration: with a PagerDuty key and a local
/// Events API, a rejected plan pages through it, keyed by the incident.
#[tokio::test(flavor = "multi_thread")]
async fn demo_pages_through_a_configured_pagerduty() {
    use axum::{extract::State, routing::post, Json, Router};
    use std::sync::{Arc, Mutex};

    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = Router::new()
        .route(
            "/v2/enqueue",
            post(
                |State(seen): State<Arc<Mutex<Vec<Value>>>>, Json(body): Json<Value>| async move {
                    let key = body["dedup_key"].clone();
                    seen.lock().unwrap().push(body);
                    (
                        axum::http::StatusCode::ACCEPTED,
                        Json(serde_json::json!({"status": "success", "message": "Event processed", "dedup_key": key})),
                    )
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_iras"))
        .args(["demo", "--reject", "--json"])
        .env(
            "PAGERDUTY_INTEGRATION_KEY",
            "R0UTINGKEY0000000000000000000000",
        )
        .env("PAGERDUTY_EVENTS_URL", format!("http://{addr}/v2/enqueue"))
        .output()
        .await
        .unwrap();
    server.abort();
    let v = json_of(&out);
    assert_eq!(v["status"], "escalated");
    assert_eq!(v["escalation"]["paged_via"], "pagerduty");
    let events = received.lock().unwrap().clone();
    let triggers: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_action"] == "trigger")
        .collect();
    assert_eq!(triggers.len(), 1, "{events:?}");
    // Keyed by the source's alert (its fingerprint), so re-pages of it collapse in PagerDuty.
    let key = triggers[0]["dedup_key"].as_str().unwrap();
    assert!(key.starts_with("iras-") && key.len() == 37, "{key}");
    assert_ne!(triggers[0]["dedup_key"], v["incident_id"]);
    assert_eq!(
        triggers[0]["routing_key"],
        "R0UTINGKEY0000000000000000000000"
    );
}

#[test]
fn eval_prints_one_json_document_with_the_summary_dashboards_read() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/synthetic");
    let v = json_of(&iras(&["eval", dir, "--json"]));
    let s = &v["summary"];
    assert_eq!(s["n"], 12);
    for k in ["ac1", "ac3", "avg5", "confidently_wrong"] {
        let x = s[k]
            .as_f64()
            .unwrap_or_else(|| panic!("summary.{k} missing: {s}"));
        assert!((0.0..=1.0).contains(&x), "{k} = {x}");
    }
    assert_eq!(v["cases"].as_array().unwrap().len(), 12);
    let baro = json_of(&iras(&["eval", dir, "--analyst", "baro", "--json"]));
    assert!(
        s["ac1"].as_f64() > baro["summary"]["ac1"].as_f64(),
        "offline beats BARO"
    );
}

#[test]
fn eval_over_several_sets_reports_each_through_a_calibration_fitted_on_the_others() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios");
    let (a, b) = (
        format!("{root}/synthetic"),
        format!("{root}/petshop/low_traffic/test"),
    );
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("calibration.json");
    let v = json_of(&iras(&[
        "eval",
        &a,
        &b,
        "--json",
        "--write-calibration",
        file.to_str().unwrap(),
    ]));
    let sets = v["sets"].as_array().expect("one entry per set");
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["summary"]["n"], 12);
    assert_eq!(sets[1]["summary"]["n"], 18);
    for (s, other) in sets.iter().zip([&b, &a]) {
        let how = s["summary"]["calibration"].as_str().unwrap();
        assert!(how.starts_with("leave-one-set-out"), "{how}");
        assert!(
            how.contains(other.as_str()),
            "fitted on the other set: {how}"
        );
    }
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["analyst"], "offline");
    assert_eq!(written["fit_on"][0]["n"], 12);
    assert_eq!(written["fit_on"][1]["n"], 18);
    assert!(!written["points"].as_array().unwrap().is_empty());
}

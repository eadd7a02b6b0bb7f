//! Input and output processing, and the pure part of each state type.
//!
//! The order is the documented one: `InputPath` → `Parameters` → (the task) → `ResultSelector`
//! → `ResultPath` (into the state's *raw* input) → `OutputPath`. `InputPath`/`OutputPath` set to
//! `null` give `{}`; `ResultPath: null` discards the result. A path that matches nothing is a
//! `States.Runtime` error; a ResultPath that cannot be applied is `States.ResultPathMatchFailure`.

use super::choice;
use super::definition::{
    FailState, PassState, State, StringSource, TaskState, TaskTimeout, WaitFor,
};
use super::failure::{errors, StateFailure};
use super::path::{bracket_notation, Path};
use super::retry::Catcher;
use super::template::Template;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

fn no_results(path: &Path) -> StateFailure {
    StateFailure::runtime(format!(
        "Invalid path '{}' : No results for path: {}",
        path.text(),
        bracket_notation(path)
    ))
}

/// Applies `InputPath` (`None` is `null`: the state sees `{}`).
pub fn input_path(input: &Value, path: Option<&Path>) -> Result<Value, StateFailure> {
    match path {
        None => Ok(Value::Object(Map::new())),
        Some(p) => p.select_in(input).ok_or_else(|| no_results(p)),
    }
}

/// Applies `OutputPath` (`None` is `null`: the next state gets `{}`).
pub fn output_path(output: &Value, path: Option<&Path>) -> Result<Value, StateFailure> {
    input_path(output, path)
}

/// Applies `ResultPath`: places `result` into a copy of the state's raw input.
pub fn result_path(
    raw_input: &Value,
    path: Option<&Path>,
    result: Value,
) -> Result<Value, StateFailure> {
    let Some(p) = path else {
        return Ok(raw_input.clone());
    };
    let mut out = raw_input.clone();
    p.set_in(&mut out, result).map_err(|why| {
        StateFailure::new(
            errors::RESULT_PATH_MATCH_FAILURE,
            format!(
                "Unable to apply ResultPath '{}' to input {raw_input}: {why}",
                p.text()
            ),
        )
    })?;
    Ok(out)
}

/// Applies a payload template (Parameters or ResultSelector) if there is one.
pub fn apply_template(
    template: Option<&Template>,
    doc: Value,
    context: &Value,
) -> Result<Value, StateFailure> {
    match template {
        None => Ok(doc),
        Some(t) => t.evaluate(&doc, context),
    }
}

/// `InputPath` then `Parameters`: what a Pass or Task state works on.
pub fn effective_input(
    state: &State,
    parameters: Option<&Template>,
    raw_input: &Value,
    context: &Value,
) -> Result<Value, StateFailure> {
    let selected = input_path(raw_input, state.input_path.as_ref())?;
    apply_template(parameters, selected, context)
}

/// The output of a Pass state.
pub fn pass_output(
    state: &State,
    pass: &PassState,
    raw_input: &Value,
    context: &Value,
) -> Result<Value, StateFailure> {
    let effective = effective_input(state, pass.parameters.as_ref(), raw_input, context)?;
    let result = pass.result.clone().unwrap_or(effective);
    let placed = result_path(raw_input, pass.result_path.as_ref(), result)?;
    output_path(&placed, state.output_path.as_ref())
}

/// `ResultSelector` then `ResultPath` for a task result. Failures here count as the task's
/// failure (they go through Retry and Catch), unlike `OutputPath`, applied afterwards.
pub fn place_task_result(
    task: &TaskState,
    raw_input: &Value,
    result: Value,
    context: &Value,
) -> Result<Value, StateFailure> {
    let selected = apply_template(task.result_selector.as_ref(), result, context)?;
    result_path(raw_input, task.result_path.as_ref(), selected)
}

// Here rather than in retry.rs: definition imports retry and io imports definition, so retry
// importing io (for result_path) was a cycle; io owns every ResultPath placement instead.
/// The input of the state a catcher transitions to: the error output placed into the state's
/// raw input by the catcher's ResultPath.
pub fn catch_output(
    catcher: &Catcher,
    raw_input: &Value,
    failure: &StateFailure,
) -> Result<Value, StateFailure> {
    result_path(
        raw_input,
        catcher.result_path.as_ref(),
        failure.error_output(),
    )
}

/// The task's timeout in seconds, reading `TimeoutSecondsPath` from the input after InputPath.
pub fn task_timeout_seconds(
    task: &TaskState,
    selected_input: &Value,
) -> Result<Option<u64>, StateFailure> {
    match &task.timeout {
        None => Ok(None),
        Some(TaskTimeout::Seconds(s)) => Ok(Some(*s)),
        Some(TaskTimeout::Path(p)) => {
            let v = p.select_in(selected_input).ok_or_else(|| no_results(p))?;
            v.as_u64().filter(|s| *s > 0).map(Some).ok_or_else(|| {
                StateFailure::runtime(format!(
                    "The value {v} of TimeoutSecondsPath '{}' is not a positive integer",
                    p.text()
                ))
            })
        }
    }
}

/// A Choice state: the next state and the state's output.
pub fn choice_outcome(
    state: &State,
    choice_state: &super::definition::ChoiceState,
    raw_input: &Value,
    context: &Value,
) -> Result<(String, Value), StateFailure> {
    let effective = input_path(raw_input, state.input_path.as_ref())?;
    let next = choice::choose(
        &choice_state.choices,
        choice_state.default.as_deref(),
        &effective,
        context,
    )?;
    let output = output_path(&effective, state.output_path.as_ref())?;
    Ok((next.to_string(), output))
}

/// A Wait state: when it ends, computed from its effective input at `now`.
pub fn wait_until(
    state: &State,
    wait: &WaitFor,
    raw_input: &Value,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, StateFailure> {
    let effective = input_path(raw_input, state.input_path.as_ref())?;
    let seconds = |s: u64| {
        now + Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000).min(99_999_999))
    };
    match wait {
        WaitFor::Seconds(s) => Ok(seconds(*s)),
        WaitFor::Timestamp(t) => Ok(*t),
        WaitFor::SecondsPath(p) => {
            let v = p.select_in(&effective).ok_or_else(|| no_results(p))?;
            v.as_u64().map(seconds).ok_or_else(|| {
                StateFailure::runtime(format!(
                    "The value {v} of SecondsPath '{}' is not a non-negative integer",
                    p.text()
                ))
            })
        }
        WaitFor::TimestampPath(p) => {
            let v = p.select_in(&effective).ok_or_else(|| no_results(p))?;
            v.as_str().and_then(choice::parse_timestamp).ok_or_else(|| {
                StateFailure::runtime(format!(
                    "The value {v} of TimestampPath '{}' is not an RFC 3339 timestamp",
                    p.text()
                ))
            })
        }
    }
}

/// A Wait state's output once it has waited.
pub fn wait_output(state: &State, raw_input: &Value) -> Result<Value, StateFailure> {
    let effective = input_path(raw_input, state.input_path.as_ref())?;
    output_path(&effective, state.output_path.as_ref())
}

/// A Succeed state's output.
pub fn succeed_output(state: &State, raw_input: &Value) -> Result<Value, StateFailure> {
    wait_output(state, raw_input)
}

fn resolve_string(
    src: &StringSource,
    raw_input: &Value,
    context: &Value,
    field: &str,
) -> Result<String, StateFailure> {
    let v = match src {
        StringSource::Literal(s) => return Ok(s.clone()),
        StringSource::Path(p) => p.select(raw_input, context).ok_or_else(|| no_results(p))?,
        StringSource::Intrinsic(i) => i.evaluate(raw_input, context)?,
    };
    match v {
        Value::String(s) => Ok(s),
        other => Err(StateFailure::runtime(format!(
            "The value of {field} must be a string, got {other}"
        ))),
    }
}

/// A Fail state's error and cause (empty strings when not given).
pub fn fail_details(
    fail: &FailState,
    raw_input: &Value,
    context: &Value,
) -> Result<StateFailure, StateFailure> {
    let error = match &fail.error {
        Some(s) => resolve_string(s, raw_input, context, "ErrorPath")?,
        None => String::new(),
    };
    let cause = match &fail.cause {
        Some(s) => resolve_string(s, raw_input, context, "CausePath")?,
        None => String::new(),
    };
    Ok(StateFailure { error, cause })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asl::definition::{Definition, StateKind};
    use crate::asl::retry::parse_catcher;
    use serde_json::json;
    use std::collections::HashMap;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    fn one_state(state_json: Value) -> Definition {
        let def = json!({"StartAt": "S", "States": {"S": state_json}});
        Definition::load(&def.to_string(), &HashMap::new()).unwrap()
    }

    /// The InputPath example from "Manipulate parameters in Step Functions workflows".
    #[test]
    fn input_path_example_from_the_docs() {
        let input = json!({
            "comment": "Example for InputPath.",
            "dataset1": {"val1": 1, "val2": 2, "val3": 3},
            "dataset2": {"val1": "a", "val2": "b", "val3": "c"}
        });
        assert_eq!(
            input_path(&input, Some(&p("$.dataset2"))).unwrap(),
            json!({"val1": "a", "val2": "b", "val3": "c"})
        );
        assert_eq!(input_path(&input, None).unwrap(), json!({}));
        let err = input_path(&input, Some(&p("$.dataset3"))).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert_eq!(
            err.cause,
            "Invalid path '$.dataset3' : No results for path: $['dataset3']"
        );
    }

    /// The ResultPath examples from "Specifying state output using ResultPath".
    #[test]
    fn result_path_examples_from_the_docs() {
        let input = json!({
            "comment": "This is a test of the input and output of a Task state.",
            "details": "Default example",
            "who": "AWS Step Functions"
        });
        let result = json!("Hello, AWS Step Functions!");
        // Replace the input with the result (the default, "$").
        assert_eq!(
            result_path(&input, Some(&p("$")), result.clone()).unwrap(),
            result
        );
        // Include the result with the input.
        let mut expected = input.clone();
        expected["taskresult"] = result.clone();
        assert_eq!(
            result_path(&input, Some(&p("$.taskresult")), result.clone()).unwrap(),
            expected
        );
        // Insert the result into a child node.
        let nested = json!({
            "comment": "An input comment.",
            "strings": {"string1": "foo", "string2": "bar", "string3": "baz"},
            "who": "AWS Step Functions"
        });
        let out = result_path(&nested, Some(&p("$.strings.lambdaresult")), result.clone()).unwrap();
        assert_eq!(
            out["strings"],
            json!({"string1": "foo", "string2": "bar", "string3": "baz", "lambdaresult": "Hello, AWS Step Functions!"})
        );
        // Update a node in the input.
        let out = result_path(&input, Some(&p("$.comment")), result.clone()).unwrap();
        assert_eq!(out["comment"], result);
        assert_eq!(out["who"], input["who"]);
        // ResultPath null discards the result.
        assert_eq!(result_path(&input, None, result).unwrap(), input);
    }

    #[test]
    fn result_path_that_cannot_apply_is_result_path_match_failure() {
        let err = result_path(&json!({"a": "text"}), Some(&p("$.a.b")), json!(1)).unwrap_err();
        assert_eq!(err.error, "States.ResultPathMatchFailure");
        let err = result_path(&json!("scalar"), Some(&p("$.x")), json!(1)).unwrap_err();
        assert_eq!(err.error, "States.ResultPathMatchFailure");
    }

    /// The InputPath / ResultPath / OutputPath example ("Numbers to add").
    #[test]
    fn numbers_to_add_example_from_the_docs() {
        let def = one_state(json!({
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:Add",
            "InputPath": "$.numbers", "ResultPath": "$.sum", "OutputPath": "$", "End": true
        }));
        let state = def.state("S").unwrap();
        let StateKind::Task(task) = &state.kind else {
            panic!()
        };
        let raw = json!({"title": "Numbers to add", "numbers": {"val1": 3, "val2": 4}});
        let task_input =
            effective_input(state, task.parameters.as_ref(), &raw, &json!({})).unwrap();
        assert_eq!(task_input, json!({"val1": 3, "val2": 4}));
        let placed = place_task_result(task, &raw, json!(7), &json!({})).unwrap();
        let out = output_path(&placed, state.output_path.as_ref()).unwrap();
        assert_eq!(
            out,
            json!({"title": "Numbers to add", "numbers": {"val1": 3, "val2": 4}, "sum": 7})
        );
        // With "OutputPath": "$.sum" the output is 7.
        assert_eq!(output_path(&placed, Some(&p("$.sum"))).unwrap(), json!(7));
        assert_eq!(output_path(&placed, None).unwrap(), json!({}));
    }

    /// "Example: Manipulating state data with paths" (the HelloWorld Lambda example).
    #[test]
    fn hello_world_paths_example_from_the_docs() {
        let def = one_state(json!({
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:HelloFunction",
            "InputPath": "$.lambda", "ResultPath": "$.data.lambdaresult", "OutputPath": "$.data", "End": true
        }));
        let state = def.state("S").unwrap();
        let StateKind::Task(task) = &state.kind else {
            panic!()
        };
        let raw = json!({
            "comment": "An input comment.",
            "data": {"val1": 23, "val2": 17},
            "extra": "foo",
            "lambda": {"who": "AWS Step Functions"}
        });
        assert_eq!(
            effective_input(state, None, &raw, &json!({})).unwrap(),
            json!({"who": "AWS Step Functions"})
        );
        let placed =
            place_task_result(task, &raw, json!("Hello, AWS Step Functions!"), &json!({})).unwrap();
        assert_eq!(
            output_path(&placed, state.output_path.as_ref()).unwrap(),
            json!({"val1": 23, "val2": 17, "lambdaresult": "Hello, AWS Step Functions!"})
        );
    }

    /// The ResultSelector example (an EMR createCluster.sync result) with ResultPath.
    #[test]
    fn result_selector_example_from_the_docs() {
        let def = one_state(json!({
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:F",
            "ResultSelector": {"ClusterId.$": "$.output.ClusterId", "ResourceType.$": "$.resourceType"},
            "ResultPath": "$.EMROutput", "End": true
        }));
        let StateKind::Task(task) = &def.state("S").unwrap().kind else {
            panic!()
        };
        let result = json!({
            "resourceType": "elasticmapreduce",
            "resource": "createCluster.sync",
            "output": {
                "SdkHttpMetadata": {"HttpHeaders": {"Content-Length": "1112"}, "HttpStatusCode": 200},
                "SdkResponseMetadata": {"RequestId": "1234-5678-9012"},
                "ClusterId": "AKIAIOSFODNN7EXAMPLE"
            }
        });
        let out = place_task_result(task, &json!({"OtherDataFromInput": {}}), result, &json!({}))
            .unwrap();
        assert_eq!(
            out,
            json!({
                "OtherDataFromInput": {},
                "EMROutput": {"ResourceType": "elasticmapreduce", "ClusterId": "AKIAIOSFODNN7EXAMPLE"}
            })
        );
    }

    #[test]
    fn pass_state_result_parameters_and_paths() {
        let def = one_state(json!({
            "Type": "Pass", "Result": {"x-datum": 0.381018, "y-datum": 622.2269926397355},
            "ResultPath": "$.coords", "End": true
        }));
        let state = def.state("S").unwrap();
        let StateKind::Pass(pass) = &state.kind else {
            panic!()
        };
        let out = pass_output(state, pass, &json!({"georefOf": "Home"}), &json!({})).unwrap();
        assert_eq!(
            out,
            json!({"georefOf": "Home", "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355}})
        );
        let def = one_state(json!({"Type": "Pass", "Parameters": {"v.$": "$.a"}, "End": true}));
        let state = def.state("S").unwrap();
        let StateKind::Pass(pass) = &state.kind else {
            panic!()
        };
        assert_eq!(
            pass_output(state, pass, &json!({"a": 1}), &json!({})).unwrap(),
            json!({"v": 1})
        );
    }

    #[test]
    fn timeout_seconds_path_reads_the_selected_input() {
        let def = one_state(json!({
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "f", "Payload": {"t.$": "$$.Task.Token"}},
            "TimeoutSecondsPath": "$.limits.approval", "End": true
        }));
        let StateKind::Task(task) = &def.state("S").unwrap().kind else {
            panic!()
        };
        assert_eq!(
            task_timeout_seconds(task, &json!({"limits": {"approval": 30}})).unwrap(),
            Some(30)
        );
        assert_eq!(
            task_timeout_seconds(task, &json!({"limits": {"approval": 0}}))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
        assert_eq!(
            task_timeout_seconds(task, &json!({})).unwrap_err().error,
            "States.Runtime"
        );
    }

    #[test]
    fn wait_state_times() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for (wait, input, expected) in [
            (json!({"Seconds": 10}), json!({}), "2024-01-01T00:00:10Z"),
            (
                json!({"SecondsPath": "$.s"}),
                json!({"s": 5}),
                "2024-01-01T00:00:05Z",
            ),
            (
                json!({"Timestamp": "2024-02-01T00:00:00Z"}),
                json!({}),
                "2024-02-01T00:00:00Z",
            ),
            (
                json!({"TimestampPath": "$.t"}),
                json!({"t": "2024-03-01T00:00:00Z"}),
                "2024-03-01T00:00:00Z",
            ),
        ] {
            let mut s = wait.clone();
            s["Type"] = json!("Wait");
            s["End"] = json!(true);
            let def = one_state(s);
            let state = def.state("S").unwrap();
            let StateKind::Wait(w) = &state.kind else {
                panic!()
            };
            let at = wait_until(state, &w.wait, &input, now).unwrap();
            assert_eq!(
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                expected,
                "{wait}"
            );
        }
    }

    #[test]
    fn fail_state_paths_and_intrinsics() {
        let def = one_state(
            json!({"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('bad {}', $.n)"}),
        );
        let StateKind::Fail(fail) = &def.state("S").unwrap().kind else {
            panic!()
        };
        assert_eq!(
            fail_details(fail, &json!({"e": "Oops", "n": 3}), &json!({})).unwrap(),
            StateFailure::new("Oops", "bad 3")
        );
        assert_eq!(
            fail_details(fail, &json!({"e": 1, "n": 3}), &json!({}))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
    }

    /// "Use ResultPath to include both error and input in a Catch".
    #[test]
    fn catch_result_path_example_from_the_docs() {
        let c = parse_catcher(
            &json!({"ErrorEquals": ["States.ALL"], "Next": "NextTask", "ResultPath": "$.error"}),
        )
        .unwrap();
        let out = catch_output(
            &c,
            &json!({"foo": "bar"}),
            &StateFailure::new("Error here", "because"),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"foo": "bar", "error": {"Error": "Error here", "Cause": "because"}})
        );
        // Without ResultPath the error output replaces the input.
        let c = parse_catcher(&json!({"ErrorEquals": ["States.ALL"], "Next": "EndState"})).unwrap();
        let out = catch_output(&c, &json!({"foo": "bar"}), &StateFailure::new("E", "C")).unwrap();
        assert_eq!(out, json!({"Error": "E", "Cause": "C"}));
        // With null the input passes unchanged.
        let c =
            parse_catcher(&json!({"ErrorEquals": ["States.ALL"], "Next": "N", "ResultPath": null}))
                .unwrap();
        assert_eq!(
            catch_output(&c, &json!({"foo": "bar"}), &StateFailure::new("E", "C")).unwrap(),
            json!({"foo": "bar"})
        );
    }
}

//! Loading and validating a state machine definition.
//!
//! Anything outside the subset the local runtime implements is refused here, with an error that
//! names the state and the field, so that a definition that loads is one the runtime can run.

use super::choice::{self, ChoiceRule};
use super::intrinsics::{looks_like_intrinsic, Intrinsic};
use super::path::Path;
use super::retry::{self, Catcher, Retrier};
use super::template::Template;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// A definition that cannot be loaded. `state` and `field` locate the problem; `Display` gives
/// a sentence such as `state "Fanout": Type "Parallel" is not supported by the local runtime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub state: Option<String>,
    pub field: Option<String>,
    message: String,
}

impl DefinitionError {
    fn at(state: Option<&str>, field: impl Into<String>, message: impl fmt::Display) -> Self {
        let field = field.into();
        let text = if field.is_empty() {
            message.to_string()
        } else {
            format!("field \"{field}\": {message}")
        };
        DefinitionError {
            state: state.map(str::to_string),
            field: (!field.is_empty()).then_some(field),
            message: text,
        }
    }

    fn top(field: impl Into<String>, message: impl fmt::Display) -> Self {
        Self::at(None, field, message)
    }

    fn in_state(state: &str, field: impl Into<String>, message: impl fmt::Display) -> Self {
        Self::at(Some(state), field, message)
    }

    /// The explanation without the state prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            Some(s) => write!(f, "state \"{s}\": {}", self.message),
            None => write!(f, "definition: {}", self.message),
        }
    }
}

impl std::error::Error for DefinitionError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateType {
    Task,
    Pass,
    Choice,
    Wait,
    Succeed,
    Fail,
}

impl StateType {
    pub fn as_str(self) -> &'static str {
        match self {
            StateType::Task => "Task",
            StateType::Pass => "Pass",
            StateType::Choice => "Choice",
            StateType::Wait => "Wait",
            StateType::Succeed => "Succeed",
            StateType::Fail => "Fail",
        }
    }
}

impl fmt::Display for StateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Next(String),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// `arn:aws:states:::lambda:invoke[.waitForTaskToken]`: Parameters carry `FunctionName`.
    LambdaInvoke { wait_for_task_token: bool },
    /// `arn:aws:lambda:<region>:<account>:function:<name>`: the effective input is the payload.
    LambdaFunction { arn: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskTimeout {
    Seconds(u64),
    Path(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitFor {
    Seconds(u64),
    SecondsPath(Path),
    Timestamp(DateTime<Utc>),
    TimestampPath(Path),
}

/// Where a Fail state's Error or Cause comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum StringSource {
    Literal(String),
    Path(Path),
    Intrinsic(Intrinsic),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PassState {
    pub parameters: Option<Template>,
    pub result: Option<Value>,
    /// `None` is `"ResultPath": null`.
    pub result_path: Option<Path>,
    pub transition: Transition,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub resource: Resource,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    /// `None` is `"ResultPath": null`.
    pub result_path: Option<Path>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
    pub timeout: Option<TaskTimeout>,
    pub transition: Transition,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceState {
    pub choices: Vec<ChoiceRule>,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaitState {
    pub wait: WaitFor,
    pub transition: Transition,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailState {
    pub error: Option<StringSource>,
    pub cause: Option<StringSource>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StateKind {
    Task(TaskState),
    Pass(PassState),
    Choice(ChoiceState),
    Wait(WaitState),
    Succeed,
    Fail(FailState),
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub name: String,
    pub comment: Option<String>,
    /// `None` is `null` (the state sees `{}`); absent in the definition means `$`.
    pub input_path: Option<Path>,
    /// `None` is `null` (the output is `{}`); absent in the definition means `$`.
    pub output_path: Option<Path>,
    pub kind: StateKind,
}

impl State {
    pub fn state_type(&self) -> StateType {
        match self.kind {
            StateKind::Task(_) => StateType::Task,
            StateKind::Pass(_) => StateType::Pass,
            StateKind::Choice(_) => StateType::Choice,
            StateKind::Wait(_) => StateType::Wait,
            StateKind::Succeed => StateType::Succeed,
            StateKind::Fail(_) => StateType::Fail,
        }
    }

    fn transition(&self) -> Option<&Transition> {
        match &self.kind {
            StateKind::Task(t) => Some(&t.transition),
            StateKind::Pass(p) => Some(&p.transition),
            StateKind::Wait(w) => Some(&w.transition),
            _ => None,
        }
    }

    /// Every state this one can move to, with the field that names it.
    fn targets(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        if let Some(Transition::Next(n)) = self.transition() {
            out.push(("Next".to_string(), n.as_str()));
        }
        match &self.kind {
            StateKind::Task(t) => {
                for (i, c) in t.catch.iter().enumerate() {
                    out.push((format!("Catch[{i}].Next"), c.next.as_str()));
                }
            }
            StateKind::Choice(c) => {
                for (i, r) in c.choices.iter().enumerate() {
                    out.push((format!("Choices[{i}].Next"), r.next.as_str()));
                }
                if let Some(d) = &c.default {
                    out.push(("Default".to_string(), d.as_str()));
                }
            }
            _ => {}
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub comment: Option<String>,
    pub start_at: String,
    pub version: Option<String>,
    /// Top-level `TimeoutSeconds`: the execution times out after this long.
    pub timeout_seconds: Option<u64>,
    pub states: BTreeMap<String, State>,
    source: String,
}

/// Replaces every `${Name}` with `substitutions[Name]`, like SAM's DefinitionSubstitutions.
pub fn substitute(
    text: &str,
    substitutions: &HashMap<String, String>,
) -> Result<String, DefinitionError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| DefinitionError::top("", "an unterminated \"${\" placeholder"))?;
        let name = &after[..end];
        match substitutions.get(name) {
            Some(v) => out.push_str(v),
            None => {
                return Err(DefinitionError::top(
                    "",
                    format!("unknown placeholder \"${{{name}}}\": no substitution named \"{name}\" was given"),
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Definition {
    /// Substitutes `${Name}` placeholders, then parses and validates the definition.
    pub fn load(
        text: &str,
        substitutions: &HashMap<String, String>,
    ) -> Result<Definition, DefinitionError> {
        let source = substitute(text, substitutions)?;
        let json: Value = serde_json::from_str(&source).map_err(|e| {
            DefinitionError::top("", format!("the definition is not valid JSON: {e}"))
        })?;
        let obj = json
            .as_object()
            .ok_or_else(|| DefinitionError::top("", "the definition must be a JSON object"))?;
        for k in obj.keys() {
            if !matches!(
                k.as_str(),
                "Comment" | "StartAt" | "States" | "Version" | "TimeoutSeconds" | "QueryLanguage"
            ) {
                return Err(DefinitionError::top(
                    k.clone(),
                    "is not supported by the local runtime",
                ));
            }
        }
        check_query_language(obj, None)?;
        let comment = opt_string(obj, "Comment", None)?;
        let version = opt_string(obj, "Version", None)?;
        let start_at = opt_string(obj, "StartAt", None)?
            .ok_or_else(|| DefinitionError::top("StartAt", "is required"))?;
        let timeout_seconds = match obj.get("TimeoutSeconds") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| (1..=99_999_999).contains(n))
                    .ok_or_else(|| {
                        DefinitionError::top(
                            "TimeoutSeconds",
                            "must be an integer from 1 to 99999999",
                        )
                    })?,
            ),
        };
        let states_json = obj
            .get("States")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                DefinitionError::top("States", "must be a non-empty object of states")
            })?;
        let mut states = BTreeMap::new();
        for (name, v) in states_json {
            states.insert(name.clone(), parse_state(name, v)?);
        }
        if !states.contains_key(&start_at) {
            return Err(DefinitionError::top(
                "StartAt",
                format!("state \"{start_at}\" does not exist"),
            ));
        }
        for state in states.values() {
            for (field, target) in state.targets() {
                if !states.contains_key(target) {
                    return Err(DefinitionError::in_state(
                        &state.name,
                        field,
                        format!("state \"{target}\" does not exist"),
                    ));
                }
            }
        }
        let def = Definition {
            comment,
            start_at,
            version,
            timeout_seconds,
            states,
            source,
        };
        for unreachable in def.unreachable_states() {
            tracing::warn!(state = %unreachable, "state is unreachable from StartAt");
        }
        Ok(def)
    }

    pub fn state(&self, name: &str) -> Option<&State> {
        self.states.get(name)
    }

    /// The definition text after substitution: what the runtime stores with each execution.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A stable fingerprint of [`Definition::source`] (FNV-1a, 64 bit, hex).
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.source.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// States that no path from StartAt reaches (allowed, but usually a mistake).
    pub fn unreachable_states(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![self.start_at.as_str()];
        while let Some(s) = stack.pop() {
            if !seen.insert(s) {
                continue;
            }
            if let Some(state) = self.states.get(s) {
                stack.extend(state.targets().into_iter().map(|(_, t)| t));
            }
        }
        self.states
            .keys()
            .filter(|k| !seen.contains(k.as_str()))
            .cloned()
            .collect()
    }
}

fn check_query_language(
    obj: &Map<String, Value>,
    state: Option<&str>,
) -> Result<(), DefinitionError> {
    match obj.get("QueryLanguage") {
        None => Ok(()),
        Some(Value::String(s)) if s == "JSONPath" => Ok(()),
        Some(other) => Err(DefinitionError::at(
            state,
            "QueryLanguage",
            format!("{other} is not supported by the local runtime (only \"JSONPath\")"),
        )),
    }
}

fn opt_string(
    obj: &Map<String, Value>,
    key: &str,
    state: Option<&str>,
) -> Result<Option<String>, DefinitionError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(DefinitionError::at(state, key, "must be a string")),
    }
}

/// Fields Step Functions knows but the local runtime does not implement.
const UNSUPPORTED_FIELDS: &[&str] = &[
    "HeartbeatSeconds",
    "HeartbeatSecondsPath",
    "Credentials",
    "Assign",
    "Arguments",
    "Output",
    "Branches",
    "Iterator",
    "ItemProcessor",
    "ItemsPath",
    "ItemSelector",
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "MaxConcurrency",
    "MaxConcurrencyPath",
    "ToleratedFailurePercentage",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCount",
    "ToleratedFailureCountPath",
    "Label",
    "Items",
];

fn allowed_fields(t: StateType) -> &'static [&'static str] {
    match t {
        StateType::Pass => &[
            "InputPath",
            "OutputPath",
            "Next",
            "End",
            "Parameters",
            "Result",
            "ResultPath",
        ],
        StateType::Task => &[
            "InputPath",
            "OutputPath",
            "Next",
            "End",
            "Resource",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
        ],
        StateType::Choice => &["InputPath", "OutputPath", "Choices", "Default"],
        StateType::Wait => &[
            "InputPath",
            "OutputPath",
            "Next",
            "End",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
        ],
        StateType::Succeed => &["InputPath", "OutputPath"],
        StateType::Fail => &["Error", "ErrorPath", "Cause", "CausePath"],
    }
}

const ALL_TYPES: [StateType; 6] = [
    StateType::Task,
    StateType::Pass,
    StateType::Choice,
    StateType::Wait,
    StateType::Succeed,
    StateType::Fail,
];

fn parse_state(name: &str, v: &Value) -> Result<State, DefinitionError> {
    let err = |field: &str, msg: String| DefinitionError::in_state(name, field, msg);
    let obj = v
        .as_object()
        .ok_or_else(|| DefinitionError::in_state(name, "", "a state must be a JSON object"))?;
    let type_name = match obj.get("Type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(err("Type", "must be a string".into())),
        None => return Err(err("Type", "is required".into())),
    };
    let state_type = match type_name {
        "Task" => StateType::Task,
        "Pass" => StateType::Pass,
        "Choice" => StateType::Choice,
        "Wait" => StateType::Wait,
        "Succeed" => StateType::Succeed,
        "Fail" => StateType::Fail,
        "Map" | "Parallel" => {
            return Err(DefinitionError {
                state: Some(name.to_string()),
                field: Some("Type".into()),
                message: format!("Type \"{type_name}\" is not supported by the local runtime"),
            })
        }
        other => {
            return Err(DefinitionError {
                state: Some(name.to_string()),
                field: Some("Type".into()),
                message: format!("Type \"{other}\" is not a state type"),
            })
        }
    };
    let allowed = allowed_fields(state_type);
    for k in obj.keys() {
        let k = k.as_str();
        if matches!(k, "Type" | "Comment" | "QueryLanguage") || allowed.contains(&k) {
            continue;
        }
        let msg = if UNSUPPORTED_FIELDS.contains(&k) {
            "is not supported by the local runtime".to_string()
        } else if ALL_TYPES.iter().any(|t| allowed_fields(*t).contains(&k)) {
            format!("is not allowed in a {type_name} state")
        } else {
            "is not a known field (and is not supported by the local runtime)".to_string()
        };
        return Err(err(k, msg));
    }
    check_query_language(obj, Some(name))?;
    let comment = opt_string(obj, "Comment", Some(name))?;
    let io_path = |key: &str| -> Result<Option<Path>, DefinitionError> {
        match obj.get(key) {
            None => Ok(Some(Path::root_input())),
            Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                let p = Path::parse(s).map_err(|e| err(key, e.0))?;
                if p.is_context() {
                    return Err(err(key, "cannot address the context object ('$$')".into()));
                }
                Ok(Some(p))
            }
            Some(_) => Err(err(key, "must be a path string or null".into())),
        }
    };
    let input_path = io_path("InputPath")?;
    let output_path = io_path("OutputPath")?;
    let result_path = || -> Result<Option<Path>, DefinitionError> {
        match obj.get("ResultPath") {
            None => Ok(Some(Path::root_input())),
            Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                let p = Path::parse_reference(s).map_err(|e| err("ResultPath", e.0))?;
                if p.is_context() {
                    return Err(err(
                        "ResultPath",
                        "cannot address the context object ('$$')".into(),
                    ));
                }
                Ok(Some(p))
            }
            Some(_) => Err(err("ResultPath", "must be a reference path or null".into())),
        }
    };
    let template = |key: &str| -> Result<Option<Template>, DefinitionError> {
        match obj.get(key) {
            None => Ok(None),
            Some(v) => {
                if key == "ResultSelector" && !v.is_object() {
                    return Err(err(key, "must be a JSON object".into()));
                }
                Template::compile(v)
                    .map(Some)
                    .map_err(|e| err(&join(key, &e.field), e.message))
            }
        }
    };
    let transition = || -> Result<Transition, DefinitionError> {
        match (obj.get("Next"), obj.get("End")) {
            (Some(_), Some(_)) => Err(err(
                "End",
                "a state cannot have both \"Next\" and \"End\"".into(),
            )),
            (Some(Value::String(n)), None) => Ok(Transition::Next(n.clone())),
            (Some(_), None) => Err(err("Next", "must be a state name".into())),
            (None, Some(Value::Bool(true))) => Ok(Transition::End),
            (None, Some(_)) => Err(err("End", "must be true (or use \"Next\")".into())),
            (None, None) => Err(err(
                "Next",
                format!("a {type_name} state needs \"Next\" or \"End\": true"),
            )),
        }
    };
    let kind = match state_type {
        StateType::Pass => StateKind::Pass(PassState {
            parameters: template("Parameters")?,
            result: obj.get("Result").cloned(),
            result_path: result_path()?,
            transition: transition()?,
        }),
        StateType::Task => StateKind::Task(parse_task(
            name,
            obj,
            template("Parameters")?,
            template("ResultSelector")?,
            result_path()?,
            transition()?,
        )?),
        StateType::Choice => {
            let items = obj
                .get("Choices")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    err(
                        "Choices",
                        "must be a non-empty array of Choice Rules".into(),
                    )
                })?;
            let mut choices = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let (condition, next) = choice::parse_rule(item)
                    .map_err(|e| err(&join(&format!("Choices[{i}]"), &e.field), e.message))?;
                choices.push(ChoiceRule { condition, next });
            }
            StateKind::Choice(ChoiceState {
                choices,
                default: opt_string(obj, "Default", Some(name))?,
            })
        }
        StateType::Wait => {
            let present: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
                .into_iter()
                .filter(|k| obj.contains_key(*k))
                .collect();
            if present.len() != 1 {
                return Err(err(
                    present.get(1).copied().unwrap_or("Seconds"),
                    "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp and TimestampPath".into(),
                ));
            }
            let key = present[0];
            let v = &obj[key];
            let ref_path = || -> Result<Path, DefinitionError> {
                v.as_str()
                    .ok_or_else(|| "must be a reference path string".to_string())
                    .and_then(|s| Path::parse_reference(s).map_err(|e| e.0))
                    .map_err(|m| err(key, m))
            };
            let wait = match key {
                "Seconds" => WaitFor::Seconds(
                    v.as_u64()
                        .filter(|n| *n <= 99_999_999)
                        .ok_or_else(|| err(key, "must be an integer from 0 to 99999999".into()))?,
                ),
                "Timestamp" => {
                    WaitFor::Timestamp(v.as_str().and_then(choice::parse_timestamp).ok_or_else(
                        || {
                            err(
                                key,
                                "must be an RFC 3339 timestamp such as 2016-03-14T01:59:00Z".into(),
                            )
                        },
                    )?)
                }
                "SecondsPath" => WaitFor::SecondsPath(ref_path()?),
                _ => WaitFor::TimestampPath(ref_path()?),
            };
            StateKind::Wait(WaitState {
                wait,
                transition: transition()?,
            })
        }
        StateType::Succeed => StateKind::Succeed,
        StateType::Fail => {
            let source = |lit: &str, path: &str| -> Result<Option<StringSource>, DefinitionError> {
                match (obj.get(lit), obj.get(path)) {
                    (Some(_), Some(_)) => {
                        Err(err(path, format!("cannot be used together with \"{lit}\"")))
                    }
                    (Some(Value::String(s)), None) => Ok(Some(StringSource::Literal(s.clone()))),
                    (Some(_), None) => Err(err(lit, "must be a string".into())),
                    (None, Some(Value::String(s))) if looks_like_intrinsic(s) => {
                        Intrinsic::parse(s)
                            .map(|i| Some(StringSource::Intrinsic(i)))
                            .map_err(|m| err(path, m))
                    }
                    (None, Some(Value::String(s))) => Path::parse_reference(s)
                        .map(|p| Some(StringSource::Path(p)))
                        .map_err(|e| err(path, e.0)),
                    (None, Some(_)) => Err(err(
                        path,
                        "must be a reference path or an intrinsic function".into(),
                    )),
                    (None, None) => Ok(None),
                }
            };
            StateKind::Fail(FailState {
                error: source("Error", "ErrorPath")?,
                cause: source("Cause", "CausePath")?,
            })
        }
    };
    Ok(State {
        name: name.to_string(),
        comment,
        input_path: if state_type == StateType::Fail {
            Some(Path::root_input())
        } else {
            input_path
        },
        output_path: if state_type == StateType::Fail {
            Some(Path::root_input())
        } else {
            output_path
        },
        kind,
    })
}

fn join(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else if b.starts_with('[') {
        format!("{a}{b}")
    } else {
        format!("{a}.{b}")
    }
}

const LAMBDA_INVOKE_PARAMETERS: &[&str] = &[
    "FunctionName",
    "Payload",
    "Qualifier",
    "InvocationType",
    "ClientContext",
    "LogType",
];

fn parse_resource(arn: &str) -> Result<Resource, String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let unsupported = || {
        format!(
            "\"{arn}\" is not supported by the local runtime (supported: arn:aws:states:::lambda:invoke, arn:aws:states:::lambda:invoke.waitForTaskToken and Lambda function ARNs)"
        )
    };
    if parts.len() < 7 || parts[0] != "arn" {
        return Err(unsupported());
    }
    match (parts[2], parts[5]) {
        ("states", "lambda") if parts.len() == 7 => match parts[6] {
            "invoke" => Ok(Resource::LambdaInvoke {
                wait_for_task_token: false,
            }),
            "invoke.waitForTaskToken" => Ok(Resource::LambdaInvoke {
                wait_for_task_token: true,
            }),
            _ => Err(unsupported()),
        },
        ("lambda", "function") if parts.len() <= 8 && !parts[6].is_empty() => {
            if arn.contains(".waitForTaskToken") || arn.contains(".sync") {
                return Err(format!(
                    "\"{arn}\": a Lambda function ARN cannot take .waitForTaskToken or .sync; use arn:aws:states:::lambda:invoke.waitForTaskToken"
                ));
            }
            Ok(Resource::LambdaFunction {
                arn: arn.to_string(),
            })
        }
        _ => Err(unsupported()),
    }
}

fn parse_task(
    name: &str,
    obj: &Map<String, Value>,
    parameters: Option<Template>,
    result_selector: Option<Template>,
    result_path: Option<Path>,
    transition: Transition,
) -> Result<TaskState, DefinitionError> {
    let err = |field: &str, msg: String| DefinitionError::in_state(name, field, msg);
    let resource = match obj.get("Resource") {
        Some(Value::String(s)) => parse_resource(s).map_err(|m| err("Resource", m))?,
        Some(_) => return Err(err("Resource", "must be a string".into())),
        None => return Err(err("Resource", "is required in a Task state".into())),
    };
    if let Resource::LambdaInvoke { .. } = resource {
        let Some(params) = parameters.as_ref() else {
            return Err(err(
                "Parameters",
                "lambda:invoke needs Parameters with \"FunctionName\"".into(),
            ));
        };
        let Template::Object(_) = params else {
            return Err(err(
                "Parameters",
                "lambda:invoke needs an object with \"FunctionName\"".into(),
            ));
        };
        for key in params.keys() {
            if !LAMBDA_INVOKE_PARAMETERS.contains(&key) {
                return Err(err(
                    &format!("Parameters.{key}"),
                    format!(
                        "is not a parameter of lambda:invoke (expected one of {})",
                        LAMBDA_INVOKE_PARAMETERS.join(", ")
                    ),
                ));
            }
        }
        match params.field("FunctionName") {
            None => {
                return Err(err(
                    "Parameters.FunctionName",
                    "is required for lambda:invoke".into(),
                ))
            }
            Some(Template::Static(Value::String(_)))
            | Some(Template::Path { .. })
            | Some(Template::Intrinsic { .. }) => {}
            Some(_) => return Err(err("Parameters.FunctionName", "must be a string".into())),
        }
        if let Some(Template::Static(v)) = params.field("InvocationType") {
            if v != "RequestResponse" {
                return Err(err(
                    "Parameters.InvocationType",
                    format!("{v} is not supported by the local runtime (only \"RequestResponse\")"),
                ));
            }
        }
    }
    let timeout = match (obj.get("TimeoutSeconds"), obj.get("TimeoutSecondsPath")) {
        (Some(_), Some(_)) => {
            return Err(err(
                "TimeoutSecondsPath",
                "cannot be used together with \"TimeoutSeconds\"".into(),
            ))
        }
        (Some(v), None) => Some(TaskTimeout::Seconds(
            v.as_u64()
                .filter(|n| (1..=99_999_999).contains(n))
                .ok_or_else(|| {
                    err(
                        "TimeoutSeconds",
                        "must be an integer from 1 to 99999999".into(),
                    )
                })?,
        )),
        (None, Some(Value::String(s))) => Some(TaskTimeout::Path(
            Path::parse_reference(s)
                .and_then(|p| {
                    if p.is_context() {
                        Err(super::path::PathSyntaxError(
                            "cannot address the context object ('$$')".into(),
                        ))
                    } else {
                        Ok(p)
                    }
                })
                .map_err(|e| err("TimeoutSecondsPath", e.0))?,
        )),
        (None, Some(_)) => {
            return Err(err(
                "TimeoutSecondsPath",
                "must be a reference path string".into(),
            ))
        }
        (None, None) => None,
    };
    let list = |key: &str| -> Result<&Vec<Value>, DefinitionError> {
        static EMPTY: Vec<Value> = Vec::new();
        match obj.get(key) {
            None => Ok(&EMPTY),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(err(key, "must be an array".into())),
        }
    };
    let mut retry = Vec::new();
    for (i, r) in list("Retry")?.iter().enumerate() {
        retry.push(
            retry::parse_retrier(r)
                .map_err(|e| err(&join(&format!("Retry[{i}]"), &e.field), e.message))?,
        );
    }
    let mut catch = Vec::new();
    for (i, c) in list("Catch")?.iter().enumerate() {
        catch.push(
            retry::parse_catcher(c)
                .map_err(|e| err(&join(&format!("Catch[{i}]"), &e.field), e.message))?,
        );
    }
    let lists: Vec<Vec<String>> = retry.iter().map(|r| r.error_equals.clone()).collect();
    if let Err(i) = retry::check_all_is_last(&lists) {
        return Err(err(
            &format!("Retry[{i}].ErrorEquals"),
            "\"States.ALL\" must appear only in the last retrier".into(),
        ));
    }
    let lists: Vec<Vec<String>> = catch.iter().map(|c| c.error_equals.clone()).collect();
    if let Err(i) = retry::check_all_is_last(&lists) {
        return Err(err(
            &format!("Catch[{i}].ErrorEquals"),
            "\"States.ALL\" must appear only in the last catcher".into(),
        ));
    }
    Ok(TaskState {
        resource,
        parameters,
        result_selector,
        result_path,
        retry,
        catch,
        timeout,
        transition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(v: Value) -> Result<Definition, DefinitionError> {
        Definition::load(&v.to_string(), &HashMap::new())
    }

    fn load_err(v: Value) -> DefinitionError {
        load(v).expect_err("the definition should not load")
    }

    fn with_state(state: Value) -> Value {
        json!({"StartAt": "S", "States": {"S": state, "Done": {"Type": "Succeed"}}})
    }

    #[test]
    fn loads_every_supported_state_type() {
        let def = load(json!({
            "Comment": "all types", "Version": "1.0", "TimeoutSeconds": 60, "QueryLanguage": "JSONPath",
            "StartAt": "P",
            "States": {
                "P": {"Type": "Pass", "Result": 1, "ResultPath": "$.r", "Next": "T"},
                "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                      "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:f", "Payload.$": "$"},
                      "ResultSelector": {"p.$": "$.Payload"}, "ResultPath": "$.t", "TimeoutSeconds": 5,
                      "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxDelaySeconds": 3}, {"ErrorEquals": ["States.ALL"]}],
                      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "F"}],
                      "Next": "C"},
                "C": {"Type": "Choice", "Choices": [{"Variable": "$.r", "NumericEquals": 1, "Next": "W"}], "Default": "F"},
                "W": {"Type": "Wait", "SecondsPath": "$.r", "Next": "D"},
                "D": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:direct", "End": true},
                "F": {"Type": "Fail", "Error": "E", "Cause": "C"}
            }
        }))
        .unwrap();
        assert_eq!(def.start_at, "P");
        assert_eq!(def.timeout_seconds, Some(60));
        assert_eq!(def.states.len(), 6);
        assert_eq!(def.state("W").unwrap().state_type(), StateType::Wait);
        assert!(def.unreachable_states().is_empty());
    }

    #[test]
    fn parallel_state_is_refused_naming_state_and_field() {
        let e = load_err(
            json!({"StartAt": "Fanout", "States": {"Fanout": {"Type": "Parallel", "Branches": [], "End": true}}}),
        );
        assert_eq!(
            e.to_string(),
            "state \"Fanout\": Type \"Parallel\" is not supported by the local runtime"
        );
        assert_eq!(e.state.as_deref(), Some("Fanout"));
        assert_eq!(e.field.as_deref(), Some("Type"));
        let e = load_err(json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true}}}));
        assert!(e.to_string().contains("\"Map\" is not supported"));
    }

    #[test]
    fn unknown_and_unsupported_fields() {
        let e = load_err(with_state(
            json!({"Type": "Pass", "Bogus": 1, "Next": "Done"}),
        ));
        assert_eq!(
            (e.state.as_deref(), e.field.as_deref()),
            (Some("S"), Some("Bogus"))
        );
        assert!(
            e.to_string().starts_with("state \"S\": field \"Bogus\""),
            "{e}"
        );
        let e = load_err(with_state(json!({
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "f"}, "HeartbeatSeconds": 60, "Next": "Done"
        })));
        assert_eq!(e.field.as_deref(), Some("HeartbeatSeconds"));
        assert!(
            e.to_string().contains("not supported by the local runtime"),
            "{e}"
        );
        let e = load_err(with_state(
            json!({"Type": "Pass", "Retry": [], "Next": "Done"}),
        ));
        assert!(e.to_string().contains("not allowed in a Pass state"), "{e}");
        let e = load_err(
            json!({"StartAt": "S", "QueryLanguage": "JSONata", "States": {"S": {"Type": "Succeed"}}}),
        );
        assert_eq!(e.field.as_deref(), Some("QueryLanguage"));
        let e = load_err(json!({"StartAt": "S", "Bogus": 1, "States": {"S": {"Type": "Succeed"}}}));
        assert_eq!(
            e.to_string(),
            "definition: field \"Bogus\": is not supported by the local runtime"
        );
    }

    #[test]
    fn placeholders_are_substituted_and_unknown_ones_named() {
        let text = r#"{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "${FnArn}", "End": true}}}"#;
        let mut subs = HashMap::new();
        subs.insert(
            "FnArn".to_string(),
            "arn:aws:lambda:us-east-1:123456789012:function:triage".to_string(),
        );
        let def = Definition::load(text, &subs).unwrap();
        let StateKind::Task(t) = &def.state("T").unwrap().kind else {
            panic!()
        };
        assert_eq!(
            t.resource,
            Resource::LambdaFunction {
                arn: "arn:aws:lambda:us-east-1:123456789012:function:triage".into()
            }
        );
        assert!(def.source().contains("function:triage"));
        let e = Definition::load(text, &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("\"${FnArn}\""), "{e}");
    }

    #[test]
    fn timeout_seconds_and_path_are_exclusive() {
        let e = load_err(with_state(json!({
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f",
            "TimeoutSeconds": 5, "TimeoutSecondsPath": "$.t", "Next": "Done"
        })));
        assert_eq!(
            (e.state.as_deref(), e.field.as_deref()),
            (Some("S"), Some("TimeoutSecondsPath"))
        );
    }

    #[test]
    fn next_must_name_an_existing_state() {
        let e = load_err(with_state(json!({"Type": "Pass", "Next": "Nowhere"})));
        assert_eq!(
            (e.state.as_deref(), e.field.as_deref()),
            (Some("S"), Some("Next"))
        );
        assert!(e.to_string().contains("\"Nowhere\" does not exist"));
        let e = load_err(with_state(json!({
            "Type": "Choice", "Choices": [{"Variable": "$.a", "IsPresent": true, "Next": "Done"}], "Default": "Gone"
        })));
        assert_eq!(e.field.as_deref(), Some("Default"));
        let e = load_err(with_state(json!({
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f",
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Gone"}], "Next": "Done"
        })));
        assert_eq!(e.field.as_deref(), Some("Catch[0].Next"));
        let e = load_err(json!({"StartAt": "Nope", "States": {"S": {"Type": "Succeed"}}}));
        assert_eq!(e.field.as_deref(), Some("StartAt"));
    }

    #[test]
    fn states_all_must_be_alone_and_last() {
        let e = load_err(with_state(json!({
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f",
            "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}], "Next": "Done"
        })));
        assert_eq!(e.field.as_deref(), Some("Retry[0].ErrorEquals"));
        let e = load_err(with_state(json!({
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f",
            "Catch": [{"ErrorEquals": ["States.ALL", "X"], "Next": "Done"}], "Next": "Done"
        })));
        assert_eq!(e.field.as_deref(), Some("Catch[0].ErrorEquals"));
    }

    #[test]
    fn malformed_paths_and_intrinsics_name_the_field() {
        for (state, field) in [
            (
                json!({"Type": "Pass", "InputPath": "$..a", "Next": "Done"}),
                "InputPath",
            ),
            (
                json!({"Type": "Pass", "ResultPath": "$.a[*]", "Next": "Done"}),
                "ResultPath",
            ),
            (
                json!({"Type": "Pass", "Parameters": {"a.$": "States.Nope()"}, "Next": "Done"}),
                "Parameters.a.$",
            ),
            (
                json!({"Type": "Pass", "Parameters": {"x": {"a.$": "$.["}}, "Next": "Done"}),
                "Parameters.x.a.$",
            ),
            (
                json!({"Type": "Wait", "SecondsPath": "$.a[0:1]", "Next": "Done"}),
                "SecondsPath",
            ),
            (
                json!({"Type": "Wait", "Seconds": 1, "Timestamp": "2020-01-01T00:00:00Z", "Next": "Done"}),
                "Timestamp",
            ),
            (
                json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": "x", "Next": "Done"}]}),
                "Choices[0].NumericEquals",
            ),
            (
                json!({"Type": "Choice", "Choices": [{"Not": {"Variable": "$..a", "IsNull": true}, "Next": "Done"}]}),
                "Choices[0].Not.Variable",
            ),
            (
                json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}),
                "ErrorPath",
            ),
            (
                json!({"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "Next": "Done"}),
                "Resource",
            ),
            (
                json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"Payload": {}}, "Next": "Done"}),
                "Parameters.FunctionName",
            ),
            (
                json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f", "Bogus": 1}, "Next": "Done"}),
                "Parameters.Bogus",
            ),
            (
                json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0}], "Next": "Done"}),
                "Retry[0].BackoffRate",
            ),
            (
                json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f"}),
                "Next",
            ),
            (json!({"Type": "Pass", "Next": "Done", "End": true}), "End"),
        ] {
            let e = load_err(with_state(state.clone()));
            assert_eq!(e.state.as_deref(), Some("S"), "{state}");
            assert_eq!(e.field.as_deref(), Some(field), "{state}: {e}");
            assert!(e.to_string().contains(&format!("field \"{field}\"")), "{e}");
        }
    }

    #[test]
    fn unreachable_states_are_allowed() {
        let def = load(
            json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}}),
        )
        .unwrap();
        assert_eq!(def.unreachable_states(), vec!["B".to_string()]);
    }

    #[test]
    fn fingerprint_follows_the_source() {
        let a = load(json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}})).unwrap();
        let b = load(json!({"StartAt": "B", "States": {"B": {"Type": "Succeed"}}})).unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
    }
}

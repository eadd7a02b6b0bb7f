//! Retriers, Catchers and error-name matching.
//!
//! As documented for Step Functions: retriers are scanned in order and the first whose
//! `ErrorEquals` names the error decides; its counter spans every visit to it during one state
//! execution; once that retrier has made `MaxAttempts` retries the error goes to the Catchers
//! (later retriers are not consulted). The wait before retry *n* (0-based) is
//! `IntervalSeconds × BackoffRate^n`, capped by `MaxDelaySeconds`. `States.ALL` matches every
//! error except `States.Runtime` and `States.DataLimitExceeded`; `States.TaskFailed` matches
//! every error except `States.Timeout` (and those two); nothing ever catches `States.Runtime`.

use super::failure::errors;
use super::path::Path;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterStrategy {
    None,
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub jitter: JitterStrategy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    /// `None` is `"ResultPath": null`: the error output is discarded and the input kept.
    pub result_path: Option<Path>,
}

/// A field error inside a retrier or catcher; `field` is relative (e.g. `BackoffRate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

fn perr(field: &str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Whether an `ErrorEquals` list matches an error name.
pub fn error_matches(error_equals: &[String], error: &str) -> bool {
    if error == errors::RUNTIME {
        return false;
    }
    error_equals.iter().any(|e| {
        e == error
            || (e == errors::ALL && error != errors::DATA_LIMIT_EXCEEDED)
            || (e == errors::TASK_FAILED
                && error != errors::TIMEOUT
                && error != errors::DATA_LIMIT_EXCEEDED)
    })
}

impl Retrier {
    /// The documented default retrier for the given errors.
    pub fn new(error_equals: Vec<String>) -> Retrier {
        Retrier {
            error_equals,
            interval_seconds: 1,
            max_attempts: 3,
            backoff_rate: 2.0,
            max_delay_seconds: None,
            jitter: JitterStrategy::None,
        }
    }

    /// The wait, in seconds, before retry number `retry` (0 for the first retry), before jitter.
    pub fn delay_seconds(&self, retry: u32) -> f64 {
        let raw = self.interval_seconds as f64 * self.backoff_rate.powi(retry as i32);
        match self.max_delay_seconds {
            Some(cap) => raw.min(cap as f64),
            None => raw,
        }
    }
}

/// What to do about an error given the retriers and the retries already made per retrier.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    /// Retry after `delay_seconds` (jitter applied); `retrier` is the index whose count grows.
    Retry { retrier: usize, delay_seconds: f64 },
    /// No retrier matches, or the matching one is exhausted: go on to Catch.
    GiveUp,
}

/// Decides whether to retry. `counts[i]` is how many retries retrier `i` has made so far in
/// this state execution; the caller increments it when it retries.
pub fn decide(retriers: &[Retrier], counts: &[u32], error: &str) -> RetryDecision {
    let Some((i, r)) = retriers
        .iter()
        .enumerate()
        .find(|(_, r)| error_matches(&r.error_equals, error))
    else {
        return RetryDecision::GiveUp;
    };
    let made = counts.get(i).copied().unwrap_or(0);
    if made >= r.max_attempts {
        return RetryDecision::GiveUp;
    }
    let mut delay = r.delay_seconds(made);
    if r.jitter == JitterStrategy::Full {
        let mut b = [0u8; 8];
        if getrandom::getrandom(&mut b).is_ok() {
            delay *= (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
        }
    }
    RetryDecision::Retry {
        retrier: i,
        delay_seconds: delay,
    }
}

/// The first catcher whose `ErrorEquals` matches the error.
pub fn find_catcher<'a>(catchers: &'a [Catcher], error: &str) -> Option<&'a Catcher> {
    catchers
        .iter()
        .find(|c| error_matches(&c.error_equals, error))
}

fn parse_error_equals(v: Option<&Value>) -> Result<Vec<String>, PolicyError> {
    let arr = v
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| perr("ErrorEquals", "must be a non-empty array of error names"))?;
    let names = arr
        .iter()
        .map(|e| e.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| perr("ErrorEquals", "must contain only strings"))?;
    if names.iter().any(|n| n == errors::ALL) && names.len() > 1 {
        return Err(perr(
            "ErrorEquals",
            "\"States.ALL\" must appear alone in its ErrorEquals array",
        ));
    }
    Ok(names)
}

fn check_keys(obj: &serde_json::Map<String, Value>, allowed: &[&str]) -> Result<(), PolicyError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(perr(k, format!("unknown field \"{k}\"")));
        }
    }
    Ok(())
}

fn positive_int(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    min: u64,
) -> Result<Option<u64>, PolicyError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= min && *n <= 99_999_999)
            .map(Some)
            .ok_or_else(|| perr(key, format!("must be an integer from {min} to 99999999"))),
    }
}

pub fn parse_retrier(v: &Value) -> Result<Retrier, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| perr("", "a retrier must be an object"))?;
    check_keys(
        obj,
        &[
            "ErrorEquals",
            "IntervalSeconds",
            "MaxAttempts",
            "BackoffRate",
            "MaxDelaySeconds",
            "JitterStrategy",
            "Comment",
        ],
    )?;
    let mut r = Retrier::new(parse_error_equals(obj.get("ErrorEquals"))?);
    if let Some(i) = positive_int(obj, "IntervalSeconds", 1)? {
        r.interval_seconds = i;
    }
    if let Some(m) = positive_int(obj, "MaxAttempts", 0)? {
        r.max_attempts = m as u32;
    }
    if let Some(b) = obj.get("BackoffRate") {
        r.backoff_rate = b.as_f64().filter(|b| *b >= 1.0).ok_or_else(|| {
            perr(
                "BackoffRate",
                "must be a number greater than or equal to 1.0",
            )
        })?;
    }
    r.max_delay_seconds = positive_int(obj, "MaxDelaySeconds", 1)?;
    if let Some(j) = obj.get("JitterStrategy") {
        r.jitter = match j.as_str() {
            Some("FULL") => JitterStrategy::Full,
            Some("NONE") => JitterStrategy::None,
            _ => return Err(perr("JitterStrategy", "must be \"FULL\" or \"NONE\"")),
        };
    }
    Ok(r)
}

pub fn parse_catcher(v: &Value) -> Result<Catcher, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| perr("", "a catcher must be an object"))?;
    check_keys(obj, &["ErrorEquals", "Next", "ResultPath", "Comment"])?;
    let error_equals = parse_error_equals(obj.get("ErrorEquals"))?;
    let next = obj
        .get("Next")
        .and_then(Value::as_str)
        .ok_or_else(|| perr("Next", "a catcher needs a \"Next\" state name"))?
        .to_string();
    let result_path = match obj.get("ResultPath") {
        None => Some(Path::root_input()),
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            Path::parse_reference(s)
                .and_then(|p| {
                    if p.is_context() {
                        Err(super::path::PathSyntaxError(
                            "ResultPath cannot address the context object".into(),
                        ))
                    } else {
                        Ok(p)
                    }
                })
                .map_err(|e| perr("ResultPath", e.0))?,
        ),
        Some(_) => return Err(perr("ResultPath", "must be a reference path or null")),
    };
    Ok(Catcher {
        error_equals,
        next,
        result_path,
    })
}

/// Checks the placement rule for `States.ALL`: only in the last retrier / catcher.
pub fn check_all_is_last(lists: &[Vec<String>]) -> Result<(), usize> {
    for (i, names) in lists.iter().enumerate() {
        if names.iter().any(|n| n == errors::ALL) && i + 1 != lists.len() {
            return Err(i);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn retriers(v: Value) -> Vec<Retrier> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| parse_retrier(r).unwrap())
            .collect()
    }

    /// Runs `errors` through the policy and returns the waits, or where it gave up.
    fn schedule(rs: &[Retrier], errs: &[&str]) -> (Vec<f64>, Option<usize>) {
        let mut counts = vec![0u32; rs.len()];
        let mut waits = Vec::new();
        for (n, e) in errs.iter().enumerate() {
            match decide(rs, &counts, e) {
                RetryDecision::Retry {
                    retrier,
                    delay_seconds,
                } => {
                    counts[retrier] += 1;
                    waits.push(delay_seconds);
                }
                RetryDecision::GiveUp => return (waits, Some(n)),
            }
        }
        (waits, None)
    }

    /// "makes 2 retry attempts after waiting for 3 and 4.5 seconds".
    #[test]
    fn backoff_example_from_the_docs() {
        let rs = retriers(json!([{
            "ErrorEquals": ["States.Timeout"], "IntervalSeconds": 3, "MaxAttempts": 2, "BackoffRate": 1.5
        }]));
        let (waits, gave_up) = schedule(&rs, &["States.Timeout"; 3]);
        assert_eq!(waits, vec![3.0, 4.5]);
        assert_eq!(gave_up, Some(2));
    }

    /// The older wording of the same example: four retries after 3, 4.5, 6.75 and 10.125 s.
    #[test]
    fn four_retries_example_from_the_docs() {
        let rs = retriers(json!([{
            "ErrorEquals": ["States.Timeout"], "IntervalSeconds": 3, "MaxAttempts": 4, "BackoffRate": 1.5
        }]));
        let (waits, gave_up) = schedule(&rs, &["States.Timeout"; 5]);
        assert_eq!(waits, vec![3.0, 4.5, 6.75, 10.125]);
        assert_eq!(gave_up, Some(4));
    }

    #[test]
    fn defaults_and_max_delay_cap() {
        let rs = retriers(json!([{"ErrorEquals": ["E"]}]));
        assert_eq!(rs[0], Retrier::new(vec!["E".into()]));
        assert_eq!(schedule(&rs, &["E"; 4]), (vec![1.0, 2.0, 4.0], Some(3)));
        let capped = retriers(json!([{
            "ErrorEquals": ["E"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 5, "MaxDelaySeconds": 20
        }]));
        assert_eq!(
            schedule(&capped, &["E"; 5]).0,
            vec![2.0, 6.0, 18.0, 20.0, 20.0]
        );
    }

    #[test]
    fn max_attempts_zero_never_retries() {
        // "retry any error except States.Timeout".
        let rs = retriers(json!([
            {"ErrorEquals": ["States.Timeout"], "MaxAttempts": 0},
            {"ErrorEquals": ["States.ALL"]}
        ]));
        assert_eq!(
            decide(&rs, &[0, 0], "States.Timeout"),
            RetryDecision::GiveUp
        );
        assert_eq!(
            decide(&rs, &[0, 0], "Custom"),
            RetryDecision::Retry {
                retrier: 1,
                delay_seconds: 1.0
            }
        );
    }

    /// "Complex retry scenarios": ErrorA, ErrorB, ErrorC, ErrorB wait 1, 2 and 5 seconds, then
    /// the first retrier is exhausted and the Catch takes over.
    #[test]
    fn complex_retry_scenario_from_the_docs() {
        let rs = retriers(json!([
            {"ErrorEquals": ["ErrorA", "ErrorB"], "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 2},
            {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5}
        ]));
        let (waits, gave_up) = schedule(&rs, &["ErrorA", "ErrorB", "ErrorC", "ErrorB"]);
        assert_eq!(waits, vec![1.0, 2.0, 5.0]);
        assert_eq!(gave_up, Some(3));
        let catchers =
            vec![parse_catcher(&json!({"ErrorEquals": ["States.ALL"], "Next": "Z"})).unwrap()];
        assert_eq!(find_catcher(&catchers, "ErrorB").unwrap().next, "Z");
    }

    #[test]
    fn error_matching_rules() {
        let all = vec!["States.ALL".to_string()];
        let task_failed = vec!["States.TaskFailed".to_string()];
        assert!(error_matches(&all, "HandledError"));
        assert!(error_matches(&all, "States.Timeout"));
        assert!(!error_matches(&all, "States.Runtime"));
        assert!(!error_matches(&all, "States.DataLimitExceeded"));
        assert!(!error_matches(
            &["States.Runtime".to_string()],
            "States.Runtime"
        ));
        assert!(error_matches(&task_failed, "Lambda.Unknown"));
        assert!(!error_matches(&task_failed, "States.Timeout"));
        assert!(error_matches(&["A".into(), "B".into()], "B"));
        assert!(!error_matches(&["A".into()], "a"));
    }

    #[test]
    fn catchers_are_scanned_in_order() {
        let catchers: Vec<Catcher> = [
            json!({"ErrorEquals": ["java.lang.Exception"], "ResultPath": "$.error-info", "Next": "RecoveryState"}),
            json!({"ErrorEquals": ["States.ALL"], "Next": "EndState"}),
        ]
        .iter()
        .map(|c| parse_catcher(c).unwrap())
        .collect();
        assert_eq!(
            find_catcher(&catchers, "java.lang.Exception").unwrap().next,
            "RecoveryState"
        );
        assert_eq!(find_catcher(&catchers, "Other").unwrap().next, "EndState");
        assert!(find_catcher(&catchers, "States.Runtime").is_none());
    }

    #[test]
    fn invalid_policies_name_the_field() {
        for (v, field) in [
            (json!({"ErrorEquals": []}), "ErrorEquals"),
            (json!({"ErrorEquals": ["States.ALL", "X"]}), "ErrorEquals"),
            (
                json!({"ErrorEquals": ["X"], "BackoffRate": 0.5}),
                "BackoffRate",
            ),
            (
                json!({"ErrorEquals": ["X"], "IntervalSeconds": 0}),
                "IntervalSeconds",
            ),
            (
                json!({"ErrorEquals": ["X"], "MaxAttempts": -1}),
                "MaxAttempts",
            ),
            (
                json!({"ErrorEquals": ["X"], "MaxDelaySeconds": 0}),
                "MaxDelaySeconds",
            ),
            (
                json!({"ErrorEquals": ["X"], "JitterStrategy": "SOME"}),
                "JitterStrategy",
            ),
            (json!({"ErrorEquals": ["X"], "Bogus": 1}), "Bogus"),
        ] {
            assert_eq!(parse_retrier(&v).unwrap_err().field, field, "{v}");
        }
        assert_eq!(
            parse_catcher(&json!({"ErrorEquals": ["X"]}))
                .unwrap_err()
                .field,
            "Next"
        );
        assert_eq!(
            parse_catcher(&json!({"ErrorEquals": ["X"], "Next": "N", "ResultPath": "$.a[*]"}))
                .unwrap_err()
                .field,
            "ResultPath"
        );
        assert_eq!(
            check_all_is_last(&[vec!["States.ALL".into()], vec!["X".into()]]),
            Err(0)
        );
        assert_eq!(
            check_all_is_last(&[vec!["X".into()], vec!["States.ALL".into()]]),
            Ok(())
        );
    }
}

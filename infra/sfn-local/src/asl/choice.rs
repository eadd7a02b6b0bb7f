//! Choice Rules (JSONPath flavour): comparison operators, their `…Path` variants, the `Is…`
//! type tests, `StringMatches`, and `And` / `Or` / `Not`.
//!
//! Semantics follow the Choice state documentation: rules are tried in order and the first
//! match wins; a value of the wrong type never matches (a number is not compared with a
//! string); timestamps must be RFC 3339 with an uppercase `T` and `Z`; strings compare like
//! Java's `compareTo` (UTF-16 code units). A `Variable` (or `…Path` operand) that is absent is
//! a `States.Runtime` error, except for `IsPresent`.

use super::failure::{errors, StateFailure};
use super::path::Path;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Equals,
    LessThan,
    GreaterThan,
    LessThanEquals,
    GreaterThanEquals,
}

impl Cmp {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Cmp::Equals => o == Ordering::Equal,
            Cmp::LessThan => o == Ordering::Less,
            Cmp::GreaterThan => o == Ordering::Greater,
            Cmp::LessThanEquals => o != Ordering::Greater,
            Cmp::GreaterThanEquals => o != Ordering::Less,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Value),
    Path(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    String(Cmp, Operand),
    StringMatches(Vec<GlobToken>),
    Numeric(Cmp, Operand),
    BooleanEquals(Operand),
    Timestamp(Cmp, Operand),
    IsNull(bool),
    IsPresent(bool),
    IsNumeric(bool),
    IsString(bool),
    IsBoolean(bool),
    IsTimestamp(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobToken {
    Literal(char),
    Star,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Compare {
        variable: Path,
        comparison: Comparison,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceRule {
    pub condition: Condition,
    pub next: String,
}

/// A rule that cannot be loaded; `field` is relative to the rule (e.g. `And[1].NumericEquals`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringEqualsPath",
    "StringLessThan",
    "StringLessThanPath",
    "StringGreaterThan",
    "StringGreaterThanPath",
    "StringLessThanEquals",
    "StringLessThanEqualsPath",
    "StringGreaterThanEquals",
    "StringGreaterThanEqualsPath",
    "StringMatches",
    "NumericEquals",
    "NumericEqualsPath",
    "NumericLessThan",
    "NumericLessThanPath",
    "NumericGreaterThan",
    "NumericGreaterThanPath",
    "NumericLessThanEquals",
    "NumericLessThanEqualsPath",
    "NumericGreaterThanEquals",
    "NumericGreaterThanEqualsPath",
    "BooleanEquals",
    "BooleanEqualsPath",
    "TimestampEquals",
    "TimestampEqualsPath",
    "TimestampLessThan",
    "TimestampLessThanPath",
    "TimestampGreaterThan",
    "TimestampGreaterThanPath",
    "TimestampLessThanEquals",
    "TimestampLessThanEqualsPath",
    "TimestampGreaterThanEquals",
    "TimestampGreaterThanEqualsPath",
    "IsNull",
    "IsPresent",
    "IsNumeric",
    "IsString",
    "IsBoolean",
    "IsTimestamp",
];

fn rule_err(field: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses one top-level Choice Rule (which must carry `Next`).
pub fn parse_rule(value: &Value) -> Result<(Condition, String), RuleError> {
    let obj = value
        .as_object()
        .ok_or_else(|| rule_err("", "a Choice Rule must be an object"))?;
    let next = match obj.get("Next") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(rule_err("Next", "must be a string")),
        None => return Err(rule_err("Next", "a top-level Choice Rule needs \"Next\"")),
    };
    let condition = parse_condition(obj, "", true)?;
    Ok((condition, next))
}

fn parse_condition(obj: &Map<String, Value>, at: &str, top: bool) -> Result<Condition, RuleError> {
    let f = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    for k in obj.keys() {
        let known = matches!(k.as_str(), "And" | "Or" | "Not" | "Variable" | "Comment")
            || (top && k == "Next")
            || OPERATORS.contains(&k.as_str());
        if !known {
            let msg = if k == "Next" {
                "\"Next\" may appear only in a top-level Choice Rule".to_string()
            } else if k == "Condition" || k == "Assign" {
                format!("\"{k}\" is not supported by the local runtime (JSONata / variables)")
            } else {
                format!("unknown field \"{k}\" in a Choice Rule")
            };
            return Err(rule_err(f(k), msg));
        }
    }
    let ops: Vec<&String> = obj
        .keys()
        .filter(|k| OPERATORS.contains(&k.as_str()) || matches!(k.as_str(), "And" | "Or" | "Not"))
        .collect();
    if ops.len() != 1 {
        return Err(rule_err(
            at.to_string(),
            format!(
                "a Choice Rule needs exactly one comparison operator or And/Or/Not, found {}",
                if ops.is_empty() {
                    "none".to_string()
                } else {
                    ops.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ));
    }
    let op = ops[0].as_str();
    let v = &obj[op];
    match op {
        "And" | "Or" => {
            if obj.contains_key("Variable") {
                return Err(rule_err(
                    f("Variable"),
                    format!("\"{op}\" rules take no \"Variable\""),
                ));
            }
            let items = v
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| rule_err(f(op), "must be a non-empty array of Choice Rules"))?;
            let mut rules = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let here = f(&format!("{op}[{i}]"));
                let o = item
                    .as_object()
                    .ok_or_else(|| rule_err(here.clone(), "must be an object"))?;
                rules.push(parse_condition(o, &here, false)?);
            }
            Ok(if op == "And" {
                Condition::And(rules)
            } else {
                Condition::Or(rules)
            })
        }
        "Not" => {
            if obj.contains_key("Variable") {
                return Err(rule_err(
                    f("Variable"),
                    "\"Not\" rules take no \"Variable\"",
                ));
            }
            let o = v
                .as_object()
                .ok_or_else(|| rule_err(f("Not"), "must be a single Choice Rule object"))?;
            Ok(Condition::Not(Box::new(parse_condition(
                o,
                &f("Not"),
                false,
            )?)))
        }
        _ => {
            let variable = match obj.get("Variable") {
                Some(Value::String(s)) => {
                    Path::parse_reference(s).map_err(|e| rule_err(f("Variable"), e.0))?
                }
                Some(_) => return Err(rule_err(f("Variable"), "must be a string")),
                None => {
                    return Err(rule_err(
                        f("Variable"),
                        format!("\"{op}\" needs a \"Variable\""),
                    ))
                }
            };
            let comparison = parse_comparison(op, v).map_err(|m| rule_err(f(op), m))?;
            Ok(Condition::Compare {
                variable,
                comparison,
            })
        }
    }
}

fn parse_comparison(op: &str, v: &Value) -> Result<Comparison, String> {
    let bool_arg = || {
        v.as_bool()
            .ok_or_else(|| "must be true or false".to_string())
    };
    match op {
        "IsNull" => return Ok(Comparison::IsNull(bool_arg()?)),
        "IsPresent" => return Ok(Comparison::IsPresent(bool_arg()?)),
        "IsNumeric" => return Ok(Comparison::IsNumeric(bool_arg()?)),
        "IsString" => return Ok(Comparison::IsString(bool_arg()?)),
        "IsBoolean" => return Ok(Comparison::IsBoolean(bool_arg()?)),
        "IsTimestamp" => return Ok(Comparison::IsTimestamp(bool_arg()?)),
        "StringMatches" => {
            let s = v.as_str().ok_or("must be a string pattern")?;
            return Ok(Comparison::StringMatches(compile_glob(s)?));
        }
        _ => {}
    }
    let (base, is_path) = match op.strip_suffix("Path") {
        Some(b) => (b, true),
        None => (op, false),
    };
    let operand = if is_path {
        let s = v.as_str().ok_or("must be a reference path string")?;
        Operand::Path(Path::parse_reference(s).map_err(|e| e.0)?)
    } else {
        Operand::Literal(v.clone())
    };
    let (family, cmp_name) = ["String", "Numeric", "Boolean", "Timestamp"]
        .iter()
        .find_map(|fam| base.strip_prefix(fam).map(|rest| (*fam, rest)))
        .ok_or_else(|| format!("unknown operator \"{op}\""))?;
    let cmp = match cmp_name {
        "Equals" => Cmp::Equals,
        "LessThan" => Cmp::LessThan,
        "GreaterThan" => Cmp::GreaterThan,
        "LessThanEquals" => Cmp::LessThanEquals,
        "GreaterThanEquals" => Cmp::GreaterThanEquals,
        _ => return Err(format!("unknown operator \"{op}\"")),
    };
    if let Operand::Literal(lit) = &operand {
        let ok = match family {
            "String" => lit.is_string(),
            "Numeric" => lit.is_number(),
            "Boolean" => lit.is_boolean(),
            _ => lit.as_str().and_then(parse_timestamp).is_some(),
        };
        if !ok {
            return Err(match family {
                "String" => "must be a string".into(),
                "Numeric" => "must be a number".into(),
                "Boolean" => "must be true or false".into(),
                _ => "must be an RFC 3339 timestamp with an uppercase T and Z (e.g. 2016-08-18T17:33:00Z)".into(),
            });
        }
    }
    Ok(match family {
        "String" => Comparison::String(cmp, operand),
        "Numeric" => Comparison::Numeric(cmp, operand),
        "Boolean" if cmp == Cmp::Equals => Comparison::BooleanEquals(operand),
        "Boolean" => return Err(format!("unknown operator \"{op}\"")),
        _ => Comparison::Timestamp(cmp, operand),
    })
}

fn compile_glob(pattern: &str) -> Result<Vec<GlobToken>, String> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('*' | '\\')) => out.push(GlobToken::Literal(e)),
                _ => return Err("in StringMatches only \\* and \\\\ are escapes".into()),
            },
            '*' => out.push(GlobToken::Star),
            c => out.push(GlobToken::Literal(c)),
        }
    }
    Ok(out)
}

fn glob_matches(tokens: &[GlobToken], s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    // Classic wildcard matching with backtracking to the last star.
    let (mut t, mut c) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while c < chars.len() {
        match tokens.get(t) {
            Some(GlobToken::Literal(l)) if *l == chars[c] => {
                t += 1;
                c += 1;
            }
            Some(GlobToken::Star) => {
                star = Some((t, c));
                t += 1;
            }
            _ => match star {
                Some((st, sc)) => {
                    t = st + 1;
                    c = sc + 1;
                    star = Some((st, sc + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|tok| *tok == GlobToken::Star)
}

/// Parses a timestamp as the Choice state accepts it: RFC 3339, uppercase `T`, and `Z` (if any)
/// uppercase.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if s.as_bytes().get(10) != Some(&b'T') || s.contains(['t', 'z']) {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn compare_utf16(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

fn resolve_operand(op: &Operand, input: &Value, context: &Value) -> Result<Value, StateFailure> {
    match op {
        Operand::Literal(v) => Ok(v.clone()),
        Operand::Path(p) => p.select(input, context).ok_or_else(|| {
            StateFailure::runtime(format!(
                "Invalid path '{}': The choice state's condition path references an invalid value.",
                p.text()
            ))
        }),
    }
}

/// Evaluates a condition against the Choice state's effective input.
pub fn evaluate(cond: &Condition, input: &Value, context: &Value) -> Result<bool, StateFailure> {
    match cond {
        Condition::And(rules) => {
            for r in rules {
                if !evaluate(r, input, context)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Condition::Or(rules) => {
            for r in rules {
                if evaluate(r, input, context)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Condition::Not(r) => Ok(!evaluate(r, input, context)?),
        Condition::Compare {
            variable,
            comparison,
        } => {
            let value = variable.select(input, context);
            if let Comparison::IsPresent(expected) = comparison {
                return Ok(value.is_some() == *expected);
            }
            let Some(v) = value else {
                return Err(StateFailure::runtime(format!(
                    "Invalid path '{}': The choice state's condition path references an invalid value.",
                    variable.text()
                )));
            };
            Ok(match comparison {
                Comparison::IsPresent(_) => unreachable!("handled above"),
                Comparison::IsNull(b) => v.is_null() == *b,
                Comparison::IsNumeric(b) => v.is_number() == *b,
                Comparison::IsString(b) => v.is_string() == *b,
                Comparison::IsBoolean(b) => v.is_boolean() == *b,
                Comparison::IsTimestamp(b) => v.as_str().and_then(parse_timestamp).is_some() == *b,
                Comparison::StringMatches(glob) => {
                    v.as_str().is_some_and(|s| glob_matches(glob, s))
                }
                Comparison::String(cmp, op) => {
                    let rhs = resolve_operand(op, input, context)?;
                    match (v.as_str(), rhs.as_str()) {
                        (Some(a), Some(b)) => cmp.holds(compare_utf16(a, b)),
                        _ => false,
                    }
                }
                Comparison::Numeric(cmp, op) => {
                    let rhs = resolve_operand(op, input, context)?;
                    match (&v, &rhs) {
                        (Value::Number(a), Value::Number(b)) => {
                            compare_numbers(a, b).is_some_and(|o| cmp.holds(o))
                        }
                        _ => false,
                    }
                }
                Comparison::BooleanEquals(op) => {
                    let rhs = resolve_operand(op, input, context)?;
                    matches!((&v, &rhs), (Value::Bool(a), Value::Bool(b)) if a == b)
                }
                Comparison::Timestamp(cmp, op) => {
                    let rhs = resolve_operand(op, input, context)?;
                    match (
                        v.as_str().and_then(parse_timestamp),
                        rhs.as_str().and_then(parse_timestamp),
                    ) {
                        (Some(a), Some(b)) => cmp.holds(a.cmp(&b)),
                        _ => false,
                    }
                }
            })
        }
    }
}

/// Picks the next state: the first matching rule, else `Default`, else `States.NoChoiceMatched`.
pub fn choose<'a>(
    rules: &'a [ChoiceRule],
    default: Option<&'a str>,
    input: &Value,
    context: &Value,
) -> Result<&'a str, StateFailure> {
    for rule in rules {
        if evaluate(&rule.condition, input, context)? {
            return Ok(&rule.next);
        }
    }
    default.ok_or_else(|| {
        StateFailure::new(
            errors::NO_CHOICE_MATCHED,
            format!("No Choice Rule matched the input {input} and the Choice state has no Default"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> Condition {
        let mut v = v;
        v["Next"] = json!("X");
        parse_rule(&v).map(|(c, _)| c).unwrap()
    }

    fn holds(r: Value, input: Value) -> bool {
        evaluate(&rule(r), &input, &json!({})).unwrap()
    }

    fn rules(v: Value) -> Vec<ChoiceRule> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let (condition, next) = parse_rule(r).unwrap();
                ChoiceRule { condition, next }
            })
            .collect()
    }

    /// The "Choice state example" from the Choice state documentation.
    #[test]
    fn choice_state_example_from_the_docs() {
        let choices = rules(json!([
            {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
            {"Variable": "$.value", "NumericEquals": 0, "Next": "ValueIsZero"},
            {"And": [
                {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                {"Variable": "$.value", "NumericLessThan": 30}
            ], "Next": "ValueInTwenties"}
        ]));
        let pick = |input: Value| {
            choose(&choices, Some("DefaultState"), &input, &json!({}))
                .unwrap()
                .to_string()
        };
        assert_eq!(
            pick(json!({"type": "Private", "value": 22})),
            "ValueInTwenties"
        );
        assert_eq!(pick(json!({"type": "Public", "value": 22})), "Public");
        assert_eq!(pick(json!({"type": "Private", "value": 0})), "ValueIsZero");
        assert_eq!(
            pick(json!({"type": "Private", "value": 30})),
            "DefaultState"
        );
        // "If the state input doesn't contain the $.type field, the execution fails".
        let err = choose(
            &choices,
            Some("DefaultState"),
            &json!({"value": 22}),
            &json!({}),
        )
        .unwrap_err();
        assert_eq!(err.error, "States.Runtime");
    }

    /// The single-operator examples from the Choice Rules section.
    #[test]
    fn comparison_examples_from_the_docs() {
        assert!(holds(
            json!({"Variable": "$.foo", "NumericEquals": 1}),
            json!({"foo": 1})
        ));
        assert!(holds(
            json!({"Variable": "$.foo", "StringEquals": "MyString"}),
            json!({"foo": "MyString"})
        ));
        assert!(holds(
            json!({"Variable": "$.foo", "StringGreaterThan": "MyStringABC"}),
            json!({"foo": "MyStringABD"})
        ));
        assert!(!holds(
            json!({"Variable": "$.foo", "StringGreaterThan": "MyStringABC"}),
            json!({"foo": "MyStringAB"})
        ));
        assert!(holds(
            json!({"Variable": "$.foo", "TimestampEquals": "2001-01-01T12:00:00Z"}),
            json!({"foo": "2001-01-01T12:00:00Z"})
        ));
        // "Step Functions doesn't attempt to match a numeric field to a string value".
        assert!(!holds(
            json!({"Variable": "$.foo", "NumericEquals": 1}),
            json!({"foo": "1"})
        ));
        assert!(!holds(
            json!({"Variable": "$.foo", "StringEquals": "1"}),
            json!({"foo": 1})
        ));
        // A timestamp field can be matched by StringEquals.
        assert!(holds(
            json!({"Variable": "$.foo", "StringEquals": "2001-01-01T12:00:00Z"}),
            json!({"foo": "2001-01-01T12:00:00Z"})
        ));
    }

    #[test]
    fn every_comparison_family() {
        let input = json!({"n": 5, "m": 5.0, "s": "b", "t": "2020-01-01T00:00:00Z", "u": "2020-01-01T01:00:00+01:00", "b": true, "z": null});
        for (r, expected) in [
            (json!({"Variable": "$.n", "NumericLessThan": 6}), true),
            (json!({"Variable": "$.n", "NumericLessThanEquals": 5}), true),
            (json!({"Variable": "$.n", "NumericGreaterThan": 5}), false),
            (
                json!({"Variable": "$.n", "NumericGreaterThanEquals": 5.0}),
                true,
            ),
            (json!({"Variable": "$.n", "NumericEqualsPath": "$.m"}), true),
            (json!({"Variable": "$.s", "StringLessThan": "c"}), true),
            (
                json!({"Variable": "$.s", "StringLessThanEquals": "a"}),
                false,
            ),
            (
                json!({"Variable": "$.s", "StringGreaterThanEquals": "b"}),
                true,
            ),
            (json!({"Variable": "$.s", "StringEqualsPath": "$.s"}), true),
            (json!({"Variable": "$.b", "BooleanEquals": true}), true),
            (json!({"Variable": "$.b", "BooleanEqualsPath": "$.b"}), true),
            (
                json!({"Variable": "$.t", "TimestampEqualsPath": "$.u"}),
                true,
            ),
            (
                json!({"Variable": "$.t", "TimestampLessThan": "2020-01-01T00:00:01Z"}),
                true,
            ),
            (
                json!({"Variable": "$.t", "TimestampGreaterThanEquals": "2021-01-01T00:00:00Z"}),
                false,
            ),
            (
                json!({"Variable": "$.s", "TimestampEquals": "2020-01-01T00:00:00Z"}),
                false,
            ),
            (json!({"Variable": "$.z", "IsNull": true}), true),
            (json!({"Variable": "$.n", "IsNull": false}), true),
            (json!({"Variable": "$.n", "IsNumeric": true}), true),
            (json!({"Variable": "$.s", "IsString": true}), true),
            (json!({"Variable": "$.b", "IsBoolean": true}), true),
            (json!({"Variable": "$.t", "IsTimestamp": true}), true),
            (json!({"Variable": "$.s", "IsTimestamp": true}), false),
            (json!({"Variable": "$.nope", "IsPresent": false}), true),
            (json!({"Variable": "$.n", "IsPresent": true}), true),
            (
                json!({"Or": [{"Variable": "$.n", "NumericEquals": 1}, {"Variable": "$.s", "StringEquals": "b"}]}),
                true,
            ),
            (
                json!({"Not": {"Variable": "$.b", "BooleanEquals": false}}),
                true,
            ),
        ] {
            assert_eq!(
                evaluate(&rule(r.clone()), &input, &json!({})).unwrap(),
                expected,
                "{r}"
            );
        }
    }

    /// The docs guard comparisons with IsPresent inside And; evaluation must short-circuit.
    #[test]
    fn and_short_circuits_so_is_present_guards_work() {
        let r = json!({"And": [
            {"Variable": "$.value", "IsPresent": true},
            {"Variable": "$.value", "IsNumeric": true},
            {"Variable": "$.value", "NumericGreaterThan": 20}
        ]});
        assert!(!holds(r.clone(), json!({})));
        assert!(holds(r, json!({"value": 21})));
        let err = evaluate(
            &rule(json!({"Variable": "$.value", "IsNull": true})),
            &json!({}),
            &json!({}),
        )
        .unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        let err = evaluate(
            &rule(json!({"Variable": "$.a", "NumericEqualsPath": "$.b"})),
            &json!({"a": 1}),
            &json!({}),
        )
        .unwrap_err();
        assert_eq!(err.error, "States.Runtime");
    }

    #[test]
    fn string_matches_wildcards() {
        let m = |pat: &str, s: &str| {
            holds(
                json!({"Variable": "$.s", "StringMatches": pat}),
                json!({"s": s}),
            )
        };
        assert!(m("log-*.txt", "log-2024.txt"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m(r"lit\*", "lit*"));
        assert!(!m(r"lit\*", "litx"));
        assert!(m(r"back\\slash", r"back\slash"));
    }

    #[test]
    fn java_string_ordering() {
        // U+FF61 sorts before U+1F600 in UTF-16 (0xD83D surrogate) but after it in UTF-8.
        assert_eq!(compare_utf16("\u{FF61}", "\u{1F600}"), Ordering::Greater);
    }

    #[test]
    fn timestamps_need_uppercase_t_and_z() {
        assert!(parse_timestamp("2016-08-18T17:33:00Z").is_some());
        assert!(parse_timestamp("2016-08-18T17:33:00.123+02:00").is_some());
        assert!(parse_timestamp("2016-08-18t17:33:00Z").is_none());
        assert!(parse_timestamp("2016-08-18T17:33:00z").is_none());
        assert!(parse_timestamp("2016-08-18 17:33:00Z").is_none());
    }

    #[test]
    fn no_match_without_default_is_no_choice_matched() {
        let choices = rules(json!([{"Variable": "$.a", "NumericEquals": 1, "Next": "One"}]));
        let err = choose(&choices, None, &json!({"a": 2}), &json!({})).unwrap_err();
        assert_eq!(err.error, "States.NoChoiceMatched");
    }

    #[test]
    fn malformed_rules_name_the_field() {
        for (r, field) in [
            (
                json!({"Variable": "$.a", "NumericEquals": "1", "Next": "X"}),
                "NumericEquals",
            ),
            (
                json!({"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "X"}),
                "TimestampEquals",
            ),
            (json!({"Variable": "$.a", "Next": "X"}), ""),
            (
                json!({"Variable": "$.a", "NumericEquals": 1, "StringEquals": "a", "Next": "X"}),
                "",
            ),
            (json!({"NumericEquals": 1, "Next": "X"}), "Variable"),
            (
                json!({"Variable": "$.a[*]", "IsPresent": true, "Next": "X"}),
                "Variable",
            ),
            (json!({"And": [], "Next": "X"}), "And"),
            (
                json!({"And": [{"Variable": "$.a", "IsNull": true, "Next": "Y"}], "Next": "X"}),
                "And[0].Next",
            ),
            (
                json!({"Variable": "$.a", "StringEqualz": "x", "Next": "X"}),
                "StringEqualz",
            ),
            (
                json!({"Variable": "$.a", "NumericEqualsPath": "$.b[*]", "Next": "X"}),
                "NumericEqualsPath",
            ),
            (json!({"Variable": "$.a", "IsPresent": true}), "Next"),
        ] {
            let e = parse_rule(&r).unwrap_err();
            assert_eq!(e.field, field, "{r}: {}", e.message);
        }
    }
}

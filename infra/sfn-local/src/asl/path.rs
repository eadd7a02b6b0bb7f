//! The JSONPath subset that Amazon States Language accepts in JSONPath states.
//!
//! Step Functions follows Jayway JsonPath. Supported here: `$` (state input), `$$` (context
//! object), `.name`, `['name']` / `["name"]`, `[n]` (negative counts from the end), `[*]` /
//! `.*`, and `[start:end]` / `[start:end:step]` slices. A *reference path* (ResultPath,
//! Variable, SecondsPath, …) may use only names and indexes, so it selects a single node.
//! Recursive descent, filters, unions and functions are rejected when the definition loads.

use serde_json::{Map, Value};
use std::fmt;

/// Which document a path reads: the state's input (`$`) or the context object (`$$`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Input,
    Context,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Field(String),
    Index(i64),
    Wildcard,
    Slice {
        start: Option<i64>,
        end: Option<i64>,
        step: Option<i64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    text: String,
    root: Root,
    segments: Vec<Segment>,
}

/// Why a path string is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSyntaxError(pub String);

impl fmt::Display for PathSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PathSyntaxError {}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    /// The identity path `$`.
    pub fn root_input() -> Path {
        Path {
            text: "$".into(),
            root: Root::Input,
            segments: Vec::new(),
        }
    }

    /// Parses a path; `$$…` paths address the context object.
    pub fn parse(text: &str) -> Result<Path, PathSyntaxError> {
        parse_path(text)
    }

    /// Parses a path that must be a reference path (one node, no wildcards or slices).
    pub fn parse_reference(text: &str) -> Result<Path, PathSyntaxError> {
        let path = parse_path(text)?;
        if !path.is_reference() {
            return Err(PathSyntaxError(format!(
                "'{text}' is not a reference path: wildcards and slices select several nodes"
            )));
        }
        Ok(path)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn root(&self) -> Root {
        self.root
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn is_context(&self) -> bool {
        self.root == Root::Context
    }

    /// True when the path can only ever select a single node.
    pub fn is_reference(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Field(_) | Segment::Index(_)))
    }

    /// Evaluates the path against the state input or the context object.
    ///
    /// A reference path yields `None` when nothing is at that location. A path with wildcards
    /// or slices always yields an array of the matches (possibly empty), as Jayway does.
    pub fn select(&self, input: &Value, context: &Value) -> Option<Value> {
        let doc = match self.root {
            Root::Input => input,
            Root::Context => context,
        };
        self.select_in(doc)
    }

    /// Evaluates the path's segments against `doc`, whatever the path's root.
    pub fn select_in(&self, doc: &Value) -> Option<Value> {
        if self.is_reference() {
            let mut cur = doc;
            for seg in &self.segments {
                cur = match (seg, cur) {
                    (Segment::Field(k), Value::Object(m)) => m.get(k)?,
                    (Segment::Index(i), Value::Array(a)) => a.get(resolve_index(*i, a.len())?)?,
                    _ => return None,
                };
            }
            return Some(cur.clone());
        }
        let mut out = Vec::new();
        walk(doc, &self.segments, &mut out);
        Some(Value::Array(out.into_iter().cloned().collect()))
    }

    /// Writes `value` at this reference path inside `target`, creating missing objects on the
    /// way, as ResultPath does. Fails when an intermediate node is not an object (or, for an
    /// index, not an array long enough).
    pub fn set_in(&self, target: &mut Value, value: Value) -> Result<(), String> {
        set(target, &self.segments, value, &self.text)
    }
}

fn resolve_index(i: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let idx = if i < 0 { len + i } else { i };
    if (0..len).contains(&idx) {
        usize::try_from(idx).ok()
    } else {
        None
    }
}

fn walk<'a>(v: &'a Value, segs: &[Segment], out: &mut Vec<&'a Value>) {
    let Some((seg, rest)) = segs.split_first() else {
        out.push(v);
        return;
    };
    match (seg, v) {
        (Segment::Field(k), Value::Object(m)) => {
            if let Some(child) = m.get(k) {
                walk(child, rest, out);
            }
        }
        (Segment::Index(i), Value::Array(a)) => {
            if let Some(child) = resolve_index(*i, a.len()).and_then(|i| a.get(i)) {
                walk(child, rest, out);
            }
        }
        (Segment::Wildcard, Value::Array(a)) => a.iter().for_each(|c| walk(c, rest, out)),
        (Segment::Wildcard, Value::Object(m)) => m.values().for_each(|c| walk(c, rest, out)),
        (Segment::Slice { start, end, step }, Value::Array(a)) => {
            for i in slice_indices(a.len(), *start, *end, *step) {
                walk(&a[i], rest, out);
            }
        }
        _ => {}
    }
}

fn slice_indices(
    len: usize,
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
) -> Vec<usize> {
    let len = len as i64;
    let clamp = |v: i64| -> i64 {
        let v = if v < 0 { len + v } else { v };
        v.clamp(0, len)
    };
    let step = step.unwrap_or(1).max(1);
    let from = start.map(clamp).unwrap_or(0);
    let to = end.map(clamp).unwrap_or(len);
    let mut out = Vec::new();
    let mut i = from;
    while i < to {
        out.push(i as usize);
        i += step;
    }
    out
}

fn set(target: &mut Value, segs: &[Segment], value: Value, text: &str) -> Result<(), String> {
    let Some((seg, rest)) = segs.split_first() else {
        *target = value;
        return Ok(());
    };
    match (seg, target) {
        (Segment::Field(k), Value::Object(m)) => {
            if rest.is_empty() {
                m.insert(k.clone(), value);
                return Ok(());
            }
            let child = m
                .entry(k.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            set(child, rest, value, text)
        }
        (Segment::Index(i), Value::Array(a)) => {
            let len = a.len();
            let idx = resolve_index(*i, len).ok_or_else(|| {
                format!("index {i} of '{text}' is outside an array of length {len}")
            })?;
            if rest.is_empty() {
                a[idx] = value;
                return Ok(());
            }
            set(&mut a[idx], rest, value, text)
        }
        (Segment::Field(k), other) => Err(format!(
            "cannot set field '{k}' of '{text}': the node is {}, not an object",
            kind_of(other)
        )),
        (Segment::Index(i), other) => Err(format!(
            "cannot set index {i} of '{text}': the node is {}, not an array",
            kind_of(other)
        )),
        (_, _) => Err(format!("'{text}' is not a reference path")),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Renders a reference path the way Step Functions' error causes do: `$['a']['b'][0]`.
pub fn bracket_notation(path: &Path) -> String {
    let mut out = String::from(if path.is_context() { "$$" } else { "$" });
    for seg in &path.segments {
        match seg {
            Segment::Field(k) => out.push_str(&format!("['{k}']")),
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Wildcard => out.push_str("[*]"),
            Segment::Slice { start, end, step } => {
                let f = |v: &Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
                match step {
                    Some(_) => out.push_str(&format!("[{}:{}:{}]", f(start), f(end), f(step))),
                    None => out.push_str(&format!("[{}:{}]", f(start), f(end))),
                }
            }
        }
    }
    out
}

fn parse_path(text: &str) -> Result<Path, PathSyntaxError> {
    let err = |msg: String| Err(PathSyntaxError(format!("invalid path '{text}': {msg}")));
    let chars: Vec<char> = text.chars().collect();
    if chars.first() != Some(&'$') {
        return err("a path must begin with '$'".into());
    }
    let (root, mut pos) = if chars.get(1) == Some(&'$') {
        (Root::Context, 2)
    } else {
        (Root::Input, 1)
    };
    let mut segments = Vec::new();
    while pos < chars.len() {
        match chars[pos] {
            '.' => {
                pos += 1;
                if chars.get(pos) == Some(&'.') {
                    return err(
                        "recursive descent ('..') is not supported by the local runtime".into(),
                    );
                }
                let start = pos;
                while pos < chars.len() && chars[pos] != '.' && chars[pos] != '[' {
                    pos += 1;
                }
                let name: String = chars[start..pos].iter().collect();
                if name.is_empty() {
                    return err("empty field name after '.'".into());
                }
                if name == "*" {
                    segments.push(Segment::Wildcard);
                    continue;
                }
                if let Some(bad) = name
                    .chars()
                    .find(|c| c.is_whitespace() || "()@?,'\"*$]".contains(*c))
                {
                    return err(format!(
                        "character '{bad}' is not allowed in field name '{name}' (filters and functions are not supported)"
                    ));
                }
                segments.push(Segment::Field(name));
            }
            '[' => {
                pos += 1;
                skip_spaces(&chars, &mut pos);
                match chars.get(pos) {
                    Some(&q) if q == '\'' || q == '"' => {
                        pos += 1;
                        let mut name = String::new();
                        loop {
                            match chars.get(pos) {
                                None => return err("unterminated quoted name".into()),
                                Some('\\') => {
                                    match chars.get(pos + 1) {
                                        Some(c) => name.push(*c),
                                        None => return err("unterminated quoted name".into()),
                                    }
                                    pos += 2;
                                }
                                Some(c) if *c == q => {
                                    pos += 1;
                                    break;
                                }
                                Some(c) => {
                                    name.push(*c);
                                    pos += 1;
                                }
                            }
                        }
                        skip_spaces(&chars, &mut pos);
                        match chars.get(pos) {
                            Some(']') => pos += 1,
                            Some(',') => {
                                return err(
                                    "unions ('[a,b]') are not supported by the local runtime"
                                        .into(),
                                )
                            }
                            _ => return err("expected ']' after quoted name".into()),
                        }
                        segments.push(Segment::Field(name));
                    }
                    Some('*') => {
                        pos += 1;
                        skip_spaces(&chars, &mut pos);
                        if chars.get(pos) != Some(&']') {
                            return err("expected ']' after '*'".into());
                        }
                        pos += 1;
                        segments.push(Segment::Wildcard);
                    }
                    Some('?') | Some('(') => {
                        return err(
                            "filter and script expressions are not supported by the local runtime"
                                .into(),
                        )
                    }
                    Some(_) => {
                        let start = pos;
                        while pos < chars.len() && chars[pos] != ']' {
                            pos += 1;
                        }
                        if pos >= chars.len() {
                            return err("missing ']'".into());
                        }
                        let inner: String = chars[start..pos].iter().collect();
                        pos += 1;
                        segments.push(
                            parse_bracket(inner.trim()).map_err(|m| {
                                PathSyntaxError(format!("invalid path '{text}': {m}"))
                            })?,
                        );
                    }
                    None => return err("missing ']'".into()),
                }
            }
            c => return err(format!("unexpected character '{c}'")),
        }
    }
    Ok(Path {
        text: text.to_string(),
        root,
        segments,
    })
}

fn skip_spaces(chars: &[char], pos: &mut usize) {
    while *pos < chars.len() && chars[*pos] == ' ' {
        *pos += 1;
    }
}

fn parse_bracket(inner: &str) -> Result<Segment, String> {
    if inner.contains(',') {
        return Err("unions ('[a,b]') are not supported by the local runtime".into());
    }
    let int = |s: &str| -> Result<Option<i64>, String> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse::<i64>()
                .map(Some)
                .map_err(|_| format!("'{s}' is not an integer index"))
        }
    };
    if inner.contains(':') {
        let parts: Vec<&str> = inner.split(':').collect();
        if parts.len() > 3 {
            return Err(format!("malformed slice '[{inner}]'"));
        }
        let step = match parts.get(2) {
            Some(s) => int(s)?,
            None => None,
        };
        if matches!(step, Some(s) if s <= 0) {
            return Err(format!("slice step in '[{inner}]' must be positive"));
        }
        return Ok(Segment::Slice {
            start: int(parts[0])?,
            end: int(parts[1])?,
            step,
        });
    }
    match int(inner)? {
        Some(i) => Ok(Segment::Index(i)),
        None => Err("empty brackets".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(path: &str, doc: &Value) -> Option<Value> {
        Path::parse(path).unwrap().select(doc, &Value::Null)
    }

    /// The reference-path example from "Paths" in the Step Functions developer guide.
    #[test]
    fn reference_paths_from_the_docs() {
        let input = json!({"foo": 123, "bar": ["a", "b", "c"], "car": {"cdr": true}});
        assert_eq!(sel("$.foo", &input), Some(json!(123)));
        assert_eq!(sel("$.bar", &input), Some(json!(["a", "b", "c"])));
        assert_eq!(sel("$.car.cdr", &input), Some(json!(true)));
        assert_eq!(sel("$", &input), Some(input.clone()));
        for p in ["$.foo", "$.bar", "$.car.cdr"] {
            assert!(Path::parse_reference(p).is_ok(), "{p}");
        }
    }

    /// "A path can yield a selection of values": `$.a[0:2]` on `{"a":[1,2,3,4]}` is `[1,2]`.
    #[test]
    fn slice_from_the_docs() {
        assert_eq!(
            sel("$.a[0:2]", &json!({"a": [1, 2, 3, 4]})),
            Some(json!([1, 2]))
        );
        assert!(Path::parse_reference("$.a[0:2]").is_err());
    }

    #[test]
    fn brackets_indexes_and_wildcards() {
        let doc = json!({"a b": {"c": [10, 20, 30]}, "items": [{"b": 1}, {"b": 2}, {"x": 3}]});
        assert_eq!(sel("$['a b'].c[1]", &doc), Some(json!(20)));
        assert_eq!(sel("$[\"a b\"]['c'][-1]", &doc), Some(json!(30)));
        assert_eq!(sel("$.items[*].b", &doc), Some(json!([1, 2])));
        assert_eq!(sel("$.items.*.b", &doc), Some(json!([1, 2])));
        assert_eq!(sel("$.nothing[*]", &doc), Some(json!([])));
        assert_eq!(sel("$.missing", &doc), None);
        assert_eq!(sel("$['a b'].c[7]", &doc), None);
        assert_eq!(sel("$.items.b", &doc), None);
    }

    #[test]
    fn dashes_are_allowed_in_dot_names() {
        // The Catch example in the docs uses "$.error-info".
        let p = Path::parse_reference("$.error-info").unwrap();
        assert_eq!(p.segments(), &[Segment::Field("error-info".into())]);
    }

    #[test]
    fn context_paths() {
        let p = Path::parse("$$.Task.Token").unwrap();
        assert!(p.is_context());
        let ctx = json!({"Task": {"Token": "t"}});
        assert_eq!(p.select(&json!({}), &ctx), Some(json!("t")));
    }

    #[test]
    fn malformed_and_unsupported_paths_are_rejected() {
        for bad in [
            "foo",
            "",
            "$.",
            "$..a",
            "$.a[",
            "$.a[?(@.b)]",
            "$.a[0,1]",
            "$.a.length()",
            "$.a b",
            "$['a'",
            "$.a[x]",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn set_creates_objects_and_overwrites() {
        let mut doc = json!({"a": 1});
        Path::parse_reference("$.b.c")
            .unwrap()
            .set_in(&mut doc, json!(2))
            .unwrap();
        assert_eq!(doc, json!({"a": 1, "b": {"c": 2}}));
        Path::parse_reference("$.a")
            .unwrap()
            .set_in(&mut doc, json!("x"))
            .unwrap();
        assert_eq!(doc["a"], json!("x"));
        let mut arr = json!({"l": [1, 2]});
        Path::parse_reference("$.l[1]")
            .unwrap()
            .set_in(&mut arr, json!(9))
            .unwrap();
        assert_eq!(arr, json!({"l": [1, 9]}));
        assert!(Path::parse_reference("$.l[5]")
            .unwrap()
            .set_in(&mut arr, json!(0))
            .is_err());
        let mut s = json!("scalar");
        assert!(Path::parse_reference("$.x")
            .unwrap()
            .set_in(&mut s, json!(0))
            .is_err());
        let mut root = json!({"x": 1});
        Path::root_input().set_in(&mut root, json!(5)).unwrap();
        assert_eq!(root, json!(5));
    }

    #[test]
    fn bracket_notation_matches_the_service_wording() {
        let p = Path::parse("$.detail.items[0]").unwrap();
        assert_eq!(bracket_notation(&p), "$['detail']['items'][0]");
    }
}

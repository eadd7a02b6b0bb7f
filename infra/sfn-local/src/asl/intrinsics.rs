//! Intrinsic functions (`States.Format(...)` and friends) for JSONPath states.
//!
//! An invocation is parsed once, when the definition loads, so an unknown function, a wrong
//! number of arguments or a malformed literal is a load error. Arguments are string literals in
//! single quotes (with `\'`, `\{`, `\}` and `\\` escapes), numbers, `true`/`false`/`null`, paths
//! (`$…` or `$$…`) and nested invocations. Evaluation failures are `States.Runtime` errors.

use super::failure::StateFailure;
use super::path::Path;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Number, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Function {
    fn from_name(name: &str) -> Option<Function> {
        use Function::*;
        Some(match name {
            "Format" => Format,
            "StringToJson" => StringToJson,
            "JsonToString" => JsonToString,
            "Array" => Array,
            "ArrayPartition" => ArrayPartition,
            "ArrayContains" => ArrayContains,
            "ArrayRange" => ArrayRange,
            "ArrayGetItem" => ArrayGetItem,
            "ArrayLength" => ArrayLength,
            "ArrayUnique" => ArrayUnique,
            "Base64Encode" => Base64Encode,
            "Base64Decode" => Base64Decode,
            "JsonMerge" => JsonMerge,
            "MathRandom" => MathRandom,
            "MathAdd" => MathAdd,
            "StringSplit" => StringSplit,
            "UUID" => Uuid,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use Function::*;
        match self {
            Format => "States.Format",
            StringToJson => "States.StringToJson",
            JsonToString => "States.JsonToString",
            Array => "States.Array",
            ArrayPartition => "States.ArrayPartition",
            ArrayContains => "States.ArrayContains",
            ArrayRange => "States.ArrayRange",
            ArrayGetItem => "States.ArrayGetItem",
            ArrayLength => "States.ArrayLength",
            ArrayUnique => "States.ArrayUnique",
            Base64Encode => "States.Base64Encode",
            Base64Decode => "States.Base64Decode",
            JsonMerge => "States.JsonMerge",
            MathRandom => "States.MathRandom",
            MathAdd => "States.MathAdd",
            StringSplit => "States.StringSplit",
            Uuid => "States.UUID",
        }
    }

    fn arity(self) -> (usize, usize) {
        use Function::*;
        match self {
            Format => (1, usize::MAX),
            Array => (0, usize::MAX),
            StringToJson | JsonToString | ArrayLength | ArrayUnique | Base64Encode
            | Base64Decode => (1, 1),
            ArrayPartition | ArrayContains | ArrayGetItem | MathAdd | StringSplit => (2, 2),
            ArrayRange | JsonMerge => (3, 3),
            MathRandom => (2, 3),
            Uuid => (0, 0),
        }
    }
}

/// A piece of a `States.Format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatPiece {
    Text(String),
    Placeholder,
}

/// A single-quoted string literal. `pieces` keeps which braces were escaped, because only an
/// unescaped `{}` is a Format placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringLiteral {
    pub value: String,
    pub pieces: Vec<FormatPiece>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    String(StringLiteral),
    Literal(Value),
    Path(Path),
    Call(Box<Intrinsic>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Intrinsic {
    pub function: Function,
    pub args: Vec<Arg>,
    text: String,
}

/// Whether a `.$` value is meant as an intrinsic invocation rather than a path.
pub fn looks_like_intrinsic(s: &str) -> bool {
    s.trim_start().starts_with("States.")
}

impl Intrinsic {
    pub fn parse(text: &str) -> Result<Intrinsic, String> {
        let mut p = Parser {
            chars: text.chars().collect(),
            pos: 0,
        };
        p.skip_ws();
        let call = p.call(text)?;
        p.skip_ws();
        if p.pos != p.chars.len() {
            return Err(format!(
                "unexpected text after the closing parenthesis in '{text}'"
            ));
        }
        Ok(call)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn evaluate(&self, input: &Value, context: &Value) -> Result<Value, StateFailure> {
        let mut values = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            values.push(match arg {
                Arg::String(s) => Value::String(s.value.clone()),
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => p.select(input, context).ok_or_else(|| {
                    StateFailure::runtime(format!(
                        "The JSONPath '{}' specified in the function '{}' could not be found in the input",
                        p.text(),
                        self.text
                    ))
                })?,
                Arg::Call(c) => c.evaluate(input, context)?,
            });
        }
        self.apply(values).map_err(|m| {
            StateFailure::runtime(format!(
                "Invalid arguments in {}: {m}",
                self.function.name()
            ))
        })
    }

    fn apply(&self, mut args: Vec<Value>) -> Result<Value, String> {
        use Function::*;
        match self.function {
            Format => {
                let rest: Vec<Value> = args.split_off(1);
                let pieces = match &self.args[0] {
                    Arg::String(lit) => lit.pieces.clone(),
                    _ => match &args[0] {
                        Value::String(s) => pieces_of_plain(s),
                        other => return Err(format!("the template must be a string, got {other}")),
                    },
                };
                let holes = pieces
                    .iter()
                    .filter(|p| **p == FormatPiece::Placeholder)
                    .count();
                if holes != rest.len() {
                    return Err(format!(
                        "the template has {holes} placeholder(s) but {} value(s) were given",
                        rest.len()
                    ));
                }
                let mut values = rest.iter();
                let mut out = String::new();
                for piece in &pieces {
                    match piece {
                        FormatPiece::Text(t) => out.push_str(t),
                        FormatPiece::Placeholder => {
                            out.push_str(&format_value(values.next().unwrap_or(&Value::Null)))
                        }
                    }
                }
                Ok(Value::String(out))
            }
            StringToJson => {
                let s = as_str(&args[0])?;
                serde_json::from_str(s).map_err(|e| format!("'{s}' is not valid JSON: {e}"))
            }
            JsonToString => Ok(Value::String(args[0].to_string())),
            Array => Ok(Value::Array(args)),
            ArrayPartition => {
                let arr = as_array(&args[0])?;
                let size = as_int(&args[1])?;
                if size <= 0 {
                    return Err(format!("the chunk size must be positive, got {size}"));
                }
                Ok(Value::Array(
                    arr.chunks(size as usize)
                        .map(|c| Value::Array(c.to_vec()))
                        .collect(),
                ))
            }
            ArrayContains => Ok(Value::Bool(as_array(&args[0])?.contains(&args[1]))),
            ArrayRange => {
                let (first, last, step) = (as_int(&args[0])?, as_int(&args[1])?, as_int(&args[2])?);
                if step == 0 {
                    return Err("the step must not be 0".into());
                }
                let mut out = Vec::new();
                let mut i = first;
                while (step > 0 && i <= last) || (step < 0 && i >= last) {
                    if out.len() >= 1000 {
                        return Err("the range has more than 1000 items".into());
                    }
                    out.push(Value::from(i));
                    i += step;
                }
                Ok(Value::Array(out))
            }
            ArrayGetItem => {
                let arr = as_array(&args[0])?;
                let idx = as_int(&args[1])?;
                usize::try_from(idx)
                    .ok()
                    .and_then(|i| arr.get(i))
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "index {idx} is out of bounds for an array of length {}",
                            arr.len()
                        )
                    })
            }
            ArrayLength => Ok(Value::from(as_array(&args[0])?.len())),
            ArrayUnique => {
                let mut seen: Vec<Value> = Vec::new();
                for v in as_array(&args[0])? {
                    if !seen.contains(v) {
                        seen.push(v.clone());
                    }
                }
                Ok(Value::Array(seen))
            }
            Base64Encode => Ok(Value::String(BASE64.encode(as_str(&args[0])?))),
            Base64Decode => {
                let s = as_str(&args[0])?;
                let bytes = BASE64
                    .decode(s)
                    .map_err(|_| format!("'{s}' is not base64"))?;
                String::from_utf8(bytes)
                    .map(Value::String)
                    .map_err(|_| "the decoded data is not UTF-8 text".into())
            }
            JsonMerge => {
                let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                    return Err("both values to merge must be JSON objects".into());
                };
                if args[2] != Value::Bool(false) {
                    return Err("only a shallow merge (false) is supported".into());
                }
                let mut merged: Map<String, Value> = a.clone();
                for (k, v) in b {
                    merged.insert(k.clone(), v.clone());
                }
                Ok(Value::Object(merged))
            }
            MathRandom => {
                let (start, end) = (as_int(&args[0])?, as_int(&args[1])?);
                if end <= start {
                    return Err(format!(
                        "the end ({end}) must be greater than the start ({start})"
                    ));
                }
                let span = (end - start) as u64;
                let r = match args.get(2) {
                    Some(seed) => splitmix64(as_int(seed)? as u64),
                    None => random_u64()?,
                };
                Ok(Value::from(start + (r % span) as i64))
            }
            MathAdd => {
                let a = as_int32(&args[0])?;
                let b = as_int32(&args[1])?;
                Ok(Value::from(a + b))
            }
            StringSplit => {
                let s = as_str(&args[0])?;
                let delims: Vec<char> = as_str(&args[1])?.chars().collect();
                Ok(Value::Array(
                    s.split(|c| delims.contains(&c))
                        .filter(|p| !p.is_empty())
                        .map(|p| Value::String(p.to_string()))
                        .collect(),
                ))
            }
            Uuid => {
                let mut bytes = [0u8; 16];
                getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
                Ok(Value::String(
                    uuid::Builder::from_random_bytes(bytes)
                        .into_uuid()
                        .to_string(),
                ))
            }
        }
    }
}

fn as_str(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, got {v}"))
}

fn as_array(v: &Value) -> Result<&Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("expected an array, got {v}"))
}

fn as_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| format!("expected an integer, got {n}")),
        other => Err(format!("expected an integer, got {other}")),
    }
}

/// MathAdd takes 32-bit integers and rounds other numbers like Java's `Math.round`.
fn as_int32(v: &Value) -> Result<i64, String> {
    let n = match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => i,
            None => (n.as_f64().unwrap_or(f64::NAN) + 0.5).floor() as i64,
        },
        other => return Err(format!("expected an integer, got {other}")),
    };
    if !(i64::from(i32::MIN)..=i64::from(i32::MAX)).contains(&n) {
        return Err(format!("{n} is outside the 32-bit integer range"));
    }
    Ok(n)
}

/// How States.Format prints a value: strings as they are, arrays and objects in Java's
/// `toString` style, other values as JSON.
pub fn format_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(format_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}={}", format_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn pieces_of_plain(s: &str) -> Vec<FormatPiece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' && chars.peek() == Some(&'}') {
            chars.next();
            if !text.is_empty() {
                pieces.push(FormatPiece::Text(std::mem::take(&mut text)));
            }
            pieces.push(FormatPiece::Placeholder);
        } else {
            text.push(c);
        }
    }
    if !text.is_empty() {
        pieces.push(FormatPiece::Text(text));
    }
    pieces
}

// Standard alphabet, padded output; decoding accepts input without padding and ignores
// stray trailing bits, as the hand-written decoder this replaced did.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn random_u64() -> Result<u64, String> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(u64::from_le_bytes(b))
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn rest_starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.chars.get(self.pos + i) == Some(&c))
    }

    fn call(&mut self, whole: &str) -> Result<Intrinsic, String> {
        let start = self.pos;
        if !self.rest_starts_with("States.") {
            return Err(format!("'{whole}' is not an intrinsic function invocation"));
        }
        self.pos += "States.".len();
        let name_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        let name: String = self.chars[name_start..self.pos].iter().collect();
        let function = match Function::from_name(&name) {
            Some(f) => f,
            None if name == "Hash" => {
                return Err(
                    "intrinsic function 'States.Hash' is not supported by the local runtime".into(),
                )
            }
            None => return Err(format!("unknown intrinsic function 'States.{name}'")),
        };
        self.skip_ws();
        if self.peek() != Some('(') {
            return Err(format!("expected '(' after '{}'", function.name()));
        }
        self.pos += 1;
        self.skip_ws();
        let mut args = Vec::new();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                args.push(self.arg(whole)?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => {
                        return Err(format!(
                            "expected ',' or ')' in the arguments of '{}'",
                            function.name()
                        ))
                    }
                }
            }
        }
        let (min, max) = function.arity();
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(format!(
                "'{}' takes {expected} argument(s), got {}",
                function.name(),
                args.len()
            ));
        }
        if function == Function::Format {
            if let Arg::String(lit) = &args[0] {
                let holes = lit
                    .pieces
                    .iter()
                    .filter(|p| **p == FormatPiece::Placeholder)
                    .count();
                if holes != args.len() - 1 {
                    return Err(format!(
                        "the template of 'States.Format' has {holes} placeholder(s) but {} value(s) follow it",
                        args.len() - 1
                    ));
                }
            } else if matches!(args[0], Arg::Literal(_)) {
                return Err("the first argument of 'States.Format' must be a string".into());
            }
        }
        if function == Function::JsonToString && !matches!(args[0], Arg::Path(_)) {
            return Err("the argument of 'States.JsonToString' must be a path".into());
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        Ok(Intrinsic {
            function,
            args,
            text,
        })
    }

    fn arg(&mut self, whole: &str) -> Result<Arg, String> {
        match self.peek() {
            Some('\'') => self.string_literal().map(Arg::String),
            Some('$') => {
                let start = self.pos;
                let mut depth = 0usize;
                let mut quote: Option<char> = None;
                while let Some(c) = self.peek() {
                    match (quote, c) {
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), '\\') => self.pos += 1,
                        (Some(_), _) => {}
                        (None, '\'') | (None, '"') if depth > 0 => quote = Some(c),
                        (None, '[') => depth += 1,
                        (None, ']') => depth = depth.saturating_sub(1),
                        (None, ',') | (None, ')') if depth == 0 => break,
                        (None, c) if c.is_whitespace() && depth == 0 => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos.min(self.chars.len())]
                    .iter()
                    .collect();
                Path::parse(&text).map(Arg::Path).map_err(|e| e.0)
            }
            Some('S') => self.call(whole).map(|c| Arg::Call(Box::new(c))),
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(c))
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                let n: Number =
                    serde_json::from_str(&text).map_err(|_| format!("'{text}' is not a number"))?;
                Ok(Arg::Literal(Value::Number(n)))
            }
            Some(_) => {
                for (word, value) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.rest_starts_with(word) {
                        self.pos += word.len();
                        return Ok(Arg::Literal(value));
                    }
                }
                Err(format!(
                    "unexpected argument at position {} of '{whole}'",
                    self.pos
                ))
            }
            None => Err(format!("'{whole}' ends in the middle of an argument list")),
        }
    }

    fn string_literal(&mut self) -> Result<StringLiteral, String> {
        self.pos += 1;
        let mut value = String::new();
        let mut pieces = Vec::new();
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string literal".into()),
                Some('\\') => {
                    let escaped = self.chars.get(self.pos + 1).copied();
                    match escaped {
                        Some(c @ ('\'' | '{' | '}' | '\\')) => {
                            value.push(c);
                            text.push(c);
                            self.pos += 2;
                        }
                        _ => {
                            return Err(
                                "an open escape backslash: only \\', \\{, \\} and \\\\ are escapes"
                                    .into(),
                            )
                        }
                    }
                }
                Some('\'') => {
                    self.pos += 1;
                    break;
                }
                Some('{') if self.chars.get(self.pos + 1) == Some(&'}') => {
                    value.push_str("{}");
                    if !text.is_empty() {
                        pieces.push(FormatPiece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(FormatPiece::Placeholder);
                    self.pos += 2;
                }
                Some(c) => {
                    value.push(c);
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        if !text.is_empty() {
            pieces.push(FormatPiece::Text(text));
        }
        Ok(StringLiteral { value, pieces })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expr: &str, input: Value) -> Result<Value, StateFailure> {
        Intrinsic::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .evaluate(&input, &json!({"Execution": {"Name": "exec-1"}}))
    }

    // The examples below are the ones in "Intrinsic functions for JSONPath states".

    #[test]
    fn format_examples_from_the_docs() {
        let input = json!({"name": "Arnav", "template": "Hello, my name is {}."});
        assert_eq!(
            eval(
                "States.Format('Hello, my name is {}.', $.name)",
                input.clone()
            )
            .unwrap(),
            json!("Hello, my name is Arnav.")
        );
        assert_eq!(
            eval("States.Format($.template, $.name)", input).unwrap(),
            json!("Hello, my name is Arnav.")
        );
    }

    #[test]
    fn format_escapes_and_value_rendering() {
        let input = json!({"n": 3, "b": true, "o": {"a": 1}, "l": [1, "x"]});
        assert_eq!(
            eval(
                r"States.Format('\{{}\} it\'s {} {} {} \\', $.n, $.b, $.o, $.l)",
                input
            )
            .unwrap(),
            json!(r"{3} it's true {a=1} [1, x] \")
        );
        assert_eq!(
            eval("States.Format('run {}', $$.Execution.Name)", json!({})).unwrap(),
            json!("run exec-1")
        );
    }

    #[test]
    fn string_to_json_and_back() {
        let input =
            json!({"escapedJsonString": "{\"foo\": \"bar\"}", "unescapedJson": {"foo": "bar"}});
        assert_eq!(
            eval("States.StringToJson($.escapedJsonString)", input.clone()).unwrap(),
            json!({"foo": "bar"})
        );
        assert_eq!(
            eval("States.JsonToString($.unescapedJson)", input).unwrap(),
            json!("{\"foo\":\"bar\"}")
        );
    }

    #[test]
    fn array_functions_from_the_docs() {
        assert_eq!(
            eval("States.Array($.Id)", json!({"Id": 123456})).unwrap(),
            json!([123456])
        );
        let input = json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "index": 5, "lookingFor": 5});
        assert_eq!(
            eval("States.ArrayGetItem($.inputArray, $.index)", input.clone()).unwrap(),
            json!(6)
        );
        assert_eq!(
            eval("States.ArrayLength($.inputArray)", input.clone()).unwrap(),
            json!(9)
        );
        assert_eq!(
            eval(
                "States.ArrayContains($.inputArray, $.lookingFor)",
                input.clone()
            )
            .unwrap(),
            json!(true)
        );
        assert_eq!(
            eval("States.ArrayPartition($.inputArray, 4)", input).unwrap(),
            json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
        );
        assert_eq!(
            eval("States.ArrayRange(1, 9, 2)", json!({})).unwrap(),
            json!([1, 3, 5, 7, 9])
        );
        assert_eq!(
            eval(
                "States.ArrayUnique($.a)",
                json!({"a": [1, 2, 3, 3, 3, 3, 3, 3, 4]})
            )
            .unwrap(),
            json!([1, 2, 3, 4])
        );
        assert!(eval("States.ArrayGetItem($.a, 3)", json!({"a": [1]})).is_err());
    }

    #[test]
    fn math_add_and_random() {
        assert_eq!(
            eval(
                "States.MathAdd($.value1, $.step)",
                json!({"value1": 111, "step": -1})
            )
            .unwrap(),
            json!(110)
        );
        let err = eval("States.MathAdd($.a, 1)", json!({"a": "x"})).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        let r = eval("States.MathRandom(1, 999)", json!({}))
            .unwrap()
            .as_i64()
            .unwrap();
        assert!((1..999).contains(&r));
        assert_eq!(
            eval("States.MathRandom(1, 999, 42)", json!({})).unwrap(),
            eval("States.MathRandom(1, 999, 42)", json!({})).unwrap()
        );
    }

    #[test]
    fn string_split_examples_from_the_docs() {
        assert_eq!(
            eval(
                "States.StringSplit($.inputString, $.splitter)",
                json!({"inputString": "1,2,3,4,5", "splitter": ","})
            )
            .unwrap(),
            json!(["1", "2", "3", "4", "5"])
        );
        assert_eq!(
            eval(
                "States.StringSplit($.inputString, $.splitter)",
                json!({"inputString": "This.is+a,test=string", "splitter": ".+,="})
            )
            .unwrap(),
            json!(["This", "is", "a", "test", "string"])
        );
    }

    #[test]
    fn nested_invocations() {
        let input = json!({"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r/1.2.3"}});
        let expr = "States.Format('{}.{}', States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1))";
        assert_eq!(eval(expr, input).unwrap(), json!("1.2"));
    }

    #[test]
    fn base64_json_merge_and_uuid() {
        assert_eq!(
            eval(
                "States.Base64Encode($.input)",
                json!({"input": "Data to encode"})
            )
            .unwrap(),
            json!("RGF0YSB0byBlbmNvZGU=")
        );
        assert_eq!(
            eval(
                "States.Base64Decode($.base64)",
                json!({"base64": "RGF0YSB0byBlbmNvZGU="})
            )
            .unwrap(),
            json!("Data to encode")
        );
        assert_eq!(
            eval(
                "States.JsonMerge($.json1, $.json2, false)",
                json!({"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}})
            )
            .unwrap(),
            json!({"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3})
        );
        let id = eval("States.UUID()", json!({})).unwrap();
        let id = id.as_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn base64_pads_accepts_unpadded_input_and_names_bad_input() {
        let enc = |s: &str| eval("States.Base64Encode($.s)", json!({"s": s})).unwrap();
        assert_eq!(
            (enc("a"), enc("ab"), enc("abc")),
            (json!("YQ=="), json!("YWI="), json!("YWJj"))
        );
        let dec = |s: &str| eval("States.Base64Decode($.s)", json!({"s": s}));
        assert_eq!(dec("YWI").unwrap(), json!("ab"));
        let bad = dec("not base64!").unwrap_err();
        assert_eq!(bad.error, "States.Runtime");
        assert!(
            bad.cause.contains("'not base64!' is not base64"),
            "{}",
            bad.cause
        );
        assert!(dec("/w==").unwrap_err().cause.contains("not UTF-8"));
    }

    #[test]
    fn load_time_errors() {
        for (bad, why) in [
            ("States.Nope($.a)", "unknown intrinsic function"),
            ("States.Hash($.a, 'SHA-256')", "not supported"),
            ("States.ArrayLength($.a, $.b)", "takes 1 argument"),
            ("States.Format('{} {}', $.a)", "placeholder"),
            ("States.Format('x', $.a", "expected ',' or ')'"),
            ("States.Format('\\n')", "open escape"),
            ("States.Array($..a)", "recursive descent"),
            ("States.JsonToString('x')", "must be a path"),
            ("States.UUID() extra", "unexpected text"),
        ] {
            let err = Intrinsic::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn missing_path_is_a_runtime_error() {
        let err = eval("States.Array($.nope)", json!({})).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert!(err.cause.contains("$.nope"));
    }
}

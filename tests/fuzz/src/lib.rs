//! Fuzz targets for what IRAS parses from people and machines it does not control: the ASL
//! engine's paths, intrinsic functions, payload templates and definitions, and the approval
//! link signatures. Each target takes generated input and must return (Ok or Err) without
//! panicking; `tests/bounded.rs` runs a bounded number of cases per target in CI, and
//! `examples/fuzz.rs` runs as many as asked (`cargo run --release -p iras-fuzz --example fuzz
//! -- 1000000`).
//!
//! proptest rather than a coverage-guided fuzzer: the toolchain here is stable Rust, and
//! libFuzzer-based harnesses need nightly.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use sfn_local::asl::{Definition, Intrinsic, Path, Template};

/// Arbitrary JSON, nested a few levels, with keys and strings that look like ASL on purpose.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        asl_text().prop_map(Value::String),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Object keys, including the `.$` suffix that turns a template field into a path.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z]{1,6}",
        "[a-zA-Z]{1,6}\\.\\$",
        Just("Type".to_string()),
        Just("Next".to_string()),
        Just("End".to_string()),
        Just("Payload.$".to_string()),
    ]
}

/// Text made of the characters ASL paths and intrinsics are built from, with their keywords.
pub fn asl_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("$".to_string()),
        Just("$$".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("'".to_string()),
        Just("\\".to_string()),
        Just("*".to_string()),
        Just("?(@.".to_string()),
        Just(":".to_string()),
        Just(",".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("{}".to_string()),
        Just("States.".to_string()),
        prop::sample::select(vec![
            "Format",
            "StringToJson",
            "JsonToString",
            "Array",
            "ArrayPartition",
            "ArrayContains",
            "ArrayRange",
            "ArrayGetItem",
            "ArrayLength",
            "ArrayUnique",
            "Base64Encode",
            "Base64Decode",
            "Hash",
            "JsonMerge",
            "MathRandom",
            "MathAdd",
            "StringSplit",
            "UUID",
        ])
        .prop_map(str::to_string),
        "[a-z0-9]{1,4}",
        "-?[0-9]{1,20}",
        ".",
    ];
    prop::collection::vec(piece, 0..14).prop_map(|p| p.concat())
}

/// A path, parsed and (when it parses) applied to arbitrary input.
pub fn asl_path(text: &str, input: &Value) {
    if let Ok(p) = Path::parse(text) {
        let _ = p.select(input, &json!({}));
        let mut target = input.clone();
        let _ = p.set_in(&mut target, json!("x"));
    }
    let _ = Path::parse_reference(text);
}

/// An intrinsic function, parsed and evaluated on arbitrary input.
pub fn asl_intrinsic(text: &str, input: &Value) {
    if let Ok(f) = Intrinsic::parse(text) {
        let _ = f.evaluate(input, &json!({"Execution": {"Id": "x"}}));
    }
}

/// A payload template (`Parameters`, `ResultSelector`), compiled and evaluated.
pub fn asl_template(template: &Value, input: &Value) {
    if let Ok(t) = Template::compile(template) {
        let _ = t.evaluate(input, &json!({}));
    }
}

/// A whole definition, as text (it may not even be JSON).
pub fn asl_definition(text: &str) {
    let _ = Definition::load(text, &HashMap::new());
}

/// A definition-shaped document: one state of every kind with generated fields.
pub fn definition_shaped(state: &Value) -> String {
    json!({"StartAt": "S", "States": {"S": state, "Done": {"Type": "Succeed"}}}).to_string()
}

/// An approval link's check, with a generated signature and expiry.
pub fn approval_link(approval_id: &str, expires: i64, sig: &str) {
    let _ = iras_core::signing::verify_approval(b"key", approval_id, expires, sig);
}

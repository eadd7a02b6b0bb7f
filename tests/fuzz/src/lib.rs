//! Fuzz targets for what IRAS parses from people and machines it does not control: the ASL
//! engine's paths, intrinsic functions, payload templates and definitions, the approval
//! link signatures, every monitoring tool's alert parser, and the webhook routes with their
//! signature checks through the real router. Each target takes generated input and must return (Ok or Err) without
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

/// The vendors' documented payloads (iras-intake's `tests/fixtures`, each with its source):
/// mutating real shapes reaches far deeper into a parser than random JSON, which every parser
/// refuses at its first field.
pub const VENDOR_PAYLOADS: [(&str, &str); 19] = iras_intake::fixtures::VENDOR_PAYLOADS;

/// A vendor payload with some of its values (anywhere in the tree) replaced by generated JSON,
/// and sometimes a field removed.
pub fn vendor_shaped() -> impl Strategy<Value = Value> {
    (
        0..VENDOR_PAYLOADS.len(),
        prop::collection::vec((any::<usize>(), json_value(), any::<bool>()), 0..5),
    )
        .prop_map(|(i, mutations)| {
            let mut doc: Value =
                serde_json::from_str(VENDOR_PAYLOADS[i].1).expect("fixture is JSON");
            for (at, value, remove) in mutations {
                let paths = pointers(&doc);
                let path = &paths[at % paths.len()];
                mutate(&mut doc, path, value, remove);
            }
            doc
        })
}

/// Every JSON pointer in the document (the root included).
fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    walk(
                        x,
                        format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                        out,
                    )
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{at}/{i}"), out)
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

fn mutate(doc: &mut Value, path: &str, value: Value, remove: bool) {
    if remove && !path.is_empty() {
        let (parent, last) = path
            .rsplit_once('/')
            .expect("a non-root pointer has a parent");
        let last = last.replace("~1", "/").replace("~0", "~");
        match doc.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.remove(&last);
            }
            Some(Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>() {
                    if i < a.len() {
                        a.remove(i);
                    }
                }
            }
            _ => {}
        }
    } else if let Some(slot) = doc.pointer_mut(path) {
        *slot = value;
    }
}

/// Every parser on the body: detection, then each source's parser (a body sent to the wrong
/// route must be refused, not crash), each with a clear error or alerts.
pub fn alert_parsers(body: &Value) {
    let config = iras_intake::IntakeConfig::default();
    let now = chrono::Utc::now();
    let _ = iras_intake::detect(body);
    for source in iras_intake::Source::ALL {
        let _ = iras_intake::parse(source, body.clone(), now, &config);
    }
}

/// The webhook routes as `iras serve` and the `api` function serve them, over memory: one
/// router that checks signatures (`WEBHOOK_SECRET`, a source's own secret), one that accepts
/// alerts unsigned so the parsers behind the routes are reached.
pub struct Webhooks {
    runtime: tokio::runtime::Runtime,
    signed: axum::Router,
    open: axum::Router,
}

/// The routes a body can be posted to.
pub const WEBHOOK_ROUTES: [&str; 8] = [
    "/webhook/alert",
    "/webhook/alertmanager",
    "/webhook/grafana",
    "/webhook/datadog",
    "/webhook/pagerduty",
    "/webhook/opsgenie",
    "/webhook/sentry",
    "/webhook/sns",
];

struct NoPipeline;

/// SNS as far as the fuzz run goes: every certificate fetched is garbage, so no generated
/// message can be authentic and none may crash the check. (Without a transport the route
/// answers 503 by design, which would hide the verifier.)
struct GarbageCertificates;

#[async_trait::async_trait]
impl iras_intake::sns::SnsTransport for GarbageCertificates {
    async fn fetch_certificate(&self, _: &url::Url) -> Result<Vec<u8>, String> {
        Ok(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".to_vec())
    }
    async fn confirm_subscription(&self, _: &url::Url) -> Result<(), String> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl iras_core::ports::PipelineStarter for NoPipeline {
    async fn start(&self, _: &iras_core::IncidentId) -> Result<(), iras_core::ports::StartError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl iras_core::ports::TaskCallbacks for NoPipeline {
    async fn send_task_success(
        &self,
        _: &str,
        _: Value,
    ) -> Result<(), iras_core::ports::CallbackError> {
        Ok(())
    }
    async fn send_task_failure(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<(), iras_core::ports::CallbackError> {
        Ok(())
    }
}

impl Webhooks {
    pub fn new() -> Webhooks {
        let app = |mut http: iras_http::HttpConfig| {
            http.sns_transport = Some(std::sync::Arc::new(GarbageCertificates));
            let store = std::sync::Arc::new(iras_core::memory::MemoryStore::default());
            std::sync::Arc::new(iras_http::App {
                deps: std::sync::Arc::new(iras_core::stages::Deps::builder(store).build()),
                starter: std::sync::Arc::new(NoPipeline),
                callbacks: std::sync::Arc::new(NoPipeline),
                http,
                runtime_health: std::sync::Arc::new(|| Ok(())),
            })
        };
        let signed = iras_http::HttpConfig {
            webhook_secret: Some("fuzz-secret".into()),
            source_secrets: [(iras_intake::Source::Datadog, "dd-secret".to_string())].into(),
            ..iras_http::HttpConfig::default()
        };
        Webhooks {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            signed: iras_http::router_with_slack(app(signed), None),
            open: iras_http::router_with_slack(app(iras_http::HttpConfig::default()), None),
        }
    }

    /// Posts the body with the given headers to both routers; returns their statuses.
    pub fn post(&self, route: &str, body: &[u8], headers: &[(String, String)]) -> [u16; 2] {
        use tower::ServiceExt;
        let request = || {
            let mut r = axum::http::Request::post(route);
            for (k, v) in headers {
                r = r.header(k.as_str(), v.as_str());
            }
            r.body(axum::body::Body::from(body.to_vec()))
        };
        let send = |router: &axum::Router| -> u16 {
            // Header names or values a client could not even send are not requests.
            let Ok(req) = request() else { return 400 };
            self.runtime
                .block_on(router.clone().oneshot(req))
                .map(|r| r.status().as_u16())
                .unwrap_or(500)
        };
        [send(&self.signed), send(&self.open)]
    }
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks::new()
    }
}

/// Headers a sender might set, signature and timestamp ones included, with generated values.
pub fn webhook_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("content-type".to_string()),
        Just("authorization".to_string()),
        Just("x-iras-signature".to_string()),
        Just("x-iras-timestamp".to_string()),
        Just("dd-signature".to_string()),
        Just("x-amz-sns-message-type".to_string()),
        Just("sentry-hook-signature".to_string()),
        "[a-z-]{1,12}",
    ];
    let value = prop_oneof![
        Just("application/json".to_string()),
        Just("Bearer fuzz-secret".to_string()),
        Just("sha256=00".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        ".{0,40}",
    ];
    prop::collection::vec((name, value), 0..5)
}

//! Fake model providers on 127.0.0.1 for tests: an Anthropic Messages endpoint and a Bedrock
//! Converse endpoint that reply from a script and record every request they get.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Percent-decoded.
    pub path: String,
    /// Lowercase names.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    pub raw: String,
    pub at: Instant,
}

impl Recorded {
    /// The answer tool this request offers (`submit_triage`, …), on either API.
    pub fn tool(&self) -> String {
        self.body["tools"][0]["name"]
            .as_str()
            .or_else(|| self.body["toolConfig"]["tools"][0]["toolSpec"]["name"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// The system prompt, on either API.
    pub fn system(&self) -> String {
        self.body["system"]
            .as_array()
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// Every text block of the conversation, on either API.
    pub fn texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in self.body["messages"].as_array().into_iter().flatten() {
            for b in m["content"].as_array().into_iter().flatten() {
                if let Some(t) = b["text"].as_str() {
                    out.push(t.to_string());
                }
            }
        }
        out
    }

    /// The first user message's text: the question.
    pub fn question(&self) -> String {
        self.texts().into_iter().next().unwrap_or_default()
    }

    /// A repair: the conversation goes on after the model's first answer.
    pub fn is_repair(&self) -> bool {
        self.body["messages"].as_array().map_or(0, Vec::len) > 1
    }

    /// The tool_result of a repair (Anthropic `tool_result`, Bedrock `toolResult`).
    pub fn tool_result(&self) -> Option<Value> {
        for m in self.body["messages"].as_array().into_iter().flatten() {
            for b in m["content"].as_array().into_iter().flatten() {
                if b["type"] == "tool_result" {
                    return Some(b.clone());
                }
                if b.get("toolResult").is_some() {
                    return Some(b["toolResult"].clone());
                }
            }
        }
        None
    }
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, v: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn raw(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn after(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// A Messages API response whose only content is a call to `tool`.
pub fn anthropic_tool_use(tool: &str, input: Value) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "msg_01FakeIRAS",
            "type": "message",
            "role": "assistant",
            "model": "claude-fake",
            "content": [{"type": "tool_use", "id": format!("toolu_{tool}"), "name": tool, "input": input}],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 1200, "output_tokens": 180, "cache_read_input_tokens": 900, "cache_creation_input_tokens": 0},
        }),
    )
}

/// A Messages API error (`overloaded_error` with 529, `rate_limit_error` with 429, …).
pub fn anthropic_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

/// A Converse response whose only content is a call to `tool`.
pub fn bedrock_tool_use(tool: &str, input: Value) -> Reply {
    Reply::json(
        200,
        json!({
            "output": {"message": {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": format!("tooluse_{tool}"), "name": tool, "input": input}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 1100, "outputTokens": 170, "totalTokens": 1270, "cacheReadInputTokens": 800, "cacheWriteInputTokens": 0},
            "metrics": {"latencyMs": 850},
        }),
    )
}

/// A Converse error as the service sends it: the type in `x-amzn-errortype`.
pub fn bedrock_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"message": message})).header("x-amzn-errortype", code)
}

type Responder = dyn Fn(&Recorded, &[Recorded]) -> Reply + Send + Sync;

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    responder: Box<Responder>,
}

/// A fake provider. Stops when dropped.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl FakeProvider {
    /// `responder(request, earlier_requests)` decides each reply.
    pub async fn start(
        responder: impl Fn(&Recorded, &[Recorded]) -> Reply + Send + Sync + 'static,
    ) -> FakeProvider {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            responder: Box::new(responder),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        FakeProvider {
            addr,
            shared,
            stop: Some(tx),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).to_string();
    let rec = Recorded {
        method: method.to_string(),
        path: percent_decode(uri.path()),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
        at: Instant::now(),
    };
    let reply = {
        let mut requests = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
        let reply = (shared.responder)(&rec, &requests);
        requests.push(rec);
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reply.body,
    )
        .into_response();
    for (k, v) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// An address nothing listens on: a provider that is down (connection refused).
pub async fn refused_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = l.local_addr().expect("local addr");
    drop(l);
    format!("http://{addr}")
}

/// What a careful model answers for the demo incident (payment-service's bad deploy v2.3.1),
/// per tool. Tests start from these and break one thing at a time.
pub fn demo_answer(tool: &str) -> Value {
    match tool {
        "submit_triage" => json!({
            "severity": "P1",
            "affected_services": ["payment-service"],
            "blast_radius": "Checkout payments in production (namespace shop).",
            "estimated_user_impact": "About 45% of payment attempts fail with 5xx.",
            "confidence": 0.85,
            "reasoning": "Critical alert, 45.2% 5xx ratio on payment-service, a user-facing checkout dependency."
        }),
        "submit_root_cause" => json!({
            "primary_cause": "payment-service v2.3.1 (billing-country normalisation) throws NullPointerException on addresses without a country, failing ~45% of payments.",
            "root_cause_service": "payment-service",
            "fault": "bad_deploy",
            "confidence": 0.9,
            "evidence": [
                "error_rate jumped from ~0.4% to 45% right after the v2.3.1 deploy",
                "new ERROR template NullPointerException in TaxRegionResolver since the onset"
            ],
            "contributing_factors": ["checkout-service retries amplify the error count"],
            "candidates": [
                {"service": "payment-service", "fault": "bad_deploy", "score": 0.9, "evidence": ["deployed v2.3.1 shortly before the onset"]},
                {"service": "checkout-service", "fault": "dependency_outage", "score": 0.2, "evidence": ["errors mirror payment-service"]}
            ],
            "alternatives": ["stripe-api degradation (its latency is normal)"],
            "suspect_deployment": {"service": "payment-service", "version": "v2.3.1"}
        }),
        "submit_remediation_plan" => json!({
            "summary": "Roll payment-service back from v2.3.1 and watch the rollout settle.",
            "steps": [
                {
                    "description": "Roll payment-service back to the previous revision",
                    "action": {"type": "runner", "operation": "kubernetes.rollout_undo",
                        "target": "shop/deployment/payment-service"},
                    "risk_level": "medium",
                    "estimated_duration_seconds": 120
                },
                {
                    "description": "Wait for the rollout to finish",
                    "action": {"type": "runner", "operation": "kubernetes.rollout_status",
                        "target": "shop/deployment/payment-service"},
                    "risk_level": "low",
                    "estimated_duration_seconds": 120
                }
            ]
        }),
        "submit_postmortem" => json!({
            "summary": "A payment-service release broke payments for addresses without a country; IRAS rolled it back after approval.",
            "root_cause": "v2.3.1 resolved the tax region from the billing country without handling a missing country.",
            "resolution": "payment-service was rolled back to the previous revision.",
            "action_items": [
                {"description": "Handle addresses without a country in TaxRegionResolver, with tests", "owner": "payments", "priority": "high"},
                {"description": "Canary payment-service releases with an error-rate gate", "owner": "payments", "priority": "medium"}
            ],
            "lessons": ["A rollback was the fastest fix; keep it one command away."]
        }),
        other => json!({"error": format!("no demo answer for {other}")}),
    }
}

/// The demo incident's alert, its rule-based triage and the evidence an investigator would
/// have gathered on the first attempt.
pub fn demo_evidence() -> (
    iras_core::domain::Alert,
    iras_core::domain::TriageResult,
    iras_core::domain::ContextBundle,
) {
    use iras_core::domain::*;
    let s = iras_scenarios::Scenario::parse(iras_scenarios::DEMO_SCENARIO, "demo")
        .expect("demo scenario parses");
    let at = s.alert.timestamp;
    let mut anomalies: Vec<MetricAnomaly> = s
        .metrics
        .iter()
        .filter_map(|m| iras_core::analyst::metrics::anomaly(m, at))
        .collect();
    anomalies.sort_by(|a, b| b.score.total_cmp(&a.score));
    let ctx = ContextBundle {
        attempt: 1,
        window: Some(EvidenceWindow {
            start: at - chrono::Duration::minutes(30),
            end: at + chrono::Duration::minutes(15),
            deployments_since: at - chrono::Duration::hours(24),
        }),
        services: s.services(),
        topology: s.topology.clone(),
        logs: s.logs.clone(),
        metrics: s.metrics.clone(),
        anomalies,
        deployments: s.deployments.clone(),
        failed_sources: vec![],
        sources: vec!["scenario".into()],
        truncated: vec![],
    };
    let triage = iras_core::analyst::triage(&s.alert);
    (s.alert, triage, ctx)
}

//! Helpers shared by the runtime_* integration tests.
#![allow(dead_code)]

use serde_json::Value;
use sfn_local::asl::Definition;
use sfn_local::exec_store::HistoryEventType;
use sfn_local::runtime::{
    FunctionError, FunctionRegistry, LambdaFunction, Runtime, RuntimeOptions,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub fn arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}

pub fn definition(v: Value) -> Definition {
    Definition::load(&v.to_string(), &HashMap::new()).unwrap_or_else(|e| panic!("{e}"))
}

/// Retry waits at 1% of what the definition asks, so backoff runs fast but stays measurable.
pub fn fast() -> RuntimeOptions {
    RuntimeOptions {
        retry_interval_scale: 0.01,
        ..RuntimeOptions::default()
    }
}

#[derive(Clone, Default)]
pub struct Calls(pub Arc<AtomicUsize>);

impl Calls {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

struct FnFunction<F>(F, Calls);

#[async_trait::async_trait]
impl<F> LambdaFunction for FnFunction<F>
where
    F: Fn(usize, Value) -> Result<Value, FunctionError> + Send + Sync,
{
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError> {
        let n = self.1.bump();
        (self.0)(n, payload)
    }
}

/// A function from a closure that gets the 1-based call number and the payload.
pub fn func<F>(calls: &Calls, f: F) -> Arc<dyn LambdaFunction>
where
    F: Fn(usize, Value) -> Result<Value, FunctionError> + Send + Sync + 'static,
{
    Arc::new(FnFunction(f, calls.clone()))
}

/// A callback function: forwards `payload.token` to the test and returns.
pub fn token_sink(calls: &Calls) -> (Arc<dyn LambdaFunction>, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let f = func(calls, move |_, p| {
        let token = p["token"]
            .as_str()
            .expect("the payload carries the token")
            .to_string();
        tx.send(token).ok();
        Ok(serde_json::json!({"accepted": true}))
    });
    (f, rx)
}

struct Hang(mpsc::UnboundedSender<String>, Calls);

#[async_trait::async_trait]
impl LambdaFunction for Hang {
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError> {
        self.1.bump();
        self.0
            .send(payload["token"].as_str().unwrap_or_default().to_string())
            .ok();
        std::future::pending::<()>().await;
        unreachable!()
    }
}

/// A callback function that forwards the token and then never returns (a crash mid-call).
pub fn hanging_token_sink(
    calls: &Calls,
) -> (Arc<dyn LambdaFunction>, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(Hang(tx, calls.clone())), rx)
}

pub fn registry(entries: Vec<(&str, Arc<dyn LambdaFunction>)>) -> FunctionRegistry {
    entries
        .into_iter()
        .map(|(name, f)| (arn(name), f))
        .collect()
}

pub async fn recv_token(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a task token within 5 s")
        .expect("the function is alive")
}

/// Polls the history until an event of `kind` appears.
pub async fn wait_for_event(rt: &Runtime, name: &str, kind: HistoryEventType) {
    for _ in 0..500 {
        if rt
            .history(name)
            .await
            .unwrap()
            .iter()
            .any(|e| e.event_type == kind)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {kind:?} event for {name} within 5 s");
}

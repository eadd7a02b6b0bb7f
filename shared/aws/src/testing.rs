//! Test harness (feature `testing`): a moto server of the test's own on 127.0.0.1, stopped when
//! the test ends (pass or panic), and a local fake of an AWS JSON-protocol API. Here rather than
//! in one crate's `tests/` so that every crate testing against moto links the same harness.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::SdkConfig;

pub struct Moto {
    child: Child,
    pub addr: SocketAddr,
    pub config: SdkConfig,
}

/// `.venv-test` at the workspace root (the first ancestor of this crate holding `Cargo.lock`).
fn moto_server_path() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .ancestors()
        .find(|d| d.join("Cargo.lock").exists())
        .unwrap_or(&manifest)
        .to_path_buf();
    root.join(".venv-test/bin/moto_server")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

/// One HTTP/1.0 exchange, enough for moto's control API without an HTTP client dependency.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

impl Moto {
    /// `None` (with a note on stderr) when moto is not installed and not required; a failed
    /// test when `IRAS_REQUIRE_AWS=1`, so the project's test command cannot skip it silently.
    pub async fn start() -> Option<Moto> {
        let server = moto_server_path();
        if !server.exists() {
            let required = std::env::var("IRAS_REQUIRE_AWS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "IRAS_REQUIRE_AWS=1 but {} is missing: run scripts/moto.sh",
                server.display()
            );
            eprintln!(
                "not run: {} is missing (run scripts/moto.sh to test against moto)",
                server.display()
            );
            return None;
        }
        // The port may be taken between choosing and binding it: choose again.
        for _ in 0..3 {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let mut child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn moto_server");
            let deadline = Instant::now() + Duration::from_secs(30);
            let ready = loop {
                if matches!(http(addr, "GET", "/moto-api/", ""), Ok((200, _))) {
                    break true;
                }
                if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            if !ready {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let config = crate::emulator_config(&format!("http://{addr}")).await;
            return Some(Moto {
                child,
                addr,
                config,
            });
        }
        panic!("moto_server did not become ready on 127.0.0.1");
    }

    /// Lets Step Functions executions run (moto leaves them RUNNING by default), with Lambda
    /// tasks answered without Docker.
    pub fn run_state_machines(&self) {
        let (status, body) = http(
            self.addr,
            "POST",
            "/moto-api/config",
            r#"{"stepfunctions":{"execute_state_machine":true},"lambda":{"use_docker":false}}"#,
        )
        .expect("configure moto");
        assert!((200..300).contains(&status), "moto config: {status} {body}");
    }

    // Only the clients every user of this harness links; others are built from `config`.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }
    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.config)
    }
    pub fn eventbridge(&self) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::new(&self.config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local fake of one AWS JSON-protocol API (the `x-amz-target` header names the operation)
/// for what moto does not answer: `answer(operation, request)` gives the status and the body.
/// Returns the endpoint URL; the server stops with the test's runtime.
pub async fn fake_json_api<F>(answer: F) -> String
where
    F: Fn(&str, serde_json::Value) -> (u16, serde_json::Value) + Send + Sync + 'static,
{
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::Arc;
    let answer = Arc::new(answer);
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let answer = answer.clone();
            async move {
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                // "AmazonSSM.GetAutomationExecution" → "GetAutomationExecution".
                let operation = target.rsplit('.').next().unwrap_or(target).to_string();
                let request = serde_json::from_str(&body).unwrap_or_default();
                let (status, reply) = answer(&operation, request);
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/x-amz-json-1.1")],
                    reply.to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

//! `iras serve` as the tests drive it: the real binary on a free port of 127.0.0.1.
// Each test file uses its own share of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
    pub stderr: PathBuf,
}

impl Server {
    /// Starts `iras serve` on a free port of 127.0.0.1 with `data` as its store.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// [`Server::start`] with these environment variables set.
    pub fn start_with(data: &Path, env: &[(&str, &str)]) -> Server {
        let stderr = data.with_extension(format!("stderr-{}", std::process::id()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_iras"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .env_remove("APPROVAL_API_KEY")
            .env_remove("WEBHOOK_SECRET")
            .env_remove("IRAS_PUBLIC_URL")
            .env_remove("WEBHOOK_BODY_LIMIT_BYTES")
            .env_remove("AUDIT_SIGNING_KEY")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("iras serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Server {
            child,
            url,
            data: data.to_path_buf(),
            stderr,
        }
    }

    pub fn api_key(&self) -> String {
        std::fs::read_to_string(self.data.join("api-key"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Every approval link the server printed so far.
    pub fn approval_links(&self) -> Vec<String> {
        std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .split_whitespace()
            .filter(|w| w.contains("/approvals/apr-"))
            .map(str::to_string)
            .collect()
    }

    /// A client that presents the server's API key, as an operator's would: reads need it.
    pub fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", self.api_key()).parse().unwrap(),
        );
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .default_headers(headers)
            .build()
            .unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn payment_alert(title: &str) -> Value {
    json!({
        "title": title,
        "service": "payment-service",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "labels": {"namespace": "shop", "team": "payments"},
        "value": 0.45
    })
}

pub async fn incident(c: &reqwest::Client, url: &str, id: &str) -> Value {
    c.get(format!("{url}/incidents/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn wait_status(c: &reqwest::Client, url: &str, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = incident(c, url, id).await;
        if v["status"] == status {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "incident {id} stuck in {} waiting for {status}",
            v["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn post_alert(c: &reqwest::Client, url: &str, alert: &Value) -> String {
    let r = c
        .post(format!("{url}/webhook/alert"))
        .json(alert)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "processing");
    v["incident_id"].as_str().unwrap().to_string()
}

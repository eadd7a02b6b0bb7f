//! Each function's cold start: the time from `exec` of its `bootstrap` to its first request
//! for work (`GET /2018-06-01/runtime/invocation/next`) to a stand-in for the Lambda Runtime
//! API on 127.0.0.1, and its peak RSS (`VmHWM`) at that moment: the median and p90 start-up
//! of N runs, the median and largest peak RSS. A function missing from DIR (verify, before it
//! existed) is listed as missing.
//!
//! ```sh
//! cargo lambda build --release --x86-64 ...    # target/lambda/<function>/bootstrap
//! cargo bench -p iras-lambda --bench cold_start --profile dev -- target/lambda [runs, default 20]
//! ```
//!
//! The stand-in holds that first request, so the function is measured idle and does no work.
//! Each function gets what a deployed one has that its cold start reads, and nothing that
//! makes a network call: the Lambda runtime's variables, `TABLE_NAME`, `EVENT_BUS_NAME`,
//! `STATE_MACHINE_ARN` for the functions that start pipelines, fake credentials,
//! `AWS_REGION`, `AWS_EC2_METADATA_DISABLED=true` and no `*_PARAM` (so no SSM read).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use iras_lambda::{Function, Port};
use tokio::sync::mpsc;

/// A function that has not asked for work by then is reported as not starting.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RUNS: usize = 20;
const MB: f64 = 1_000_000.0;

/// What the stand-in saw.
enum Seen {
    Next(Instant),
    InitError(String),
}

/// A Runtime API that notes the first request for work and holds it, and takes init errors.
async fn runtime_api() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Seen>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let next = {
        let tx = tx.clone();
        move || async move {
            let _ = tx.send(Seen::Next(Instant::now()));
            std::future::pending::<()>().await
        }
    };
    let init_error = move |body: String| async move {
        let _ = tx.send(Seen::InitError(body));
        axum::http::StatusCode::ACCEPTED
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/init/error", post(init_error));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port on 127.0.0.1");
    let addr = listener.local_addr().expect("its address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, rx, server)
}

fn environment(function: Function, api: SocketAddr) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", format!("iras-{function}")),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("TABLE_NAME", "iras-incidents".into()),
        ("EVENT_BUS_NAME", "iras-bus".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ];
    if function.calls(Port::Starter) {
        let arn = "arn:aws:states:us-east-1:123456789012:stateMachine:iras-pipeline";
        env.push(("STATE_MACHINE_ARN", arn.into()));
    }
    env
}

/// `VmHWM` of a live process, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

struct Sample {
    start_up: Duration,
    peak_rss: u64,
}

/// One cold start of `bootstrap`.
async fn cold_start(function: Function, bootstrap: &Path) -> Result<Sample, String> {
    let (api, mut seen, server) = runtime_api().await;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bootstrap)
        .env_clear()
        .envs(environment(function, api))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", bootstrap.display()))?;
    let pid = child.id().expect("a running child has a pid");
    enum Outcome {
        Asked(Instant),
        InitError(String),
        Exited(std::io::Result<ExitStatus>),
        TimedOut,
    }
    let outcome = tokio::select! {
        s = seen.recv() => match s {
            Some(Seen::Next(at)) => Outcome::Asked(at),
            Some(Seen::InitError(body)) => Outcome::InitError(body),
            None => Outcome::InitError("the stand-in stopped".into()),
        },
        status = child.wait() => Outcome::Exited(status),
        _ = tokio::time::sleep(START_TIMEOUT) => Outcome::TimedOut,
    };
    // Read while the function waits on its request for work, before it is stopped.
    let rss = peak_rss(pid);
    let _ = child.start_kill();
    let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
    server.abort();
    let said = || {
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        text.trim()
            .chars()
            .rev()
            .take(600)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<String>()
    };
    match outcome {
        Outcome::Asked(at) => Ok(Sample {
            start_up: at - started,
            peak_rss: rss.ok_or("no VmHWM in /proc")?,
        }),
        Outcome::InitError(body) => Err(format!("init error: {body}")),
        Outcome::Exited(status) => Err(format!(
            "exited ({status:?}) before asking for work: {}",
            said()
        )),
        Outcome::TimedOut => Err(format!(
            "no request for work within {START_TIMEOUT:?}: {}",
            said()
        )),
    }
}

fn median(sorted: &[f64]) -> f64 {
    sorted[(sorted.len() - 1) / 2]
}

/// Nearest rank: the smallest value with at least 90% of the runs at or below it.
fn p90(sorted: &[f64]) -> f64 {
    let rank = (sorted.len() * 9).div_ceil(10).max(1);
    sorted[rank - 1]
}

#[tokio::main]
async fn main() {
    // `cargo bench` appends `--bench`; the rest is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!(
            "usage: cargo bench -p iras-lambda --bench cold_start --profile dev -- DIR [RUNS]"
        );
        eprintln!("  DIR holds <function>/bootstrap for each function (cargo lambda build's target/lambda)");
        std::process::exit(2);
    };
    let runs: usize = match args.get(1) {
        Some(n) => n.parse().expect("RUNS is a number"),
        None => DEFAULT_RUNS,
    };

    println!(
        "cold start to the first request for work, {runs} runs each, bootstraps in {} ({}; MB = 10^6 bytes)",
        dir.display(),
        std::env::consts::ARCH
    );
    println!(
        "{:<18} {:>8} {:>10} {:>8} {:>12} {:>8}",
        "function", "size MB", "median ms", "p90 ms", "peak RSS MB", "max RSS"
    );
    let mut failures = BTreeMap::new();
    let mut total_size = 0.0;
    for function in Function::ALL {
        let bootstrap = dir.join(function.name()).join("bootstrap");
        let Ok(meta) = std::fs::metadata(&bootstrap) else {
            println!("{:<18} {:>8}", function.name(), "missing");
            continue;
        };
        let size = meta.len() as f64 / MB;
        total_size += size;
        let mut times = vec![];
        let mut peaks = vec![];
        for _ in 0..runs {
            match cold_start(function, &bootstrap).await {
                Ok(s) => {
                    times.push(s.start_up.as_secs_f64() * 1000.0);
                    peaks.push(s.peak_rss as f64 / MB);
                }
                Err(e) => {
                    failures.insert(function.name(), e);
                    break;
                }
            }
        }
        if times.is_empty() {
            println!(
                "{:<18} {size:>8.1} {:>13}",
                function.name(),
                "did not start"
            );
            continue;
        }
        times.sort_by(f64::total_cmp);
        peaks.sort_by(f64::total_cmp);
        println!(
            "{:<18} {size:>8.1} {:>10.1} {:>8.1} {:>12.1} {:>8.1}",
            function.name(),
            median(&times),
            p90(&times),
            median(&peaks),
            peaks[peaks.len() - 1]
        );
    }
    println!("{:<18} {total_size:>8.1}", "all present");
    for (function, e) in &failures {
        eprintln!("{function}: {e}");
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

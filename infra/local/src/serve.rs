//! `iras serve`: the local runtime behind the same HTTP router the Lambda `api` function serves.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iras_core::config::ApprovalLinks;
use iras_core::ports::IncidentQuery;
use iras_core::*;
use iras_http::{App, HttpConfig};
use iras_scenarios::{Scenario, ScenarioLibrary, DEMO_SCENARIO};

use crate::local::{LocalOptions, LocalPipeline, LocalStarter, RuntimeCallbacks};
use crate::server::ServerLimits;
use iras_core::config::EnvVars;

pub struct ServeOptions {
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub scenarios: Option<PathBuf>,
}

/// Written next to the store so the operator CLI finds the server and its key.
pub const SERVER_FILE: &str = "server.json";
pub const API_KEY_FILE: &str = "api-key";
const SIGNING_KEY_FILE: &str = "signing-key";
/// Signs audit entries unless `AUDIT_SIGNING_KEY` is set; `iras audit verify` reads it too.
pub const AUDIT_KEY_FILE: &str = "audit-key";
const LOCK_FILE: &str = "serve.lock";

/// A secret from the environment, else from a file in the data dir, created on first use
/// with owner-only permissions. Keeping it on disk keeps approval links and API keys valid
/// across restarts.
fn secret(var: &str, dir: &Path, file: &str) -> Result<(String, bool), String> {
    if let Ok(v) = std::env::var(var) {
        if !v.trim().is_empty() {
            return Ok((v.trim().to_string(), false));
        }
    }
    let path = dir.join(file);
    if let Ok(v) = std::fs::read_to_string(&path) {
        if !v.trim().is_empty() {
            return Ok((v.trim().to_string(), true));
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness for {file}: {e}"))?;
    let value = hex::encode(bytes);
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    writeln!(f, "{value}").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((value, true))
}

/// How often the relay looks for decisions recorded but not delivered, and how old one must be
/// before it is touched (a live decision takes milliseconds to deliver).
const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

pub async fn run(opts: ServeOptions) -> Result<(), String> {
    std::fs::create_dir_all(&opts.data)
        .map_err(|e| format!("cannot create data dir {}: {e}", opts.data.display()))?;
    // Two servers on one store would both drive the same executions.
    let lock = File::create(opts.data.join(LOCK_FILE))
        .map_err(|e| format!("cannot create the lock file: {e}"))?;
    lock.try_lock().map_err(|_| {
        format!(
            "another `iras serve` is already using {}",
            opts.data.display()
        )
    })?;

    let (signing_key, _) = secret("APPROVAL_SIGNING_KEY", &opts.data, SIGNING_KEY_FILE)?;
    let (api_keys, key_in_file) = secret("APPROVAL_API_KEY", &opts.data, API_KEY_FILE)?;
    let api_keys: Vec<String> = api_keys
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    // WEBHOOK_SECRET(_<SOURCE>), WEBHOOK_BODY_LIMIT_BYTES, ALERT_SERVICE_LABELS.
    let from_env = HttpConfig::from_env().map_err(|e| e.to_string())?;
    // SLACK_APPROVERS: refused at start-up rather than the buttons going quietly off.
    iras_http::slack::SlackInteractivity::from_env()?;
    let timeout = iras_core::config::EnvVars(&std::env::vars().collect())
        .timeout()
        .map_err(|e| e.to_string())?;
    let sns = iras_adapters::HttpsSnsTransport::new(timeout)?;

    let library = match &opts.scenarios {
        Some(dir) => ScenarioLibrary::load_dir(dir).map_err(|e| e.to_string())?,
        None => ScenarioLibrary::new(vec![
            Scenario::parse(DEMO_SCENARIO, "demo").map_err(|e| e.to_string())?
        ]),
    };

    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let base_url = std::env::var("IRAS_PUBLIC_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("http://{local}"));

    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    let limits = ServerLimits::from_vars(EnvVars(&vars)).map_err(|e| e.to_string())?;
    let mut config = PipelineConfig::from_env().map_err(|e| e.to_string())?;
    if config.audit_key.is_none() {
        // Beside the store, the key guards against edits of iras.db alone; set
        // AUDIT_SIGNING_KEY from elsewhere to guard against whoever can write the directory.
        let (key, _) = secret(
            iras_core::config::AUDIT_SIGNING_KEY,
            &opts.data,
            AUDIT_KEY_FILE,
        )?;
        config.audit_key = iras_core::audit::AuditKey::new(key.into_bytes());
    }
    config.approval_links = Some(ApprovalLinks {
        base_url: base_url.clone(),
        signing_key: signing_key.as_bytes().to_vec(),
    });
    let mut options = LocalOptions::new(opts.data.clone());
    options.library = Some(library.clone());
    options.integrations = Some(crate::integrations_from_env().await?);
    options.analyst = Some(crate::analyst_from_env()?);
    options.config = config.clone();
    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    let executor = crate::executor_from_vars(&vars, &config).await?;
    eprintln!(
        "  executor: {} (policy: {})",
        executor.name(),
        config.policy.origin
    );
    options.executor = Some(executor);
    options.quiet = false;
    let pipeline = LocalPipeline::open(options)
        .await
        .map_err(|e| e.to_string())?;

    // Decisions recorded before a crash but never delivered go through now, before anyone
    // can click again; then a relay keeps delivering any that a pipeline hiccup leaves.
    match pipeline.reconcile_decisions(chrono::Duration::zero()).await {
        Ok(r) if r.delivered + r.pending > 0 => eprintln!(
            "  decisions recorded before the restart: {} delivered, {} still pending",
            r.delivered, r.pending
        ),
        Ok(_) => {}
        Err(e) => eprintln!("  pending decisions not reconciled yet: {e}"),
    }
    let pipeline = Arc::new(pipeline);
    {
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RECONCILE_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let min_age = chrono::Duration::from_std(RECONCILE_EVERY).unwrap_or_default();
                if let Err(e) = pipeline.reconcile_decisions(min_age).await {
                    tracing::warn!(error = %e, "pending decisions not reconciled");
                }
            }
        });
    }

    let runtime = pipeline.runtime.clone();
    let health_runtime = runtime.clone();
    let app = Arc::new(App {
        deps: pipeline.deps.clone(),
        starter: Arc::new(LocalStarter(runtime.clone())),
        callbacks: decision_callbacks(RuntimeCallbacks(runtime.clone()))?,
        http: HttpConfig {
            api_keys,
            approval_signing_key: signing_key.as_bytes().to_vec(),
            sns_transport: Some(Arc::new(sns)),
            allowed_hosts: served_hosts(&from_env.allowed_hosts, local, &base_url),
            ..from_env
        },
        runtime_health: Arc::new(move || health_runtime.health()),
    });
    let router = iras_http::router(app);

    std::fs::write(
        opts.data.join(SERVER_FILE),
        serde_json::json!({"url": base_url, "pid": std::process::id()}).to_string(),
    )
    .map_err(|e| format!("cannot write {SERVER_FILE}: {e}"))?;

    eprintln!("IRAS listening on {base_url}");
    eprintln!(
        "  store: {}   evidence: {} scenario(s){}",
        crate::data_dir::DataFiles::in_dir(&opts.data)
            .incidents
            .display(),
        library.len(),
        opts.scenarios
            .as_ref()
            .map(|d| format!(" from {}", d.display()))
            .unwrap_or_else(|| " (built-in demo)".into())
    );
    if key_in_file {
        eprintln!(
            "  API key for approvals: {}",
            opts.data.join(API_KEY_FILE).display()
        );
    }
    announce_pending(&pipeline, &config).await;
    println!("listening {base_url}");

    crate::server::serve(listener, router, limits, shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    eprintln!(
        "IRAS stopped; waiting approvals stay valid in {}",
        opts.data.display()
    );
    drop(lock);
    Ok(())
}

/// After a restart, plans still awaiting approval are announced again with their links.
async fn announce_pending(pipeline: &LocalPipeline, config: &PipelineConfig) {
    let page = pipeline
        .store
        .list_incidents(&IncidentQuery {
            status: Some(IncidentStatus::AwaitingApproval),
            limit: 200,
            ..Default::default()
        })
        .await;
    let Ok(page) = page else { return };
    for inc in page.incidents {
        if let (Some(a), Some(links)) = (&inc.approval, &config.approval_links) {
            if a.decision.is_none() {
                eprintln!(
                    "  awaiting approval: {} — decide at {}",
                    inc.incident_id,
                    links.url(&a.approval_id, a.expires_at)
                );
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// The callbacks the HTTP decisions use. `IRAS_FAULT_DELIVERY_DELAY_MS` (fault injection for
/// the crash tests, never set in production) holds every decision between its record and its
/// delivery, so a kill can be aimed at that gap.
fn decision_callbacks(
    callbacks: RuntimeCallbacks,
) -> Result<Arc<dyn iras_core::ports::TaskCallbacks>, String> {
    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    let delay = EnvVars(&vars)
        .number("IRAS_FAULT_DELIVERY_DELAY_MS", 0, (0, 60_000))
        .map_err(|e| e.to_string())?;
    if delay == 0 {
        return Ok(Arc::new(callbacks));
    }
    eprintln!("  fault injection: decisions wait {delay} ms before delivery");
    Ok(Arc::new(DelayedDelivery {
        inner: callbacks,
        delay: std::time::Duration::from_millis(delay),
    }))
}

struct DelayedDelivery {
    inner: RuntimeCallbacks,
    delay: std::time::Duration,
}

#[async_trait::async_trait]
impl iras_core::ports::TaskCallbacks for DelayedDelivery {
    async fn send_task_success(
        &self,
        token: &str,
        output: serde_json::Value,
    ) -> Result<(), iras_core::ports::CallbackError> {
        tokio::time::sleep(self.delay).await;
        self.inner.send_task_success(token, output).await
    }
    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), iras_core::ports::CallbackError> {
        self.inner.send_task_failure(token, error, cause).await
    }
}

/// The names `iras serve` answers for: `ALLOWED_HOSTS` when set, else the address it listens
/// on, `localhost` on that port, and the host of `IRAS_PUBLIC_URL`. Anything else in `Host`
/// (a DNS-rebinding page's own name) is refused.
fn served_hosts(configured: &[String], local: SocketAddr, base_url: &str) -> Vec<String> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let port = local.port();
    let mut hosts = vec![local.to_string(), format!("localhost:{port}")];
    if local.ip().is_unspecified() {
        hosts.push(format!("127.0.0.1:{port}"));
        hosts.push(format!("[::1]:{port}"));
    }
    if let Ok(u) = url::Url::parse(base_url) {
        if let Some(h) = u.host_str() {
            match u.port() {
                Some(p) => hosts.push(format!("{h}:{p}")),
                // A default port is left out of Host by clients.
                None => hosts.push(h.to_string()),
            }
        }
    }
    hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn the_listen_address_localhost_and_the_public_name_are_served() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let hosts = served_hosts(&[], local, "https://IRAS.example.com");
        assert_eq!(
            hosts,
            ["127.0.0.1:8080", "localhost:8080", "iras.example.com"]
        );
        let set = served_hosts(&["a:1".to_string()], local, "http://127.0.0.1:8080");
        assert_eq!(set, ["a:1"]);
    }
}

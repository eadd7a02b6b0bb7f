//! `iras serve`'s connections, bounded: a client that sends its headers too slowly, sits idle
//! between requests or trickles a body is cut, and past a connection limit new connections are
//! closed at once, so neither slow clients nor a flood of idle sockets can exhaust the
//! process's file descriptors and starve `/health` and the webhook.
//!
//! Built from hyper's own settings (`header_read_timeout`, which also bounds the idle time
//! between requests on a kept-alive connection) and tower-http's body timeout, not a timer of
//! ours.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use iras_core::config::{ConfigError, EnvVars};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// How much of the machine one client may hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A request's headers must arrive within this, and a kept-alive connection with no next
    /// request is closed after it.
    pub header_read: Duration,
    /// A request's body must arrive within this.
    pub body_read: Duration,
    /// A request (body read and handler) must be answered within this.
    pub request: Duration,
    /// Connections open at once; more are closed as they are accepted.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            request: Duration::from_secs(60),
            // Well under the usual 1,024 open files, with room for the stores and clients.
            max_connections: 512,
        }
    }
}

impl ServerLimits {
    /// `SERVE_HEADER_TIMEOUT_SECONDS`, `SERVE_BODY_TIMEOUT_SECONDS`,
    /// `SERVE_REQUEST_TIMEOUT_SECONDS` and `SERVE_MAX_CONNECTIONS`, over the defaults.
    pub fn from_vars(env: EnvVars<'_>) -> Result<Self, ConfigError> {
        let d = ServerLimits::default();
        let secs = |name: &str, default: Duration| {
            env.number(name, default.as_secs(), (1, 3_600))
                .map(Duration::from_secs)
        };
        Ok(ServerLimits {
            header_read: secs("SERVE_HEADER_TIMEOUT_SECONDS", d.header_read)?,
            body_read: secs("SERVE_BODY_TIMEOUT_SECONDS", d.body_read)?,
            request: secs("SERVE_REQUEST_TIMEOUT_SECONDS", d.request)?,
            max_connections: env.number(
                "SERVE_MAX_CONNECTIONS",
                d.max_connections as u64,
                (1, 100_000),
            )? as usize,
        })
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then lets the open
/// requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router
        .layer(RequestBodyTimeoutLayer::new(limits.body_read))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request,
        ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors or a reset before accept: the listener itself is fine.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = limits.max_connections, "connection limit reached; closing a new connection");
            drop(stream);
            continue;
        };
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
            drop(slot);
        });
    }
    // Open requests get a bounded time to finish; idle connections close at once.
    let _ = tokio::time::timeout(limits.request, graceful.shutdown()).await;
    Ok(())
}

//! `iras serve`'s connection limits, against raw sockets: slow headers, an idle connection, a
//! kept-alive connection left idle and a trickled body are cut; past the connection limit a new
//! connection is closed at once, and the server answers again once the idle ones are gone.

use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use iras_local::server::{serve, ServerLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMITS: ServerLimits = ServerLimits {
    header_read: Duration::from_millis(600),
    body_read: Duration::from_millis(600),
    request: Duration::from_secs(5),
    max_connections: 3,
};

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start() -> Server {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/echo", post(|body: String| async move { body }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(listener, app, LIMITS, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
    }
}

/// Reads until the server closes the connection (or `within` passes): what it sent, and when.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + within),
            s.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((String::from_utf8_lossy(&got).to_string(), started.elapsed()))
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn health(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .map(|(r, _)| r)
        .unwrap_or_default()
}

#[tokio::test]
async fn headers_sent_too_slowly_are_cut() {
    let server = start().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, after) = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("the server closes a connection whose headers never end");
    assert!(
        after >= Duration::from_millis(500),
        "not before the timeout: {after:?}"
    );
}

#[tokio::test]
async fn a_silent_connection_and_an_idle_kept_alive_one_are_closed() {
    let server = start().await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(5))
            .await
            .is_some(),
        "a connection that never sends a byte is closed"
    );

    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 256];
    let n = kept.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        read_until_closed(&mut kept, Duration::from_secs(5))
            .await
            .is_some(),
        "a kept-alive connection with no next request is closed"
    );
}

#[tokio::test]
async fn a_body_trickled_past_its_deadline_is_refused() {
    let server = start().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("the server gives up on the body");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn past_the_connection_limit_new_connections_close_at_once_and_service_resumes() {
    let server = start().await;
    assert!(health(server.addr).await.starts_with("HTTP/1.1 200"));
    let mut idle = Vec::new();
    for _ in 0..LIMITS.max_connections {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Give the server the moment it needs to accept the idle ones.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(server.addr).await.unwrap();
    let (_, after) = read_until_closed(&mut over, Duration::from_secs(5))
        .await
        .expect("a connection over the limit is closed");
    assert!(
        after < Duration::from_millis(400),
        "at once, not at the timeout: {after:?}"
    );
    // The idle ones time out, their places free up, and the server answers again.
    tokio::time::sleep(LIMITS.header_read + Duration::from_millis(400)).await;
    assert!(health(server.addr).await.starts_with("HTTP/1.1 200"));
    drop(idle);
}

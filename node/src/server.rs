//! An HTTP/1.1 listener with keep-alive, TCP_NODELAY, deadlines, a connection cap and a
//! graceful drain: shared by the client API and the peer listener.
//!
//! What it bounds, so that no client can take a node down by holding it open:
//! - headers must arrive within [`IDLE_TIMEOUT`] (hyper's header-read timeout, which
//!   also closes idle keep-alive connections); bodies are read under the handlers' own
//!   deadline (`request_read_timeout_ms`);
//! - at most [`Limits::max_connections`] connections are served normally. Past that, up
//!   to [`OVERFLOW_CONNECTIONS`] more are served one request each with a short deadline:
//!   `/v1/health` as usual (so a load balancer still sees the node), anything else a JSON
//!   503 `too_many_connections`. Past those, a connection is closed at once. Each refusal
//!   is counted through the listener's `refused` callback;
//! - a failed accept (out of file descriptors) backs off, doubling up to a second, and
//!   is logged at most every ten seconds;
//! - an HTTP/2 client gets an answer it understands: the server preface and a GOAWAY
//!   with `HTTP_1_1_REQUIRED`, instead of a dropped connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::throttle::Throttle;

/// Idle keep-alive connections are closed after this long (also the header-read timeout);
/// clients' pool idle timeouts must stay below it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections past the cap that are still answered (one request each).
pub const OVERFLOW_CONNECTIONS: usize = 64;
/// How long an overflow connection has to send its request.
const OVERFLOW_TIMEOUT: Duration = Duration::from_secs(2);
/// The HTTP/2 connection preface starts so; no HTTP/1.1 method does.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A listener's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
}

pub type Body = Full<Bytes>;

static ACCEPT_FAILED: Throttle = Throttle::new(Duration::from_secs(10));

/// Serves `handler` on `listener` until `shutdown` fires, then lets in-flight requests
/// finish for at most `grace`. `refused` hears every connection refused by a limit, with
/// the reason.
#[allow(clippy::too_many_arguments)] // the listener's whole description, used in two places
pub async fn serve<S, H, F>(
    name: &'static str,
    listener: TcpListener,
    state: Arc<S>,
    handler: H,
    shutdown: CancellationToken,
    grace: Duration,
    limits: Limits,
    refused: fn(&S, &'static str),
) where
    S: Send + Sync + 'static,
    H: Fn(Arc<S>, Request<Incoming>) -> F + Copy + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    // Every connection is a task of one of these sets, so none outlives the drain.
    let mut connections = tokio::task::JoinSet::new();
    let mut overflow = tokio::task::JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(IDLE_TIMEOUT).keep_alive(true);
    let mut brief = hyper::server::conn::http1::Builder::new();
    brief.timer(TokioTimer::new()).header_read_timeout(OVERFLOW_TIMEOUT).keep_alive(false);
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        while overflow.try_join_next().is_some() {}
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                if let Some(held) = ACCEPT_FAILED.ready() {
                    tracing::warn!(listener = name, error = %e, failures_since_last_line = held, retry_in = ?backoff, "accept failed");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        if connections.len() < limits.max_connections {
            let http = http.clone();
            let watcher = graceful.watcher();
            connections.spawn(async move {
                let Some(stream) = http1_only(stream).await else { return };
                let service = service_fn(move |req| handler(state.clone(), req));
                let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                if let Err(e) = conn.await {
                    tracing::debug!(listener = name, error = %e, "connection ended with an error");
                }
            });
        } else if overflow.len() < OVERFLOW_CONNECTIONS {
            refused(&state, "too_many_connections");
            let brief = brief.clone();
            overflow.spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        if req.uri().path() == "/v1/health" {
                            handler(state, req).await
                        } else {
                            Ok(too_many_connections(limits.max_connections))
                        }
                    }
                });
                let conn = brief.serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(OVERFLOW_TIMEOUT * 2, conn).await;
            });
        } else {
            refused(&state, "too_many_connections");
            drop(stream);
        }
    }
    drop(listener);
    overflow.shutdown().await;
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(listener = name, "drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(listener = name, "drain deadline passed; closing connections"),
    }
    connections.shutdown().await;
}

fn too_many_connections(limit: usize) -> Response<Body> {
    let body = serde_json::json!({
        "error": "too_many_connections",
        "message": format!("this listener has {limit} connections open, its limit (max_connections); retry, reuse a connection, or use another node"),
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = resp.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    headers.insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
    resp
}

/// The stream, unless it opens with the HTTP/2 preface: then it is answered with the
/// server's preface (an empty SETTINGS frame) and a GOAWAY asking for HTTP/1.1, and
/// closed.
async fn http1_only(mut stream: TcpStream) -> Option<TcpStream> {
    let mut head = [0u8; H2_PREFACE.len()];
    let peeked = tokio::time::timeout(IDLE_TIMEOUT, stream.peek(&mut head)).await.ok()?.ok()?;
    if peeked == 0 || !H2_PREFACE.starts_with(&head[..peeked.min(4)]) || peeked < 4 {
        return Some(stream);
    }
    let debug = b"quorumkv serves HTTP/1.1 only";
    let mut frames = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0]; // SETTINGS, empty, stream 0
    let len = 8 + debug.len();
    frames.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x7, 0, 0, 0, 0, 0]); // GOAWAY
    frames.extend_from_slice(&0u32.to_be_bytes()); // last stream id
    frames.extend_from_slice(&0xdu32.to_be_bytes()); // HTTP_1_1_REQUIRED
    frames.extend_from_slice(debug);
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&frames)).await;
    let _ = stream.shutdown().await;
    None
}

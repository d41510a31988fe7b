//! `quorumkv-bench baseline-server`: the least an HTTP server on hyper can do, a fixed
//! body for every request, so GET throughput can be quoted as a fraction of it.
//!
//! It uses what the node's client API uses (hyper 1 HTTP/1.1 with keep-alive, TCP_NODELAY,
//! the tokio multi-threaded runtime) and nothing else: no routing, no parsing, no storage.

use std::convert::Infallible;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::cli::BaselineArgs;
use crate::workload::value_bytes;

/// Serves until Ctrl-C; then stops accepting and drops open connections.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(args: &BaselineArgs) -> anyhow::Result<()> {
    let listener =
        TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    eprintln!(
        "baseline server on http://{} ({}-byte body; Ctrl-C stops)",
        listener.local_addr()?,
        args.body_size
    );
    let body = Bytes::from(value_bytes(args.body_size));
    let mut connections = JoinSet::new();
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    eprintln!("accept: {e}");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        connections.spawn(async move {
            let service = service_fn(move |_req: Request<Incoming>| {
                let mut resp = Response::new(Full::new(body.clone()));
                resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        // Reap finished connections so the set does not grow with every client.
        while connections.try_join_next().is_some() {}
    }
    Ok(())
}

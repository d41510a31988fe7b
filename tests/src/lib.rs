//! The cluster harness: real `quorumkv-node` processes on free loopback ports, each in
//! its own temporary data directory, with the faults a test needs (kill -9, SIGSTOP,
//! SIGCONT, restart) and a small HTTP client.
//!
//! Every wait polls a condition with a deadline; nothing sleeps a fixed time to "let
//! things settle".
//!
//! # Layout
//! - [`process`]: one node process and the signals a test sends it.
//! - [`cluster`]: several nodes seeded with each other.
//! - [`http`]: a minimal client returning status, headers and body.
//! - [`in_process`]: a cluster inside the test process over an in-memory network with
//!   fault injection, for the behaviour tests that need no real processes.

#![allow(unsafe_code)] // libc::kill to pause, resume and kill -9 node processes.

/// The cluster secret every node a test starts shares (process and in-process).
pub const TEST_SECRET: &str = "quorumkv test cluster secret";

pub mod cluster;
pub mod http;
pub mod in_process;
pub mod process;

pub use cluster::Cluster;
pub use http::{Http, Reply};
pub use process::NodeProcess;

use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match poll_until(deadline, check).await {
        Some(v) => v,
        None => panic!("timed out after {deadline:?} waiting for: {what}"),
    }
}

/// The one polling loop: `check` every 50 ms until it returns `Some`; `None` once
/// `deadline` has passed. Tests call [`eventually`]; harness code that has more to say
/// on a timeout calls this.
pub async fn poll_until<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of every sample of metric `name` (all label sets) on the node at `api_url`.
pub async fn metric(http: &Http, node: &NodeProcess, name: &str) -> f64 {
    let text = http.get(&node.url("/metrics")).await.text();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The state (`up`/`down`) node `observer` holds of member `of`.
pub async fn member_state(http: &Http, observer: &NodeProcess, of: &str) -> Option<String> {
    let status = http.get(&observer.url("/v1/status")).await.json();
    status["members"].as_array()?.iter().find(|m| m["node_id"] == of)?["state"].as_str().map(str::to_string)
}

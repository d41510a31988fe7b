//! Background workers: one small shape, one runner.
//!
//! A worker does one unit of work at a time, says what it is doing in `/v1/status`, and
//! waits for more work when there is none. The runner owns the loop: it stops on the
//! shutdown signal and backs off (up to a minute) after errors.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// What one unit of work found.
#[derive(Debug)]
pub enum WorkState {
    /// More work is ready: run again now.
    Busy,
    /// Nothing to do: wait for work.
    Idle,
}

pub trait Worker: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// A JSON summary for `/v1/status`.
    fn status(&self) -> Value;
    /// One unit of work.
    fn work(&self) -> impl std::future::Future<Output = Result<WorkState, String>> + Send;
    /// Returns when there may be work again.
    fn wait_for_work(&self) -> impl std::future::Future<Output = ()> + Send;
}

/// Runs `worker` until `shutdown` fires.
pub async fn run<W: Worker>(worker: Arc<W>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let step = tokio::select! {
            () = shutdown.cancelled() => return,
            step = worker.work() => step,
        };
        match step {
            Ok(WorkState::Busy) => backoff = Duration::from_millis(100),
            Ok(WorkState::Idle) => {
                backoff = Duration::from_millis(100);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = worker.wait_for_work() => {}
                }
            }
            Err(e) => {
                tracing::warn!(worker = worker.name(), error = %e, backoff_ms = backoff.as_millis() as u64, "worker failed; backing off");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

//! Background workers: one small shape, one runner.
//!
//! A worker does one unit of work at a time, says what it is doing in `/v1/status`, and
//! waits for more work when there is none. The runner owns the loop: it stops on the
//! shutdown signal and backs off (up to a minute) after errors. A unit of work is never
//! cancelled halfway: the signal is checked between units, and it interrupts only the
//! waits (for work, or after an error).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    fn work(&self) -> impl std::future::Future<Output = Result<WorkState, crate::error::Error>> + Send;
    /// Returns when there may be work again.
    fn wait_for_work(&self) -> impl std::future::Future<Output = ()> + Send;
}

/// Tasks that outlive the request that started them (the rest of a write's copies, a
/// read repair): tracked, and cancelled if they have not finished by the shutdown
/// deadline, so a stopped node leaves nothing running. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Background {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Background {
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Takes no more tasks, lets the running ones finish for at most `grace`, then
    /// cancels the rest.
    pub async fn drain(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!("background replication did not finish before the deadline; cancelled");
            self.cancel.cancel();
            self.tracker.wait().await;
        }
    }
}

/// Runs `worker` until `shutdown` fires.
pub async fn run<W: Worker>(worker: Arc<W>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let step = worker.work().await;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A worker whose every unit takes a while and counts its starts and ends.
    #[derive(Default)]
    struct Slow {
        started: AtomicUsize,
        finished: AtomicUsize,
    }

    impl Worker for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn status(&self) -> Value {
            Value::Null
        }
        async fn work(&self) -> Result<WorkState, crate::error::Error> {
            self.started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.finished.fetch_add(1, Ordering::SeqCst);
            Ok(WorkState::Busy)
        }
        async fn wait_for_work(&self) {}
    }

    #[tokio::test]
    async fn shutdown_never_cancels_a_unit_halfway() {
        let worker = Arc::new(Slow::default());
        let stop = CancellationToken::new();
        let runner = tokio::spawn(run(worker.clone(), stop.clone()));
        while worker.started.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // Cancelled in the middle of the second unit: that unit still finishes.
        stop.cancel();
        runner.await.expect("the runner ends");
        assert_eq!(worker.started.load(Ordering::SeqCst), worker.finished.load(Ordering::SeqCst));
    }
}

//! Group commit: concurrent writers that need their writes on disk share one fsync.
//!
//! Each caller takes a ticket after its write reached the journal. If no sync is running,
//! it becomes the leader: it syncs everything written so far and wakes every caller whose
//! ticket that sync covered. Otherwise it waits, and the next leader's sync covers it.
//! Throughput therefore grows with concurrency instead of being capped at one fsync per
//! write.

use std::sync::{Condvar, Mutex, PoisonError};

#[derive(Debug, Default)]
struct State {
    issued: u64,
    synced: u64,
    syncing: bool,
}

#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
}

impl GroupCommit {
    /// Returns once a sync that started after this call has completed.
    ///
    /// `sync` is called by at most one thread at a time.
    pub(crate) fn wait<E>(&self, sync: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.issued += 1;
        let ticket = st.issued;
        loop {
            if st.synced >= ticket {
                return Ok(());
            }
            if st.syncing {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.syncing = true;
            let target = st.issued;
            drop(st);
            let result = sync();
            st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.syncing = false;
            if result.is_ok() {
                st.synced = st.synced.max(target);
            }
            self.done.notify_all();
            result?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn concurrent_callers_share_syncs() {
        let gc = Arc::new(GroupCommit::default());
        let syncs = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let gc = gc.clone();
                let syncs = syncs.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        gc.wait(|| {
                            syncs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(1));
                            Ok::<(), ()>(())
                        })
                        .expect("sync ok");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        // 800 waits; with sharing there must be far fewer syncs.
        assert!(syncs.load(Ordering::SeqCst) < 800, "{}", syncs.load(Ordering::SeqCst));
    }

    #[test]
    fn a_failed_sync_is_reported_and_the_next_caller_retries() {
        let gc = GroupCommit::default();
        assert_eq!(gc.wait(|| Err("disk")), Err("disk"));
        assert_eq!(gc.wait(|| Ok::<(), &str>(())), Ok(()));
    }
}

//! fjall's worker threads get the niceness asked for, and nothing else does. Alone in its
//! own test binary, so that no other test's store adds worker threads meanwhile.

#![cfg(target_os = "linux")]
#![allow(unsafe_code)] // getpriority of another thread.

const WORKER_THREAD_NAME: &str = "fjall:worker";

fn niceness_of_workers() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == WORKER_THREAD_NAME)
        })
        .map(|t| {
            let tid: libc::id_t = t.file_name().to_str().expect("utf-8").parse().expect("tid");
            // SAFETY: plain integer arguments.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }
        })
        .collect()
}

#[test]
fn a_store_lowers_its_fjall_workers_priority() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = quorumkv_storage::StoreOptions { worker_nice: Some(12), ..Default::default() };
    let _store = quorumkv_storage::Store::open_with(dir.path(), &options).expect("open");
    let found = niceness_of_workers();
    assert!(!found.is_empty() && found.iter().all(|&n| n == 12), "{found:?}");
    let main: libc::id_t = 0; // the calling thread
    // SAFETY: plain integer arguments.
    assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, main) }, 0, "the caller keeps its priority");
}

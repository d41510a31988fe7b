//! Keeping fjall's background work (memtable flushes, compactions) out of the way of
//! requests.
//!
//! Two things made writes stall for hundreds of milliseconds at every memtable flush
//! (`docs/benchmarks.md`, "Write tails"):
//!
//! - **CPU.** A flush and the compaction it triggers take a core for a second or more. At
//!   the normal priority they compete with the threads that answer requests, which then
//!   queue. fjall's worker threads are therefore given a lower CPU priority
//!   ([`open_at_niceness`]): they still use every idle cycle, and requests go first.
//! - **Every replica at once.** Replicas of the same data fill their memtables at the
//!   same rate, so with equal memtable sizes they flush and compact at the same moment,
//!   and a quorum cannot route around the slow ones. Each store gets its own memtable size,
//!   drawn once when its data keyspace is created ([`memtable_bytes`]), so replicas
//!   drift apart.

use std::hash::{BuildHasher, Hasher};

/// The largest memtable a store draws: fjall's default.
pub const MEMTABLE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The smallest memtable a store draws.
pub const MEMTABLE_MIN_BYTES: u64 = 40 * 1024 * 1024;

/// A memtable size between [`MEMTABLE_MIN_BYTES`] and [`MEMTABLE_MAX_BYTES`], different
/// for each call (hashed from a random seed the standard library draws per process and a
/// counter).
pub fn memtable_bytes() -> u64 {
    static DRAWS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(DRAWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    MEMTABLE_MIN_BYTES + h.finish() % (MEMTABLE_MAX_BYTES - MEMTABLE_MIN_BYTES + 1)
}

/// Runs `open` on a thread of its own whose CPU niceness is `nice` (0 to 19; higher
/// yields more), and returns what it returned. Threads inherit their creator's niceness,
/// so the worker threads fjall starts while opening a database run at `nice`, and no
/// other thread does. If the niceness cannot be set, `open` runs at the normal priority.
///
/// # Panics
/// When the OS refuses a thread.
pub fn open_at_niceness<T: Send>(nice: i32, open: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("store-open".into())
            .spawn_scoped(scope, move || {
                set_own_niceness(nice);
                open()
            })
            .expect("a thread to open the store on")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Sets the calling thread's niceness (0 to 19; higher yields more); false when it
/// could not. Threads it starts inherit it.
#[allow(unsafe_code)] // setpriority has no safe wrapper in std or libc.
pub fn set_own_niceness(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers; on Linux
        // PRIO_PROCESS with a thread id applies to that thread only.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

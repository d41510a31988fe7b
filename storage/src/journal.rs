//! Fsyncing fjall's journal without holding fjall's journal lock.
//!
//! fjall's own [`fjall::Database::persist`] fsyncs under the journal's write lock, so
//! while it runs no write can land: every writer of the node waits for the disk. On a
//! disk that is busy writing a flushed memtable's tables, one such fsync took over
//! 100 ms, and every write behind it waited as long (`docs/benchmarks.md`).
//!
//! What fjall leaves us: each write reaches the operating system before the call
//! returns (a keyspace's `manual_journal_persist` is off, so fjall flushes its buffer
//! into the file after every write), and the journals are the files `N.jnl` in the
//! database's folder, the newest being the one written to. `fdatasync` through a
//! descriptor of our own makes durable every byte of the file that reached the kernel,
//! whoever wrote it, and it holds no lock of fjall's.
//!
//! Why syncing the newest journal covers every write that returned before the sync
//! started: such a write is in the newest journal, or in an older one; fjall fsyncs a
//! journal completely (under its lock) before it creates the next, and deletes one only
//! once what it holds is in fsynced tables.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The journal this store last synced, kept open between syncs.
#[derive(Debug)]
pub(crate) struct JournalSync {
    folder: PathBuf,
    open: Mutex<Option<(u64, File)>>,
}

impl JournalSync {
    /// Syncs the journals of the fjall database in `folder`.
    pub(crate) fn new(folder: &Path) -> JournalSync {
        JournalSync { folder: folder.to_path_buf(), open: Mutex::new(None) }
    }

    /// Makes every write that returned before this call durable (`fdatasync` of the newest
    /// journal). Callers serialise it themselves (group commit); it is safe, only slower,
    /// to call it concurrently.
    pub(crate) fn sync(&self) -> io::Result<()> {
        // A journal deleted between listing and opening was flushed into tables: list
        // again, and the next one is newer.
        for _ in 0..3 {
            let Some(newest) = newest_journal(&self.folder)? else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no journal (*.jnl) in {}", self.folder.display()),
                ));
            };
            let file = {
                let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
                match open.as_ref() {
                    Some((id, file)) if *id == newest => file.try_clone()?,
                    _ => match File::open(journal_path(&self.folder, newest)) {
                        Ok(file) => {
                            let copy = file.try_clone()?;
                            *open = Some((newest, file));
                            copy
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    },
                }
            };
            return file.sync_data();
        }
        Err(io::Error::other(format!(
            "the journals in {} kept changing under the sync",
            self.folder.display()
        )))
    }

    /// The number of the journal the last sync covered, if any.
    #[cfg(test)]
    pub(crate) fn last_synced(&self) -> Option<u64> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|(id, _)| *id)
    }
}

fn journal_path(folder: &Path, id: u64) -> PathBuf {
    folder.join(format!("{id}.jnl"))
}

/// The highest `N` of the files `N.jnl` in `folder`.
pub(crate) fn newest_journal(folder: &Path) -> io::Result<Option<u64>> {
    let mut newest = None;
    for entry in std::fs::read_dir(folder)? {
        let name = entry?.file_name();
        let id = name.to_str().and_then(|n| n.strip_suffix(".jnl")).and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            newest = newest.max(Some(id));
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_journal_is_the_highest_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(newest_journal(dir.path()).expect("list"), None);
        for name in ["2.jnl", "10.jnl", "9.jnl", "11.jnl.tmp", "lock", "x.jnl"] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        assert_eq!(newest_journal(dir.path()).expect("list"), Some(10));
    }

    #[test]
    fn a_sync_follows_the_journal_to_the_newest_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sync = JournalSync::new(dir.path());
        assert!(sync.sync().is_err(), "no journal is an error, not a silent success");
        std::fs::write(dir.path().join("0.jnl"), b"a").expect("write");
        sync.sync().expect("sync 0");
        assert_eq!(sync.last_synced(), Some(0));
        std::fs::write(dir.path().join("1.jnl"), b"b").expect("write");
        std::fs::remove_file(dir.path().join("0.jnl")).expect("remove");
        sync.sync().expect("sync 1");
        assert_eq!(sync.last_synced(), Some(1));
    }
}

//! Coordination between threads and processes sharing one cache, through
//! advisory locks on files in `locks/`: the collector lock (shared by
//! writers, exclusive for deleters), the index lock (opening and
//! migrating), and per-artifact locks (one builder per artifact).

use std::fs::{File, OpenOptions};
use std::path::Path;

use oci::Digest;

use super::Store;
use crate::error::{Error, Result};

const GC_LOCK: &str = "gc.lock";
const INDEX_LOCK: &str = "index.lock";

impl Store {
    /// Shared side of the collector lock: held while adding files and rows, so
    /// that a collection never mistakes an ingest in progress for garbage.
    pub fn lock_ingest(&self) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join(GC_LOCK), false)
    }

    /// Exclusive side of the collector lock: held while deleting files.
    pub fn lock_collect(&self) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join(GC_LOCK), true)
    }

    /// Serializes the building of one artifact across threads and processes,
    /// so two builders of the same layer end with one good copy. Artifacts
    /// share 256 lock files by digest prefix: the set stays bounded (a lock
    /// file cannot safely be deleted while others may wait on it), and two
    /// different artifacts rarely wait on each other.
    pub fn lock_artifact(&self, kind: &str, digest: &Digest) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join(format!("{kind}-{}.lock", &digest.hex()[..2])), true)
    }

    /// Serializes opening (creating, migrating) the index across processes:
    /// SQLite does not wait for a busy database while switching it to WAL.
    pub fn lock_index(&self) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join(INDEX_LOCK), true)
    }
}

/// An advisory lock on a file in `locks/`, released on drop. Locks are per
/// open file, so they exclude other threads of this process too.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    fn acquire(path: &Path, exclusive: bool) -> Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::cache(path))?;
        let locked = if exclusive { file.lock() } else { file.lock_shared() };
        locked.map_err(Error::cache(path))?;
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_lock_excludes_shared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let shared = store.lock_ingest().unwrap();
        let file = File::open(store.locks_dir().join(GC_LOCK)).unwrap();
        assert!(file.try_lock().is_err());
        drop(shared);
        assert!(file.try_lock().is_ok());
    }
}

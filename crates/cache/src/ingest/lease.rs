//! The ingest lease (containerd's word for it). While a lease is held the
//! collector waits (the lease holds the shared side of the collector
//! lock), so nothing an ingest publishes, or relies on finding, is swept
//! from under it. The lease records every file the ingest publishes; an
//! ingest that fails, or is dropped for any reason, takes them back unless
//! a recorded image uses them by then. One that succeeds commits with the
//! index transaction that records its images.

use std::sync::Mutex;

use rusqlite::Transaction;

use crate::error::Result;
use crate::index::{reach, Index};
use crate::store::{self, Artifact, FileLock, Store};

/// A held ingest lease over one cache.
pub struct Lease<'a> {
    store: &'a Store,
    index: &'a Index,
    lock: Option<FileLock>,
    published: Mutex<Vec<Artifact>>,
    committed: bool,
}

impl<'a> Lease<'a> {
    /// Takes a lease, waiting while a collection runs.
    pub fn take(store: &'a Store, index: &'a Index) -> Result<Lease<'a>> {
        Ok(Lease {
            store,
            index,
            lock: Some(store.lock_ingest()?),
            published: Mutex::new(Vec::new()),
            committed: false,
        })
    }

    /// The cache directory the lease covers.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// The index the lease records into.
    pub fn index(&self) -> &'a Index {
        self.index
    }

    /// Notes a file this ingest just published, to take back on failure.
    pub fn published(&self, artifact: Artifact) {
        self.published.lock().unwrap_or_else(|p| p.into_inner()).push(artifact);
    }

    /// Makes every rename durable, then runs `record` in one index
    /// transaction; once it commits, what the lease published stays.
    pub fn commit<T>(mut self, record: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        // Renames must be durable before a row points at their result.
        self.store.sync_artifact_dirs()?;
        let value = self.index.write(record)?;
        self.committed = true;
        Ok(value)
    }
}

impl Drop for Lease<'_> {
    /// Takes back what an uncommitted ingest published. The lease is
    /// released first: taking back waits for the collector lock, so that
    /// ingests which started reusing one of these files have recorded their
    /// image before the check, and the lease would block it.
    fn drop(&mut self) {
        self.lock.take();
        let published = std::mem::take(self.published.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !self.committed && !published.is_empty() {
            // Best effort: the ingest's own error is what its caller needs to see.
            let _ = take_back(self.store, self.index, &published);
        }
    }
}

/// Deletes the layer rows and files in `artifacts` that no recorded image
/// reaches, under the collector lock.
fn take_back(store: &Store, index: &Index, artifacts: &[Artifact]) -> Result<()> {
    let _lock = store.lock_collect()?;
    index.write(|tx| {
        for artifact in artifacts {
            if let Artifact::Layer(diff_id) = artifact {
                reach::drop_layer_if_unused(tx, diff_id)?;
            }
        }
        Ok(())
    })?;
    let live = index.read(reach::live_set)?;
    for artifact in artifacts {
        if !live.reaches(artifact) {
            store::remove(&store.path(artifact))?;
        }
    }
    Ok(())
}

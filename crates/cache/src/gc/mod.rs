//! The garbage collector: roots → mark → sweep rows, then files. Roots
//! are image references, sandboxes and snapshots; what no root reaches is
//! garbage ([`crate::index::reach`] finds it). The rows that name files go
//! first, in one transaction; files follow once that transaction is
//! durable, so an index row never points at a missing file (the rows that
//! name no file go beside them). A crash between the two leaves files no
//! row reaches, which the next prune sweeps along with stale temp files.
//! Every collection holds the exclusive side of the collector lock, so no
//! ingest is mid-flight while it decides what is garbage.

mod sweep;

use oci::Reference;

use crate::error::{Error, Result};
use crate::index::{reach, read, Index};
use crate::model::PruneReport;
use crate::store::Store;

/// Deletes every reference no sandbox or snapshot uses, everything that
/// became unreachable, and every file no index row reaches. Once the rows
/// that name files are gone, files and the remaining rows are deleted side
/// by side, and the index's WAL is checkpointed beside them.
pub fn prune(store: &Store, index: &Index) -> Result<PruneReport> {
    let _lock = store.lock_collect()?;
    let dropped = index.write_bulk(reach::drop_unrooted)?;
    let mut report = PruneReport {
        image_refs_removed: dropped.refs,
        manifests_removed: dropped.manifests,
        layers_removed: dropped.layers,
        ..PruneReport::default()
    };
    let live = index.read(reach::live_set)?;
    std::thread::scope(|scope| {
        let content = scope.spawn(|| {
            index.write_bulk(reach::drop_unused_content)?;
            index.checkpoint()
        });
        let swept = sweep::unreached(store, &live, &mut report);
        let content = content
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("pruning the index panicked".into())));
        swept.and(content)
    })?;
    Ok(report)
}

/// Deletes a reference (a digest reference: every reference of its
/// repository resolving to that manifest), then whatever only it kept
/// alive. Without `force`, refuses while sandboxes use the image; with it,
/// the reference goes but the sandboxes' files stay (they are roots).
pub fn remove(store: &Store, index: &Index, reference: &Reference, asked: &str, force: bool) -> Result<PruneReport> {
    let _lock = store.lock_collect()?;
    let doomed = index.write(|tx| {
        let refs = read::covered_refs(tx, reference)?;
        if refs.is_empty() {
            return Err(Error::not_cached(asked));
        }
        if !force {
            let mut sandboxes = Vec::new();
            for row in &refs {
                sandboxes.extend(read::sandboxes_using(tx, &row.manifest)?);
            }
            if !sandboxes.is_empty() {
                sandboxes.sort();
                sandboxes.dedup();
                return Err(Error::ImageInUse {
                    reference: asked.to_string(),
                    sandboxes,
                });
            }
        }
        reach::drop_refs(tx, &refs)
    })?;
    sweep::doomed(store, &doomed)
}

//! The garbage collector: roots → mark → sweep rows, then files. Roots
//! are image references, sandboxes and snapshots; what no root reaches is
//! garbage ([`crate::index::reach`] finds it). The rows that name files go
//! first, in one transaction; files follow once that transaction is
//! durable, so an index row never points at a missing file (the rows that
//! name no file go beside them). A crash between the two leaves files no
//! row reaches, which the next prune sweeps along with stale temp files.
//! Every collection holds the exclusive side of the collector lock, so no
//! ingest is mid-flight while it decides what is garbage. What a prune
//! takes is planned by [`crate::index::plan`] (filters, `keep`), with a
//! size budget's choice made by [`budget`] from the sizes [`measure`]
//! takes off the disk.

pub mod budget;
pub mod measure;
pub mod policy;
mod sweep;

use oci::Reference;

use crate::error::{Error, Result};
use crate::index::{now_ms, plan, reach, read, Index};
use crate::model::{BudgetOutcome, PruneReport};
use crate::parallel;
use crate::store::Store;
use measure::Measured;
use policy::PruneOptions;

/// Deletes what `options` select (by default every reference no sandbox or
/// snapshot uses), everything that became unreachable, and every file no
/// index row reaches; with `dry_run`, only says what that would be. Holds
/// the collector lock exclusively, the dry run too: an ingest in flight
/// publishes files before their rows, and would look like garbage.
pub fn prune(store: &Store, index: &Index, options: &PruneOptions) -> Result<PruneReport> {
    let _lock = store.lock_collect()?;
    let measured = match options.max_bytes {
        Some(_) => Some(measure_settled(store, index)?),
        None => None,
    };
    collect(store, index, options, measured.as_ref())
}

/// A budget prune that runs only if the cache, measured exactly, is above
/// `trigger` bytes (the automatic collection): None when it was not.
pub fn prune_above(store: &Store, index: &Index, trigger: u64, options: &PruneOptions) -> Result<Option<PruneReport>> {
    let _lock = store.lock_collect()?;
    let measured = measure_settled(store, index)?;
    if measured.total <= trigger {
        return Ok(None);
    }
    collect(store, index, options, Some(&measured)).map(Some)
}

/// The cache's size with the WAL checkpointed into the database first, so
/// that committed pages count once and the WAL file is empty.
fn measure_settled(store: &Store, index: &Index) -> Result<Measured> {
    index.checkpoint_truncate()?;
    measure::measure(store)
}

/// Plans with the same statements for a dry run and a real prune; the real
/// one deletes the planned rows in the same transaction, then the files
/// once that is durable, and the remaining rows and the WAL checkpoint
/// beside the files. Runs under the exclusive collector lock; `measured`
/// is the cache's size when `options` has a budget.
fn collect(store: &Store, index: &Index, options: &PruneOptions, measured: Option<&Measured>) -> Result<PruneReport> {
    let now = now_ms();
    let make = |conn: &rusqlite::Connection| -> Result<plan::Plan> {
        plan::select(conn, options, now)?;
        let chosen = match (options.max_bytes, measured) {
            (Some(budget), Some(measured)) => Some(budget::choose(conn, measured, budget)?),
            _ => None,
        };
        plan::take(conn, chosen.as_deref())?;
        plan::follow(conn)
    };
    let mut report = PruneReport {
        dry_run: options.dry_run,
        ..PruneReport::default()
    };
    let (planned, temp) = if options.dry_run {
        // A read transaction: one snapshot of the index, rolled back on drop
        // with the TEMP tables written in it. The files are listed and
        // measured beside it (system calls beside SQLite's CPU), unless a
        // budget measured them already; what the plan does not keep is what
        // the sweep would delete.
        let (planned, listed) = std::thread::scope(|scope| {
            let listing = measured.is_none().then(|| scope.spawn(|| measure::measure(store)));
            let planned = index.read(|conn| {
                let tx = conn.unchecked_transaction()?;
                make(&tx)
            });
            let listed = listing.map(|listing| parallel::join(listing, "measuring the cache"));
            (planned, listed.transpose())
        });
        let (planned, listed) = (planned?, listed?);
        let files = listed
            .as_ref()
            .or(measured)
            .ok_or_else(|| Error::Internal("no listing of the files".into()))?;
        let gone = files.unreached(&planned.live);
        let temp = measure::tree_size(&store.tmp_dir())?.unwrap_or(0);
        report.fsmeta_removed = gone.fsmeta;
        report.vmdk_removed = gone.vmdk;
        report.bytes_reclaimed = gone.bytes + temp;
        (planned, temp)
    } else {
        let planned = index.write_bulk(|tx| {
            let planned = make(tx)?;
            plan::execute(tx)?;
            plan::discard(tx)?;
            Ok(planned)
        })?;
        let temp = std::thread::scope(|scope| {
            let content = scope.spawn(|| {
                index.write_bulk(reach::drop_unused_content)?;
                index.checkpoint()
            });
            let swept = sweep::unreached(store, &planned.live, &mut report);
            let content = parallel::join(content, "pruning the index");
            content.and(swept)
        })?;
        (planned, temp)
    };
    report.image_refs_removed = planned.references.len() as u64;
    report.manifests_removed = planned.manifests;
    report.layers_removed = planned.layers;
    report.references = planned.references;
    if let (Some(budget_bytes), Some(measured)) = (options.max_bytes, measured) {
        if !options.dry_run {
            // The deletions went through the WAL: give its bytes back too.
            index.checkpoint_truncate()?;
        }
        let remaining_bytes = measured.total.saturating_sub(report.bytes_reclaimed - temp);
        report.budget = Some(BudgetOutcome {
            budget_bytes,
            remaining_bytes,
            met: remaining_bytes <= budget_bytes,
        });
    }
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

//! The garbage collector: roots → mark → sweep rows, then files. Roots
//! are image references, sandboxes and snapshots; what no root reaches is
//! garbage. The rows that name files go first, in one transaction; files
//! follow once that transaction is durable, so an index row never points
//! at a missing file (the rows that name no file go beside them,
//! [`crate::index::reach`]). A crash between the two leaves files no row
//! reaches, which the next prune sweeps along with stale temp files.
//! Every collection holds the exclusive side of the collector lock, so no
//! ingest is mid-flight while it decides what is garbage. What a prune
//! takes is decided in memory over the index's [`graph`] (the filters
//! select candidates in SQL, [`rows`]); a size budget's
//! choice is made from the sizes [`measure`] counts.

pub mod graph;
pub mod measure;
pub mod policy;
pub mod rows;
mod sweep;

use std::thread::ScopedJoinHandle;

use oci::Reference;
use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::index::{now_ms, reach, read, Index};
use crate::model::{BudgetOutcome, PruneReport};
use crate::parallel;
use crate::store::Store;
use graph::Graph;
use measure::{Listing, Measured};
use policy::PruneOptions;

/// Deletes what `options` select (by default every reference no sandbox or
/// snapshot uses), everything that became unreachable, and every file no
/// index row reaches; with `dry_run`, only says what that would be. Holds
/// the collector lock exclusively, the dry run too: an ingest in flight
/// publishes files before their rows, and would look like garbage.
pub fn prune(store: &Store, index: &Index, options: &PruneOptions) -> Result<PruneReport> {
    let _lock = store.lock_collect()?;
    collect(store, index, options, None)?.ok_or_else(|| Error::Internal("a prune without a trigger did not run".into()))
}

/// A budget prune that runs only if the cache, measured, is above
/// `trigger` bytes (the automatic collection): None when it was not.
pub fn prune_above(store: &Store, index: &Index, trigger: u64, options: &PruneOptions) -> Result<Option<PruneReport>> {
    let _lock = store.lock_collect()?;
    collect(store, index, options, Some(trigger))
}

/// One snapshot of what the collector decides over: the index's rows, the
/// references the filters select (least recently used first), and the
/// files with their sizes.
pub struct Survey {
    /// The rows.
    pub graph: Graph,
    /// Candidate references, by index into `graph.refs`, in LRU order.
    pub candidates: Vec<usize>,
    /// The cache's files.
    pub measured: Measured,
}

/// Reads the [`Survey`] in `conn`'s transaction, while `listing` (started
/// by the caller, beside the reads: system calls beside SQLite's CPU)
/// lists the artifact directories; the files it found are sized from the
/// graph's recorded sizes once both are done.
pub fn survey(conn: &Connection, store: &Store, options: &PruneOptions, listing: ScopedJoinHandle<'_, Result<Listing>>) -> Result<Survey> {
    let read = rows::graph(conn).and_then(|graph| Ok((rows::matching(conn, options)?, graph)));
    let listed = parallel::join(listing, "listing the cache");
    let (matching, graph) = read?;
    let measured = listed?.sized(store, graph.recorded())?;
    let candidates = graph.candidates(options, now_ms(), matching.as_deref());
    Ok(Survey {
        graph,
        candidates,
        measured,
    })
}

/// Decides in one snapshot, for a dry run and a real prune alike; the
/// real one deletes the planned rows in the same transaction, then the
/// files once that is durable, and the remaining rows and the WAL
/// checkpoint beside the files. A budget checkpoints the WAL before it
/// measures, so that committed pages count once, and that checkpoint
/// beside the files truncates it. Runs under the exclusive
/// collector lock; with a `trigger`, does nothing (None) unless the cache
/// is above it.
fn collect(store: &Store, index: &Index, options: &PruneOptions, trigger: Option<u64>) -> Result<Option<PruneReport>> {
    std::thread::scope(|scope| {
        let listing = scope.spawn(|| measure::list(store));
        let settled = match options.max_bytes {
            Some(_) => index.checkpoint_truncate(),
            None => Ok(()),
        };
        let decide = |conn: &Connection| -> Result<Option<(graph::Plan, Measured)>> {
            let survey = survey(conn, store, options, listing);
            settled?;
            let Survey {
                graph,
                candidates,
                measured,
            } = survey?;
            if trigger.is_some_and(|trigger| measured.total <= trigger) {
                return Ok(None);
            }
            let taken = match options.max_bytes {
                Some(budget) => graph.choose(&candidates, &measured, budget),
                None => candidates,
            };
            Ok(Some((graph.plan(&taken), measured)))
        };
        let mut report = PruneReport {
            dry_run: options.dry_run,
            ..PruneReport::default()
        };
        let decided = if options.dry_run {
            // A read transaction: one snapshot of the index, rolled back on drop.
            index.read(|conn| {
                let tx = conn.unchecked_transaction()?;
                decide(&tx)
            })?
        } else {
            index.write_bulk(|tx| {
                let decided = decide(tx)?;
                if let Some((planned, _)) = &decided {
                    rows::execute(tx, planned)?;
                }
                Ok(decided)
            })?
        };
        let Some((planned, measured)) = decided else { return Ok(None) };
        let temp = if options.dry_run {
            // What the plan does not keep is what the sweep would delete.
            let gone = measured.unreached(&planned.live);
            let temp = measure::tree_size(&store.tmp_dir())?.unwrap_or(0);
            report.fsmeta_removed = gone.fsmeta;
            report.vmdk_removed = gone.vmdk;
            report.bytes_reclaimed = gone.bytes + temp;
            temp
        } else {
            let content = scope.spawn(|| {
                index.write_bulk(reach::drop_unused_content)?;
                match options.max_bytes {
                    // The deletions went through the WAL: a budget gives
                    // its bytes back too, while the files are unlinked.
                    Some(_) => index.checkpoint_truncate(),
                    None => index.checkpoint(),
                }
            });
            let swept = sweep::unreached(store, &planned.live, &mut report);
            let content = parallel::join(content, "pruning the index");
            content.and(swept)?
        };
        report.image_refs_removed = planned.references.len() as u64;
        report.manifests_removed = planned.manifests.len() as u64;
        report.layers_removed = planned.layers.len() as u64;
        report.references = planned.references;
        if let Some(budget_bytes) = options.max_bytes {
            let remaining_bytes = measured.total.saturating_sub(report.bytes_reclaimed - temp);
            report.budget = Some(BudgetOutcome {
                budget_bytes,
                remaining_bytes,
                met: remaining_bytes <= budget_bytes,
            });
        }
        Ok(Some(report))
    })
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

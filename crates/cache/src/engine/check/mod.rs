//! `check`, as `podman system check` does it. Quick (the default): the
//! index's integrity (SQLite `quick_check`, foreign keys), every row's
//! file present with its recorded size, each root disk consistent with
//! its layers, files no row reaches, stale temp files. Full: SQLite's
//! `integrity_check`, and every artifact's content against what was
//! recorded when it was published. SQLite's checks run on a thread of
//! their own beside the files' (one is CPU, the other mostly system calls).
//! Repair: rebuilds a bad fsmeta or VMDK from its layers; drops a lost or
//! corrupt layer image and the disks built on it (its references stay
//! listed; `acquire` says to load or pull again, and that converts only
//! the dropped layer); deletes strays. A problem that touches an image a
//! sandbox or snapshot holds names the root in its message.
//!
//! Problem kinds: `index`, `missing_file`, `size_mismatch`,
//! `disk_mismatch`, `corrupt`, `orphan_file`, `temp_file`.

mod content;
mod inspect;
mod repair;

use super::Cache;
use crate::error::Result;
use crate::gc::measure;
use crate::index::{audit, Index};
use crate::ingest::Lease;
use crate::model::{CheckProblem, CheckReport};
use crate::parallel;
use crate::seal;
use crate::store::Store;
use inspect::{Finding, Fix, Scope};

impl Cache {
    /// Checks the cache (`full`: content too), repairing what it can when
    /// `repair` is set. Holds the collector lock exclusively while it
    /// looks (an ingest in flight publishes files before their rows).
    pub fn check(&self, full: bool, repair: bool) -> Result<CheckReport> {
        let (mut findings, files, bytes, rebuild) = {
            let _lock = self.store.lock_collect()?;
            let (integrity, looked) = std::thread::scope(|scope| {
                let integrity = scope.spawn(|| self.index.read(|conn| audit::integrity(conn, full)));
                let looked = self.look(full);
                let integrity = parallel::join(integrity, "checking the index");
                (integrity, looked)
            });
            let (file_findings, measured) = looked?;
            let mut findings: Vec<Finding> = integrity?.into_iter().map(index_problem).collect();
            findings.extend(file_findings);
            let files: u64 = measured.kinds.iter().map(|k| k.count).sum();
            let bytes: u64 = measured.kinds.iter().map(|k| k.bytes).sum::<u64>() + measured.index;
            let rebuild = match repair {
                true => repair::under_lock(&self.store, &self.index, &mut findings)?,
                false => Default::default(),
            };
            (findings, files, bytes, rebuild)
        };
        repair::rebuild_disks(&self.store, &self.index, &rebuild, &mut findings)?;
        let problems: Vec<CheckProblem> = findings.into_iter().map(|f| f.problem).collect();
        Ok(CheckReport {
            ok: problems.iter().all(|p| p.repaired),
            problems,
            checked_files: files,
            checked_bytes: bytes,
        })
    }

    /// The files against the rows: problems, and what was measured.
    fn look(&self, full: bool) -> Result<(Vec<Finding>, measure::Measured)> {
        // The files are statted (system calls) while the rows are read.
        let (rows, measured) = std::thread::scope(|scope| {
            let measured = scope.spawn(|| measure::measure(&self.store));
            let rows = self.index.read(audit::rows);
            let measured = parallel::join(measured, "measuring the cache");
            (rows, measured)
        });
        let (rows, measured) = (rows?, measured?);
        let live = rows.live();
        let scope = Scope {
            store: &self.store,
            index: &self.index,
            rows: &rows,
            measured: &measured,
        };
        let mut findings = inspect::files(&scope, full)?.0;
        findings.extend(inspect::strays(&self.store, &live, &measured)?);
        Ok((findings, measured))
    }
}

fn index_problem(message: String) -> Finding {
    Finding {
        problem: CheckProblem {
            kind: "index",
            reference: None,
            digest: None,
            path: None,
            message: format!("the cache index is damaged: {message}"),
            repaired: false,
        },
        fix: Fix::Nothing,
    }
}

/// Records seals for artifacts published before seals were (a cache
/// written before schema 3), so a full check has something to compare
/// against from now on. Runs when a cache is opened; nothing to do costs
/// two lookups in partial indexes.
pub fn seal_unsealed(store: &Store, index: &Index) -> Result<()> {
    let (layers, manifests) = index.read(audit::unsealed)?;
    if layers.is_empty() && manifests.is_empty() {
        return Ok(());
    }
    let lease = Lease::take(store, index)?;
    let mut layer_seals = Vec::new();
    for diff_id in layers {
        // A file lost already is found by the next check.
        if let Ok(seal) = seal::layer(&store.layer_path(&diff_id)) {
            layer_seals.push((diff_id, seal));
        }
    }
    let mut disk_seals = Vec::new();
    for manifest in manifests {
        if let Ok(seals) = seal::disk(store, &manifest, None) {
            disk_seals.push((manifest, seals));
        }
    }
    lease.commit(|tx| {
        for (diff_id, seal) in &layer_seals {
            audit::seal_layer(tx, diff_id, seal)?;
        }
        for (manifest, seals) in &disk_seals {
            audit::seal_disk(tx, manifest, &seals.fsmeta, &seals.vmdk)?;
        }
        Ok(())
    })?;
    Ok(())
}

//! Repairs, in two steps. Under the exclusive collector lock: rows first
//! (a layer's image marked dropped, root disks forgotten), durable, then
//! the files they named, and strays deleted — so no row ever names a
//! missing file. Then under an ingest lease, as `acquire` does: root disks
//! whose layers are sound are built again from them and recorded with
//! their seals. A disk that cannot be rebuilt is reported as not repaired.

use std::collections::BTreeSet;

use oci::Digest;

use super::inspect::{Finding, Fix};
use crate::disk;
use crate::error::Result;
use crate::index::audit;
use crate::index::write::{self, DiskSeals};
use crate::index::{read, Index};
use crate::ingest::{self, Lease};
use crate::seal;
use crate::store::{self, Store};

/// Carries out the first step; returns the manifests whose disks the
/// second step rebuilds. Marks what it fixed.
pub fn under_lock(store: &Store, index: &Index, findings: &mut [Finding]) -> Result<BTreeSet<Digest>> {
    let mut rebuild = BTreeSet::new();
    let mut layers = BTreeSet::new();
    let mut forgotten = BTreeSet::new();
    index.write(|tx| {
        for finding in findings.iter() {
            match &finding.fix {
                Fix::DropLayer(diff_id) => {
                    forgotten.extend(audit::drop_layer_image(tx, diff_id)?);
                    layers.insert(diff_id.clone());
                }
                Fix::RebuildDisk(manifest) => {
                    audit::forget_disk(tx, manifest)?;
                    rebuild.insert(manifest.clone());
                }
                Fix::Delete(_) | Fix::Nothing => {}
            }
        }
        Ok(())
    })?;
    for diff_id in &layers {
        store::remove(&store.layer_path(diff_id))?;
    }
    for manifest in forgotten.iter().chain(&rebuild) {
        store::remove(&store.fsmeta_path(manifest))?;
        store::remove(&store.vmdk_path(manifest))?;
    }
    // A manifest that lost a layer cannot be rebuilt until it is loaded again.
    rebuild.retain(|m| !forgotten.contains(m));
    for finding in findings.iter_mut() {
        match &finding.fix {
            Fix::DropLayer(_) => finding.problem.repaired = true,
            Fix::Delete(path) => {
                store::remove(path)?;
                finding.problem.repaired = true;
            }
            Fix::RebuildDisk(m) if forgotten.contains(m) => finding.problem.repaired = true,
            Fix::RebuildDisk(_) | Fix::Nothing => {}
        }
    }
    Ok(rebuild)
}

/// The second step: rebuilds the root disks of `manifests` from their
/// layers under a lease and records them; marks what it fixed.
pub fn rebuild_disks(store: &Store, index: &Index, manifests: &BTreeSet<Digest>, findings: &mut [Finding]) -> Result<()> {
    if manifests.is_empty() {
        return Ok(());
    }
    let lease = Lease::take(store, index)?;
    let mut rebuilt: Vec<(Digest, disk::DiskSizes, DiskSeals)> = Vec::new();
    let mut failed: Vec<(Digest, String)> = Vec::new();
    for manifest in manifests {
        let layers: Vec<Digest> = index
            .read(|conn| read::layers_of(conn, manifest))?
            .into_iter()
            .map(|l| l.diff_id)
            .collect();
        // Pruned meanwhile, or a layer went missing since the check.
        if layers.is_empty() || !ingest::layers_present(store, index, &layers)? {
            failed.push((manifest.clone(), "its layers are no longer all in the cache".into()));
            continue;
        }
        match disk::ensure(&lease, manifest, &layers).and_then(|(sizes, built)| Ok((sizes, seal::disk(store, manifest, built)?))) {
            Ok((sizes, seals)) => rebuilt.push((manifest.clone(), sizes, seals)),
            Err(e) => failed.push((manifest.clone(), e.to_string())),
        }
    }
    lease.commit(|tx| {
        for (manifest, sizes, seals) in &rebuilt {
            write::update_disk_artifacts(tx, manifest, sizes.fsmeta, sizes.vmdk, seals)?;
        }
        Ok(())
    })?;
    for finding in findings.iter_mut() {
        let Fix::RebuildDisk(manifest) = &finding.fix else { continue };
        if rebuilt.iter().any(|(m, _, _)| m == manifest) {
            finding.problem.repaired = true;
        } else if let Some((_, why)) = failed.iter().find(|(m, _)| m == manifest) {
            finding.problem.message = format!("{}; the rebuild failed: {why}", finding.problem.message);
        }
    }
    Ok(())
}

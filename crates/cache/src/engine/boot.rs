//! Roots: a sandbox acquiring an image (and getting its root disk back,
//! rebuilt if its fsmeta or VMDK went missing), releasing it, and
//! snapshots pinning one. Roots are what the collector never deletes.

use oci::Reference;

use super::{check_name, missing_layer, parse_reference, Cache};
use crate::disk;
use crate::error::{Error, Result};
use crate::index::rows::DiskRow;
use crate::index::{now_ms, read, write};
use crate::ingest::Lease;
use crate::model::BootImage;

impl Cache {
    /// Records that sandbox `sandbox` uses the image `reference` names (a GC
    /// root, and the image's `lastUsedAt`), rebuilding its fsmeta and VMDK if
    /// they went missing, and returns what the sandbox boots from.
    pub fn acquire(&self, reference: &str, sandbox: &str) -> Result<BootImage> {
        check_name("sandbox", sandbox)?;
        let parsed = parse_reference(reference)?;
        let lease = Lease::take(&self.store, &self.index)?;
        let manifest = self.find(&parsed, reference)?.manifest_digest;
        let layers = self.index.read(|conn| read::layers_of(conn, &manifest))?;
        let mut diff_ids = Vec::with_capacity(layers.len());
        for layer in layers {
            if !self.store.layer_path(&layer.diff_id).exists() {
                // The compressed blob is not kept, so a lost layer image cannot
                // be rebuilt here; loading or pulling the image again does.
                return Err(missing_layer(&self.store, &layer.diff_id, &parsed));
            }
            diff_ids.push(layer.diff_id);
        }
        let before = self.index.read(|conn| read::disk_artifacts(conn, &manifest))?;
        let (sizes, built) = disk::ensure(&lease, &manifest, &diff_ids)?;
        let recorded = DiskRow {
            fsmeta: Some(sizes.fsmeta),
            vmdk: Some(sizes.vmdk),
        };
        // Rebuilt files are the same bytes (both are deterministic), so their
        // seals change only with their sizes (a moved cache's VMDK).
        let seals = (before != Some(recorded))
            .then(|| crate::seal::disk(&self.store, &manifest, built))
            .transpose()?;
        let config = lease.commit(|tx| {
            if let Some(seals) = &seals {
                write::update_disk_artifacts(tx, &manifest, sizes.fsmeta, sizes.vmdk, seals)?;
            }
            write::acquire(tx, sandbox, &manifest, &parsed, now_ms())?;
            read::config_of(tx, &manifest)?.ok_or_else(|| Error::Internal(format!("{manifest} has no config")))
        })?;
        Ok(BootImage {
            layers: diff_ids.iter().map(|d| self.store.layer_path(d)).collect(),
            fsmeta: self.store.fsmeta_path(&manifest),
            vmdk: self.store.vmdk_path(&manifest),
            reference: parsed,
            manifest_digest: manifest,
            config,
        })
    }

    /// Drops sandbox `sandbox`'s root; false when it held none.
    pub fn release(&self, sandbox: &str) -> Result<bool> {
        check_name("sandbox", sandbox)?;
        self.index.write(|tx| write::release(tx, sandbox))
    }

    /// Makes snapshot `name` a root of the image `reference` names.
    pub fn pin_snapshot(&self, name: &str, reference: &str) -> Result<()> {
        check_name("snapshot", name)?;
        let parsed: Reference = parse_reference(reference)?;
        self.index.write(|tx| {
            let summary = read::find(tx, &parsed)?.ok_or_else(|| Error::not_cached(reference))?;
            write::pin_snapshot(tx, name, &summary.manifest_digest, &parsed, now_ms())
        })
    }

    /// Drops snapshot `name`'s root; false when it held none.
    pub fn unpin_snapshot(&self, name: &str) -> Result<bool> {
        check_name("snapshot", name)?;
        self.index.write(|tx| write::unpin_snapshot(tx, name))
    }
}

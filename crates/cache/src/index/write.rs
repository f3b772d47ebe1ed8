//! Write statements: recording an ingested image, and the GC roots
//! (sandboxes, snapshots). Each runs inside the caller's transaction.

use oci::manifest::ConfigDetails;
use oci::{Descriptor, Digest, Reference};
use rusqlite::{params, Transaction};

use crate::error::Result;

/// A manifest or config as recorded in `blobs`, with its bytes (which
/// `save` writes back exactly).
#[derive(Debug, Clone)]
pub struct BlobRecord {
    /// Its digest.
    pub digest: Digest,
    /// Media type from the descriptor that named it.
    pub media_type: Option<String>,
    /// The bytes themselves.
    pub content: Vec<u8>,
}

/// A layer of the manifest being recorded.
#[derive(Debug, Clone)]
pub struct LayerRecord {
    /// Uncompressed digest; keys the layer's EROFS image.
    pub diff_id: Digest,
    /// The compressed blob as distributed (not kept): its descriptor.
    pub blob: Descriptor,
    /// Size of the layer's EROFS image.
    pub erofs_size: u64,
    /// Size of the layer's framing in the index.
    pub framing_size: u64,
}

/// Everything an ingest adds in one transaction.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// The manifest blob.
    pub manifest: BlobRecord,
    /// The config blob.
    pub config: BlobRecord,
    /// Parsed config fields.
    pub config_details: ConfigDetails,
    /// Platform from the config.
    pub architecture: Option<String>,
    /// Platform from the config.
    pub os: Option<String>,
    /// Platform from the config.
    pub variant: Option<String>,
    /// Bottom to top.
    pub layers: Vec<LayerRecord>,
    /// Size of the fsmeta image.
    pub fsmeta_size: u64,
    /// Size of the VMDK descriptor.
    pub vmdk_size: u64,
    /// Seals of fsmeta and the VMDK ([`crate::seal::file`]).
    pub disk_seals: DiskSeals,
    /// Normalized references to point at the manifest.
    pub references: Vec<Reference>,
}

impl ImageRecord {
    /// The image's footprint in the cache: manifest, config, each layer's
    /// image and framing (shared layers in full), fsmeta and VMDK.
    pub fn size_bytes(&self) -> u64 {
        self.manifest.content.len() as u64
            + self.config.content.len() as u64
            + self.layers.iter().map(|l| l.erofs_size + l.framing_size).sum::<u64>()
            + self.fsmeta_size
            + self.vmdk_size
    }
}

fn insert_blob(tx: &Transaction<'_>, blob: &BlobRecord) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO blobs (digest, size, media_type) VALUES (?1, ?2, ?3)")?
        .execute(params![blob.digest, blob.content.len() as i64, blob.media_type])?;
    tx.prepare_cached("INSERT OR IGNORE INTO blob_content (digest, content) VALUES (?1, ?2)")?
        .execute(params![blob.digest, blob.content])?;
    Ok(())
}

/// The seals of a manifest's fsmeta and VMDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSeals {
    /// sha256 of the fsmeta image.
    pub fsmeta: Digest,
    /// sha256 of the VMDK descriptor.
    pub vmdk: Digest,
}

/// Records a converted layer: its image's size and its framing, with no
/// seal yet (the seal is taken beside what follows, and recorded by
/// [`audit::seal_layer`](crate::index::audit::seal_layer)). A layer
/// converted again (its image had gone missing, or a repair dropped it)
/// replaces both, and its old seal goes.
pub fn record_layer(tx: &Transaction<'_>, diff_id: &Digest, erofs_size: u64, framing: &[u8]) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO layers (diff_id, erofs_size) VALUES (?1, ?2) ON CONFLICT (diff_id) DO UPDATE \
         SET erofs_size = excluded.erofs_size, seal = NULL, lost = 0",
    )?
    .execute(params![diff_id, erofs_size as i64])?;
    tx.prepare_cached(
        "INSERT INTO layer_framing (diff_id, framing) VALUES (?1, ?2) ON CONFLICT (diff_id) DO UPDATE SET framing = excluded.framing",
    )?
    .execute(params![diff_id, framing])?;
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("strings and maps always serialize")
}

/// Records an image whose layers are recorded, and points its references at it. A reference that
/// already existed keeps its `created_at` (the first time it was cached).
pub fn record_image(tx: &Transaction<'_>, image: &ImageRecord, now: i64) -> Result<()> {
    insert_blob(tx, &image.manifest)?;
    insert_blob(tx, &image.config)?;
    let c = &image.config_details;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO configs (digest, architecture, os, variant, env, cmd, entrypoint, working_dir, user, labels, stop_signal) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        image.config.digest,
        image.architecture,
        image.os,
        image.variant,
        to_json(&c.env),
        c.cmd.as_ref().map(to_json),
        c.entrypoint.as_ref().map(to_json),
        c.working_dir,
        c.user,
        c.labels.as_ref().map(to_json),
        c.stop_signal,
    ])?;
    tx.prepare_cached(
        "INSERT INTO manifests (digest, config_digest, layer_count, fsmeta_size, vmdk_size, size_bytes, fsmeta_sha256, vmdk_sha256) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (digest) DO UPDATE SET fsmeta_size = excluded.fsmeta_size, vmdk_size = excluded.vmdk_size, \
         size_bytes = excluded.size_bytes, fsmeta_sha256 = excluded.fsmeta_sha256, vmdk_sha256 = excluded.vmdk_sha256",
    )?
    .execute(params![
        image.manifest.digest,
        image.config.digest,
        image.layers.len() as i64,
        image.fsmeta_size as i64,
        image.vmdk_size as i64,
        image.size_bytes() as i64,
        image.disk_seals.fsmeta,
        image.disk_seals.vmdk,
    ])?;
    for (position, layer) in image.layers.iter().enumerate() {
        // The layer's own row is in already (see `record_layer`).
        let blob = &layer.blob;
        tx.prepare_cached(
            "INSERT OR IGNORE INTO manifest_layers (manifest_digest, position, diff_id, blob_digest, blob_size, media_type) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            image.manifest.digest,
            position as i64,
            layer.diff_id,
            blob.digest,
            blob.size as i64,
            blob.media_type
        ])?;
    }
    for reference in &image.references {
        upsert_reference(tx, reference, &image.manifest.digest, now)?;
    }
    Ok(())
}

/// Points `reference` at a manifest already in the index; false when the
/// manifest is not (any more) there.
pub fn add_reference(tx: &Transaction<'_>, reference: &Reference, manifest: &Digest, now: i64) -> Result<bool> {
    let known = tx.prepare_cached("SELECT 1 FROM manifests WHERE digest = ?1")?.exists([manifest])?;
    if known {
        upsert_reference(tx, reference, manifest, now)?;
    }
    Ok(known)
}

fn upsert_reference(tx: &Transaction<'_>, reference: &Reference, manifest: &Digest, now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO image_refs (reference, repository, manifest_digest, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4) \
         ON CONFLICT (reference) DO UPDATE SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
    )?
    .execute(params![reference, reference.repository(), manifest, now])?;
    Ok(())
}

/// Records new sizes and seals after the per-manifest artifacts were rebuilt.
pub fn update_disk_artifacts(tx: &Transaction<'_>, manifest: &Digest, fsmeta_size: u64, vmdk_size: u64, seals: &DiskSeals) -> Result<()> {
    tx.prepare_cached(
        "UPDATE manifests SET size_bytes = size_bytes - coalesce(fsmeta_size, 0) - coalesce(vmdk_size, 0) + ?2 + ?3, \
         fsmeta_size = ?2, vmdk_size = ?3, fsmeta_sha256 = ?4, vmdk_sha256 = ?5 WHERE digest = ?1",
    )?
    .execute(params![manifest, fsmeta_size as i64, vmdk_size as i64, seals.fsmeta, seals.vmdk])?;
    Ok(())
}

/// Makes sandbox `name` a root of `manifest` and stamps the image as used now.
pub fn acquire(tx: &Transaction<'_>, name: &str, manifest: &Digest, reference: &Reference, now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO sandboxes (name, manifest_digest, reference, acquired_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name) DO UPDATE SET manifest_digest = excluded.manifest_digest, reference = excluded.reference, acquired_at = excluded.acquired_at",
    )?
    .execute(params![name, manifest, reference, now])?;
    tx.prepare_cached("UPDATE manifests SET last_used_at = ?2 WHERE digest = ?1")?
        .execute(params![manifest, now])?;
    Ok(())
}

/// Drops sandbox `name`'s root; false when it held none.
pub fn release(tx: &Transaction<'_>, name: &str) -> Result<bool> {
    Ok(tx.prepare_cached("DELETE FROM sandboxes WHERE name = ?1")?.execute([name])? > 0)
}

/// Makes snapshot `name` a root of `manifest`.
pub fn pin_snapshot(tx: &Transaction<'_>, name: &str, manifest: &Digest, reference: &Reference, now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO snapshots (name, manifest_digest, reference, pinned_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name) DO UPDATE SET manifest_digest = excluded.manifest_digest, reference = excluded.reference, pinned_at = excluded.pinned_at",
    )?
    .execute(params![name, manifest, reference, now])?;
    Ok(())
}

/// Drops snapshot `name`'s root; false when it held none.
pub fn unpin_snapshot(tx: &Transaction<'_>, name: &str) -> Result<bool> {
    Ok(tx.prepare_cached("DELETE FROM snapshots WHERE name = ?1")?.execute([name])? > 0)
}

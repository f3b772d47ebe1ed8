//! Moves a cache written before schema 2 to the current layout. Schema 1
//! kept manifests, configs and compressed layer blobs as files under
//! `blobs/`; now manifests and configs live in the index and each layer
//! keeps its tar framing there instead of its blob. Each image's documents
//! are copied in and each layer is converted once more from its blob (which
//! yields its framing, and the same EROFS image unless the converter
//! changed, in which case the disks built on the old image are dropped, to
//! be rebuilt by the next acquire). Image sizes are recomputed, everything
//! is made durable, and only then does `blobs/` go. Every step is
//! idempotent, so an upgrade cut short runs again on the next open. It runs
//! while the caller holds the index lock: other processes wait to open the
//! cache until it is done.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::Path;

use oci::digest::HashingReader;
use oci::{progress, Descriptor, Digest};
use rusqlite::params;

use crate::error::{Error, Result};
use crate::index::Index;
use crate::ingest::Lease;
use crate::seal::Sealing;
use crate::source::legacy::LegacyBlobs;
use crate::store::Store;
use crate::stream::convert;

/// Where schema 1 kept blobs, relative to the cache root.
const LEGACY_BLOBS: &str = "blobs";

/// Upgrades the cache if it still has `blobs/`. A blob that is missing or
/// corrupt is skipped (only `save` of its images fails, and loading or
/// pulling them again repairs it); a failure of the cache itself stops the
/// upgrade with `blobs/` kept, to try again on the next open.
pub fn upgrade(store: &Store, index: &Index) -> Result<()> {
    let dir = store.root().join(LEGACY_BLOBS);
    if !dir.exists() {
        return Ok(());
    }
    let blobs = LegacyBlobs(dir.join("sha256"));
    let lease = Lease::take(store, index)?;
    copy_documents(index, &blobs)?;
    let changed = convert_layers(&lease, &blobs)?;
    // A durable commit, which also makes the layer rows before it durable.
    let stale_disks = lease.commit(|tx| {
        tx.execute_batch(
            "UPDATE manifests SET size_bytes = \
               (SELECT coalesce(sum(b.size), 0) FROM blobs b WHERE b.digest IN (manifests.digest, manifests.config_digest)) \
             + (SELECT coalesce(sum(l.erofs_size + length(f.framing)), 0) FROM manifest_layers ml \
                JOIN layers l ON l.diff_id = ml.diff_id JOIN layer_framing f ON f.diff_id = ml.diff_id \
                WHERE ml.manifest_digest = manifests.digest) \
             + coalesce(fsmeta_size, 0) + coalesce(vmdk_size, 0)",
        )?;
        let mut stale = Vec::new();
        for diff_id in &changed {
            let mut stmt = tx.prepare_cached("SELECT manifest_digest FROM manifest_layers WHERE diff_id = ?1")?;
            for manifest in stmt.query_map([diff_id], |row| row.get::<_, Digest>(0))? {
                stale.push(manifest?);
            }
        }
        for manifest in &stale {
            tx.execute(
                "UPDATE manifests SET size_bytes = size_bytes - coalesce(fsmeta_size, 0) - coalesce(vmdk_size, 0), \
                 fsmeta_size = NULL, vmdk_size = NULL WHERE digest = ?1",
                params![manifest],
            )?;
        }
        Ok(stale)
    })?;
    // Rows first, then files: the index never names a missing disk.
    for manifest in stale_disks {
        for path in [store.fsmeta_path(&manifest), store.vmdk_path(&manifest)] {
            remove_file(&path)?;
        }
    }
    fs::remove_dir_all(&dir).map_err(Error::cache(&dir))
}

/// Copies every manifest and config the index names into it.
fn copy_documents(index: &Index, blobs: &LegacyBlobs) -> Result<()> {
    let documents: Vec<Digest> = index.read(|conn| {
        let mut stmt =
            conn.prepare("SELECT digest FROM manifests UNION SELECT config_digest FROM manifests EXCEPT SELECT digest FROM blob_content")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })?;
    for digest in documents {
        if let Some(content) = blobs.verified(&digest)? {
            index.write(|tx| {
                tx.execute(
                    "INSERT OR IGNORE INTO blob_content (digest, content) VALUES (?1, ?2)",
                    params![digest, content],
                )?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Converts every layer without framing from one of its blobs; returns the
/// layers whose image came out different from the one on disk.
fn convert_layers(lease: &Lease<'_>, blobs: &LegacyBlobs) -> Result<Vec<Digest>> {
    let candidates: Vec<(String, String, Option<String>, i64)> = lease.index().read(|conn| {
        let mut stmt = conn.prepare(
            "SELECT DISTINCT ml.diff_id, ml.blob_digest, ml.media_type, ml.blob_size FROM manifest_layers ml \
             WHERE NOT EXISTS (SELECT 1 FROM layer_framing f WHERE f.diff_id = ml.diff_id)",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })?;
    let (mut done, mut changed) = (HashSet::new(), Vec::new());
    for (diff_id, blob_digest, media_type, size) in candidates {
        let (Ok(diff_id), Ok(digest)) = (Digest::parse(&diff_id), Digest::parse(&blob_digest)) else {
            continue;
        };
        if done.contains(&diff_id) {
            continue;
        }
        let blob = Descriptor {
            media_type: media_type.unwrap_or_default(),
            digest,
            size: size as u64,
        };
        let path = lease.store().layer_path(&diff_id);
        let before = file_digest(&path)?;
        match convert::materialize(lease, blobs, &blob, &diff_id, &progress::ignore()) {
            Ok((_, sealing)) => Sealing::record_all(sealing.into_iter().collect(), lease.index())?,
            // This blob cannot give the layer back; another manifest's may.
            Err(Error::Archive { .. } | Error::DigestMismatch { .. } | Error::InvalidLayer { .. }) => continue,
            Err(e) => return Err(e),
        }
        if before.is_some() && before != file_digest(&path)? {
            changed.push(diff_id.clone());
        }
        done.insert(diff_id);
    }
    Ok(changed)
}

/// The sha256 of a file, or None if it does not exist.
fn file_digest(path: &Path) -> Result<Option<Digest>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::cache(path)(e)),
    };
    let mut reader = HashingReader::new(file);
    reader.drain().map_err(Error::cache(path))?;
    Ok(Some(reader.finish().0))
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::cache(path)(e)),
        _ => Ok(()),
    }
}

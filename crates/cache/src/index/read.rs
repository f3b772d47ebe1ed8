//! Read queries: images by reference, configs, layer order.

use oci::manifest::ConfigDetails;
use oci::{Digest, Platform, Reference};
use rusqlite::{Connection, OptionalExtension, Row};

use super::rows::{DiskRow, DocumentRow, LayerRow, RefRow};
use crate::error::Result;
use crate::model::{ImageSummary, LayerDetails};

const SUMMARY_SELECT: &str = "SELECT r.reference, r.manifest_digest, m.size_bytes, c.architecture, c.os, \
     m.layer_count, m.last_used_at, r.created_at \
     FROM image_refs r \
     JOIN manifests m ON m.digest = r.manifest_digest \
     JOIN configs c ON c.digest = m.config_digest";

fn summary(row: &Row<'_>) -> rusqlite::Result<ImageSummary> {
    Ok(ImageSummary {
        reference: row.get(0)?,
        manifest_digest: row.get(1)?,
        size_bytes: row.get::<_, Option<i64>>(2)?.map(|v| v as u64),
        architecture: row.get(3)?,
        os: row.get(4)?,
        layer_count: row.get(5)?,
        last_used_at: row.get(6)?,
        created_at: row.get(7)?,
    })
}

/// Every cached reference, sorted by reference.
pub fn list(conn: &Connection) -> Result<Vec<ImageSummary>> {
    let mut stmt = conn.prepare_cached(&format!("{SUMMARY_SELECT} ORDER BY r.reference"))?;
    let rows = stmt.query_map([], summary)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The image a reference names. A tagged reference matches its own row; a
/// digest reference matches its own row (pulled by digest) or else any
/// reference of the same repository that resolves to that manifest
/// (reported under the digest spelling).
pub fn find(conn: &Connection, reference: &Reference) -> Result<Option<ImageSummary>> {
    match reference.digest() {
        None => {
            let mut stmt = conn.prepare_cached(&format!("{SUMMARY_SELECT} WHERE r.reference = ?1"))?;
            Ok(stmt.query_row([reference], summary).optional()?)
        }
        Some(digest) => {
            let mut stmt = conn.prepare_cached(&format!(
                "{SUMMARY_SELECT} WHERE r.reference = ?1 OR (r.repository = ?2 AND r.manifest_digest = ?3) \
                 ORDER BY r.reference = ?1 DESC, r.created_at LIMIT 1"
            ))?;
            let found = stmt
                .query_row(rusqlite::params![reference, reference.repository(), digest], summary)
                .optional()?;
            Ok(found.map(|s| ImageSummary {
                reference: reference.clone(),
                ..s
            }))
        }
    }
}

/// References (stored spelling) a reference covers: itself when tagged, every
/// reference of the repository resolving to the digest otherwise.
pub fn covered_refs(conn: &Connection, reference: &Reference) -> Result<Vec<RefRow>> {
    let row = |row: &Row<'_>| {
        Ok(RefRow {
            reference: row.get(0)?,
            manifest: row.get(1)?,
        })
    };
    let rows = match reference.digest() {
        None => conn
            .prepare_cached("SELECT reference, manifest_digest FROM image_refs WHERE reference = ?1")?
            .query_map([reference], row)?
            .collect::<rusqlite::Result<_>>()?,
        Some(digest) => conn
            .prepare_cached(
                "SELECT reference, manifest_digest FROM image_refs WHERE reference = ?1 OR (repository = ?2 AND manifest_digest = ?3)",
            )?
            .query_map(rusqlite::params![reference, reference.repository(), digest], row)?
            .collect::<rusqlite::Result<_>>()?,
    };
    Ok(rows)
}

/// The config of a manifest.
pub fn config_of(conn: &Connection, manifest: &Digest) -> Result<Option<ConfigDetails>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.digest, c.env, c.cmd, c.entrypoint, c.working_dir, c.user, c.labels, c.stop_signal \
         FROM manifests m JOIN configs c ON c.digest = m.config_digest WHERE m.digest = ?1",
    )?;
    let row = stmt
        .query_row([manifest], |row| {
            Ok((
                row.get::<_, Digest>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, Option<String>>(7)?,
            ))
        })
        .optional()?;
    let Some((digest, env, cmd, entrypoint, working_dir, user, labels, stop_signal)) = row else {
        return Ok(None);
    };
    Ok(Some(ConfigDetails {
        env: json(&digest, Some(env))?.unwrap_or_default(),
        cmd: json(&digest, cmd)?,
        entrypoint: json(&digest, entrypoint)?,
        working_dir,
        user,
        labels: json(&digest, labels)?,
        stop_signal,
        digest,
    }))
}

fn json<T: serde::de::DeserializeOwned>(digest: &Digest, text: Option<String>) -> Result<Option<T>> {
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| crate::error::Error::Internal(format!("corrupt config row {digest}: {e}")))
}

/// The layers of a manifest, bottom to top.
pub fn layers_of(conn: &Connection, manifest: &Digest) -> Result<Vec<LayerDetails>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ml.position, ml.diff_id, ml.blob_digest, ml.media_type, ml.blob_size, l.erofs_size \
         FROM manifest_layers ml \
         LEFT JOIN layers l ON l.diff_id = ml.diff_id \
         WHERE ml.manifest_digest = ?1 ORDER BY ml.position",
    )?;
    let rows = stmt.query_map([manifest], |row| {
        Ok(LayerDetails {
            position: row.get(0)?,
            diff_id: row.get(1)?,
            blob_digest: row.get(2)?,
            media_type: row.get(3)?,
            compressed_size: row.get::<_, Option<i64>>(4)?.map(|v| v as u64),
            erofs_size: row.get::<_, Option<i64>>(5)?.map(|v| v as u64),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Names of the sandboxes using a manifest.
pub fn sandboxes_using(conn: &Connection, manifest: &Digest) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT name FROM sandboxes WHERE manifest_digest = ?1 ORDER BY name")?;
    let rows = stmt.query_map([manifest], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Sizes of a manifest's fsmeta and VMDK, when the manifest is recorded.
pub fn disk_artifacts(conn: &Connection, manifest: &Digest) -> Result<Option<DiskRow>> {
    let mut stmt = conn.prepare_cached("SELECT fsmeta_size, vmdk_size FROM manifests WHERE digest = ?1")?;
    Ok(stmt
        .query_row([manifest], |row| {
            Ok(DiskRow {
                fsmeta: row.get::<_, Option<i64>>(0)?.map(|v| v as u64),
                vmdk: row.get::<_, Option<i64>>(1)?.map(|v| v as u64),
            })
        })
        .optional()?)
}

/// A manifest's or config's size and media type, as recorded.
pub fn document(conn: &Connection, digest: &Digest) -> Result<Option<DocumentRow>> {
    let mut stmt = conn.prepare_cached("SELECT size, media_type FROM blobs WHERE digest = ?1")?;
    Ok(stmt
        .query_row([digest], |row| {
            Ok(DocumentRow {
                size: row.get::<_, i64>(0)? as u64,
                media_type: row.get(1)?,
            })
        })
        .optional()?)
}

/// The platform of a manifest's image, from its config.
pub fn platform_of(conn: &Connection, manifest: &Digest) -> Result<Option<Platform>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.os, c.architecture, c.variant FROM manifests m JOIN configs c ON c.digest = m.config_digest WHERE m.digest = ?1",
    )?;
    let row = stmt
        .query_row([manifest], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        })
        .optional()?;
    Ok(row.map(|(os, arch, variant)| Platform::new(&os.unwrap_or_default(), &arch.unwrap_or_default(), variant.as_deref())))
}

/// A layer's image and framing sizes, if it is recorded with its framing
/// and its image was not dropped by a repair.
pub fn layer(conn: &Connection, diff_id: &Digest) -> Result<Option<LayerRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.erofs_size, length(f.framing) FROM layers l JOIN layer_framing f ON f.diff_id = l.diff_id \
         WHERE l.diff_id = ?1 AND l.lost = 0",
    )?;
    Ok(stmt
        .query_row([diff_id], |row| {
            Ok(LayerRow {
                erofs_size: row.get::<_, i64>(0)? as u64,
                framing_size: row.get::<_, i64>(1)? as u64,
            })
        })
        .optional()?)
}

/// A layer's framing (zstd-compressed), which rebuilds its tar from its image.
pub fn layer_framing(conn: &Connection, diff_id: &Digest) -> Result<Option<Vec<u8>>> {
    let mut stmt = conn.prepare_cached("SELECT framing FROM layer_framing WHERE diff_id = ?1")?;
    Ok(stmt.query_row([diff_id], |row| row.get(0)).optional()?)
}

/// The bytes of a manifest or config, exactly as distributed.
pub fn document_content(conn: &Connection, digest: &Digest) -> Result<Option<Vec<u8>>> {
    let mut stmt = conn.prepare_cached("SELECT content FROM blob_content WHERE digest = ?1")?;
    Ok(stmt.query_row([digest], |row| row.get(0)).optional()?)
}

/// Bytes of the artifact files the index records (layer images still
/// present, fsmeta, VMDK): the automatic collection's cheap first look
/// at the cache's size, before it measures the files.
pub fn recorded_artifact_bytes(conn: &Connection) -> Result<u64> {
    let bytes: i64 = conn
        .prepare_cached(
            "SELECT (SELECT coalesce(sum(erofs_size), 0) FROM layers WHERE lost = 0) \
         + (SELECT coalesce(sum(coalesce(fsmeta_size, 0) + coalesce(vmdk_size, 0)), 0) FROM manifests)",
        )?
        .query_row([], |row| row.get(0))?;
    Ok(bytes.max(0) as u64)
}

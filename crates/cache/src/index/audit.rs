//! What `check` reads from the index and writes back when it repairs:
//! SQLite's own integrity checks, every row that names a file with its
//! recorded size and seal, and the statements that drop a lost layer's
//! image and the root disks built on it, or record a rebuilt root disk.

use std::collections::HashMap;

use oci::Digest;
use rusqlite::{params, Connection, Transaction};

use crate::error::Result;

/// A layer row.
#[derive(Debug, Clone)]
pub struct AuditLayer {
    /// Its diff_id.
    pub diff_id: Digest,
    /// Recorded size of its image.
    pub size: u64,
    /// Recorded seal, if any.
    pub seal: Option<Digest>,
    /// Whether a repair dropped its image (none is expected on disk).
    pub lost: bool,
}

/// A manifest row, with its layers bottom to top.
#[derive(Debug, Clone)]
pub struct AuditManifest {
    /// Its digest.
    pub digest: Digest,
    /// Recorded fsmeta size (None: not built).
    pub fsmeta_size: Option<u64>,
    /// Recorded VMDK size (None: not built).
    pub vmdk_size: Option<u64>,
    /// Recorded fsmeta seal.
    pub fsmeta_seal: Option<Digest>,
    /// Recorded VMDK seal.
    pub vmdk_seal: Option<Digest>,
    /// diff_ids, bottom to top.
    pub layers: Vec<Digest>,
}

/// Everything `check` compares the disk against.
#[derive(Debug, Default)]
pub struct AuditRows {
    /// Every layer row.
    pub layers: Vec<AuditLayer>,
    /// Every manifest row.
    pub manifests: Vec<AuditManifest>,
    /// References naming each manifest, sorted.
    pub refs: HashMap<Digest, Vec<String>>,
    /// Roots holding each manifest (`sandbox NAME`, `snapshot NAME`).
    pub roots: HashMap<Digest, Vec<String>>,
}

/// SQLite's `integrity_check` (every page, every index) and
/// `foreign_key_check`: one line per problem, none when sound.
pub fn integrity(conn: &Connection) -> Result<Vec<String>> {
    let mut problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(20)")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter(|line| line != "ok")
        .collect();
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = stmt.query_map([], |row| {
        Ok(format!(
            "row {} of {} names a missing {} row",
            row.get::<_, Option<i64>>(1)?.map_or("?".into(), |r| r.to_string()),
            row.get::<_, String>(0)?,
            row.get::<_, String>(2)?
        ))
    })?;
    for row in rows.take(20) {
        problems.push(row?);
    }
    Ok(problems)
}

/// Reads every row `check` looks at.
pub fn rows(conn: &Connection) -> Result<AuditRows> {
    let mut rows = AuditRows::default();
    let mut stmt = conn.prepare("SELECT diff_id, erofs_size, seal, lost FROM layers")?;
    rows.layers = stmt
        .query_map([], |row| {
            Ok(AuditLayer {
                diff_id: row.get(0)?,
                size: row.get::<_, i64>(1)? as u64,
                seal: row.get(2)?,
                lost: row.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut layers: HashMap<Digest, Vec<Digest>> = HashMap::new();
    let mut stmt = conn.prepare("SELECT manifest_digest, diff_id FROM manifest_layers ORDER BY manifest_digest, position")?;
    for row in stmt.query_map([], |row| Ok((row.get::<_, Digest>(0)?, row.get::<_, Digest>(1)?)))? {
        let (manifest, diff_id) = row?;
        layers.entry(manifest).or_default().push(diff_id);
    }
    let mut stmt = conn.prepare("SELECT digest, fsmeta_size, vmdk_size, fsmeta_sha256, vmdk_sha256 FROM manifests")?;
    rows.manifests = stmt
        .query_map([], |row| {
            let digest: Digest = row.get(0)?;
            Ok(AuditManifest {
                layers: layers.remove(&digest).unwrap_or_default(),
                digest,
                fsmeta_size: row.get::<_, Option<i64>>(1)?.map(|v| v as u64),
                vmdk_size: row.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                fsmeta_seal: row.get(3)?,
                vmdk_seal: row.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT manifest_digest, reference FROM image_refs ORDER BY reference")?;
    for row in stmt.query_map([], |row| Ok((row.get::<_, Digest>(0)?, row.get::<_, String>(1)?)))? {
        let (manifest, reference) = row?;
        rows.refs.entry(manifest).or_default().push(reference);
    }
    let mut stmt = conn.prepare(
        "SELECT manifest_digest, 'sandbox ' || name FROM sandboxes UNION ALL SELECT manifest_digest, 'snapshot ' || name FROM snapshots ORDER BY 2",
    )?;
    for row in stmt.query_map([], |row| Ok((row.get::<_, Digest>(0)?, row.get::<_, String>(1)?)))? {
        let (manifest, root) = row?;
        rows.roots.entry(manifest).or_default().push(root);
    }
    Ok(rows)
}

/// Marks layer `diff_id`'s image as dropped, and forgets the root disks of
/// the manifests using it (their files go next): the next load or pull of
/// any image using it converts it again, and builds those disks anew.
pub fn drop_layer_image(tx: &Transaction<'_>, diff_id: &Digest) -> Result<Vec<Digest>> {
    tx.prepare_cached("UPDATE layers SET lost = 1, seal = NULL WHERE diff_id = ?1")?
        .execute([diff_id])?;
    let manifests: Vec<Digest> = tx
        .prepare_cached("SELECT DISTINCT manifest_digest FROM manifest_layers WHERE diff_id = ?1")?
        .query_map([diff_id], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for manifest in &manifests {
        forget_disk(tx, manifest)?;
    }
    Ok(manifests)
}

/// Forgets a manifest's fsmeta and VMDK (their files go next): `acquire`,
/// a load or a pull builds them again.
pub fn forget_disk(tx: &Transaction<'_>, manifest: &Digest) -> Result<()> {
    tx.prepare_cached(
        "UPDATE manifests SET size_bytes = size_bytes - coalesce(fsmeta_size, 0) - coalesce(vmdk_size, 0), \
         fsmeta_size = NULL, vmdk_size = NULL, fsmeta_sha256 = NULL, vmdk_sha256 = NULL WHERE digest = ?1",
    )?
    .execute([manifest])?;
    Ok(())
}

/// Records the seal of a layer image published before seals were recorded.
pub fn seal_layer(tx: &Transaction<'_>, diff_id: &Digest, seal: &Digest) -> Result<()> {
    tx.prepare_cached("UPDATE layers SET seal = ?2 WHERE diff_id = ?1 AND seal IS NULL")?
        .execute(params![diff_id, seal])?;
    Ok(())
}

/// Records the seals of a root disk published before seals were recorded.
pub fn seal_disk(tx: &Transaction<'_>, manifest: &Digest, fsmeta: &Digest, vmdk: &Digest) -> Result<()> {
    tx.prepare_cached(
        "UPDATE manifests SET fsmeta_sha256 = coalesce(fsmeta_sha256, ?2), vmdk_sha256 = coalesce(vmdk_sha256, ?3) WHERE digest = ?1",
    )?
    .execute(params![manifest, fsmeta, vmdk])?;
    Ok(())
}

/// Layers and manifests whose files were published before seals were
/// recorded (a cache written before schema 3).
pub fn unsealed(conn: &Connection) -> Result<(Vec<Digest>, Vec<Digest>)> {
    let layers = conn
        .prepare("SELECT diff_id FROM layers WHERE seal IS NULL AND lost = 0")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let manifests = conn
        .prepare(
            "SELECT digest FROM manifests WHERE (fsmeta_sha256 IS NULL OR vmdk_sha256 IS NULL) \
             AND fsmeta_size IS NOT NULL AND vmdk_size IS NOT NULL",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((layers, manifests))
}

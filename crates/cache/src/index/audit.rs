//! What `check` reads from the index and writes back when it repairs:
//! SQLite's own integrity checks, every row that names a file with its
//! recorded size and seal, and the statements that drop a lost layer's
//! image and the root disks built on it, or record a rebuilt root disk.

use std::collections::HashMap;

use oci::Digest;
use rusqlite::{params, Connection, Transaction};

use super::reach::LiveSet;
use crate::error::Result;
use crate::store::Key;

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

impl AuditRows {
    /// The files these rows name: what [`super::reach::live_set`] reads,
    /// without a second pass over the index.
    pub fn live(&self) -> LiveSet {
        let hexes = |size: fn(&AuditManifest) -> Option<u64>| {
            self.manifests
                .iter()
                .filter(|m| size(m).is_some())
                .filter_map(|m| Key::of(&m.digest))
                .collect()
        };
        LiveSet::new(
            self.layers.iter().filter(|l| !l.lost).filter_map(|l| Key::of(&l.diff_id)).collect(),
            hexes(|m| m.fsmeta_size),
            hexes(|m| m.vmdk_size),
        )
    }
}

/// SQLite's own checks, one line per problem, none when sound: the
/// foreign keys ([`dangling`]), and `integrity_check` when `thorough` (every page,
/// and every index entry against its table row), else `quick_check`
/// (every page and row, without the index-against-table comparison, which
/// costs most of `integrity_check`'s time on a large index).
pub fn integrity(conn: &Connection, thorough: bool) -> Result<Vec<String>> {
    let pragma = match thorough {
        true => "PRAGMA integrity_check(20)",
        false => "PRAGMA quick_check(20)",
    };
    let mut problems: Vec<String> = conn
        .prepare(pragma)?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter(|line| line != "ok")
        .collect();
    problems.extend(dangling(conn)?);
    Ok(problems)
}

/// What `foreign_key_check` finds, one line per foreign key with dangling
/// values, with each key's distinct values probed rather than every row:
/// 50,000 layer rows of 10,000 manifests are 10,000 lookups, not 50,000.
/// The keys are read from the schema (`pragma_foreign_key_list`), so a new
/// one is checked without a change here; a key of several columns (the
/// schema has none) falls back to `foreign_key_check` of its table.
fn dangling(conn: &Connection) -> Result<Vec<String>> {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut problems = Vec::new();
    for table in tables {
        let keys: Vec<(i64, String, String, Option<String>)> = conn
            .prepare("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq")?
            .query_map([&table], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        if keys.windows(2).any(|w| w[0].0 == w[1].0) {
            let rows: i64 = conn.query_row("SELECT count(*) FROM pragma_foreign_key_check(?1)", [&table], |row| row.get(0))?;
            if rows > 0 {
                problems.push(format!("{rows} rows of {table} name a missing row"));
            }
            continue;
        }
        for (_, parent, column, to) in keys {
            let to = match to {
                Some(to) => to,
                None => conn.query_row("SELECT name FROM pragma_table_info(?1) WHERE pk = 1", [&parent], |row| row.get(0))?,
            };
            let sql = format!(
                "SELECT count(*) FROM (SELECT DISTINCT {c} AS v FROM {t} WHERE {c} IS NOT NULL) \
                 WHERE NOT EXISTS (SELECT 1 FROM {p} WHERE {to} = v)",
                c = quote(&column),
                t = quote(&table),
                p = quote(&parent),
                to = quote(&to),
            );
            let values: i64 = conn.query_row(&sql, [], |row| row.get(0))?;
            if values > 0 {
                let (noun, verb) = if values == 1 { ("value", "names") } else { ("values", "name") };
                problems.push(format!("{table}.{column}: {values} {noun} {verb} no {parent} row"));
            }
        }
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

/// Records the seal of a layer image recorded without one: just converted
/// (its seal taken beside the root disk's build), or published before
/// seals were recorded.
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

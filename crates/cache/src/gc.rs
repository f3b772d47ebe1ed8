//! The garbage collector. Roots are image references, sandboxes and
//! snapshots; a manifest no root reaches is garbage, and so are the layers,
//! configs and blobs only garbage reaches. Rows go first, in one
//! transaction; files follow once that transaction is durable, so an index
//! row never points at a missing file. A crash between the two leaves files
//! no row reaches, which the next prune sweeps along with stale temp files.
//! Callers hold the store's collector lock, so no ingest is mid-flight.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

use rusqlite::{params, Transaction};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::model::PruneReport;
use crate::parallel;
use crate::store::{Artifact, Store};

/// Rows a collection deleted, whose files must go next.
#[derive(Debug, Default)]
pub struct Doomed {
    refs_removed: u64,
    manifests: Vec<String>,
    layers: Vec<String>,
    blobs: Vec<String>,
}

const UNROOTED: &str = "NOT EXISTS (SELECT 1 FROM image_refs WHERE manifest_digest = manifests.digest) \
     AND NOT EXISTS (SELECT 1 FROM sandboxes WHERE manifest_digest = manifests.digest) \
     AND NOT EXISTS (SELECT 1 FROM snapshots WHERE manifest_digest = manifests.digest)";

/// Drops every reference no sandbox or snapshot uses, then everything that
/// became unreachable.
pub fn prune_rows(tx: &Transaction<'_>) -> Result<Doomed> {
    let refs_removed = tx.execute(
        "DELETE FROM image_refs WHERE manifest_digest NOT IN \
         (SELECT manifest_digest FROM sandboxes UNION SELECT manifest_digest FROM snapshots)",
        [],
    )? as u64;
    let manifests = returning(tx, &format!("DELETE FROM manifests WHERE {UNROOTED} RETURNING digest"), params![])?;
    Ok(Doomed {
        refs_removed,
        manifests,
        ..unreachable_content(tx)?
    })
}

/// Drops the given references, then whichever of their manifests (and the
/// content below) no root reaches any more.
pub fn remove_rows(tx: &Transaction<'_>, refs: &[(String, String)]) -> Result<Doomed> {
    let mut refs_removed = 0;
    let mut manifests = Vec::new();
    for (reference, _) in refs {
        refs_removed += tx
            .prepare_cached("DELETE FROM image_refs WHERE reference = ?1")?
            .execute([reference])? as u64;
    }
    let candidates: HashSet<&String> = refs.iter().map(|(_, manifest)| manifest).collect();
    for manifest in candidates {
        let sql = format!("DELETE FROM manifests WHERE digest = ?1 AND {UNROOTED} RETURNING digest");
        manifests.extend(returning(tx, &sql, params![manifest])?);
    }
    Ok(Doomed {
        refs_removed,
        manifests,
        ..unreachable_content(tx)?
    })
}

/// Layers, configs and blobs that no remaining manifest reaches.
fn unreachable_content(tx: &Transaction<'_>) -> Result<Doomed> {
    let layers = returning(
        tx,
        "DELETE FROM layers WHERE NOT EXISTS (SELECT 1 FROM manifest_layers WHERE diff_id = layers.diff_id) RETURNING diff_id",
        params![],
    )?;
    tx.execute(
        "DELETE FROM configs WHERE NOT EXISTS (SELECT 1 FROM manifests WHERE config_digest = configs.digest)",
        [],
    )?;
    let blobs = returning(
        tx,
        "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM manifests WHERE digest = blobs.digest) \
         AND NOT EXISTS (SELECT 1 FROM manifests WHERE config_digest = blobs.digest) \
         AND NOT EXISTS (SELECT 1 FROM manifest_layers WHERE blob_digest = blobs.digest) RETURNING digest",
        params![],
    )?;
    Ok(Doomed {
        layers,
        blobs,
        ..Doomed::default()
    })
}

fn returning(tx: &Transaction<'_>, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<String>> {
    let mut stmt = tx.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Threads deleting files at once. An unlink holds its directory only
/// briefly; most of its cost (freeing the inode and blocks) runs in
/// parallel, so many threads beat one even on few cores.
const DELETERS: usize = 32;

/// Deletes the files of rows a committed collection dropped.
pub fn delete_files(store: &Store, doomed: &Doomed) -> Result<PruneReport> {
    let manifests = parse_all(&doomed.manifests)?;
    let artifacts: Vec<Artifact> = manifests
        .iter()
        .cloned()
        .map(Artifact::Fsmeta)
        .chain(manifests.iter().cloned().map(Artifact::Vmdk))
        .chain(parse_all(&doomed.layers)?.into_iter().map(Artifact::Layer))
        .chain(parse_all(&doomed.blobs)?.into_iter().map(Artifact::Blob))
        .collect();
    let chunks: Vec<&[Artifact]> = artifacts.chunks(artifacts.len().div_ceil(DELETERS).max(1)).collect();
    let remove_chunk = |chunk: &&[Artifact], _: &mut Vec<()>| -> Result<(u64, u64, u64)> {
        let (mut fsmeta, mut vmdk, mut bytes) = (0, 0, 0);
        for artifact in *chunk {
            if let Some(size) = remove_measured(&store.path(artifact))? {
                bytes += size;
                match artifact {
                    Artifact::Fsmeta(_) => fsmeta += 1,
                    Artifact::Vmdk(_) => vmdk += 1,
                    Artifact::Layer(_) | Artifact::Blob(_) => {}
                }
            }
        }
        Ok((fsmeta, vmdk, bytes))
    };
    let removed = parallel::map(&chunks, DELETERS, remove_chunk, &mut Vec::new())?;
    Ok(PruneReport {
        image_refs_removed: doomed.refs_removed,
        manifests_removed: doomed.manifests.len() as u64,
        layers_removed: doomed.layers.len() as u64,
        fsmeta_removed: removed.iter().map(|r| r.0).sum(),
        vmdk_removed: removed.iter().map(|r| r.1).sum(),
        bytes_reclaimed: removed.iter().map(|r| r.2).sum(),
    })
}

fn parse_all(digests: &[String]) -> Result<Vec<Digest>> {
    digests
        .iter()
        .map(|d| Digest::parse(d).map_err(|e| Error::Internal(format!("index holds a bad digest: {e}"))))
        .collect()
}

/// Removes `path`, returning its size, or None when it was already gone.
fn remove_measured(path: &Path) -> Result<Option<u64>> {
    let size = match fs::symlink_metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::cache(path)(e)),
    };
    match fs::remove_file(path) {
        Ok(()) => Ok(Some(size)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::cache(path)(e)),
    }
}

/// What the index says should exist on disk, read after a collection commits.
#[derive(Debug, Default)]
pub struct LiveSet {
    /// Hex digests of blobs.
    pub blobs: HashSet<String>,
    /// Hex diff_ids of layers.
    pub layers: HashSet<String>,
    /// Hex digests of manifests with an fsmeta image.
    pub fsmeta: HashSet<String>,
    /// Hex digests of manifests with a VMDK.
    pub vmdk: HashSet<String>,
}

impl LiveSet {
    /// Whether the index reaches `artifact`.
    pub fn contains(&self, artifact: &Artifact) -> bool {
        match artifact {
            Artifact::Blob(d) => self.blobs.contains(d.hex()),
            Artifact::Layer(d) => self.layers.contains(d.hex()),
            Artifact::Fsmeta(d) => self.fsmeta.contains(d.hex()),
            Artifact::Vmdk(d) => self.vmdk.contains(d.hex()),
        }
    }
}

/// Reads the live set from the index.
pub fn live_set(conn: &rusqlite::Connection) -> Result<LiveSet> {
    let hexes = |sql: &str| -> Result<HashSet<String>> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        let mut set = HashSet::new();
        for row in rows {
            let digest = row?;
            set.insert(digest.strip_prefix("sha256:").unwrap_or(&digest).to_string());
        }
        Ok(set)
    };
    Ok(LiveSet {
        blobs: hexes("SELECT digest FROM blobs")?,
        layers: hexes("SELECT diff_id FROM layers")?,
        fsmeta: hexes("SELECT digest FROM manifests WHERE fsmeta_size IS NOT NULL")?,
        vmdk: hexes("SELECT digest FROM manifests WHERE vmdk_size IS NOT NULL")?,
    })
}

/// Deletes every file in the cache that no index row reaches: leftovers of
/// a crash between publishing and recording, and temp files. Adds what it
/// deleted to `report`.
pub fn sweep_orphans(store: &Store, live: &LiveSet, report: &mut PruneReport) -> Result<()> {
    let root = store.root();
    let sweep_dir = |dir: &str, suffix: &str, keep: &HashSet<String>, report: &mut PruneReport| -> Result<u64> {
        let mut removed = 0;
        for (name, path) in entries(&root.join(dir))? {
            let live = name.strip_suffix(suffix).is_some_and(|hex| keep.contains(hex));
            if !live {
                report.bytes_reclaimed += remove_tree(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    };
    sweep_dir("blobs/sha256", "", &live.blobs, report)?;
    sweep_dir("layers/sha256", ".erofs", &live.layers, report)?;
    report.fsmeta_removed += sweep_dir("fsmeta/sha256", ".erofs", &live.fsmeta, report)?;
    report.vmdk_removed += sweep_dir("vmdk/sha256", ".vmdk", &live.vmdk, report)?;
    for (_, path) in entries(&store.tmp_dir())? {
        report.bytes_reclaimed += remove_tree(&path)?;
    }
    Ok(())
}

/// Takes back files a failed ingest published, unless the index reaches them
/// by now. Waits for the collector lock, so ingests that started reusing one
/// of these files have recorded it before the check.
pub fn discard_unrecorded(store: &Store, index: &crate::index::Index, artifacts: &[Artifact]) -> Result<()> {
    let _lock = store.lock_collect()?;
    let live = index.read(live_set)?;
    for artifact in artifacts {
        if !live.contains(artifact) {
            remove_measured(&store.path(artifact))?;
        }
    }
    Ok(())
}

fn entries(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::cache(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(Error::cache(dir))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    Ok(out)
}

/// Removes a file or directory tree, returning the bytes of the files it held.
fn remove_tree(path: &Path) -> Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::cache(path)(e)),
    };
    if !meta.is_dir() {
        return Ok(remove_measured(path)?.unwrap_or(0));
    }
    let mut bytes = 0;
    for (_, child) in entries(path)? {
        bytes += remove_tree(&child)?;
    }
    fs::remove_dir(path).map_err(Error::cache(path))?;
    Ok(bytes)
}

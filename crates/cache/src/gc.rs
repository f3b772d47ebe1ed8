//! The garbage collector. Roots are image references, sandboxes and
//! snapshots; a manifest no root reaches is garbage, and so are the layers,
//! configs and documents only garbage reaches. The rows that name files go
//! first, in one transaction; files follow once that transaction is
//! durable, so an index row never points at a missing file (the rows that
//! name no file go beside them). A crash between the two leaves files no
//! row reaches, which the next prune sweeps along with stale temp files.
//! Callers hold the store's collector lock, so no ingest is mid-flight.
//!
//! Prune then deletes every file no row reaches, in inode order: ext4
//! touches each inode-table and bitmap block once per run of neighbouring
//! inodes instead of once per file, which halves the time on a journaled
//! ext4. Remove deletes only the files of the rows it dropped.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, Transaction};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::model::PruneReport;
use crate::parallel;
use crate::store::{Artifact, Kind, Store};

/// Rows [`remove_rows`] deleted, whose files must go next.
#[derive(Debug, Default)]
pub struct Doomed {
    refs_removed: u64,
    manifests: Vec<String>,
    layers: Vec<String>,
}

const UNROOTED: &str = "NOT EXISTS (SELECT 1 FROM image_refs WHERE manifest_digest = manifests.digest) \
     AND NOT EXISTS (SELECT 1 FROM sandboxes WHERE manifest_digest = manifests.digest) \
     AND NOT EXISTS (SELECT 1 FROM snapshots WHERE manifest_digest = manifests.digest)";
const CONFIG_UNUSED: &str = "NOT EXISTS (SELECT 1 FROM manifests WHERE config_digest = configs.digest)";

/// SQL: no manifest uses the layer whose diff_id is `column`.
fn layer_unused(column: &str) -> String {
    format!("NOT EXISTS (SELECT 1 FROM manifest_layers WHERE diff_id = {column})")
}

/// SQL: no manifest is, or has as its config, the document `column` names.
fn document_unused(column: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM manifests WHERE digest = {column}) \
         AND NOT EXISTS (SELECT 1 FROM manifests WHERE config_digest = {column})"
    )
}

/// Drops every reference no sandbox or snapshot uses, then the manifests
/// and layers that became unreachable (the rows that name files) and the
/// layers' framing, counting them in a report whose file counters [`sweep`]
/// fills. Children go before their parents, by explicit statements: run
/// through [`crate::index::Index::write_bulk`], foreign keys are not
/// enforced here.
pub fn prune_rows(tx: &Transaction<'_>) -> Result<PruneReport> {
    let refs_removed = tx.execute(
        "DELETE FROM image_refs WHERE manifest_digest NOT IN \
         (SELECT manifest_digest FROM sandboxes UNION SELECT manifest_digest FROM snapshots)",
        [],
    )? as u64;
    tx.execute(
        &format!("DELETE FROM manifest_layers WHERE manifest_digest IN (SELECT digest FROM manifests WHERE {UNROOTED})"),
        [],
    )?;
    let manifests_removed = tx.execute(&format!("DELETE FROM manifests WHERE {UNROOTED}"), [])? as u64;
    tx.execute(
        &format!("DELETE FROM layer_framing WHERE {}", layer_unused("layer_framing.diff_id")),
        [],
    )?;
    let layers_removed = tx.execute(&format!("DELETE FROM layers WHERE {}", layer_unused("layers.diff_id")), [])? as u64;
    Ok(PruneReport {
        image_refs_removed: refs_removed,
        manifests_removed,
        layers_removed,
        ..PruneReport::default()
    })
}

/// Drops the configs and the manifest and config documents no manifest uses
/// any more, children first (foreign keys are not enforced here either).
/// They name no file, so this may run beside [`sweep`]; rows a crash leaves
/// behind are dropped by the next prune.
pub fn prune_content(tx: &Transaction<'_>) -> Result<()> {
    tx.execute(&format!("DELETE FROM configs WHERE {CONFIG_UNUSED}"), [])?;
    tx.execute(
        &format!("DELETE FROM blob_content WHERE {}", document_unused("blob_content.digest")),
        [],
    )?;
    tx.execute(&format!("DELETE FROM blobs WHERE {}", document_unused("blobs.digest")), [])?;
    Ok(())
}

/// Drops the given references, then whichever of their manifests (and the
/// content below) no root reaches any more. Only content those manifests
/// referenced is examined, so removing one image costs the same in a cache
/// of ten images or ten thousand.
pub fn remove_rows(tx: &Transaction<'_>, refs: &[(String, String)]) -> Result<Doomed> {
    let mut doomed = Doomed::default();
    for (reference, _) in refs {
        doomed.refs_removed += tx
            .prepare_cached("DELETE FROM image_refs WHERE reference = ?1")?
            .execute([reference])? as u64;
    }
    let (mut layers, mut configs, mut documents) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let candidates: BTreeSet<&String> = refs.iter().map(|(_, manifest)| manifest).collect();
    let unrooted_config = format!("SELECT config_digest FROM manifests WHERE digest = ?1 AND {UNROOTED}");
    for manifest in candidates {
        let config: Option<String> = tx
            .prepare_cached(&unrooted_config)?
            .query_row([manifest], |row| row.get(0))
            .optional()?;
        let Some(config) = config else { continue };
        let mut stmt = tx.prepare_cached("SELECT diff_id FROM manifest_layers WHERE manifest_digest = ?1")?;
        for diff_id in stmt.query_map([manifest], |row| row.get::<_, String>(0))? {
            layers.insert(diff_id?);
        }
        tx.prepare_cached("DELETE FROM manifest_layers WHERE manifest_digest = ?1")?
            .execute([manifest])?;
        tx.prepare_cached("DELETE FROM manifests WHERE digest = ?1")?.execute([manifest])?;
        doomed.manifests.push(manifest.clone());
        documents.insert(manifest.clone());
        documents.insert(config.clone());
        configs.insert(config);
    }
    for diff_id in &layers {
        doomed.layers.extend(drop_layer(tx, diff_id)?);
    }
    let drop_config = format!("DELETE FROM configs WHERE digest = ?1 AND {CONFIG_UNUSED}");
    for config in &configs {
        tx.prepare_cached(&drop_config)?.execute([config])?;
    }
    let unused = document_unused("?1");
    for digest in &documents {
        tx.prepare_cached(&format!("DELETE FROM blob_content WHERE digest = ?1 AND {unused}"))?
            .execute([digest])?;
        tx.prepare_cached(&format!("DELETE FROM blobs WHERE digest = ?1 AND {unused}"))?
            .execute([digest])?;
    }
    Ok(doomed)
}

/// Deletes the framing and row of layer `diff_id` unless a manifest uses
/// it; returns it if it went.
fn drop_layer(tx: &Transaction<'_>, diff_id: &str) -> Result<Option<String>> {
    let unused = layer_unused("?1");
    tx.prepare_cached(&format!("DELETE FROM layer_framing WHERE diff_id = ?1 AND {unused}"))?
        .execute([diff_id])?;
    Ok(tx
        .prepare_cached(&format!("DELETE FROM layers WHERE diff_id = ?1 AND {unused} RETURNING diff_id"))?
        .query_row([diff_id], |row| row.get(0))
        .optional()?)
}

/// Threads deleting files at once. An unlink holds its directory only
/// briefly; most of its cost (freeing the inode and blocks, and on a disk
/// mounted with `discard` waiting for the device) runs in parallel, so many
/// threads beat one even on few cores.
const DELETERS: usize = 32;

/// Deletes the files of rows [`remove_rows`] dropped.
pub fn delete_files(store: &Store, doomed: &Doomed) -> Result<PruneReport> {
    let manifests = parse_all(&doomed.manifests)?;
    let garbage: Vec<Garbage> = manifests
        .iter()
        .cloned()
        .map(Artifact::Fsmeta)
        .chain(manifests.iter().cloned().map(Artifact::Vmdk))
        .chain(parse_all(&doomed.layers)?.into_iter().map(Artifact::Layer))
        .map(|artifact| Garbage {
            path: store.path(&artifact),
            kind: artifact.kind(),
            inode: 0,
        })
        .collect();
    let mut report = PruneReport {
        image_refs_removed: doomed.refs_removed,
        manifests_removed: doomed.manifests.len() as u64,
        layers_removed: doomed.layers.len() as u64,
        ..PruneReport::default()
    };
    remove_all(&garbage, &mut report)?;
    Ok(report)
}

/// A file or directory to delete.
struct Garbage {
    path: PathBuf,
    /// Which counter a deleted file adds to.
    kind: Kind,
    /// The order to delete in (0 when unknown).
    inode: u64,
}

/// Deletes `garbage` with [`DELETERS`] threads, each taking one contiguous
/// run, adding the files and bytes deleted to `report`.
fn remove_all(garbage: &[Garbage], report: &mut PruneReport) -> Result<()> {
    let chunks: Vec<&[Garbage]> = garbage.chunks(garbage.len().div_ceil(DELETERS).max(1)).collect();
    let remove_chunk = |chunk: &&[Garbage], _: &mut Vec<()>| -> Result<(u64, u64, u64)> {
        let (mut fsmeta, mut vmdk, mut bytes) = (0, 0, 0);
        for item in *chunk {
            if let Some(size) = remove_tree(&item.path)? {
                bytes += size;
                match item.kind {
                    Kind::Fsmeta => fsmeta += 1,
                    Kind::Vmdk => vmdk += 1,
                    Kind::Layer => {}
                }
            }
        }
        Ok((fsmeta, vmdk, bytes))
    };
    for (fsmeta, vmdk, bytes) in parallel::map(&chunks, DELETERS, remove_chunk, &mut Vec::new())? {
        report.fsmeta_removed += fsmeta;
        report.vmdk_removed += vmdk;
        report.bytes_reclaimed += bytes;
    }
    Ok(())
}

fn parse_all(digests: &[String]) -> Result<Vec<Digest>> {
    digests
        .iter()
        .map(|d| Digest::parse(d).map_err(|e| Error::Internal(format!("index holds a bad digest: {e}"))))
        .collect()
}

/// What the index says should exist on disk, read after a collection commits.
#[derive(Debug, Default)]
pub struct LiveSet {
    /// Hex diff_ids of layers.
    pub layers: HashSet<String>,
    /// Hex digests of manifests with an fsmeta image.
    pub fsmeta: HashSet<String>,
    /// Hex digests of manifests with a VMDK.
    pub vmdk: HashSet<String>,
}

impl LiveSet {
    /// Whether the index reaches the artifact of `kind` named by `hex`.
    fn reaches(&self, kind: Kind, hex: &str) -> bool {
        match kind {
            Kind::Layer => self.layers.contains(hex),
            Kind::Fsmeta => self.fsmeta.contains(hex),
            Kind::Vmdk => self.vmdk.contains(hex),
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
        layers: hexes("SELECT diff_id FROM layers")?,
        fsmeta: hexes("SELECT digest FROM manifests WHERE fsmeta_size IS NOT NULL")?,
        vmdk: hexes("SELECT digest FROM manifests WHERE vmdk_size IS NOT NULL")?,
    })
}

/// Deletes every file in the cache that no index row reaches: what the
/// collection just dropped, leftovers of a crash between publishing and
/// recording, and temp files. Adds what it deleted to `report`.
pub fn sweep(store: &Store, live: &LiveSet, report: &mut PruneReport) -> Result<()> {
    let mut garbage = Vec::new();
    for kind in Kind::ALL {
        let dir = store.root().join(crate::os::native(kind.dir()));
        for (name, path, inode) in entries(&dir)? {
            let reached = name.strip_suffix(kind.suffix()).is_some_and(|hex| live.reaches(kind, hex));
            if !reached {
                garbage.push(Garbage { path, kind, inode });
            }
        }
    }
    garbage.sort_by_key(|g| g.inode);
    remove_all(&garbage, report)?;
    for (_, path, _) in entries(&store.tmp_dir())? {
        report.bytes_reclaimed += remove_tree(&path)?.unwrap_or(0);
    }
    Ok(())
}

/// Takes back what a failed ingest published (layer images and their rows,
/// disks), unless a recorded image uses it by now. Waits for the collector
/// lock, so ingests that started reusing one of these layers have recorded
/// their image before the check.
pub fn discard_unrecorded(store: &Store, index: &crate::index::Index, artifacts: &[Artifact]) -> Result<()> {
    let _lock = store.lock_collect()?;
    index.write(|tx| {
        for artifact in artifacts {
            if let Artifact::Layer(diff_id) = artifact {
                drop_layer(tx, diff_id.as_str())?;
            }
        }
        Ok(())
    })?;
    let live = index.read(live_set)?;
    for artifact in artifacts {
        if !live.reaches(artifact.kind(), artifact.digest().hex()) {
            remove_tree(&store.path(artifact))?;
        }
    }
    Ok(())
}

/// The entries of `dir` (none if it is missing): name, path and inode number.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, u64)>> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::cache(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(Error::cache(dir))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
            crate::os::deletion_key(&entry),
        ));
    }
    Ok(out)
}

/// Removes a file or directory tree, returning the bytes of the files it
/// held, or None when it was already gone.
fn remove_tree(path: &Path) -> Result<Option<u64>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::cache(path)(e)),
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Ok(()) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::cache(path)(e)),
        };
    }
    let mut bytes = 0;
    for (_, child, _) in entries(path)? {
        bytes += remove_tree(&child)?.unwrap_or(0);
    }
    fs::remove_dir(path).map_err(Error::cache(path))?;
    Ok(Some(bytes))
}

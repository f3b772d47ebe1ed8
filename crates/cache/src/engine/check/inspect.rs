//! What `check` looks at: every row that names a file against the file
//! (present, of its recorded size), each root disk against its layers
//! (fsmeta's device table, the VMDK's extents and paths), the files no
//! row reaches, stale temp files, and in a full check the content of each
//! artifact ([`super::content`]). Each problem carries the repair it calls for.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;

use oci::Digest;

use super::content;
use crate::disk::vmdk::{self, Extent};
use crate::error::Result;
use crate::gc::measure::Measured;
use crate::index::audit::{AuditLayer, AuditManifest, AuditRows};
use crate::index::reach::LiveSet;
use crate::index::{read, Index};
use crate::model::CheckProblem;
use crate::parallel;
use crate::store::{self, Key, Kind, Store};

/// Layers or manifests checked at once: one per core. Each is a few small
/// reads from the page cache (and in a full check, hashing), so work for
/// the CPU; more threads than cores only slow the index check beside them.
fn checkers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).min(8)
}

/// How a repair fixes a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// It cannot (the index itself is damaged).
    Nothing,
    /// Drop the layer's image and the root disks built on it: the next
    /// load or pull of an image using it converts it again.
    DropLayer(Digest),
    /// Build the manifest's fsmeta and VMDK again from its layers.
    RebuildDisk(Digest),
    /// Delete the file or directory.
    Delete(PathBuf),
}

/// A problem and its repair.
#[derive(Debug, Clone)]
pub struct Finding {
    /// As reported.
    pub problem: CheckProblem,
    /// What a repair does about it.
    pub fix: Fix,
}

/// What the checks below need to hand.
pub struct Scope<'a> {
    /// The cache directory.
    pub store: &'a Store,
    /// Its index.
    pub index: &'a Index,
    /// The rows.
    pub rows: &'a AuditRows,
    /// The files, with their sizes.
    pub measured: &'a Measured,
}

impl Scope<'_> {
    /// A finding about `digest`, which the images of `manifests` use: it
    /// names the first one's reference, and every root holding any of
    /// them (a repair may take files those roots boot from).
    fn finding(&self, kind: &'static str, manifests: &[&Digest], digest: &Digest, path: PathBuf, message: String, fix: Fix) -> Finding {
        let mut roots: Vec<&String> = manifests.iter().filter_map(|m| self.rows.roots.get(*m)).flatten().collect();
        roots.sort();
        roots.dedup();
        let message = match roots.is_empty() {
            false => format!(
                "{message} (held by {})",
                roots.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            ),
            true => message,
        };
        Finding {
            problem: CheckProblem {
                kind,
                reference: manifests
                    .first()
                    .and_then(|m| self.rows.refs.get(*m))
                    .and_then(|r| r.first().cloned()),
                digest: Some(digest.to_string()),
                path: Some(path),
                message,
                repaired: false,
            },
            fix,
        }
    }
}

/// Rows against files; returns the findings and the layers found bad
/// (whose manifests' disks a repair drops with them).
pub fn files(scope: &Scope<'_>, full: bool) -> Result<(Vec<Finding>, HashSet<Digest>)> {
    let mut findings = Vec::new();
    let mut bad = HashSet::new();
    let users = users_of_layers(scope.rows);
    let layers: Vec<&AuditLayer> = scope.rows.layers.iter().filter(|l| !l.lost).collect();
    let problems = parallel::map(&layers, checkers(), |layer| layer_problem(scope, layer, full))?;
    for (layer, problem) in layers.into_iter().zip(problems) {
        let Some((kind, message)) = problem else { continue };
        let manifests = users.get(&layer.diff_id).map(Vec::as_slice).unwrap_or_default();
        let message = format!("{message}; a repair drops it, and the next load or pull of an image using it converts it again");
        findings.push(scope.finding(
            kind,
            manifests,
            &layer.diff_id,
            scope.store.layer_path(&layer.diff_id),
            message,
            Fix::DropLayer(layer.diff_id.clone()),
        ));
        bad.insert(layer.diff_id.clone());
    }
    let lost: HashSet<&Digest> = scope.rows.layers.iter().filter(|l| l.lost).map(|l| &l.diff_id).collect();
    let sound: Vec<&AuditManifest> = scope
        .rows
        .manifests
        .iter()
        .filter(|m| m.layers.iter().all(|l| !bad.contains(l) && !lost.contains(l)))
        .collect();
    let per_manifest = parallel::map(&sound, checkers(), |m| disk(scope, m, full))?;
    findings.extend(per_manifest.into_iter().flatten());
    Ok((findings, bad))
}

/// What is wrong with one layer's file: missing, of another size than
/// recorded, or (full) content that differs from what was published.
/// Layers are checked a few at a time: a full check of many small layers
/// is bound by opening and reading files, not by hashing.
fn layer_problem(scope: &Scope<'_>, layer: &AuditLayer, full: bool) -> Result<Option<(&'static str, String)>> {
    let size = Key::of(&layer.diff_id).and_then(|key| scope.measured.file(Kind::Layer, &key));
    Ok(match size {
        None => Some(("missing_file", "the layer image is missing".to_string())),
        Some(size) if size != layer.size => Some((
            "size_mismatch",
            format!("the layer image is {size} bytes, the index says {}", layer.size),
        )),
        Some(_) if full => {
            let path = scope.store.layer_path(&layer.diff_id);
            let framing = scope.index.read(|conn| read::layer_framing(conn, &layer.diff_id))?;
            match framing {
                None => Some(("corrupt", "the layer has no tar framing in the index".to_string())),
                Some(framing) => content::layer(&path, &layer.diff_id, &framing, layer.seal.as_ref())?.map(|m| ("corrupt", m)),
            }
        }
        Some(_) => None,
    })
}

/// The manifests using each layer, in index order (to name an image and
/// every root a layer's problem touches).
fn users_of_layers(rows: &AuditRows) -> HashMap<Digest, Vec<&Digest>> {
    let mut users: HashMap<Digest, Vec<&Digest>> = HashMap::new();
    for m in &rows.manifests {
        for l in &m.layers {
            users.entry(l.clone()).or_default().push(&m.digest);
        }
    }
    users
}

/// One manifest's fsmeta and VMDK, whose layers are all sound: each file
/// missing or of the wrong size; if both are sound, the first way they
/// disagree with the layers (or, in a full check, with their seals).
fn disk(scope: &Scope<'_>, m: &AuditManifest, full: bool) -> Result<Vec<Finding>> {
    let store = scope.store;
    let rebuild = |kind, path: PathBuf, message: String| {
        let message = format!("{message}; a repair builds it again from the layers");
        scope.finding(kind, &[&m.digest], &m.digest, path, message, Fix::RebuildDisk(m.digest.clone()))
    };
    let fsmeta_path = store.fsmeta_path(&m.digest);
    let vmdk_path = store.vmdk_path(&m.digest);
    let fsmeta = Key::of(&m.digest).and_then(|key| scope.measured.file(Kind::Fsmeta, &key));
    let vmdk = Key::of(&m.digest).and_then(|key| scope.measured.file(Kind::Vmdk, &key));
    let mut findings = Vec::new();
    for (what, path, recorded, actual) in [
        ("fsmeta", &fsmeta_path, m.fsmeta_size, fsmeta),
        ("VMDK", &vmdk_path, m.vmdk_size, vmdk),
    ] {
        match (recorded, actual) {
            (Some(_), None) => findings.push(rebuild("missing_file", path.clone(), format!("the {what} file is missing"))),
            (Some(r), Some(a)) if r != a => findings.push(rebuild(
                "size_mismatch",
                path.clone(),
                format!("the {what} file is {a} bytes, the index says {r}"),
            )),
            _ => {}
        }
    }
    let (Some(fsmeta), Some(_), true) = (m.fsmeta_size.and(fsmeta), m.vmdk_size.and(vmdk), findings.is_empty()) else {
        return Ok(findings);
    };
    let layer_sizes: Vec<u64> = m
        .layers
        .iter()
        .map(|l| Key::of(l).map_or(0, |key| scope.measured.size(Kind::Layer, &key)))
        .collect();
    if let Some(message) = device_table(&fsmeta_path, fsmeta, &m.layers, &layer_sizes) {
        return Ok(vec![rebuild("disk_mismatch", fsmeta_path, message)]);
    }
    if let Some(message) = descriptor(store, &m.digest, fsmeta, &m.layers, &layer_sizes)? {
        return Ok(vec![rebuild("disk_mismatch", vmdk_path, message)]);
    }
    if full {
        for (path, seal) in [(&fsmeta_path, &m.fsmeta_seal), (&vmdk_path, &m.vmdk_seal)] {
            if let Some(message) = seal.as_ref().map(|s| content::whole(path, s)).transpose()?.flatten() {
                return Ok(vec![rebuild("corrupt", path.clone(), message)]);
            }
        }
    }
    Ok(findings)
}

/// What is wrong with fsmeta's device table: one slot per layer, in
/// order, tagged with its diff_id, of its size, mapped after fsmeta and
/// the layers below it.
fn device_table(path: &std::path::Path, fsmeta: u64, layers: &[Digest], sizes: &[u64]) -> Option<String> {
    let image = match erofs::reader::Image::open(path) {
        Ok(image) => image,
        Err(e) => return Some(format!("the fsmeta image is unreadable: {e}")),
    };
    let devices = image.devices();
    if devices.len() != layers.len() {
        return Some(format!("fsmeta names {} layers, the manifest has {}", devices.len(), layers.len()));
    }
    let mut at = fsmeta / erofs::BLOCK_SIZE;
    for (i, ((device, layer), size)) in devices.iter().zip(layers).zip(sizes).enumerate() {
        // fsmeta written since small files were packed addresses the flat
        // disk directly and maps no device (see erofs's writer).
        let mapped = device.mapped_blkaddr == at || device.mapped_blkaddr == 0;
        if device.tag != layer.hex().as_bytes() || device.blocks != size / erofs::BLOCK_SIZE || !mapped {
            return Some(format!(
                "fsmeta's device {} does not describe layer {layer} where the disk has it",
                i + 1
            ));
        }
        at += size / erofs::BLOCK_SIZE;
    }
    None
}

/// What is wrong with the VMDK: it must be, byte for byte, the descriptor
/// of fsmeta then the layers, at their paths in this cache.
fn descriptor(store: &Store, manifest: &Digest, fsmeta: u64, layers: &[Digest], sizes: &[u64]) -> Result<Option<String>> {
    let fsmeta_path = store.fsmeta_path(manifest);
    let paths: Vec<PathBuf> = layers.iter().map(|l| store.layer_path(l)).collect();
    let mut extents = vec![Extent {
        path: &fsmeta_path,
        size: fsmeta,
    }];
    extents.extend(paths.iter().zip(sizes).map(|(path, &size)| Extent { path, size }));
    let cid = u32::from_str_radix(&manifest.hex()[..8], 16).expect("digest hex is hex");
    let Ok(expected) = vmdk::descriptor(&extents, cid) else {
        return Ok(Some("its files cannot be described by a VMDK".into()));
    };
    let path = store.vmdk_path(manifest);
    let actual = fs::read(&path).map_err(crate::error::Error::cache(&path))?;
    Ok((actual != expected.as_bytes()).then(|| "the VMDK does not name fsmeta and the layers, in order, at their sizes".to_string()))
}

/// Files in the artifact directories that `live` does not reach (from the
/// listing `measured` made), and everything in `tmp/` (the exclusive
/// collector lock is held: no ingest is writing).
pub fn strays(store: &Store, live: &LiveSet, measured: &Measured) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for kind in Kind::ALL {
        let files = measured.of(kind);
        let dir = store.dir(kind);
        let mut paths: Vec<PathBuf> = files
            .by_key
            .keys()
            .filter(|key| !live.reaches_key(kind, key))
            .map(|key| dir.join(format!("{}{}", key.to_hex(), kind.suffix())))
            .chain(files.others.iter().cloned())
            .collect();
        paths.sort();
        findings.extend(
            paths
                .into_iter()
                .map(|path| stray("orphan_file", path, "no index row names this file; a repair deletes it")),
        );
    }
    for entry in store::entries(&store.tmp_dir())? {
        findings.push(stray(
            "temp_file",
            entry.path,
            "a temp file no running ingest owns; a repair deletes it",
        ));
    }
    Ok(findings)
}

fn stray(kind: &'static str, path: PathBuf, message: &str) -> Finding {
    Finding {
        problem: CheckProblem {
            kind,
            reference: None,
            digest: None,
            path: Some(path.clone()),
            message: message.to_string(),
            repaired: false,
        },
        fix: Fix::Delete(path),
    }
}

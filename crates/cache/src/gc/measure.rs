//! The cache's size as a budget and `diskUsage` count it: the apparent
//! size (`st_size`) of every file under the cache directory except
//! `locks/` (lock files hold no data) and `tmp/` (files being written,
//! which belong to no image until published): artifacts, the index with
//! its WAL and shared-memory files, `config.json`, `registries.json`.
//! Every file counted is one a listing found. An artifact an index row
//! names counts at the size the row records, which was taken from the
//! file when it was published: artifacts are written once, fsynced,
//! renamed into place and never changed (a full `check` proves it, a quick
//! one compares every size), and statting 70,000 files costs more than the
//! whole of `diskUsage` may. Every other file is statted, and `check`
//! stats them all.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::index::reach::LiveSet;
use crate::parallel;
use crate::store::{self, Key, Kind, Store};
use crate::DigestMap;

/// Directories under the cache root that the size leaves out.
const UNCOUNTED: [&str; 2] = ["locks", "tmp"];
/// Threads statting files at once: a stat is a short system call, and
/// spreading 70,000 of them over the cores halves the wall time.
const STATTERS: usize = 4;

/// The files of one artifact directory.
#[derive(Debug, Default, Clone)]
pub struct KindFiles {
    /// Files in the directory (artifacts and strays).
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Size of each artifact file, by the digest its name spells.
    pub by_key: DigestMap<Key, u64>,
    /// Entries not named as an artifact of the directory's kind: strays
    /// whatever the index says (a check reports them from this listing).
    pub others: Vec<PathBuf>,
}

/// What [`measure`] found.
#[derive(Debug, Default, Clone)]
pub struct Measured {
    /// Every counted file's bytes.
    pub total: u64,
    /// Bytes of the index: `db/` (database, WAL, shared memory).
    pub index: u64,
    /// Layer images, fsmeta images, VMDKs, in [`Kind::ALL`] order.
    pub kinds: [KindFiles; 3],
}

impl Measured {
    /// The files of `kind`.
    pub fn of(&self, kind: Kind) -> &KindFiles {
        &self.kinds[kind_index(kind)]
    }

    /// The size of the artifact of `kind` whose digest is `key` (0 if absent).
    pub fn size(&self, kind: Kind, key: &Key) -> u64 {
        self.file(kind, key).unwrap_or(0)
    }

    /// The size of the artifact of `kind` whose digest is `key`, if listed.
    pub fn file(&self, kind: Kind, key: &Key) -> Option<u64> {
        self.of(kind).by_key.get(key).copied()
    }
}

/// Of the measured artifact-directory files, those a [`LiveSet`] does not
/// reach: what the sweep deletes (temp files apart).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unreached {
    /// fsmeta files (and strays of their directory).
    pub fsmeta: u64,
    /// VMDK files (and strays of their directory).
    pub vmdk: u64,
    /// Bytes of every unreached file, layer images included.
    pub bytes: u64,
}

impl Measured {
    /// What the sweep would delete of these files once only `live` is
    /// reached: a dry run's and `diskUsage`'s answer, from the one listing.
    pub fn unreached(&self, live: &LiveSet) -> Unreached {
        let mut gone = Unreached::default();
        for kind in Kind::ALL {
            let files = self.of(kind);
            let (count, bytes) = files
                .by_key
                .iter()
                .filter(|(key, _)| live.reaches_key(kind, key))
                .fold((0, 0), |(n, b), (_, size)| (n + 1, b + size));
            gone.bytes += files.bytes - bytes;
            match kind {
                Kind::Fsmeta => gone.fsmeta = files.count - count,
                Kind::Vmdk => gone.vmdk = files.count - count,
                Kind::Layer => {}
            }
        }
        gone
    }
}

fn kind_index(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).expect("every kind is in ALL")
}

/// The artifact directories' entries, listed but not statted: what
/// [`list`] found, to be sized once the index's rows are read.
pub struct Listing {
    /// Entries of each artifact directory, in [`Kind::ALL`] order, each in
    /// inode order, with the digest an artifact's name spells (None: a
    /// stray).
    kinds: [Vec<(fs::DirEntry, Option<Key>)>; 3],
}

/// Lists the artifact directories of `store` (a system call per few
/// hundred names; no file is statted).
pub fn list(store: &Store) -> Result<Listing> {
    let root = store.root();
    let mut kinds: [Vec<(fs::DirEntry, Option<Key>)>; 3] = Default::default();
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        let dir = root.join(kind.dir());
        let mut entries: Vec<fs::DirEntry> = match fs::read_dir(&dir) {
            Ok(read) => read.collect::<io::Result<_>>().map_err(Error::cache(&dir))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::cache(&dir)(e)),
        };
        entries.sort_unstable_by_key(crate::os::deletion_key);
        kinds[i] = entries
            .into_iter()
            .map(|entry| {
                let name = entry.file_name();
                let key = name.to_str().and_then(|n| n.strip_suffix(kind.suffix())).and_then(Key::from_hex);
                (entry, key)
            })
            .collect();
    }
    Ok(Listing { kinds })
}

/// Measures the cache in `store`, statting every file (what `check`
/// compares the rows against).
pub fn measure(store: &Store) -> Result<Measured> {
    list(store)?.sized(store, |_, _| None)
}

impl Listing {
    /// The cache's size: each listed artifact at the size `recorded`
    /// gives for its kind and hex digest, or statted where it gives none;
    /// the files outside the artifact directories statted now (after any
    /// checkpoint the caller ran since listing).
    pub fn sized(self, store: &Store, recorded: impl Fn(Kind, &Key) -> Option<u64>) -> Result<Measured> {
        let root = store.root();
        let mut measured = Measured::default();
        let artifact_dirs: Vec<_> = Kind::ALL.iter().map(|k| root.join(k.dir())).collect();
        for entry in store::entries(root)? {
            if UNCOUNTED.contains(&entry.name.as_str()) {
                continue;
            }
            let bytes = walk(&entry.path, &artifact_dirs)?;
            measured.total += bytes;
            if entry.name == "db" {
                measured.index += bytes;
            }
        }
        for (i, (kind, entries)) in Kind::ALL.into_iter().zip(self.kinds).enumerate() {
            let files = kind_files(entries, kind, &recorded)?;
            measured.total += files.bytes;
            measured.kinds[i] = files;
        }
        Ok(measured)
    }
}

/// The files of one artifact directory: sizes from `recorded`, the rest
/// statted on [`STATTERS`] threads, each relative to the directory's open
/// handle (`DirEntry::metadata`: `statx` on the directory's descriptor, so
/// the kernel looks up one name instead of walking the whole path; on
/// Windows the size comes with the listing).
fn kind_files(entries: Vec<(fs::DirEntry, Option<Key>)>, kind: Kind, recorded: &impl Fn(Kind, &Key) -> Option<u64>) -> Result<KindFiles> {
    let known: Vec<Option<u64>> = entries
        .iter()
        .map(|(_, key)| key.as_ref().and_then(|key| recorded(kind, key)))
        .collect();
    let unknown: Vec<&fs::DirEntry> = entries
        .iter()
        .zip(&known)
        .filter(|(_, k)| k.is_none())
        .map(|((e, _), _)| e)
        .collect();
    let chunks: Vec<&[&fs::DirEntry]> = unknown.chunks(unknown.len().div_ceil(STATTERS).max(1)).collect();
    let statted = parallel::map(&chunks, STATTERS, |chunk| {
        chunk.iter().map(|e| entry_size(e)).collect::<Result<Vec<_>>>()
    })?;
    let mut statted = statted.into_iter().flatten();
    let mut files = KindFiles::default();
    files.by_key.reserve(entries.len());
    for ((entry, key), known) in entries.into_iter().zip(known) {
        let Some(size) = known.or_else(|| statted.next().flatten()) else {
            continue;
        };
        files.count += 1;
        files.bytes += size;
        match key {
            Some(key) => {
                files.by_key.insert(key, size);
            }
            None => files.others.push(entry.path()),
        }
    }
    Ok(files)
}

/// Bytes of the files under `path` (itself if a file), leaving out the
/// artifact directories, which [`kind_files`] measures.
fn walk(path: &Path, artifact_dirs: &[PathBuf]) -> Result<u64> {
    if artifact_dirs.iter().any(|d| d == path) {
        return Ok(0);
    }
    let Some(meta) = lstat(path)? else { return Ok(0) };
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut bytes = 0;
    for entry in store::entries(path)? {
        bytes += walk(&entry.path, artifact_dirs)?;
    }
    Ok(bytes)
}

/// The size of a listed entry (a directory: of the files under it; None: gone).
fn entry_size(entry: &fs::DirEntry) -> Result<Option<u64>> {
    match entry.metadata() {
        Ok(meta) if meta.is_dir() => tree_size(&entry.path()),
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::cache(&entry.path())(e)),
    }
}

/// Bytes of the file at `path`, or of every file under it if it is a
/// directory; None when it is gone. What [`store::remove`] would report.
pub fn tree_size(path: &Path) -> Result<Option<u64>> {
    let Some(meta) = lstat(path)? else { return Ok(None) };
    if !meta.is_dir() {
        return Ok(Some(meta.len()));
    }
    let mut bytes = 0;
    for entry in store::entries(path)? {
        bytes += tree_size(&entry.path)?.unwrap_or(0);
    }
    Ok(Some(bytes))
}

fn lstat(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::cache(path)(e)),
    }
}

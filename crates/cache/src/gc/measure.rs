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

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::index::reach::LiveSet;
use crate::store::{self, Key, Kind, Store};
use crate::DigestMap;
use crate::{os, parallel};

/// Tags a listed artifact not sized yet. Sizes come from index rows or
/// `st_size`, both below 2^63, so a sized entry never carries it; an
/// inode that does loses only its place in the stat order.
const UNSIZED: u64 = 1 << 63;

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
    /// Each artifact directory's entries, in [`Kind::ALL`] order.
    kinds: [Listed; 3],
}

/// One artifact directory's entries. The listing keeps no `DirEntry`: an
/// artifact's name is its digest, so the digest and the inode are all it
/// needs, and keeping 70,000 entries (a name allocated for each) made the
/// listing about a quarter slower.
#[derive(Default)]
struct Listed {
    /// Each artifact file by the digest its name spells: [`UNSIZED`] and
    /// its inode (the order to stat in) until it is sized, then its size.
    /// The one map is listed into, sized in place, and handed on as
    /// [`KindFiles::by_key`]: tens of thousands of entries are hashed once.
    artifacts: DigestMap<Key, u64>,
    /// Entries not named as an artifact of the directory's kind, by name,
    /// with their inodes.
    others: Vec<(OsString, u64)>,
}

/// Lists the artifact directories of `store` (a system call per few
/// hundred names; no file is statted).
pub fn list(store: &Store) -> Result<Listing> {
    let mut kinds: [Listed; 3] = Default::default();
    // Gathered first, so that each map is made once at its full size.
    let mut artifacts = Vec::new();
    for (listed, kind) in kinds.iter_mut().zip(Kind::ALL) {
        let dir = store.root().join(kind.dir());
        let read = match fs::read_dir(&dir) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::cache(&dir)(e)),
        };
        for entry in read {
            let entry = entry.map_err(Error::cache(&dir))?;
            let inode = crate::os::deletion_key(&entry);
            let name = entry.file_name();
            match name
                .as_encoded_bytes()
                .strip_suffix(kind.suffix().as_bytes())
                .and_then(Key::from_hex)
            {
                Some(key) => artifacts.push((key, UNSIZED | inode)),
                None => listed.others.push((name, inode)),
            }
        }
        listed.artifacts.reserve(artifacts.len());
        listed.artifacts.extend(artifacts.drain(..));
    }
    Ok(Listing { kinds })
}

/// Measures the cache in `store`, statting every file (what `check`
/// compares the rows against).
pub fn measure(store: &Store) -> Result<Measured> {
    list(store)?.sized(store, [])
}

impl Listing {
    /// The cache's size: each listed artifact at the size `recorded` gives
    /// for its kind and digest, or statted where it gives none; the files
    /// outside the artifact directories statted now (after any checkpoint
    /// the caller ran since listing).
    pub fn sized<'k>(mut self, store: &Store, recorded: impl IntoIterator<Item = (Kind, &'k Key, u64)>) -> Result<Measured> {
        for (kind, key, size) in recorded {
            if let Some(value) = self.kinds[kind_index(kind)].artifacts.get_mut(key) {
                *value = size.min(UNSIZED - 1);
            }
        }
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
        for (i, (kind, listed)) in Kind::ALL.into_iter().zip(self.kinds).enumerate() {
            let files = kind_files(listed, &store.dir(kind), kind)?;
            measured.total += files.bytes;
            measured.kinds[i] = files;
        }
        Ok(measured)
    }
}

/// A listed entry the index records no size for: statted.
struct Unsized {
    /// Where it sits in the inode table: the order to stat in.
    inode: u64,
    /// Its name in the directory.
    name: OsString,
    /// The digest its name spells (None: a stray).
    key: Option<Key>,
}

/// The files of one artifact directory (`dir`), the artifacts the index
/// gave no size for statted in inode order on [`STATTERS`] threads, each
/// by its name in the open directory ([`os::StatDir`]).
fn kind_files(listed: Listed, dir: &Path, kind: Kind) -> Result<KindFiles> {
    let Listed { mut artifacts, others } = listed;
    let mut unknown: Vec<Unsized> = others.into_iter().map(|(name, inode)| Unsized { inode, name, key: None }).collect();
    for (key, &value) in &artifacts {
        if value & UNSIZED != 0 {
            unknown.push(Unsized {
                inode: value & !UNSIZED,
                name: format!("{}{}", key.to_hex(), kind.suffix()).into(),
                key: Some(*key),
            });
        }
    }
    unknown.sort_unstable_by_key(|u| u.inode);
    let opened = os::StatDir::open(dir);
    let size = |u: &Unsized| -> Result<Option<u64>> {
        match opened.lstat(&u.name).map_err(Error::cache(&dir.join(&u.name)))? {
            Some((_, true)) => tree_size(&dir.join(&u.name)),
            sized => Ok(sized.map(|(size, _)| size)),
        }
    };
    let chunks: Vec<&[Unsized]> = unknown.chunks(unknown.len().div_ceil(STATTERS).max(1)).collect();
    let statted = parallel::map(&chunks, STATTERS, |chunk| chunk.iter().map(size).collect::<Result<Vec<_>>>())?;
    let mut files = KindFiles::default();
    for (entry, size) in unknown.into_iter().zip(statted.into_iter().flatten()) {
        match (entry.key, size) {
            (Some(key), Some(size)) => {
                artifacts.insert(key, size);
            }
            // Gone since the listing.
            (Some(key), None) => {
                artifacts.remove(&key);
            }
            (None, Some(size)) => {
                files.count += 1;
                files.bytes += size;
                files.others.push(dir.join(entry.name));
            }
            (None, None) => {}
        }
    }
    files.count += artifacts.len() as u64;
    files.bytes += artifacts.values().sum::<u64>();
    files.by_key = artifacts;
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

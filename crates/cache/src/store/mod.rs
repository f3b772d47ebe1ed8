//! The on-disk layout of a cache and the two rules that keep it consistent:
//! every file is written under `tmp/` and renamed into place only when it is
//! complete and verified ([`temp`]), and processes coordinate through file
//! locks ([`lock`]).
//!
//! ```text
//! $MSB_HOME/
//!   db/index.sqlite            the index (SQLite, WAL); also holds manifests,
//!                              configs and each layer's tar framing
//!   layers/sha256/<hex>.erofs  layer EROFS images, by diff_id
//!   fsmeta/sha256/<hex>.erofs  merged metadata EROFS images, by manifest digest
//!   vmdk/sha256/<hex>.vmdk     root-disk descriptors, by manifest digest
//!   tmp/                       files being written; anything here after a crash is garbage
//!   locks/                     lock files: gc.lock, index.lock, and 256 per artifact kind
//! ```

mod lock;
mod space;
mod temp;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci::Digest;

use crate::error::{Error, Result};
pub use lock::FileLock;
pub use space::{SpaceWatch, Watched};
pub use temp::TempFile;

/// Directories of a cache besides the artifact directories ([`Kind::dir`]),
/// all created on open.
const OTHER_DIRS: [&str; 3] = ["db", "tmp", "locks"];

/// A file the index can reach, named by kind and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Artifact {
    /// A layer EROFS image, by diff_id.
    Layer(Digest),
    /// A merged metadata image, by manifest digest.
    Fsmeta(Digest),
    /// A root-disk descriptor, by manifest digest.
    Vmdk(Digest),
}

impl Artifact {
    /// Which kind of file this is.
    pub fn kind(&self) -> Kind {
        match self {
            Artifact::Layer(_) => Kind::Layer,
            Artifact::Fsmeta(_) => Kind::Fsmeta,
            Artifact::Vmdk(_) => Kind::Vmdk,
        }
    }

    /// The digest naming the file.
    pub fn digest(&self) -> &Digest {
        match self {
            Artifact::Layer(d) | Artifact::Fsmeta(d) | Artifact::Vmdk(d) => d,
        }
    }
}

/// The 32 bytes an artifact's file name spells in hex (every artifact is
/// named by a sha256): how the collector and `check` key tens of
/// thousands of files and rows without a string allocation per file or
/// per row, and hash and compare them inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 32]);

impl Key {
    /// The key a lowercase 64-digit hex string spells (None: anything else,
    /// which names no artifact).
    pub fn from_hex(hex: impl AsRef<[u8]>) -> Option<Key> {
        // A digit's value by byte, 0xff for a byte that is none: a table,
        // since tens of thousands of names are decoded per collection.
        const VALUE: [u8; 256] = {
            let mut table = [0xff; 256];
            let mut c = 0;
            while c < 10 {
                table[b'0' as usize + c] = c as u8;
                c += 1;
            }
            while c < 16 {
                table[b'a' as usize + c - 10] = c as u8;
                c += 1;
            }
            table
        };
        let hex: &[u8; 64] = hex.as_ref().try_into().ok()?;
        let mut key = [0; 32];
        let mut bad = 0;
        for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
            let (high, low) = (VALUE[pair[0] as usize], VALUE[pair[1] as usize]);
            bad |= high | low;
            *byte = high << 4 | low;
        }
        (bad & 0xf0 == 0).then_some(Key(key))
    }

    /// The key of a digest (None unless it is a sha256).
    pub fn of(digest: &Digest) -> Option<Key> {
        Key::from_hex(digest.hex())
    }

    /// The key of a digest as stored (`sha256:<hex>`), from its text or,
    /// as SQLite hands it over, its bytes.
    pub fn of_digest(digest: impl AsRef<[u8]>) -> Option<Key> {
        digest.as_ref().strip_prefix(b"sha256:").and_then(Key::from_hex)
    }

    /// The hex digits, as in the file name (a quick check names 70,000
    /// files by them: one allocation each, not one per byte).
    pub fn to_hex(self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            hex.push(DIGITS[usize::from(byte >> 4)].into());
            hex.push(DIGITS[usize::from(byte & 0xf)].into());
        }
        hex
    }
}

/// The kinds of artifact, each in a directory of its own, so that the
/// collector can tell what a file is from where it lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `layers/sha256/<hex>.erofs`
    Layer,
    /// `fsmeta/sha256/<hex>.erofs`
    Fsmeta,
    /// `vmdk/sha256/<hex>.vmdk`
    Vmdk,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Layer, Kind::Fsmeta, Kind::Vmdk];

    /// The directory, relative to the cache root.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Layer => "layers/sha256",
            Kind::Fsmeta => "fsmeta/sha256",
            Kind::Vmdk => "vmdk/sha256",
        }
    }

    /// What follows the hex digest in a file name.
    pub fn suffix(self) -> &'static str {
        match self {
            Kind::Layer | Kind::Fsmeta => ".erofs",
            Kind::Vmdk => ".vmdk",
        }
    }
}

/// A cache directory: paths of every artifact, temp files and locks.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed, owner-only) the cache rooted at `root`.
    /// The root is made absolute: VMDK descriptors name files by absolute
    /// path, and the process may change directory later. The root may be a
    /// symbolic link (to put the cache on another disk); the directories in
    /// it may not: temp files are renamed into the artifact directories, so
    /// all of them must be on the cache's own file system, and a `tmp/`
    /// that led elsewhere would put files being written outside the cache.
    pub fn open(root: &Path) -> Result<Store> {
        let root = &std::path::absolute(root).map_err(Error::cache(root))?;
        if !root.exists() {
            create_private_dir(root)?;
        }
        for dir in OTHER_DIRS.into_iter().chain(Kind::ALL.map(Kind::dir)) {
            let mut path = root.to_path_buf();
            for part in Path::new(dir).components() {
                path.push(part);
                real_dir(&path)?;
            }
        }
        Ok(Store { root: root.to_path_buf() })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite index file.
    pub fn db_path(&self) -> PathBuf {
        self.root.join(crate::os::native("db/index.sqlite"))
    }

    /// The directory of artifacts of `kind`.
    pub fn dir(&self, kind: Kind) -> PathBuf {
        self.root.join(crate::os::native(kind.dir()))
    }

    /// Where an artifact lives.
    pub fn path(&self, artifact: &Artifact) -> PathBuf {
        let kind = artifact.kind();
        self.dir(kind).join(format!("{}{}", artifact.digest().hex(), kind.suffix()))
    }

    /// Where the EROFS image of the layer with this diff_id lives.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.path(&Artifact::Layer(diff_id.clone()))
    }

    /// Where the merged metadata image of a manifest lives.
    pub fn fsmeta_path(&self, manifest: &Digest) -> PathBuf {
        self.path(&Artifact::Fsmeta(manifest.clone()))
    }

    /// Where the root-disk descriptor of a manifest lives.
    pub fn vmdk_path(&self, manifest: &Digest) -> PathBuf {
        self.path(&Artifact::Vmdk(manifest.clone()))
    }

    /// The directory for files being written.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The directory of lock files.
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// Makes every rename into the artifact directories durable (one fsync
    /// per directory, not per file); called before an index commit that may
    /// name files this or another process just published.
    pub fn sync_artifact_dirs(&self) -> Result<()> {
        for kind in Kind::ALL {
            let path = self.dir(kind);
            crate::os::sync_dir(&path).map_err(Error::cache(&path))?;
        }
        Ok(())
    }
}

/// Makes sure `path` is a directory of its own, creating it if missing and
/// refusing a symbolic link or anything else in its place.
fn real_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) => {
            let what = if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a directory"
            };
            let message = format!("{what}; the cache's directories must be its own (to keep the cache elsewhere, point MSB_HOME there)");
            Err(Error::cache(path)(io::Error::other(message)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(Error::cache(path)(e)),
            _ => real_dir(path),
        },
        Err(e) => Err(Error::cache(path)(e)),
    }
}

fn create_private_dir(path: &Path) -> Result<()> {
    crate::os::create_private_dir(path).map_err(Error::cache(path))
}

/// One entry of a cache directory, as the collector reads it.
pub struct Entry {
    /// The file name, lossily as text (artifact names are ASCII).
    pub name: String,
    /// The whole path.
    pub path: PathBuf,
    /// The order to delete in ([`crate::os::deletion_key`]).
    pub inode: u64,
}

/// The entries of `dir` (none if it is missing). A file that vanishes
/// meanwhile is simply not listed twice; nothing here stats a file.
pub fn entries(dir: &Path) -> Result<Vec<Entry>> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::cache(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(Error::cache(dir))?;
        out.push(Entry {
            name: entry.file_name().to_string_lossy().into_owned(),
            path: entry.path(),
            inode: crate::os::deletion_key(&entry),
        });
    }
    Ok(out)
}

/// Removes a file or directory tree, returning the bytes of the files it
/// held (measured just before each unlink), or None when it was already gone.
pub fn remove(path: &Path) -> Result<Option<u64>> {
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
    for entry in entries(path)? {
        bytes += remove(&entry.path)?.unwrap_or(0);
    }
    fs::remove_dir(path).map_err(Error::cache(path))?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spell_lowercase_sha256_hex() {
        let hex = "0123456789abcdef".repeat(4);
        let key = Key::from_hex(&hex).unwrap();
        assert_eq!(key.to_hex(), hex);
        assert_eq!(Key::of_digest(format!("sha256:{hex}")), Some(key));
        for bad in [&hex[1..], &hex.to_uppercase(), &format!("{}g", &hex[1..]), ""] {
            assert_eq!(Key::from_hex(bad), None, "{bad}");
        }
        assert_eq!(Key::of_digest(format!("sha512:{hex}")), None);
    }

    #[cfg(unix)]
    #[test]
    fn home_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("a/b");
        Store::open(&home).unwrap();
        assert_eq!(fs::metadata(&home).unwrap().permissions().mode() & 0o777, 0o700);
    }
}

//! The on-disk layout of a cache and the two rules that keep it consistent:
//! every file is written under `tmp/` and renamed into place only when it is
//! complete and verified, and processes coordinate through file locks.
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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Directories of a cache besides the artifact directories ([`Kind::dir`]),
/// all created on open.
const OTHER_DIRS: [&str; 3] = ["db", "tmp", "locks"];
const GC_LOCK: &str = "gc.lock";
const INDEX_LOCK: &str = "index.lock";

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
    /// path, and the process may change directory later.
    pub fn open(root: &Path) -> Result<Store> {
        let root = &std::path::absolute(root).map_err(Error::cache(root))?;
        if !root.exists() {
            create_private_dir(root)?;
        }
        for dir in OTHER_DIRS.into_iter().chain(Kind::ALL.map(Kind::dir)) {
            let path = root.join(crate::os::native(dir));
            if !path.is_dir() {
                fs::create_dir_all(&path).map_err(Error::cache(&path))?;
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

    /// Where an artifact lives.
    pub fn path(&self, artifact: &Artifact) -> PathBuf {
        let kind = artifact.kind();
        self.root
            .join(crate::os::native(kind.dir()))
            .join(format!("{}{}", artifact.digest().hex(), kind.suffix()))
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

    /// A new, empty temp file that disappears unless it is published.
    pub fn temp_file(&self) -> Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let name = format!("{}-{}-{:x}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos);
        let path = self.tmp_dir().join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(Error::cache(&path))?;
        Ok(TempFile { path, file: Some(file) })
    }

    /// Fills a new temp file from `reader`, returning it and its size. A
    /// failure to read is `read_error`'s to describe (a corrupt source is
    /// not the cache's fault); a failure to write is the cache's.
    pub fn temp_file_from(&self, reader: &mut impl Read, read_error: impl FnOnce(io::Error) -> Error) -> Result<(TempFile, u64)> {
        let mut tmp = self.temp_file()?;
        let path = tmp.path().to_path_buf();
        let mut out = io::BufWriter::new(tmp.file());
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            out.write_all(&buf[..n]).map_err(Error::cache(&path))?;
            size += n as u64;
        }
        out.flush().map_err(Error::cache(&path))?;
        drop(out);
        Ok((tmp, size))
    }

    /// Writes `bytes` to `dest` atomically, replacing any previous file.
    pub fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let mut tmp = self.temp_file()?;
        tmp.file().write_all(bytes).map_err(Error::cache(tmp.path()))?;
        tmp.publish(dest)
    }

    /// Makes every rename into the artifact directories durable (one fsync
    /// per directory, not per file); called before an index commit that may
    /// name files this or another process just published.
    pub fn sync_artifact_dirs(&self) -> Result<()> {
        for kind in Kind::ALL {
            let path = self.root.join(crate::os::native(kind.dir()));
            crate::os::sync_dir(&path).map_err(Error::cache(&path))?;
        }
        Ok(())
    }

    /// Shared side of the collector lock: held while adding files and rows, so
    /// that a collection never mistakes an ingest in progress for garbage.
    pub fn lock_ingest(&self) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join(GC_LOCK), false)
    }

    /// Exclusive side of the collector lock: held while deleting files.
    pub fn lock_collect(&self) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join(GC_LOCK), true)
    }

    /// Serializes the building of one artifact across threads and processes,
    /// so two builders of the same layer end with one good copy. Artifacts
    /// share 256 lock files by digest prefix: the set stays bounded (a lock
    /// file cannot safely be deleted while others may wait on it), and two
    /// different artifacts rarely wait on each other.
    pub fn lock_artifact(&self, kind: &str, digest: &Digest) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join(format!("{kind}-{}.lock", &digest.hex()[..2])), true)
    }

    /// Serializes opening (creating, migrating) the index across processes:
    /// SQLite does not wait for a busy database while switching it to WAL.
    pub fn lock_index(&self) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join(INDEX_LOCK), true)
    }
}

fn create_private_dir(path: &Path) -> Result<()> {
    crate::os::create_private_dir(path).map_err(Error::cache(path))
}

/// A file under `tmp/` that is deleted on drop unless published.
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// The open file, for writing.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("temp file is open until published")
    }

    /// Where it is being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file durable, then renames it to `dest`: whatever name it
    /// has after a crash, its content is complete. The rename itself is made
    /// durable by [`Store::sync_artifact_dirs`] before any index row names it.
    pub fn publish(mut self, dest: &Path) -> Result<()> {
        let file = self.file.take().expect("temp file is open until published");
        crate::os::sync_file(&file).map_err(Error::cache(&self.path))?;
        drop(file);
        crate::os::rename(&self.path, dest).map_err(Error::cache(dest))?;
        self.path.clear();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// An advisory lock on a file in `locks/`, released on drop. Locks are per
/// open file, so they exclude other threads of this process too.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    fn acquire(path: &Path, exclusive: bool) -> Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::cache(path))?;
        let locked = if exclusive { file.lock() } else { file.lock_shared() };
        locked.map_err(Error::cache(path))?;
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_vanish_unless_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("home")).unwrap();
        let tmp = store.temp_file().unwrap();
        let path = tmp.path().to_path_buf();
        assert!(path.exists());
        drop(tmp);
        assert!(!path.exists());

        let dest = store.vmdk_path(&Digest::of(b"x"));
        store.write_atomic(&dest, b"x").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"x");
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
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

    #[test]
    fn exclusive_lock_excludes_shared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let shared = store.lock_ingest().unwrap();
        let file = File::open(store.locks_dir().join(GC_LOCK)).unwrap();
        assert!(file.try_lock().is_err());
        drop(shared);
        assert!(file.try_lock().is_ok());
    }
}

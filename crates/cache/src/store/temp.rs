//! Publication: every file is written under `tmp/`, made durable, and
//! renamed into place only when complete and verified, so whatever name a
//! file has after a crash, its content is whole. A temp file not
//! published is deleted when dropped; one a crash leaves behind is
//! garbage the collector sweeps.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Store;
use crate::error::{Error, Result};

impl Store {
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
    /// not the cache's fault); a failure to write, or a file that would
    /// leave the disk without its reserve, is the cache's.
    pub fn temp_file_from(
        &self,
        reader: &mut impl Read,
        what: &str,
        read_error: impl FnOnce(io::Error) -> Error,
    ) -> Result<(TempFile, u64)> {
        let mut tmp = self.temp_file()?;
        let path = tmp.path().to_path_buf();
        let mut space = self.watch_space(what);
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
            space.wrote(n as u64).map_err(Error::cache(&path))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use oci::Digest;

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
}

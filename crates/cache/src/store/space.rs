//! Free space. A hostile input can claim any size: a sparse file of
//! exabytes, a small gzip archive that inflates a thousandfold. The cache
//! therefore never writes the last [`RESERVE`] bytes of its file system:
//! before a write of known size it checks there is room, and while a file
//! of unknown size grows it looks again every [`CHECK_EVERY`] bytes, so a
//! write that cannot fit stops with a `CacheError` saying how much room
//! there is and how much it needed, and the disk never fills up.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Store;
use crate::error::{Error, Result};

/// Free space the cache leaves to everything else on its file system.
pub const RESERVE: u64 = 256 << 20;
/// Bytes a growing file may take between two looks at the free space.
pub const CHECK_EVERY: u64 = 16 << 20;

impl Store {
    /// Refuses, with a `CacheError` naming the space needed, to start a
    /// write of `need` bytes that would leave less than [`RESERVE`] free.
    pub fn ensure_space(&self, need: u64, what: &str) -> Result<()> {
        let dir = self.tmp_dir();
        check(&dir, need, what).map_err(Error::cache(&dir))
    }

    /// Watches the free space while a file of unknown size is written
    /// under `tmp/`.
    pub fn watch_space(&self, what: impl Into<String>) -> SpaceWatch {
        SpaceWatch::on(self.tmp_dir(), what)
    }
}

/// Counts what a growing file has taken and looks at the free space every
/// [`CHECK_EVERY`] bytes.
pub struct SpaceWatch {
    /// The file system watched; none for a destination that takes no space.
    dir: Option<PathBuf>,
    what: String,
    written: u64,
    checked_at: u64,
}

impl SpaceWatch {
    /// Watches the file system holding `dir`.
    pub fn on(dir: PathBuf, what: impl Into<String>) -> SpaceWatch {
        SpaceWatch {
            dir: Some(dir),
            what: what.into(),
            written: 0,
            checked_at: 0,
        }
    }

    /// Watches nothing: for a device or FIFO, which keeps no bytes.
    pub fn unlimited() -> SpaceWatch {
        SpaceWatch {
            dir: None,
            what: String::new(),
            written: 0,
            checked_at: 0,
        }
    }

    /// Records `bytes` more written (or about to be); fails, with an error
    /// of kind `StorageFull` saying how much room is left, once the next
    /// stretch would not fit.
    pub fn wrote(&mut self, bytes: u64) -> io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        self.written += bytes;
        if self.written - self.checked_at < CHECK_EVERY && self.checked_at != 0 {
            return Ok(());
        }
        self.checked_at = self.written;
        check(dir, CHECK_EVERY, &format!("{} (after {} bytes)", self.what, self.written))
    }
}

/// A writer whose bytes a [`SpaceWatch`] counts before they are written.
pub struct Watched<W> {
    /// Where the bytes go.
    pub inner: W,
    /// What counts them.
    pub space: SpaceWatch,
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.space.wrote(buf.len() as u64)?;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether `need` more bytes fit on the file system of `dir` above the reserve.
fn check(dir: &Path, need: u64, what: &str) -> io::Result<()> {
    let free = crate::os::free_space(dir)?;
    if free >= need.saturating_add(RESERVE) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::StorageFull,
        format!(
            "not enough free space for {what}: it needs {need} more bytes, {free} are free and the cache leaves {RESERVE} to the rest of the system"
        ),
    ))
}

//! Where an archive goes. `outputPath` is resolved as `docker save -o`
//! resolves it, then written in the one way that cannot damage anything:
//!
//! - a regular file, or a name that does not exist yet: written beside
//!   it under a name nobody else uses and renamed over it when complete,
//!   so a reader never sees half an archive and a failed save leaves the
//!   old file as it was;
//! - a symbolic link: followed, and its target replaced that way (the
//!   link stays a link);
//! - a character device (`/dev/stdout`, `/dev/null`) or a FIFO: streamed
//!   into, as it cannot be replaced; a FIFO must already have a reader,
//!   or the save fails at once instead of waiting for one;
//! - anything inside the cache directory, a block device, a directory or
//!   a socket: refused, before anything is written. Renaming over a file
//!   of the cache would replace its index or an artifact a sandbox boots.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::write_error;
use crate::error::{Error, Result};
use crate::store::SpaceWatch;

/// An archive being written.
pub enum Output {
    /// Written beside `dest`, renamed over it when finished; removed unless finished.
    Replace {
        /// The file being written.
        path: PathBuf,
        /// Where it goes.
        dest: PathBuf,
        /// The open file.
        file: File,
        /// Renamed into place.
        done: bool,
    },
    /// Written straight into a device or FIFO.
    Stream {
        /// The open device or FIFO.
        file: File,
    },
}

impl Output {
    /// Resolves `output` and opens what the archive will be written to,
    /// refusing a destination inside `cache_home`.
    pub fn open(output: &Path, cache_home: &Path) -> Result<Output> {
        let refuse = |why: &str| Error::InvalidArgument(format!("outputPath {}: {why}", output.display()));
        let dest = resolve(output).map_err(|e| write_error(output, e))?;
        let home = fs::canonicalize(cache_home).map_err(Error::cache(cache_home))?;
        if dest.starts_with(&home) {
            return Err(refuse("is inside the cache directory; write the archive elsewhere"));
        }
        match fs::metadata(&dest) {
            Ok(meta) if meta.is_file() => Self::replace(&dest),
            Ok(meta) if is_stream(&meta) => Self::stream(&dest),
            Ok(meta) if meta.is_dir() => Err(refuse("is a directory")),
            Ok(_) => Err(refuse("is a block device or a socket, which an archive is not written over")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::replace(&dest),
            Err(e) => Err(write_error(output, e)),
        }
    }

    /// A new file beside `dest`, created exclusively, so a planted symlink
    /// or a concurrent save is never written through.
    fn replace(dest: &Path) -> Result<Output> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = dest
            .file_name()
            .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", dest.display())))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = dest.with_file_name(format!(
            ".{}.{}-{}-{nanos:x}.partial",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| write_error(dest, e))?;
        Ok(Output::Replace {
            path,
            dest: dest.to_path_buf(),
            file,
            done: false,
        })
    }

    /// Opens a device or FIFO for writing, never waiting for a FIFO's reader.
    fn stream(dest: &Path) -> Result<Output> {
        let mut options = OpenOptions::new();
        options.write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
        let file = options.open(dest).map_err(|e| match e.raw_os_error() {
            #[cfg(unix)]
            Some(libc::ENXIO) => write_error(dest, io::Error::other("a FIFO with no reader")),
            _ => write_error(dest, e),
        })?;
        #[cfg(unix)]
        blocking(&file).map_err(|e| write_error(dest, e))?;
        Ok(Output::Stream { file })
    }

    /// What watches the free space where the archive is written: a save
    /// leaves the destination's file system its reserve as the cache does
    /// its own (a device or FIFO keeps nothing).
    pub fn space(&self) -> SpaceWatch {
        match self {
            Output::Replace { path, .. } => SpaceWatch::on(path.parent().unwrap_or(Path::new("/")).to_path_buf(), "the archive"),
            Output::Stream { .. } => SpaceWatch::unlimited(),
        }
    }

    /// The file the archive is written into.
    pub fn file(&self) -> &File {
        match self {
            Output::Replace { file, .. } | Output::Stream { file, .. } => file,
        }
    }

    /// Makes the archive durable and, unless streamed, renames it into place.
    pub fn finish(mut self) -> Result<()> {
        match &mut self {
            Output::Replace { path, dest, file, done } => {
                crate::os::sync_file(file).map_err(|e| write_error(dest, e))?;
                crate::os::rename(path, dest).map_err(|e| write_error(dest, e))?;
                *done = true;
                Ok(())
            }
            // A device or FIFO has nothing to make durable.
            Output::Stream { .. } => Ok(()),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Output::Replace { path, done: false, .. } = self {
            let _ = fs::remove_file(path);
        }
    }
}

/// The absolute path an archive written to `output` lands at: symbolic
/// links followed (a dangling one to the file it names), the directory
/// resolved, so that both the cache check and the rename see the real place.
fn resolve(output: &Path) -> io::Result<PathBuf> {
    let mut path = std::path::absolute(output)?;
    for _ in 0..40 {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&path)?;
                path = path.parent().unwrap_or(Path::new("/")).join(target);
            }
            Ok(_) => return fs::canonicalize(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a file path"));
                };
                return Ok(fs::canonicalize(parent)?.join(name));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

#[cfg(unix)]
fn is_stream(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() || meta.file_type().is_fifo()
}

#[cfg(not(unix))]
fn is_stream(_: &fs::Metadata) -> bool {
    false
}

/// Clears `O_NONBLOCK`, which only served the open: writes then wait for
/// a slow reader instead of failing.
#[cfg(unix)]
fn blocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function's caller owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

//! Image archives: `docker save` tarballs (docker-archive), OCI image
//! layout directories, and OCI layout tarballs (oci-archive), optionally
//! gzip- or zstd-compressed. Loading resolves the images an archive holds
//! into verified manifests and configs; the blobs are read in place later.

mod docker;
mod layout;
mod tarfile;

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use oci::progress::Sink;
use oci::{Descriptor, Platform, Reference};

use super::meter::Meter;
use super::BlobSource;
use crate::error::{Error, Result};
use crate::ingest::ResolvedImage;
use crate::store::{Store, TempFile};
use crate::stream::compression::Decoder;
use tarfile::TarIndex;

/// How to import an archive.
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// Name the (single) image this instead of the names in the archive.
    pub tag: Option<Reference>,
    /// Platform to pick from multi-platform indexes (default: the host's).
    pub platform: Option<Platform>,
    /// Receives `archive` (bytes read) and `layer` events.
    pub progress: Option<Sink>,
    /// Set to true to abort: the load stops at its next read with `Aborted`.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl LoadOptions {
    /// Whether the caller has cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Where an archive's members live.
enum Container {
    Tar(TarIndex),
    Dir(PathBuf),
}

/// An opened archive: reads members, and serves blobs to the ingest.
pub struct Archive {
    path: PathBuf,
    container: Container,
    /// Member names of blobs that are not at `blobs/<alg>/<hex>`.
    named_blobs: Vec<(Descriptor, String)>,
    /// Keeps a decompressed copy of a compressed archive alive.
    _decompressed: Option<TempFile>,
    /// Counts what the load reads, and carries its cancellation.
    meter: Meter,
}

impl Archive {
    /// Opens `path`, detecting directory or tar, compressed or not; a
    /// compressed one is decompressed now, its bytes read counted by `meter`.
    pub fn open(path: &Path, store: &Store, meter: Meter) -> Result<Archive> {
        let meta = fs::metadata(path).map_err(|e| Error::archive(path, format!("cannot open: {e}")))?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(Error::archive(path, NOT_REGULAR));
        }
        if meta.is_dir() {
            let root = fs::canonicalize(path).map_err(|e| Error::archive(path, format!("cannot open: {e}")))?;
            return Ok(Archive {
                path: path.to_path_buf(),
                container: Container::Dir(root),
                named_blobs: Vec::new(),
                _decompressed: None,
                meter,
            });
        }
        let decompressed = decompress_if_needed(path, store, &meter)?;
        let tar_path = decompressed.as_ref().map_or(path, |t| t.path());
        let container = Container::Tar(TarIndex::open(tar_path).map_err(|e| match e {
            Error::Archive { message, .. } => Error::archive(path, message),
            other => other,
        })?);
        Ok(Archive {
            path: path.to_path_buf(),
            container,
            named_blobs: Vec::new(),
            _decompressed: decompressed,
            meter,
        })
    }

    /// Resolves the images the archive holds, named and platform-selected.
    pub fn resolve(&mut self, options: &LoadOptions) -> Result<Vec<ResolvedImage>> {
        let want = options.platform.clone().unwrap_or_else(Platform::host);
        let mut images = if self.exists("index.json") {
            layout::resolve(self, &want)?
        } else if self.exists("manifest.json") {
            docker::resolve(self)?
        } else {
            return Err(self.error("neither an OCI layout (no index.json) nor a docker archive (no manifest.json)"));
        };
        if images.is_empty() {
            return Err(self.error("the archive holds no images"));
        }
        if let Some(tag) = &options.tag {
            if images.len() != 1 {
                return Err(Error::InvalidArgument(format!(
                    "tag names one image, but {} holds {}",
                    self.path.display(),
                    images.len()
                )));
            }
            images[0].references = vec![tag.clone()];
        }
        if let Some(unnamed) = images.iter().find(|i| i.references.is_empty()) {
            return Err(self.error(format!("image {} has no name in the archive; pass a tag", unnamed.manifest_digest)));
        }
        // From here on the load reads the layers: count towards their bytes.
        let mut layers: Vec<&Descriptor> = images.iter().flat_map(|i| &i.manifest.layers).collect();
        layers.sort_by(|a, b| a.digest.cmp(&b.digest));
        layers.dedup_by(|a, b| a.digest == b.digest);
        self.meter.start(layers.iter().map(|l| l.size).sum());
        Ok(images)
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::archive(&self.path, message)
    }

    fn exists(&self, name: &str) -> bool {
        match &self.container {
            Container::Tar(index) => index.contains(name),
            Container::Dir(_) => self.dir_member(name).is_ok_and(|p| p.exists()),
        }
    }

    /// A directory member's path, refusing names or symlinks leading outside.
    fn dir_member(&self, name: &str) -> Result<PathBuf> {
        let Container::Dir(root) = &self.container else {
            unreachable!("only directories have member paths")
        };
        let relative = tarfile::normalize(name).map_err(|m| self.error(m))?;
        let path = root.join(&relative);
        let real = fs::canonicalize(&path).map_err(|e| self.error(format!("{relative}: {e}")))?;
        if !real.starts_with(root) {
            return Err(self.error(format!("{relative} links outside the layout")));
        }
        Ok(real)
    }

    /// Opens a directory member, a regular file, and measures it.
    fn open_dir_member(&self, name: &str) -> Result<(File, u64)> {
        let path = self.dir_member(name)?;
        let file = open_regular(&path).map_err(|e| self.error(format!("{name}: {e}")))?;
        let size = file.metadata().map_err(|e| self.error(format!("{name}: {e}")))?.len();
        Ok((file, size))
    }

    /// Reads a member whole (at most `limit` bytes, however much it holds).
    fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        match &self.container {
            Container::Tar(index) => index.read_member(name, limit),
            Container::Dir(_) => {
                let (file, size) = self.open_dir_member(name)?;
                let too_large = |size: u64| self.error(format!("{name} is {size} bytes, more than the {limit} allowed"));
                if size > limit {
                    return Err(too_large(size));
                }
                let mut bytes = Vec::with_capacity(size as usize);
                file.take(limit + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| self.error(format!("{name}: {e}")))?;
                if bytes.len() as u64 > limit {
                    return Err(too_large(bytes.len() as u64));
                }
                Ok(bytes)
            }
        }
    }

    /// Opens a member for streaming.
    fn open_member(&self, name: &str) -> Result<Box<dyn Read + Send + '_>> {
        match &self.container {
            Container::Tar(index) => Ok(Box::new(index.open_member(name)?)),
            Container::Dir(_) => Ok(Box::new(self.open_dir_member(name)?.0)),
        }
    }

    /// The size of a member.
    fn member_size(&self, name: &str) -> Result<u64> {
        match &self.container {
            Container::Tar(index) => index.size(name),
            Container::Dir(_) => Ok(self.open_dir_member(name)?.1),
        }
    }

    /// Where a blob is: its registered member name, or the OCI layout path.
    fn blob_member(&self, blob: &Descriptor) -> String {
        self.named_blobs
            .iter()
            .find(|(d, _)| d.digest == blob.digest)
            .map(|(_, name)| name.clone())
            .unwrap_or_else(|| format!("blobs/sha256/{}", blob.digest.hex()))
    }
}

impl BlobSource for Archive {
    fn open(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.meter.reader(self.open_member(&self.blob_member(blob))?)))
    }

    fn read_error(&self, blob: &Descriptor, error: io::Error) -> Error {
        self.error(format!("reading blob {}: {error}", blob.digest))
    }
}

/// `docker save | gzip` is a common way to ship images: decompress such
/// archives into a temp file so members can be read in place.
fn decompress_if_needed(path: &Path, store: &Store, meter: &Meter) -> Result<Option<TempFile>> {
    let file = open_regular(path).map_err(|e| Error::archive(path, format!("cannot open: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| Error::archive(path, format!("cannot read: {e}")))?
        .len();
    let mut decoder = Decoder::sniff(BufReader::new(meter.reader(file))).map_err(|e| Error::archive(path, format!("cannot read: {e}")))?;
    if !decoder.is_compressed() {
        return Ok(None);
    }
    meter.start(size);
    let what = format!("the decompressed copy of {}", path.display());
    let (tmp, _) = store.temp_file_from(&mut decoder, &what, |e| {
        Error::archive(path, format!("corrupt compressed archive: {e}"))
    })?;
    Ok(Some(tmp))
}

const NOT_REGULAR: &str = "not a regular file or directory (a FIFO, socket or device cannot be loaded)";

/// Opens `path` for reading only if it is a regular file. On Unix the open
/// itself does not block (`O_NONBLOCK`), so a FIFO put in a file's place is
/// refused instead of waiting forever for a writer; the descriptor's own
/// type is checked after opening, so no swap between a check and the open
/// gets through.
pub(super) fn open_regular(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, NOT_REGULAR));
    }
    Ok(file)
}

/// Parses a name found in an archive; a bare word such as `latest` is a tag
/// without a repository, so it names nothing.
fn archive_name(name: &str) -> Option<Reference> {
    if !name.contains(['/', ':', '@']) {
        return None;
    }
    Reference::parse(name).ok()
}

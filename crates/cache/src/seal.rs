//! Seals: the digests recorded when an artifact is published, which a
//! full check (`Image.check({ full: true })`) compares against, so that a
//! byte flipped anywhere later is found.
//!
//! A layer image's bytes are file data, zero padding and metadata. File
//! data is already covered by the layer's diff_id (the framing rebuilds the
//! exact tar from the image), so the seal covers what that does not reach:
//! the superblock block and the metadata area of a layer written before
//! packing (whose padding a full check reads to be zero), and everything
//! but file data (padding and packed records included) of a packed one.
//! That is a small read of a file just written (still in the page cache),
//! where hashing the whole image while converting would cost as much as
//! hashing the tar a second time. fsmeta and VMDK files are
//! small: their seal is the sha256 of the whole file.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::thread::JoinHandle;

use erofs::reader::{FileMap, Image};

use oci::digest::HashingWriter;
use oci::Digest;

use crate::error::{Error, Result};
use crate::index::write::DiskSeals;
use crate::index::{audit, Index};
use crate::store::Store;

/// Bytes read at a time while hashing a layer image's non-data bytes.
const READ: usize = 256 << 10;

/// The seal of a layer image, read from disk.
pub fn layer(path: &Path) -> Result<Digest> {
    let (file, image) = open_layer(path)?;
    layer_of(&file, &image).map_err(|e| unreadable(path, e))
}

/// A layer image opened for [`layer_of`]: open before it is renamed, the
/// seal can be taken while it is published.
pub fn open_layer(path: &Path) -> Result<(File, Image)> {
    let image = erofs::reader::Image::open(path).map_err(|e| unreadable(path, e))?;
    let file = File::open(path).map_err(Error::cache(path))?;
    Ok((file, image))
}

/// A seal being taken on a thread of its own, beside whatever the caller
/// does next. Dropped unjoined, it still waits for the thread, which
/// reads a file the caller's lease keeps and must not outlive it.
struct Beside(Option<JoinHandle<Result<Digest>>>);

impl Beside {
    fn start(what: &str, work: impl FnOnce() -> Result<Digest> + Send + 'static) -> Result<Self> {
        let thread = std::thread::Builder::new()
            .name("msb-seal".into())
            .spawn(work)
            .map_err(|e| Error::Internal(format!("cannot start sealing {what}: {e}")))?;
        Ok(Beside(Some(thread)))
    }

    fn join(mut self) -> Result<Digest> {
        let thread = self.0.take().expect("a seal is joined once");
        thread
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("taking a seal panicked".into())))
    }
}

impl Drop for Beside {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// A layer image's seal being taken on a thread of its own. Its row is
/// recorded without one (as a cache from before seals would be: a cache
/// opened meanwhile seals it itself), so that the conversion does not
/// wait for a read of the whole image: the seal of a layer of small files
/// hashes nearly all of it.
pub struct Sealing {
    diff_id: Digest,
    thread: Beside,
}

impl Sealing {
    /// Starts sealing the image at `path` (opened now, so that it can be
    /// renamed to `dest` meanwhile) of layer `diff_id`.
    pub fn start(path: &Path, dest: &Path, diff_id: &Digest) -> Result<Self> {
        let (file, image) = open_layer(path)?;
        let dest = dest.to_path_buf();
        let thread = Beside::start("a layer image", move || layer_of(&file, &image).map_err(|e| unreadable(&dest, e)))?;
        Ok(Sealing {
            diff_id: diff_id.clone(),
            thread,
        })
    }

    /// Waits for the seals of `sealings` and records them in one write.
    pub fn record_all(sealings: Vec<Sealing>, index: &Index) -> Result<()> {
        let mut seals = Vec::with_capacity(sealings.len());
        for sealing in sealings {
            seals.push((sealing.diff_id, sealing.thread.join()?));
        }
        if seals.is_empty() {
            return Ok(());
        }
        // Lost in a power cut, a seal is taken again when the cache is next opened.
        index.write_lazily(|tx| seals.iter().try_for_each(|(diff_id, seal)| audit::seal_layer(tx, diff_id, seal)))
    }
}

/// A whole file's seal ([`file`]) being taken on a thread of its own: an
/// fsmeta just written is hashed while it is made durable.
pub struct FileSealing(Beside);

impl FileSealing {
    /// Starts sealing the file at `path` (opened now, so that it can be
    /// renamed meanwhile).
    pub fn start(path: &Path) -> Result<Self> {
        let opened = File::open(path).map_err(Error::cache(path))?;
        let path = path.to_path_buf();
        Ok(FileSealing(Beside::start("a file", move || {
            Ok(hash_file(opened).map_err(Error::cache(&path))?.0)
        })?))
    }

    /// Waits for the seal.
    pub fn join(self) -> Result<Digest> {
        self.0.join()
    }
}

/// [`layer`] of an image already open: a full check has the file open to
/// rebuild its tar. A layer written before packing (its metadata area
/// after its data): its first block, then its metadata area to the end.
/// A packed layer (`meta_blkaddr` 0, records among the data): every byte
/// but its regular files' data ([`data_extents`]), in order.
pub fn layer_of(file: &File, image: &Image) -> std::result::Result<Digest, erofs::Error> {
    let mut out = HashingWriter::new(io::sink());
    let mut buf = vec![0u8; READ];
    let meta_start = image.meta_blkaddr() * erofs::BLOCK_SIZE;
    let end = image.file_len();
    if meta_start > 0 {
        hash_range(file, 0, erofs::BLOCK_SIZE.min(meta_start).min(end), &mut buf, &mut out)?;
        hash_range(file, meta_start, end.saturating_sub(meta_start), &mut buf, &mut out)?;
        return Ok(out.finish().0);
    }
    let mut extents = data_extents(image)?;
    extents.sort_unstable();
    let mut cursor = 0;
    for (start, len) in extents.into_iter().chain([(end, 0)]) {
        // A damaged record may name data past the end: nothing is there.
        let stop = start.min(end);
        if stop > cursor {
            hash_range(file, cursor, stop - cursor, &mut buf, &mut out)?;
        }
        cursor = cursor.max(start + len);
    }
    Ok(out.finish().0)
}

/// Hashes the `len` bytes of `file` at `start` (within the file) into
/// `out` with positioned reads: a packed layer has a range per large file,
/// and a seek per range would double the system calls.
fn hash_range(file: &File, start: u64, len: u64, buf: &mut [u8], out: &mut impl Write) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let chunk = &mut buf[..want];
        erofs::read_exact_at(file, chunk, start + done)?;
        out.write_all(chunk)?;
        done += chunk.len() as u64;
    }
    Ok(())
}

/// (offset, length) of every stored run of regular-file data in a layer
/// image: what its diff_id covers through the framing.
pub fn data_extents(image: &Image) -> std::result::Result<Vec<(u64, u64)>, erofs::Error> {
    let mut extents = Vec::new();
    let mut seen = HashSet::new();
    let mut dirs = vec![image.root_nid()];
    while let Some(nid) = dirs.pop() {
        let dir = image.inode(nid)?;
        for entry in image.read_dir(&dir)? {
            if !seen.insert(entry.nid) {
                continue;
            }
            let inode = image.inode(entry.nid)?;
            if inode.is_dir() {
                dirs.push(entry.nid);
            } else if inode.is_regular() {
                match image.file_map(&inode)? {
                    FileMap::Tail { blkaddr, tail_len } => {
                        if inode.size >= erofs::BLOCK_SIZE {
                            extents.push((blkaddr * erofs::BLOCK_SIZE, inode.size - u64::from(tail_len)));
                        }
                    }
                    FileMap::Contiguous { blkaddr } => extents.push((blkaddr * erofs::BLOCK_SIZE, inode.size)),
                    FileMap::Chunked { chunkbits, chunks } => {
                        let chunk = erofs::BLOCK_SIZE << chunkbits;
                        for (i, addr) in chunks.iter().enumerate() {
                            let Some(addr) = addr.filter(|a| a.device_id == 0) else { continue };
                            let len = chunk.min(inode.size - i as u64 * chunk);
                            extents.push((addr.blkaddr * erofs::BLOCK_SIZE, len));
                        }
                    }
                }
            }
        }
    }
    Ok(extents)
}

/// The seal of a whole file (fsmeta, VMDK), and its size.
pub fn file(path: &Path) -> Result<(Digest, u64)> {
    let file = File::open(path).map_err(Error::cache(path))?;
    hash_file(file).map_err(Error::cache(path))
}

fn hash_file(mut file: File) -> io::Result<(Digest, u64)> {
    let mut out = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut out)?;
    let (digest, size, _) = out.finish();
    Ok((digest, size))
}

/// A layer or fsmeta image the EROFS reader refuses, as a cache error on it.
pub fn unreadable(path: &Path, error: erofs::Error) -> Error {
    match error {
        erofs::Error::Io(source) => Error::cache(path)(source),
        other => Error::Cache {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        },
    }
}

/// The seals of a manifest's fsmeta and VMDK, as they are on disk now;
/// `fsmeta`, when given, is the fsmeta seal [`crate::disk::ensure`] took
/// as it published the file.
pub fn disk(store: &Store, manifest: &Digest, fsmeta: Option<Digest>) -> Result<DiskSeals> {
    let fsmeta = match fsmeta {
        Some(seal) => seal,
        None => file(&store.fsmeta_path(manifest))?.0,
    };
    Ok(DiskSeals {
        fsmeta,
        vmdk: file(&store.vmdk_path(manifest))?.0,
    })
}

//! Seals: the digests recorded when an artifact is published, which a
//! full check (`Image.check({ full: true })`) compares against, so that a
//! byte flipped anywhere later is found.
//!
//! A layer image's bytes are file data, zero padding and metadata. File
//! data is already covered by the layer's diff_id (the framing rebuilds the
//! exact tar from the image), and padding is checked to be zero, so the
//! seal covers only what neither reaches: the superblock block and the
//! metadata area. That is a small read of a file just written (still in the
//! page cache), where hashing the whole image while converting would cost
//! as much as hashing the tar a second time. fsmeta and VMDK files are
//! small: their seal is the sha256 of the whole file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use oci::digest::HashingWriter;
use oci::Digest;

use crate::error::{Error, Result};
use crate::index::write::DiskSeals;
use crate::store::Store;

/// Where a layer image's metadata area starts (bytes), from its superblock.
pub fn layer_meta_start(path: &Path) -> Result<u64> {
    let image = erofs::reader::Image::open(path).map_err(|e| unreadable(path, e))?;
    Ok(image.meta_blkaddr() * erofs::BLOCK_SIZE)
}

/// The seal of a layer image: sha256 of its first block (the superblock)
/// followed by its metadata area, up to the end of the file.
pub fn layer(path: &Path) -> Result<Digest> {
    let meta_start = layer_meta_start(path)?;
    let file = File::open(path).map_err(Error::cache(path))?;
    layer_of(&file, meta_start).map_err(Error::cache(path))
}

/// [`layer`] of an image already open, whose metadata area starts at
/// `meta_start`: a full check has the file open to rebuild its tar.
pub fn layer_of(mut file: &File, meta_start: u64) -> io::Result<Digest> {
    let mut out = HashingWriter::new(io::sink());
    file.seek(SeekFrom::Start(0))?;
    io::copy(&mut file.take(erofs::BLOCK_SIZE.min(meta_start)), &mut out)?;
    file.seek(SeekFrom::Start(meta_start))?;
    io::copy(&mut file, &mut out)?;
    Ok(out.finish().0)
}

/// The seal of a whole file (fsmeta, VMDK), and its size.
pub fn file(path: &Path) -> Result<(Digest, u64)> {
    let mut file = File::open(path).map_err(Error::cache(path))?;
    let mut out = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut out).map_err(Error::cache(path))?;
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

/// The seals of a manifest's fsmeta and VMDK, as they are on disk now.
pub fn disk(store: &Store, manifest: &Digest) -> Result<DiskSeals> {
    Ok(DiskSeals {
        fsmeta: file(&store.fsmeta_path(manifest))?.0,
        vmdk: file(&store.vmdk_path(manifest))?.0,
    })
}

//! EROFS images for OCI layers.
//!
//! * [`build_layer`] turns one uncompressed tar stream into a "layer
//!   image": file data block-aligned and uncompressed, small files and
//!   tails packed beside their inodes, the rest of the metadata after it.
//! * [`build_fsmeta`] merges layer images (OCI changeset rules, overlay
//!   whiteouts) into a metadata-only image for the disk
//!   `fsmeta ++ layer1 ++ layer2 ...` (one flat device, as the kernel
//!   mounts it with no device options): its entries name the layers'
//!   packed records there, and its own inodes point at their blocks.
//! * [`write_tar`] rebuilds a layer's exact tar from its image and the
//!   framing record [`build_layer`] wrote (see the `framing` module).
//! * [`reader`] reads the images back.
//!
//! The crate knows nothing about registries or caches: it is the on-disk
//! format only. What an archive may make it spend (memory, CPU, disk) is
//! bounded by the constants of [`limits`], whatever its headers say.
//!
//! # On-disk choices
//!
//! * 4 KiB blocks, 64-byte extended inodes everywhere (32-bit ids,
//!   per-inode mtime with nanoseconds), superblock checksum (crc32c)
//!   always set.
//! * Xattrs inline after their inode, except entries of 256 bytes or
//!   more that several inodes have, which go once into the shared xattr
//!   area after the directory blocks (a global pax xattr must not be
//!   copied into every file).
//! * Layer image: block 0 superblock, block 1 the root's record, file
//!   data from block 2 (each regular file's whole blocks block-aligned and
//!   uncompressed; its last partial block, when it fits, in a record with
//!   its inode packed with others into shared blocks: the `pack` module), then the
//!   other inodes, then directory and large symlink blocks. `meta_blkaddr`
//!   is 0, so nids are byte offsets / 32. Small directory tails and
//!   symlink targets are inlined. Images written before packing (file
//!   data from block 1, metadata area after it) are still read.
//! * Sparse files: chunk-based inodes with a 4-byte block map whose hole
//!   entries are null; the chunk size is chosen per file.
//! * Directories created only because a deeper path needed them carry
//!   the xattr [`IMPLICIT_XATTR`] (`trusted.msb.implicit`, invisible to
//!   unprivileged users); fsmeta uses it to take directory metadata from
//!   the topmost explicit entry, and drops it.
//! * OCI whiteouts are stored overlay-style: `.wh.x` becomes a 0/0
//!   character device `x`, `.wh..wh..opq` sets `trusted.overlay.opaque=y`.
//! * fsmeta: block 0 holds the superblock and the device table (one slot
//!   per layer: its tag and size, `mapped_blkaddr` 0); every address is
//!   one on the concatenated disk: directory entries name self-contained
//!   layer records there, regular files with blocks are chunk-based with a
//!   4-byte block map (or tail-packed with the tail copied). fsmeta
//!   written before packing used 8-byte chunk indexes naming device
//!   `layer index + 1` and mapped each layer; it is still read.

#![warn(missing_docs)]
// Format code over untrusted bytes: memory safety must not depend on
// getting every offset right, and fuzzing can run without sanitizers.
#![forbid(unsafe_code)]

mod dir;
mod format;
mod framing;
mod fsmeta;
mod layer;
pub mod limits;
mod pack;
pub mod reader;
mod sequential;
mod sparse;
mod tar;
mod tree;
mod writer;
mod xattr;

use std::fs::File;
use std::path::Path;

/// Positioned reads, which leave the file's cursor alone on unix: the
/// cache's seal reads a layer image range by range with them.
pub use sequential::read_exact_at;
pub use writer::IMPLICIT_XATTR;

/// Extended attributes as (full name such as `user.x`, value) pairs;
/// names and values are bytes, as the kernel sees them.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Block size used for every image we write (the only one the kernel
/// accepts on 4 KiB-page machines without extra options).
pub const BLOCK_SIZE: u64 = 4096;

/// Errors, kept coarse so callers can map them to their own kinds.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The tar stream is malformed: truncated, bad checksum, bad numeric
    /// field, absurd size, unknown required pax/sparse form.
    #[error("invalid tar at byte {offset}: {message}")]
    InvalidTar {
        /// Byte offset in the stream of the offending entry's header.
        offset: u64,
        /// What is wrong, for humans.
        message: String,
    },
    /// An entry path or hardlink target escapes the root or contains `..`
    /// (or a hardlink points at nothing earlier in the stream).
    #[error("unsafe path {path:?}: {message}")]
    UnsafePath {
        /// The path as written in the archive (lossy UTF-8).
        path: String,
        /// What is wrong, for humans.
        message: String,
    },
    /// An input layer image is not a valid EROFS image we can read.
    #[error("invalid EROFS image: {message}")]
    InvalidImage {
        /// What is wrong, for humans.
        message: String,
    },
    /// A framing record (see [`build_layer`] and [`write_tar`]) is
    /// truncated, corrupt, of an unknown version, or points outside the
    /// image it is replayed against: the tar cannot be rebuilt from it.
    #[error("invalid tar framing: {message}")]
    InvalidFraming {
        /// What is wrong, for humans.
        message: String,
    },
    /// Limits of the format (e.g. more than 2^32 blocks) or of
    /// [`limits`] (e.g. the memory budget) exceeded: the input may be
    /// well formed, but this crate will not spend what it asks for.
    #[error("too large for EROFS: {message}")]
    TooLarge {
        /// Which limit, for humans.
        message: String,
    },
}

/// What [`build_layer`] produced, for the caller's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSummary {
    /// Image file size, a multiple of [`BLOCK_SIZE`].
    pub size_bytes: u64,
    /// Inodes reachable in the image.
    pub inodes: u64,
    /// Regular-file bytes copied from the tar (holes and padding excluded).
    pub data_bytes: u64,
}

/// Streams an uncompressed tar into a layer image written to `out` (an
/// empty file; it is written with seeks). The tar is read to EOF,
/// including end-of-archive blocks and trailing bytes, so a hashing
/// wrapper around the reader sees the whole stream. On error the caller
/// discards `out` and `framing`.
///
/// `framing` receives, as the tar is read, the raw (uncompressed) record
/// of every tar byte the image does not store and of where the stored
/// ones went, so [`write_tar`] can later rebuild the exact tar from the
/// image; callers that never export pass `&mut std::io::sink()`.
///
/// The tar comes buffered (a `BufReader` of 1 MiB, or the caller's own
/// buffers): file data goes to the image straight from that buffer.
pub fn build_layer<R: std::io::BufRead>(tar: R, out: &File, framing: &mut dyn std::io::Write) -> Result<LayerSummary, Error> {
    layer::build(tar, out, framing)
}

/// Rebuilds the tar stream byte for byte from a layer image and the
/// framing [`build_layer`] wrote for it; returns bytes written. The image
/// is streamed with bounded buffers. Garbage framing yields
/// [`Error::InvalidFraming`] before anything is written; an image that
/// changed under the framing shows only in the caller's digest check.
pub fn write_tar(image: &File, framing: &[u8], out: &mut dyn std::io::Write) -> Result<u64, Error> {
    framing::write_tar(image, framing, out)
}

/// One input of [`build_fsmeta`].
#[derive(Debug, Clone, Copy)]
pub struct FsmetaLayer<'a> {
    /// Layer image written by [`build_layer`].
    pub path: &'a Path,
    /// Device-table tag, at most 64 bytes (e.g. the layer's diff_id hex),
    /// so tools can tell which file each device slot expects.
    pub tag: &'a [u8],
}

/// What [`build_fsmeta`] produced; the caller needs the mapped addresses
/// to lay the layers out after fsmeta on the final disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmetaSummary {
    /// fsmeta file size, a multiple of [`BLOCK_SIZE`].
    pub size_bytes: u64,
    /// Each layer's mapped_blkaddr, in blocks, same order as the input.
    pub mapped_blkaddrs: Vec<u64>,
    /// Inodes in the merged tree.
    pub inodes: u64,
}

/// Merges layer images (bottom to top) into a metadata-only fsmeta image
/// written to `out`; no file data is copied.
pub fn build_fsmeta(layers: &[FsmetaLayer<'_>], out: &File) -> Result<FsmetaSummary, Error> {
    fsmeta::build(layers, out)
}

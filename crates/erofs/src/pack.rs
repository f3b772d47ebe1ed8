//! Packed files: a layer's regular files whose last partial block fits
//! beside their inode, written as one record (inode, inline xattrs, that
//! tail) among the file data as the tar streams, several to a block; the
//! whole blocks before the tail, if any, are streamed as other files'.
//!
//! Giving every file's tail a 4 KiB block of its own made a layer of
//! small files take twice the disk mkfs.erofs needs for it. A packed
//! record is a tail-packed (`FLAT_INLINE`) inode; the writer names it by
//! where it is ([`crate::tree::Kind::Placed`]). A small file's record has
//! no blocks, so it refers to nothing outside itself and fsmeta points at
//! it instead of copying it; a larger file's tail fsmeta copies (see
//! [`crate::fsmeta`]). Either needs the xattrs all inline (shared ones
//! are found through the superblock that reads them, which in the root
//! disk is fsmeta's) and the record within one block, as the kernel
//! requires of inline data.
//!
//! A pack's block is reserved in the data stream when the pack opens, so
//! the tar framing can record each file's data at its final offset, and
//! filled in once no further record fits.

use crate::format::{RawInode, INODE_SIZE, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN, NID_UNIT, S_IFREG};
use crate::xattr;
use crate::BLOCK_SIZE;

const BLOCK: usize = BLOCK_SIZE as usize;

/// Files of more whole blocks than this keep their tail in a block of its
/// own: erofs-utils reads a tail-packed file's blocks in one piece, and
/// fsmeta caps such reads at 64 MiB (its chunk size).
pub const TAIL_BLOCKS_MAX: u64 = 1 << 14;

/// The length of the packed record of a file of `size` bytes with these
/// (checked) xattrs; `None` when the file is not packed: its tail and
/// inode would not fit one block, it has too many blocks, or it ends on
/// a block boundary (a file of one block or more).
pub fn record_len(xattrs: &[(Vec<u8>, Vec<u8>)], size: u64) -> Option<usize> {
    let (blocks, tail) = (size / BLOCK_SIZE, size % BLOCK_SIZE);
    if blocks > TAIL_BLOCKS_MAX || (blocks > 0 && tail == 0) {
        return None;
    }
    let len = (INODE_SIZE + xattr::body_size(0, xattrs)) as u64 + tail;
    (len <= BLOCK_SIZE).then_some(len as usize)
}

/// The metadata of a packed file's inode.
pub struct PackedInode<'a> {
    /// Where the file's whole blocks start (unused without any).
    pub blkaddr: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub size: u64,
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Packs open at once: a record goes into the first with room, so a
/// pack is closed only once eight are open, and then the fullest goes.
/// (With one open pack, the space left when the next record did not fit
/// cost a small-files layer about 5 % more disk.)
const OPEN_MAX: usize = 8;

/// One block being filled, in memory until it is closed.
struct Open {
    /// Block the pack was given in the data stream.
    blk: u64,
    used: usize,
    buf: Box<[u8]>,
}

/// The packs being filled.
#[derive(Default)]
pub struct Packs {
    open: Vec<Open>,
}

impl Packs {
    /// Where a record of `len` bytes would go in an open pack (its byte
    /// offset in the image); `None` if none has room.
    pub fn place(&self, len: usize) -> Option<u64> {
        let p = self.open.iter().find(|p| p.used + len <= BLOCK)?;
        Some(p.blk * BLOCK_SIZE + p.used as u64)
    }

    /// Opens a pack in block `blk` (reserved by the caller). If that makes
    /// too many, the fullest is closed: its block and contents are
    /// returned to be written.
    pub fn open(&mut self, blk: u64) -> Option<(u64, Box<[u8]>)> {
        self.open.push(Open {
            blk,
            used: 0,
            buf: vec![0u8; BLOCK].into_boxed_slice(),
        });
        if self.open.len() <= OPEN_MAX {
            return None;
        }
        let (i, _) = self.open.iter().enumerate().max_by_key(|(_, p)| p.used)?;
        let p = self.open.swap_remove(i);
        Some((p.blk, p.buf))
    }

    /// Closes every pack: their blocks and contents, to be written.
    pub fn close_all(&mut self) -> Vec<(u64, Box<[u8]>)> {
        self.open.drain(..).map(|p| (p.blk, p.buf)).collect()
    }

    /// Writes the record placed at `at` (from [`Packs::place`]), inode and
    /// xattrs, and returns the slice the file's tail goes into.
    pub fn record(&mut self, at: u64, inode: &PackedInode<'_>) -> &mut [u8] {
        let blk = at / BLOCK_SIZE;
        let p = self
            .open
            .iter_mut()
            .find(|p| p.blk == blk)
            .expect("records are placed in open packs");
        let start = (at % BLOCK_SIZE) as usize;
        let body = xattr::body_size(0, inode.xattrs);
        let tail = (inode.size % BLOCK_SIZE) as usize;
        let end = start + INODE_SIZE + body + tail;
        let rec = &mut p.buf[start..end];
        RawInode {
            layout: if inode.size > 0 { LAYOUT_FLAT_INLINE } else { LAYOUT_FLAT_PLAIN },
            xattr_icount: xattr::icount(body),
            mode: (S_IFREG | inode.mode) as u16,
            size: inode.size,
            i_u: if inode.size >= BLOCK_SIZE { inode.blkaddr as u32 } else { 0 },
            ino: (at / NID_UNIT) as u32,
            uid: inode.uid,
            gid: inode.gid,
            mtime: inode.mtime,
            mtime_nsec: inode.mtime_nsec,
            nlink: 1,
        }
        .encode(rec);
        xattr::encode_body(&[], inode.xattrs, &mut rec[INODE_SIZE..INODE_SIZE + body]);
        p.used = end.next_multiple_of(NID_UNIT as usize);
        &mut rec[INODE_SIZE + body..]
    }
}

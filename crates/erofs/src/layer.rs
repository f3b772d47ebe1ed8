//! Layer images: a tar stream converted in one pass.
//!
//! File data is streamed straight into the image (block 1 onwards, each
//! file starting on a block boundary, uncompressed, never inlined, so
//! fsmeta can point at it); only metadata is kept in memory and written
//! at the end by [`crate::writer`]. The tar reader frames every byte as
//! it goes ([`crate::framing`]): copied data by its absolute offset in
//! the image, everything else literally.
//!
//! Sparse files become chunk-based inodes whose hole chunks are null
//! entries of a 4-byte block map. The chunk size is chosen per file to
//! minimise "map bytes + stored bytes": small chunks store fewer zeros,
//! large chunks need fewer map entries (see [`plan_sparse`]). For 1 GiB
//! with one block of data at each end that is 64 KiB chunks: a 128 KiB
//! map in fsmeta and 128 KiB stored. The map is capped at 2^20 chunks,
//! so only files beyond 4 TiB of logical size with scattered data store
//! noticeable zeros.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use crate::format::*;
use crate::framing::Recorder;
use crate::tar::{Entry, EntryKind, TarReader};
use crate::tree::{ChunkRun, DirId, FileData, Inode, InodeId, Kind, Tree, ROOT_DIR};
use crate::writer::{write_image, IMPLICIT_XATTR};
use crate::{xattr, Error, LayerSummary, Xattrs, BLOCK_SIZE};

/// Longest symlink target Linux accepts (PATH_MAX without the NUL).
const SYMLINK_MAX: usize = 4095;
/// Largest block address a 32-bit block field can hold, plus one.
const MAX_BLOCKS: u64 = 1 << 32;

pub(crate) fn build<R: Read>(tar: R, out: &File, framing: &mut dyn Write) -> Result<LayerSummary, Error> {
    let mut reader = TarReader::new(BufReader::with_capacity(1 << 20, tar), Recorder::new(framing));
    let mut file = out;
    file.seek(SeekFrom::Start(BLOCK_SIZE))?;
    let mut b = Builder {
        tree: Tree::default(),
        out: BufWriter::with_capacity(1 << 20, out),
        next_blk: 1,
        pos: BLOCK_SIZE,
        data_bytes: 0,
        buf: vec![0u8; 1 << 20],
    };
    while let Some(entry) = reader.next_entry()? {
        b.add(&mut reader, entry)?;
    }
    reader.finish()?;
    b.out.flush()?;
    drop(b.out);
    let written = write_image(&b.tree, out, b.next_blk, &[], true)?;
    out.set_len(written.blocks * BLOCK_SIZE)?;
    Ok(LayerSummary {
        size_bytes: written.blocks * BLOCK_SIZE,
        inodes: written.inodes,
        data_bytes: b.data_bytes,
    })
}

struct Builder<'a> {
    tree: Tree,
    out: BufWriter<&'a File>,
    next_blk: u64,
    /// Absolute byte offset in the image of the next byte written, which
    /// is where the framing says copied data went.
    pos: u64,
    data_bytes: u64,
    buf: Vec<u8>,
}

fn unsafe_path(path: &[u8], message: &str) -> Error {
    Error::UnsafePath {
        path: String::from_utf8_lossy(path).into_owned(),
        message: message.into(),
    }
}

/// Splits a tar path into components: leading `/` and `./`, empty and
/// `.` components vanish; `..` anywhere is refused.
fn components(path: &[u8], offset: u64) -> Result<Vec<&[u8]>, Error> {
    if path.contains(&0) {
        return Err(Error::InvalidTar {
            offset,
            message: "path contains a NUL byte".into(),
        });
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_path(path, "path contains a `..` component")),
            _ if c.len() > NAME_MAX => {
                return Err(Error::TooLarge {
                    message: format!("file name of {} bytes in {}", c.len(), String::from_utf8_lossy(path)),
                })
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

impl Builder<'_> {
    fn add<R: Read>(&mut self, tar: &mut TarReader<'_, R>, e: Entry) -> Result<(), Error> {
        let comps = components(&e.path, e.offset)?;
        let Some((name, parents)) = comps.split_last() else {
            if e.kind != EntryKind::Directory {
                return Err(Error::InvalidTar {
                    offset: e.offset,
                    message: "root entry is not a directory".into(),
                });
            }
            return self.set_dir_meta(ROOT_DIR, &e);
        };
        let name: &[u8] = name;
        // A whiteout under a path this layer made a non-directory (umoci
        // writes `d` as a file, then `d/.wh.child`) hides nothing more: the
        // file already replaces everything below `d`.
        if name.starts_with(b".wh.") && self.tree.under_non_dir(parents) {
            return Ok(());
        }
        if name == b".wh..wh..opq" {
            let dir = self.tree.ensure_dir(parents);
            self.tree.dir_mut(dir).opaque = true;
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            return Ok(());
        }
        if let Some(target) = name.strip_prefix(b".wh.") {
            match target {
                b"" | b"." => return Ok(()),
                b".." => return Err(unsafe_path(&e.path, "whiteout of `..`")),
                _ => {}
            }
            let id = self.new_inode(&e, S_IFCHR, Kind::Special { rdev: 0 })?;
            let parent = self.tree.ensure_dir(parents);
            self.link(parent, target, id);
            return Ok(());
        }
        let (fmt, kind) = match e.kind {
            EntryKind::Directory => {
                let parent = self.tree.ensure_dir(parents);
                if let Some(dir) = self.tree.child_dir(parent, name) {
                    return self.set_dir_meta(dir, &e);
                }
                let xattrs = checked_xattrs(&e.xattrs)?;
                let dir = self.tree.add_implicit_dir();
                self.set_meta(dir, &e, xattrs);
                let id = self.tree.dir(dir).inode;
                self.link(parent, name, id);
                return Ok(());
            }
            EntryKind::HardLink => {
                let target = components(&e.link, e.offset)?;
                let Some(id) = self.tree.lookup(&target) else {
                    return Err(unsafe_path(&e.link, "hardlink target does not exist earlier in the archive"));
                };
                if target.is_empty() || self.tree.inodes[id].is_dir() {
                    return Err(unsafe_path(&e.link, "hardlink target is a directory"));
                }
                let parent = self.tree.ensure_dir(parents);
                self.link(parent, name, id);
                return Ok(());
            }
            EntryKind::Symlink => {
                if e.link.is_empty() || e.link.len() > SYMLINK_MAX || e.link.contains(&0) {
                    return Err(Error::InvalidTar {
                        offset: e.offset,
                        message: format!("symlink target of {} bytes is not valid", e.link.len()),
                    });
                }
                (S_IFLNK, Kind::Symlink(e.link.clone()))
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                if e.devmajor > 0xfff || e.devminor > 0xfffff {
                    return Err(Error::TooLarge {
                        message: format!("device number {}:{} does not fit 32 bits", e.devmajor, e.devminor),
                    });
                }
                let fmt = if e.kind == EntryKind::CharDevice { S_IFCHR } else { S_IFBLK };
                (
                    fmt,
                    Kind::Special {
                        rdev: encode_rdev(e.devmajor, e.devminor),
                    },
                )
            }
            EntryKind::Fifo => (S_IFIFO, Kind::Special { rdev: 0 }),
            EntryKind::Regular => (
                S_IFREG,
                Kind::File {
                    size: e.size,
                    data: self.write_data(tar, &e)?,
                },
            ),
        };
        let id = self.new_inode(&e, fmt, kind)?;
        let parent = self.tree.ensure_dir(parents);
        self.link(parent, name, id);
        Ok(())
    }

    fn link(&mut self, parent: DirId, name: &[u8], id: InodeId) {
        self.tree.dir_mut(parent).children.insert(name.to_vec(), id);
    }

    fn new_inode(&mut self, e: &Entry, fmt: u32, kind: Kind) -> Result<InodeId, Error> {
        Ok(self.tree.add(Inode {
            mode: fmt | e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            mtime_nsec: e.mtime_nsec,
            xattrs: checked_xattrs(&e.xattrs)?,
            kind,
        }))
    }

    /// A directory entry describes an existing directory: its metadata
    /// replaces whatever the directory had (a later entry wins).
    fn set_dir_meta(&mut self, dir: DirId, e: &Entry) -> Result<(), Error> {
        let xattrs = checked_xattrs(&e.xattrs)?;
        self.set_meta(dir, e, xattrs);
        Ok(())
    }

    /// Gives `dir` the metadata of entry `e`, which makes it explicit.
    fn set_meta(&mut self, dir: DirId, e: &Entry, xattrs: Xattrs) {
        let d = self.tree.dir_mut(dir);
        d.implicit = false;
        let id = d.inode;
        let inode = &mut self.tree.inodes[id];
        inode.mode = S_IFDIR | e.mode;
        inode.uid = e.uid;
        inode.gid = e.gid;
        inode.mtime = e.mtime;
        inode.mtime_nsec = e.mtime_nsec;
        inode.xattrs = xattrs;
    }

    /// Streams a regular file's data into the image.
    fn write_data<R: Read>(&mut self, tar: &mut TarReader<'_, R>, e: &Entry) -> Result<FileData, Error> {
        let blocks = e.size.div_ceil(BLOCK_SIZE);
        let too_large = || Error::TooLarge {
            message: format!("file of {} bytes does not fit the image", e.size),
        };
        if e.size == 0 {
            return Ok(FileData::Flat { blkaddr: 0 });
        }
        let Some(segs) = &e.sparse else {
            if self.next_blk + blocks >= MAX_BLOCKS {
                return Err(too_large());
            }
            let blkaddr = self.next_blk;
            self.copy(tar, e.size)?;
            self.pad_to_block(e.size)?;
            self.next_blk += blocks;
            debug_assert_eq!(self.pos, self.next_blk * BLOCK_SIZE);
            return Ok(FileData::Flat { blkaddr });
        };
        let plan = plan_sparse(segs, e.size);
        let chunk = BLOCK_SIZE << plan.chunkbits;
        if self.next_blk + plan.stored_blocks >= MAX_BLOCKS {
            return Err(too_large());
        }
        let mut runs = Vec::new();
        let mut next_chunk = 0u64;
        let mut seg = segs.iter().peekable();
        for &(first, count) in &plan.mapped {
            if first > next_chunk {
                runs.push(ChunkRun {
                    count: first - next_chunk,
                    blkaddr: None,
                });
            }
            runs.push(ChunkRun {
                count,
                blkaddr: Some(self.next_blk),
            });
            let start = first * chunk;
            let end = ((first + count) * chunk).min(e.size);
            let mut p = start;
            while let Some(&&(off, len)) = seg.peek() {
                if off >= end {
                    break;
                }
                self.zeros(off - p)?;
                self.copy(tar, len)?;
                p = off + len;
                seg.next();
            }
            self.zeros(end - p)?;
            self.pad_to_block(end - start)?;
            self.next_blk += (end - start).div_ceil(BLOCK_SIZE);
            debug_assert_eq!(self.pos, self.next_blk * BLOCK_SIZE);
            next_chunk = first + count;
        }
        let total = e.size.div_ceil(chunk);
        if total > next_chunk {
            runs.push(ChunkRun {
                count: total - next_chunk,
                blkaddr: None,
            });
        }
        if plan.mapped == [(0, total)] {
            // Nothing to leave out: an ordinary contiguous file.
            let blkaddr = runs[0].blkaddr.expect("mapped run");
            return Ok(FileData::Flat { blkaddr });
        }
        Ok(FileData::Chunked {
            chunkbits: plan.chunkbits,
            device_id: None,
            runs,
        })
    }

    fn copy<R: Read>(&mut self, tar: &mut TarReader<'_, R>, mut n: u64) -> Result<(), Error> {
        self.data_bytes += n;
        while n > 0 {
            let k = (self.buf.len() as u64).min(n) as usize;
            let got = tar.read_data(&mut self.buf[..k], self.pos)?;
            if got == 0 {
                return Err(Error::InvalidTar {
                    offset: 0,
                    message: "entry data ends early".into(),
                });
            }
            self.out.write_all(&self.buf[..got])?;
            self.pos += got as u64;
            n -= got as u64;
        }
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<(), Error> {
        static ZEROS: [u8; 65536] = [0; 65536];
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.out.write_all(&ZEROS[..k])?;
            self.pos += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    fn pad_to_block(&mut self, written: u64) -> Result<(), Error> {
        self.zeros(written.next_multiple_of(BLOCK_SIZE) - written)
    }
}

/// Keeps the xattrs EROFS can name (dropping other namespaces, which
/// Linux does not have, and our own implicit-directory marker, which an
/// archive must not be able to forge) and checks the format's limits.
fn checked_xattrs(x: &[(Vec<u8>, Vec<u8>)]) -> Result<Xattrs, Error> {
    let mut out = Vec::with_capacity(x.len());
    for (name, value) in x {
        if name == IMPLICIT_XATTR {
            continue;
        }
        let Some((_, suffix)) = xattr::split_name(name) else {
            continue;
        };
        if suffix.len() > NAME_MAX || value.len() > usize::from(u16::MAX) {
            return Err(Error::TooLarge {
                message: format!("xattr {} is too large", String::from_utf8_lossy(name)),
            });
        }
        out.push((name.clone(), value.clone()));
    }
    Ok(out)
}

/// Chunk layout of a sparse file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SparsePlan {
    /// Chunk size is `BLOCK_SIZE << chunkbits`.
    pub chunkbits: u8,
    /// Ranges of chunks holding data, as (first chunk, count), sorted.
    pub mapped: Vec<(u64, u64)>,
    /// Blocks the mapped chunks occupy in the image.
    pub stored_blocks: u64,
}

/// Bytes a chunk costs in the map: fsmeta turns each layer chunk into an
/// 8-byte index, so that is the size that matters.
const INDEX_COST: u128 = 8;

/// Most chunks a sparse file's map may have (8 MiB of fsmeta indexes):
/// bounds metadata for absurd logical sizes, at the price of storing
/// zeros inside chunks that are only partly data.
const MAX_CHUNKS: u64 = 1 << 20;

/// Picks the chunk size minimising map bytes plus stored bytes for the
/// data segments `segs` (sorted, non-overlapping, within `size`), among
/// chunk sizes giving at most [`MAX_CHUNKS`] chunks (or the largest).
pub(crate) fn plan_sparse(segs: &[(u64, u64)], size: u64) -> SparsePlan {
    let mut best: Option<(u128, SparsePlan)> = None;
    for bits in 0..=CHUNK_BLKBITS_MAX {
        let chunk = BLOCK_SIZE << bits;
        let nchunks = size.div_ceil(chunk);
        let mut mapped: Vec<(u64, u64)> = Vec::new();
        for &(off, len) in segs {
            let (first, last) = (off / chunk, (off + len - 1) / chunk);
            match mapped.last_mut() {
                Some((f, c)) if *f + *c >= first => *c = (*c).max(last + 1 - *f),
                _ => mapped.push((first, last + 1 - first)),
            }
        }
        let stored_blocks: u64 = mapped
            .iter()
            .map(|&(f, c)| ((f + c) * chunk).min(size).div_ceil(BLOCK_SIZE) - f * (chunk / BLOCK_SIZE))
            .sum();
        let cost = u128::from(nchunks) * INDEX_COST + u128::from(stored_blocks) * u128::from(BLOCK_SIZE);
        let allowed = nchunks <= MAX_CHUNKS || bits == CHUNK_BLKBITS_MAX;
        if allowed && best.as_ref().is_none_or(|(c, _)| cost <= *c) {
            best = Some((
                cost,
                SparsePlan {
                    chunkbits: bits,
                    mapped,
                    stored_blocks,
                },
            ));
        }
        if chunk >= size {
            break;
        }
    }
    best.expect("at least one chunk size is tried").1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_plan_prefers_holes_over_zeros() {
        // 1 GiB file with 4 KiB of data at each end: tiny chunks would need a
        // huge map, huge chunks would store zeros; the plan must store only
        // a few blocks and keep the map small.
        let size = 1 << 30;
        let plan = plan_sparse(&[(0, 4096), (size - 4096, 4096)], size);
        let chunk = BLOCK_SIZE << plan.chunkbits;
        assert_eq!(plan.mapped.len(), 2);
        assert!(plan.mapped.iter().all(|&(_, c)| c == 1));
        let cost = size / chunk * 8 + 2 * chunk;
        assert!(cost <= 256 << 10, "{plan:?}");
    }

    #[test]
    fn sparse_plan_handles_empty_and_dense() {
        assert!(plan_sparse(&[], 1 << 40).mapped.is_empty());
        let absurd = plan_sparse(&[(0, 1), (1 << 60, 1)], (1 << 60) + 1);
        assert!(((1u64 << 60) + 1).div_ceil(BLOCK_SIZE << absurd.chunkbits) <= MAX_CHUNKS);
        let dense = plan_sparse(&[(0, 10_000)], 10_000);
        assert_eq!(dense.mapped, vec![(0, 1)]);
    }

    #[test]
    fn paths_normalise_and_refuse_dotdot() {
        assert_eq!(components(b"./a//b/./c/", 0).unwrap(), vec![&b"a"[..], b"b", b"c"]);
        assert!(components(b"/", 0).unwrap().is_empty());
        assert!(matches!(components(b"a/../b", 0), Err(Error::UnsafePath { .. })));
    }
}

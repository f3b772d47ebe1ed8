//! Reads EROFS images this crate writes (uncompressed, 4 KiB blocks):
//! the tree, inode metadata, xattrs, symlink targets and where regular
//! files' data lives. `build_fsmeta` merges layers through it, and tests
//! use it to check images.
//!
//! The metadata area (from `meta_blkaddr` to the end of the file, where
//! this crate puts fsmeta's and old layers' inodes and directory blocks)
//! is read into memory once. A layer whose nids count from byte 0 has its
//! records spread among the file data, so it is read through a few
//! recently used windows instead, which keeps memory bounded whatever
//! the layer's size. Every offset read from the image is bounds-checked,
//! so a corrupt image yields [`Error::InvalidImage`], never a panic.

mod windows;

use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::format::*;
use crate::{xattr, Error, Xattrs, BLOCK_SIZE};
use windows::Windows;

/// Metadata areas larger than this are read on demand instead of at open.
const PRELOAD_MAX: u64 = 1 << 30;

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidImage { message: message.into() }
}

/// An entry of the device table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Tag bytes, trailing NULs removed.
    pub tag: Vec<u8>,
    /// Device size in blocks.
    pub blocks: u64,
    /// Where the device starts when all devices are concatenated.
    pub mapped_blkaddr: u64,
}

/// An inode's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Node id: the inode's offset in 32-byte slots from `meta_blkaddr`.
    pub nid: u64,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Link count as stored.
    pub nlink: u32,
    /// Size in bytes (logical size for sparse files).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of `mtime`.
    pub mtime_nsec: u32,
    layout: u16,
    /// startblk, encoded rdev or chunk format, depending on type and layout.
    i_u: u32,
    inode_size: u64,
    xattr_size: u64,
}

impl Inode {
    /// Type bits of the mode (`S_IFMT`), e.g. `0o040000` for directories.
    pub fn file_type_bits(&self) -> u32 {
        self.mode & S_IFMT
    }
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type_bits() == S_IFDIR
    }
    /// Whether this is a regular file.
    pub fn is_regular(&self) -> bool {
        self.file_type_bits() == S_IFREG
    }
    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type_bits() == S_IFLNK
    }
    /// (major, minor) for character and block devices, (0, 0) otherwise.
    pub fn device_number(&self) -> (u32, u32) {
        match self.file_type_bits() {
            S_IFCHR | S_IFBLK => decode_rdev(self.i_u),
            _ => (0, 0),
        }
    }
}

/// A directory entry (`.` and `..` are not reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Name bytes (not necessarily UTF-8).
    pub name: Vec<u8>,
    /// Node id of the entry's inode.
    pub nid: u64,
    /// EROFS file type (1 regular, 2 dir, 3 chr, 4 blk, 5 fifo, 6 sock, 7 symlink).
    pub file_type: u8,
}

/// Where a chunk of a regular file lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkAddr {
    /// 0 for the image itself, N for the N-th device-table entry.
    pub device_id: u16,
    /// First block of the chunk on that device.
    pub blkaddr: u64,
}

/// Where a regular file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileMap {
    /// `ceil(size / BLOCK_SIZE)` contiguous blocks from `blkaddr` on the image.
    Contiguous {
        /// First block.
        blkaddr: u64,
    },
    /// Chunks of `BLOCK_SIZE << chunkbits` bytes in file order; `None` is a hole.
    Chunked {
        /// log2 of the chunk size in blocks.
        chunkbits: u8,
        /// One entry per chunk.
        chunks: Vec<Option<ChunkAddr>>,
    },
    /// `size / BLOCK_SIZE` contiguous blocks from `blkaddr` on the image
    /// (none for a file under a block: a packed file), then the last
    /// partial block, stored after the inode ([`Image::tail_pos`]). Only
    /// its length: the walks that map files (fsmeta's merge, the seal)
    /// meet tens of thousands of tails and need none of their bytes.
    Tail {
        /// First block (meaningless without blocks).
        blkaddr: u64,
        /// Length of the bytes after the last whole block.
        tail_len: u16,
    },
}

/// An opened image.
pub struct Image {
    file: File,
    file_len: u64,
    meta_start: u64,
    meta: Vec<u8>,
    windows: RefCell<Windows>,
    sb: Superblock,
    devices: Vec<Device>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("superblock", &self.sb)
            .field("devices", &self.devices)
            .finish()
    }
}

impl Image {
    /// Opens and checks the superblock (magic, block size, checksum,
    /// features) and reads the metadata area.
    pub fn open(path: &Path) -> Result<Image, Error> {
        let mut file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut block0 = vec![0u8; BLOCK_SIZE as usize];
        if file_len < BLOCK_SIZE {
            return Err(invalid("file is shorter than one block"));
        }
        file.read_exact(&mut block0)?;
        let sb = Superblock::decode(&block0).ok_or_else(|| invalid("bad superblock magic"))?;
        if sb.blkszbits != BLKSZ_BITS {
            return Err(invalid(format!("unsupported block size 2^{}", sb.blkszbits)));
        }
        if sb.feature_compat & COMPAT_SB_CHKSUM != 0 && superblock_checksum(&block0) != sb.checksum {
            return Err(invalid("superblock checksum mismatch"));
        }
        let known = INCOMPAT_CHUNKED_FILE | INCOMPAT_DEVICE_TABLE;
        if sb.feature_incompat & !known != 0 {
            return Err(invalid(format!(
                "unsupported incompatible features {:#x}",
                sb.feature_incompat & !known
            )));
        }
        let mut image = Image {
            file,
            file_len,
            meta_start: 0,
            meta: Vec::new(),
            windows: RefCell::default(),
            sb,
            devices: Vec::new(),
        };
        if image.sb.feature_incompat & INCOMPAT_DEVICE_TABLE != 0 {
            let start = u64::from(image.sb.devt_slotoff) * DEVICE_SLOT_SIZE as u64;
            for i in 0..u64::from(image.sb.extra_devices) {
                let slot = image.bytes(start + i * DEVICE_SLOT_SIZE as u64, DEVICE_SLOT_SIZE)?.into_owned();
                let tag_len = slot[..64].iter().position(|&b| b == 0).unwrap_or(64);
                image.devices.push(Device {
                    tag: slot[..tag_len].to_vec(),
                    blocks: u64::from(le32(&slot, 64)),
                    mapped_blkaddr: u64::from(le32(&slot, 68)),
                });
            }
        }
        let meta_start = u64::from(image.sb.meta_blkaddr) * BLOCK_SIZE;
        if meta_start >= BLOCK_SIZE && meta_start < file_len && file_len - meta_start <= PRELOAD_MAX {
            let mut meta = vec![0u8; (file_len - meta_start) as usize];
            let mut f = &image.file;
            f.seek(SeekFrom::Start(meta_start))?;
            f.read_exact(&mut meta)?;
            image.meta_start = meta_start;
            image.meta = meta;
        }
        Ok(image)
    }

    /// Node id of the root directory.
    pub fn root_nid(&self) -> u64 {
        u64::from(self.sb.root_nid)
    }
    /// Image size in blocks, as the superblock records it.
    pub fn blocks(&self) -> u64 {
        u64::from(self.sb.blocks)
    }
    /// Size of the image file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }
    /// First block of the metadata area (inode nids count from here).
    pub fn meta_blkaddr(&self) -> u64 {
        u64::from(self.sb.meta_blkaddr)
    }
    /// Extra devices (layers, for fsmeta images).
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    fn bytes(&self, off: u64, len: usize) -> Result<Cow<'_, [u8]>, Error> {
        let end = off.checked_add(len as u64).filter(|&e| e <= self.file_len);
        let end = end.ok_or_else(|| invalid(format!("read of {len} bytes at {off} is past the end of the image")))?;
        if off >= self.meta_start && end <= self.meta_start + self.meta.len() as u64 {
            let s = (off - self.meta_start) as usize;
            return Ok(Cow::Borrowed(&self.meta[s..s + len]));
        }
        if let Some(bytes) = self.windows.borrow_mut().read(&self.file, self.file_len, off, len)? {
            return Ok(Cow::Owned(bytes));
        }
        let mut buf = vec![0u8; len];
        let mut f = &self.file;
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut buf)?;
        Ok(Cow::Owned(buf))
    }

    /// Where the bytes stored after an inode (and its xattrs) start: a
    /// tail-packed file's tail.
    pub fn tail_pos(&self, inode: &Inode) -> Result<u64, Error> {
        Ok(self.iloc(inode.nid)? + inode.inode_size + inode.xattr_size)
    }

    /// Where an inode's record is, in bytes from the start of the image.
    pub fn record_pos(&self, inode: &Inode) -> Result<u64, Error> {
        self.iloc(inode.nid)
    }

    /// Whether an inode's record holds all it has, so it can be read at
    /// any position: no data blocks, no chunk table, no shared xattrs
    /// (those are found through the superblock). fsmeta points at such
    /// a record instead of copying it.
    pub fn self_contained(&self, inode: &Inode) -> Result<bool, Error> {
        let at = self.iloc(inode.nid)?;
        let data_at = at + inode.inode_size + inode.xattr_size;
        let no_blocks = match inode.layout {
            LAYOUT_FLAT_INLINE => inode.size < BLOCK_SIZE && data_at % BLOCK_SIZE + inode.size <= BLOCK_SIZE,
            LAYOUT_FLAT_PLAIN => inode.size == 0,
            _ => false,
        };
        if !no_blocks || inode.is_dir() {
            return Ok(false);
        }
        if inode.xattr_size == 0 {
            return Ok(true);
        }
        let body = self.bytes(at + inode.inode_size, inode.xattr_size as usize)?;
        Ok(body.get(4) == Some(&0))
    }

    fn iloc(&self, nid: u64) -> Result<u64, Error> {
        nid.checked_mul(NID_UNIT)
            .and_then(|o| o.checked_add(self.meta_blkaddr() * BLOCK_SIZE))
            .ok_or_else(|| invalid(format!("nid {nid} out of range")))
    }

    /// Reads an inode.
    pub fn inode(&self, nid: u64) -> Result<Inode, Error> {
        let at = self.iloc(nid)?;
        let head = self.bytes(at, COMPACT_INODE_SIZE)?;
        let format = le16(&head, 0);
        let layout = (format >> 1) & 7;
        if ![LAYOUT_FLAT_PLAIN, LAYOUT_FLAT_INLINE, LAYOUT_CHUNK_BASED].contains(&layout) {
            return Err(invalid(format!("nid {nid}: unsupported data layout {layout}")));
        }
        let xattr_size = xattr::body_size_from_icount(le16(&head, 2)) as u64;
        let inode = if format & 1 == 1 {
            let b = self.bytes(at, INODE_SIZE)?;
            Inode {
                nid,
                mode: u32::from(le16(&b, 4)),
                size: le64(&b, 8),
                i_u: le32(&b, 16),
                uid: le32(&b, 24),
                gid: le32(&b, 28),
                mtime: le64(&b, 32) as i64,
                mtime_nsec: le32(&b, 40),
                nlink: le32(&b, 44),
                layout,
                inode_size: INODE_SIZE as u64,
                xattr_size,
            }
        } else {
            Inode {
                nid,
                mode: u32::from(le16(&head, 4)),
                nlink: u32::from(le16(&head, 6)),
                size: u64::from(le32(&head, 8)),
                i_u: le32(&head, 16),
                uid: u32::from(le16(&head, 24)),
                gid: u32::from(le16(&head, 26)),
                mtime: self.sb.build_time as i64,
                mtime_nsec: 0,
                layout,
                inode_size: COMPACT_INODE_SIZE as u64,
                xattr_size,
            }
        };
        if inode.file_type_bits() == 0 || file_type(inode.mode) == 0 {
            return Err(invalid(format!("nid {nid}: bad mode {:o}", inode.mode)));
        }
        Ok(inode)
    }

    /// Extended attributes as (full name, value) pairs: the inline ones,
    /// then those in the shared area.
    pub fn xattrs(&self, inode: &Inode) -> Result<Xattrs, Error> {
        let bad = |e: String| invalid(format!("nid {}: {e}", inode.nid));
        let at = self.iloc(inode.nid)? + inode.inode_size;
        let body = self.bytes(at, inode.xattr_size as usize)?;
        let (shared, mut out) = xattr::decode_body(&body).map_err(bad)?;
        for id in shared {
            let at = u64::from(self.sb.xattr_blkaddr) * BLOCK_SIZE + u64::from(id) * 4;
            let head = self.bytes(at, 4)?;
            let len = 4 + usize::from(head[0]) + usize::from(le16(&head, 2));
            let (named, _) = xattr::decode_entry(&self.bytes(at, len)?).map_err(bad)?;
            out.extend(named);
        }
        Ok(out)
    }

    /// Reads all data of a flat (plain or tail-inline) inode.
    fn flat_data(&self, inode: &Inode) -> Result<Vec<u8>, Error> {
        if inode.layout == LAYOUT_CHUNK_BASED {
            return Err(invalid(format!("nid {}: chunk-based directory or symlink", inode.nid)));
        }
        if inode.size > self.file_len {
            return Err(invalid(format!("nid {}: size {} larger than the image", inode.nid, inode.size)));
        }
        let size = inode.size;
        let mut out = Vec::with_capacity(size as usize);
        let tail = if inode.layout == LAYOUT_FLAT_INLINE { size % BLOCK_SIZE } else { 0 };
        let plain = size - tail;
        if plain > 0 {
            out.extend_from_slice(&self.bytes(u64::from(inode.i_u) * BLOCK_SIZE, plain as usize)?);
        }
        if tail > 0 {
            let at = self.iloc(inode.nid)? + inode.inode_size + inode.xattr_size;
            if at % BLOCK_SIZE + tail > BLOCK_SIZE {
                return Err(invalid(format!("nid {}: inline data crosses a block boundary", inode.nid)));
            }
            out.extend_from_slice(&self.bytes(at, tail as usize)?);
        }
        Ok(out)
    }

    /// A symlink's target.
    pub fn symlink_target(&self, inode: &Inode) -> Result<Vec<u8>, Error> {
        if !inode.is_symlink() {
            return Err(invalid(format!("nid {} is not a symlink", inode.nid)));
        }
        self.flat_data(inode)
    }

    /// A directory's entries in on-disk (sorted) order, without `.` and `..`.
    pub fn read_dir(&self, inode: &Inode) -> Result<Vec<DirEntry>, Error> {
        if !inode.is_dir() {
            return Err(invalid(format!("nid {} is not a directory", inode.nid)));
        }
        let data = self.flat_data(inode)?;
        let bad = |m: &str| invalid(format!("directory nid {}: {m}", inode.nid));
        let mut out = Vec::new();
        for block in data.chunks(BLOCK_SIZE as usize) {
            if block.len() < DIRENT_SIZE {
                return Err(bad("truncated block"));
            }
            let first = usize::from(le16(block, 8));
            if first < DIRENT_SIZE || first % DIRENT_SIZE != 0 || first > block.len() {
                return Err(bad("bad first name offset"));
            }
            let count = first / DIRENT_SIZE;
            for k in 0..count {
                let d = k * DIRENT_SIZE;
                let start = usize::from(le16(block, d + 8));
                let end = if k + 1 < count {
                    usize::from(le16(block, d + DIRENT_SIZE + 8))
                } else {
                    let rest = block.get(start..).ok_or_else(|| bad("name offset past block"))?;
                    start + rest.iter().position(|&b| b == 0).unwrap_or(rest.len())
                };
                if start > end || end > block.len() || end - start > NAME_MAX || end == start {
                    return Err(bad("bad name offsets"));
                }
                let name = &block[start..end];
                if name == b"." || name == b".." {
                    continue;
                }
                out.push(DirEntry {
                    name: name.to_vec(),
                    nid: le64(block, d),
                    file_type: block[d + 10],
                });
            }
        }
        Ok(out)
    }

    /// Where a regular file's data lives.
    pub fn file_map(&self, inode: &Inode) -> Result<FileMap, Error> {
        if !inode.is_regular() {
            return Err(invalid(format!("nid {} is not a regular file", inode.nid)));
        }
        match inode.layout {
            LAYOUT_FLAT_PLAIN => Ok(FileMap::Contiguous {
                blkaddr: u64::from(inode.i_u),
            }),
            LAYOUT_CHUNK_BASED => {
                let format = inode.i_u as u16;
                let indexes = format & CHUNK_FORMAT_INDEXES != 0;
                let chunkbits = (format & CHUNK_FORMAT_BLKBITS_MASK) as u8;
                let unit: u64 = if indexes { 8 } else { 4 };
                let nchunks = inode.size.div_ceil(BLOCK_SIZE << chunkbits);
                let table_len = nchunks.checked_mul(unit).filter(|&l| l <= self.file_len);
                let table_len = table_len.ok_or_else(|| invalid(format!("nid {}: chunk table larger than the image", inode.nid)))?;
                let at = (self.iloc(inode.nid)? + inode.inode_size + inode.xattr_size).next_multiple_of(unit);
                let table = self.bytes(at, table_len as usize)?;
                let mask = (u32::from(self.sb.extra_devices) + 1).next_power_of_two() as u16 - 1;
                let chunks = table
                    .chunks(unit as usize)
                    .map(|e| {
                        let (dev, blk) = if indexes {
                            (le16(e, 2) & mask, le32(e, 4))
                        } else {
                            (0, le32(e, 0))
                        };
                        (blk != NULL_ADDR).then_some(ChunkAddr {
                            device_id: dev,
                            blkaddr: u64::from(blk),
                        })
                    })
                    .collect();
                Ok(FileMap::Chunked { chunkbits, chunks })
            }
            _ => {
                let len = inode.size % BLOCK_SIZE;
                let at = self.iloc(inode.nid)? + inode.inode_size + inode.xattr_size;
                if at % BLOCK_SIZE + len > BLOCK_SIZE {
                    return Err(invalid(format!("nid {}: inline data crosses a block boundary", inode.nid)));
                }
                if at + len > self.file_len {
                    return Err(invalid(format!("nid {}: inline data runs past the end of the image", inode.nid)));
                }
                Ok(FileMap::Tail {
                    blkaddr: u64::from(inode.i_u),
                    tail_len: len as u16,
                })
            }
        }
    }

    /// Resolves a `/`-separated path from the root (no symlinks followed).
    pub fn lookup(&self, path: &[u8]) -> Result<Option<Inode>, Error> {
        let mut cur = self.inode(self.root_nid())?;
        for c in path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".") {
            if !cur.is_dir() {
                return Ok(None);
            }
            match self.read_dir(&cur)?.into_iter().find(|e| e.name == c) {
                Some(e) => cur = self.inode(e.nid)?,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }
}

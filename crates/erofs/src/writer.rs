//! Lays out and writes the metadata of an image from a [`Tree`].
//!
//! Layout: block 0 holds the superblock (and the device table, if any);
//! whatever the caller already wrote (file data) follows; then the
//! metadata area starting at `meta_blkaddr`: one 32-byte slot of padding
//! (so no inode gets nid 0, which the kernel would report as inode
//! number 0), the root inode (nid 1, always within the superblock's
//! 16-bit root_nid), every other inode in breadth-first order, and last
//! the blocks of directories and symlinks too large to inline.
//!
//! Every inode is a 64-byte extended inode (32-bit uid/gid, per-inode
//! mtime with nanoseconds). Its xattrs, then either its chunk table or
//! its inline tail follow it. A record of at most one block never crosses
//! a block boundary, which the kernel requires for inline data.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use crate::dir::{self, Dirent};
use crate::format::*;
use crate::tree::{FileData, Inode, InodeId, Kind, Tree, ROOT};
use crate::{xattr, Error, BLOCK_SIZE};

/// Name of the xattr marking directories that had no entry of their own
/// in a layer's tar (created for a deeper path). It lives in `trusted.`,
/// so unprivileged users never see it; fsmeta reads and drops it.
pub const IMPLICIT_XATTR: &[u8] = b"trusted.msb.implicit";
/// Overlay's opaque-directory marker, set for `.wh..wh..opq` entries.
pub const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// A device-table slot to write: the mapped address is computed here.
pub struct DeviceSpec<'a> {
    pub tag: &'a [u8],
    pub blocks: u64,
}

/// What [`write_image`] produced.
pub struct Written {
    pub blocks: u64,
    pub inodes: u64,
    pub mapped_blkaddrs: Vec<u64>,
}

const BLOCK: usize = BLOCK_SIZE as usize;

/// Per-inode layout decisions.
struct Plan {
    id: InodeId,
    nid: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    xattr_size: usize,
    layout: u16,
    size: u64,
    /// Bytes stored right after the xattrs (chunk table or inline tail),
    /// including alignment padding before a chunk table.
    extra: usize,
    /// Blocks of plain data in the metadata area (directories, symlinks).
    data_blocks: u64,
    data_blkaddr: u64,
    nlink: u32,
}

fn too_large(message: impl Into<String>) -> Error {
    Error::TooLarge { message: message.into() }
}

fn to_u32(v: u64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| too_large(format!("{what} {v} does not fit 32 bits")))
}

/// Final xattr list: the inode's own plus the layer markers.
fn xattrs_of(inode: &Inode, markers: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut x = inode.xattrs.clone();
    if let (true, Kind::Dir { implicit, opaque, .. }) = (markers, &inode.kind) {
        for (flag, name) in [(*implicit, IMPLICIT_XATTR), (*opaque, OPAQUE_XATTR)] {
            if flag && !x.iter().any(|(n, _)| n == name) {
                x.push((name.to_vec(), b"y".to_vec()));
            }
        }
    }
    x
}

fn chunk_count(data: &FileData) -> u64 {
    match data {
        FileData::Flat { .. } => 0,
        FileData::Chunked { runs, .. } => runs.iter().map(|r| r.count).sum(),
    }
}

/// Visits inodes breadth-first from the root; returns the order, the
/// order index of each arena id, each inode's link count and each
/// directory's parent.
fn traverse(tree: &Tree) -> (Vec<InodeId>, Vec<u32>, Vec<u32>, Vec<InodeId>) {
    let n = tree.inodes.len();
    let mut index = vec![u32::MAX; n];
    let mut nlink = vec![0u32; n];
    let mut parent = vec![ROOT; n];
    let mut order = vec![ROOT];
    index[ROOT] = 0;
    let mut queue = VecDeque::from([ROOT]);
    while let Some(d) = queue.pop_front() {
        let children = tree.children(d).expect("queued inodes are directories");
        nlink[d] += 2;
        for &c in children.values() {
            if tree.inodes[c].is_dir() {
                nlink[d] += 1;
                parent[c] = d;
            } else {
                nlink[c] += 1;
            }
            if index[c] == u32::MAX {
                index[c] = order.len() as u32;
                order.push(c);
                if tree.inodes[c].is_dir() {
                    queue.push_back(c);
                }
            }
        }
    }
    (order, index, nlink, parent)
}

fn dirents_size(tree: &Tree, id: InodeId) -> u64 {
    let children = tree.children(id).expect("directory");
    dir::dir_size(sorted_names(children.keys().map(|k| k.as_slice())).into_iter().map(|n| n.len()))
}

/// Children names merged with `.` and `..`, in on-disk order.
fn sorted_names<'a>(names: impl Iterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    let mut v: Vec<&[u8]> = names.collect();
    v.push(b".");
    v.push(b"..");
    v.sort_unstable();
    v
}

/// Writes the metadata for `tree` after the first `data_end` blocks of
/// `out` (which the caller has already filled), then block 0.
pub fn write_image(tree: &Tree, out: &File, data_end: u64, devices: &[DeviceSpec<'_>], markers: bool) -> Result<Written, Error> {
    let (order, index, nlink, parent) = traverse(tree);
    let devt_end = (SUPER_OFFSET + SUPER_SIZE + devices.len() * DEVICE_SLOT_SIZE) as u64;
    let meta_blkaddr = data_end.max(devt_end.div_ceil(BLOCK_SIZE));

    // Sizes and layouts.
    let mut plans = Vec::with_capacity(order.len());
    let mut any_chunked = false;
    for &id in &order {
        let inode = &tree.inodes[id];
        let xattrs = xattrs_of(inode, markers);
        let xattr_size = xattr::body_size(&xattrs);
        if xattr_size > XATTR_HEADER_SIZE + 4 * (usize::from(u16::MAX) - 1) {
            return Err(too_large("extended attributes of one inode exceed 256 KiB"));
        }
        let head = INODE_SIZE + xattr_size;
        let (mut layout, mut size, mut extra, mut data_blocks) = (LAYOUT_FLAT_PLAIN, 0, 0, 0);
        let inline = |len: u64| -> (u16, usize, u64) {
            let tail = (len % BLOCK_SIZE) as usize;
            if tail != 0 && head + tail <= BLOCK {
                (LAYOUT_FLAT_INLINE, tail, len / BLOCK_SIZE)
            } else {
                (LAYOUT_FLAT_PLAIN, 0, len.div_ceil(BLOCK_SIZE))
            }
        };
        match &inode.kind {
            Kind::Dir { .. } => {
                size = dirents_size(tree, id);
                (layout, extra, data_blocks) = inline(size);
            }
            Kind::Symlink(target) => {
                size = target.len() as u64;
                (layout, extra, data_blocks) = inline(size);
            }
            Kind::File { size: s, data } => {
                size = *s;
                if let FileData::Chunked { device_id, .. } = data {
                    any_chunked = true;
                    layout = LAYOUT_CHUNK_BASED;
                    let unit = if device_id.is_some() { 8 } else { 4 };
                    extra = head.next_multiple_of(unit) - head + unit * chunk_count(data) as usize;
                }
            }
            Kind::Special { .. } => {}
        }
        plans.push(Plan {
            id,
            nid: 0,
            xattrs,
            xattr_size,
            layout,
            size,
            extra,
            data_blocks,
            data_blkaddr: 0,
            nlink: nlink[id],
        });
    }

    // Place inode records.
    let mut pos = NID_UNIT as usize;
    for p in &mut plans {
        let len = INODE_SIZE + p.xattr_size + p.extra;
        if len <= BLOCK && pos % BLOCK + len > BLOCK {
            pos = pos.next_multiple_of(BLOCK);
        }
        p.nid = (pos as u64) / NID_UNIT;
        pos = (pos + len).next_multiple_of(NID_UNIT as usize);
    }
    let inode_area = pos.next_multiple_of(BLOCK);
    let mut next_blk = meta_blkaddr + (inode_area / BLOCK) as u64;
    for p in &mut plans {
        p.data_blkaddr = next_blk;
        next_blk += p.data_blocks;
    }
    let total_blocks = next_blk;
    to_u32(total_blocks, "image size in blocks")?;
    if plans[0].nid > u64::from(u16::MAX) {
        return Err(too_large("root nid does not fit 16 bits"));
    }

    // Encode metadata area.
    let mut meta = vec![0u8; ((total_blocks - meta_blkaddr) * BLOCK_SIZE) as usize];
    let base = meta_blkaddr * BLOCK_SIZE;
    let nid_of = |id: InodeId| plans[index[id] as usize].nid;
    let mut build_time = 0i64;
    for (ino, p) in plans.iter().enumerate() {
        let inode = &tree.inodes[p.id];
        build_time = build_time.max(inode.mtime);
        let at = (p.nid * NID_UNIT) as usize;
        let xat = at + INODE_SIZE;
        let tail_at = xat + p.xattr_size;
        xattr::encode_body(&p.xattrs, &mut meta[xat..tail_at]);
        let i_u = match &inode.kind {
            Kind::Dir { .. } | Kind::Symlink(_) => {
                let bytes = match &inode.kind {
                    Kind::Symlink(t) => t.clone(),
                    _ => encode_dir(tree, p.id, p.size, nid_of(p.id), nid_of(parent[p.id]), &nid_of),
                };
                let full = (p.data_blocks * BLOCK_SIZE) as usize;
                let plain = full.min(bytes.len());
                let off = ((p.data_blkaddr - meta_blkaddr) * BLOCK_SIZE) as usize;
                meta[off..off + plain].copy_from_slice(&bytes[..plain]);
                if p.layout == LAYOUT_FLAT_INLINE {
                    meta[tail_at..tail_at + p.extra].copy_from_slice(&bytes[plain..]);
                }
                if p.data_blocks > 0 {
                    to_u32(p.data_blkaddr, "block address")?
                } else {
                    0
                }
            }
            Kind::File {
                data: FileData::Flat { blkaddr },
                size,
            } => {
                if *size > 0 {
                    to_u32(*blkaddr, "block address")?
                } else {
                    0
                }
            }
            Kind::File {
                data:
                    FileData::Chunked {
                        chunkbits,
                        device_id,
                        runs,
                    },
                ..
            } => {
                let unit = if device_id.is_some() { 8 } else { 4 };
                let mut e = tail_at.next_multiple_of(unit);
                for run in runs {
                    for i in 0..run.count {
                        let blk = match run.blkaddr {
                            Some(b) => to_u32(b + (i << chunkbits), "block address")?,
                            None => NULL_ADDR,
                        };
                        match device_id {
                            Some(dev) => {
                                put16(&mut meta, e + 2, if run.blkaddr.is_some() { *dev } else { 0 });
                                put32(&mut meta, e + 4, blk);
                            }
                            None => put32(&mut meta, e, blk),
                        }
                        e += unit;
                    }
                }
                let indexes = if device_id.is_some() { CHUNK_FORMAT_INDEXES } else { 0 };
                u32::from(indexes | u16::from(*chunkbits))
            }
            Kind::Special { rdev } => *rdev,
        };
        RawInode {
            layout: p.layout,
            xattr_icount: xattr::icount(p.xattr_size),
            mode: inode.mode as u16,
            size: p.size,
            i_u,
            ino: ino as u32 + 1,
            uid: inode.uid,
            gid: inode.gid,
            mtime: inode.mtime,
            mtime_nsec: inode.mtime_nsec,
            nlink: p.nlink,
        }
        .encode(&mut meta[at..]);
    }

    let mut file = out;
    file.seek(SeekFrom::Start(base))?;
    file.write_all(&meta)?;

    // Block 0: superblock, device table, checksum.
    // Block 0, plus the blocks a long device table spills into.
    let mut block0 = vec![0u8; devt_end.next_multiple_of(BLOCK_SIZE) as usize];
    let mut mapped = Vec::with_capacity(devices.len());
    let mut next = total_blocks;
    for (i, d) in devices.iter().enumerate() {
        let off = SUPER_OFFSET + SUPER_SIZE + i * DEVICE_SLOT_SIZE;
        let slot = &mut block0[off..off + DEVICE_SLOT_SIZE];
        encode_device_slot(slot, d.tag, to_u32(d.blocks, "device size")?, to_u32(next, "mapped block address")?);
        mapped.push(next);
        next += d.blocks;
    }
    let mut incompat = 0;
    if any_chunked {
        incompat |= INCOMPAT_CHUNKED_FILE;
    }
    if !devices.is_empty() {
        incompat |= INCOMPAT_DEVICE_TABLE;
    }
    let mut sb = Superblock {
        checksum: 0,
        feature_compat: COMPAT_SB_CHKSUM,
        feature_incompat: incompat,
        blkszbits: BLKSZ_BITS,
        root_nid: plans[0].nid as u16,
        inos: plans.len() as u64,
        build_time: build_time as u64,
        blocks: total_blocks as u32,
        meta_blkaddr: to_u32(meta_blkaddr, "metadata block address")?,
        extra_devices: devices.len() as u16,
        devt_slotoff: if devices.is_empty() {
            0
        } else {
            ((SUPER_OFFSET + SUPER_SIZE) / DEVICE_SLOT_SIZE) as u16
        },
    };
    sb.encode(&mut block0);
    sb.checksum = superblock_checksum(&block0[..BLOCK]);
    sb.encode(&mut block0);
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&block0)?;
    file.flush()?;
    Ok(Written {
        blocks: total_blocks,
        inodes: plans.len() as u64,
        mapped_blkaddrs: mapped,
    })
}

/// Encodes a directory's entries (with `.` and `..`) into `size` bytes.
fn encode_dir(tree: &Tree, id: InodeId, size: u64, self_nid: u64, parent_nid: u64, nid_of: &dyn Fn(InodeId) -> u64) -> Vec<u8> {
    let children = tree.children(id).expect("directory");
    let mut entries: Vec<Dirent> = children
        .iter()
        .map(|(name, &c)| Dirent {
            name,
            nid: nid_of(c),
            file_type: file_type(tree.inodes[c].mode),
        })
        .collect();
    entries.push(Dirent {
        name: b".",
        nid: self_nid,
        file_type: FT_DIR,
    });
    entries.push(Dirent {
        name: b"..",
        nid: parent_nid,
        file_type: FT_DIR,
    });
    entries.sort_unstable_by(|a, b| a.name.cmp(b.name));
    let mut out = vec![0u8; size as usize];
    dir::encode(&entries, &mut out);
    out
}

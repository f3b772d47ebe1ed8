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
//!
//! [`write_image`] runs in phases, as mkfs.erofs does, each deciding one
//! thing for every inode before the next starts (a nid cannot be known
//! before every earlier record's size is, and a directory cannot be
//! encoded before its children's nids are):
//!
//! 1. [`collect`]: which inodes are reachable, in breadth-first order,
//!    with link counts and parents;
//! 2. [`plan`]: each inode's xattrs, data layout and record size;
//! 3. [`assign_nids`]: where each inode record goes;
//! 4. [`place_blocks`]: where each directory's and symlink's blocks go
//!    (and the shared xattr area after them, see [`SharedArea`]);
//! 5. [`encode_metadata`]: inodes, xattrs, chunk tables, directories;
//! 6. [`write_block0`]: device table and checksummed superblock, which
//!    record totals only known once everything else is placed.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use crate::dir;
use crate::format::*;
use crate::sequential::Sequential;
use crate::tree::{ChunkRun, FileData, Inode, InodeId, Kind, Tree, ROOT, ROOT_DIR};
use crate::xattr::{self, SharedArea, XattrRef};
use crate::{Error, BLOCK_SIZE};

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

/// Per-inode layout decisions, kept for every inode until the image is
/// written (so kept small: see [`MEMORY_PER_INODE`]).
struct Plan {
    nid: u64,
    size: u64,
    data_blkaddr: u64,
    xattr_size: u32,
    /// Bytes stored right after the xattrs (chunk table or inline tail),
    /// including alignment padding before a chunk table.
    extra: u32,
    /// Blocks of plain data in the metadata area (directories, symlinks).
    data_blocks: u32,
    nlink: u32,
    layout: u16,
}

/// Memory [`write_image`] holds per inode of the tree while it works:
/// its plan and its entries in [`Order`]. Builders count it in their
/// memory budget.
pub const MEMORY_PER_INODE: u64 = (std::mem::size_of::<Plan>() + 3 * 4 + std::mem::size_of::<InodeId>()) as u64;

fn too_large(message: impl Into<String>) -> Error {
    Error::TooLarge { message: message.into() }
}

fn to_u32(v: u64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| too_large(format!("{what} {v} does not fit 32 bits")))
}

/// Writes the metadata for `tree` after the first `data_end` blocks of
/// `out` (which the caller has already filled), then block 0.
pub fn write_image(tree: &Tree, out: &File, data_end: u64, devices: &[DeviceSpec<'_>], markers: bool) -> Result<Written, Error> {
    let order = collect(tree);
    let devt_end = (SUPER_OFFSET + SUPER_SIZE + devices.len() * DEVICE_SLOT_SIZE) as u64;
    let meta_blkaddr = data_end.max(devt_end.div_ceil(BLOCK_SIZE));
    let sets: Vec<_> = order.inodes.iter().map(|&id| &tree.inodes[id].xattrs).collect();
    let area = SharedArea::build(&sets);
    drop(sets);
    let mut plans = Vec::with_capacity(order.inodes.len());
    for &id in &order.inodes {
        plans.push(plan(tree, id, order.nlink[id], markers, &area)?);
    }
    let inode_blocks = assign_nids(&mut plans);
    let blocks_end = place_blocks(&mut plans, meta_blkaddr + inode_blocks)?;
    if plans[0].nid > u64::from(u16::MAX) {
        return Err(too_large("root nid does not fit 16 bits"));
    }
    // The shared xattr area, if any, comes last.
    let xattr_blkaddr = if area.bytes().is_empty() { 0 } else { blocks_end };
    let total_blocks = blocks_end + (area.bytes().len() as u64).div_ceil(BLOCK_SIZE);
    to_u32(total_blocks, "image size in blocks")?;
    let layout = Layout {
        meta_blkaddr,
        inode_blocks,
        xattr_blkaddr,
        total_blocks,
        markers,
        area,
    };
    encode_metadata(tree, &order, &plans, &layout, out)?;
    let sb = Superblock {
        checksum: 0,
        feature_compat: COMPAT_SB_CHKSUM,
        feature_incompat: 0,
        blkszbits: BLKSZ_BITS,
        root_nid: plans[0].nid as u16,
        inos: plans.len() as u64,
        build_time: order.inodes.iter().map(|&id| tree.inodes[id].mtime).fold(0, i64::max) as u64,
        blocks: total_blocks as u32,
        meta_blkaddr: to_u32(meta_blkaddr, "metadata block address")?,
        xattr_blkaddr: xattr_blkaddr as u32,
        extra_devices: devices.len() as u16,
        devt_slotoff: 0,
    };
    let any_chunked = plans.iter().any(|p| p.layout == LAYOUT_CHUNK_BASED);
    let mapped = write_block0(out, sb, any_chunked, devices, total_blocks)?;
    Ok(Written {
        blocks: total_blocks,
        inodes: plans.len() as u64,
        mapped_blkaddrs: mapped,
    })
}

/// The inodes reachable from the root, as [`collect`] found them.
struct Order {
    /// Breadth-first order: the root first, then each directory's
    /// children by name (an inode with several names at its first).
    inodes: Vec<InodeId>,
    /// Position in `inodes` of each arena id (`u32::MAX`: unreachable).
    index: Vec<u32>,
    /// Link count of each arena id.
    nlink: Vec<u32>,
    /// Position in `inodes` of each directory's parent.
    parent: Vec<u32>,
}

/// Phase 1: walks the tree breadth-first from the root. The arena also
/// holds replaced inodes, so only this walk says what the image holds;
/// link counts come from it too, because a hardlink is just one more
/// name for an arena id.
fn collect(tree: &Tree) -> Order {
    let n = tree.inodes.len();
    let mut order = Order {
        inodes: vec![ROOT],
        index: vec![u32::MAX; n],
        nlink: vec![0u32; n],
        parent: vec![0; n],
    };
    order.index[ROOT] = 0;
    let mut queue = VecDeque::from([ROOT_DIR]);
    while let Some(d) = queue.pop_front() {
        let dir = tree.dir(d);
        order.nlink[dir.inode] += 2;
        for &c in dir.children.values() {
            let child_dir = tree.as_dir(c);
            if child_dir.is_some() {
                order.nlink[dir.inode] += 1;
                order.parent[c] = order.index[dir.inode];
            } else {
                order.nlink[c] += 1;
            }
            if order.index[c] == u32::MAX {
                order.index[c] = order.inodes.len() as u32;
                order.inodes.push(c);
                queue.extend(child_dir);
            }
        }
    }
    order
}

/// Phase 2: decides an inode's xattrs and data layout, which fix the
/// size of its record: directories and symlinks inline their last
/// partial block when it fits beside the inode, sparse and fsmeta files
/// carry a chunk table, everything else is the bare inode.
fn plan(tree: &Tree, id: InodeId, nlink: u32, markers: bool, area: &SharedArea) -> Result<Plan, Error> {
    let inode = &tree.inodes[id];
    let (shared, inline) = xattrs_of(tree, inode, markers, area);
    let xattr_size = xattr::body_size(shared.len(), &inline);
    if xattr_size > XATTR_HEADER_SIZE + 4 * (usize::from(u16::MAX) - 1) {
        return Err(too_large("extended attributes of one inode exceed 256 KiB"));
    }
    let head = INODE_SIZE + xattr_size;
    let inline = |len: u64| -> (u16, usize, u64) {
        let tail = (len % BLOCK_SIZE) as usize;
        if tail != 0 && head + tail <= BLOCK {
            (LAYOUT_FLAT_INLINE, tail, len / BLOCK_SIZE)
        } else {
            (LAYOUT_FLAT_PLAIN, 0, len.div_ceil(BLOCK_SIZE))
        }
    };
    let (mut layout, mut size, mut extra, mut data_blocks) = (LAYOUT_FLAT_PLAIN, 0, 0, 0);
    match &inode.kind {
        Kind::Dir(d) => {
            size = dir::dirents_size(tree.dir(*d));
            (layout, extra, data_blocks) = inline(size);
        }
        Kind::Symlink(target) => {
            size = target.len() as u64;
            (layout, extra, data_blocks) = inline(size);
        }
        Kind::File { size: s, data } => {
            size = *s;
            if let FileData::Chunked { device_id, runs, .. } = data {
                layout = LAYOUT_CHUNK_BASED;
                let unit = chunk_entry_size(*device_id);
                let chunks: u64 = runs.iter().map(|r| r.count).sum();
                extra = head.next_multiple_of(unit) - head + unit * chunks as usize;
            }
        }
        Kind::Special { .. } => {}
    }
    Ok(Plan {
        nid: 0,
        size,
        data_blkaddr: 0,
        xattr_size: xattr_size as u32,
        extra: u32::try_from(extra).map_err(|_| too_large("chunk table does not fit 32 bits"))?,
        data_blocks: to_u32(data_blocks, "directory size in blocks")?,
        nlink,
        layout,
    })
}

/// An inode's xattrs as written: the ids of those in the shared area,
/// and the inline ones, which in layer images end with the
/// implicit/opaque markers fsmeta needs (fsmeta itself writes none).
fn xattrs_of<'a>(tree: &Tree, inode: &'a Inode, markers: bool, area: &SharedArea) -> (Vec<u32>, Vec<XattrRef<'a>>) {
    let (shared, mut inline) = area.split(&inode.xattrs);
    if let (true, Kind::Dir(d)) = (markers, &inode.kind) {
        let dir = tree.dir(*d);
        for (flag, name) in [(dir.implicit, IMPLICIT_XATTR), (dir.opaque, OPAQUE_XATTR)] {
            if flag && !inode.xattrs.as_slice().iter().any(|(n, _)| n == name) {
                inline.push((name, b"y"));
            }
        }
    }
    (shared, inline)
}

/// Bytes of one chunk-table entry: fsmeta's 8-byte indexes name a
/// device, a layer's 4-byte block map needs none.
fn chunk_entry_size(device_id: Option<u16>) -> usize {
    if device_id.is_some() {
        8
    } else {
        4
    }
}

/// Phase 3: places inode records one after the other in 32-byte slots
/// (a nid is a slot number), moving a record that would straddle a
/// block boundary to the next block; returns the blocks they fill.
fn assign_nids(plans: &mut [Plan]) -> u64 {
    let mut pos = NID_UNIT as usize;
    for p in plans.iter_mut() {
        let len = INODE_SIZE + p.xattr_size as usize + p.extra as usize;
        if len <= BLOCK && pos % BLOCK + len > BLOCK {
            pos = pos.next_multiple_of(BLOCK);
        }
        p.nid = (pos as u64) / NID_UNIT;
        pos = (pos + len).next_multiple_of(NID_UNIT as usize);
    }
    pos.div_ceil(BLOCK) as u64
}

/// Phase 4: gives each directory and symlink its whole blocks, from
/// `first` on, in inode order; returns the image size in blocks, which
/// must fit the superblock's 32-bit field.
fn place_blocks(plans: &mut [Plan], first: u64) -> Result<u64, Error> {
    let mut next_blk = first;
    for p in plans.iter_mut() {
        p.data_blkaddr = next_blk;
        next_blk += u64::from(p.data_blocks);
    }
    to_u32(next_blk, "image size in blocks")?;
    Ok(next_blk)
}

/// Where the metadata area goes, as [`write_image`] laid it out.
struct Layout {
    meta_blkaddr: u64,
    /// Blocks of inode records, from `meta_blkaddr`.
    inode_blocks: u64,
    /// Start of the shared xattr area, after the directory blocks.
    xattr_blkaddr: u64,
    total_blocks: u64,
    /// Whether directories get the layer markers ([`xattrs_of`]).
    markers: bool,
    area: SharedArea,
}

/// Phase 5: encodes and writes the metadata area: every inode record
/// (inode, xattrs, chunk table or inline tail) in nid order, and the
/// directory and symlink blocks after them in block order, then the
/// shared xattr area. Both only
/// move forward, so each is streamed through a [`Sequential`] writer
/// and only one record and one directory are in memory at a time.
fn encode_metadata(tree: &Tree, order: &Order, plans: &[Plan], layout: &Layout, out: &File) -> Result<(), Error> {
    let base = layout.meta_blkaddr * BLOCK_SIZE;
    let blocks_start = (layout.meta_blkaddr + layout.inode_blocks) * BLOCK_SIZE;
    let mut records = Sequential::new(out, base);
    let mut blocks = Sequential::new(out, blocks_start);
    let mut record = Vec::new();
    for (ino, (p, &id)) in plans.iter().zip(&order.inodes).enumerate() {
        let inode = &tree.inodes[id];
        record.clear();
        record.resize(INODE_SIZE + p.xattr_size as usize, 0);
        let (shared, inline) = xattrs_of(tree, inode, layout.markers, &layout.area);
        xattr::encode_body(&shared, &inline, &mut record[INODE_SIZE..]);
        let i_u = match &inode.kind {
            Kind::Dir(d) => {
                let nid_of = |id: InodeId| plans[order.index[id] as usize].nid;
                let parent = plans[order.parent[id] as usize].nid;
                let bytes = dir::encode_dir(tree, tree.dir(*d), p.size, p.nid, parent, &nid_of);
                encode_flat_data(&mut blocks, &mut record, p, &bytes)?
            }
            Kind::Symlink(target) => encode_flat_data(&mut blocks, &mut record, p, target)?,
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
            } => encode_chunks(&mut record, *chunkbits, *device_id, runs)?,
            Kind::Special { rdev } => *rdev,
        };
        RawInode {
            layout: p.layout,
            xattr_icount: xattr::icount(p.xattr_size as usize),
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
        .encode(&mut record);
        records.write_at(base + p.nid * NID_UNIT, &record)?;
    }
    records.finish(blocks_start)?;
    if !layout.area.bytes().is_empty() {
        blocks.write_at(layout.xattr_blkaddr * BLOCK_SIZE, layout.area.bytes())?;
    }
    blocks.finish(layout.total_blocks * BLOCK_SIZE)?;
    Ok(())
}

/// Stores a directory's or symlink's `bytes`: whole blocks at the
/// planned block address, the tail inline after the xattrs in `record`
/// when the plan says so. Returns the inode's startblk (0 without
/// blocks).
fn encode_flat_data(blocks: &mut Sequential<'_>, record: &mut Vec<u8>, p: &Plan, bytes: &[u8]) -> Result<u32, Error> {
    let plain = ((u64::from(p.data_blocks) * BLOCK_SIZE) as usize).min(bytes.len());
    if plain > 0 {
        blocks.write_at(p.data_blkaddr * BLOCK_SIZE, &bytes[..plain])?;
    }
    if p.layout == LAYOUT_FLAT_INLINE {
        record.extend_from_slice(&bytes[plain..]);
    }
    if p.data_blocks > 0 {
        to_u32(p.data_blkaddr, "block address")
    } else {
        Ok(0)
    }
}

/// Appends a chunk-based file's table to its `record` (after the
/// xattrs, aligned to the entry size): one entry per chunk, holes as
/// null addresses. Returns the inode's chunk format.
fn encode_chunks(record: &mut Vec<u8>, chunkbits: u8, device_id: Option<u16>, runs: &[ChunkRun]) -> Result<u32, Error> {
    let unit = chunk_entry_size(device_id);
    record.resize(record.len().next_multiple_of(unit), 0);
    for run in runs {
        for i in 0..run.count {
            let blk = match run.blkaddr {
                Some(b) => to_u32(b + (i << chunkbits), "block address")?,
                None => NULL_ADDR,
            };
            match device_id {
                Some(dev) => {
                    let dev = if run.blkaddr.is_some() { dev } else { 0 };
                    record.extend_from_slice(&[0, 0]);
                    record.extend_from_slice(&dev.to_le_bytes());
                    record.extend_from_slice(&blk.to_le_bytes());
                }
                None => record.extend_from_slice(&blk.to_le_bytes()),
            }
        }
    }
    let indexes = if device_id.is_some() { CHUNK_FORMAT_INDEXES } else { 0 };
    Ok(u32::from(indexes | u16::from(chunkbits)))
}

/// Phase 6: writes block 0 (plus the blocks a long device table spills
/// into): the device table, each device mapped right after the previous
/// one from `total_blocks` on (the flatdev disk layout), and the
/// superblock with its checksum. Returns each device's mapped address.
fn write_block0(
    out: &File,
    mut sb: Superblock,
    any_chunked: bool,
    devices: &[DeviceSpec<'_>],
    total_blocks: u64,
) -> Result<Vec<u64>, Error> {
    let devt_end = (SUPER_OFFSET + SUPER_SIZE + devices.len() * DEVICE_SLOT_SIZE) as u64;
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
    if any_chunked {
        sb.feature_incompat |= INCOMPAT_CHUNKED_FILE;
    }
    if !devices.is_empty() {
        sb.feature_incompat |= INCOMPAT_DEVICE_TABLE;
        sb.devt_slotoff = ((SUPER_OFFSET + SUPER_SIZE) / DEVICE_SLOT_SIZE) as u16;
    }
    sb.encode(&mut block0);
    sb.checksum = superblock_checksum(&block0[..BLOCK]);
    sb.encode(&mut block0);
    let mut file = out;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&block0)?;
    file.flush()?;
    Ok(mapped)
}

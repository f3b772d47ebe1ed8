//! Lays out and writes the metadata of an image from a [`Tree`].
//!
//! Layout: block 0 holds the superblock (and the device table, if any);
//! whatever the caller already wrote (file data) follows; then the inode
//! records, every inode in breadth-first order, and last the blocks of
//! directories and symlinks too large to inline. Nids count 32-byte slots
//! from `meta_blkaddr`, and the root's must fit the superblock's 16 bits:
//! - fsmeta ([`Role::Fsmeta`]): the metadata area starts after the device
//!   table, with one slot of padding (so no inode gets nid 0, which the
//!   kernel would report as inode number 0) and the root at nid 1;
//! - a layer ([`Role::Layer`]): `meta_blkaddr` is 0, so a nid can name a
//!   record anywhere in the image, and the layer builder packs small
//!   files' records among the file data as it streams
//!   ([`Kind::Placed`]); the root's record has block [`ROOT_BLOCK`] to
//!   itself, since the others lie past the data.
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
//! 3. [`assign_nids`]: where each inode record goes (placed records
//!    already have a place: [`place_placed`] gives them nids once the
//!    devices are mapped);
//! 4. [`place_blocks`]: where each directory's and symlink's blocks go
//!    (and the shared xattr area after them, see [`SharedArea`]);
//! 5. [`encode_metadata`]: inodes, xattrs, chunk tables, directories;
//! 6. [`write_block0`]: device table and checksummed superblock, which
//!    record totals only known once everything else is placed.

use std::collections::VecDeque;
use std::fs::File;

mod encode;

use crate::dir;
use crate::format::*;
use crate::tree::{FileData, Inode, InodeId, Kind, Tree, ROOT, ROOT_DIR};
use crate::xattr::{self, Shared, SharedArea, XattrRef};
use crate::{Error, BLOCK_SIZE};
use encode::{encode_metadata, map_devices, write_block0, Layout};

/// Name of the xattr marking directories that had no entry of their own
/// in a layer's tar (created for a deeper path). It lives in `trusted.`,
/// so unprivileged users never see it; fsmeta reads and drops it.
pub const IMPLICIT_XATTR: &[u8] = b"trusted.msb.implicit";
/// Overlay's opaque-directory marker, set for `.wh..wh..opq` entries.
pub const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// What an image is for, which decides where its metadata goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A layer image: directories carry the markers fsmeta needs
    /// ([`IMPLICIT_XATTR`], [`OPAQUE_XATTR`]), nids count from byte 0
    /// and the root's record is in [`ROOT_BLOCK`].
    Layer,
    /// fsmeta: no markers; the metadata area follows the device table.
    Fsmeta,
}

/// The block of a layer image that holds the root directory's record
/// (the layer builder leaves it free): its nid must fit 16 bits, and
/// every other record's place is only known once the data is written.
pub const ROOT_BLOCK: u64 = 1;

/// [`Plan::layout`] of a [`Kind::Placed`] inode, which has no record to write.
const PLACED: u16 = u16::MAX;

/// A device-table slot to write: the mapped address is computed here.
pub struct DeviceSpec<'a> {
    pub tag: &'a [u8],
    pub blocks: u64,
    /// The device's image, which copied tails are read from.
    pub file: &'a File,
}

/// What [`write_image`] produced.
pub struct Written {
    pub blocks: u64,
    pub inodes: u64,
    pub mapped_blkaddrs: Vec<u64>,
}

const BLOCK: usize = BLOCK_SIZE as usize;

/// Per-inode layout decisions, kept for every inode until the image is
/// written (so kept small: see [`MEMORY_PER_INODE`], which also counts
/// the inode's entries in [`Order`] and in the nid order).
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
/// its plan, its entries in [`Order`] and its place in the nid order. Builders count it in their
/// memory budget.
pub const MEMORY_PER_INODE: u64 = (std::mem::size_of::<Plan>() + 4 * 4 + std::mem::size_of::<InodeId>()) as u64;

fn too_large(message: impl Into<String>) -> Error {
    Error::TooLarge { message: message.into() }
}

fn to_u32(v: u64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| too_large(format!("{what} {v} does not fit 32 bits")))
}

/// Writes the metadata for `tree` after the first `data_end` blocks of
/// `out` (which the caller has already filled), then block 0.
pub fn write_image(tree: &Tree, out: &File, data_end: u64, devices: &[DeviceSpec<'_>], role: Role) -> Result<Written, Error> {
    let markers = role == Role::Layer;
    let order = collect(tree);
    let devt_end = (SUPER_OFFSET + SUPER_SIZE + devices.len() * DEVICE_SLOT_SIZE) as u64;
    let (meta_blkaddr, first, root_at) = match role {
        Role::Layer => (0, data_end.max(ROOT_BLOCK + 1) * BLOCK_SIZE, Some(ROOT_BLOCK * BLOCK_SIZE)),
        Role::Fsmeta => {
            let meta = data_end.max(devt_end.div_ceil(BLOCK_SIZE));
            (meta, meta * BLOCK_SIZE + NID_UNIT, None)
        }
    };
    let base = meta_blkaddr * BLOCK_SIZE;
    let none = Shared::default();
    let sets: Vec<_> = order.inodes.iter().map(|&id| xattr_set(&tree.inodes[id], &none)).collect();
    // A root whose xattrs would not fit its block beside it shares them all.
    let root = &tree.inodes[ROOT];
    let (_, all_inline) = xattrs_of(tree, root, markers, &SharedArea::default());
    let crowded = root_at.is_some() && INODE_SIZE + xattr::body_size(0, &all_inline) > BLOCK;
    let area = SharedArea::build(&sets, crowded.then_some(&root.xattrs));
    drop((sets, all_inline));
    let mut plans = Vec::with_capacity(order.inodes.len());
    for &id in &order.inodes {
        plans.push(plan(tree, id, order.nlink[id], markers, &area)?);
    }
    let records_end = assign_nids(&mut plans, base, first, root_at)?;
    // Records and blocks are written in nid order, forward only.
    let mut seq: Vec<u32> = (0..plans.len() as u32).collect();
    seq.sort_unstable_by_key(|&i| plans[i as usize].nid);
    let blocks_end = place_blocks(&mut plans, &seq, records_end.div_ceil(BLOCK_SIZE))?;
    // The shared xattr area, if any, comes last.
    let xattr_blkaddr = if area.bytes().is_empty() { 0 } else { blocks_end };
    let total_blocks = blocks_end + (area.bytes().len() as u64).div_ceil(BLOCK_SIZE);
    to_u32(total_blocks, "image size in blocks")?;
    let mapped = map_devices(devices, total_blocks)?;
    place_placed(tree, &order, &mut plans, base, &mapped)?;
    if plans[0].nid > u64::from(u16::MAX) {
        return Err(too_large("root nid does not fit 16 bits"));
    }
    let layout = Layout {
        mapped: mapped.clone(),
        base,
        first,
        root_at,
        records_end,
        xattr_blkaddr,
        total_blocks,
        markers,
        area,
    };
    encode_metadata(tree, &order, &plans, &seq, &layout, devices, out)?;
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
    write_block0(out, sb, any_chunked, devices)?;
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
    if let Kind::Placed { .. } = inode.kind {
        return Ok(Plan {
            nid: 0,
            size: 0,
            data_blkaddr: 0,
            xattr_size: 0,
            extra: 0,
            data_blocks: 0,
            nlink,
            layout: PLACED,
        });
    }
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
            match data {
                FileData::Chunked { runs, .. } => {
                    layout = LAYOUT_CHUNK_BASED;
                    let chunks: u64 = runs.iter().map(|r| r.count).sum();
                    extra = head.next_multiple_of(CHUNK_ENTRY) - head + CHUNK_ENTRY * chunks as usize;
                }
                FileData::Tail { tail_len, .. } => {
                    let tail = usize::from(*tail_len);
                    if head + tail > BLOCK {
                        return Err(too_large("a file's tail and xattrs do not fit one block beside its inode"));
                    }
                    (layout, extra) = (LAYOUT_FLAT_INLINE, tail);
                }
                FileData::Flat { .. } => {}
            }
        }
        Kind::Special { .. } | Kind::Placed { .. } => {}
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

/// The xattr set the image writes for `inode`: none for a placed one,
/// whose record is already written.
fn xattr_set<'a>(inode: &'a Inode, none: &'a Shared) -> &'a Shared {
    match inode.kind {
        Kind::Placed { .. } => none,
        _ => &inode.xattrs,
    }
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

/// Bytes of one chunk-table entry: a 4-byte block map. Every address is
/// one on the flat disk, so no entry names a device (fsmeta written
/// before small files were packed used 8-byte indexes that did).
const CHUNK_ENTRY: usize = 4;

/// First block of device `device_id` (0: this image) on the flat disk.
fn device_start(device_id: u16, mapped: &[u64]) -> Result<u64, Error> {
    match device_id {
        0 => Ok(0),
        d => mapped.get(usize::from(d) - 1).copied().ok_or_else(|| Error::InvalidImage {
            message: format!("an inode refers to device {d}, which the image does not have"),
        }),
    }
}

/// Block ends [`assign_nids`] keeps for later records.
const HOLES_MAX: usize = 16;

/// Phase 3: places inode records one after the other in 32-byte slots
/// from byte `first` (a nid is a slot number from `base`), moving a
/// record that would straddle a block boundary to the next block (and
/// filling what that left with later records that fit), and the root's
/// at `root_at` when given; placed inodes have their record already.
/// Returns where the records end.
fn assign_nids(plans: &mut [Plan], base: u64, first: u64, root_at: Option<u64>) -> Result<u64, Error> {
    let mut pos = first;
    // Ends of blocks left when a record moved to the next one, as (start,
    // length), for later records that fit: fsmeta's tail records are up
    // to a block long, and would otherwise leave a fifth of it unused.
    let mut holes: Vec<(u64, u64)> = Vec::new();
    for (i, p) in plans.iter_mut().enumerate() {
        if p.layout == PLACED {
            continue;
        }
        let len = (INODE_SIZE + p.xattr_size as usize + p.extra as usize) as u64;
        let at = match root_at {
            Some(at) if i == 0 => {
                if len > BLOCK_SIZE {
                    return Err(too_large(format!(
                        "the root directory's inode and xattrs take {len} bytes, more than one block"
                    )));
                }
                at
            }
            _ if len <= BLOCK_SIZE => match holes.iter_mut().find(|h| h.1 >= len) {
                Some(hole) => {
                    let at = hole.0;
                    let used = len.next_multiple_of(NID_UNIT).min(hole.1);
                    (hole.0, hole.1) = (at + used, hole.1 - used);
                    at
                }
                None => {
                    if pos % BLOCK_SIZE + len > BLOCK_SIZE {
                        let end = pos.next_multiple_of(BLOCK_SIZE);
                        if holes.len() == HOLES_MAX {
                            holes.remove(0);
                        }
                        holes.push((pos, end - pos));
                        pos = end;
                    }
                    let at = pos;
                    pos = (pos + len).next_multiple_of(NID_UNIT);
                    at
                }
            },
            _ => {
                let at = pos;
                pos = (pos + len).next_multiple_of(NID_UNIT);
                at
            }
        };
        p.nid = (at - base) / NID_UNIT;
    }
    Ok(pos)
}

/// Gives each placed inode the nid of its record: on this image, or on
/// the device it is on, mapped after this image as the flatdev disk
/// lays them out (so a nid names a layer's record in the root disk).
fn place_placed(tree: &Tree, order: &Order, plans: &mut [Plan], base: u64, mapped: &[u64]) -> Result<(), Error> {
    for (p, &id) in plans.iter_mut().zip(&order.inodes) {
        let Kind::Placed { device_id, pos } = tree.inodes[id].kind else {
            continue;
        };
        let at = device_start(device_id, mapped)? * BLOCK_SIZE + pos;
        if at < base || !at.is_multiple_of(NID_UNIT) {
            return Err(Error::InvalidImage {
                message: format!("an inode record at byte {at} cannot be given a nid"),
            });
        }
        p.nid = (at - base) / NID_UNIT;
    }
    Ok(())
}

/// Phase 4: gives each directory and symlink its whole blocks, from
/// `first` on, in inode order; returns the image size in blocks, which
/// must fit the superblock's 32-bit field.
fn place_blocks(plans: &mut [Plan], seq: &[u32], first: u64) -> Result<u64, Error> {
    let mut next_blk = first;
    for &i in seq {
        let p = &mut plans[i as usize];
        p.data_blkaddr = next_blk;
        next_blk += u64::from(p.data_blocks);
    }
    to_u32(next_blk, "image size in blocks")?;
    Ok(next_blk)
}

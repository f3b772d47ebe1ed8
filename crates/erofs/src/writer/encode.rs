//! Phases 5 and 6 of [`super::write_image`]: encoding the metadata area
//! as the earlier phases laid it out, and block 0.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use super::*;
use crate::sequential::{read_exact_at, write_all_at, Sequential};
use crate::tree::ChunkRun;

/// Where the metadata area goes, as [`write_image`] laid it out.
pub(super) struct Layout {
    /// Where each device starts on the flat disk, in blocks.
    pub(super) mapped: Vec<u64>,
    /// Byte nids count from (`meta_blkaddr`).
    pub(super) base: u64,
    /// Where the inode records start, and end.
    pub(super) first: u64,
    pub(super) records_end: u64,
    /// Where the root's record goes, when not first among the records.
    pub(super) root_at: Option<u64>,
    /// Start of the shared xattr area, after the directory blocks.
    pub(super) xattr_blkaddr: u64,
    pub(super) total_blocks: u64,
    /// Whether directories get the layer markers ([`xattrs_of`]).
    pub(super) markers: bool,
    pub(super) area: SharedArea,
}

/// Phase 5: encodes and writes the metadata area: every inode record
/// (inode, xattrs, chunk table or inline tail) in nid order, and the
/// directory and symlink blocks after them in block order, then the
/// shared xattr area. Both only
/// move forward, so each is streamed through a [`Sequential`] writer
/// and only one record and one directory are in memory at a time.
pub(super) fn encode_metadata(
    tree: &Tree,
    order: &Order,
    plans: &[Plan],
    seq: &[u32],
    layout: &Layout,
    devices: &[DeviceSpec<'_>],
    out: &File,
) -> Result<(), Error> {
    let base = layout.base;
    let blocks_start = layout.records_end.next_multiple_of(BLOCK_SIZE);
    let mut records = Sequential::new(out, layout.first);
    let mut blocks = Sequential::new(out, blocks_start);
    let mut record = Vec::new();
    for &i in seq {
        let (ino, p, id) = (i as usize, &plans[i as usize], order.inodes[i as usize]);
        let inode = &tree.inodes[id];
        if let Kind::Placed { device_id, pos } = inode.kind {
            // Packed records are written with one link; hardlinks add more.
            if device_id == 0 && p.nlink != 1 {
                write_all_at(out, &p.nlink.to_le_bytes(), pos + NLINK_OFFSET)?;
            }
            continue;
        }
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
                data:
                    FileData::Tail {
                        device_id,
                        blkaddr,
                        tail_at,
                        tail_len,
                    },
                size,
            } => {
                let device = usize::from(*device_id).checked_sub(1).and_then(|d| devices.get(d));
                let device = device.ok_or_else(|| Error::InvalidImage {
                    message: format!("a tail is on device {device_id}, which the image does not have"),
                })?;
                let at = record.len();
                record.resize(at + usize::from(*tail_len), 0);
                read_exact_at(device.file, &mut record[at..], *tail_at)?;
                if *size >= BLOCK_SIZE {
                    to_u32(device_start(*device_id, &layout.mapped)? + blkaddr, "block address")?
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
                let start = device_start(device_id.unwrap_or(0), &layout.mapped)?;
                encode_chunks(&mut record, *chunkbits, start, runs)?
            }
            Kind::Special { rdev } => *rdev,
            Kind::Placed { .. } => unreachable!("placed inodes were skipped"),
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
        match layout.root_at {
            Some(at) if ino == 0 => write_all_at(out, &record, at)?,
            _ => records.write_at(base + p.nid * NID_UNIT, &record)?,
        }
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
/// xattrs, aligned to the entry size): one block address per chunk on
/// the flat disk (the runs' device starts at block `start`), holes as
/// null addresses. Returns the inode's chunk format.
fn encode_chunks(record: &mut Vec<u8>, chunkbits: u8, start: u64, runs: &[ChunkRun]) -> Result<u32, Error> {
    record.resize(record.len().next_multiple_of(CHUNK_ENTRY), 0);
    for run in runs {
        for i in 0..run.count {
            let blk = match run.blkaddr {
                Some(b) => to_u32(start + b + (i << chunkbits), "block address")?,
                None => NULL_ADDR,
            };
            record.extend_from_slice(&blk.to_le_bytes());
        }
    }
    Ok(u32::from(chunkbits))
}

/// Where each device starts on the flatdev disk: right after the
/// previous one, from the image's own `total_blocks` on.
pub(super) fn map_devices(devices: &[DeviceSpec<'_>], total_blocks: u64) -> Result<Vec<u64>, Error> {
    let mut mapped = Vec::with_capacity(devices.len());
    let mut next = total_blocks;
    for d in devices {
        to_u32(next, "mapped block address")?;
        mapped.push(next);
        next += d.blocks;
    }
    Ok(mapped)
}

/// Phase 6: writes block 0 (plus the blocks a long device table spills
/// into): the device table and the superblock with its checksum.
///
/// The table names each layer (tag, size) in disk order, for checks and
/// tools, with a mapped address of 0: every address in the image is
/// already one on the flat disk, and erofs-utils 1.5 would move an
/// address that falls inside a mapped device to the device's own offsets
/// while still reading the image it was given.
pub(super) fn write_block0(out: &File, mut sb: Superblock, any_chunked: bool, devices: &[DeviceSpec<'_>]) -> Result<(), Error> {
    let devt_end = (SUPER_OFFSET + SUPER_SIZE + devices.len() * DEVICE_SLOT_SIZE) as u64;
    let mut block0 = vec![0u8; devt_end.next_multiple_of(BLOCK_SIZE) as usize];
    for (i, d) in devices.iter().enumerate() {
        let off = SUPER_OFFSET + SUPER_SIZE + i * DEVICE_SLOT_SIZE;
        let slot = &mut block0[off..off + DEVICE_SLOT_SIZE];
        encode_device_slot(slot, d.tag, to_u32(d.blocks, "device size")?, 0);
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
    Ok(())
}

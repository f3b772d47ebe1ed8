//! fsmeta: the layers merged into one metadata-only image.
//!
//! Layers are applied bottom to top following the OCI "applying
//! changesets" rules with overlay-style whiteouts as the layer images
//! store them (char device 0/0 = whiteout, `trusted.overlay.opaque=y` =
//! opaque directory). Directories are merged into fsmeta's own. A layer
//! inode whose record holds all it has (a packed small file, an inline
//! symlink, a special file: [`reader::Image::self_contained`]) and has
//! one name is not copied: fsmeta's directory entry names its record in
//! the root disk, where the layer is mapped after fsmeta
//! ([`Kind::Placed`]). The root disk is read as the one flat device the
//! VMDK makes, as the sandbox's kernel reads it. Other regular files
//! become chunk-based inodes whose chunks point at the layer's blocks on
//! that disk (the tree names the layer, device id = layer index + 1, and
//! the writer turns it into disk addresses), or, when the layer packed
//! the file's tail, tail-packed inodes with the tail copied; other
//! symlinks and special files are copied.
//!
//! A contiguous layer file becomes one chunk when it is at most
//! 2^[`MAX_CHUNKBITS`] blocks (64 MiB), otherwise 64 MiB chunks; capping
//! keeps single reads bounded for userspace tools (erofs-utils reads a
//! whole chunk at once). Sparse layer files keep their chunk size and
//! their holes stay null chunks.

use std::collections::{HashMap, HashSet};
use std::fs::File;

use crate::format::{S_IFCHR, S_IFMT};
use crate::reader::{self, FileMap, Image};
use crate::tree::{ChunkRun, DirId, FileData, Inode, InodeId, Kind, Tree, ROOT_DIR};
use crate::writer::{write_image, DeviceSpec, Role, IMPLICIT_XATTR, OPAQUE_XATTR};
use crate::xattr::Interner;
use crate::{Error, FsmetaLayer, FsmetaSummary, BLOCK_SIZE};

/// Largest chunk used for contiguous files, as block bits (64 MiB).
const MAX_CHUNKBITS: u8 = 14;

pub(crate) fn build(layers: &[FsmetaLayer<'_>], out: &File) -> Result<FsmetaSummary, Error> {
    if layers.len() > usize::from(u16::MAX) - 1 {
        return Err(Error::TooLarge {
            message: format!("{} layers", layers.len()),
        });
    }
    let mut tree = Tree::default();
    let mut xattrs = Interner::default();
    // Open until fsmeta is written: copied tails are read from them then.
    let files = layers.iter().map(|l| File::open(l.path)).collect::<Result<Vec<_>, _>>()?;
    let mut devices = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        if layer.tag.len() > 64 {
            return Err(Error::TooLarge {
                message: "device tag longer than 64 bytes".into(),
            });
        }
        let img = Image::open(layer.path)?;
        if !img.devices().is_empty() {
            return Err(Error::InvalidImage {
                message: "a layer image must not have extra devices".into(),
            });
        }
        if img.blocks() * BLOCK_SIZE != img.file_len() {
            return Err(Error::InvalidImage {
                message: format!("{}: superblock size does not match the file size", layer.path.display()),
            });
        }
        devices.push(DeviceSpec {
            tag: layer.tag,
            blocks: img.blocks(),
            file: &files[i],
        });
        let root = img.inode(img.root_nid())?;
        let mut m = Merge {
            img: &img,
            tree: &mut tree,
            device_id: i as u16 + 1,
            links: HashMap::new(),
            xattrs: &mut xattrs,
        };
        // Depth-first with an explicit stack: archives can nest deeply.
        // A directory reached twice (a damaged image naming an ancestor,
        // or a directory hardlink) would make the walk endless.
        let mut stack = vec![(root, ROOT_DIR)];
        let mut visited = HashSet::new();
        while let Some((dir, merged)) = stack.pop() {
            if !visited.insert(dir.nid) {
                return Err(Error::InvalidImage {
                    message: format!("{}: directory nid {} is reached twice", layer.path.display(), dir.nid),
                });
            }
            m.apply_dir(&dir, merged, &mut stack)?;
        }
    }
    let written = write_image(&tree, out, 1, &devices, Role::Fsmeta)?;
    out.set_len(written.blocks * BLOCK_SIZE)?;
    Ok(FsmetaSummary {
        size_bytes: written.blocks * BLOCK_SIZE,
        mapped_blkaddrs: written.mapped_blkaddrs,
        inodes: written.inodes,
    })
}

struct Merge<'a> {
    img: &'a Image,
    tree: &'a mut Tree,
    device_id: u16,
    /// Layer nid -> merged inode, so hardlinks stay one inode.
    links: HashMap<u64, InodeId>,
    /// One copy of each distinct xattr set, across all layers.
    xattrs: &'a mut Interner,
}

fn is_whiteout(i: &reader::Inode) -> bool {
    i.mode & S_IFMT == S_IFCHR && i.device_number() == (0, 0)
}

impl Merge<'_> {
    /// Applies one layer directory to its merged counterpart; its
    /// subdirectories are pushed on `stack` for later.
    fn apply_dir(&mut self, dir: &reader::Inode, merged: DirId, stack: &mut Vec<(reader::Inode, DirId)>) -> Result<(), Error> {
        let mut xattrs = self.img.xattrs(dir)?;
        let implicit = xattrs.iter().any(|(n, _)| n == IMPLICIT_XATTR);
        let opaque = xattrs.iter().any(|(n, v)| n == OPAQUE_XATTR && v == b"y");
        xattrs.retain(|(n, _)| n != IMPLICIT_XATTR && n != OPAQUE_XATTR);
        if opaque {
            self.tree.dir_mut(merged).children.clear();
        }
        if !implicit {
            let id = self.tree.dir(merged).inode;
            let m = &mut self.tree.inodes[id];
            m.mode = dir.mode;
            m.uid = dir.uid;
            m.gid = dir.gid;
            m.mtime = dir.mtime;
            m.mtime_nsec = dir.mtime_nsec;
            m.xattrs = self.xattrs.intern(xattrs).0;
        }
        for entry in self.img.read_dir(dir)? {
            let child = self.img.inode(entry.nid)?;
            if is_whiteout(&child) {
                self.tree.dir_mut(merged).children.remove(entry.name.as_slice());
                continue;
            }
            if child.is_dir() {
                let target = match self.tree.child_dir(merged, &entry.name) {
                    Some(d) => d,
                    None => {
                        let d = self.tree.add_implicit_dir();
                        let id = self.tree.dir(d).inode;
                        self.tree.link(merged, &entry.name, id);
                        d
                    }
                };
                stack.push((child, target));
                continue;
            }
            // Only an inode with several links can be met again.
            let id = match self.links.get(&child.nid) {
                Some(&id) => id,
                None if child.nlink > 1 => {
                    let id = self.copy_inode(&child)?;
                    self.links.insert(child.nid, id);
                    id
                }
                None => self.copy_inode(&child)?,
            };
            self.tree.link(merged, &entry.name, id);
        }
        Ok(())
    }

    fn copy_inode(&mut self, i: &reader::Inode) -> Result<InodeId, Error> {
        let mut xattrs = self.img.xattrs(i)?;
        let marked = xattrs.iter().any(|(n, _)| n == IMPLICIT_XATTR || n == OPAQUE_XATTR);
        if i.nlink == 1 && !marked && self.img.self_contained(i)? {
            return Ok(self.tree.add(Inode {
                mode: i.mode,
                uid: i.uid,
                gid: i.gid,
                mtime: i.mtime,
                mtime_nsec: i.mtime_nsec,
                xattrs: Default::default(),
                kind: Kind::Placed {
                    device_id: self.device_id,
                    pos: self.img.record_pos(i)?,
                },
            }));
        }
        let kind = if i.is_regular() {
            Kind::File {
                size: i.size,
                data: self.file_data(i)?,
            }
        } else if i.is_symlink() {
            Kind::Symlink(self.img.symlink_target(i)?.into())
        } else {
            let (major, minor) = i.device_number();
            Kind::Special {
                rdev: crate::format::encode_rdev(major, minor),
            }
        };
        xattrs.retain(|(n, _)| n != IMPLICIT_XATTR && n != OPAQUE_XATTR);
        let xattrs = self.xattrs.intern(xattrs).0;
        Ok(self.tree.add(Inode {
            mode: i.mode,
            uid: i.uid,
            gid: i.gid,
            mtime: i.mtime,
            mtime_nsec: i.mtime_nsec,
            xattrs,
            kind,
        }))
    }

    /// Points a layer file's chunks at the layer's device.
    fn file_data(&self, i: &reader::Inode) -> Result<FileData, Error> {
        if i.size == 0 {
            return Ok(FileData::Flat { blkaddr: 0 });
        }
        let device_id = Some(self.device_id);
        let past_end = || Error::InvalidImage {
            message: format!("nid {}: file data runs past the end of the layer", i.nid),
        };
        match self.img.file_map(i)? {
            FileMap::Tail { blkaddr, tail_len } => {
                let blocks = i.size / BLOCK_SIZE;
                if blocks > 0 && blkaddr.checked_add(blocks).is_none_or(|end| end > self.img.blocks()) {
                    return Err(past_end());
                }
                Ok(FileData::Tail {
                    device_id: self.device_id,
                    blkaddr,
                    tail_at: self.img.tail_pos(i)?,
                    tail_len,
                })
            }
            FileMap::Contiguous { blkaddr } => {
                let blocks = i.size.div_ceil(BLOCK_SIZE);
                if blkaddr.checked_add(blocks).is_none_or(|end| end > self.img.blocks()) {
                    return Err(past_end());
                }
                let bits = (u64::BITS - (blocks - 1).leading_zeros()).min(u32::from(MAX_CHUNKBITS)) as u8;
                let count = blocks.div_ceil(1 << bits);
                Ok(FileData::Chunked {
                    chunkbits: bits,
                    device_id,
                    runs: Box::new([ChunkRun {
                        count,
                        blkaddr: Some(blkaddr),
                    }]),
                })
            }
            FileMap::Chunked { chunkbits, chunks } => {
                let step = 1u64 << chunkbits;
                let mut runs: Vec<ChunkRun> = Vec::new();
                for c in chunks {
                    if c.is_some_and(|c| c.device_id != 0) {
                        return Err(Error::InvalidImage {
                            message: "layer file points at another device".into(),
                        });
                    }
                    if c.is_some_and(|c| c.blkaddr >= self.img.blocks()) {
                        return Err(past_end());
                    }
                    let blk = c.map(|c| c.blkaddr);
                    match (runs.last_mut(), blk) {
                        (Some(r), None) if r.blkaddr.is_none() => r.count += 1,
                        (Some(r), Some(b)) if r.blkaddr.is_some_and(|s| s + r.count * step == b) => r.count += 1,
                        _ => runs.push(ChunkRun { count: 1, blkaddr: blk }),
                    }
                }
                Ok(FileData::Chunked {
                    chunkbits,
                    device_id,
                    runs: runs.into(),
                })
            }
        }
    }
}

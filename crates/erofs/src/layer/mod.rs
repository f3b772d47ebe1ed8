//! Layer images: a tar stream converted in one pass.
//!
//! File data is streamed straight into the image (block 2 onwards, each
//! file starting on a block boundary, uncompressed, so fsmeta can point
//! at it), except that a small file's whole record goes into a pack of
//! several ([`crate::pack`]); only the rest of the metadata is kept in
//! memory and written at the end by [`crate::writer`] (block 1 waits for
//! the root's record). The tar reader frames every byte as it goes
//! ([`crate::framing`]): copied data by its absolute offset in the
//! image, everything else literally.
//!
//! Sparse files become chunk-based inodes whose hole chunks are null
//! entries of a 4-byte block map ([`crate::sparse`]).
//!
//! What an archive makes the builder hold is bounded by
//! [`crate::limits`]: the tree counts its memory as it grows and the
//! build stops with [`Error::TooLarge`] once it passes
//! [`MEMORY_BASE`] plus [`MEMORY_PER_ENTRY`] per entry read; growth
//! that one entry could make large (implicit directories, sparse maps)
//! is checked before it happens.

mod data;

use std::fs::File;
use std::io::{BufRead, Write};

use crate::format::*;
use crate::framing::Recorder;
use crate::limits::*;
use crate::pack::{self, PackedInode, Packs};
use crate::sequential::Sequential;
use crate::sparse::plan_sparse;
use crate::tar::{Entry, EntryKind, TarReader};
use crate::tree::{alloc_cost, ChunkRun, DirId, FileData, Inode, InodeId, Kind, Tree, ROOT_DIR};
use crate::writer::{write_image, Role, IMPLICIT_XATTR, ROOT_BLOCK};
use crate::xattr::{Interner, Shared};
use crate::{xattr, Error, LayerSummary, Xattrs, BLOCK_SIZE};

/// Largest block address a 32-bit block field can hold, plus one.
const MAX_BLOCKS: u64 = 1 << 32;

/// Size of the write buffer, and of the read buffer callers are expected
/// to hand in.
const BUFFER: usize = 1 << 20;

/// Memory a build holds whatever the archive: the write buffer and the
/// caller's read buffer, one extension header body, the framing's
/// buffers and the process itself (stack, allocator). Counted against
/// [`MEMORY_BASE`].
const RESERVED: u64 = 2 * BUFFER as u64 + EXTENSION_HEADER_MAX + (4 << 20);

pub(crate) fn build<R: BufRead>(tar: R, out: &File, framing: &mut dyn Write) -> Result<LayerSummary, Error> {
    let mut reader = TarReader::new(tar, Recorder::new(framing));
    let first = ROOT_BLOCK + 1;
    let mut b = Builder {
        tree: Tree::default(),
        out: Sequential::new(out, first * BLOCK_SIZE),
        next_blk: first,
        pos: first * BLOCK_SIZE,
        packs: Packs::default(),
        data_bytes: 0,
        entries: 0,
        xattrs: Interner::default(),
        last_xattrs: (Shared::default(), Shared::default()),
        sparse_data: 0,
        sparse_zeros: 0,
    };
    while let Some(entry) = reader.next_entry()? {
        b.entries += 1;
        b.add(&mut reader, entry)?;
        b.room_for(0)?;
    }
    reader.finish()?;
    b.close_packs()?;
    b.out.finish(b.pos)?;
    let written = write_image(&b.tree, out, b.next_blk, &[], Role::Layer)?;
    out.set_len(written.blocks * BLOCK_SIZE)?;
    Ok(LayerSummary {
        size_bytes: written.blocks * BLOCK_SIZE,
        inodes: written.inodes,
        data_bytes: b.data_bytes,
    })
}

struct Builder<'a> {
    tree: Tree,
    out: Sequential<'a>,
    next_blk: u64,
    /// Absolute byte offset in the image of the next byte written, which
    /// is where the framing says copied data went.
    pos: u64,
    data_bytes: u64,
    /// Small files' records, filling the blocks reserved for them.
    packs: Packs,
    /// Archive entries read so far, which set the memory budget.
    entries: u64,
    xattrs: Interner,
    /// The last entry's xattrs as the reader gave them and as checked and
    /// shared: entries under one global header share one set, which is
    /// then checked once.
    last_xattrs: (Shared, Shared),
    /// Sparse data bytes stored so far, and zeros stored beside them.
    sparse_data: u64,
    sparse_zeros: u64,
}

fn unsafe_path(path: &[u8], message: &str) -> Error {
    Error::UnsafePath {
        path: String::from_utf8_lossy(path).into_owned(),
        message: message.into(),
    }
}

fn too_large(message: String) -> Error {
    Error::TooLarge { message }
}

fn early_end() -> Error {
    Error::InvalidTar {
        offset: 0,
        message: "entry data ends early".into(),
    }
}

/// Splits a tar path into components: leading `/` and `./`, empty and
/// `.` components vanish; `..` anywhere is refused, and so is a path
/// whose normal form is not shorter than [`PATH_MAX`].
fn components(path: &[u8], offset: u64) -> Result<Vec<&[u8]>, Error> {
    if path.contains(&0) {
        return Err(Error::InvalidTar {
            offset,
            message: "path contains a NUL byte".into(),
        });
    }
    let mut out = Vec::new();
    let mut len = 0;
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err(unsafe_path(path, "path contains a `..` component")),
            _ if c.len() > NAME_MAX => {
                return Err(too_large(format!(
                    "file name of {} bytes in {}",
                    c.len(),
                    String::from_utf8_lossy(path)
                )))
            }
            _ => out.push(c),
        }
        len += c.len() + usize::from(out.len() > 1);
        if len >= PATH_MAX {
            let shown = String::from_utf8_lossy(&path[..path.len().min(100)]);
            return Err(too_large(format!("path {shown:?}... is {PATH_MAX} bytes or longer")));
        }
    }
    Ok(out)
}

impl Builder<'_> {
    /// Adds one archive entry to the tree (and its data to the image).
    fn add<R: BufRead>(&mut self, tar: &mut TarReader<'_, R>, e: Entry) -> Result<(), Error> {
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
        self.room_for(self.tree.missing_dirs_cost(parents))?;
        if name.starts_with(b".wh.") {
            return self.whiteout(&e, name, parents);
        }
        match e.kind {
            EntryKind::Directory => {
                let parent = self.tree.ensure_dir(parents);
                if let Some(dir) = self.tree.child_dir(parent, name) {
                    return self.set_dir_meta(dir, &e);
                }
                let xattrs = self.checked_xattrs(&e.xattrs)?;
                let dir = self.tree.add_implicit_dir();
                self.set_meta(dir, &e, xattrs);
                let id = self.tree.dir(dir).inode;
                self.tree.link(parent, name, id);
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
                self.tree.link(parent, name, id);
            }
            _ => {
                let (fmt, kind) = self.node(tar, &e)?;
                let id = self.new_inode(&e, fmt, kind)?;
                let parent = self.tree.ensure_dir(parents);
                self.tree.link(parent, name, id);
            }
        }
        Ok(())
    }

    /// An entry named `.wh.*`: an overlay whiteout (a 0/0 character
    /// device), the opaque marker, or a marker of no meaning here.
    fn whiteout(&mut self, e: &Entry, name: &[u8], parents: &[&[u8]]) -> Result<(), Error> {
        // A whiteout under a path this layer made a non-directory (umoci
        // writes `d` as a file, then `d/.wh.child`) hides nothing more: the
        // file already replaces everything below `d`.
        if self.tree.under_non_dir(parents) {
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
        let target = &name[4..];
        match target {
            b"" | b"." => return Ok(()),
            b".." => return Err(unsafe_path(&e.path, "whiteout of `..`")),
            _ => {}
        }
        let id = self.new_inode(e, S_IFCHR, Kind::Special { rdev: 0 })?;
        let parent = self.tree.ensure_dir(parents);
        self.tree.link(parent, target, id);
        Ok(())
    }

    /// The type and contents of a symlink, device, fifo or regular file
    /// (whose data goes into the image now).
    fn node<R: BufRead>(&mut self, tar: &mut TarReader<'_, R>, e: &Entry) -> Result<(u32, Kind), Error> {
        Ok(match e.kind {
            EntryKind::Symlink => {
                if e.link.is_empty() || e.link.len() > SYMLINK_MAX || e.link.contains(&0) {
                    return Err(Error::InvalidTar {
                        offset: e.offset,
                        message: format!("symlink target of {} bytes is not valid", e.link.len()),
                    });
                }
                (S_IFLNK, Kind::Symlink(e.link.as_slice().into()))
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                if e.devmajor > 0xfff || e.devminor > 0xfffff {
                    return Err(too_large(format!(
                        "device number {}:{} does not fit 32 bits",
                        e.devmajor, e.devminor
                    )));
                }
                let fmt = if e.kind == EntryKind::CharDevice { S_IFCHR } else { S_IFBLK };
                let rdev = encode_rdev(e.devmajor, e.devminor);
                (fmt, Kind::Special { rdev })
            }
            EntryKind::Fifo => (S_IFIFO, Kind::Special { rdev: 0 }),
            _ => {
                if e.sparse.is_none() {
                    let xattrs = self.checked_xattrs(&e.xattrs)?;
                    if let Some(len) = pack::record_len(xattrs.as_slice(), e.size) {
                        return Ok((S_IFREG, self.write_packed(tar, e, xattrs.as_slice(), len)?));
                    }
                }
                let data = self.write_data(tar, e)?;
                (S_IFREG, Kind::File { size: e.size, data })
            }
        })
    }

    /// Fails unless `extra` more bytes of metadata fit the memory budget.
    fn room_for(&self, extra: u64) -> Result<(), Error> {
        let budget = MEMORY_BASE + MEMORY_PER_ENTRY * self.entries;
        let need = RESERVED + self.tree.memory() + extra;
        if need > budget {
            return Err(too_large(format!(
                "the archive's metadata needs more than {need} bytes of memory after {} entries (the limit is {MEMORY_BASE} bytes plus {MEMORY_PER_ENTRY} per entry)",
                self.entries
            )));
        }
        Ok(())
    }

    fn new_inode(&mut self, e: &Entry, fmt: u32, kind: Kind) -> Result<InodeId, Error> {
        let xattrs = self.checked_xattrs(&e.xattrs)?;
        Ok(self.tree.add(Inode {
            mode: fmt | e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            mtime_nsec: e.mtime_nsec,
            xattrs,
            kind,
        }))
    }

    /// A directory entry describes an existing directory: its metadata
    /// replaces whatever the directory had (a later entry wins).
    fn set_dir_meta(&mut self, dir: DirId, e: &Entry) -> Result<(), Error> {
        let xattrs = self.checked_xattrs(&e.xattrs)?;
        self.set_meta(dir, e, xattrs);
        Ok(())
    }

    /// Gives `dir` the metadata of entry `e`, which makes it explicit.
    fn set_meta(&mut self, dir: DirId, e: &Entry, xattrs: Shared) {
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

    /// The entry's xattrs, checked ([`checked_xattrs`]) and shared with
    /// every inode that has the same set.
    fn checked_xattrs(&mut self, x: &Shared) -> Result<Shared, Error> {
        if x.same(&self.last_xattrs.0) {
            return Ok(self.last_xattrs.1.clone());
        }
        let checked = checked_xattrs(x.as_slice())?;
        let cost: u64 = checked.iter().map(|(n, v)| alloc_cost(n.len()) + alloc_cost(v.len()) + 48).sum();
        let (shared, new) = self.xattrs.intern(checked);
        if new {
            self.tree.charge(cost + 64);
        }
        self.last_xattrs = (x.clone(), shared.clone());
        Ok(shared)
    }
}

/// Keeps the xattrs EROFS can name (dropping other namespaces, which
/// Linux does not have, and our own implicit-directory marker, which an
/// archive must not be able to forge) and checks them against
/// [`XATTR_NAME_MAX`], [`XATTR_VALUE_MAX`] and [`XATTRS_SIZE_MAX`].
fn checked_xattrs(x: &[(Vec<u8>, Vec<u8>)]) -> Result<Xattrs, Error> {
    let mut out = Vec::with_capacity(x.len());
    let mut total = 0;
    for (name, value) in x {
        if name == IMPLICIT_XATTR || xattr::split_name(name).is_none() {
            continue;
        }
        if name.len() > XATTR_NAME_MAX || value.len() > XATTR_VALUE_MAX {
            return Err(too_large(format!("xattr {} is too large", String::from_utf8_lossy(name))));
        }
        total += name.len() + value.len();
        if total > XATTRS_SIZE_MAX {
            return Err(too_large(format!("xattrs of one entry exceed {XATTRS_SIZE_MAX} bytes")));
        }
        out.push((name.clone(), value.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_and_refuse_dotdot() {
        assert_eq!(components(b"./a//b/./c/", 0).unwrap(), vec![&b"a"[..], b"b", b"c"]);
        assert!(components(b"/", 0).unwrap().is_empty());
        assert!(matches!(components(b"a/../b", 0), Err(Error::UnsafePath { .. })));
    }
}

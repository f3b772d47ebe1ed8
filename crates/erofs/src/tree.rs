//! In-memory file tree shared by the layer builder and the fsmeta merger.
//!
//! Inodes live in an arena and directories map names to arena ids, so a
//! hardlink is simply a second name for the same id. Replaced inodes stay
//! in the arena but become unreachable; the image writer only emits what
//! it reaches from the root, and counts links itself.
//!
//! Directory contents live in a second arena, indexed by [`DirId`]. Only
//! the tree hands out `DirId`s, and only for directories, so code holding
//! one needs no "is this really a directory?" check.

use std::collections::BTreeMap;

use crate::format::S_IFDIR;
use crate::xattr::Shared;

/// Arena index of an inode.
pub type InodeId = usize;

/// Id of the root directory's inode in every [`Tree`].
pub const ROOT: InodeId = 0;

/// A directory of a [`Tree`]: obtainable only from the tree (for inodes
/// that are directories), so its contents always exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirId(usize);

/// The root directory of every [`Tree`].
pub const ROOT_DIR: DirId = DirId(0);

/// Where a regular file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileData {
    /// Contiguous blocks starting at `blkaddr` on the image itself
    /// (`blkaddr` is meaningless when `size` is 0).
    Flat { blkaddr: u64 },
    /// `size / BLOCK_SIZE` whole blocks at `blkaddr` on device
    /// `device_id`, then the last partial block stored after the inode:
    /// how fsmeta gives a layer file whose tail the layer packed (or a
    /// small packed file it cannot point at, with no blocks) its own
    /// inode, copying only the tail, which is read from the device when
    /// the inode is written (held, fsmeta's memory would follow bytes).
    Tail {
        device_id: u16,
        blkaddr: u64,
        /// Where the tail is on the device, and its length.
        tail_at: u64,
        tail_len: u16,
    },
    /// Chunks of `BLOCK_SIZE << chunkbits` bytes; see [`ChunkRun`].
    Chunked {
        chunkbits: u8,
        /// The device the runs' blocks are on (`None`: this image). The
        /// writer turns every address into one on the flat disk, where a
        /// device starts at the block the image maps it to.
        device_id: Option<u16>,
        runs: Box<[ChunkRun]>,
    },
}

/// `count` consecutive chunks: holes when `blkaddr` is `None`, otherwise
/// contiguous on disk starting at `blkaddr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRun {
    pub count: u64,
    pub blkaddr: Option<u64>,
}

/// What an inode is, with what only that type has.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A directory; its contents are [`Tree::dir`].
    Dir(DirId),
    File {
        size: u64,
        data: FileData,
    },
    Symlink(Box<[u8]>),
    /// Character/block device, fifo or socket; `rdev` is the encoded number.
    Special {
        rdev: u32,
    },
    /// A non-directory whose whole record (inode, inline xattrs, inline
    /// data) is already on device `device_id` (0: this image) at byte
    /// `pos`, and refers to nothing outside itself, so only its names are
    /// written: a layer's small files, packed while streaming, and the
    /// layer inodes fsmeta points at instead of copying. The [`Inode`]'s
    /// mode gives its directory entries their file type; its other
    /// fields are not written.
    Placed {
        device_id: u16,
        pos: u64,
    },
}

/// An inode: the metadata every type has, and its [`Kind`].
#[derive(Debug, Clone)]
pub struct Inode {
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Full attribute names (`user.x`), each accepted by `xattr::split_name`.
    pub xattrs: Shared,
    pub kind: Kind,
}

impl Inode {
    /// Directories are the inodes with contents in the tree ([`Tree::dir`]).
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }
}

/// A directory's contents and layer markers.
#[derive(Debug, Clone)]
pub struct Dir {
    /// The directory's own inode.
    pub inode: InodeId,
    pub children: BTreeMap<Box<[u8]>, InodeId>,
    /// Created only because a deeper path needed it.
    pub implicit: bool,
    /// Hides lower layers' children (overlay opaque directory).
    pub opaque: bool,
}

/// The tree: `inodes[ROOT]` is the root directory, [`ROOT_DIR`] its contents.
#[derive(Debug, Clone)]
pub struct Tree {
    pub inodes: Vec<Inode>,
    dirs: Vec<Dir>,
    /// Estimate of the memory the tree and [`crate::writer::write_image`]
    /// hold for it, counted as it grows (see [`Tree::memory`]).
    memory: u64,
    /// The directory [`Tree::ensure_dir`] resolved last, by path.
    last_dir: LastDir,
}

/// The path [`Tree::ensure_dir`] resolved last (each component followed
/// by a NUL, which no name holds) and its directory. A sorted archive
/// comes a directory at a time, and walking every entry's path down the
/// B-trees twice (cost, then creation) was a tenth of a small-file
/// layer's conversion. Forgotten whenever a name is replaced or removed,
/// the only ways a path can come to name another directory.
#[derive(Debug, Clone, Default)]
struct LastDir {
    path: Vec<u8>,
    dir: Option<DirId>,
}

impl LastDir {
    fn get(&self, components: &[&[u8]]) -> Option<DirId> {
        let dir = self.dir?;
        let mut rest = &self.path[..];
        for c in components {
            rest = rest.strip_prefix(*c)?.strip_prefix(&[0])?;
        }
        rest.is_empty().then_some(dir)
    }

    fn set(&mut self, components: &[&[u8]], dir: DirId) {
        self.path.clear();
        for c in components {
            self.path.extend_from_slice(c);
            self.path.push(0);
        }
        self.dir = Some(dir);
    }
}

/// Heap bytes glibc's malloc takes for an allocation of `n` bytes.
pub fn alloc_cost(n: usize) -> u64 {
    (n as u64 + 8).next_multiple_of(16).max(32)
}

/// Memory of one name slot in a directory's B-tree: nodes are at least
/// half full, so a slot costs at most twice its key and value.
const SLOT_COST: u64 = 2 * (std::mem::size_of::<Box<[u8]>>() + std::mem::size_of::<InodeId>()) as u64;

/// Memory of a directory besides its names: its entry in the directory
/// arena and the first node of its B-tree (11 slots and a header).
const DIR_COST: u64 = std::mem::size_of::<Dir>() as u64 + 11 * SLOT_COST / 2 + 32;

impl Default for Tree {
    fn default() -> Self {
        let mut tree = Tree {
            inodes: Vec::new(),
            dirs: Vec::new(),
            memory: 0,
            last_dir: LastDir::default(),
        };
        tree.add_implicit_dir();
        tree
    }
}

impl Tree {
    /// What the tree holds in memory, and what writing it will add, in
    /// bytes: every inode with its symlink target or chunk runs, every
    /// directory and name, and the writer's per-inode plan. Xattr sets
    /// are shared, so their owner counts them ([`Tree::charge`]).
    pub fn memory(&self) -> u64 {
        self.memory
    }

    /// Counts `bytes` held for the tree elsewhere.
    pub fn charge(&mut self, bytes: u64) {
        self.memory += bytes;
    }

    /// Adds a non-directory inode (directories come from [`Tree::add_implicit_dir`]).
    pub fn add(&mut self, inode: Inode) -> InodeId {
        debug_assert!(!inode.is_dir(), "directories are added with add_implicit_dir");
        self.memory += inode_cost()
            + match &inode.kind {
                Kind::Symlink(target) => alloc_cost(target.len()),
                Kind::File {
                    data: FileData::Chunked { runs, .. },
                    ..
                } => alloc_cost(std::mem::size_of_val(&**runs)),
                _ => 0,
            };
        self.inodes.push(inode);
        self.inodes.len() - 1
    }

    /// Names `id` `name` in `dir`, replacing what had that name.
    pub fn link(&mut self, dir: DirId, name: &[u8], id: InodeId) {
        let children = &mut self.dirs[dir.0].children;
        match children.get_mut(name) {
            Some(slot) => {
                *slot = id;
                self.last_dir.dir = None;
            }
            None => {
                children.insert(name.into(), id);
                self.memory += alloc_cost(name.len()) + SLOT_COST;
            }
        }
    }

    /// Adds an empty directory with the defaults for directories nobody
    /// described: 0755 root:root, mtime 0, marked implicit.
    pub fn add_implicit_dir(&mut self) -> DirId {
        self.memory += inode_cost() + DIR_COST;
        let dir = DirId(self.dirs.len());
        self.dirs.push(Dir {
            inode: self.inodes.len(),
            children: BTreeMap::new(),
            implicit: true,
            opaque: false,
        });
        self.inodes.push(Inode {
            mode: S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            xattrs: Shared::default(),
            kind: Kind::Dir(dir),
        });
        dir
    }

    /// A directory's contents: always there, since only directories have a `DirId`.
    pub fn dir(&self, dir: DirId) -> &Dir {
        &self.dirs[dir.0]
    }

    /// [`Tree::dir`], to change markers or remove names (adding names
    /// goes through [`Tree::link`], which counts their memory).
    pub fn dir_mut(&mut self, dir: DirId) -> &mut Dir {
        self.last_dir.dir = None;
        &mut self.dirs[dir.0]
    }

    /// The directory an inode is, if it is one.
    pub fn as_dir(&self, id: InodeId) -> Option<DirId> {
        match self.inodes[id].kind {
            Kind::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// The directory child `name` of `dir`, if there is one.
    pub fn child_dir(&self, dir: DirId, name: &[u8]) -> Option<DirId> {
        self.dir(dir).children.get(name).and_then(|&id| self.as_dir(id))
    }

    /// Follows `components` from the root without creating anything.
    pub fn lookup(&self, components: &[&[u8]]) -> Option<InodeId> {
        let mut cur = ROOT;
        for c in components {
            cur = *self.dir(self.as_dir(cur)?).children.get(*c)?;
        }
        Some(cur)
    }

    /// Whether some prefix of `components` is a non-directory: a path under
    /// it cannot exist, and a whiteout under it has nothing left to hide.
    pub fn under_non_dir(&self, components: &[&[u8]]) -> bool {
        let mut cur = ROOT_DIR;
        for c in components {
            match self.dir(cur).children.get(*c) {
                Some(&id) => match self.as_dir(id) {
                    Some(d) => cur = d,
                    None => return true,
                },
                None => return false,
            }
        }
        false
    }

    /// The memory [`Tree::ensure_dir`] would add for `components`: the
    /// directories it would create, counted before they exist.
    pub fn missing_dirs_cost(&self, components: &[&[u8]]) -> u64 {
        if self.last_dir.get(components).is_some() {
            return 0;
        }
        let mut cur = ROOT_DIR;
        for (i, c) in components.iter().enumerate() {
            match self.child_dir(cur, c) {
                Some(d) => cur = d,
                None => {
                    let names: usize = components[i..].iter().map(|c| c.len()).sum();
                    let dirs = (components.len() - i) as u64;
                    return dirs * (inode_cost() + DIR_COST + SLOT_COST + 32) + names as u64;
                }
            }
        }
        0
    }

    /// Returns the directory at `components`, creating implicit
    /// directories for missing ones and replacing non-directories in the
    /// way (a later entry wins, as when extracting).
    pub fn ensure_dir(&mut self, components: &[&[u8]]) -> DirId {
        if let Some(dir) = self.last_dir.get(components) {
            return dir;
        }
        let mut cur = ROOT_DIR;
        for c in components {
            cur = match self.child_dir(cur, c) {
                Some(d) => d,
                None => {
                    let d = self.add_implicit_dir();
                    let id = self.dir(d).inode;
                    self.link(cur, c, id);
                    d
                }
            };
        }
        self.last_dir.set(components, cur);
        cur
    }
}

/// Memory of one inode: its arena slot and the writer's plan for it.
fn inode_cost() -> u64 {
    std::mem::size_of::<Inode>() as u64 + crate::writer::MEMORY_PER_INODE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Inode {
        Inode {
            mode: crate::format::S_IFCHR | 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            xattrs: Shared::default(),
            kind: Kind::Special { rdev: 0 },
        }
    }

    #[test]
    fn the_last_directory_is_forgotten_when_its_path_changes() {
        let mut t = Tree::default();
        let ab: [&[u8]; 2] = [b"a", b"b"];
        let first = t.ensure_dir(&ab);
        assert_eq!(t.ensure_dir(&ab), first);
        assert_eq!(t.missing_dirs_cost(&ab), 0);
        assert_ne!(t.ensure_dir(&[b"a"]), first, "a prefix is another path");
        // A device node replaces `a`: `a/b` must be made again, not remembered.
        t.ensure_dir(&ab);
        let f = t.add(device());
        t.link(ROOT_DIR, b"a", f);
        assert!(t.missing_dirs_cost(&ab) > 0);
        let again = t.ensure_dir(&ab);
        assert_ne!(again, first);
        assert_eq!(t.lookup(&ab), Some(t.dir(again).inode));
        // A name removed below a remembered path is forgotten too.
        t.dir_mut(ROOT_DIR).children.remove(&b"a"[..]);
        assert!(t.missing_dirs_cost(&ab) > 0);
        assert_ne!(t.ensure_dir(&ab), again);
    }
}

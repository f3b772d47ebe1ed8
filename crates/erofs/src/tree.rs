//! In-memory file tree shared by the layer builder and the fsmeta merger.
//!
//! Inodes live in an arena and directories map names to arena ids, so a
//! hardlink is simply a second name for the same id. Replaced inodes stay
//! in the arena but become unreachable; the image writer only emits what
//! it reaches from the root, and counts links itself.

use std::collections::BTreeMap;

use crate::format::{S_IFDIR, S_IFMT};

/// Arena index of an inode.
pub type InodeId = usize;

/// Id of the root directory in every [`Tree`].
pub const ROOT: InodeId = 0;

/// Where a regular file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileData {
    /// Contiguous blocks starting at `blkaddr` on the image itself
    /// (`blkaddr` is meaningless when `size` is 0).
    Flat { blkaddr: u64 },
    /// Chunks of `BLOCK_SIZE << chunkbits` bytes; see [`ChunkRun`].
    Chunked {
        chunkbits: u8,
        /// Device id written into 8-byte chunk indexes; `None` writes the
        /// compact 4-byte block map (primary device only).
        device_id: Option<u16>,
        runs: Vec<ChunkRun>,
    },
}

/// `count` consecutive chunks: holes when `blkaddr` is `None`, otherwise
/// contiguous on disk starting at `blkaddr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRun {
    pub count: u64,
    pub blkaddr: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Dir {
        children: BTreeMap<Vec<u8>, InodeId>,
        /// Created only because a deeper path needed it.
        implicit: bool,
        /// Hides lower layers' children (overlay opaque directory).
        opaque: bool,
    },
    File {
        size: u64,
        data: FileData,
    },
    Symlink(Vec<u8>),
    /// Character/block device, fifo or socket; `rdev` is the encoded number.
    Special {
        rdev: u32,
    },
}

#[derive(Debug, Clone)]
pub struct Inode {
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Full attribute names (`user.x`), each accepted by `xattr::split_name`.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub kind: Kind,
}

impl Inode {
    /// A directory with the defaults for directories nobody described:
    /// 0755 root:root, mtime 0.
    pub fn implicit_dir() -> Inode {
        Inode {
            mode: S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            xattrs: Vec::new(),
            kind: Kind::Dir {
                children: BTreeMap::new(),
                implicit: true,
                opaque: false,
            },
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// The tree: `inodes[ROOT]` is the root directory.
#[derive(Debug, Clone)]
pub struct Tree {
    pub inodes: Vec<Inode>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            inodes: vec![Inode::implicit_dir()],
        }
    }
}

impl Tree {
    pub fn add(&mut self, inode: Inode) -> InodeId {
        self.inodes.push(inode);
        self.inodes.len() - 1
    }

    pub fn children(&self, dir: InodeId) -> Option<&BTreeMap<Vec<u8>, InodeId>> {
        match &self.inodes[dir].kind {
            Kind::Dir { children, .. } => Some(children),
            _ => None,
        }
    }

    pub fn children_mut(&mut self, dir: InodeId) -> Option<&mut BTreeMap<Vec<u8>, InodeId>> {
        match &mut self.inodes[dir].kind {
            Kind::Dir { children, .. } => Some(children),
            _ => None,
        }
    }

    /// Follows `components` from the root without creating anything.
    pub fn lookup(&self, components: &[&[u8]]) -> Option<InodeId> {
        let mut cur = ROOT;
        for c in components {
            cur = *self.children(cur)?.get(*c)?;
        }
        Some(cur)
    }

    /// Whether some prefix of `components` is a non-directory: a path under
    /// it cannot exist, and a whiteout under it has nothing left to hide.
    pub fn under_non_dir(&self, components: &[&[u8]]) -> bool {
        let mut cur = ROOT;
        for c in components {
            match self.children(cur).and_then(|ch| ch.get(*c)) {
                Some(&id) if self.inodes[id].is_dir() => cur = id,
                Some(_) => return true,
                None => return false,
            }
        }
        false
    }

    /// Returns the directory at `components`, creating implicit
    /// directories for missing ones and replacing non-directories in the
    /// way (a later entry wins, as when extracting).
    pub fn ensure_dir(&mut self, components: &[&[u8]]) -> InodeId {
        let mut cur = ROOT;
        for c in components {
            let existing = self.children(cur).and_then(|ch| ch.get(*c).copied());
            cur = match existing {
                Some(id) if self.inodes[id].is_dir() => id,
                _ => {
                    let id = self.add(Inode::implicit_dir());
                    self.children_mut(cur).expect("parent is a directory").insert(c.to_vec(), id);
                    id
                }
            };
        }
        cur
    }
}

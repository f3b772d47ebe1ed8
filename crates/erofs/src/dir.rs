//! Directory data: blocks of 12-byte dirents followed by their names.
//!
//! Entries (including `.` and `..`) are sorted by raw name bytes across
//! the whole directory, because the kernel binary-searches first over
//! blocks and then inside a block. A block is cut before the entry that
//! would not fit; the last block is stored short (the directory's i_size
//! ends where its last name ends).

use crate::format::{file_type, put16, put64, DIRENT_SIZE, FT_DIR};
use crate::tree::{Dir, InodeId, Tree};
use crate::BLOCK_SIZE;

const BLOCK: usize = BLOCK_SIZE as usize;

/// One directory entry to encode.
pub struct Dirent<'a> {
    pub name: &'a [u8],
    pub nid: u64,
    pub file_type: u8,
}

/// Splits sorted name lengths into blocks; calls `block(start, end, used)`
/// for each block's entry range and byte count.
fn pack(lens: impl Iterator<Item = usize>, mut block: impl FnMut(usize, usize, usize)) {
    let (mut start, mut used, mut i) = (0, 0, 0);
    for len in lens {
        let need = DIRENT_SIZE + len;
        if used + need > BLOCK {
            block(start, i, used);
            start = i;
            used = 0;
        }
        used += need;
        i += 1;
    }
    if i > start {
        block(start, i, used);
    }
}

/// Byte size (i_size) of a directory whose sorted entries have these name lengths.
pub fn dir_size(lens: impl Iterator<Item = usize>) -> u64 {
    let mut full = 0u64;
    let mut last = 0usize;
    pack(lens, |_, _, used| {
        full += 1;
        last = used;
    });
    if full == 0 {
        0
    } else {
        (full - 1) * BLOCK_SIZE + last as u64
    }
}

/// Encodes sorted `entries` into `out`, which must be [`dir_size`] long.
pub fn encode(entries: &[Dirent<'_>], out: &mut [u8]) {
    let mut blk = 0usize;
    pack(entries.iter().map(|e| e.name.len()), |start, end, _| {
        let base = blk * BLOCK;
        let mut nameoff = (end - start) * DIRENT_SIZE;
        for (k, e) in entries[start..end].iter().enumerate() {
            let d = base + k * DIRENT_SIZE;
            put64(out, d, e.nid);
            put16(out, d + 8, nameoff as u16);
            out[d + 10] = e.file_type;
            out[d + 11] = 0;
            out[base + nameoff..base + nameoff + e.name.len()].copy_from_slice(e.name);
            nameoff += e.name.len();
        }
        blk += 1;
    });
}

/// i_size of a tree directory (see [`dir_size`]).
pub fn dirents_size(dir: &Dir) -> u64 {
    let mut names: Vec<&[u8]> = dir.children.keys().map(|k| &k[..]).collect();
    with_dots(&mut names, |n| n, b".", b"..");
    dir_size(names.into_iter().map(|n| n.len()))
}

/// Puts `.` and `..` where they sort among `sorted` (a tree directory's
/// children, which its map keeps in byte order): a merge, not a sort of
/// the whole directory, per directory written.
fn with_dots<T>(sorted: &mut Vec<T>, name: impl Fn(&T) -> &[u8], dot: T, dotdot: T) {
    let at = sorted.partition_point(|e| name(e) < &b"."[..]);
    sorted.insert(at, dot);
    let at = sorted.partition_point(|e| name(e) < &b".."[..]);
    sorted.insert(at, dotdot);
}

/// Encodes a directory's entries (with `.` and `..`) into `size` bytes.
pub fn encode_dir(tree: &Tree, dir: &Dir, size: u64, self_nid: u64, parent_nid: u64, nid_of: &dyn Fn(InodeId) -> u64) -> Vec<u8> {
    let mut entries: Vec<Dirent> = dir
        .children
        .iter()
        .map(|(name, &c)| Dirent {
            name,
            nid: nid_of(c),
            file_type: file_type(tree.inodes[c].mode),
        })
        .collect();
    let dot = |name, nid| Dirent {
        name,
        nid,
        file_type: FT_DIR,
    };
    with_dots(&mut entries, |e| e.name, dot(b".", self_nid), dot(b"..", parent_nid));
    let mut out = vec![0u8; size as usize];
    encode(&entries, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_blocks_where_entries_stop_fitting() {
        // 12 + 255 = 267 bytes per entry: 15 fit in a block (4005 bytes).
        let lens = vec![255usize; 31];
        assert_eq!(dir_size(lens.iter().copied()), 2 * BLOCK_SIZE + 267);
        let names: Vec<Vec<u8>> = (0..31u8).map(|i| vec![b'a' + i % 26; 255]).collect();
        let entries: Vec<Dirent> = names
            .iter()
            .map(|n| Dirent {
                name: n,
                nid: 7,
                file_type: 1,
            })
            .collect();
        let mut out = vec![0; dir_size(lens.into_iter()) as usize];
        encode(&entries, &mut out);
        assert_eq!(u16::from_le_bytes([out[8], out[9]]), 15 * 12);
        assert_eq!(u16::from_le_bytes([out[BLOCK + 8], out[BLOCK + 9]]), 15 * 12);
        assert_eq!(u16::from_le_bytes([out[2 * BLOCK + 8], out[2 * BLOCK + 9]]), 12);
    }

    #[test]
    fn dots_go_where_they_sort() {
        let mut names: Vec<&[u8]> = vec![b"-a", b".-x", b".a", b"a"];
        with_dots(&mut names, |n| n, b".", b"..");
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(names[1..4], [&b"."[..], b".-x", b".."]);
    }
}

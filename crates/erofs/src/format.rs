//! On-disk EROFS structures, as far as this crate uses them.
//!
//! Field offsets follow `erofs_fs.h` (Linux `fs/erofs/`, erofs-utils
//! `include/`). Everything is little-endian. Only the 4 KiB block size and
//! the 64-byte "extended" inode are ever written.

/// Superblock magic.
pub const MAGIC: u32 = 0xE0F5_E1E2;
/// Byte offset of the superblock inside block 0.
pub const SUPER_OFFSET: usize = 1024;
/// log2 of [`crate::BLOCK_SIZE`].
pub const BLKSZ_BITS: u8 = 12;
/// Size of the superblock without extension slots.
pub const SUPER_SIZE: usize = 128;
/// Size of one device-table slot.
pub const DEVICE_SLOT_SIZE: usize = 128;
/// Inode slots (nids) are counted in units of 32 bytes.
pub const NID_UNIT: u64 = 32;
/// Size of the extended on-disk inode.
pub const INODE_SIZE: usize = 64;
/// Size of the compact on-disk inode (only read, never written).
pub const COMPACT_INODE_SIZE: usize = 32;
/// Byte of an extended inode where its link count is.
pub const NLINK_OFFSET: u64 = 44;
/// Size of one directory entry record.
pub const DIRENT_SIZE: usize = 12;
/// Longest file name a directory entry can hold.
pub const NAME_MAX: usize = 255;
/// Size of the inline xattr body header.
pub const XATTR_HEADER_SIZE: usize = 12;
/// Block address of a hole in chunk maps.
pub const NULL_ADDR: u32 = u32::MAX;
/// Largest value of the chunk-format block-bits field.
pub const CHUNK_BLKBITS_MAX: u8 = 31;

pub const COMPAT_SB_CHKSUM: u32 = 0x1;
pub const INCOMPAT_CHUNKED_FILE: u32 = 0x4;
pub const INCOMPAT_DEVICE_TABLE: u32 = 0x8;

pub const CHUNK_FORMAT_BLKBITS_MASK: u16 = 0x1f;
pub const CHUNK_FORMAT_INDEXES: u16 = 0x20;

/// Inode data layouts (`i_format >> 1`).
pub const LAYOUT_FLAT_PLAIN: u16 = 0;
pub const LAYOUT_FLAT_INLINE: u16 = 2;
pub const LAYOUT_CHUNK_BASED: u16 = 4;

/// Directory entry file types.
pub const FT_REG: u8 = 1;
pub const FT_DIR: u8 = 2;
pub const FT_CHRDEV: u8 = 3;
pub const FT_BLKDEV: u8 = 4;
pub const FT_FIFO: u8 = 5;
pub const FT_SOCK: u8 = 6;
pub const FT_SYMLINK: u8 = 7;

pub const S_IFMT: u32 = 0o170000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFIFO: u32 = 0o010000;

pub fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
pub fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
pub fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
pub fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Superblock fields this crate reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Superblock {
    pub checksum: u32,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub blkszbits: u8,
    pub root_nid: u16,
    pub inos: u64,
    pub build_time: u64,
    pub blocks: u32,
    pub meta_blkaddr: u32,
    /// Start of the shared xattr area (0 when there is none).
    pub xattr_blkaddr: u32,
    pub extra_devices: u16,
    pub devt_slotoff: u16,
}

impl Superblock {
    /// Writes the 128-byte superblock at [`SUPER_OFFSET`] of `block0`.
    pub fn encode(&self, block0: &mut [u8]) {
        let b = &mut block0[SUPER_OFFSET..SUPER_OFFSET + SUPER_SIZE];
        b.fill(0);
        put32(b, 0, MAGIC);
        put32(b, 4, self.checksum);
        put32(b, 8, self.feature_compat);
        b[12] = self.blkszbits;
        b[13] = 0; // sb_extslots
        put16(b, 14, self.root_nid);
        put64(b, 16, self.inos);
        put64(b, 24, self.build_time);
        put32(b, 32, 0); // build_time_nsec
        put32(b, 36, self.blocks);
        put32(b, 40, self.meta_blkaddr);
        put32(b, 44, self.xattr_blkaddr);
        put32(b, 80, self.feature_incompat);
        put16(b, 86, self.extra_devices);
        put16(b, 88, self.devt_slotoff);
        b[90] = 0; // dirblkbits
    }

    /// Parses the superblock from the first block; `None` if the magic is wrong.
    pub fn decode(block0: &[u8]) -> Option<Superblock> {
        let b = block0.get(SUPER_OFFSET..SUPER_OFFSET + SUPER_SIZE)?;
        if le32(b, 0) != MAGIC {
            return None;
        }
        Some(Superblock {
            checksum: le32(b, 4),
            feature_compat: le32(b, 8),
            blkszbits: b[12],
            root_nid: le16(b, 14),
            inos: le64(b, 16),
            build_time: le64(b, 24),
            blocks: le32(b, 36),
            meta_blkaddr: le32(b, 40),
            xattr_blkaddr: le32(b, 44),
            feature_incompat: le32(b, 80),
            extra_devices: le16(b, 86),
            devt_slotoff: le16(b, 88),
        })
    }
}

/// Computes the superblock checksum the way the kernel checks it: crc32c
/// (seed ~0, no final inversion) over block 0 from the superblock to the
/// end of the block, with the checksum field zeroed.
pub fn superblock_checksum(block0: &[u8]) -> u32 {
    let mut tail = block0[SUPER_OFFSET..crate::BLOCK_SIZE as usize].to_vec();
    put32(&mut tail, 4, 0);
    crc32c_raw(!0, &tail)
}

/// CRC-32C slice-by-8 lookup tables (reflected Castagnoli polynomial):
/// `[0]` is the classic byte table, `[k]` advances a byte by `k` more
/// zero bytes, so eight bytes cost eight lookups and no dependency chain.
const CRC32C_TABLES: [[u32; 256]; 8] = {
    const POLY: u32 = 0x82F6_3B78;
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = (crc >> 1) ^ if crc & 1 != 0 { POLY } else { 0 };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// Continues a CRC-32C from state `crc` over `data` (no inversions:
/// callers seed with `!0` and invert at the end if their format does).
pub fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    let t = &CRC32C_TABLES;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &byte in chunks.remainder() {
        crc = t[0][((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Encodes a device slot: `tag`, size in blocks and the block address the
/// device is mapped at when all devices are concatenated ("flatdev").
pub fn encode_device_slot(out: &mut [u8], tag: &[u8], blocks: u32, mapped_blkaddr: u32) {
    out[..DEVICE_SLOT_SIZE].fill(0);
    out[..tag.len()].copy_from_slice(tag);
    put32(out, 64, blocks);
    put32(out, 68, mapped_blkaddr);
}

/// Encodes a device number like the kernel's `new_encode_dev`.
pub fn encode_rdev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Splits an encoded device number into (major, minor).
pub fn decode_rdev(dev: u32) -> (u32, u32) {
    ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

/// Fields of an extended (64-byte) inode.
pub struct RawInode {
    pub layout: u16,
    pub xattr_icount: u16,
    pub mode: u16,
    pub size: u64,
    /// startblk (flat), rdev (devices) or chunk format (chunk-based).
    pub i_u: u32,
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub nlink: u32,
}

impl RawInode {
    pub fn encode(&self, out: &mut [u8]) {
        let b = &mut out[..INODE_SIZE];
        b.fill(0);
        put16(b, 0, 1 | (self.layout << 1)); // version bit 1 = extended
        put16(b, 2, self.xattr_icount);
        put16(b, 4, self.mode);
        put64(b, 8, self.size);
        put32(b, 16, self.i_u);
        put32(b, 20, self.ino);
        put32(b, 24, self.uid);
        put32(b, 28, self.gid);
        put64(b, 32, self.mtime as u64);
        put32(b, 40, self.mtime_nsec);
        put32(b, NLINK_OFFSET as usize, self.nlink);
    }
}

/// Maps a file mode to the directory entry file type.
pub fn file_type(mode: u32) -> u8 {
    match mode & S_IFMT {
        S_IFREG => FT_REG,
        S_IFDIR => FT_DIR,
        S_IFCHR => FT_CHRDEV,
        S_IFBLK => FT_BLKDEV,
        S_IFIFO => FT_FIFO,
        S_IFSOCK => FT_SOCK,
        S_IFLNK => FT_SYMLINK,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_known_vector() {
        // Standard CRC-32C of "123456789" is 0xE3069283 (with final inversion).
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
        // Split anywhere, the slice-by-8 path and the byte path agree.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = crc32c_raw(!0, &data);
        for cut in [0, 1, 7, 8, 9, 500, 999] {
            assert_eq!(crc32c_raw(crc32c_raw(!0, &data[..cut]), &data[cut..]), whole);
        }
        assert_eq!(!crc32c_raw(!0, &[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn rdev_round_trips() {
        for (ma, mi) in [(0, 0), (1, 3), (8, 1), (259, 70000), (4095, 0xfffff)] {
            assert_eq!(decode_rdev(encode_rdev(ma, mi)), (ma, mi));
        }
    }
}

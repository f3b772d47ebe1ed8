//! Limits on what [`crate::build_layer`] accepts. Each one bounds what a
//! tar header could otherwise make the builder spend (memory, CPU, disk)
//! whatever the archive's size; past a limit the build fails with
//! [`crate::Error::TooLarge`] (a limit of this crate or of EROFS) or
//! [`crate::Error::InvalidTar`] (a header no real archive has) before
//! the cost is paid.

/// Entry paths and hardlink targets, once normalised (no `./`, no
/// empty components), must be shorter than this many bytes: Linux's
/// PATH_MAX (with its NUL), the longest path the kernel resolves in one
/// lookup. So a path has at most 2,048 components, and one entry can
/// create at most that many implicit directories.
pub const PATH_MAX: usize = 4096;

/// Longest symlink target, in bytes: PATH_MAX without the NUL, which is
/// what `symlink(2)` accepts.
pub const SYMLINK_MAX: usize = PATH_MAX - 1;

/// Largest body of one pax extended header or GNU long name/link, in
/// bytes. A path fits in 4 KiB and one inode's xattrs in 64 KiB (see
/// [`XATTRS_SIZE_MAX`]), which even base64-encoded stay far below;
/// bodies are read whole, so this bounds the memory one header costs.
pub const EXTENSION_HEADER_MAX: u64 = 1 << 20;

/// Largest total size, in bytes, of the global pax records kept (keys
/// plus values). Global records apply to every later entry, so they are
/// kept until the end; records this crate never applies (`comment`,
/// `atime`, ...) are not kept and not counted.
pub const GLOBAL_RECORDS_MAX: usize = 1 << 20;

/// Longest extended attribute name, in bytes, prefix included: Linux's
/// XATTR_NAME_MAX, so no longer name could be read back.
pub const XATTR_NAME_MAX: usize = 255;

/// Largest extended attribute value, in bytes: EROFS stores the value
/// length in 16 bits (one byte short of Linux's XATTR_SIZE_MAX).
pub const XATTR_VALUE_MAX: usize = 65535;

/// Largest total of names plus values of one inode's extended
/// attributes, in bytes: Linux's XATTR_LIST_MAX and XATTR_SIZE_MAX
/// (64 KiB), more than ext4 stores in an inode and its xattr block.
/// EROFS stores them inline after the inode, so this also bounds what a
/// single inode adds to the image.
pub const XATTRS_SIZE_MAX: usize = 64 << 10;

/// Most data segments in one sparse file's map. Each costs memory while
/// the file is converted and a map entry in the image.
pub const SPARSE_SEGMENTS_MAX: usize = 1 << 18;

/// Largest logical size of a sparse file, in bytes: 16 TiB, as much as
/// the 32-bit block addresses of a whole image can address. A sparse
/// file is stored as chunks of one size with a map of at most 2^20
/// entries, so its chunks can be no smaller than `size / 2^20` (16 MiB
/// at this size), and the zeros stored inside a chunk that is only
/// partly data are bounded by the chunk size.
pub const SPARSE_SIZE_MAX: u64 = 1 << 44;

/// Zeros a layer may store inside partly filled sparse chunks, beyond
/// the sparse data it stores, in bytes. So sparse files cost the image
/// at most twice their data plus this (plus their maps), however large
/// their logical size.
pub const SPARSE_ZEROS_MAX: u64 = 64 << 20;

/// Memory a layer build may use whatever its archive, in bytes, on top
/// of [`MEMORY_PER_ENTRY`] for each entry of the archive. The builder
/// keeps every inode, name, symlink target, distinct xattr set and
/// sparse map in memory until the image is written, and counts them as
/// it goes: an archive whose entries need more fails with
/// [`crate::Error::TooLarge`] when the count passes the budget.
pub const MEMORY_BASE: u64 = 64 << 20;

/// Memory a layer build may use per archive entry, in bytes.
pub const MEMORY_PER_ENTRY: u64 = 256;

//! What differs between operating systems, in one place. The cache's rules
//! (publish a file only once it is durable, commit an index row only after
//! the renames naming it are durable, delete files only after the commit
//! that dropped their rows is durable) hold on Linux, macOS and Windows, but
//! each system makes data durable, renames, locks and reports free space its
//! own way. Every function here does the real thing on each system; where a
//! system has no counterpart, its doc says what stands in and why.
//!
//! Unchanged across systems, and so not here: file locks are std's
//! `File::lock` / `lock_shared` (`flock` on Linux and macOS, `LockFileEx`
//! over the whole file on Windows; all three are per open file, so a lock
//! excludes other threads of this process too, and vanish with the file
//! handle); temp files are created with `create_new` (`O_EXCL`, or
//! `CREATE_NEW`, neither following a planted link); no file the engine
//! writes has holes (the EROFS writer and the archives write every byte in
//! order), so sparse-file support does not matter; artifact and lock file
//! names are lower-case hex and ASCII words, so case-insensitive file
//! systems (APFS and NTFS by default) cannot fold two into one.

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// A `/`-separated relative path (the store's layout: `layers/sha256`,
/// `db/index.sqlite`) in this system's separators, to join onto the cache
/// root. Windows accepts `/` in most calls, but not inside `\\?\` long
/// paths, and a path in a VMDK descriptor or shown to users should not mix
/// `C:\Users\me\.microsandbox\layers/sha256\…`. Elsewhere it is the path as given.
pub fn native(relative: &str) -> std::path::PathBuf {
    #[cfg(windows)]
    {
        relative.split('/').collect()
    }
    #[cfg(not(windows))]
    {
        std::path::PathBuf::from(relative)
    }
}

/// The gzip decoder (one or more members; CRC and length checked).
///
/// ISA-L (about 1.6x zlib-rs's inflate here) on Linux; zlib-rs (flate2,
/// pure Rust, the same checks) on macOS and Windows, where isal-sys 0.5
/// cannot be built from this machine, nor from a Mac or Windows machine
/// without changes to it: its build script picks link flags and build
/// system by the system it runs on, not by the target. Cross-building for
/// macOS on Linux, it hands ISA-L's configure `LDFLAGS=-static`, which no
/// Mach-O linker accepts, so configure cannot link a test program; for
/// Windows it passes Rust's triple `x86_64-pc-windows-gnu` as `--host`,
/// which autotools' config.sub rejects (GNU's name is
/// `x86_64-w64-mingw32`), and on Windows itself it runs `nmake` (MSVC).
#[cfg(target_os = "linux")]
pub type GzipDecoder<R> = isal::read::GzipDecoder<R>;
/// See the ISA-L definition.
#[cfg(not(target_os = "linux"))]
pub type GzipDecoder<R> = flate2::bufread::MultiGzDecoder<R>;

/// A [`GzipDecoder`] over `input`.
pub fn gzip_decoder<R: io::BufRead>(input: R) -> GzipDecoder<R> {
    GzipDecoder::new(input)
}

/// Makes a file's data and metadata durable: what publication relies on
/// before the rename, and what the index commit relies on after it.
///
/// macOS: `fsync` only hands the data to the drive, which may keep it in
/// its cache and write it after a later write (the index commit), so a
/// power cut could leave a committed row naming a file of zeros.
/// `F_FULLFSYNC` also flushes the drive's cache. File systems that do not
/// implement it (some network and FUSE file systems) refuse it, and then
/// plain `fsync` is the best there is, as SQLite does. (std's `sync_all`
/// happens to issue `F_FULLFSYNC` on Apple systems today, without the
/// fallback and without documenting it; this does not depend on that.)
///
/// Linux: `fsync` (std's `sync_all`) flushes the drive's cache already.
/// Windows: `FlushFileBuffers` (std's `sync_all`) writes the file's data
/// and metadata and flushes the drive's cache.
pub fn sync_file(file: &File) -> io::Result<()> {
    #[cfg(target_os = "macos")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; F_FULLFSYNC takes no argument.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_FULLFSYNC) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINVAL | libc::ENOTSUP | libc::ENOTTY) => file.sync_all(),
            _ => Err(error),
        }
    }
    #[cfg(not(target_os = "macos"))]
    file.sync_all()
}

/// Starts writing a file's dirty pages to disk without waiting, so the
/// sync at publication finds little left to do and a large layer does not
/// pile up gigabytes of dirty pages.
///
/// Linux: `sync_file_range(SYNC_FILE_RANGE_WRITE)`.
///
/// macOS and Windows have no call that starts writeback without waiting for
/// it (`F_FULLFSYNC`, `fsync` and `FlushFileBuffers` all block), and
/// blocking here would stall the writer thread on the disk. There the
/// system's own writeback stands in (macOS flushes dirty pages every 30 s
/// and under memory pressure; Windows' lazy writer writes an eighth of the
/// dirty cache every second), and [`sync_file`] at publication writes the
/// rest. This only moves when bytes reach the disk, never whether they do.
pub fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the call only schedules writeback.
        unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Makes the renames into `dir` durable, before an index row names them.
///
/// Linux: `fsync` of the directory. macOS: [`sync_file`] of the directory
/// (`F_FULLFSYNC`, for the same reason as for files). Windows: the
/// directory opened for writing with `FILE_FLAG_BACKUP_SEMANTICS` (the only
/// way to open a directory) and flushed with `FlushFileBuffers`, which on
/// NTFS commits the file system's journal, renames included, and flushes
/// the drive.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        sync_file(&File::open(dir)?)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_BACKUP_SEMANTICS;
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(dir)?
            .sync_all()
    }
}

/// Renames `from` to `to`, replacing any file there, atomically.
///
/// Linux and macOS: `rename(2)`, which replaces a file others hold open
/// (they keep reading the old one).
///
/// Windows: std's rename, which uses POSIX semantics where NTFS offers them
/// (Windows 10 1607 and later) and so also replaces a file others hold
/// open, provided they opened it allowing deletion (`FILE_SHARE_DELETE`,
/// as std, and so this engine in any process, always does). A process that
/// opened the file without it (a virus scanner or the search indexer,
/// usually for a moment) makes the rename fail with a sharing violation or
/// access denied; those are retried for up to two seconds, as Go's and
/// Git's Windows ports do, and then reported. Where the file system offers
/// only the classic semantics (FAT and exFAT, many network shares, Wine),
/// Windows refuses to replace a file anyone holds open at all: the same
/// error, after the same retries, and the old file stays as it was.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::{ERROR_ACCESS_DENIED, ERROR_SHARING_VIOLATION};
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            match fs::rename(from, to) {
                Err(e)
                    if matches!(e.raw_os_error(), Some(c) if c == ERROR_ACCESS_DENIED as i32 || c == ERROR_SHARING_VIOLATION as i32)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                result => return result,
            }
        }
    }
    #[cfg(not(windows))]
    fs::rename(from, to)
}

/// Creates `path` (and missing parents) readable by its owner only: the
/// cache holds pulled images and registry settings.
///
/// Linux and macOS: mode 0700. Windows: the directory is created with a
/// protected access list (not inheriting its parent's) granting full
/// control to its owner (`OW`, owner rights) and to `SYSTEM`, and to
/// nobody else, inherited by everything created inside; parents are
/// created as usual.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
    }
    #[cfg(windows)]
    {
        windows::create_private_dir(path)
    }
}

/// Bytes an unprivileged process may still write on the file system
/// holding `path` (an existing file or directory).
///
/// Linux and macOS: `statvfs`, `f_bavail` (blocks not reserved for root)
/// times `f_frsize`. Windows: `GetDiskFreeSpaceExW`'s bytes available to
/// the caller, which also honours the user's disk quota.
pub fn free_space(path: &Path) -> io::Result<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
        // SAFETY: a NUL-terminated path and a zeroed out-parameter.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The fields' widths differ between systems (u32 blocks on macOS).
        #[allow(clippy::unnecessary_cast)]
        Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
    }
    #[cfg(windows)]
    {
        windows::free_space(path)
    }
}

/// A directory whose entries are statted by name, tens of thousands at a
/// time (a quick `check` stats every artifact).
///
/// Linux and macOS: `fstatat` on the directory's open descriptor, so the
/// kernel looks up one name instead of walking the whole path for each
/// file. Windows: by path (`symlink_metadata`), which `FindFirstFileW` and
/// its directory caching serve.
pub struct StatDir {
    path: std::path::PathBuf,
    #[cfg(unix)]
    dir: Option<File>,
}

impl StatDir {
    /// Opens `path` for statting (a directory that cannot be opened is
    /// statted by path, which reports the same errors).
    pub fn open(path: &Path) -> StatDir {
        StatDir {
            path: path.to_path_buf(),
            #[cfg(unix)]
            dir: File::open(path).ok(),
        }
    }

    /// The apparent size of the entry `name`, without following a link,
    /// and whether it is a directory; None when it is gone.
    pub fn lstat(&self, name: &std::ffi::OsStr) -> io::Result<Option<(u64, bool)>> {
        #[cfg(unix)]
        if let Some(dir) = &self.dir {
            use std::os::unix::ffi::OsStrExt;
            use std::os::unix::io::AsRawFd;
            let c_name = std::ffi::CString::new(name.as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))?;
            // SAFETY: an open directory descriptor, a NUL-terminated name
            // and a zeroed out-parameter.
            let mut stat: libc::stat = unsafe { std::mem::zeroed() };
            if unsafe { libc::fstatat(dir.as_raw_fd(), c_name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::NotFound { Ok(None) } else { Err(e) };
            }
            return Ok(Some((stat.st_size.max(0) as u64, stat.st_mode & libc::S_IFMT == libc::S_IFDIR)));
        }
        match fs::symlink_metadata(self.path.join(name)) {
            Ok(meta) => Ok(Some((meta.len(), meta.is_dir()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The key by which files to delete are ordered, so that a sweep of
/// thousands of files walks the disk rather than jumping about.
///
/// Linux and macOS: the inode number (on ext4, neighbouring inodes share
/// inode-table blocks and block groups). Windows: 0 for every file, so a
/// stable sort keeps `read_dir`'s order, which on NTFS is the order of the
/// directory's index; the MFT record number would need every file opened.
pub fn deletion_key(entry: &fs::DirEntry) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::DirEntryExt::ino(entry)
    }
    #[cfg(windows)]
    {
        let _ = entry;
        0
    }
}

/// SQLite settings each index connection needs on this system for a
/// `synchronous = FULL` commit to be durable before files it dropped are
/// deleted. macOS: `fullfsync`, since SQLite otherwise syncs with plain
/// `fsync` there, which leaves the commit in the drive's cache (see
/// [`sync_file`]); with it every sync, checkpoints included, is an
/// `F_FULLFSYNC`. Linux and Windows: none (SQLite's `fsync` and
/// `FlushFileBuffers` flush the drive).
#[cfg(target_os = "macos")]
pub const SQLITE_DURABILITY: &[(&str, &str)] = &[("fullfsync", "ON")];
/// See the macOS definition.
#[cfg(not(target_os = "macos"))]
pub const SQLITE_DURABILITY: &[(&str, &str)] = &[];

/// The Windows calls std does not wrap.
#[cfg(windows)]
mod windows {
    use std::ffi::OsStr;
    use std::io;
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;

    use windows_sys::Win32::Foundation::{LocalFree, ERROR_ALREADY_EXISTS};
    use windows_sys::Win32::Security::Authorization::{ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1};
    use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
    use windows_sys::Win32::Storage::FileSystem::{CreateDirectoryW, GetDiskFreeSpaceExW};

    /// Protected DACL (`P`): full access (`FA`) for owner rights (`OW`) and
    /// `SYSTEM` (`SY`), inherited by files and directories inside (`OICI`).
    const OWNER_ONLY: &str = "D:P(A;OICI;FA;;;OW)(A;OICI;FA;;;SY)";

    /// A NUL-terminated wide path for the `…W` calls: absolute, and in the
    /// `\\?\` form when longer than `MAX_PATH` (260), which those calls
    /// refuse otherwise on systems without long paths enabled.
    fn wide(path: &Path) -> io::Result<Vec<u16>> {
        let path = std::path::absolute(path)?;
        let plain = path.as_os_str();
        let mut out: Vec<u16> = Vec::new();
        let text = plain.to_string_lossy();
        if plain.len() >= 260 && !text.starts_with(r"\\?\") {
            match text.strip_prefix(r"\\") {
                Some(unc) => out.extend(OsStr::new(r"\\?\UNC\").encode_wide().chain(OsStr::new(unc).encode_wide())),
                None => out.extend(OsStr::new(r"\\?\").encode_wide().chain(plain.encode_wide())),
            }
        } else {
            out.extend(plain.encode_wide());
        }
        if out.contains(&0) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL character"));
        }
        out.push(0);
        Ok(out)
    }

    pub fn create_private_dir(path: &Path) -> io::Result<()> {
        if path.is_dir() {
            return Ok(());
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let sddl: Vec<u16> = OsStr::new(OWNER_ONLY).encode_wide().chain([0]).collect();
        let mut descriptor = std::ptr::null_mut();
        // SAFETY: a NUL-terminated SDDL string; the descriptor is freed below.
        if unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl.as_ptr(), SDDL_REVISION_1, &mut descriptor, std::ptr::null_mut())
        } == 0
        {
            return Err(io::Error::last_os_error());
        }
        let attributes = SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: descriptor,
            bInheritHandle: 0,
        };
        let name = wide(path)?;
        // SAFETY: a NUL-terminated path and a valid security descriptor.
        let created = unsafe { CreateDirectoryW(name.as_ptr(), &attributes) } != 0;
        let error = io::Error::last_os_error();
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(descriptor) };
        match created {
            true => Ok(()),
            // Another process created it meanwhile, as DirBuilder's recursive mode allows.
            false if error.raw_os_error() == Some(ERROR_ALREADY_EXISTS as i32) && path.is_dir() => Ok(()),
            false => Err(error),
        }
    }

    pub fn free_space(path: &Path) -> io::Result<u64> {
        let name = wide(path)?;
        let mut available = 0u64;
        // SAFETY: a NUL-terminated path; the other out-parameters may be null.
        if unsafe { GetDiskFreeSpaceExW(name.as_ptr(), &mut available, std::ptr::null_mut(), std::ptr::null_mut()) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(available)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn durable_publication_steps_work_here() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.tmp");
        let b = dir.path().join("b");
        let mut file = File::create(&a).unwrap();
        file.write_all(&[7u8; 1 << 16]).unwrap();
        start_writeback(&file);
        sync_file(&file).unwrap();
        drop(file);
        fs::write(&b, b"old").unwrap();
        rename(&a, &b).unwrap();
        sync_dir(dir.path()).unwrap();
        assert_eq!(fs::read(&b).unwrap().len(), 1 << 16);
        assert!(!a.exists());

        // Replacing a file another handle holds open: always on Unix, with
        // POSIX semantics on NTFS; refused, with nothing lost, where
        // Windows has only the classic semantics (see `rename`).
        fs::write(&a, b"new").unwrap();
        let held = File::open(&b).unwrap();
        match rename(&a, &b) {
            Ok(()) => assert_eq!(fs::read(&b).unwrap(), b"new"),
            #[cfg(windows)]
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                assert_eq!(fs::read(&a).unwrap(), b"new");
                assert_eq!(fs::read(&b).unwrap().len(), 1 << 16);
            }
            Err(e) => panic!("replacing an open file: {e}"),
        }
        drop(held);
    }

    #[test]
    fn private_dirs_are_created_with_their_parents() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("x").join("home");
        create_private_dir(&home).unwrap();
        assert!(home.is_dir());
        create_private_dir(&home).unwrap();
        fs::write(home.join("f"), b"owner can write").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&home).unwrap().permissions().mode() & 0o777, 0o700);
        }
    }

    #[test]
    fn free_space_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_space(dir.path()).unwrap();
        assert!(free > 0);
        assert!(free_space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_stat_dir_sizes_entries_by_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("file"), b"12345").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let stat = StatDir::open(dir.path());
        assert_eq!(stat.lstat("file".as_ref()).unwrap(), Some((5, false)));
        assert_eq!(stat.lstat("sub".as_ref()).unwrap().map(|(_, dir)| dir), Some(true));
        assert_eq!(stat.lstat("gone".as_ref()).unwrap(), None);
        // A directory that is not there is statted by path: every name is gone.
        assert_eq!(StatDir::open(&dir.path().join("none")).lstat("file".as_ref()).unwrap(), None);
    }

    #[test]
    fn deletion_keys_order_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b"] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let keys: Vec<u64> = fs::read_dir(dir.path()).unwrap().map(|e| deletion_key(&e.unwrap())).collect();
        assert_eq!(keys.len(), 2);
        #[cfg(unix)]
        assert_ne!(keys[0], keys[1]);
    }
}

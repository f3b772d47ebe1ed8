//! Random access into a tar file: one pass records where each member's data
//! lives, then blobs are read in place, without unpacking the archive.
//! Members with `..`, absolute paths, or links leading outside are refused.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MAX_LINK_HOPS: usize = 16;
/// Most members an archive may hold: image archives hold blobs, a few per
/// layer, not files, and the index of members is kept in memory.
pub const MAX_MEMBERS: usize = 100_000;
/// Largest pax header or GNU long name the index reads: the `tar` crate
/// reads one whole into memory, so its size is checked first (the layer
/// reader's own bound).
const EXTENSION_MAX: u64 = erofs::limits::EXTENSION_HEADER_MAX;

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Link(String),
    Dir,
}

/// The members of a tar file, by normalized path.
#[derive(Debug)]
pub struct TarIndex {
    path: PathBuf,
    members: HashMap<String, Member>,
}

impl TarIndex {
    /// Reads every header of the tar at `path`.
    pub fn open(path: &Path) -> Result<TarIndex> {
        let mut file = super::open_regular(path).map_err(|e| Error::archive(path, format!("cannot open: {e}")))?;
        check_extensions(&mut file).map_err(|m| Error::archive(path, m))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| Error::archive(path, format!("not a tar archive: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::archive(path, format!("corrupt tar: {e}")))?;
            let raw = entry.path_bytes();
            let name = normalize(&String::from_utf8_lossy(&raw)).map_err(|m| Error::archive(path, m))?;
            let kind = entry.header().entry_type();
            let member = if kind.is_file() || kind == tar::EntryType::Continuous {
                Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if kind.is_dir() {
                Member::Dir
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::archive(path, format!("{name}: link without a target")))?;
                let target = String::from_utf8_lossy(&target).into_owned();
                let resolved = if kind.is_symlink() {
                    resolve_relative(&name, &target)
                } else {
                    normalize(&target)
                };
                Member::Link(resolved.map_err(|m| Error::archive(path, format!("{name} links outside the archive: {m}")))?)
            } else if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
                continue;
            } else {
                return Err(Error::archive(path, format!("{name}: unsupported member type {kind:?}")));
            };
            if name.is_empty() {
                continue;
            }
            if members.len() == MAX_MEMBERS {
                return Err(Error::archive(
                    path,
                    format!("more than {MAX_MEMBERS} members: not an image archive"),
                ));
            }
            members.insert(name, member);
        }
        if members.is_empty() {
            return Err(Error::archive(path, "not a tar archive (no members)"));
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            members,
        })
    }

    /// Whether a regular file (possibly through links) named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.locate(name).is_ok()
    }

    fn locate(&self, name: &str) -> Result<(u64, u64)> {
        let mut current = normalize(name).map_err(|m| Error::archive(&self.path, m))?;
        for _ in 0..MAX_LINK_HOPS {
            match self.members.get(&current) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(target)) => current = target.clone(),
                Some(Member::Dir) => return Err(Error::archive(&self.path, format!("{name} is a directory"))),
                None => return Err(Error::archive(&self.path, format!("{name} is missing from the archive"))),
            }
        }
        Err(Error::archive(&self.path, format!("{name}: too many levels of links")))
    }

    /// The size of member `name`.
    pub fn size(&self, name: &str) -> Result<u64> {
        self.locate(name).map(|(_, size)| size)
    }

    /// Opens member `name` for reading.
    pub fn open_member(&self, name: &str) -> Result<impl Read + Send + use<>> {
        let (offset, size) = self.locate(name)?;
        let mut file = super::open_regular(&self.path).map_err(|e| Error::archive(&self.path, format!("cannot open: {e}")))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::archive(&self.path, format!("cannot seek: {e}")))?;
        Ok(Truncation {
            inner: file.take(size),
            remaining: size,
        })
    }

    /// Reads member `name` whole, refusing members over `limit` bytes.
    pub fn read_member(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let size = self.size(name)?;
        if size > limit {
            return Err(Error::archive(
                &self.path,
                format!("{name} is {size} bytes, more than the {limit} allowed"),
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        self.open_member(name)?
            .read_to_end(&mut bytes)
            .map_err(|e| Error::archive(&self.path, format!("{name}: {e}")))?;
        Ok(bytes)
    }
}

/// Walks the headers (seeking over data) and refuses an extension header
/// (pax, GNU long name or link) larger than [`EXTENSION_MAX`] before the
/// `tar` crate would read it whole. Stops quietly at the end of the archive
/// or at anything that is not a valid header: the `tar` crate then reports it.
fn check_extensions(file: &mut File) -> Result<(), String> {
    let mut header = [0u8; 512];
    let mut at = 0u64;
    loop {
        if file.seek(SeekFrom::Start(at)).is_err() || file.read_exact(&mut header).is_err() || !checksum_ok(&header) {
            break;
        }
        let parsed = tar::Header::from_byte_slice(&header);
        let Ok(size) = parsed.entry_size() else { break };
        let kind = parsed.entry_type();
        let extension =
            kind.is_pax_local_extensions() || kind.is_pax_global_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink();
        if extension && size > EXTENSION_MAX {
            return Err(format!(
                "an extension header of {size} bytes at byte {at}, more than the {EXTENSION_MAX} allowed"
            ));
        }
        at = at.saturating_add(512).saturating_add(size.div_ceil(512).saturating_mul(512));
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| format!("cannot seek: {e}"))?;
    Ok(())
}

/// Whether a 512-byte block is a tar header: its checksum (the sum of its
/// bytes, the checksum field counted as spaces) matches; an all-zero block
/// (the end of the archive) does not.
fn checksum_ok(header: &[u8; 512]) -> bool {
    let field = &header[148..156];
    let text = std::str::from_utf8(field).unwrap_or("");
    let Ok(stored) = u32::from_str_radix(text.trim_matches(|c: char| c == '\0' || c == ' '), 8) else {
        return false;
    };
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) })
        .sum();
    sum == stored
}

/// A member reader that reports a file cut short instead of a short read.
struct Truncation<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Truncation<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive is truncated"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// `./a//b/` → `a/b`; refuses absolute paths and `..`.
pub fn normalize(name: &str) -> Result<String, String> {
    if name.starts_with('/') {
        return Err(format!("absolute path {name:?} in archive"));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("path {name:?} in archive contains '..'")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink target relative to the link's directory, refusing
/// targets that leave the archive root.
fn resolve_relative(link: &str, target: &str) -> Result<String, String> {
    if target.starts_with('/') {
        return Err(format!("absolute target {target:?}"));
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("target {target:?} escapes the root"));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_escapes() {
        assert_eq!(normalize("./a//b/").unwrap(), "a/b");
        assert!(normalize("/etc/passwd").is_err());
        assert!(normalize("a/../b").is_err());
        assert_eq!(resolve_relative("x/y/link", "../z").unwrap(), "x/z");
        assert!(resolve_relative("link", "../z").is_err());
        assert!(resolve_relative("x/link", "/z").is_err());
    }
}

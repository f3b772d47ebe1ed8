//! Streaming tar reader: POSIX ustar and pax (local and global headers),
//! GNU long names/links ('L'/'K'), GNU old sparse ('S') and PAX sparse
//! 0.0/0.1/1.0, base-256 numbers.
//!
//! Every byte read goes through [`TarReader::fill`], which hands it to the
//! framing [`Recorder`]: as an image range when the caller stores it
//! ([`TarReader::read_data`]), literally otherwise.
//!
//! An archive that ends cleanly on an entry boundary without the two
//! zero blocks is accepted, like GNU tar does; any other short read is
//! [`Error::InvalidTar`].

mod header;
mod pax;
mod sparse;

use std::io::{self, Read};

use crate::framing::Recorder;
use crate::Error;
use header::BLOCK;

/// Largest pax/GNU long-name body we buffer in memory.
const MAX_META_BODY: u64 = 64 << 20;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Regular,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

/// One archive member, with all extension headers applied.
#[derive(Debug)]
pub struct Entry {
    /// Byte offset of the entry's first header in the stream.
    pub offset: u64,
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub devmajor: u32,
    pub devminor: u32,
    /// Logical file size (the real size for sparse files).
    pub size: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Data segments for sparse files; the stored data is their concatenation.
    pub sparse: Option<Vec<(u64, u64)>>,
}

/// Reads entries one by one; the caller reads each entry's data with
/// [`TarReader::read_data`] (unread data is skipped by the next call).
pub struct TarReader<'f, R> {
    inner: R,
    pos: u64,
    remaining: u64,
    padding: u64,
    globals: Vec<(Vec<u8>, Vec<u8>)>,
    framing: Recorder<'f>,
}

fn invalid(offset: u64, message: impl Into<String>) -> Error {
    Error::InvalidTar {
        offset,
        message: message.into(),
    }
}

/// Last value of `key` among pax records.
fn last<'a>(records: &'a [(Vec<u8>, Vec<u8>)], key: &[u8]) -> Option<&'a [u8]> {
    records.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
}

impl<'f, R: Read> TarReader<'f, R> {
    pub fn new(inner: R, framing: Recorder<'f>) -> Self {
        TarReader {
            inner,
            pos: 0,
            remaining: 0,
            padding: 0,
            globals: Vec::new(),
            framing,
        }
    }

    /// Reads as much of `buf` as the stream has; returns the count. The
    /// bytes are framed as stored at image byte `stored_at`, or literal.
    fn fill(&mut self, buf: &mut [u8], stored_at: Option<u64>) -> Result<usize, Error> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.pos += n as u64;
        match stored_at {
            Some(at) => self.framing.stored(at, n as u64)?,
            None => self.framing.literal(&buf[..n])?,
        }
        Ok(n)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        if self.fill(buf, None)? < buf.len() {
            return Err(invalid(self.pos, "archive is truncated"));
        }
        Ok(())
    }

    fn skip(&mut self, mut n: u64) -> Result<(), Error> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.read_exact(&mut buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Reads the current entry's data, which the caller stores at image
    /// byte `stored_at` (and that is what the framing records); returns 0
    /// at its end.
    pub fn read_data(&mut self, buf: &mut [u8], stored_at: u64) -> Result<usize, Error> {
        let k = (buf.len() as u64).min(self.remaining) as usize;
        if self.fill(&mut buf[..k], Some(stored_at))? < k {
            return Err(invalid(self.pos, "archive is truncated"));
        }
        self.remaining -= k as u64;
        Ok(k)
    }

    /// Reads everything left in the stream (end-of-archive blocks and any
    /// trailing bytes), so a hashing wrapper sees the whole input and the
    /// framing holds it, then ends the framing record.
    pub fn finish(mut self) -> Result<(), Error> {
        let mut buf = vec![0u8; 64 << 10];
        while self.fill(&mut buf, None)? > 0 {}
        self.framing.finish()?;
        Ok(())
    }

    /// Reads a whole (small) entry body, e.g. a pax header or long name.
    fn read_body(&mut self, size: u64, offset: u64) -> Result<Vec<u8>, Error> {
        if size > MAX_META_BODY {
            return Err(invalid(offset, format!("extension header of {size} bytes is absurd")));
        }
        let mut body = vec![0u8; size as usize];
        self.read_exact(&mut body)?;
        self.skip(size.next_multiple_of(BLOCK as u64) - size)?;
        Ok(body)
    }

    /// Returns the next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, Error> {
        let mut locals: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut offset = None;
        loop {
            self.skip(self.remaining + self.padding)?;
            self.remaining = 0;
            self.padding = 0;
            let here = self.pos;
            let mut h = [0u8; BLOCK];
            let n = self.fill(&mut h, None)?;
            if n == 0 && offset.is_none() {
                return Ok(None);
            }
            if n < BLOCK {
                return Err(invalid(self.pos, "archive is truncated inside a header"));
            }
            if h.iter().all(|&b| b == 0) {
                if offset.is_some() {
                    return Err(invalid(here, "archive ends after an extension header"));
                }
                return Ok(None);
            }
            let offset = *offset.get_or_insert(here);
            match header::checksum_ok(&h) {
                Ok(true) => {}
                Ok(false) => return Err(invalid(here, "header checksum mismatch")),
                Err(e) => return Err(invalid(here, e)),
            }
            let num = |f| header::number(header::field(&h, f)).map_err(|e| invalid(here, e));
            let size = u64::try_from(num(header::SIZE)?)
                .ok()
                .filter(|&s| s <= i64::MAX as u64)
                .ok_or_else(|| invalid(here, "entry size is negative or absurd"))?;
            let typeflag = h[header::TYPEFLAG];
            match typeflag {
                b'x' | b'X' => {
                    let body = self.read_body(size, here)?;
                    let recs = pax::parse_records(&body).map_err(|e| invalid(here, e))?;
                    locals.extend(recs);
                    continue;
                }
                b'g' => {
                    let body = self.read_body(size, here)?;
                    for (k, v) in pax::parse_records(&body).map_err(|e| invalid(here, e))? {
                        self.globals.retain(|(gk, _)| *gk != k);
                        if !v.is_empty() {
                            self.globals.push((k, v));
                        }
                    }
                    continue;
                }
                b'L' | b'K' => {
                    let mut body = self.read_body(size, here)?;
                    while body.last() == Some(&0) {
                        body.pop();
                    }
                    if typeflag == b'L' {
                        long_name = Some(body);
                    } else {
                        long_link = Some(body);
                    }
                    continue;
                }
                b'V' => {
                    self.remaining = size;
                    self.padding = size.next_multiple_of(BLOCK as u64) - size;
                    continue;
                }
                b'M' => return Err(invalid(here, "multi-volume archives are not supported")),
                _ => {}
            }
            return self.entry(&h, size, offset, locals, long_name, long_link).map(Some);
        }
    }

    fn entry(
        &mut self,
        h: &[u8; BLOCK],
        stored: u64,
        offset: u64,
        locals: Vec<(Vec<u8>, Vec<u8>)>,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<Entry, Error> {
        let globals = self.globals.clone();
        let bad = |m: String| invalid(offset, m);
        let num = |f| header::number(header::field(h, f)).map_err(bad);
        // A local record with an empty value cancels the global one and
        // falls back to the header field.
        let pax = |key: &[u8]| -> Option<Vec<u8>> {
            match last(&locals, key) {
                Some([]) => None,
                Some(v) => Some(v.to_vec()),
                None => last(&globals, key).map(|v| v.to_vec()),
            }
        };
        let pax_u64 = |key: &[u8]| -> Result<Option<u64>, Error> {
            pax(key)
                .map(|v| pax::parse_u64(&v).ok_or_else(|| bad(format!("bad pax {}", String::from_utf8_lossy(key)))))
                .transpose()
        };
        let id = |key: &[u8], field| -> Result<u32, Error> {
            let v = match pax_u64(key)? {
                Some(v) => i128::from(v),
                None => num(field)?,
            };
            u32::try_from(v).map_err(|_| bad(format!("{} {v} out of range", String::from_utf8_lossy(key))))
        };

        let typeflag = h[header::TYPEFLAG];
        let kind = match typeflag {
            b'1' => EntryKind::HardLink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' | b'D' => EntryKind::Directory,
            b'6' => EntryKind::Fifo,
            // '0', '\0', '7', 'S' and unknown types are regular files (POSIX).
            _ => EntryKind::Regular,
        };

        let mut path = match (pax(b"path"), long_name) {
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => {
                let name = header::string(h, header::NAME);
                let prefix = if header::is_ustar(h) {
                    header::string(h, header::PREFIX)
                } else {
                    b""
                };
                if prefix.is_empty() {
                    name.to_vec()
                } else {
                    [prefix, b"/", name].concat()
                }
            }
        };
        let link = match (pax(b"linkpath"), long_link) {
            (Some(l), _) | (None, Some(l)) => l,
            (None, None) => header::string(h, header::LINKNAME).to_vec(),
        };
        let (mtime, mtime_nsec) = match pax(b"mtime") {
            Some(v) => pax::parse_time(&v).ok_or_else(|| bad("bad pax mtime".into()))?,
            None => {
                let t = num(header::MTIME)?;
                (i64::try_from(t).map_err(|_| bad("mtime out of range".into()))?, 0)
            }
        };
        let stored = pax_u64(b"size")?.unwrap_or(stored);
        if stored > i64::MAX as u64 {
            return Err(bad(format!("entry size {stored} is absurd")));
        }
        let mode = u32::try_from(num(header::MODE)? & 0o7777).unwrap_or(0);
        let (uid, gid) = (id(b"uid", header::UID)?, id(b"gid", header::GID)?);
        let is_dev = matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice);
        let dev = |f| -> Result<u32, Error> {
            if !is_dev {
                return Ok(0);
            }
            u32::try_from(num(f)?).map_err(|_| bad("device number out of range".into()))
        };
        let (devmajor, devminor) = (dev(header::DEVMAJOR)?, dev(header::DEVMINOR)?);

        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (k, v) in globals.iter().chain(locals.iter()) {
            let (name, value) = if let Some(n) = k.strip_prefix(b"SCHILY.xattr.") {
                (n.to_vec(), v.clone())
            } else if let Some(n) = k.strip_prefix(b"LIBARCHIVE.xattr.") {
                let name = pax::url_decode(n).ok_or_else(|| bad("bad LIBARCHIVE.xattr name".into()))?;
                let value = pax::base64_decode(v).ok_or_else(|| bad("bad LIBARCHIVE.xattr value".into()))?;
                (name, value)
            } else {
                continue;
            };
            xattrs.retain(|(n, _)| *n != name);
            xattrs.push((name, value));
        }

        self.remaining = stored;
        self.padding = stored.next_multiple_of(BLOCK as u64) - stored;
        let mut size = stored;
        let mut sparse = None;
        if typeflag == b'S' {
            let mut segs = Vec::new();
            sparse::gnu_pairs(h, header::GNU_SPARSE, 4, &mut segs).map_err(bad)?;
            let mut extended = h[header::GNU_ISEXTENDED] != 0;
            while extended {
                let mut ext = [0u8; BLOCK];
                self.read_exact(&mut ext)?;
                sparse::gnu_pairs(&ext, 0, 21, &mut segs).map_err(bad)?;
                extended = ext[header::GNU_EXT_ISEXTENDED] != 0;
                if segs.len() > 1 << 24 {
                    return Err(bad("absurd sparse map".into()));
                }
            }
            size = u64::try_from(num(header::GNU_REALSIZE)?).map_err(|_| bad("bad sparse real size".into()))?;
            sparse = Some(segs);
        } else if let Some(major) = pax(b"GNU.sparse.major") {
            let minor = pax(b"GNU.sparse.minor").unwrap_or_default();
            if major != b"1" || minor != b"0" {
                return Err(bad(format!(
                    "unsupported sparse format {}.{}",
                    String::from_utf8_lossy(&major),
                    String::from_utf8_lossy(&minor)
                )));
            }
            let mut map = sparse::Map10::default();
            let segs = loop {
                if self.remaining < BLOCK as u64 {
                    return Err(bad("sparse map runs past the entry data".into()));
                }
                let mut b = [0u8; BLOCK];
                self.read_exact(&mut b)?;
                self.remaining -= BLOCK as u64;
                if let Some(s) = map.feed(&b).map_err(bad)? {
                    break s;
                }
            };
            size = pax_u64(b"GNU.sparse.realsize")?.ok_or_else(|| bad("sparse 1.0 without realsize".into()))?;
            sparse = Some(segs);
        } else if let Some(map) = pax(b"GNU.sparse.map") {
            sparse = Some(sparse::parse_map_01(&map).map_err(bad)?);
            size = pax_u64(b"GNU.sparse.size")?.ok_or_else(|| bad("sparse 0.1 without size".into()))?;
        } else if last(&locals, b"GNU.sparse.offset").is_some() {
            let offs = locals.iter().filter(|(k, _)| k == b"GNU.sparse.offset");
            let lens = locals.iter().filter(|(k, _)| k == b"GNU.sparse.numbytes");
            let mut segs = Vec::new();
            for ((_, o), (_, l)) in offs.zip(lens) {
                let parse = |v: &[u8]| pax::parse_u64(v).ok_or_else(|| bad("bad sparse 0.0 number".into()));
                segs.push((parse(o)?, parse(l)?));
            }
            size = pax_u64(b"GNU.sparse.size")?.ok_or_else(|| bad("sparse 0.0 without size".into()))?;
            sparse = Some(segs);
        }
        if let Some(segs) = sparse.take() {
            sparse = Some(sparse::validate(segs, size, self.remaining).map_err(bad)?);
            if let Some(name) = pax(b"GNU.sparse.name") {
                path = name;
            }
        }
        if kind != EntryKind::Regular {
            size = 0;
        }
        Ok(Entry {
            offset,
            path,
            link,
            kind,
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
            devmajor,
            devminor,
            size,
            xattrs,
            sparse,
        })
    }
}

//! Streaming tar reader: POSIX ustar and pax (local and global headers),
//! GNU long names/links ('L'/'K'), GNU old sparse ('S') and PAX sparse
//! 0.0/0.1/1.0, base-256 numbers.
//!
//! Every byte read goes through [`input::Input`], which hands it to the
//! framing [`Recorder`]: as an image range when the caller stores it
//! ([`TarReader::read_data`]), literally otherwise.
//!
//! An archive that ends cleanly on an entry boundary without the two
//! zero blocks is accepted, like GNU tar does; any other short read is
//! [`Error::InvalidTar`].
//!
//! An entry is read in phases: extension headers accumulate in
//! [`Pending`] ([`TarReader::extension`]) until a real header comes; its
//! fields are then resolved against the pax records (local over global,
//! over the header) one concern at a time: kind, names, times and ids,
//! xattrs, and last the sparse map, which may have to be read from the
//! entry's data.

mod header;
mod input;
mod pax;
mod records;
mod sparse;

use std::io::BufRead;

use crate::framing::Recorder;
use crate::limits::{GLOBAL_RECORDS_MAX, SPARSE_SEGMENTS_MAX};
use crate::xattr::Shared;
use crate::{Error, Xattrs};
use header::BLOCK;
use input::Input;
use records::{is_applied, is_xattr_record, last, merged_xattrs, Globals, Records};

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntryKind {
    #[default]
    Regular,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

/// One archive member, with all extension headers applied.
#[derive(Debug, Default)]
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
    /// Shared with every entry that has the same global xattrs and no
    /// local ones.
    pub xattrs: Shared,
    /// Data segments for sparse files; the stored data is their concatenation.
    pub sparse: Option<Vec<(u64, u64)>>,
}

/// Reads entries one by one; the caller reads each entry's data with
/// [`TarReader::read_data`] (unread data is skipped by the next call).
pub struct TarReader<'f, R> {
    input: Input<'f, R>,
    /// Records of global pax headers that this reader applies (to every
    /// later entry).
    globals: Globals,
    /// The xattrs the global records give, for entries without local ones.
    global_xattrs: Shared,
}

fn invalid(offset: u64, message: impl Into<String>) -> Error {
    Error::InvalidTar {
        offset,
        message: message.into(),
    }
}

/// Extension headers read for the entry to come.
#[derive(Default)]
struct Pending {
    /// Offset of the first of them, which is where the entry starts.
    offset: Option<u64>,
    /// Local pax records, in order.
    locals: Xattrs,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl<'f, R: BufRead> TarReader<'f, R> {
    /// Reads the archive `inner`, recording its framing into `framing`.
    pub fn new(inner: R, framing: Recorder<'f>) -> Self {
        TarReader {
            input: Input::new(inner, framing),
            globals: Globals::default(),
            global_xattrs: Shared::default(),
        }
    }

    /// Reads the current entry's data, which the caller stores at image
    /// byte `stored_at` (and that is what the framing records); returns 0
    /// at its end.
    pub fn read_data(&mut self, buf: &mut [u8], stored_at: u64) -> Result<usize, Error> {
        self.input.read_data(buf, stored_at)
    }

    /// [`Self::read_data`] without a copy: up to `n` bytes handed to `sink`
    /// from the reader's buffer ([`Input::copy_data`]).
    pub fn copy_data(&mut self, n: u64, stored_at: u64, sink: impl FnMut(&[u8]) -> std::io::Result<()>) -> Result<u64, Error> {
        self.input.copy_data(n, stored_at, sink)
    }

    /// Reads everything left in the stream (end-of-archive blocks and any
    /// trailing bytes), so a hashing wrapper sees the whole input and the
    /// framing holds it, then ends the framing record.
    pub fn finish(self) -> Result<(), Error> {
        self.input.finish()
    }

    /// Returns the next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, Error> {
        let mut pending = Pending::default();
        loop {
            let Some((here, h)) = self.input.next_header(pending.offset.is_some())? else {
                return Ok(None);
            };
            let offset = *pending.offset.get_or_insert(here);
            let size = checked_size(&h, here)?;
            if !self.extension(&h, size, here, &mut pending)? {
                return self.entry(&h, size, offset, pending).map(Some);
            }
        }
    }

    /// Consumes an extension header (pax, GNU long name or link, volume
    /// label) into `pending` or the global records; false for a header
    /// of a real entry.
    fn extension(&mut self, h: &[u8; BLOCK], size: u64, here: u64, pending: &mut Pending) -> Result<bool, Error> {
        match h[header::TYPEFLAG] {
            b'x' | b'X' => {
                let body = self.input.read_body(size, here)?;
                pending.locals.extend(pax::parse_records(&body).map_err(|e| invalid(here, e))?);
            }
            b'g' => {
                let body = self.input.read_body(size, here)?;
                let records = pax::parse_records(&body).map_err(|e| invalid(here, e))?;
                self.set_globals(records, here)?;
            }
            t @ (b'L' | b'K') => {
                let mut body = self.input.read_body(size, here)?;
                while body.last() == Some(&0) {
                    body.pop();
                }
                *(if t == b'L' {
                    &mut pending.long_name
                } else {
                    &mut pending.long_link
                }) = Some(body);
            }
            b'V' => self.input.begin_data(size),
            b'M' => return Err(invalid(here, "multi-volume archives are not supported")),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Applies a global header's records: each replaces the global
    /// record of its key (an empty value just removes it). Records this
    /// reader never applies are dropped, so they cost nothing per entry.
    fn set_globals(&mut self, records: Xattrs, here: u64) -> Result<(), Error> {
        for (k, v) in records {
            if !is_applied(&k) {
                continue;
            }
            self.globals.set(k, v);
        }
        if self.globals.size > GLOBAL_RECORDS_MAX {
            return Err(Error::TooLarge {
                message: format!(
                    "global pax records of {} bytes at byte {here} (at most {GLOBAL_RECORDS_MAX})",
                    self.globals.size
                ),
            });
        }
        let recs = Records {
            locals: &[],
            globals: &self.globals,
            offset: here,
        };
        self.global_xattrs = Shared::new(merged_xattrs(&recs)?);
        Ok(())
    }

    /// Builds the entry of header `h` (data of `stored` bytes, first
    /// header at `offset`) from the header and the extension headers
    /// before it.
    fn entry(&mut self, h: &[u8; BLOCK], stored: u64, offset: u64, pending: Pending) -> Result<Entry, Error> {
        let recs = Records {
            locals: &pending.locals,
            globals: &self.globals,
            offset,
        };
        let kind = kind_of(h[header::TYPEFLAG]);
        let path = match (recs.get(b"path"), pending.long_name) {
            (Some(p), _) => p.to_vec(),
            (None, Some(p)) => p,
            (None, None) => header_path(h),
        };
        let link = match (recs.get(b"linkpath"), pending.long_link) {
            (Some(l), _) => l.to_vec(),
            (None, Some(l)) => l,
            (None, None) => header::string(h, header::LINKNAME).to_vec(),
        };
        let mut e = Entry {
            offset,
            path,
            link,
            kind,
            ..Entry::default()
        };
        attributes(h, &recs, &mut e)?;
        e.xattrs = match recs.locals.iter().any(|(k, _)| is_xattr_record(k)) {
            true => Shared::new(merged_xattrs(&recs)?),
            false => self.global_xattrs.clone(),
        };
        let stored = recs.u64(b"size")?.unwrap_or(stored);
        if stored > i64::MAX as u64 {
            return Err(invalid(offset, format!("entry size {stored} is absurd")));
        }
        self.input.begin_data(stored);
        e.size = stored;
        if let Some((segs, size)) = sparse_map(&mut self.input, h, &recs)? {
            e.sparse = Some(sparse::validate(segs, size, self.input.remaining).map_err(|m| invalid(offset, m))?);
            e.size = size;
            if let Some(name) = recs.get(b"GNU.sparse.name") {
                e.path = name.to_vec();
            }
        }
        if kind != EntryKind::Regular {
            e.size = 0;
        }
        Ok(e)
    }
}

/// Sets the entry's mode, times, owner and device number from its pax
/// records or, without them, its header fields.
fn attributes(h: &[u8; BLOCK], recs: &Records<'_>, e: &mut Entry) -> Result<(), Error> {
    let bad = |m: String| invalid(e.offset, m);
    let num = |f| header::number(header::field(h, f)).map_err(bad);
    (e.mtime, e.mtime_nsec) = match recs.get(b"mtime") {
        Some(v) => pax::parse_time(v).ok_or_else(|| bad("bad pax mtime".into()))?,
        None => {
            let t = num(header::MTIME)?;
            (i64::try_from(t).map_err(|_| bad("mtime out of range".into()))?, 0)
        }
    };
    e.mode = u32::try_from(num(header::MODE)? & 0o7777).unwrap_or(0);
    let id = |key: &[u8], field| -> Result<u32, Error> {
        let v = match recs.u64(key)? {
            Some(v) => i128::from(v),
            None => num(field)?,
        };
        u32::try_from(v).map_err(|_| bad(format!("{} {v} out of range", String::from_utf8_lossy(key))))
    };
    (e.uid, e.gid) = (id(b"uid", header::UID)?, id(b"gid", header::GID)?);
    if matches!(e.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        let dev = |f| u32::try_from(num(f)?).map_err(|_| bad("device number out of range".into()));
        (e.devmajor, e.devminor) = (dev(header::DEVMAJOR)?, dev(header::DEVMINOR)?);
    }
    Ok(())
}

/// Checks a header's checksum and returns its data size field.
fn checked_size(h: &[u8; BLOCK], here: u64) -> Result<u64, Error> {
    match header::checksum_ok(h) {
        Ok(true) => {}
        Ok(false) => return Err(invalid(here, "header checksum mismatch")),
        Err(e) => return Err(invalid(here, e)),
    }
    let size = header::number(header::field(h, header::SIZE)).map_err(|e| invalid(here, e))?;
    u64::try_from(size)
        .ok()
        .filter(|&s| s <= i64::MAX as u64)
        .ok_or_else(|| invalid(here, "entry size is negative or absurd"))
}

/// The entry kind of a typeflag.
fn kind_of(typeflag: u8) -> EntryKind {
    match typeflag {
        b'1' => EntryKind::HardLink,
        b'2' => EntryKind::Symlink,
        b'3' => EntryKind::CharDevice,
        b'4' => EntryKind::BlockDevice,
        b'5' | b'D' => EntryKind::Directory,
        b'6' => EntryKind::Fifo,
        // '0', '\0', '7', 'S' and unknown types are regular files (POSIX).
        _ => EntryKind::Regular,
    }
}

/// The path the header itself spells: ustar's prefix and name.
fn header_path(h: &[u8; BLOCK]) -> Vec<u8> {
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

/// The data segments and real size of a sparse entry, in whichever of
/// the four forms it has (`None`: not sparse). The PAX 1.0 map is read
/// from the start of the entry's data, which `input` must be at.
fn sparse_map<R: BufRead>(input: &mut Input<'_, R>, h: &[u8; BLOCK], recs: &Records<'_>) -> Result<Option<(sparse::Segments, u64)>, Error> {
    let bad = |m: String| invalid(recs.offset, m);
    let num = |f| header::number(header::field(h, f)).map_err(bad);
    if h[header::TYPEFLAG] == b'S' {
        let mut segs = Vec::new();
        sparse::gnu_pairs(h, header::GNU_SPARSE, 4, &mut segs).map_err(bad)?;
        let mut extended = h[header::GNU_ISEXTENDED] != 0;
        while extended {
            let mut ext = [0u8; BLOCK];
            input.read_exact(&mut ext)?;
            sparse::gnu_pairs(&ext, 0, 21, &mut segs).map_err(bad)?;
            extended = ext[header::GNU_EXT_ISEXTENDED] != 0;
            segments_within_limit(segs.len())?;
        }
        let size = u64::try_from(num(header::GNU_REALSIZE)?).map_err(|_| bad("bad sparse real size".into()))?;
        return Ok(Some((segs, size)));
    }
    if let Some(major) = recs.get(b"GNU.sparse.major") {
        let minor = recs.get(b"GNU.sparse.minor").unwrap_or_default();
        if major != b"1" || minor != b"0" {
            return Err(bad(format!(
                "unsupported sparse format {}.{}",
                String::from_utf8_lossy(major),
                String::from_utf8_lossy(minor)
            )));
        }
        let mut map = sparse::Map10::default();
        let segs = loop {
            if input.remaining < BLOCK as u64 {
                return Err(bad("sparse map runs past the entry data".into()));
            }
            let mut b = [0u8; BLOCK];
            input.read_exact(&mut b)?;
            input.remaining -= BLOCK as u64;
            segments_within_limit(map.segments())?;
            if let Some(s) = map.feed(&b).map_err(bad)? {
                break s;
            }
        };
        let size = recs
            .u64(b"GNU.sparse.realsize")?
            .ok_or_else(|| bad("sparse 1.0 without realsize".into()))?;
        return Ok(Some((segs, size)));
    }
    if let Some(map) = recs.get(b"GNU.sparse.map") {
        let segs = sparse::parse_map_01(map).map_err(bad)?;
        segments_within_limit(segs.len())?;
        let size = recs.u64(b"GNU.sparse.size")?.ok_or_else(|| bad("sparse 0.1 without size".into()))?;
        return Ok(Some((segs, size)));
    }
    if last(recs.locals, b"GNU.sparse.offset").is_some() {
        let offs = recs.locals.iter().filter(|(k, _)| k == b"GNU.sparse.offset");
        let lens = recs.locals.iter().filter(|(k, _)| k == b"GNU.sparse.numbytes");
        let mut segs = Vec::new();
        for ((_, o), (_, l)) in offs.zip(lens) {
            let parse = |v: &[u8]| pax::parse_u64(v).ok_or_else(|| bad("bad sparse 0.0 number".into()));
            segs.push((parse(o)?, parse(l)?));
        }
        segments_within_limit(segs.len())?;
        let size = recs.u64(b"GNU.sparse.size")?.ok_or_else(|| bad("sparse 0.0 without size".into()))?;
        return Ok(Some((segs, size)));
    }
    Ok(None)
}

/// Refuses sparse maps of more than [`SPARSE_SEGMENTS_MAX`] segments.
fn segments_within_limit(n: usize) -> Result<(), Error> {
    if n > SPARSE_SEGMENTS_MAX {
        return Err(Error::TooLarge {
            message: format!("sparse map of {n} segments (at most {SPARSE_SEGMENTS_MAX})"),
        });
    }
    Ok(())
}

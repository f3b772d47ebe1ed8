//! Pax records: which keywords apply, how an entry's local records
//! override the global ones, and the xattrs they spell.

use std::collections::HashMap;

use super::{invalid, pax};
use crate::{Error, Xattrs};

/// Pax keywords this reader applies (besides the xattr prefixes): only
/// these are kept from global headers.
const APPLIED: &[&[u8]] = &[
    b"path",
    b"linkpath",
    b"mtime",
    b"size",
    b"uid",
    b"gid",
    b"GNU.sparse.major",
    b"GNU.sparse.minor",
    b"GNU.sparse.realsize",
    b"GNU.sparse.map",
    b"GNU.sparse.size",
    b"GNU.sparse.name",
];

/// Whether a global record of `key` is kept: it is one this reader
/// applies.
pub fn is_applied(key: &[u8]) -> bool {
    APPLIED.contains(&key) || is_xattr_record(key)
}

/// Pax keyword prefixes of extended attributes.
const XATTR_PREFIXES: &[&[u8]] = &[b"SCHILY.xattr.", b"LIBARCHIVE.xattr."];

/// Whether `key` names an extended attribute.
pub fn is_xattr_record(key: &[u8]) -> bool {
    XATTR_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Last value of `key` among pax records.
pub fn last<'a>(records: &'a [(Vec<u8>, Vec<u8>)], key: &[u8]) -> Option<&'a [u8]> {
    records.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
}

/// The pax records that apply to one entry: its own over the global ones.
pub struct Records<'a> {
    pub locals: &'a [(Vec<u8>, Vec<u8>)],
    pub globals: &'a Globals,
    /// Where the entry starts, for errors.
    pub offset: u64,
}

/// Global pax records by key, each with the sequence number of the
/// header that set it last (their order, for xattrs): a header of many
/// records costs O(n), not O(n) per record.
#[derive(Default)]
pub struct Globals {
    records: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    next: u64,
    /// Keys plus values of all records.
    pub size: usize,
}

impl Globals {
    /// The value of `key`, if set.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.records.get(key).map(|(_, v)| v.as_slice())
    }

    /// Sets `key` to `value`; an empty value removes it.
    pub fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        if let Some((_, old)) = self.records.remove(&key) {
            self.size -= key.len() + old.len();
        }
        if !value.is_empty() {
            self.size += key.len() + value.len();
            self.records.insert(key, (self.next, value));
            self.next += 1;
        }
    }

    /// The records in the order they were last set.
    pub fn ordered(&self) -> Vec<(&[u8], &[u8])> {
        let mut v: Vec<_> = self.records.iter().map(|(k, (seq, v))| (*seq, &k[..], &v[..])).collect();
        v.sort_unstable_by_key(|r| r.0);
        v.into_iter().map(|(_, k, v)| (k, v)).collect()
    }
}

impl<'a> Records<'a> {
    /// The value of `key`. A local record with an empty value cancels
    /// the global one and falls back to the header field.
    pub fn get(&self, key: &[u8]) -> Option<&'a [u8]> {
        match last(self.locals, key) {
            Some([]) => None,
            Some(v) => Some(v),
            None => self.globals.get(key),
        }
    }

    /// The decimal number of `key`, if set.
    pub fn u64(&self, key: &[u8]) -> Result<Option<u64>, Error> {
        self.get(key)
            .map(|v| pax::parse_u64(v).ok_or_else(|| invalid(self.offset, format!("bad pax {}", String::from_utf8_lossy(key)))))
            .transpose()
    }
}

/// The xattrs of `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*` records,
/// globals first; a later record of a name replaces earlier ones, and
/// the attributes are in the order of their last records.
pub fn merged_xattrs(recs: &Records<'_>) -> Result<Xattrs, Error> {
    let mut named: HashMap<Vec<u8>, (usize, Vec<u8>)> = HashMap::new();
    let locals = recs.locals.iter().map(|(k, v)| (&k[..], &v[..]));
    for (seq, (k, v)) in recs.globals.ordered().into_iter().chain(locals).enumerate() {
        let (name, value) = if let Some(n) = k.strip_prefix(b"SCHILY.xattr.") {
            (n.to_vec(), v.to_vec())
        } else if let Some(n) = k.strip_prefix(b"LIBARCHIVE.xattr.") {
            let name = pax::url_decode(n).ok_or_else(|| invalid(recs.offset, "bad LIBARCHIVE.xattr name"))?;
            let value = pax::base64_decode(v).ok_or_else(|| invalid(recs.offset, "bad LIBARCHIVE.xattr value"))?;
            (name, value)
        } else {
            continue;
        };
        named.insert(name, (seq, value));
    }
    let mut xattrs: Vec<(usize, Vec<u8>, Vec<u8>)> = named.into_iter().map(|(n, (seq, v))| (seq, n, v)).collect();
    xattrs.sort_unstable_by_key(|x| x.0);
    Ok(xattrs.into_iter().map(|(_, n, v)| (n, v)).collect())
}

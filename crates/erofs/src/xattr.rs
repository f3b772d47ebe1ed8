//! Extended attributes: name-prefix indexes, the body after each inode,
//! the shared xattr area, and sets shared in memory.
//!
//! Xattrs are stored inline after their inode, where reading them costs
//! no extra block, except entries of at least [`SHARE_MIN`] bytes that
//! several inodes have: those are stored once in the image's shared
//! area and the inodes name them by id ([`SharedArea`]). In memory, each
//! distinct set is held once ([`Shared`], [`Interner`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::format::{le16, XATTR_HEADER_SIZE};
use crate::Xattrs;

/// One inode's xattrs, shared by every inode with the same set: a global
/// pax header gives thousands of entries the same attributes, and real
/// images repeat the same capability or label on many files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shared(Option<Arc<Xattrs>>);

impl Shared {
    /// A set of its own (shared only by clones of the result).
    pub fn new(x: Xattrs) -> Shared {
        Shared((!x.is_empty()).then(|| Arc::new(x)))
    }

    /// The attributes, in the order they are written.
    pub fn as_slice(&self) -> &[(Vec<u8>, Vec<u8>)] {
        self.0.as_deref().map_or(&[], |x| x.as_slice())
    }

    /// Where the set lives (null when empty): the same for every inode
    /// that shares it.
    pub fn ptr(&self) -> *const Xattrs {
        self.0.as_ref().map_or(std::ptr::null(), Arc::as_ptr)
    }

    /// Whether both are the same allocation (or both empty): the same
    /// set, known without comparing contents.
    pub fn same(&self, other: &Shared) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

/// Hands out one [`Shared`] per distinct xattr set.
#[derive(Default)]
pub struct Interner(HashSet<Arc<Xattrs>>);

impl Interner {
    /// The shared copy of `x`, and whether it is new (so its memory is
    /// spent now).
    pub fn intern(&mut self, x: Xattrs) -> (Shared, bool) {
        if x.is_empty() {
            return (Shared(None), false);
        }
        if let Some(a) = self.0.get(&x) {
            return (Shared(Some(a.clone())), false);
        }
        let a = Arc::new(x);
        self.0.insert(a.clone());
        (Shared(Some(a)), true)
    }
}

/// EROFS short name-prefix indexes (`EROFS_XATTR_INDEX_*`). Longer
/// prefixes go first so `system.posix_acl_access` is not cut at `system.`.
const PREFIXES: &[(u8, &[u8])] = &[
    (2, b"system.posix_acl_access"),
    (3, b"system.posix_acl_default"),
    (1, b"user."),
    (4, b"trusted."),
    (6, b"security."),
];

/// Splits a full attribute name into (name index, suffix). `None` for
/// names no EROFS prefix index covers (only `user.`, `trusted.`,
/// `security.` and the two POSIX ACL names exist on Linux anyway).
pub fn split_name(name: &[u8]) -> Option<(u8, &[u8])> {
    for &(index, prefix) in PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            // The ACL names are complete names, not prefixes.
            if (index == 2 || index == 3) && !rest.is_empty() {
                return None;
            }
            return Some((index, rest));
        }
    }
    None
}

/// Rebuilds the full name from an on-disk (index, suffix) pair; `None`
/// for pairs [`split_name`] would not give (unknown indexes, an ACL name
/// with a suffix), so every name read back can be written again.
pub fn join_name(index: u8, suffix: &[u8]) -> Option<Vec<u8>> {
    if (index == 2 || index == 3) && !suffix.is_empty() {
        return None;
    }
    let prefix = PREFIXES.iter().find(|p| p.0 == index)?.1;
    let mut name = prefix.to_vec();
    name.extend_from_slice(suffix);
    Some(name)
}

fn entry_size(suffix_len: usize, value_len: usize) -> usize {
    (4 + suffix_len + value_len).next_multiple_of(4)
}

/// Bytes one xattr entry takes on disk (header, name suffix, value,
/// padding). `name` must be accepted by [`split_name`].
pub fn entry_len(name: &[u8], value: &[u8]) -> usize {
    entry_size(split_name(name).map_or(0, |s| s.1.len()), value.len())
}

/// Encodes one entry at the start of `out` (at least [`entry_len`]
/// bytes, zeroed); returns its length.
fn encode_entry(name: &[u8], value: &[u8], out: &mut [u8]) -> usize {
    let (index, suffix) = split_name(name).expect("xattr names are checked on insert");
    out[0] = suffix.len() as u8;
    out[1] = index;
    out[2..4].copy_from_slice(&(value.len() as u16).to_le_bytes());
    out[4..4 + suffix.len()].copy_from_slice(suffix);
    out[4 + suffix.len()..4 + suffix.len() + value.len()].copy_from_slice(value);
    entry_size(suffix.len(), value.len())
}

/// Size of the xattr body after an inode: the header, `shared` ids of
/// entries in the shared area, then the `inline` entries (0 when there
/// are none). Callers must have checked every name with [`split_name`].
pub fn body_size<N: AsRef<[u8]>, V: AsRef<[u8]>>(shared: usize, inline: &[(N, V)]) -> usize {
    if shared == 0 && inline.is_empty() {
        return 0;
    }
    XATTR_HEADER_SIZE + 4 * shared + inline.iter().map(|(n, v)| entry_len(n.as_ref(), v.as_ref())).sum::<usize>()
}

/// Encodes the body; `out.len()` must equal [`body_size`].
pub fn encode_body<N: AsRef<[u8]>, V: AsRef<[u8]>>(shared: &[u32], inline: &[(N, V)], out: &mut [u8]) {
    out.fill(0);
    if out.is_empty() {
        return;
    }
    out[4] = shared.len() as u8;
    let mut pos = XATTR_HEADER_SIZE;
    for id in shared {
        out[pos..pos + 4].copy_from_slice(&id.to_le_bytes());
        pos += 4;
    }
    for (name, value) in inline {
        pos += encode_entry(name.as_ref(), value.as_ref(), &mut out[pos..]);
    }
}

/// `i_xattr_icount` for a body of `size` bytes.
pub fn icount(size: usize) -> u16 {
    if size == 0 {
        0
    } else {
        ((size - XATTR_HEADER_SIZE) / 4 + 1) as u16
    }
}

/// Body size for an on-disk `i_xattr_icount`.
pub fn body_size_from_icount(icount: u16) -> usize {
    if icount == 0 {
        0
    } else {
        XATTR_HEADER_SIZE + 4 * (usize::from(icount) - 1)
    }
}

/// An xattr by reference: (full name, value).
pub type XattrRef<'a> = (&'a [u8], &'a [u8]);

/// A decoded entry: its (full name, value), `None` for a prefix index
/// EROFS defines but this crate does not know; and its length on disk.
pub type Decoded = (Option<(Vec<u8>, Vec<u8>)>, usize);

/// Decodes one entry at the start of `bytes`.
pub fn decode_entry(bytes: &[u8]) -> Result<Decoded, String> {
    let head = bytes.get(..4).ok_or("xattr entry runs past its area")?;
    let (name_len, index, value_len) = (usize::from(head[0]), head[1], usize::from(le16(head, 2)));
    let entry = bytes.get(4..4 + name_len + value_len).ok_or("xattr entry runs past its area")?;
    let named = join_name(index, &entry[..name_len]).map(|name| (name, entry[name_len..].to_vec()));
    Ok((named, entry_size(name_len, value_len)))
}

/// Decodes a body: the ids of its shared entries, and its inline
/// entries (those with unknown prefixes skipped).
pub fn decode_body(body: &[u8]) -> Result<(Vec<u32>, Xattrs), String> {
    if body.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    if body.len() < XATTR_HEADER_SIZE {
        return Err("xattr body shorter than its header".into());
    }
    let ids_end = XATTR_HEADER_SIZE + 4 * usize::from(body[4]);
    let ids = body
        .get(XATTR_HEADER_SIZE..ids_end)
        .ok_or("shared xattr ids run past the xattr body")?;
    let ids = ids.chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let mut out = Vec::new();
    let mut pos = ids_end;
    while pos + 4 <= body.len() {
        let (named, len) = decode_entry(&body[pos..]).map_err(|_| "xattr entry runs past the xattr body")?;
        out.extend(named);
        pos += len;
    }
    Ok((ids, out))
}

/// Entries at least this long (header, name and value) that more than
/// one inode has are stored once, in the image's shared xattr area,
/// instead of inline after each inode. Smaller ones (capabilities,
/// SELinux labels, ACLs) stay inline, where reading them costs no extra
/// block; large repeated ones (a global pax xattr on every file) would
/// otherwise multiply the image.
pub const SHARE_MIN: usize = 256;

/// The shared xattr area of an image: its bytes, and for each distinct
/// xattr set of the image which of its entries are in it. Keyed by set,
/// so an inode's split costs no hashing of its (possibly 64 KiB of)
/// values, however many inodes share the set.
#[derive(Default)]
pub struct SharedArea {
    /// Per set: the shared id (offset in 4-byte units) of each entry, or
    /// `None` for entries stored inline.
    by_set: HashMap<*const Xattrs, Vec<Option<u32>>>,
    bytes: Vec<u8>,
}

impl SharedArea {
    /// Picks the entries to share among the xattr sets of an image's
    /// inodes (in inode order, which fixes the ids); every entry of
    /// `forced` is shared, whatever its size and use.
    pub fn build(sets: &[&Shared], forced: Option<&Shared>) -> SharedArea {
        let mut uses: HashMap<*const Xattrs, u32> = HashMap::new();
        let mut distinct = Vec::new();
        for set in sets.iter().filter(|s| !s.as_slice().is_empty()) {
            let n = uses.entry(set.ptr()).or_default();
            if *n == 0 {
                distinct.push(*set);
            }
            *n += 1;
        }
        let mut entry_uses: HashMap<XattrRef<'_>, u32> = HashMap::new();
        for set in &distinct {
            let force = forced.is_some_and(|f| f.same(set));
            for (n, v) in set.as_slice().iter().filter(|(n, v)| force || entry_len(n, v) >= SHARE_MIN) {
                *entry_uses.entry((n, v)).or_default() += if force { 2 } else { uses[&set.ptr()] };
            }
        }
        let mut area = SharedArea::default();
        let mut ids: HashMap<XattrRef<'_>, u32> = HashMap::new();
        for set in &distinct {
            let mut of_set = Vec::with_capacity(set.as_slice().len());
            for (n, v) in set.as_slice() {
                let key = (&n[..], &v[..]);
                let id = match (ids.get(&key), entry_uses.get(&key)) {
                    (Some(&id), _) => Some(id),
                    (None, Some(&u)) if u > 1 => {
                        let id = (area.bytes.len() / 4) as u32;
                        ids.insert(key, id);
                        let at = area.bytes.len();
                        area.bytes.resize(at + entry_len(n, v), 0);
                        encode_entry(n, v, &mut area.bytes[at..]);
                        Some(id)
                    }
                    _ => None,
                };
                of_set.push(id);
            }
            area.by_set.insert(set.ptr(), of_set);
        }
        area
    }

    /// Splits an inode's xattr set into shared ids and inline entries (at
    /// most 255 shared: the count is one byte).
    pub fn split<'x>(&self, set: &'x Shared) -> (Vec<u32>, Vec<XattrRef<'x>>) {
        let (mut ids, mut inline) = (Vec::new(), Vec::new());
        let of_set = self.by_set.get(&set.ptr());
        for (i, (n, v)) in set.as_slice().iter().enumerate() {
            match of_set.and_then(|s| s[i]) {
                Some(id) if ids.len() < 255 => ids.push(id),
                _ => inline.push((&n[..], &v[..])),
            }
        }
        (ids, inline)
    }

    /// The area's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_and_join() {
        assert_eq!(split_name(b"user.foo"), Some((1, &b"foo"[..])));
        assert_eq!(split_name(b"security.capability"), Some((6, &b"capability"[..])));
        assert_eq!(split_name(b"system.posix_acl_access"), Some((2, &b""[..])));
        assert_eq!(split_name(b"system.posix_acl_accessx"), None);
        assert_eq!(split_name(b"system.nfs4_acl"), None);
        assert_eq!(join_name(4, b"overlay.opaque").unwrap(), b"trusted.overlay.opaque");
    }

    #[test]
    fn body_round_trips() {
        let x = vec![
            (b"user.a".to_vec(), b"1".to_vec()),
            (b"security.capability".to_vec(), vec![1, 0, 0, 2, 0, 0, 0, 0]),
            (b"system.posix_acl_default".to_vec(), vec![]),
        ];
        let size = body_size(2, &x);
        let mut buf = vec![0; size];
        encode_body(&[7, 9], &x, &mut buf);
        assert_eq!(body_size_from_icount(icount(size)), size);
        assert_eq!(decode_body(&buf).unwrap(), (vec![7, 9], x));
    }

    #[test]
    fn large_entries_several_sets_have_are_shared_once() {
        let big = vec![b'v'; SHARE_MIN];
        let mut interner = Interner::default();
        let set = |x: Xattrs, i: &mut Interner| i.intern(x).0;
        let both = set(
            vec![(b"user.big".to_vec(), big.clone()), (b"user.s".to_vec(), b"1".to_vec())],
            &mut interner,
        );
        let again = set(
            vec![(b"user.big".to_vec(), big.clone()), (b"user.s".to_vec(), b"1".to_vec())],
            &mut interner,
        );
        let other = set(
            vec![(b"user.s".to_vec(), b"2".to_vec()), (b"user.big".to_vec(), big.clone())],
            &mut interner,
        );
        let alone = set(vec![(b"user.once".to_vec(), big.clone())], &mut interner);
        assert!(both.same(&again), "equal sets are interned as one");
        let area = SharedArea::build(&[&both, &again, &other, &alone], None);
        // One copy of the big entry; the entry used once stays inline.
        assert_eq!(area.bytes().len(), entry_len(b"user.big", &big));
        assert_eq!(decode_entry(area.bytes()).unwrap().0, Some((b"user.big".to_vec(), big.clone())));
        let (ids, inline) = area.split(&other);
        assert_eq!((ids, inline), (vec![0], vec![(&b"user.s"[..], &b"2"[..])]));
        let (ids, inline) = area.split(&alone);
        assert!(ids.is_empty() && inline.len() == 1);
    }
}

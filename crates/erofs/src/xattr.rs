//! Inline extended attributes: name-prefix indexes and the in-inode body.
//!
//! Every xattr is stored inline after its inode (no shared xattr area):
//! images are written once, and per-inode storage keeps fsmeta a simple
//! copy of the layers' attributes.

use std::collections::HashSet;
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

    pub fn as_slice(&self) -> &[(Vec<u8>, Vec<u8>)] {
        self.0.as_deref().map_or(&[], |x| x.as_slice())
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

/// Rebuilds the full name from an on-disk (index, suffix) pair.
pub fn join_name(index: u8, suffix: &[u8]) -> Option<Vec<u8>> {
    let prefix = PREFIXES.iter().find(|p| p.0 == index)?.1;
    let mut name = prefix.to_vec();
    name.extend_from_slice(suffix);
    Some(name)
}

fn entry_size(suffix_len: usize, value_len: usize) -> usize {
    (4 + suffix_len + value_len).next_multiple_of(4)
}

/// Size of the inline xattr body for `xattrs` (0 when empty). Callers must
/// have checked every name with [`split_name`].
pub fn body_size<N: AsRef<[u8]>, V: AsRef<[u8]>>(xattrs: &[(N, V)]) -> usize {
    if xattrs.is_empty() {
        return 0;
    }
    XATTR_HEADER_SIZE
        + xattrs
            .iter()
            .map(|(n, v)| entry_size(split_name(n.as_ref()).map_or(0, |s| s.1.len()), v.as_ref().len()))
            .sum::<usize>()
}

/// Encodes the inline body; `out.len()` must equal [`body_size`].
pub fn encode_body<N: AsRef<[u8]>, V: AsRef<[u8]>>(xattrs: &[(N, V)], out: &mut [u8]) {
    out.fill(0);
    let mut pos = XATTR_HEADER_SIZE;
    for (name, value) in xattrs {
        let (name, value) = (name.as_ref(), value.as_ref());
        let (index, suffix) = split_name(name).expect("xattr names are checked on insert");
        out[pos] = suffix.len() as u8;
        out[pos + 1] = index;
        out[pos + 2..pos + 4].copy_from_slice(&(value.len() as u16).to_le_bytes());
        out[pos + 4..pos + 4 + suffix.len()].copy_from_slice(suffix);
        let v = pos + 4 + suffix.len();
        out[v..v + value.len()].copy_from_slice(value);
        pos += entry_size(suffix.len(), value.len());
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

/// Decodes an inline body. Shared xattrs are not supported (this crate
/// never writes them); entries with unknown prefixes are skipped.
pub fn decode_body(body: &[u8]) -> Result<Xattrs, String> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    if body.len() < XATTR_HEADER_SIZE {
        return Err("xattr body shorter than its header".into());
    }
    if body[4] != 0 {
        return Err("shared xattrs are not supported".into());
    }
    let mut out = Vec::new();
    let mut pos = XATTR_HEADER_SIZE;
    while pos + 4 <= body.len() {
        let name_len = usize::from(body[pos]);
        let index = body[pos + 1];
        let value_len = usize::from(le16(body, pos + 2));
        let end = pos + 4 + name_len + value_len;
        if end > body.len() {
            return Err("xattr entry runs past the xattr body".into());
        }
        let suffix = &body[pos + 4..pos + 4 + name_len];
        if let Some(name) = join_name(index, suffix) {
            out.push((name, body[pos + 4 + name_len..end].to_vec()));
        }
        pos += entry_size(name_len, value_len);
    }
    Ok(out)
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
        let size = body_size(&x);
        let mut buf = vec![0; size];
        encode_body(&x, &mut buf);
        assert_eq!(body_size_from_icount(icount(size)), size);
        assert_eq!(decode_body(&buf).unwrap(), x);
    }
}

//! The 512-byte tar header: field offsets, numbers and checksum
//! (POSIX ustar, with the GNU and old-GNU variants).

/// Size of a tar block.
pub const BLOCK: usize = 512;

pub const NAME: (usize, usize) = (0, 100);
pub const MODE: (usize, usize) = (100, 8);
pub const UID: (usize, usize) = (108, 8);
pub const GID: (usize, usize) = (116, 8);
pub const SIZE: (usize, usize) = (124, 12);
pub const MTIME: (usize, usize) = (136, 12);
pub const CHKSUM: (usize, usize) = (148, 8);
pub const TYPEFLAG: usize = 156;
pub const LINKNAME: (usize, usize) = (157, 100);
pub const MAGIC: (usize, usize) = (257, 6);
pub const DEVMAJOR: (usize, usize) = (329, 8);
pub const DEVMINOR: (usize, usize) = (337, 8);
pub const PREFIX: (usize, usize) = (345, 155);
/// Old GNU sparse header: 4 (offset, numbytes) pairs, the extension flag
/// and the real file size.
pub const GNU_SPARSE: usize = 386;
pub const GNU_ISEXTENDED: usize = 482;
pub const GNU_REALSIZE: (usize, usize) = (483, 12);
/// Old GNU sparse extension block: 21 pairs, then the extension flag.
pub const GNU_EXT_ISEXTENDED: usize = 504;

pub fn field(h: &[u8], (off, len): (usize, usize)) -> &[u8] {
    &h[off..off + len]
}

/// A NUL-terminated string field.
pub fn string(h: &[u8], f: (usize, usize)) -> &[u8] {
    let b = field(h, f);
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// Is this the POSIX "ustar\0" magic (which has the `prefix` field)?
pub fn is_ustar(h: &[u8]) -> bool {
    field(h, MAGIC) == b"ustar\0"
}

/// Parses a numeric field: octal text (spaces/NULs around it) or GNU
/// base-256 (high bit of the first byte set; 0xff means negative).
pub fn number(b: &[u8]) -> Result<i128, String> {
    if let Some(&first) = b.first() {
        if first & 0x80 != 0 {
            let negative = first & 0x40 != 0;
            let mut v: i128 = if negative { -1 } else { 0 };
            let mut bytes = b.iter().copied();
            let first = bytes.next().unwrap_or(0) & 0x7f;
            v = (v << 8) | i128::from(if negative { first | 0x80 } else { first });
            for byte in bytes {
                if v.unsigned_abs() > (1u128 << 100) {
                    return Err("base-256 number too large".into());
                }
                v = (v << 8) | i128::from(byte);
            }
            return Ok(v);
        }
    }
    let text: &[u8] = {
        let start = b.iter().position(|&c| c != b' ' && c != 0).unwrap_or(b.len());
        let rest = &b[start..];
        let end = rest.iter().position(|&c| c == b' ' || c == 0).unwrap_or(rest.len());
        if rest[end..].iter().any(|&c| c != b' ' && c != 0) {
            return Err(format!("bad numeric field {:?}", String::from_utf8_lossy(b)));
        }
        &rest[..end]
    };
    let mut v: i128 = 0;
    for &c in text {
        if !(b'0'..=b'7').contains(&c) {
            return Err(format!("bad octal field {:?}", String::from_utf8_lossy(b)));
        }
        v = v * 8 + i128::from(c - b'0');
    }
    Ok(v)
}

/// Checks the header checksum: the sum of all bytes with the checksum
/// field read as spaces (unsigned, or signed as some old tars did).
/// Sums in `u32` (512 bytes cannot overflow it) so the loop vectorizes:
/// it runs once per tar entry, and a layer of small files is mostly headers.
pub fn checksum_ok(h: &[u8]) -> Result<bool, String> {
    let stored = number(field(h, CHKSUM))?;
    let (block, chksum) = (&h[..BLOCK], &h[CHKSUM.0..CHKSUM.0 + CHKSUM.1]);
    let sum = |bytes: &[u8]| bytes.iter().map(|&b| u32::from(b)).sum::<u32>();
    let high = |bytes: &[u8]| bytes.iter().map(|&b| u32::from(b >> 7)).sum::<u32>();
    // The field read as spaces; a signed byte of 0x80 or more counts 256 less.
    let unsigned = sum(block) - sum(chksum) + u32::from(b' ') * CHKSUM.1 as u32;
    let signed = i128::from(unsigned) - 256 * i128::from(high(block) - high(chksum));
    Ok(stored == i128::from(unsigned) || stored == signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_octal_and_base256() {
        assert_eq!(number(b"0000644\0").unwrap(), 0o644);
        assert_eq!(number(b"   755 \0").unwrap(), 0o755);
        assert_eq!(number(b"\0\0\0\0").unwrap(), 0);
        assert!(number(b"12x4\0").is_err());
        assert!(number(b"12 4\0").is_err());
        let mut b = [0u8; 12];
        b[0] = 0x80;
        b[8..].copy_from_slice(&5u32.to_be_bytes());
        assert_eq!(number(&b).unwrap(), 5);
        b[7] = 1;
        assert_eq!(number(&b).unwrap(), (1 << 32) + 5);
        let neg = [0xffu8; 12];
        assert_eq!(number(&neg).unwrap(), -1);
    }

    #[test]
    fn checksums_count_the_field_as_spaces_signed_or_unsigned() {
        // Bytes of 0x90 in and out of the checksum field (read as spaces),
        // so the signed sum is well below the unsigned one.
        let mut h = [0u8; BLOCK];
        for (i, b) in h.iter_mut().enumerate() {
            *b = if i % 50 == 0 || i == CHKSUM.0 + 3 { 0x90 } else { (i % 100) as u8 };
        }
        let spaced = |i: usize, b: u8| if (CHKSUM.0..CHKSUM.0 + CHKSUM.1).contains(&i) { b' ' } else { b };
        let unsigned: i32 = h.iter().enumerate().map(|(i, &b)| i32::from(spaced(i, b))).sum();
        let signed: i32 = h.iter().enumerate().map(|(i, &b)| i32::from(spaced(i, b) as i8)).sum();
        assert_eq!(unsigned - signed, 10 * 256);
        for (sum, ok) in [(unsigned, true), (signed, true), (unsigned + 1, false), (signed - 256, false)] {
            let mut with = h;
            with[CHKSUM.0..CHKSUM.0 + CHKSUM.1].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            assert_eq!(checksum_ok(&with).unwrap(), ok, "sum {sum}");
        }
    }
}

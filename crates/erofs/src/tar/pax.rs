//! PAX extended header records (`"%d %s=%s\n"`) and the encodings used by
//! the xattr keywords.

// Records are (keyword, value) byte pairs, the same shape as xattrs.
use crate::Xattrs;

/// Parses the records of a pax header body, in order (GNU sparse 0.0
/// repeats keys, so this keeps duplicates).
pub fn parse_records(mut body: &[u8]) -> Result<Xattrs, String> {
    let mut out = Vec::new();
    loop {
        // Trailing NUL padding ends the records.
        if body.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let space = body.iter().position(|&b| b == b' ').ok_or("pax record without length")?;
        let len: usize = std::str::from_utf8(&body[..space])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or("bad pax record length")?;
        if len <= space + 1 || len > body.len() || body[len - 1] != b'\n' {
            return Err("pax record length does not match its contents".into());
        }
        let record = &body[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or("pax record without '='")?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        body = &body[len..];
    }
}

/// Decodes standard base64 (padding optional), as LIBARCHIVE.xattr values use.
pub fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let input = input.strip_suffix(b"==").or_else(|| input.strip_suffix(b"=")).unwrap_or(input);
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Decodes `%XX` escapes (LIBARCHIVE.xattr names).
pub fn url_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Parses a pax time ("123", "123.5", "-1.25") into (seconds, nanoseconds).
pub fn parse_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nsec += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
    }
    if !neg {
        return Some((secs, nsec));
    }
    if nsec == 0 {
        Some((-secs, 0))
    } else {
        Some((-secs - 1, 1_000_000_000 - nsec))
    }
}

/// Parses a decimal pax number.
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_in_order() {
        let body = b"16 path=foo/bar\n21 SCHILY.xattr.a=\nb\n";
        let r = parse_records(body).unwrap();
        assert_eq!(r[0], (b"path".to_vec(), b"foo/bar".to_vec()));
        assert_eq!(r[1], (b"SCHILY.xattr.a".to_vec(), b"\nb".to_vec()));
        assert!(parse_records(b"99 path=x\n").is_err());
    }

    #[test]
    fn decoders() {
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode(b"AQAAAgAgAAAAAAAAAAAAAAAAAAA=").unwrap().len(), 20);
        assert_eq!(url_decode(b"user.a%3Db").unwrap(), b"user.a=b");
        assert_eq!(parse_time(b"1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_time(b"12a"), None);
    }
}

//! Sparse file maps: GNU old ('S' headers), PAX 0.0, 0.1 and 1.0.
//!
//! A map lists the data segments (offset, length) of the real file; the
//! archive stores only those bytes, one segment after the other.

use super::header::{self, field, BLOCK};

/// Data segments of a sparse entry.
pub type Segments = Vec<(u64, u64)>;

/// Parses `count` (offset, numbytes) pairs of 24 bytes starting at `at`.
/// Returns `None` for a pair, and stops, when its offset field is empty.
pub fn gnu_pairs(block: &[u8], at: usize, count: usize, out: &mut Segments) -> Result<(), String> {
    for i in 0..count {
        let off = at + i * 24;
        if block[off] == 0 {
            break;
        }
        let offset = header::number(field(block, (off, 12)))?;
        let len = header::number(field(block, (off + 12, 12)))?;
        out.push((to_u64(offset)?, to_u64(len)?));
    }
    Ok(())
}

fn to_u64(v: i128) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("sparse map value {v} out of range"))
}

/// Parses the PAX 0.1 `GNU.sparse.map` value: "off,len,off,len,...".
pub fn parse_map_01(v: &[u8]) -> Result<Segments, String> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    let nums = v
        .split(|&b| b == b',')
        .map(|n| super::pax::parse_u64(n).ok_or_else(|| "bad GNU.sparse.map number".to_string()))
        .collect::<Result<Vec<u64>, String>>()?;
    if nums.len() % 2 != 0 {
        return Err("GNU.sparse.map has an odd count of numbers".into());
    }
    Ok(nums.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Incremental parser for the PAX 1.0 map stored at the start of the data:
/// decimal numbers, one per line (count, then pairs), NUL-padded to a block.
#[derive(Default)]
pub struct Map10 {
    numbers: Vec<u64>,
    current: Option<u64>,
}

impl Map10 {
    /// Feeds one 512-byte block; returns the segments once complete.
    pub fn feed(&mut self, block: &[u8]) -> Result<Option<Segments>, String> {
        for &b in &block[..BLOCK] {
            if self.is_complete() {
                break;
            }
            match b {
                b'0'..=b'9' => {
                    let cur = self.current.unwrap_or(0);
                    let next = cur.checked_mul(10).and_then(|v| v.checked_add(u64::from(b - b'0')));
                    self.current = Some(next.ok_or("sparse map number overflows")?);
                }
                b'\n' => {
                    let n = self.current.take().ok_or("empty number in sparse map")?;
                    self.numbers.push(n);
                    if self.numbers.len() == 1 && n > (1 << 24) {
                        return Err(format!("absurd sparse map entry count {n}"));
                    }
                }
                _ => return Err("unexpected byte in sparse map".into()),
            }
        }
        if !self.is_complete() {
            return Ok(None);
        }
        Ok(Some(self.numbers[1..].chunks(2).map(|p| (p[0], p[1])).collect()))
    }

    /// How many segments the map announces (0 before its count is read).
    pub fn segments(&self) -> usize {
        self.numbers.first().map_or(0, |&n| n as usize)
    }

    fn is_complete(&self) -> bool {
        self.numbers.first().is_some_and(|&n| self.numbers.len() as u64 == 1 + 2 * n)
    }
}

/// Checks that segments are sorted, do not overlap, stay within the real
/// size and add up to the stored size; drops empty segments.
pub fn validate(mut segs: Segments, real_size: u64, stored: u64) -> Result<Segments, String> {
    segs.retain(|s| s.1 != 0 || s.0 > real_size);
    let mut end = 0u64;
    let mut total = 0u64;
    for &(off, len) in &segs {
        let seg_end = off.checked_add(len).ok_or("sparse segment overflows")?;
        if off < end {
            return Err("sparse map segments overlap or are not sorted".into());
        }
        if seg_end > real_size {
            return Err("sparse segment extends past the file size".into());
        }
        end = seg_end;
        total += len;
    }
    if total != stored {
        return Err(format!("sparse map covers {total} bytes but the entry stores {stored}"));
    }
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_10_parses_across_blocks() {
        let mut text = String::from("100\n");
        for i in 0..100u64 {
            text += &format!("{}\n{}\n", i * 1000, 10);
        }
        let mut bytes = text.into_bytes();
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        let mut m = Map10::default();
        let mut result = None;
        for (i, block) in bytes.chunks(512).enumerate() {
            result = m.feed(block).unwrap();
            assert_eq!(result.is_some(), i == bytes.len() / 512 - 1);
        }
        let segs = result.unwrap();
        assert_eq!(segs.len(), 100);
        assert_eq!(segs[99], (99_000, 10));
    }

    #[test]
    fn validation() {
        assert!(validate(vec![(0, 5), (3, 2)], 10, 7).is_err());
        assert!(validate(vec![(5, 5), (0, 2)], 10, 7).is_err());
        assert!(validate(vec![(0, 5)], 4, 5).is_err());
        assert!(validate(vec![(0, 5)], 10, 6).is_err());
        assert_eq!(validate(vec![(0, 5), (10, 0)], 10, 5).unwrap(), vec![(0, 5)]);
    }
}

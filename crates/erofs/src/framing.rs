//! Tar framing: what a layer image leaves out of its tar, so the exact
//! tar stream can be rebuilt from the image alone (same bytes, same
//! sha256, so the same OCI diff_id) after the compressed blob is gone.
//!
//! While [`crate::build_layer`] reads the tar, every byte is routed to
//! exactly one of two places, in stream order: file data the image stores
//! becomes an *image range* (where in the image file those bytes were
//! written), everything else (headers, pax/GNU extension headers and
//! bodies, padding, data of entries the builder skips, sparse maps,
//! end-of-archive blocks, trailing bytes) is kept *literally*.
//! [`write_tar`] replays the records against the image.
//!
//! # Record format (version 2)
//!
//! Raw bytes (the caller compresses them). Numbers are unsigned LEB128
//! varints.
//!
//! ```text
//! framing  = version:u8(=2) record* end
//! record   = 0x01 len bytes[len]        literal bytes, 1 <= len <= 64 KiB
//!          | 0x02 len                   `len` zero bytes, 1 <= len <= 64 KiB
//!          | 0x03 gap len               image bytes [start, start+len), len >= 1,
//!                                       start = end of the previous range (0
//!                                       at first) + gap
//!          | 0x04 back len              the same, start = end of the previous
//!                                       range - back, back >= 1 (version 2)
//! end      = 0x00 total crc:u32le       total = tar length; crc = CRC-32C of
//!                                       every framing byte before it
//! ```
//!
//! Image ranges mostly move forward (the builder writes data
//! sequentially; only a small file packed into a block reserved earlier
//! goes back, see [`crate::pack`]), and contiguous ones are merged, so a
//! plain file costs one range of a few bytes whatever its size. Version
//! 1, written before small files were packed, has no backward ranges;
//! both are read. Literal bytes are coalesced across
//! headers and padding; long zero runs inside them (header fields,
//! padding, end-of-archive blocks) become zero records. Runs are
//! capped at 64 KiB so both sides work with bounded buffers. [`write_tar`]
//! checks the whole record before it writes a byte.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};

use crate::format::crc32c_raw;
use crate::Error;

/// Format version written first; this and [`VERSION_FORWARD`] are read.
const VERSION: u8 = 2;
/// The version whose image ranges only move forward.
const VERSION_FORWARD: u8 = 1;
const TAG_END: u8 = 0x00;
const TAG_LITERAL: u8 = 0x01;
const TAG_ZEROS: u8 = 0x02;
const TAG_IMAGE: u8 = 0x03;
const TAG_IMAGE_BACK: u8 = 0x04;
/// Longest literal or zero run one record carries.
const MAX_RUN: usize = 64 << 10;
/// Encoded records are handed to the sink in pieces of about this size.
const FLUSH_AT: usize = 64 << 10;

static ZEROS: [u8; MAX_RUN] = [0; MAX_RUN];

/// Writes framing records while the tar is read. Memory is bounded: at
/// most one pending literal run and one pending image range.
pub(crate) struct Recorder<'a> {
    sink: &'a mut dyn Write,
    /// Encoded records not yet written to `sink`.
    out: Vec<u8>,
    /// CRC-32C state over every byte handed to `sink` so far.
    crc: u32,
    /// Literal bytes not yet encoded (at most [`MAX_RUN`]).
    literal: Vec<u8>,
    /// Image range not yet encoded, as (start, len), len > 0.
    range: Option<(u64, u64)>,
    /// End of the last encoded image range.
    prev_end: u64,
    /// Tar bytes recorded.
    total: u64,
}

impl<'a> Recorder<'a> {
    /// Starts a framing record on `sink`.
    pub fn new(sink: &'a mut dyn Write) -> Self {
        Recorder {
            sink,
            out: vec![VERSION],
            crc: !0,
            literal: Vec::new(),
            range: None,
            prev_end: 0,
            total: 0,
        }
    }

    /// Records tar bytes the image does not store.
    pub fn literal(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.emit_range()?;
        self.total += bytes.len() as u64;
        while !bytes.is_empty() {
            let k = (MAX_RUN - self.literal.len()).min(bytes.len());
            self.literal.extend_from_slice(&bytes[..k]);
            bytes = &bytes[k..];
            if self.literal.len() == MAX_RUN {
                self.emit_literal()?;
            }
        }
        Ok(())
    }

    /// Records `len` tar bytes the image stores at byte `offset`.
    pub fn stored(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.emit_literal()?;
        self.total += len;
        match &mut self.range {
            Some((start, n)) if *start + *n == offset => *n += len,
            _ => {
                self.emit_range()?;
                self.range = Some((offset, len));
            }
        }
        Ok(())
    }

    /// Writes the end record and flushes the sink.
    pub fn finish(mut self) -> io::Result<()> {
        self.emit_literal()?;
        self.emit_range()?;
        self.out.push(TAG_END);
        put_varint(&mut self.out, self.total);
        self.crc = crc32c_raw(self.crc, &self.out);
        let crc = !self.crc;
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.sink.write_all(&self.out)?;
        self.sink.flush()
    }

    fn emit_range(&mut self) -> io::Result<()> {
        if let Some((start, len)) = self.range.take() {
            if start >= self.prev_end {
                self.out.push(TAG_IMAGE);
                put_varint(&mut self.out, start - self.prev_end);
            } else {
                self.out.push(TAG_IMAGE_BACK);
                put_varint(&mut self.out, self.prev_end - start);
            }
            put_varint(&mut self.out, len);
            self.prev_end = start + len;
            self.maybe_flush()?;
        }
        Ok(())
    }

    /// Encodes the pending literal bytes, zero runs as zero records. The
    /// scan looks at 8-byte words, so only runs covering a whole word
    /// (every run of 15 or more zeros, some shorter ones) are found.
    fn emit_literal(&mut self) -> io::Result<()> {
        if self.literal.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.literal);
        let words = buf.len() / 8;
        let word = |w: usize| u64::from_ne_bytes(buf[w * 8..w * 8 + 8].try_into().expect("8 bytes"));
        let (mut w, mut from) = (0, 0);
        while w < words {
            if word(w) != 0 {
                w += 1;
                continue;
            }
            let mut start = w * 8;
            while start > from && buf[start - 1] == 0 {
                start -= 1;
            }
            w += 1;
            while w < words && word(w) == 0 {
                w += 1;
            }
            let mut end = w * 8;
            while end < buf.len() && buf[end] == 0 {
                end += 1;
            }
            self.put_literal(&buf[from..start]);
            self.out.push(TAG_ZEROS);
            put_varint(&mut self.out, (end - start) as u64);
            from = end;
            // The word holding buf[end] is not zero.
            w = end / 8 + 1;
        }
        self.put_literal(&buf[from..]);
        self.literal = buf;
        self.literal.clear();
        self.maybe_flush()
    }

    fn put_literal(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.out.push(TAG_LITERAL);
            put_varint(&mut self.out, bytes.len() as u64);
            self.out.extend_from_slice(bytes);
        }
    }

    fn maybe_flush(&mut self) -> io::Result<()> {
        if self.out.len() >= FLUSH_AT {
            self.crc = crc32c_raw(self.crc, &self.out);
            self.sink.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidFraming { message: message.into() }
}

/// The framing being decoded, with the CRC of what was read so far.
struct Input<'a> {
    inner: BufReader<&'a mut dyn Read>,
    crc: u32,
}

impl Input<'_> {
    fn bytes(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.crc = crc32c_raw(self.crc, buf);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(invalid("framing record is truncated")),
            Err(e) => Err(e.into()),
        }
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let mut b = [0u8];
        self.bytes(&mut b)?;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(invalid("varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid("varint is longer than 10 bytes"))
    }

    /// A literal or zero run length, within the format's bounds.
    fn run(&mut self) -> Result<usize, Error> {
        let n = self.varint()?;
        if n == 0 || n > MAX_RUN as u64 {
            return Err(invalid(format!("run of {n} bytes is out of bounds")));
        }
        Ok(n as usize)
    }
}

/// Replays `framing` against `image` into `out`; see [`crate::write_tar`].
/// The whole record is checked first (structure, ranges, checksum, length),
/// so corrupt framing writes nothing.
pub(crate) fn write_tar(image: &File, framing: &[u8], out: &mut dyn Write) -> Result<u64, Error> {
    let image_len = image.metadata()?.len();
    replay(image, image_len, framing, None)?;
    replay(image, image_len, framing, Some(out))
}

/// Bytes of the image read at once.
const CHUNK: usize = 1 << 20;

/// The first `n` bytes of `buf`, grown (zeroed) to hold them. A replay of
/// a small layer touches only what it needs: a fresh 1 MiB buffer zeroed
/// per layer cost a full check of many small layers more than reading them.
fn room(buf: &mut Vec<u8>, n: usize) -> &mut [u8] {
    if buf.len() < n {
        buf.resize(n, 0);
    }
    &mut buf[..n]
}

/// One pass over `framing`: writes the tar to `out`, or only checks the
/// record when there is none.
fn replay(image: &File, image_len: u64, mut framing: &[u8], mut out: Option<&mut dyn Write>) -> Result<u64, Error> {
    let mut input = Input {
        inner: BufReader::with_capacity(FLUSH_AT, &mut framing as &mut dyn Read),
        crc: !0,
    };
    let version = input.byte()?;
    if version != VERSION && version != VERSION_FORWARD {
        return Err(invalid(format!("unknown framing version {version}")));
    }
    let mut buf = Vec::new();
    let (mut written, mut prev_end) = (0u64, 0u64);
    loop {
        match input.byte()? {
            TAG_LITERAL => {
                let n = input.run()?;
                let run = room(&mut buf, n);
                input.bytes(run)?;
                if let Some(out) = out.as_mut() {
                    out.write_all(run)?;
                }
                written += n as u64;
            }
            TAG_ZEROS => {
                let n = input.run()?;
                if let Some(out) = out.as_mut() {
                    out.write_all(&ZEROS[..n])?;
                }
                written += n as u64;
            }
            tag @ (TAG_IMAGE | TAG_IMAGE_BACK) => {
                let gap = input.varint()?;
                let len = input.varint()?;
                let start = match tag {
                    TAG_IMAGE => prev_end.checked_add(gap),
                    _ if version == VERSION && gap > 0 => prev_end.checked_sub(gap),
                    _ => return Err(invalid("a backward image range in a version 1 framing, or one of 0 bytes back")),
                };
                let end = start.and_then(|s| s.checked_add(len));
                let (Some(mut at), Some(end)) = (start, end) else {
                    return Err(invalid("image range overflows"));
                };
                if len == 0 || end > image_len {
                    return Err(invalid(format!(
                        "image range of {len} bytes at {at} is outside the {image_len}-byte image"
                    )));
                }
                if let Some(out) = out.as_mut() {
                    let mut file = image;
                    file.seek(SeekFrom::Start(at))?;
                    while at < end {
                        let chunk = room(&mut buf, (end - at).min(CHUNK as u64) as usize);
                        file.read_exact(chunk)?;
                        out.write_all(chunk)?;
                        let k = chunk.len();
                        at += k as u64;
                    }
                }
                written += len;
                prev_end = end;
            }
            TAG_END => {
                let total = input.varint()?;
                let expected = !input.crc;
                let mut crc = [0u8; 4];
                input.bytes(&mut crc)?;
                if u32::from_le_bytes(crc) != expected {
                    return Err(invalid("framing checksum mismatch"));
                }
                if total != written {
                    return Err(invalid(format!("framing describes {total} bytes but its records hold {written}")));
                }
                if input.inner.read(&mut [0u8])? != 0 {
                    return Err(invalid("bytes after the end record"));
                }
                if let Some(out) = out.as_mut() {
                    out.flush()?;
                }
                return Ok(written);
            }
            tag => return Err(invalid(format!("unknown record tag {tag:#04x}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(f: impl FnOnce(&mut Recorder<'_>) -> io::Result<()>) -> Vec<u8> {
        let mut sink = Vec::new();
        let mut r = Recorder::new(&mut sink);
        f(&mut r).unwrap();
        r.finish().unwrap();
        sink
    }

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut slice: &[u8] = &b;
            let mut input = Input {
                inner: BufReader::new(&mut slice as &mut dyn Read),
                crc: !0,
            };
            assert_eq!(input.varint().unwrap(), v);
        }
        let mut over: &[u8] = &[0xff; 10];
        let mut input = Input {
            inner: BufReader::new(&mut over as &mut dyn Read),
            crc: !0,
        };
        assert!(matches!(input.varint(), Err(Error::InvalidFraming { .. })));
    }

    #[test]
    fn runs_merge_and_zeros_compact() {
        let f = record(|r| {
            r.literal(b"head")?;
            r.literal(&[0; 100])?;
            r.literal(b"x\0\0y")?;
            r.stored(4096, 10)?;
            r.stored(4106, 20)?;
            r.stored(8192, 5)?;
            r.literal(&[0; 1024])
        });
        let mut expected = vec![VERSION, TAG_LITERAL, 4, b'h', b'e', b'a', b'd', TAG_ZEROS, 100];
        expected.extend([TAG_LITERAL, 4, b'x', 0, 0, b'y']);
        expected.extend([TAG_IMAGE, 0x80, 0x20, 30, TAG_IMAGE, 0xe2, 0x1f, 5]);
        expected.extend([TAG_ZEROS, 0x80, 0x08, TAG_END]);
        put_varint(&mut expected, 4 + 100 + 4 + 35 + 1024);
        assert_eq!(&f[..f.len() - 4], &expected[..]);
    }

    #[test]
    fn long_literals_split_at_the_run_limit() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8 | 1).collect();
        let f = record(|r| r.literal(&data));
        let mut out = Vec::new();
        let image = tempfile::tempfile().unwrap();
        assert_eq!(write_tar(&image, &f, &mut out).unwrap(), data.len() as u64);
        assert_eq!(out, data);
    }
}

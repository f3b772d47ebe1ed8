//! Buffered writes at offsets that only move forward, which is how the
//! image writer emits the metadata area (records in nid order, blocks in
//! block order, each through its own [`Sequential`]) and the layer
//! builder streams file data, going back only to fill in a block it
//! reserved ([`Sequential::patch`]).

use std::fs::File;

/// Writes at least this long skip the buffer.
const DIRECT: usize = 64 << 10;

/// Buffered writes to `file` at offsets that only move forward; the
/// gaps between them are written as zeros, so the area is fully written
/// whatever the file held.
pub struct Sequential<'a> {
    file: &'a File,
    /// File offset of `buf[0]`.
    pos: u64,
    buf: Vec<u8>,
}

impl<'a> Sequential<'a> {
    /// Writes to `file` from offset `pos` on.
    pub fn new(file: &'a File, pos: u64) -> Self {
        Sequential {
            file,
            pos,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` at `at`, zero-filling from the previous write. A
    /// large run (file data handed over from the tar reader's buffer) is
    /// written from where it lies, not copied into the buffer first.
    pub fn write_at(&mut self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.zeros_to(at)?;
        if bytes.len() >= DIRECT {
            self.flush()?;
            write_all_at(self.file, bytes, self.pos)?;
            self.pos += bytes.len() as u64;
            return Ok(());
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    /// Overwrites `bytes` at `at`, within what was already written: in
    /// the buffer while it is there, on the file once it is not.
    pub fn patch(&mut self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        debug_assert!(
            at + bytes.len() as u64 <= self.pos + self.buf.len() as u64,
            "patches only what was written"
        );
        let on_file = (self.pos.saturating_sub(at) as usize).min(bytes.len());
        if on_file > 0 {
            write_all_at(self.file, &bytes[..on_file], at)?;
        }
        let rest = &bytes[on_file..];
        if !rest.is_empty() {
            let s = (at + on_file as u64 - self.pos) as usize;
            self.buf[s..s + rest.len()].copy_from_slice(rest);
        }
        Ok(())
    }

    /// Zero-fills up to `at`, which must not be behind what was written.
    fn zeros_to(&mut self, at: u64) -> std::io::Result<()> {
        let end = self.pos + self.buf.len() as u64;
        debug_assert!(at >= end, "writes only move forward");
        let mut gap = at - end;
        while gap > 0 {
            let k = gap.min(1 << 20);
            self.buf.resize(self.buf.len() + k as usize, 0);
            gap -= k;
            if self.buf.len() >= 1 << 20 {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        write_all_at(self.file, &self.buf, self.pos)?;
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Zero-fills up to `end` and writes everything out.
    pub fn finish(mut self, end: u64) -> std::io::Result<()> {
        self.zeros_to(end)?;
        self.flush()
    }
}

/// Fills `buf` from `pos` without using the file's cursor.
#[cfg(unix)]
pub fn read_exact_at(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, pos)
}

/// Fills `buf` from `pos` (moving the cursor, as [`write_all_at`] does).
#[cfg(windows)]
pub fn read_exact_at(file: &File, mut buf: &mut [u8], mut pos: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, pos)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                let rest = buf;
                buf = &mut rest[n..];
                pos += n as u64;
            }
        }
    }
    Ok(())
}

/// Writes all of `buf` at `pos` without using the file's cursor.
#[cfg(unix)]
pub fn write_all_at(file: &File, buf: &[u8], pos: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, pos)
}

/// Writes all of `buf` at `pos`. Windows has no positioned write that
/// leaves the cursor alone (`seek_write` moves it), which is harmless
/// here: every other writer of the image seeks before it writes.
#[cfg(windows)]
pub fn write_all_at(file: &File, mut buf: &[u8], mut pos: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, pos)? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => {
                buf = &buf[n..];
                pos += n as u64;
            }
        }
    }
    Ok(())
}

//! The tar byte stream under the entry parser: every byte read is handed
//! to the framing [`Recorder`], literally by [`Input::fill`] or as the
//! image range the caller stores it at by [`Input::copy_data`], and the
//! stream position and the current entry's unread data are tracked here.

use std::io::{self, BufRead};

use super::header::BLOCK;
use super::invalid;
use crate::framing::Recorder;
use crate::limits::EXTENSION_HEADER_MAX;
use crate::Error;

/// The stream and the framing record of everything read from it.
pub struct Input<'f, R> {
    inner: R,
    /// Bytes read so far.
    pub pos: u64,
    /// Unread data bytes of the current entry.
    pub remaining: u64,
    /// Padding after the current entry's data, up to the next header.
    pub padding: u64,
    framing: Recorder<'f>,
}

impl<'f, R: BufRead> Input<'f, R> {
    /// Reads `inner` from its start, recording into `framing`.
    pub fn new(inner: R, framing: Recorder<'f>) -> Self {
        Input {
            inner,
            pos: 0,
            remaining: 0,
            padding: 0,
            framing,
        }
    }

    /// Reads as much of `buf` as the stream has, framed literally; returns
    /// the count.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
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
        self.framing.literal(&buf[..n])?;
        Ok(n)
    }

    /// Fills `buf` (framed literally); a short stream is a truncated archive.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        if self.fill(buf)? < buf.len() {
            return Err(invalid(self.pos, "archive is truncated"));
        }
        Ok(())
    }

    /// Reads and drops `n` bytes (still framed: the tar must be rebuilt).
    pub fn skip(&mut self, mut n: u64) -> Result<(), Error> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.read_exact(&mut buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Starts an entry whose data is `size` bytes (padded to a block).
    pub fn begin_data(&mut self, size: u64) {
        self.remaining = size;
        self.padding = size.next_multiple_of(BLOCK as u64) - size;
    }

    /// Skips what is left of the current entry and reads the next header
    /// block. `None` at the end of the archive: a clean end of stream, or
    /// a zero block. `pending` says extension headers were read for the
    /// entry to come, which then must come.
    pub fn next_header(&mut self, pending: bool) -> Result<Option<(u64, [u8; BLOCK])>, Error> {
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let here = self.pos;
        let mut h = [0u8; BLOCK];
        let n = self.fill(&mut h)?;
        if n == 0 && !pending {
            return Ok(None);
        }
        if n < BLOCK {
            return Err(invalid(self.pos, "archive is truncated inside a header"));
        }
        if h.iter().all(|&b| b == 0) {
            if pending {
                return Err(invalid(here, "archive ends after an extension header"));
            }
            return Ok(None);
        }
        Ok(Some((here, h)))
    }

    /// Reads the current entry's data, which the caller stores at image
    /// byte `stored_at` (and that is what the framing records); returns 0
    /// at its end.
    pub fn read_data(&mut self, buf: &mut [u8], stored_at: u64) -> Result<usize, Error> {
        let mut at = 0;
        let n = self.copy_data(buf.len() as u64, stored_at, |bytes| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
            Ok(())
        })?;
        Ok(n as usize)
    }

    /// Hands up to `n` bytes of the current entry's data to `sink` as
    /// they lie in the reader's buffer (no copy on the way), framed as
    /// stored from image byte `stored_at`; returns how many. Short only
    /// at the entry's end; a stream that ends first is a truncated archive.
    pub fn copy_data(&mut self, n: u64, stored_at: u64, mut sink: impl FnMut(&[u8]) -> io::Result<()>) -> Result<u64, Error> {
        let n = n.min(self.remaining);
        let mut done = 0;
        while done < n {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if buf.is_empty() {
                return Err(invalid(self.pos, "archive is truncated"));
            }
            let k = buf.len().min((n - done) as usize);
            sink(&buf[..k])?;
            self.inner.consume(k);
            self.framing.stored(stored_at + done, k as u64)?;
            self.pos += k as u64;
            done += k as u64;
        }
        self.remaining -= n;
        Ok(n)
    }

    /// Reads a whole extension header body (a pax header or GNU long
    /// name), refused beyond [`EXTENSION_HEADER_MAX`] before it is read.
    pub fn read_body(&mut self, size: u64, offset: u64) -> Result<Vec<u8>, Error> {
        if size > EXTENSION_HEADER_MAX {
            return Err(Error::TooLarge {
                message: format!("extension header of {size} bytes at byte {offset} (at most {EXTENSION_HEADER_MAX})"),
            });
        }
        let mut body = vec![0u8; size as usize];
        self.read_exact(&mut body)?;
        self.skip(size.next_multiple_of(BLOCK as u64) - size)?;
        Ok(body)
    }

    /// Reads everything left in the stream (end-of-archive blocks and any
    /// trailing bytes), so a hashing wrapper sees the whole input and the
    /// framing holds it, then ends the framing record.
    pub fn finish(mut self) -> Result<(), Error> {
        let mut buf = vec![0u8; 64 << 10];
        while self.fill(&mut buf)? > 0 {}
        self.framing.finish()?;
        Ok(())
    }
}

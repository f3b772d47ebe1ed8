//! Content digests and the readers that verify them while data streams past,
//! so nothing is trusted before its bytes have been hashed.

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

const SHA256_PREFIX: &str = "sha256:";

/// A `sha256:<64 lowercase hex>` content digest; the only algorithm OCI
/// images use in practice, and the only one this cache verifies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Validates `s`; other algorithms are refused rather than trusted unverified.
    pub fn parse(s: &str) -> Result<Digest, String> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(format!("invalid digest {s:?}: missing algorithm"));
        };
        if algorithm != "sha256" {
            return Err(format!("unsupported digest algorithm {algorithm:?} in {s:?}"));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("invalid sha256 digest {s:?}"));
        }
        Ok(Digest(s.to_string()))
    }

    /// The digest of a finished hash.
    pub fn from_sha256(hasher: Sha256) -> Digest {
        Digest(format!("{SHA256_PREFIX}{}", hex(&hasher.finalize())))
    }

    /// The digest of an in-memory blob (manifests, configs).
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::new_with_prefix(bytes))
    }

    /// The 64 hex characters, used as file names in the store.
    pub fn hex(&self) -> &str {
        &self.0[SHA256_PREFIX.len()..]
    }

    /// The full `sha256:<hex>` spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Hashes and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`; nothing is hashed until it is read.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads whatever the consumer left unread, so the digest covers the whole stream.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(drop)
    }

    /// The digest and length of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_sha256(self.hasher), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hashes and counts every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and length of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest::from_sha256(self.hasher), self.count, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Content that did not hash (or measure) to what its descriptor promised:
/// the one failure every source shares, typed so each can report it as
/// its own error kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What was checked, e.g. `layer blob sha256:…`.
    pub what: String,
    /// The digest (and size) promised.
    pub expected: String,
    /// What the bytes measured.
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "digest mismatch for {}: expected {}, got {}",
            self.what, self.expected, self.actual
        )
    }
}

impl std::error::Error for Mismatch {}

/// Fails unless the measured digest and size are the expected ones.
pub fn verify(what: &str, expected: &Digest, expected_size: Option<u64>, actual: &Digest, actual_size: u64) -> Result<(), Mismatch> {
    if let Some(size) = expected_size {
        if size != actual_size {
            return Err(Mismatch {
                what: what.to_string(),
                expected: format!("{expected} ({size} bytes)"),
                actual: format!("{actual_size} bytes"),
            });
        }
    }
    if expected != actual {
        return Err(Mismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Why [`read_verified`] gave up.
#[derive(Debug)]
pub enum ReadError {
    /// The descriptor announces more than the caller allows: nothing was read.
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Reading failed.
    Io(io::Error),
    /// The bytes are not what the descriptor promised.
    Mismatch(Mismatch),
}

/// Reads a small blob (manifest, config) whole from `reader`, refusing one
/// whose descriptor announces more than `limit` bytes before reading
/// anything, and never holding more than `limit + 1` bytes in memory
/// whatever the reader yields, then verifies digest and size.
pub fn read_verified(reader: impl Read, expected: &Digest, size: u64, limit: u64, what: &str) -> Result<Vec<u8>, ReadError> {
    if size > limit {
        return Err(ReadError::TooLarge { limit });
    }
    let mut reader = HashingReader::new(reader.take(limit + 1));
    let mut bytes = Vec::with_capacity(size as usize);
    reader.read_to_end(&mut bytes).map_err(ReadError::Io)?;
    let (actual, actual_size) = reader.finish();
    verify(what, expected, Some(size), &actual, actual_size).map_err(ReadError::Mismatch)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hashes() {
        let d = Digest::of(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855").is_err());
        assert!(Digest::parse("sha512:00").is_err());
        assert!(Digest::parse("e3b0").is_err());
    }

    #[test]
    fn hashing_reader_covers_drained_bytes() {
        let mut r = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        r.drain().unwrap();
        let (d, n) = r.finish();
        assert_eq!(n, 11);
        assert_eq!(d, Digest::of(b"hello world"));
    }

    #[test]
    fn verify_reports_size_and_digest() {
        let d = Digest::of(b"x");
        assert!(verify("blob", &d, Some(1), &d, 1).is_ok());
        assert!(verify("blob", &d, Some(2), &d, 1).is_err());
        let mismatch = verify("blob", &d, None, &Digest::of(b"y"), 1).unwrap_err();
        assert_eq!(mismatch.expected, d.to_string());
    }
}

//! The blob files a schema 1 cache kept under `blobs/sha256/<hex>`: the
//! source the upgrade converts layers from one last time. A missing or
//! unreadable blob is the source's fault here, not the cache's, so it
//! reads as an archive error (and the upgrade skips that layer).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use oci::{digest, Descriptor, Digest};

use super::BlobSource;
use crate::error::{Error, Result};

/// The `blobs/sha256` directory of a schema 1 cache.
pub struct LegacyBlobs(pub PathBuf);

impl LegacyBlobs {
    fn path(&self, digest: &Digest) -> PathBuf {
        self.0.join(digest.hex())
    }

    /// A document's bytes, if its file is there and matches its digest.
    pub fn verified(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.path(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::cache(&path)(e)),
        };
        let verified = digest::verify("legacy blob", digest, None, &Digest::of(&bytes), bytes.len() as u64);
        Ok(verified.ok().map(|()| bytes))
    }
}

impl BlobSource for LegacyBlobs {
    fn open(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let path = self.path(&blob.digest);
        let file = File::open(&path).map_err(|e| self.read_error(blob, e))?;
        Ok(Box::new(file))
    }

    fn read_error(&self, blob: &Descriptor, error: io::Error) -> Error {
        Error::archive(self.path(&blob.digest), format!("legacy blob {}: {error}", blob.digest))
    }
}

//! Where an image's blobs come from while it is ingested: an archive, a
//! registry, or the cache's own blob store (to rebuild a lost artifact).

use std::fs::File;
use std::io::{self, Read};

use crate::digest::{self, HashingReader};
use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use crate::store::Store;

/// A place blobs can be read from. Readers return the blob as stored;
/// callers verify digest and size while reading, so sources need not.
pub trait BlobSource: Sync {
    /// Opens the blob `blob` describes.
    fn open(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>>;

    /// Turns a failure while reading `blob` into the source's own error.
    fn read_error(&self, blob: &Descriptor, error: io::Error) -> Error;
}

/// Reads a small blob (manifest, config) whole, refusing anything over
/// `limit` bytes, and verifies its digest and size.
pub fn read_small(source: &dyn BlobSource, blob: &Descriptor, limit: u64, what: &str) -> Result<Vec<u8>> {
    if blob.size > limit {
        let message = format!("{what} {} is {} bytes, more than the {limit} allowed", blob.digest, blob.size);
        return Err(source.read_error(blob, io::Error::new(io::ErrorKind::InvalidData, message)));
    }
    let mut reader = HashingReader::new(source.open(blob)?.take(limit + 1));
    let mut bytes = Vec::with_capacity(blob.size as usize);
    reader.read_to_end(&mut bytes).map_err(|e| source.read_error(blob, e))?;
    let (actual, size) = reader.finish();
    digest::verify(&format!("{what} {}", blob.digest), &blob.digest, Some(blob.size), &actual, size)?;
    Ok(bytes)
}

/// The cache's own blobs: lets a lost layer image be rebuilt without
/// touching the network or the archive it came from.
pub struct StoreBlobs<'a>(pub &'a Store);

impl BlobSource for StoreBlobs<'_> {
    fn open(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let path = self.0.blob_path(&blob.digest);
        Ok(Box::new(File::open(&path).map_err(Error::cache(&path))?))
    }

    fn read_error(&self, blob: &Descriptor, error: io::Error) -> Error {
        Error::cache(self.0.blob_path(&blob.digest))(error)
    }
}

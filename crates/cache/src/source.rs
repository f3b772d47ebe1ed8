//! Where an image's blobs come from while it is ingested: an archive or a
//! registry.

use std::io::{self, Read};

use crate::digest::{self, HashingReader};
use crate::error::{Error, Result};
use crate::manifest::Descriptor;

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

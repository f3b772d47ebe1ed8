//! Where images come from: archives ([`archive`]), registries ([`pull`],
//! through the `registry` crate's client), and the blob files a schema 1
//! cache kept ([`legacy`]). Each resolves images into verified manifests
//! and configs and serves their layer blobs as a [`BlobSource`]; the
//! stream stage verifies every blob it reads.

pub mod archive;
pub mod legacy;
pub(crate) mod meter;
pub mod pull;
mod registry;

use std::io::{self, Read};

use oci::digest::{self, ReadError};
use oci::Descriptor;

use crate::error::{Error, Result};

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
    let too_large = || {
        let message = format!("{what} {} is {} bytes, more than the {limit} allowed", blob.digest, blob.size);
        source.read_error(blob, io::Error::new(io::ErrorKind::InvalidData, message))
    };
    if blob.size > limit {
        return Err(too_large());
    }
    let reader = source.open(blob)?;
    digest::read_verified(reader, &blob.digest, blob.size, limit, &format!("{what} {}", blob.digest)).map_err(|e| match e {
        ReadError::TooLarge { .. } => too_large(),
        ReadError::Io(e) => source.read_error(blob, e),
        ReadError::Mismatch(m) => m.into(),
    })
}

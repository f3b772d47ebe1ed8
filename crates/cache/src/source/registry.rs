//! A registry client as a blob source: its blob streams, and its typed
//! read errors turned into the engine's.

use std::io::{self, Read};

use oci::Descriptor;
use registry::Client;

use super::BlobSource;
use crate::error::{Error, Result};

impl BlobSource for Client {
    fn open(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.open_blob(blob)?))
    }

    fn read_error(&self, blob: &Descriptor, error: io::Error) -> Error {
        Client::read_error(self, blob, error).into()
    }
}

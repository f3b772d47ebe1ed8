//! `save`: gathers what the archive writer needs from the index (each
//! image's config and every layer's framing), under a lease so nothing is
//! collected while the layers are rebuilt, and hands it to
//! [`crate::export`].

use std::path::Path;

use oci::digest;
use oci::{Descriptor, Digest, Reference};

use super::{missing_layer, parse_reference, Cache};
use crate::error::{Error, Result};
use crate::export::{self, Format, SaveImage};
use crate::index::read;
use crate::ingest::Lease;

impl Cache {
    /// Writes the images `references` name to an archive at `output`.
    pub fn save(&self, references: &[String], output: &Path, format: Format) -> Result<()> {
        if references.is_empty() {
            return Err(Error::InvalidArgument("save needs at least one reference".into()));
        }
        let _lease = Lease::take(&self.store, &self.index)?;
        let mut images: Vec<SaveImage> = Vec::new();
        for asked in references {
            let reference = parse_reference(asked)?;
            let manifest = self.find(&reference, asked)?.manifest_digest;
            match images.iter_mut().find(|i| i.manifest == manifest) {
                Some(image) => image.references.push(reference),
                None => images.push(self.save_image(reference, manifest)?),
            }
        }
        export::save(&self.store, &images, output, format)
    }

    /// One image's config (verified against its digest) and layer framing.
    fn save_image(&self, reference: Reference, manifest: Digest) -> Result<SaveImage> {
        self.index.read(|conn| {
            let config = read::config_of(conn, &manifest)?.ok_or_else(|| Error::Internal(format!("{manifest} has no config")))?;
            let media_type = read::document(conn, &config.digest)?.and_then(|d| d.media_type);
            let config_bytes = read::document_content(conn, &config.digest)?.unwrap_or_default();
            let what = format!("config {} in the cache index", config.digest);
            digest::verify(&what, &config.digest, None, &Digest::of(&config_bytes), config_bytes.len() as u64)?;
            let layers = read::layers_of(conn, &manifest)?
                .into_iter()
                .map(|l| match read::layer_framing(conn, &l.diff_id)? {
                    Some(framing) => Ok((l.diff_id, framing)),
                    None => Err(missing_layer(&self.store, &l.diff_id, &reference)),
                })
                .collect::<Result<_>>()?;
            Ok(SaveImage {
                references: vec![reference.clone()],
                config: Descriptor {
                    media_type: media_type.unwrap_or_default(),
                    digest: config.digest,
                    size: config_bytes.len() as u64,
                },
                config_bytes,
                manifest,
                layers,
            })
        })
    }
}

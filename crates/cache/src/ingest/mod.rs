//! Adding images to the cache, whatever their source: under a [`Lease`],
//! layers first (each image published only once verified, with its row),
//! then the root disk, then one index transaction for the images'
//! manifests, configs and references. If anything fails, no image is
//! recorded and the lease takes back the layers this ingest converted.

mod lease;

use oci::manifest::{Config, Manifest};
use oci::progress::{Progress, Sink};
use oci::{Descriptor, Digest, Reference};

pub use lease::Lease;

use crate::disk;
use crate::error::{Error, Result};
use crate::index::write::{self, BlobRecord, ImageRecord, LayerRecord};
use crate::index::{now_ms, read, Index};
use crate::model::ImageSummary;
use crate::parallel;
use crate::seal::Sealing;
use crate::source::BlobSource;
use crate::store::Store;
use crate::stream::convert;

/// Layers converted at once.
const PARALLEL_LAYERS: usize = 3;

/// An image a source has resolved: manifest and config read and verified,
/// layers not yet touched.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The names to give it in the cache.
    pub references: Vec<Reference>,
    /// Digest of `manifest_bytes`.
    pub manifest_digest: Digest,
    /// The manifest exactly as distributed.
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The config exactly as distributed.
    pub config_bytes: Vec<u8>,
    /// The parsed config.
    pub config: Config,
}

/// Points `reference` at `manifest` if the cache holds it (a pull of a tag
/// whose manifest is cached downloads nothing else) and returns what it now
/// names; none if the manifest is not there. Runs under the caller's
/// lease, and reads the answer in the same transaction: a collection
/// that starts once the lease is gone cannot take it away first.
pub fn add_reference(index: &Index, reference: &Reference, manifest: &Digest) -> Result<Option<ImageSummary>> {
    index.write(|tx| match write::add_reference(tx, reference, manifest, now_ms())? {
        true => read::find(tx, reference),
        false => Ok(None),
    })
}

/// Whether every layer `diff_ids` names is in the cache: recorded with its
/// framing, and its image on disk.
pub fn layers_present<'a>(store: &Store, index: &Index, diff_ids: impl IntoIterator<Item = &'a Digest>) -> Result<bool> {
    for diff_id in diff_ids {
        if index.read(|conn| read::layer(conn, diff_id))?.is_none() || !store.layer_path(diff_id).exists() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Brings `image`'s layers and root disk into the cache under `lease`,
/// reading from `source` only what the cache lacks. Returns what
/// [`record`] then writes to the index.
pub fn ingest(lease: &Lease<'_>, image: &ResolvedImage, source: &dyn BlobSource, progress: &Sink) -> Result<ImageRecord> {
    let store = lease.store();
    let manifest = BlobRecord {
        digest: image.manifest_digest.clone(),
        media_type: Some(image.manifest.media_type.clone()),
        content: image.manifest_bytes.clone(),
    };
    let config = BlobRecord {
        digest: image.manifest.config.digest.clone(),
        media_type: Some(image.manifest.config.media_type.clone()),
        content: image.config_bytes.clone(),
    };
    let (layers, sealings): (Vec<_>, Vec<_>) = materialize_layers(lease, image, source, progress)?.into_iter().unzip();
    // The seals of the layers just converted are taken while the root
    // disk is built; both only read the published layer images.
    let disk = disk::ensure(lease, &image.manifest_digest, &image.config.diff_ids);
    Sealing::record_all(sealings.into_iter().flatten().collect(), lease.index())?;
    let (sizes, fsmeta_seal) = disk?;
    progress(Progress::Disk {
        fsmeta: store.fsmeta_path(&image.manifest_digest),
        vmdk: store.vmdk_path(&image.manifest_digest),
    });
    Ok(ImageRecord {
        manifest,
        config,
        config_details: image.config.details.clone(),
        architecture: Some(image.config.platform.architecture.clone()),
        os: Some(image.config.platform.os.clone()),
        variant: image.config.platform.variant.clone(),
        layers,
        fsmeta_size: sizes.fsmeta,
        vmdk_size: sizes.vmdk,
        disk_seals: crate::seal::disk(store, &image.manifest_digest, fsmeta_seal)?,
        references: image.references.clone(),
    })
}

/// Records ingested images in one transaction, committing the lease (an
/// archive's images enter the index together or not at all), and returns
/// what their references now name, read in that same transaction: once
/// the lease is gone a collection may delete unrooted references, and the
/// caller is owed the images it brought in.
pub fn record(lease: Lease<'_>, images: &[ImageRecord]) -> Result<Vec<ImageSummary>> {
    lease.commit(|tx| {
        let now = now_ms();
        images.iter().try_for_each(|image| write::record_image(tx, image, now))?;
        images
            .iter()
            .flat_map(|image| &image.references)
            .map(|r| read::find(tx, r)?.ok_or_else(|| Error::Internal(format!("{r} vanished inside its own transaction"))))
            .collect()
    })
}

/// Converts the image's layers, a few at a time: downloads overlap, and each
/// conversion keeps two threads busy (decompression, EROFS).
fn materialize_layers(
    lease: &Lease<'_>,
    image: &ResolvedImage,
    source: &dyn BlobSource,
    progress: &Sink,
) -> Result<Vec<(LayerRecord, Option<Sealing>)>> {
    let jobs: Vec<(&Descriptor, &Digest)> = image.manifest.layers.iter().zip(&image.config.diff_ids).collect();
    parallel::map(&jobs, PARALLEL_LAYERS, |(blob, diff_id)| {
        convert::materialize(lease, source, blob, diff_id, progress)
    })
}

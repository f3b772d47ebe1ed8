//! Adding images to the cache, whatever their source: layers first (each
//! image published only once verified, with its row), then the root disk,
//! then one index transaction for the images' manifests, configs and
//! references. If anything fails, no image is recorded and the layers this
//! ingest converted are taken back.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::disk;
use crate::error::Result;
use crate::gc;
use crate::index::write::{self, BlobRecord, ImageRecord, LayerRecord};
use crate::index::{now_ms, read, Index};
use crate::layer;
use crate::manifest::{Config, Descriptor, Manifest};
use crate::parallel;
use crate::reference::Reference;
use crate::source::BlobSource;
use crate::store::{Artifact, Store};

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

/// Milestones of an ingest, for progress reporting.
#[derive(Debug, Clone, PartialEq)]
pub enum Milestone {
    /// A layer is verified (blob digest and size, diff_id) and its EROFS
    /// image is in the store.
    LayerReady {
        /// The blob's digest.
        digest: Digest,
        /// The layer's diff_id.
        diff_id: Digest,
    },
    /// fsmeta and the VMDK are written.
    DiskReady {
        /// The fsmeta image.
        fsmeta: PathBuf,
        /// The VMDK descriptor.
        vmdk: PathBuf,
    },
}

/// Receives milestones; called from ingest threads.
pub type Observer<'a> = &'a (dyn Fn(Milestone) + Sync);

/// Runs `work` under the ingest lease (the collector waits, so nothing the
/// work publishes or relies on is swept meanwhile). If it fails, the files
/// it published are taken back, after the lease is released: taking back
/// waits for the collector lock, which the lease would block.
pub fn leased<T>(store: &Store, index: &Index, work: impl FnOnce(&mut Vec<Artifact>) -> Result<T>) -> Result<T> {
    let mut published = Vec::new();
    let result = {
        let _lease = store.lock_ingest()?;
        work(&mut published)
    };
    if result.is_err() && !published.is_empty() {
        // Best effort: the original error is what the caller needs to see.
        let _ = gc::discard_unrecorded(store, index, &published);
    }
    result
}

/// Points `reference` at `manifest` if the cache holds it (a pull of a tag
/// whose manifest is cached downloads nothing else); false if it does not.
/// Runs under the caller's lease.
pub fn add_reference(index: &Index, reference: &Reference, manifest: &Digest) -> Result<bool> {
    index.write(|tx| write::add_reference(tx, &reference.to_string(), &reference.repository(), manifest.as_str(), now_ms()))
}

/// Whether every layer `diff_ids` names is in the cache: recorded with its
/// framing, and its image on disk.
pub fn layers_present(store: &Store, index: &Index, diff_ids: &[String]) -> Result<bool> {
    for diff_id in diff_ids {
        let Ok(digest) = Digest::parse(diff_id) else { return Ok(false) };
        if index.read(|conn| read::layer(conn, diff_id))?.is_none() || !store.layer_path(&digest).exists() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Brings `image`'s layers and root disk into the cache, reading from
/// `source` only what the cache lacks, under the caller's lease; files it
/// publishes go to `published`. Returns what [`record`] then writes to the index.
pub fn ingest(
    store: &Store,
    index: &Index,
    image: &ResolvedImage,
    source: &dyn BlobSource,
    observe: Observer<'_>,
    published: &mut Vec<Artifact>,
) -> Result<ImageRecord> {
    let manifest = BlobRecord {
        digest: image.manifest_digest.to_string(),
        media_type: Some(image.manifest.media_type.clone()),
        content: image.manifest_bytes.clone(),
    };
    let config = BlobRecord {
        digest: image.manifest.config.digest.to_string(),
        media_type: Some(image.manifest.config.media_type.clone()),
        content: image.config_bytes.clone(),
    };
    let layers = materialize_layers(store, index, image, source, observe, published)?;
    let sizes = disk::ensure(store, &image.manifest_digest, &image.config.diff_ids, published)?;
    observe(Milestone::DiskReady {
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
        references: image.references.iter().map(|r| (r.to_string(), r.repository())).collect(),
    })
}

/// Records ingested images in one transaction: an archive's images enter
/// the index together or not at all.
pub fn record(store: &Store, index: &Index, images: &[ImageRecord]) -> Result<()> {
    // Renames must be durable before a row points at their result.
    store.sync_artifact_dirs()?;
    index.write(|tx| images.iter().try_for_each(|image| write::record_image(tx, image, now_ms())))
}

/// Converts the image's layers, a few at a time: downloads overlap, and each
/// conversion keeps two threads busy (decompression, EROFS).
fn materialize_layers(
    store: &Store,
    index: &Index,
    image: &ResolvedImage,
    source: &dyn BlobSource,
    observe: Observer<'_>,
    published: &mut Vec<Artifact>,
) -> Result<Vec<LayerRecord>> {
    let jobs: Vec<_> = image.manifest.layers.iter().zip(&image.config.diff_ids).collect();
    let convert = |(blob, diff_id): &(&Descriptor, &Digest), mine: &mut Vec<Artifact>| {
        let record = layer::materialize(store, index, source, blob, diff_id, mine)?;
        observe(Milestone::LayerReady {
            digest: blob.digest.clone(),
            diff_id: (*diff_id).clone(),
        });
        Ok(record)
    };
    parallel::map(&jobs, PARALLEL_LAYERS, convert, published)
}

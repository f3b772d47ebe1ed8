//! What the engine answers with: plain data, no handles into the store, so
//! a binding can convert it without knowing how the cache is laid out.

use std::path::PathBuf;

use oci::{Digest, Reference};

pub use oci::manifest::ConfigDetails;

/// One cached image reference and the image it names.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSummary {
    /// The normalized reference, e.g. `docker.io/library/python:3.12`.
    pub reference: Reference,
    /// The manifest the reference resolves to.
    pub manifest_digest: Digest,
    /// On-disk bytes of every artifact of the image in this cache (blobs,
    /// layer EROFS images, fsmeta, VMDK); shared layers are counted in full.
    pub size_bytes: Option<u64>,
    /// From the image config.
    pub architecture: Option<String>,
    /// From the image config.
    pub os: Option<String>,
    /// Number of layers in the manifest.
    pub layer_count: u32,
    /// When a sandbox last started using this image (ms since epoch).
    pub last_used_at: Option<i64>,
    /// When this reference first entered the cache (ms since epoch).
    pub created_at: Option<i64>,
}

/// One layer of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerDetails {
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Digest of the blob as distributed.
    pub blob_digest: Digest,
    /// Media type of the blob.
    pub media_type: Option<String>,
    /// Size of the blob as distributed.
    pub compressed_size: Option<u64>,
    /// Size of the layer's EROFS image in this cache.
    pub erofs_size: Option<u64>,
    /// 0 is the bottom layer.
    pub position: u32,
}

/// Everything `inspect` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDetails {
    /// The same summary `get` returns.
    pub summary: ImageSummary,
    /// The parsed config (always present for images this engine stored).
    pub config: Option<ConfigDetails>,
    /// Bottom to top.
    pub layers: Vec<LayerDetails>,
}

/// What `prune` (or a forced `remove`) deleted; every counter is exact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneReport {
    /// Image references deleted from the index.
    pub image_refs_removed: u64,
    /// Manifests deleted from the index.
    pub manifests_removed: u64,
    /// Layer records deleted from the index.
    pub layers_removed: u64,
    /// fsmeta files deleted from disk.
    pub fsmeta_removed: u64,
    /// VMDK files deleted from disk.
    pub vmdk_removed: u64,
    /// Measured size of every file deleted.
    pub bytes_reclaimed: u64,
}

/// What a sandbox needs to boot an image, returned when it takes a root on it.
#[derive(Debug, Clone, PartialEq)]
pub struct BootImage {
    /// The reference the sandbox asked for (normalized).
    pub reference: Reference,
    /// The manifest the sandbox now holds on to.
    pub manifest_digest: Digest,
    /// The image config.
    pub config: ConfigDetails,
    /// Layer EROFS images, bottom to top.
    pub layers: Vec<PathBuf>,
    /// The merged metadata EROFS image.
    pub fsmeta: PathBuf,
    /// The VMDK descriptor concatenating fsmeta and the layers: attach this as one read-only disk.
    pub vmdk: PathBuf,
}

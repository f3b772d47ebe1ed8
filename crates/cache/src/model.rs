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
    /// The references deleted (or, in a dry run, that would be), sorted.
    pub references: Vec<String>,
    /// Whether this is what a prune would do, nothing having been changed.
    pub dry_run: bool,
    /// How a size budget fared, when one was given.
    pub budget: Option<BudgetOutcome>,
}

/// The outcome of a prune with a size budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetOutcome {
    /// The budget asked for.
    pub budget_bytes: u64,
    /// The cache's size after the prune: its size measured before, less
    /// the bytes of the counted files it deleted.
    pub remaining_bytes: u64,
    /// Whether the cache is now within the budget (false: what is left is
    /// in use by sandboxes or snapshots, kept, or not selected by a filter).
    pub met: bool,
}

/// Count and bytes of one kind of file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCount {
    /// Files.
    pub count: u64,
    /// Their apparent size.
    pub bytes: u64,
}

/// One reference in [`DiskUsage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    /// The normalized reference.
    pub reference: String,
    /// The manifest it names.
    pub manifest_digest: String,
    /// Bytes of its files on disk: layer images, fsmeta, VMDK.
    pub size_bytes: u64,
    /// What removing this reference alone would free.
    pub unique_bytes: u64,
    /// `size_bytes - unique_bytes`: kept by other images or references.
    pub shared_bytes: u64,
    /// Whether a sandbox or snapshot holds the image.
    pub in_use: bool,
    /// When a sandbox last acquired the image (ms since epoch).
    pub last_used_at: Option<i64>,
}

/// What the cache holds on disk, as `docker system df -v` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Every file under the cache directory but `locks/` and `tmp/`.
    pub total_bytes: u64,
    /// What `prune()` would free (its dry-run `bytesReclaimed`).
    pub reclaimable_bytes: u64,
    /// The index: database, WAL and shared-memory files.
    pub index_bytes: u64,
    /// Files under `layers/`.
    pub layers: FileCount,
    /// Files under `fsmeta/`.
    pub fsmeta: FileCount,
    /// Files under `vmdk/`.
    pub vmdk: FileCount,
    /// Per reference, sorted.
    pub images: Vec<ImageUsage>,
}

/// One thing `check` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckProblem {
    /// What kind of problem (see [`crate::Cache::check`]).
    pub kind: &'static str,
    /// A reference the problem concerns, when one does.
    pub reference: Option<String>,
    /// The digest of the artifact concerned.
    pub digest: Option<String>,
    /// The file concerned.
    pub path: Option<PathBuf>,
    /// What is wrong, and what a repair did.
    pub message: String,
    /// Whether a repair fixed it.
    pub repaired: bool,
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// No problem is left unrepaired.
    pub ok: bool,
    /// Every problem, repaired or not.
    pub problems: Vec<CheckProblem>,
    /// Files looked at.
    pub checked_files: u64,
    /// Their bytes (read in full by a full check, measured otherwise).
    pub checked_bytes: u64,
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

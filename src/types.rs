//! The JavaScript shapes of engine results: `ImageHandle` (a class with
//! read-only properties) and the plain objects `inspect`, `prune` and
//! `acquire` resolve to. Conversions only; no logic.

use chrono::{DateTime, TimeZone, Utc};
use napi_derive::napi;

/// A lightweight metadata handle for a cached OCI image. Properties are read-only.
#[napi]
pub struct ImageHandle {
    inner: cache::ImageSummary,
}

fn date(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

#[napi]
impl ImageHandle {
    /// Image reference, normalized (`python:3.12` reads `docker.io/library/python:3.12`).
    #[napi(getter)]
    pub fn reference(&self) -> String {
        self.inner.reference.to_string()
    }

    /// Bytes the image occupies in this cache: its manifest and config, each
    /// layer's EROFS image and tar framing, fsmeta and VMDK. Layers shared
    /// with other images are counted in full, as `docker images` does.
    #[napi(getter)]
    pub fn size_bytes(&self) -> Option<f64> {
        self.inner.size_bytes.map(|v| v as f64)
    }

    /// Content-addressable manifest digest.
    #[napi(getter)]
    pub fn manifest_digest(&self) -> Option<String> {
        Some(self.inner.manifest_digest.to_string())
    }

    /// Resolved architecture (GOARCH spelling, e.g. `amd64`).
    #[napi(getter)]
    pub fn architecture(&self) -> Option<String> {
        self.inner.architecture.clone()
    }

    /// Resolved operating system.
    #[napi(getter)]
    pub fn os(&self) -> Option<String> {
        self.inner.os.clone()
    }

    /// Number of layers.
    #[napi(getter)]
    pub fn layer_count(&self) -> u32 {
        self.inner.layer_count
    }

    /// When a sandbox last started using this image (`Image.acquire`), or null if never.
    #[napi(getter)]
    pub fn last_used_at(&self) -> Option<DateTime<Utc>> {
        date(self.inner.last_used_at)
    }

    /// When this reference was first pulled or loaded into this cache.
    #[napi(getter)]
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        date(self.inner.created_at)
    }

    /// A plain-object copy, so `JSON.stringify` and `console.log` show the properties.
    #[napi(
        js_name = "toJSON",
        ts_return_type = "{ reference: string; sizeBytes: number | null; manifestDigest: string | null; architecture: string | null; os: string | null; layerCount: number; lastUsedAt: Date | null; createdAt: Date | null }"
    )]
    pub fn to_json(&self) -> HandleJson {
        HandleJson {
            reference: self.reference(),
            size_bytes: self.size_bytes(),
            manifest_digest: self.manifest_digest(),
            architecture: self.architecture(),
            os: self.os(),
            layer_count: self.layer_count(),
            last_used_at: self.last_used_at(),
            created_at: self.created_at(),
        }
    }
}

impl From<cache::ImageSummary> for ImageHandle {
    fn from(inner: cache::ImageSummary) -> Self {
        ImageHandle { inner }
    }
}

/// The properties of an `ImageHandle` as a plain object.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct HandleJson {
    pub reference: String,
    pub size_bytes: Option<f64>,
    pub manifest_digest: Option<String>,
    pub architecture: Option<String>,
    pub os: Option<String>,
    pub layer_count: u32,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
}

/// OCI image config fields extracted from the local cache.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct ImageConfigDetail {
    /// Config blob digest.
    #[napi(readonly)]
    pub digest: String,
    /// Environment variables in KEY=value form.
    #[napi(readonly, ts_type = "readonly string[]")]
    pub env: Vec<String>,
    /// Default command.
    #[napi(readonly, ts_type = "readonly string[]")]
    pub cmd: Option<Vec<String>>,
    /// Image entrypoint.
    #[napi(readonly, ts_type = "readonly string[]")]
    pub entrypoint: Option<Vec<String>>,
    /// Default working directory.
    #[napi(readonly)]
    pub working_dir: Option<String>,
    /// Default user.
    #[napi(readonly)]
    pub user: Option<String>,
    /// OCI labels.
    #[napi(readonly, ts_type = "Record<string, unknown>")]
    pub labels: Option<serde_json::Map<String, serde_json::Value>>,
    /// Configured stop signal.
    #[napi(readonly)]
    pub stop_signal: Option<String>,
}

impl From<cache::ConfigDetails> for ImageConfigDetail {
    fn from(c: cache::ConfigDetails) -> Self {
        ImageConfigDetail {
            digest: c.digest.to_string(),
            env: c.env,
            cmd: c.cmd,
            entrypoint: c.entrypoint,
            working_dir: c.working_dir,
            user: c.user,
            labels: c.labels,
            stop_signal: c.stop_signal,
        }
    }
}

/// Metadata for one image layer.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct ImageLayerDetail {
    /// Uncompressed diff ID.
    #[napi(readonly)]
    pub diff_id: String,
    /// Compressed blob digest.
    #[napi(readonly)]
    pub blob_digest: String,
    /// OCI media type.
    #[napi(readonly)]
    pub media_type: Option<String>,
    /// Size in bytes of the layer as distributed (compressed; not kept in the cache).
    #[napi(readonly)]
    pub compressed_size_bytes: Option<f64>,
    /// EROFS image size in bytes.
    #[napi(readonly)]
    pub erofs_size_bytes: Option<f64>,
    /// Layer position, where 0 is the bottom.
    #[napi(readonly)]
    pub position: u32,
}

impl From<cache::LayerDetails> for ImageLayerDetail {
    fn from(l: cache::LayerDetails) -> Self {
        ImageLayerDetail {
            diff_id: l.diff_id.to_string(),
            blob_digest: l.blob_digest.to_string(),
            media_type: l.media_type,
            compressed_size_bytes: l.compressed_size.map(|v| v as f64),
            erofs_size_bytes: l.erofs_size.map(|v| v as f64),
            position: l.position,
        }
    }
}

/// Full detail for a cached image.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct ImageDetail {
    /// Core cached image metadata.
    #[napi(readonly)]
    pub handle: ImageHandle,
    /// Parsed OCI config block.
    #[napi(readonly)]
    pub config: Option<ImageConfigDetail>,
    /// Layers in bottom-to-top order.
    #[napi(readonly, ts_type = "readonly ImageLayerDetail[]")]
    pub layers: Vec<ImageLayerDetail>,
}

impl From<cache::ImageDetails> for ImageDetail {
    fn from(d: cache::ImageDetails) -> Self {
        ImageDetail {
            handle: d.summary.into(),
            config: d.config.map(Into::into),
            layers: d.layers.into_iter().map(Into::into).collect(),
        }
    }
}

/// Summary of cached image data removed by `Image.prune()`.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct ImagePruneReport {
    /// Cached image references removed from the local image index.
    #[napi(readonly)]
    pub image_refs_removed: f64,
    /// OCI manifests removed from the local image index.
    #[napi(readonly)]
    pub manifests_removed: f64,
    /// Layer records removed from the local image index.
    #[napi(readonly)]
    pub layers_removed: f64,
    /// Merged fsmeta EROFS artifacts removed from disk.
    #[napi(readonly)]
    pub fsmeta_removed: f64,
    /// VMDK descriptor artifacts removed from disk.
    #[napi(readonly)]
    pub vmdk_removed: f64,
    /// Measured bytes of every file deleted.
    #[napi(readonly)]
    pub bytes_reclaimed: Option<f64>,
    /// The references removed (in a dry run: that would be), sorted.
    #[napi(readonly, ts_type = "readonly string[]")]
    pub references: Vec<String>,
    /// Whether nothing was changed: the report of what the prune would do.
    #[napi(readonly)]
    pub dry_run: bool,
    /// The `maxBytes` asked for (null without a budget).
    #[napi(readonly)]
    pub budget_bytes: Option<f64>,
    /// The cache's size after the prune: as measured before, less the bytes deleted (null without a budget).
    #[napi(readonly)]
    pub remaining_bytes: Option<f64>,
    /// Whether the cache is within the budget; false when what is left is in use, kept or not selected (null without a budget).
    #[napi(readonly)]
    pub budget_met: Option<bool>,
}

impl From<cache::PruneReport> for ImagePruneReport {
    fn from(r: cache::PruneReport) -> Self {
        ImagePruneReport {
            image_refs_removed: r.image_refs_removed as f64,
            manifests_removed: r.manifests_removed as f64,
            layers_removed: r.layers_removed as f64,
            fsmeta_removed: r.fsmeta_removed as f64,
            vmdk_removed: r.vmdk_removed as f64,
            bytes_reclaimed: Some(r.bytes_reclaimed as f64),
            references: r.references,
            dry_run: r.dry_run,
            budget_bytes: r.budget.map(|b| b.budget_bytes as f64),
            remaining_bytes: r.budget.map(|b| b.remaining_bytes as f64),
            budget_met: r.budget.map(|b| b.met),
        }
    }
}

/// Count and bytes of one kind of file in `Image.diskUsage()`.
#[napi(object, object_from_js = false)]
pub struct ImageFileCount {
    /// Files.
    #[napi(readonly)]
    pub count: f64,
    /// Their apparent size in bytes.
    #[napi(readonly)]
    pub bytes: f64,
}

impl From<cache::FileCount> for ImageFileCount {
    fn from(c: cache::FileCount) -> Self {
        ImageFileCount {
            count: c.count as f64,
            bytes: c.bytes as f64,
        }
    }
}

/// One reference in `Image.diskUsage()`.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct ImageUsage {
    /// Normalized reference.
    #[napi(readonly)]
    pub reference: String,
    /// The manifest it names.
    #[napi(readonly)]
    pub manifest_digest: String,
    /// Bytes of its files: layer images, fsmeta, VMDK (shared layers in full).
    #[napi(readonly)]
    pub size_bytes: f64,
    /// What removing this reference alone would free.
    #[napi(readonly)]
    pub unique_bytes: f64,
    /// `sizeBytes - uniqueBytes`: kept by other images or references.
    #[napi(readonly)]
    pub shared_bytes: f64,
    /// Whether a sandbox or snapshot holds the image.
    #[napi(readonly)]
    pub in_use: bool,
    /// When a sandbox last acquired the image, or null if never.
    #[napi(readonly)]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What `Image.diskUsage()` resolves to: the files a listing finds, each artifact at the size recorded when it was published.
#[napi(object, object_from_js = false)]
pub struct ImageDiskUsage {
    /// Every file under `$MSB_HOME` but `locks/` and `tmp/`: what a budget counts.
    #[napi(readonly)]
    pub total_bytes: f64,
    /// What `Image.prune()` would free (its dry run's `bytesReclaimed`; stale temp files included).
    #[napi(readonly)]
    pub reclaimable_bytes: f64,
    /// The index: database, WAL and shared-memory files.
    #[napi(readonly)]
    pub index_bytes: f64,
    /// Files under `layers/`.
    #[napi(readonly)]
    pub layers: ImageFileCount,
    /// Files under `fsmeta/`.
    #[napi(readonly)]
    pub fsmeta: ImageFileCount,
    /// Files under `vmdk/`.
    #[napi(readonly)]
    pub vmdk: ImageFileCount,
    /// Per reference, sorted.
    #[napi(readonly, ts_type = "readonly ImageUsage[]")]
    pub images: Vec<ImageUsage>,
}

impl From<cache::DiskUsage> for ImageDiskUsage {
    fn from(u: cache::DiskUsage) -> Self {
        ImageDiskUsage {
            total_bytes: u.total_bytes as f64,
            reclaimable_bytes: u.reclaimable_bytes as f64,
            index_bytes: u.index_bytes as f64,
            layers: u.layers.into(),
            fsmeta: u.fsmeta.into(),
            vmdk: u.vmdk.into(),
            images: u
                .images
                .into_iter()
                .map(|i| ImageUsage {
                    reference: i.reference,
                    manifest_digest: i.manifest_digest,
                    size_bytes: i.size_bytes as f64,
                    unique_bytes: i.unique_bytes as f64,
                    shared_bytes: i.shared_bytes as f64,
                    in_use: i.in_use,
                    last_used_at: date(i.last_used_at),
                })
                .collect(),
        }
    }
}

/// One problem `Image.check()` found.
#[napi(object, object_from_js = false)]
pub struct ImageCheckProblem {
    /// `index`, `missing_file`, `size_mismatch`, `disk_mismatch`, `corrupt`, `orphan_file` or `temp_file`.
    #[napi(
        readonly,
        ts_type = "'index' | 'missing_file' | 'size_mismatch' | 'disk_mismatch' | 'corrupt' | 'orphan_file' | 'temp_file'"
    )]
    pub kind: String,
    /// A reference of the image concerned.
    #[napi(readonly)]
    pub reference: Option<String>,
    /// The digest of the artifact concerned (diff_id of a layer, manifest digest of a root disk).
    #[napi(readonly)]
    pub digest: Option<String>,
    /// The file concerned.
    #[napi(readonly)]
    pub path: Option<String>,
    /// What is wrong, what a repair does, and any sandbox or snapshot it touches.
    #[napi(readonly)]
    pub message: String,
    /// Whether this call repaired it.
    #[napi(readonly)]
    pub repaired: bool,
}

/// What `Image.check()` resolves to.
#[napi(object, object_from_js = false)]
pub struct ImageCheckReport {
    /// No problem is left unrepaired.
    #[napi(readonly)]
    pub ok: bool,
    /// Every problem found, repaired or not.
    #[napi(readonly, ts_type = "readonly ImageCheckProblem[]")]
    pub problems: Vec<ImageCheckProblem>,
    /// Files looked at (artifacts).
    #[napi(readonly)]
    pub checked_files: f64,
    /// Their bytes and the index's.
    #[napi(readonly)]
    pub checked_bytes: f64,
}

impl From<cache::CheckReport> for ImageCheckReport {
    fn from(r: cache::CheckReport) -> Self {
        ImageCheckReport {
            ok: r.ok,
            problems: r
                .problems
                .into_iter()
                .map(|p| ImageCheckProblem {
                    kind: p.kind.to_string(),
                    reference: p.reference,
                    digest: p.digest,
                    path: p.path.map(|p| p.display().to_string()),
                    message: p.message,
                    repaired: p.repaired,
                })
                .collect(),
            checked_files: r.checked_files as f64,
            checked_bytes: r.checked_bytes as f64,
        }
    }
}

/// What a sandbox boots from, returned by `Image.acquire`.
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct AcquiredImage {
    /// The normalized reference the sandbox asked for.
    #[napi(readonly)]
    pub reference: String,
    /// The manifest the sandbox now holds on to (prune and remove keep it).
    #[napi(readonly)]
    pub manifest_digest: String,
    /// The image config.
    #[napi(readonly)]
    pub config: ImageConfigDetail,
    /// Layer EROFS image paths, bottom to top.
    #[napi(readonly, ts_type = "readonly string[]")]
    pub layers: Vec<String>,
    /// The merged metadata EROFS image.
    #[napi(readonly)]
    pub fsmeta_path: String,
    /// The VMDK descriptor concatenating fsmeta and the layers: attach it as one read-only disk.
    #[napi(readonly)]
    pub vmdk_path: String,
}

impl From<cache::BootImage> for AcquiredImage {
    fn from(b: cache::BootImage) -> Self {
        let path = |p: &std::path::Path| p.display().to_string();
        AcquiredImage {
            reference: b.reference.to_string(),
            manifest_digest: b.manifest_digest.to_string(),
            config: b.config.into(),
            layers: b.layers.iter().map(|p| path(p)).collect(),
            fsmeta_path: path(&b.fsmeta),
            vmdk_path: path(&b.vmdk),
        }
    }
}

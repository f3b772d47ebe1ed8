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

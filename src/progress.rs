//! Progress events as JavaScript sees them: a discriminated union on
//! `type`, so a `download` event has `downloaded: number` (no `!`
//! needed), converted one for one from the engine's single event type.

use napi_derive::napi;
use oci::progress::{LayerStep, Progress};

/// One step of a pull or a load, passed to `onProgress`. A load reports
/// `archive` (bytes read so far of `total`: while a compressed archive is
/// decompressed, of the file; then of the layers being converted), then
/// `layer` and `disk` as a pull does. A pull reports, in this order:
/// `resolved` (the manifest chosen for the platform, its layers bottom to
/// top), then per layer `download` (bytes received of one blob, at most
/// every 100 ms) and `retry` (why the previous try failed, which retry,
/// and how long the pull waits first), then `layer` steps (`cached`:
/// nothing to do; or `verified`: digests matched, then `converted`: its
/// EROFS image is in the cache), then `disk` (fsmeta and VMDK written),
/// then `complete` (the normalized reference and its manifest), then
/// `gc` when the pull left the cache above the budget of `config.json`
/// and the automatic collection evicted images (which, how many bytes,
/// the size left and the size collected down to).
#[allow(missing_docs)] // the fields are documented above, where TypeScript shows them
#[napi(discriminant = "type", discriminant_case = "lowercase", object_from_js = false)]
pub enum PullProgressEvent {
    /// The reference resolved to a manifest with these layers.
    Resolved { manifest_digest: String, layers: Vec<PullLayer> },
    /// Bytes of one blob received so far.
    Download { digest: String, downloaded: f64, total: f64 },
    /// A request failed transiently and is tried again after `retryAfterMs`.
    Retry {
        digest: Option<String>,
        attempt: u32,
        reason: String,
        retry_after_ms: f64,
    },
    /// A layer passed a step.
    Layer {
        digest: String,
        diff_id: String,
        #[napi(ts_type = "'cached' | 'verified' | 'converted'")]
        step: String,
    },
    /// Bytes of an archive a load has read.
    Archive { read: f64, total: f64 },
    /// fsmeta and the VMDK are written.
    Disk { fsmeta_path: String, vmdk_path: String },
    /// The reference is in the cache.
    Complete { reference: String, manifest_digest: String },
    /// The pull left the cache above the budget `config.json` sets: the
    /// automatic collection evicted `references` (sorted by reference).
    Gc {
        references: Vec<String>,
        bytes_reclaimed: f64,
        remaining_bytes: f64,
        budget_bytes: f64,
    },
}

/// A layer announced by a `resolved` event.
#[napi(object, object_from_js = false)]
pub struct PullLayer {
    /// The blob's digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: f64,
}

impl From<Progress> for PullProgressEvent {
    fn from(event: Progress) -> Self {
        match event {
            Progress::Resolved { manifest_digest, layers } => PullProgressEvent::Resolved {
                manifest_digest: manifest_digest.to_string(),
                layers: layers
                    .into_iter()
                    .map(|(digest, size)| PullLayer {
                        digest: digest.to_string(),
                        size: size as f64,
                    })
                    .collect(),
            },
            Progress::Download { digest, downloaded, total } => PullProgressEvent::Download {
                digest: digest.to_string(),
                downloaded: downloaded as f64,
                total: total as f64,
            },
            Progress::Retry {
                digest,
                attempt,
                reason,
                wait,
            } => PullProgressEvent::Retry {
                digest: digest.map(|d| d.to_string()),
                attempt,
                reason,
                retry_after_ms: wait.as_millis() as f64,
            },
            Progress::Layer { digest, diff_id, step } => PullProgressEvent::Layer {
                digest: digest.to_string(),
                diff_id: diff_id.to_string(),
                step: match step {
                    LayerStep::Cached => "cached",
                    LayerStep::Verified => "verified",
                    LayerStep::Converted => "converted",
                }
                .to_string(),
            },
            Progress::Archive { read, total } => PullProgressEvent::Archive {
                read: read as f64,
                total: total as f64,
            },
            Progress::Disk { fsmeta, vmdk } => PullProgressEvent::Disk {
                fsmeta_path: fsmeta.display().to_string(),
                vmdk_path: vmdk.display().to_string(),
            },
            Progress::Complete {
                reference,
                manifest_digest,
            } => PullProgressEvent::Complete {
                reference: reference.to_string(),
                manifest_digest: manifest_digest.to_string(),
            },
            Progress::Gc {
                references,
                bytes_reclaimed,
                remaining_bytes,
                budget_bytes,
            } => PullProgressEvent::Gc {
                references,
                bytes_reclaimed: bytes_reclaimed as f64,
                remaining_bytes: remaining_bytes as f64,
                budget_bytes: budget_bytes as f64,
            },
        }
    }
}

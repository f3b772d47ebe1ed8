//! Pulling an image from a registry into the cache: resolve the reference
//! to a platform manifest, and unless the cache already holds that manifest,
//! fetch the config and stream the layers through the same ingest as an
//! archive. Progress is reported as it happens.

use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::ingest::{self, Milestone, ResolvedImage};
use crate::manifest;
use crate::reference::Reference;
use crate::registry::{Client, DownloadEvent, PullOptions};
use crate::store::Store;

/// When to contact the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only when the reference is not cached.
    #[default]
    IfMissing,
    /// Always re-resolve the reference; cached layers are reused.
    Always,
    /// Never: fail with `ImageNotFound` unless cached.
    Never,
}

/// What a pull reports while it runs, in order per layer.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    /// The reference resolved to a manifest with these layers (digest, size).
    Resolved {
        manifest_digest: String,
        layers: Vec<(String, u64)>,
    },
    /// Bytes of a blob received so far (rate-limited).
    Download { digest: String, downloaded: u64, total: u64 },
    /// A request failed transiently and is being retried.
    Retry {
        digest: Option<String>,
        attempt: u32,
        reason: String,
    },
    /// A layer is verified (digest, size, diff_id) and its EROFS image is in the cache.
    LayerReady { digest: String, diff_id: String },
    /// fsmeta and the VMDK are written.
    DiskReady { fsmeta: PathBuf, vmdk: PathBuf },
    /// The reference is in the cache.
    Complete { reference: String, manifest_digest: String },
}

/// Receives pull events; called from worker threads, so it must be cheap.
pub type PullObserver = Arc<dyn Fn(PullEvent) + Send + Sync>;

/// Resolves `reference` in its registry and brings it into the cache.
pub fn pull(store: &Store, index: &Index, reference: &Reference, options: &PullOptions, observe: &PullObserver) -> Result<Digest> {
    let mut options = options.clone();
    let downloads = observe.clone();
    options.progress = Some(Arc::new(move |event: &DownloadEvent| {
        downloads(match event {
            DownloadEvent::Bytes { digest, downloaded, total } => PullEvent::Download {
                digest: digest.to_string(),
                downloaded: *downloaded,
                total: *total,
            },
            DownloadEvent::Retrying { digest, attempt, reason } => PullEvent::Retry {
                digest: digest.as_ref().map(ToString::to_string),
                attempt: *attempt,
                reason: reason.clone(),
            },
        })
    }));
    let client = Client::new(reference, &options)?;
    let (digest, manifest_bytes, parsed) = client.resolve_manifest()?;
    observe(PullEvent::Resolved {
        manifest_digest: digest.to_string(),
        layers: parsed.layers.iter().map(|l| (l.digest.to_string(), l.size)).collect(),
    });
    ingest::leased(store, index, |published| {
        // A cached manifest with a layer lost from disk is ingested again.
        let cached = cached_diff_ids(index, &digest)?;
        let complete = ingest::layers_present(store, index, &cached)?;
        if complete && ingest::add_reference(index, reference, &digest)? {
            for (layer, diff_id) in parsed.layers.iter().zip(cached) {
                observe(PullEvent::LayerReady {
                    digest: layer.digest.to_string(),
                    diff_id,
                });
            }
            observe(PullEvent::DiskReady {
                fsmeta: store.fsmeta_path(&digest),
                vmdk: store.vmdk_path(&digest),
            });
            return Ok(digest);
        }
        let image = fetch_image(reference, &client, digest.clone(), manifest_bytes, parsed)?;
        let milestones = |milestone: Milestone| {
            observe(match milestone {
                Milestone::LayerReady { digest, diff_id } => PullEvent::LayerReady {
                    digest: digest.to_string(),
                    diff_id: diff_id.to_string(),
                },
                Milestone::DiskReady { fsmeta, vmdk } => PullEvent::DiskReady { fsmeta, vmdk },
            })
        };
        let record = ingest::ingest(store, index, &image, &client, &milestones, published)?;
        ingest::record(store, index, &[record])?;
        Ok(digest)
    })
}

/// The image to ingest: the resolved manifest and its fetched, parsed config.
fn fetch_image(
    reference: &Reference,
    client: &Client,
    digest: Digest,
    manifest_bytes: Vec<u8>,
    parsed: manifest::Manifest,
) -> Result<ResolvedImage> {
    let config_bytes = client.fetch_config(&parsed)?;
    let config = manifest::parse_config(&config_bytes, &parsed.config.digest, parsed.layers.len()).map_err(|message| Error::Registry {
        registry: reference.domain().to_string(),
        repository: reference.path().to_string(),
        digest: Some(parsed.config.digest.to_string()),
        status: None,
        message,
    })?;
    Ok(ResolvedImage {
        references: vec![reference.clone()],
        manifest_digest: digest,
        manifest_bytes,
        manifest: parsed,
        config_bytes,
        config,
    })
}

fn cached_diff_ids(index: &Index, manifest: &Digest) -> Result<Vec<String>> {
    Ok(index
        .read(|conn| crate::index::read::layers_of(conn, manifest.as_str()))?
        .into_iter()
        .map(|l| l.diff_id)
        .collect())
}

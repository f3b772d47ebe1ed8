//! Pulling an image from a registry into the cache. The pull policy
//! decides whether the registry is asked at all; if it is, the reference
//! resolves to a platform manifest, and unless the cache already holds
//! that manifest, the config is fetched and the layers stream through the
//! same ingest as an archive's. Registry settings are the user's
//! `registries.json` extended by the call's options.

use std::path::Path;

use oci::progress::{Progress, Sink};
use oci::{Digest, Platform, Reference};
use registry::{Client, PullOptions, RegistryConfig};

use crate::error::{Error, Result};
use crate::index::{read, Index};
use crate::ingest::{self, Lease, ResolvedImage};
use crate::model::ImageSummary;
use crate::store::Store;

/// Registry settings file in the cache directory.
pub const REGISTRY_SETTINGS: &str = "registries.json";

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

/// What the caller asked of one pull.
pub struct PullRequest<'a> {
    /// When to contact the registry.
    pub policy: PullPolicy,
    /// The platform to pick (default: the host's); when given, a cached
    /// image of another platform counts as missing.
    pub platform: Option<&'a Platform>,
    /// Credentials, per-call registry settings, cancellation.
    pub options: &'a PullOptions,
    /// Where progress goes.
    pub progress: &'a Sink,
}

/// Brings the image `reference` names into the cache as `request` says,
/// and reports it `Complete`. `asked` is the reference as the caller spelt it.
pub fn pull(store: &Store, index: &Index, reference: &Reference, asked: &str, request: &PullRequest<'_>) -> Result<ImageSummary> {
    let find = || {
        index
            .read(|conn| read::find(conn, reference))?
            .ok_or_else(|| Error::not_cached(asked))
    };
    let cached = match request.policy {
        PullPolicy::Always => None,
        PullPolicy::IfMissing => match find() {
            Ok(summary) if serves(index, &summary, request.platform)? && complete(store, index, &summary)? => Some(summary),
            Ok(_) | Err(Error::ImageNotFound { .. }) => None,
            Err(e) => return Err(e),
        },
        PullPolicy::Never => {
            let summary = find()?;
            if !serves(index, &summary, request.platform)? {
                return Err(Error::ImageNotFound {
                    reference: asked.to_string(),
                    location: "the local cache for that platform".into(),
                });
            }
            Some(summary)
        }
    };
    let summary = match cached {
        Some(summary) => summary,
        None => fetch(store, index, reference, request)?,
    };
    (request.progress)(Progress::Complete {
        reference: summary.reference.clone(),
        manifest_digest: summary.manifest_digest.clone(),
    });
    Ok(summary)
}

/// The registry settings of this pull: `registries.json` in the cache
/// directory, extended by the call's own.
fn settings(home: &Path, request: &PullRequest<'_>) -> Result<PullOptions> {
    let mut options = request.options.clone();
    options.platform = request.platform.cloned().unwrap_or_else(Platform::host);
    options.progress = Some(request.progress.clone());
    options.config = registry_settings(home, &options.config)?;
    Ok(options)
}

/// `registries.json` in the cache directory `home`, extended by a call's
/// own settings: what every registry request of the call works with.
pub fn registry_settings(home: &Path, call: &RegistryConfig) -> Result<RegistryConfig> {
    Ok(RegistryConfig::from_file(&home.join(REGISTRY_SETTINGS))?.extended_by(call))
}

/// Resolves `reference` in its registry, ingests what the cache lacks, and
/// returns what the reference names then.
fn fetch(store: &Store, index: &Index, reference: &Reference, request: &PullRequest<'_>) -> Result<ImageSummary> {
    let options = settings(store.root(), request)?;
    let client = Client::new(reference, &options)?;
    let (digest, manifest_bytes, parsed) = client.resolve_manifest()?;
    let progress = request.progress;
    progress(Progress::Resolved {
        manifest_digest: digest.clone(),
        layers: parsed.layers.iter().map(|l| (l.digest.clone(), l.size)).collect(),
    });
    let lease = Lease::take(store, index)?;
    // A cached manifest with a layer lost from disk is ingested again.
    let cached: Vec<Digest> = index
        .read(|conn| read::layers_of(conn, &digest))?
        .into_iter()
        .map(|l| l.diff_id)
        .collect();
    let present = ingest::layers_present(store, index, &cached)?;
    if let Some(summary) = present
        .then(|| ingest::add_reference(index, reference, &digest))
        .transpose()?
        .flatten()
    {
        for (layer, diff_id) in parsed.layers.iter().zip(cached) {
            progress(Progress::Layer {
                digest: layer.digest.clone(),
                diff_id,
                step: oci::progress::LayerStep::Cached,
            });
        }
        progress(Progress::Disk {
            fsmeta: store.fsmeta_path(&digest),
            vmdk: store.vmdk_path(&digest),
        });
        return Ok(summary);
    }
    let config_bytes = client.fetch_config(&parsed)?;
    let config = oci::manifest::parse_config(&config_bytes, &parsed.config.digest, parsed.layers.len()).map_err(|message| {
        registry::Error::Registry {
            registry: reference.domain().to_string(),
            repository: reference.path().to_string(),
            digest: Some(parsed.config.digest.to_string()),
            status: None,
            message,
        }
    })?;
    let image = ResolvedImage {
        references: vec![reference.clone()],
        manifest_digest: digest.clone(),
        manifest_bytes,
        manifest: parsed,
        config_bytes,
        config,
    };
    let record = ingest::ingest(&lease, &image, &client, progress)?;
    let mut recorded = ingest::record(lease, &[record])?;
    recorded.pop().ok_or_else(|| Error::Internal("a pull recorded no reference".into()))
}

/// Whether every layer of a cached image is still on disk (a lost one
/// makes a pull fetch the image again).
fn complete(store: &Store, index: &Index, summary: &ImageSummary) -> Result<bool> {
    let layers = index.read(|conn| read::layers_of(conn, &summary.manifest_digest))?;
    ingest::layers_present(store, index, layers.iter().map(|l| &l.diff_id))
}

/// Whether a cached image runs on the platform asked for (any, when none was).
fn serves(index: &Index, summary: &ImageSummary, platform: Option<&Platform>) -> Result<bool> {
    let Some(want) = platform else { return Ok(true) };
    let cached = index.read(|conn| read::platform_of(conn, &summary.manifest_digest))?;
    Ok(cached.is_some_and(|cached| want.score(&cached) > 0))
}

//! The operations a user of the cache sees, each one a short sequence of
//! the concepts below it: resolve a reference, read or write the index, lock
//! the store, materialize or collect artifacts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::archive::save::{self, Format, SaveImage};
use crate::archive::{Archive, LoadOptions};
use crate::backend::Backend;
use crate::digest::{self, Digest};
use crate::disk;
use crate::error::{Error, Result};
use crate::gc;
use crate::index::{now_ms, read, write, Index};
use crate::ingest;
use crate::manifest::Descriptor;
use crate::model::{BootImage, ImageDetails, ImageSummary, PruneReport};
use crate::parallel;
use crate::platform::Platform;
use crate::pull::{self, PullEvent, PullObserver, PullPolicy};
use crate::reference::Reference;
use crate::registry::{PullOptions, RegistryConfig};
use crate::store::{Artifact, Store};
use crate::upgrade;

/// Registry settings file in the cache directory.
pub const REGISTRY_SETTINGS: &str = "registries.json";

/// Images of one archive ingested at once.
const PARALLEL_IMAGES: usize = 4;

/// An open cache: its directory and its index.
pub struct Cache {
    store: Store,
    index: Index,
}

/// Parses a user-supplied reference.
pub fn parse_reference(reference: &str) -> Result<Reference> {
    Reference::parse(reference).map_err(|reason| Error::InvalidReference {
        reference: reference.to_string(),
        reason,
    })
}

/// A layer of `image` whose EROFS image or framing the cache lost: only the
/// image's source can bring it back.
fn missing_layer(store: &Store, diff_id: &Digest, image: &Reference) -> Error {
    Error::Cache {
        path: store.layer_path(diff_id),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("layer {diff_id} of {image} is missing from the cache; load or pull the image again"),
        ),
    }
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{kind} name {name:?} must be 1-255 printable characters"
        )));
    }
    Ok(())
}

impl Cache {
    /// Opens (creating if needed) the cache in `home`.
    pub fn open(home: &Path) -> Result<Cache> {
        let store = Store::open(home)?;
        let index = {
            let _lock = store.lock_index()?;
            let index = Index::open(&store.db_path())?;
            upgrade::upgrade(&store, &index)?;
            index
        };
        Ok(Cache { store, index })
    }

    /// The cache `backend` configures, shared by every call in this process;
    /// refuses with `Unsupported` under a cloud backend before touching
    /// the disk.
    pub fn for_backend(backend: &Backend, operation: &str) -> Result<Arc<Cache>> {
        static OPEN: Mutex<Option<HashMap<PathBuf, Arc<Cache>>>> = Mutex::new(None);
        let home = backend.local_home(operation)?;
        let mut open = OPEN.lock().map_err(|_| Error::Internal("cache registry poisoned".into()))?;
        let open = open.get_or_insert_with(HashMap::new);
        if let Some(cache) = open.get(home) {
            // A cache directory deleted behind our back is opened afresh.
            if cache.store.db_path().exists() {
                return Ok(cache.clone());
            }
        }
        let cache = Arc::new(Cache::open(home)?);
        open.insert(home.clone(), cache.clone());
        Ok(cache)
    }

    /// The cache directory.
    pub fn home(&self) -> &Path {
        self.store.root()
    }

    /// The image a reference names.
    pub fn get(&self, reference: &str) -> Result<ImageSummary> {
        let parsed = parse_reference(reference)?;
        self.index
            .read(|conn| read::find(conn, &parsed))?
            .ok_or_else(|| Error::not_cached(reference))
    }

    /// Every cached reference, sorted.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        self.index.read(read::list)
    }

    /// A reference's image with its config and layers.
    pub fn inspect(&self, reference: &str) -> Result<ImageDetails> {
        let parsed = parse_reference(reference)?;
        self.index.read(|conn| {
            let summary = read::find(conn, &parsed)?.ok_or_else(|| Error::not_cached(reference))?;
            let config = read::config_of(conn, &summary.manifest_digest)?;
            let layers = read::layers_of(conn, &summary.manifest_digest)?;
            Ok(ImageDetails { summary, config, layers })
        })
    }

    /// Deletes a reference (a digest reference: every reference of its
    /// repository resolving to that manifest), then whatever only it kept
    /// alive. Without `force`, refuses while sandboxes use the image; with
    /// it, the reference goes but the sandboxes' files stay.
    pub fn remove(&self, reference: &str, force: bool) -> Result<PruneReport> {
        let parsed = parse_reference(reference)?;
        let _lock = self.store.lock_collect()?;
        let doomed = self.index.write(|tx| {
            let refs = read::covered_refs(tx, &parsed)?;
            if refs.is_empty() {
                return Err(Error::not_cached(reference));
            }
            if !force {
                let mut sandboxes = Vec::new();
                for (_, manifest) in &refs {
                    sandboxes.extend(read::sandboxes_using(tx, manifest)?);
                }
                if !sandboxes.is_empty() {
                    sandboxes.sort();
                    sandboxes.dedup();
                    return Err(Error::ImageInUse {
                        reference: reference.to_string(),
                        sandboxes,
                    });
                }
            }
            gc::remove_rows(tx, &refs)
        })?;
        gc::delete_files(&self.store, &doomed)
    }

    /// Deletes every reference no sandbox or snapshot uses, everything that
    /// became unreachable, and every file no index row reaches. Once the
    /// rows that name files are gone, files and the remaining rows are
    /// deleted side by side, and the index's WAL is checkpointed beside them.
    pub fn prune(&self) -> Result<PruneReport> {
        let _lock = self.store.lock_collect()?;
        let mut report = self.index.write_bulk(gc::prune_rows)?;
        let live = self.index.read(gc::live_set)?;
        std::thread::scope(|scope| {
            let content = scope.spawn(|| {
                self.index.write_bulk(gc::prune_content)?;
                self.index.checkpoint()
            });
            let swept = gc::sweep(&self.store, &live, &mut report);
            let content = content
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("pruning the index panicked".into())));
            swept.and(content)
        })?;
        Ok(report)
    }

    /// Imports every image of an archive; returns one summary per reference.
    /// Holds off the collector throughout, which would otherwise sweep a
    /// decompressed archive in `tmp/` or a reference just recorded.
    pub fn load(&self, path: &Path, options: &LoadOptions) -> Result<Vec<ImageSummary>> {
        ingest::leased(&self.store, &self.index, |published| {
            let mut archive = Archive::open(path, &self.store)?;
            let images = archive.resolve(options)?;
            let ingest_one = |image: &ingest::ResolvedImage, mine: &mut Vec<Artifact>| {
                ingest::ingest(&self.store, &self.index, image, &archive, &|_| {}, mine)
            };
            let records = parallel::map(&images, PARALLEL_IMAGES, ingest_one, published)?;
            ingest::record(&self.store, &self.index, &records)?;
            images
                .iter()
                .flat_map(|i| &i.references)
                .map(|r| self.get(&r.to_string()))
                .collect()
        })
    }

    /// Brings the image `reference` names into the cache from its registry,
    /// as `policy` says, reporting progress to `observe`. `platform` picks
    /// from multi-platform indexes (default: the host's); when given, a
    /// cached image of another platform counts as missing. Registry
    /// settings come from `registries.json` in the cache directory,
    /// extended by `options.config`.
    pub fn pull(
        &self,
        reference: &str,
        policy: PullPolicy,
        platform: Option<&Platform>,
        options: &PullOptions,
        observe: &PullObserver,
    ) -> Result<ImageSummary> {
        let parsed = parse_reference(reference)?;
        let cached = match policy {
            PullPolicy::Always => None,
            PullPolicy::IfMissing => match self.get(reference) {
                Ok(summary) if self.serves(&summary, platform)? && self.complete(&summary)? => Some(summary),
                Ok(_) | Err(Error::ImageNotFound { .. }) => None,
                Err(e) => return Err(e),
            },
            PullPolicy::Never => {
                let summary = self.get(reference)?;
                if !self.serves(&summary, platform)? {
                    return Err(Error::ImageNotFound {
                        reference: reference.to_string(),
                        location: "the local cache for that platform".into(),
                    });
                }
                Some(summary)
            }
        };
        let summary = match cached {
            Some(summary) => summary,
            None => {
                let mut options = options.clone();
                options.platform = platform.cloned().unwrap_or_else(Platform::host);
                let settings = RegistryConfig::from_file(&self.store.root().join(REGISTRY_SETTINGS))?;
                let config = &mut options.config;
                for (host, mirrors) in settings.mirrors {
                    config.mirrors.entry(host).or_default().extend(mirrors);
                }
                config.ca_bundles.extend(settings.ca_bundles);
                config.insecure_hosts.extend(settings.insecure_hosts);
                pull::pull(&self.store, &self.index, &parsed, &options, observe)?;
                self.get(reference)?
            }
        };
        observe(PullEvent::Complete {
            reference: summary.reference.clone(),
            manifest_digest: summary.manifest_digest.clone(),
        });
        Ok(summary)
    }

    /// Whether every layer of a cached image is still on disk (a lost one
    /// makes a pull fetch the image again).
    fn complete(&self, summary: &ImageSummary) -> Result<bool> {
        let layers = self.index.read(|conn| read::layers_of(conn, &summary.manifest_digest))?;
        let diff_ids: Vec<String> = layers.into_iter().map(|l| l.diff_id).collect();
        ingest::layers_present(&self.store, &self.index, &diff_ids)
    }

    /// Whether a cached image runs on the platform asked for (any, when none was).
    fn serves(&self, summary: &ImageSummary, platform: Option<&Platform>) -> Result<bool> {
        let Some(want) = platform else { return Ok(true) };
        let cached = self.index.read(|conn| read::platform_of(conn, &summary.manifest_digest))?;
        Ok(cached.is_some_and(|cached| want.score(&cached) > 0))
    }

    /// Writes the images `references` name to an archive at `output`.
    pub fn save(&self, references: &[String], output: &Path, format: Format) -> Result<()> {
        if references.is_empty() {
            return Err(Error::InvalidArgument("save needs at least one reference".into()));
        }
        let _lease = self.store.lock_ingest()?;
        let mut images: Vec<SaveImage> = Vec::new();
        for reference in references {
            let parsed = parse_reference(reference)?;
            let summary = self.get(reference)?;
            let manifest = Digest::parse(&summary.manifest_digest).map_err(Error::Internal)?;
            match images.iter_mut().find(|i| i.manifest == manifest) {
                Some(image) => image.references.push(parsed),
                None => images.push(self.save_image(parsed, manifest)?),
            }
        }
        save::save(&self.store, &images, output, format)
    }

    fn save_image(&self, reference: Reference, manifest: Digest) -> Result<SaveImage> {
        self.index.read(|conn| {
            let config = read::config_of(conn, manifest.as_str())?.ok_or_else(|| Error::Internal(format!("{manifest} has no config")))?;
            let config_digest = Digest::parse(&config.digest).map_err(Error::Internal)?;
            let (_, media_type) = read::blob(conn, &config.digest)?.unwrap_or_default();
            let config_bytes = read::blob_content(conn, &config.digest)?.unwrap_or_default();
            digest::verify(
                &format!("config {config_digest} in the cache index"),
                &config_digest,
                None,
                &Digest::of(&config_bytes),
                config_bytes.len() as u64,
            )?;
            let layers = read::layers_of(conn, manifest.as_str())?
                .into_iter()
                .map(|l| {
                    let diff_id = Digest::parse(&l.diff_id).map_err(Error::Internal)?;
                    match read::layer_framing(conn, &l.diff_id)? {
                        Some(framing) => Ok((diff_id, framing)),
                        None => Err(missing_layer(&self.store, &diff_id, &reference)),
                    }
                })
                .collect::<Result<_>>()?;
            Ok(SaveImage {
                references: vec![reference.clone()],
                config: Descriptor {
                    media_type: media_type.unwrap_or_default(),
                    digest: config_digest,
                    size: config_bytes.len() as u64,
                },
                config_bytes,
                manifest,
                layers,
            })
        })
    }

    /// Records that sandbox `sandbox` uses the image `reference` names (a GC
    /// root, and the image's `lastUsedAt`), rebuilding its fsmeta and VMDK if
    /// they went missing, and returns what the sandbox boots from.
    pub fn acquire(&self, reference: &str, sandbox: &str) -> Result<BootImage> {
        check_name("sandbox", sandbox)?;
        let parsed = parse_reference(reference)?;
        ingest::leased(&self.store, &self.index, |repaired| {
            self.acquire_leased(&parsed, reference, sandbox, repaired)
        })
    }

    fn acquire_leased(&self, parsed: &Reference, reference: &str, sandbox: &str, repaired: &mut Vec<Artifact>) -> Result<BootImage> {
        let summary = self.get(reference)?;
        let manifest = Digest::parse(&summary.manifest_digest).map_err(Error::Internal)?;
        let layers = self.index.read(|conn| read::layers_of(conn, manifest.as_str()))?;
        let mut diff_ids = Vec::with_capacity(layers.len());
        for layer in &layers {
            let diff_id = Digest::parse(&layer.diff_id).map_err(Error::Internal)?;
            let path = self.store.layer_path(&diff_id);
            if !path.exists() {
                // The compressed blob is not kept, so a lost layer image cannot
                // be rebuilt here; loading or pulling the image again does.
                return Err(missing_layer(&self.store, &diff_id, parsed));
            }
            diff_ids.push(diff_id);
        }
        let before = self.index.read(|conn| read::disk_artifacts(conn, manifest.as_str()))?;
        let sizes = disk::ensure(&self.store, &manifest, &diff_ids, repaired)?;
        self.store.sync_artifact_dirs()?;
        let config = self.index.write(|tx| {
            if before != Some((Some(sizes.fsmeta), Some(sizes.vmdk))) {
                write::update_disk_artifacts(tx, manifest.as_str(), sizes.fsmeta, sizes.vmdk)?;
            }
            write::acquire(tx, sandbox, manifest.as_str(), &parsed.to_string(), now_ms())?;
            read::config_of(tx, manifest.as_str())?.ok_or_else(|| Error::Internal(format!("{manifest} has no config")))
        })?;
        Ok(BootImage {
            reference: parsed.to_string(),
            manifest_digest: manifest.to_string(),
            config,
            layers: diff_ids.iter().map(|d| self.store.layer_path(d)).collect(),
            fsmeta: self.store.fsmeta_path(&manifest),
            vmdk: self.store.vmdk_path(&manifest),
        })
    }

    /// Drops sandbox `sandbox`'s root; false when it held none.
    pub fn release(&self, sandbox: &str) -> Result<bool> {
        check_name("sandbox", sandbox)?;
        self.index.write(|tx| write::release(tx, sandbox))
    }

    /// Makes snapshot `name` a root of the image `reference` names.
    pub fn pin_snapshot(&self, name: &str, reference: &str) -> Result<()> {
        check_name("snapshot", name)?;
        let parsed = parse_reference(reference)?;
        self.index.write(|tx| {
            let summary = read::find(tx, &parsed)?.ok_or_else(|| Error::not_cached(reference))?;
            write::pin_snapshot(tx, name, &summary.manifest_digest, &parsed.to_string(), now_ms())
        })
    }

    /// Drops snapshot `name`'s root; false when it held none.
    pub fn unpin_snapshot(&self, name: &str) -> Result<bool> {
        check_name("snapshot", name)?;
        self.index.write(|tx| write::unpin_snapshot(tx, name))
    }
}

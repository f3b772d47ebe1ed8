//! The operations a user of the cache sees. Each is a short composition
//! of the stages below it: resolve a reference, read or write the index,
//! bring images in ([`crate::source`], [`crate::ingest`]), hand out root
//! disks ([`boot`]), write archives ([`save`]), collect ([`crate::gc`]),
//! log in to registries ([`login`]).

mod boot;
mod check;
mod collect;
mod login;
mod save;
mod tag;
mod usage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oci::Reference;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gc;
use crate::gc::policy::PruneOptions;
use crate::index::{read, Index};
use crate::ingest::{self, Lease};
use crate::model::{ImageDetails, ImageSummary, PruneReport};
use crate::parallel;
use crate::source::archive::{Archive, LoadOptions};
use crate::source::meter::Meter;
use crate::source::pull::{self, PullRequest};
use crate::store::Store;
use crate::upgrade;

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

impl Cache {
    /// Opens (creating if needed) the cache in `home`, upgrading a cache
    /// an older version wrote.
    pub fn open(home: &Path) -> Result<Cache> {
        let store = Store::open(home)?;
        let index = {
            let _lock = store.lock_index()?;
            let index = Index::open(&store.db_path())?;
            upgrade::upgrade(&store, &index)?;
            index
        };
        check::seal_unsealed(&store, &index)?;
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
        self.find(&parse_reference(reference)?, reference)
    }

    /// The image `reference` names; `asked` is how the caller spelt it.
    fn find(&self, reference: &Reference, asked: &str) -> Result<ImageSummary> {
        self.index
            .read(|conn| read::find(conn, reference))?
            .ok_or_else(|| Error::not_cached(asked))
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
        gc::remove(&self.store, &self.index, &parse_reference(reference)?, reference, force)
    }

    /// Deletes every reference no sandbox or snapshot uses, everything that
    /// became unreachable, and every file no index row reaches.
    pub fn prune(&self) -> Result<PruneReport> {
        self.prune_with(&PruneOptions::default())
    }

    /// Prunes what `options` select (see [`PruneOptions`]), or with
    /// `dry_run` reports what that would be and changes nothing.
    pub fn prune_with(&self, options: &PruneOptions) -> Result<PruneReport> {
        gc::prune(&self.store, &self.index, options)
    }

    /// Imports every image of an archive; returns one summary per reference.
    /// The lease holds off the collector throughout, which would otherwise
    /// sweep a decompressed archive in `tmp/` or a reference just recorded.
    /// Cancelled (`options.cancel`), it stops at its next read, takes back
    /// what it published, and fails with `Aborted`.
    pub fn load(&self, path: &Path, options: &LoadOptions) -> Result<Vec<ImageSummary>> {
        let gc = collect::settings(self.home())?;
        let progress = options.progress.clone().unwrap_or_else(oci::progress::ignore);
        let loaded = (|| {
            let lease = Lease::take(&self.store, &self.index)?;
            let mut archive = Archive::open(path, &self.store, Meter::new(progress.clone(), options.cancel.clone()))?;
            let images = archive.resolve(options)?;
            let records = parallel::map(&images, PARALLEL_IMAGES, |image| match options.cancelled() {
                true => Err(Error::Aborted),
                false => ingest::ingest(&lease, image, &archive, &progress),
            })?;
            if options.cancelled() {
                return Err(Error::Aborted);
            }
            ingest::record(lease, &records)
        })();
        // A read the cancellation cut short fails as whatever it was reading.
        let summaries = loaded.map_err(|e| if options.cancelled() { Error::Aborted } else { e })?;
        let brought: Vec<Reference> = summaries.iter().map(|s| s.reference.clone()).collect();
        self.collect_after(gc, &brought, &progress)?;
        Ok(summaries)
    }

    /// Brings the image `reference` names into the cache from its registry,
    /// as `request` says (see [`pull::pull`]), then collects if that left
    /// the cache above the budget of `config.json` ([`collect`]).
    pub fn pull(&self, reference: &str, request: &PullRequest<'_>) -> Result<ImageSummary> {
        let gc = collect::settings(self.home())?;
        let summary = pull::pull(&self.store, &self.index, &parse_reference(reference)?, reference, request)?;
        self.collect_after(gc, std::slice::from_ref(&summary.reference), request.progress)?;
        Ok(summary)
    }
}

/// Refuses a sandbox or snapshot name nobody could type back.
fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{kind} name {name:?} must be 1-255 printable characters"
        )));
    }
    Ok(())
}

/// A layer of `image` whose EROFS image or framing the cache lost: only the
/// image's source can bring it back.
fn missing_layer(store: &Store, diff_id: &oci::Digest, image: &Reference) -> Error {
    Error::Cache {
        path: store.layer_path(diff_id),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("layer {diff_id} of {image} is missing from the cache; load or pull the image again"),
        ),
    }
}

//! What a pull or a load reports while it runs. One event type, emitted by
//! the registry client (downloads, retries) and by the engine (layers,
//! the root disk) alike, so a caller sees one ordered stream and a
//! binding converts one type. Later stages add variants; none reshapes
//! another.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{Digest, Reference};

/// One step of a pull or a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The reference resolved to a manifest with these layers (blob digest, size).
    Resolved {
        /// The manifest the reference names for the chosen platform.
        manifest_digest: Digest,
        /// Its layers as distributed, bottom to top.
        layers: Vec<(Digest, u64)>,
    },
    /// Bytes of one blob received so far: when it opens, at most every
    /// 100 ms while it streams, and once it is complete.
    Download {
        /// The blob.
        digest: Digest,
        /// Bytes received, counting from the blob's start across resumes.
        downloaded: u64,
        /// The blob's size.
        total: u64,
    },
    /// A request failed transiently and is tried again after `wait`.
    Retry {
        /// The blob or manifest concerned, when known.
        digest: Option<Digest>,
        /// Which retry this is (1 for the first).
        attempt: u32,
        /// Why the previous try failed (never a secret).
        reason: String,
        /// How long the client waits before the retry.
        wait: Duration,
    },
    /// A layer passed a step on its way into the cache.
    Layer {
        /// The blob's digest.
        digest: Digest,
        /// The layer's diff_id.
        diff_id: Digest,
        /// Which step.
        step: LayerStep,
    },
    /// Bytes of an archive read so far by a load: while a compressed
    /// archive is decompressed, of the file; then of the layers being
    /// converted. Sent when each phase starts, at most every 100 ms, and
    /// at its end.
    Archive {
        /// Bytes read in this phase.
        read: u64,
        /// Bytes this phase reads in all.
        total: u64,
    },
    /// The image's root disk (fsmeta and VMDK) is written.
    Disk {
        /// The merged metadata image.
        fsmeta: PathBuf,
        /// The VMDK descriptor.
        vmdk: PathBuf,
    },
    /// The call left the cache above the budget `config.json` sets, and
    /// the automatic collection evicted least recently used images.
    Gc {
        /// The references it evicted, sorted.
        references: Vec<String>,
        /// Bytes of the files it deleted.
        bytes_reclaimed: u64,
        /// The cache's size afterwards.
        remaining_bytes: u64,
        /// The size it collected down to (`gc.targetBytes`).
        budget_bytes: u64,
    },
    /// The reference is in the cache.
    Complete {
        /// The reference, normalized.
        reference: Reference,
        /// The manifest it names.
        manifest_digest: Digest,
    },
}

/// The steps of one layer, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerStep {
    /// The cache already held the layer: nothing was read.
    Cached,
    /// The blob's digest and size and the tar's diff_id matched.
    Verified,
    /// The layer's EROFS image is published and recorded.
    Converted,
}

/// Where one call's progress goes. Shared by the threads that download
/// and convert, so it must be cheap and must not block.
pub type Sink = Arc<dyn Fn(Progress) + Send + Sync>;

/// A sink that drops everything, for calls nobody watches.
pub fn ignore() -> Sink {
    Arc::new(|_| {})
}

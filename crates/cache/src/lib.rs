//! The microsandbox image cache engine. Data flows one way, and the
//! modules follow it: a [`source`] (archive or registry) yields blobs; the
//! [`stream`] stage verifies each layer's blob and tar as they pass and
//! turns the tar into an EROFS image; the [`ingest`] stage publishes those
//! under a lease and records the image in the [`index`]; [`disk`] builds
//! the root disk (fsmeta and a VMDK). The collector ([`gc`]) stands apart:
//! it reads reachability from the index and deletes what no root reaches.
//! [`engine`] composes these into the operations a user sees. Nothing here
//! knows about Node: the binding converts types.

#![warn(missing_docs)]

pub mod backend;
mod disk;
mod engine;
pub mod error;
mod export;
mod gc;
mod index;
mod ingest;
pub mod model;
pub mod os;
mod parallel;
mod seal;
pub mod source;
mod store;
mod stream;
mod upgrade;

/// A map keyed by digests (or their hex), as the collector and `check`
/// build by the tens of thousands: foldhash, seeded per process, hashes a
/// 64-character key several times faster than the standard SipHash.
pub(crate) type DigestMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A set of digests (or their hex), as [`DigestMap`].
pub(crate) type DigestSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

pub use engine::{parse_reference, Cache};
pub use error::{Error, Result};
pub use export::Format;
pub use gc::policy::{self as prune_policy, Pattern, PruneOptions};
pub use model::{
    BootImage, BudgetOutcome, CheckProblem, CheckReport, ConfigDetails, DiskUsage, FileCount, ImageDetails, ImageSummary, ImageUsage,
    LayerDetails, PruneReport,
};
pub use source::archive::LoadOptions;
pub use source::pull::{PullPolicy, PullRequest, REGISTRY_SETTINGS};

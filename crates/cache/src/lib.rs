//! The microsandbox image cache engine. Data flows one way: a source
//! (archive or registry) yields verified blobs; each layer's tar becomes an
//! EROFS image; the index records the image; fsmeta and a VMDK make the
//! root disk. Nothing here knows about Node: the binding converts types.

pub mod archive;
pub mod backend;
mod compression;
pub mod digest;
mod disk;
mod engine;
pub mod error;
mod gc;
mod index;
mod ingest;
mod layer;
pub mod manifest;
pub mod model;
pub mod os;
mod parallel;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod registry;
mod source;
mod store;
mod upgrade;
pub mod vmdk;

pub use archive::save::Format;
pub use archive::LoadOptions;
pub use engine::{parse_reference, Cache, REGISTRY_SETTINGS};
pub use error::{Error, Result};
pub use model::{BootImage, ConfigDetails, ImageDetails, ImageSummary, LayerDetails, PruneReport};
pub use pull::{PullEvent, PullObserver, PullPolicy};

//! The OCI vocabulary: what every stage of the cache, and the registry
//! client, talk about. Content digests (and the readers that verify them
//! while data streams past), Docker-style references, platforms,
//! manifests, indexes and configs, and the progress events a pull or a
//! load reports. Nothing here touches the disk or the network, so the
//! registry crate and the engine can share it without depending on
//! each other.

#![warn(missing_docs)]

pub mod digest;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod reference;
#[cfg(feature = "rusqlite")]
mod sql;

pub use digest::{Digest, Mismatch};
pub use manifest::Descriptor;
pub use platform::Platform;
pub use progress::Progress;
pub use reference::Reference;

//! The engine's one error type. Each variant has a stable `code` that the
//! Node binding turns into an exported error class, so callers can branch on
//! what went wrong without parsing messages.

use std::io;
use std::path::{Path, PathBuf};

/// Everything an engine call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No image answers to the reference, in the local cache or in a registry.
    #[error("image {reference} not found in {location}")]
    ImageNotFound { reference: String, location: String },
    /// Removing would take an image away from running sandboxes.
    #[error("image {reference} is in use by sandbox(es) {}; pass force to remove the reference anyway", sandboxes.join(", "))]
    ImageInUse { reference: String, sandboxes: Vec<String> },
    /// The configured backend cannot do this (cloud backends keep no local cache).
    #[error("{0}")]
    Unsupported(String),
    /// The reference string is malformed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// An image archive is missing, unreadable, malformed or unsafe.
    #[error("image archive {path}: {message}")]
    Archive { path: String, message: String },
    /// Content did not hash (or measure) to what its descriptor promised.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    /// A layer's tar stream cannot become a filesystem image.
    #[error("invalid layer {layer}: {message}")]
    InvalidLayer { layer: String, message: String },
    /// A registry failed or refused a request (never includes credentials).
    #[error("registry {registry}, repository {repository}{}: {message}", digest.as_ref().map(|d| format!(", {d}")).unwrap_or_default())]
    Registry {
        registry: String,
        repository: String,
        digest: Option<String>,
        status: Option<u16>,
        message: String,
    },
    /// The registry wants credentials we lack, or refused the ones we sent.
    #[error("registry {registry}, repository {repository}: authentication failed: {message}")]
    Authentication {
        registry: String,
        repository: String,
        message: String,
    },
    /// The caller aborted the operation (an `AbortSignal`).
    #[error("operation aborted")]
    Aborted,
    /// The caller passed an option or name that makes no sense.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The cache directory cannot be read or written (permissions, disk full...).
    #[error("cache {}: {source}", path.display())]
    Cache { path: PathBuf, source: io::Error },
    /// The SQLite index failed.
    #[error("cache index: {0}")]
    Index(#[from] rusqlite::Error),
    /// A bug: something the engine guarantees did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The stable, machine-readable code (`err.code` in JavaScript).
    pub fn code(&self) -> &'static str {
        match self {
            Error::ImageNotFound { .. } => "image_not_found",
            Error::ImageInUse { .. } => "image_in_use",
            Error::Unsupported(_) => "unsupported",
            Error::InvalidReference { .. } => "invalid_reference",
            Error::Archive { .. } => "image_archive",
            Error::DigestMismatch { .. } => "digest_mismatch",
            Error::InvalidLayer { .. } => "invalid_layer",
            Error::Registry { .. } => "registry",
            Error::Authentication { .. } => "authentication",
            Error::Aborted => "aborted",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Cache { .. } => "cache",
            Error::Index(_) => "cache_index",
            Error::Internal(_) => "internal",
        }
    }

    /// Wraps an I/O failure on a cache path, keeping which path failed.
    pub fn cache(path: impl AsRef<Path>) -> impl FnOnce(io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Cache { path, source }
    }

    /// The reference is not in the local cache.
    pub fn not_cached(reference: &str) -> Error {
        Error::ImageNotFound {
            reference: reference.to_string(),
            location: "the local cache".into(),
        }
    }

    /// Builds an archive error for `path`.
    pub fn archive(path: impl AsRef<Path>, message: impl Into<String>) -> Error {
        Error::Archive {
            path: path.as_ref().display().to_string(),
            message: message.into(),
        }
    }
}

/// Shorthand used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

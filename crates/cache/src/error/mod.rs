//! The engine's one error type. Each variant has a stable `code` that the
//! Node binding turns into an exported error class, so callers can branch on
//! what went wrong without parsing messages. The codes, classes and their
//! fields are one table, [`KINDS`].

use std::io;
use std::path::{Path, PathBuf};

/// One row of the error taxonomy: code, JavaScript class (empty: the base
/// class), what it means, and the extra fields the class carries as
/// (name, TypeScript type).
pub type Kind = (&'static str, &'static str, &'static str, &'static [(&'static str, &'static str)]);

/// The error taxonomy, in the order the classes are documented.
pub const KINDS: &[Kind] = &include!("kinds.rs");

/// Everything an engine call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No image answers to the reference, in the local cache or in a registry.
    #[error("image {reference} not found in {location}")]
    ImageNotFound {
        /// The reference as the caller spelt it.
        reference: String,
        /// Where it was looked for.
        location: String,
    },
    /// Removing would take an image away from running sandboxes.
    #[error("image {reference} is in use by sandbox(es) {}; pass force to remove the reference anyway", sandboxes.join(", "))]
    ImageInUse {
        /// The reference as the caller spelt it.
        reference: String,
        /// The sandboxes holding it.
        sandboxes: Vec<String>,
    },
    /// The configured backend cannot do this (cloud backends keep no local cache).
    #[error("{0}")]
    Unsupported(String),
    /// The reference string is malformed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image archive is missing, unreadable, malformed or unsafe.
    #[error("image archive {path}: {message}")]
    Archive {
        /// The archive (or member) at fault.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Content did not hash (or measure) to what its descriptor promised.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest (and size) promised.
        expected: String,
        /// What the bytes measured.
        actual: String,
    },
    /// A layer's tar stream cannot become a filesystem image.
    #[error("invalid layer {layer}: {message}")]
    InvalidLayer {
        /// The layer's blob digest and diff_id.
        layer: String,
        /// What is wrong.
        message: String,
    },
    /// A registry call failed: the registry client's own kinds (not found,
    /// refused, authentication, digest mismatch, bad settings, aborted), each
    /// keeping its code. Messages never include credentials.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// The caller aborted the operation (an `AbortSignal`).
    #[error("operation aborted")]
    Aborted,
    /// The caller passed an option or name that makes no sense.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The cache directory cannot be read or written (permissions, disk full...).
    #[error("cache {}: {source}", path.display())]
    Cache {
        /// The cache file or directory that failed.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
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
            Error::Registry(e) => e.code(),
            Error::Aborted => "aborted",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Cache { .. } => "cache",
            Error::Index(_) => "cache_index",
            Error::Internal(_) => "internal",
        }
    }

    /// The message as users read it. Messages quote input (names from an
    /// archive, a registry's error text), so control characters are
    /// escaped: a terminal that prints the message executes nothing.
    pub fn message(&self) -> String {
        printable(&self.to_string())
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

impl From<oci::Mismatch> for Error {
    fn from(m: oci::Mismatch) -> Error {
        Error::DigestMismatch {
            what: m.what,
            expected: m.expected,
            actual: m.actual,
        }
    }
}

/// `text` with every control character (C0, DEL, C1) written as a Rust
/// escape (`\u{1b}`), everything else as it is.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Shorthand used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_one_row_of_the_taxonomy() {
        let io = || io::Error::other("x");
        let samples = [
            Error::not_cached("a"),
            Error::ImageInUse {
                reference: "a".into(),
                sandboxes: vec![],
            },
            Error::Unsupported("x".into()),
            Error::InvalidReference {
                reference: "a".into(),
                reason: "x".into(),
            },
            Error::archive("p", "x"),
            Error::DigestMismatch {
                what: "x".into(),
                expected: "x".into(),
                actual: "x".into(),
            },
            Error::InvalidLayer {
                layer: "x".into(),
                message: "x".into(),
            },
            Error::InvalidArgument("x".into()),
            Error::cache("p")(io()),
            Error::Index(rusqlite::Error::InvalidQuery),
            Error::Registry(registry::Error::Registry {
                registry: "r".into(),
                repository: "r".into(),
                digest: None,
                status: None,
                message: "x".into(),
            }),
            Error::Registry(registry::Error::Authentication {
                registry: "r".into(),
                repository: "r".into(),
                message: "x".into(),
            }),
            Error::Aborted,
            Error::Internal("x".into()),
        ];
        let codes: Vec<&str> = samples.iter().map(Error::code).collect();
        assert_eq!(
            Error::archive("a\u{1b}[2Jb\x07", "x").message(),
            "image archive a\\u{1b}[2Jb\\u{7}: x"
        );
        let table: Vec<&str> = KINDS.iter().map(|k| k.0).collect();
        assert_eq!(codes, table);
    }
}

//! What a registry call can fail with. Each kind answers with one of the
//! engine's error codes, so the engine carries these errors as they are
//! and callers branch on the same codes whatever failed.

use oci::Mismatch;

/// Everything a registry call can fail with. Messages never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry has no manifest for the reference.
    #[error("image {reference} not found in {location}")]
    ImageNotFound {
        /// The reference asked for.
        reference: String,
        /// Where it was looked for (`registry <host>`).
        location: String,
    },
    /// A registry failed or refused a request.
    #[error("registry {registry}, repository {repository}{}: {message}", digest.as_ref().map(|d| format!(", {d}")).unwrap_or_default())]
    Registry {
        /// The registry (or mirror) as references name it.
        registry: String,
        /// The repository path.
        repository: String,
        /// The blob or manifest concerned, when one is.
        digest: Option<String>,
        /// The HTTP status, when one was received.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
    /// The registry wants credentials we lack, or refused the ones we sent.
    #[error("registry {registry}, repository {repository}: authentication failed: {message}")]
    Authentication {
        /// The registry as references name it.
        registry: String,
        /// The repository path.
        repository: String,
        /// What went wrong.
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
    /// A setting makes no sense (a mirror URL, a CA bundle).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caller's cancel flag was raised.
    #[error("operation aborted")]
    Aborted,
    /// A bug: something this crate guarantees did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<Mismatch> for Error {
    fn from(m: Mismatch) -> Error {
        Error::DigestMismatch {
            what: m.what,
            expected: m.expected,
            actual: m.actual,
        }
    }
}

impl Error {
    /// The engine's code for this kind (`err.code` in JavaScript).
    pub fn code(&self) -> &'static str {
        match self {
            Error::ImageNotFound { .. } => "image_not_found",
            Error::Registry { .. } => "registry",
            Error::Authentication { .. } => "authentication",
            Error::DigestMismatch { .. } => "digest_mismatch",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Aborted => "aborted",
            Error::Internal(_) => "internal",
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

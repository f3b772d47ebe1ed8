//! Pulling from OCI distribution registries (Docker Hub, GHCR, private
//! registries, pull-through mirrors). A [`Client`] serves one repository:
//! it resolves a reference to the manifest of the wanted platform, fetches
//! the config, and streams layer blobs to the ingest pipeline through
//! [`BlobReader`], retrying and resuming transient failures on the way.
//!
//! Policy in brief (details on the items):
//! - HTTPS (rustls, Mozilla roots plus configured CA bundles). Plain HTTP
//!   only for loopback hosts and hosts marked insecure, and only after
//!   HTTPS failed, as Docker does.
//! - Anonymous, Basic, or Bearer tokens from the registry's token service
//!   (identity tokens through the OAuth2 refresh grant); credentials from
//!   the options, else as Docker finds them (`credHelpers`, `credsStore`,
//!   `auths` in its `config.json`). `login`/`logout` store them there.
//! - Mirrors (with a path prefix and capabilities, as containerd's
//!   `hosts.toml`) are tried in order before the origin; any failure of a
//!   mirror falls through to the next one. Each host may have its own CAs
//!   and a client certificate.
//! - An abort (the cancel flag) wakes every socket wait within 50 ms; a
//!   document request (manifest, token) also ends at a deadline in all.
//! - Transient failures (resets, timeouts, 429, 5xx) are retried with
//!   bounded exponential backoff; blob streams resume with `Range`.
//! - Errors name registry, repository and digest, never a secret.

#![warn(missing_docs)]

mod auth;
mod blobs;
mod client;
mod config;
mod docker;
pub mod error;
mod helper;
mod httpdate;
mod login;
mod net;
mod resolve;
mod response;
mod settings;
mod token;
mod transport;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use oci::progress::Sink;
use oci::Platform;

pub use auth::Credentials;
pub use blobs::BlobReader;
pub use client::Client;
pub use config::{HostTls, Mirror, RegistryConfig, RetryPolicy};
pub use error::{Error, Result};
pub use login::{login, logout, Stored};

/// Entry points for the fuzz targets in `fuzz/`: parsers of what a
/// registry sends that the public API only reaches over a socket. Not an
/// API (hidden, and only with the `fuzzing` feature).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Parses `WWW-Authenticate` values as a 401 answer's headers.
    pub fn www_authenticate(headers: &[&str]) -> bool {
        crate::auth::parse_challenges(headers.iter().copied()).is_some()
    }

    /// Parses a `Retry-After` value (seconds or an HTTP date).
    pub fn retry_after(value: &str) -> Option<std::time::Duration> {
        crate::transport::retry_after(value, std::time::SystemTime::now())
    }
}

/// Everything a pull needs besides the reference.
#[derive(Clone)]
pub struct PullOptions {
    /// The platform picked from multi-platform indexes.
    pub platform: Platform,
    /// Credentials for the reference's registry (not its mirrors); when
    /// absent, Docker's `config.json` is consulted.
    pub auth: Option<Credentials>,
    /// Lets the reference's registry use plain HTTP or an unverified TLS
    /// certificate (Docker's "insecure registry").
    pub insecure: bool,
    /// Mirrors, CA bundles, insecure hosts, retry policy.
    pub config: RegistryConfig,
    /// Receives downloads and retries.
    pub progress: Option<Sink>,
    /// Set to true to abort: requests and streams stop with `Error::Aborted`.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for PullOptions {
    /// The host's platform, anonymous or `config.json` credentials, HTTPS.
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            auth: None,
            insecure: false,
            config: RegistryConfig::default(),
            progress: None,
            cancel: None,
        }
    }
}

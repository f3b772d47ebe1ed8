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
//! - Anonymous, Basic, or Bearer tokens from the registry's token service;
//!   credentials from the options, else Docker's `config.json`.
//! - Mirrors are tried in order before the origin; any failure of a mirror
//!   falls through to the next one.
//! - Transient failures (resets, timeouts, 429, 5xx) are retried with
//!   bounded exponential backoff; blob streams resume with `Range`.
//! - Errors name registry, repository and digest, never a secret.

#![warn(missing_docs)]

mod auth;
mod blobs;
mod client;
mod config;
pub mod error;
mod resolve;
mod response;
mod transport;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use oci::progress::Sink;
use oci::Platform;

pub use auth::Credentials;
pub use blobs::BlobReader;
pub use client::Client;
pub use config::{RegistryConfig, RetryPolicy};
pub use error::{Error, Result};

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

//! Pulling from OCI distribution registries (Docker Hub, GHCR, private
//! registries, pull-through mirrors). A [`Client`] serves one repository:
//! it resolves a reference to the manifest of the wanted platform, fetches
//! the config, and streams layer blobs to the ingest pipeline through
//! [`BlobSource`], retrying and resuming transient failures on the way.
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

mod auth;
mod blobs;
mod client;
mod config;
mod resolve;
mod response;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::digest::Digest;
use crate::platform::Platform;

pub use crate::source::BlobSource;
pub use auth::Credentials;
pub use client::Client;
pub use config::{RegistryConfig, RetryPolicy};

/// A progress callback; called from download threads, so it must be cheap.
pub type ProgressFn = Arc<dyn Fn(&DownloadEvent) + Send + Sync>;

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
    /// Receives download progress.
    pub progress: Option<ProgressFn>,
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

/// What a pull reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadEvent {
    /// Bytes of one blob received so far. Sent when the blob opens, at most
    /// every 100 ms while it streams, and once it is complete.
    Bytes {
        /// The blob.
        digest: Digest,
        /// Bytes received (counting from the blob's start, across resumes).
        downloaded: u64,
        /// The blob's size.
        total: u64,
    },
    /// A request failed transiently and is about to be tried again.
    Retrying {
        /// The blob or manifest concerned, when known.
        digest: Option<Digest>,
        /// Which retry this is (1 for the first).
        attempt: u32,
        /// Why the previous try failed (no secrets).
        reason: String,
    },
}

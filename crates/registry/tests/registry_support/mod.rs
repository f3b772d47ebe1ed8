//! Helpers shared by the registry integration tests: a real registry
//! (CNCF distribution, pushed to with skopeo), a handcrafted HTTP server for
//! faults, a token issuer, TLS material from openssl, images built here, and
//! a pull driven through the client API. Everything listens on 127.0.0.1.
//! Every error `pull` and `login` return and every progress event is
//! checked for the registered secrets (`secrets`).
#![allow(dead_code)] // each test binary uses a different subset

pub mod distribution;
pub mod fake;
pub mod faulty;
pub mod helpers;
pub mod image;
pub mod secrets;
pub mod tls;
pub mod token;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci::digest::{Digest, HashingReader};
use oci::manifest::Manifest;
use oci::progress::Progress;
use oci::reference::Reference;
use registry::Result;
use registry::{Client, PullOptions, RegistryConfig, RetryPolicy, Stored};

/// Fails (never skips) when a tool the tests rely on is missing.
pub fn require_tool(name: &str) -> String {
    let found = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()));
    let path = found
        .unwrap_or_else(|| panic!("required tool `{name}` is not installed (Debian: docker-registry, skopeo, openssl, apache2-utils)"));
    path.to_string_lossy().into_owned()
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free TCP port on 127.0.0.1 (free when asked; a race is possible but rare).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Options that read no user configuration and retry quickly.
pub fn options(dir: &Path) -> PullOptions {
    let mut options = PullOptions::default();
    options.config.docker_config = Some(dir.join("no-docker-config.json"));
    options.config.retry = RetryPolicy {
        attempts: 4,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    };
    options.config.timeout = Duration::from_secs(10);
    options
}

/// Collects progress events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<Progress>>>);

impl Events {
    /// Installs itself as `options.progress`, checking each event for secrets.
    pub fn attach(&self, options: &mut PullOptions) {
        let events = self.0.clone();
        let test = secrets::test_name();
        options.progress = Some(Arc::new(move |e: Progress| {
            secrets::check(&test, "a progress event", &format!("{e:?}"));
            events.lock().unwrap().push(e)
        }));
    }

    pub fn all(&self) -> Vec<Progress> {
        self.0.lock().unwrap().clone()
    }

    pub fn retries(&self) -> usize {
        self.all().iter().filter(|e| matches!(e, Progress::Retry { .. })).count()
    }
}

/// What a full pull through the client API produced.
pub struct Pulled {
    pub digest: Digest,
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
}

/// Reads one blob whole through `BlobSource::open`, verifying digest and
/// size the way the ingest pipeline does.
pub fn read_blob(client: &Client, blob: &oci::manifest::Descriptor) -> Result<Vec<u8>> {
    let mut reader = HashingReader::new(client.open_blob(blob)?);
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| client.read_error(blob, e))?;
    let (digest, size) = reader.finish();
    oci::digest::verify(&format!("blob {}", blob.digest), &blob.digest, Some(blob.size), &digest, size)?;
    Ok(bytes)
}

/// Resolves, fetches the config and reads every layer of `reference`; the
/// options' credentials are registered as secrets, and an error is checked.
pub fn pull(reference: &str, options: &PullOptions) -> Result<Pulled> {
    if let Some(auth) = &options.auth {
        secrets::register_credentials(auth);
    }
    let pulled = pull_unchecked(reference, options);
    if let Err(e) = &pulled {
        secrets::check_error(&format!("the error of pulling {reference}"), e);
    }
    pulled
}

fn pull_unchecked(reference: &str, options: &PullOptions) -> Result<Pulled> {
    let reference = Reference::parse(reference).expect("test references are valid");
    let client = Client::new(&reference, options)?;
    let (digest, manifest_bytes, manifest) = client.resolve_manifest()?;
    let config = client.fetch_config(&manifest)?;
    let layers = manifest
        .layers
        .iter()
        .map(|layer| read_blob(&client, layer))
        .collect::<Result<_>>()?;
    Ok(Pulled {
        digest,
        manifest_bytes,
        manifest,
        config,
        layers,
    })
}

/// `registry::login`, with the credentials registered and an error checked.
pub fn login(registry: &str, username: &str, password: &str, config: &RegistryConfig) -> Result<Stored> {
    secrets::register_basic(username, password);
    let stored = registry::login(registry, username, password, config);
    if let Err(e) = &stored {
        secrets::check_error(&format!("the error of logging in to {registry}"), e);
    }
    stored
}

//! A real registry (Debian's `docker-registry`, CNCF distribution 2.8) on a
//! random 127.0.0.1 port with its own storage, and skopeo to push to it.

use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci::digest::Digest;
use tempfile::TempDir;

use super::image::{write_layout, Image};
use super::{free_port, require_tool, run};

const STARTUP: Duration = Duration::from_secs(15);

/// How to configure a registry.
#[derive(Default)]
pub struct Setup {
    /// Certificate and key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// An htpasswd file: require Basic auth.
    pub htpasswd: Option<PathBuf>,
    /// Token auth: (realm, service, issuer, root certificate bundle).
    pub token: Option<(String, String, String, PathBuf)>,
    /// Pull-through cache of this remote URL.
    pub proxy: Option<String>,
    /// With `tls`: require client certificates signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// A running registry, stopped (its process killed) when dropped.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl Registry {
    /// Starts a registry and waits until it accepts connections.
    pub fn start(setup: Setup) -> Registry {
        let binary = require_tool("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut yaml = String::new();
        writeln!(yaml, "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true").unwrap();
        writeln!(
            yaml,
            "storage:\n  filesystem:\n    rootdirectory: {}",
            dir.path().join("storage").display()
        )
        .unwrap();
        writeln!(yaml, "  maintenance:\n    uploadpurging:\n      enabled: false").unwrap();
        writeln!(yaml, "http:\n  addr: 127.0.0.1:{port}\n  secret: test-secret").unwrap();
        if let Some((cert, key)) = &setup.tls {
            writeln!(yaml, "  tls:\n    certificate: {}\n    key: {}", cert.display(), key.display()).unwrap();
            if let Some(ca) = &setup.client_ca {
                writeln!(yaml, "    clientcas:\n      - {}", ca.display()).unwrap();
            }
        }
        if let Some(htpasswd) = &setup.htpasswd {
            writeln!(yaml, "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}", htpasswd.display()).unwrap();
        }
        if let Some((realm, service, issuer, bundle)) = &setup.token {
            writeln!(
                yaml,
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}",
                bundle.display()
            )
            .unwrap();
        }
        if let Some(remote) = &setup.proxy {
            writeln!(yaml, "proxy:\n  remoteurl: {remote}").unwrap();
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start docker-registry");
        let mut registry = Registry { child, port, dir };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited with {status}:\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not listen on port {} within {STARTUP:?}:\n{}",
            self.port,
            self.log()
        );
    }

    /// The registry's own log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether the registry's storage comes to hold the blob within a few
    /// seconds (a pull-through cache stores what it served, in the background).
    pub fn stores_blob(&self, digest: &Digest) -> bool {
        let hex = digest.hex();
        let data = self
            .dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if data.is_file() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops the registry now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How to push with skopeo.
#[derive(Default)]
pub struct Push<'a> {
    /// Push every platform of an index (`--all`).
    pub all: bool,
    /// Convert to Docker schema 2 (`--format v2s2`).
    pub docker: bool,
    /// `user:password`.
    pub creds: Option<&'a str>,
    /// A directory holding `ca.crt` to verify the registry with.
    pub cert_dir: Option<&'a Path>,
}

/// Writes `image` as an OCI layout in `work` and pushes it to
/// `destination` (`host/repository:tag`); returns the pushed manifest's digest.
pub fn push_image(work: &Path, image: &Image, destination: &str, options: Push) -> Digest {
    let tag = destination.rsplit_once(':').map(|(_, tag)| tag).filter(|tag| !tag.contains('/'));
    let tag = tag.unwrap_or_else(|| panic!("{destination} names no tag"));
    let layout = work.join("layout");
    write_layout(&layout, tag, image);
    push(&layout, tag, destination, options)
}

/// Pushes `layout:tag` to `docker://host/repository:tag`; returns the
/// pushed manifest's digest.
pub fn push(layout: &Path, tag: &str, destination: &str, push: Push) -> Digest {
    let skopeo = require_tool("skopeo");
    let digest_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(skopeo);
    cmd.args(["--insecure-policy", "copy", "--retry-times", "0", "--digestfile"])
        .arg(digest_file.path());
    if push.all {
        cmd.arg("--all");
    }
    if push.docker {
        cmd.args(["--format", "v2s2"]);
    }
    if let Some(creds) = push.creds {
        cmd.args(["--dest-creds", creds]);
    }
    match push.cert_dir {
        Some(dir) => cmd.arg("--dest-cert-dir").arg(dir),
        None => cmd.arg("--dest-tls-verify=false"),
    };
    cmd.arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{destination}"));
    // skopeo must not pick up the machine's registry credentials.
    cmd.env("REGISTRY_AUTH_FILE", digest_file.path().with_extension("auth.json"));
    run(&mut cmd);
    Digest::parse(std::fs::read_to_string(digest_file.path()).unwrap().trim()).unwrap()
}

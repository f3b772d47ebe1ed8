//! A real registry behind TLS (a CA made here) with htpasswd Basic auth:
//! credentials from the options or from a docker config.json, missing or
//! wrong credentials, an unknown CA, and `insecure`.

mod registry_support;

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use registry::Error;
use registry::{Credentials, PullOptions};
use registry_support::distribution::{push_image, Push, Registry, Setup};
use registry_support::image::{self, Image};
use registry_support::tls::{certs, htpasswd, Certs};
use registry_support::{options, pull, secrets};

const USER: &str = "puller";
const PASSWORD: &str = "s3cret-Pa55word";
/// A password the registry refuses.
const WRONG: &str = "not-the-password";

struct Fixture {
    registry: Registry,
    certs: Certs,
    image: Image,
    work: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        secrets::register_basic(USER, PASSWORD);
        secrets::register_basic(USER, WRONG);
        let work = tempfile::tempdir().unwrap();
        let certs = certs(work.path(), "good");
        let registry = Registry::start(Setup {
            tls: Some((certs.server_cert.clone(), certs.server_key.clone())),
            htpasswd: Some(htpasswd(work.path(), USER, PASSWORD)),
            ..Setup::default()
        });
        let image = image::simple("amd64", 10);
        let creds = format!("{USER}:{PASSWORD}");
        push_image(
            work.path(),
            &image,
            &format!("{}/private/app:v1", registry.host()),
            Push {
                creds: Some(&creds),
                cert_dir: Some(&certs.ca_dir),
                ..Push::default()
            },
        );
        Fixture {
            registry,
            certs,
            image,
            work,
        }
    }

    fn reference(&self) -> String {
        format!("{}/private/app:v1", self.registry.host())
    }

    /// Options trusting the test CA, with no credentials.
    fn options(&self) -> PullOptions {
        let mut opts = options(self.work.path());
        opts.config.ca_bundles = vec![self.certs.ca.clone()];
        opts
    }
}

fn basic(password: &str) -> Credentials {
    Credentials::Basic {
        username: USER.into(),
        password: password.into(),
    }
}

fn write_docker_config(path: &Path, key: &str, entry: serde_json::Value) {
    std::fs::write(path, serde_json::json!({"auths": {key: entry}}).to_string()).unwrap();
}

#[test]
fn explicit_credentials_pull_over_tls() {
    let f = Fixture::new();
    let mut opts = f.options();
    opts.auth = Some(basic(PASSWORD));
    let pulled = pull(&f.reference(), &opts).unwrap();
    assert_eq!(pulled.digest, f.image.manifest_digest);
    assert_eq!(pulled.config, f.image.config);
}

#[test]
fn docker_config_credentials_pull_over_tls() {
    let f = Fixture::new();
    let config = f.work.path().join("config.json");
    let host = f.registry.host();
    let mut opts = f.options();
    opts.config.docker_config = Some(config.clone());

    write_docker_config(
        &config,
        &host,
        serde_json::json!({"auth": STANDARD.encode(format!("{USER}:{PASSWORD}"))}),
    );
    assert_eq!(pull(&f.reference(), &opts).unwrap().digest, f.image.manifest_digest);

    write_docker_config(
        &config,
        &format!("https://{host}/v2/"),
        serde_json::json!({"username": USER, "password": PASSWORD}),
    );
    assert_eq!(pull(&f.reference(), &opts).unwrap().digest, f.image.manifest_digest);

    // Explicit credentials win over the file's.
    write_docker_config(
        &config,
        &host,
        serde_json::json!({"auth": STANDARD.encode(format!("{USER}:wrong"))}),
    );
    opts.auth = Some(basic(PASSWORD));
    assert_eq!(pull(&f.reference(), &opts).unwrap().digest, f.image.manifest_digest);
}

#[test]
fn missing_or_wrong_credentials_are_authentication_errors() {
    let f = Fixture::new();
    match pull(&f.reference(), &f.options()) {
        Err(Error::Authentication {
            registry,
            repository,
            message,
        }) => {
            assert_eq!(
                (registry.as_str(), repository.as_str()),
                (f.registry.host().as_str(), "private/app")
            );
            assert!(message.contains("no credentials"), "{message}");
        }
        other => panic!("expected an authentication error, got {:?}", other.map(|p| p.digest)),
    }
    let mut opts = f.options();
    opts.auth = Some(basic(WRONG));
    match pull(&f.reference(), &opts) {
        Err(e @ Error::Authentication { .. }) => {
            let text = format!("{e} {e:?}");
            assert!(
                !text.contains(WRONG) && !text.contains(&STANDARD.encode(format!("{USER}:{WRONG}"))),
                "{text}"
            );
        }
        other => panic!("expected an authentication error, got {:?}", other.map(|p| p.digest)),
    }
    // A broken docker config only matters once credentials are needed.
    let config = f.work.path().join("broken.json");
    std::fs::write(&config, "{not json").unwrap();
    opts.auth = None;
    opts.config.docker_config = Some(config);
    match pull(&f.reference(), &opts) {
        Err(Error::Authentication { message, .. }) => assert!(message.contains("broken.json"), "{message}"),
        other => panic!("expected an authentication error, got {:?}", other.map(|p| p.digest)),
    }
}

#[test]
fn an_unknown_ca_is_a_clear_tls_error_and_insecure_skips_verification() {
    let f = Fixture::new();
    let other = certs(f.work.path(), "other");
    for bundles in [vec![], vec![other.ca.clone()]] {
        let mut opts = f.options();
        opts.config.ca_bundles = bundles;
        opts.auth = Some(basic(PASSWORD));
        let started = std::time::Instant::now();
        match pull(&f.reference(), &opts) {
            Err(Error::Registry {
                registry,
                message,
                status: None,
                ..
            }) => {
                assert_eq!(registry, f.registry.host());
                assert!(message.contains("certificate") && message.contains("UnknownIssuer"), "{message}");
                assert!(!message.contains(PASSWORD));
            }
            other => panic!("expected a TLS error, got {:?}", other.map(|p| p.digest)),
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "TLS failures are not retried"
        );
    }
    let mut opts = options(f.work.path());
    opts.auth = Some(basic(PASSWORD));
    opts.insecure = true;
    assert_eq!(pull(&f.reference(), &opts).unwrap().digest, f.image.manifest_digest);
    // An unreadable CA bundle is the caller's mistake.
    opts.config.ca_bundles = vec![f.work.path().join("missing.pem")];
    assert!(matches!(pull(&f.reference(), &opts), Err(Error::InvalidArgument(_))));
}

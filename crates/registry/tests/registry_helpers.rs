//! Docker credential helpers against a real registry (CNCF distribution
//! with htpasswd, behind TLS): Debian's `docker-credential-pass` over a
//! password store made here serves the pull through `credsStore` and
//! through `credHelpers` for the one host; `login` stores through it (and
//! `docker-credential-pass list` shows it) or, without a helper, in
//! `config.json`; helpers that hang, fail, answer garbage or are missing
//! leave the pull anonymous, and the refusal names what went wrong within
//! the helper's bound. No message holds a secret.

mod registry_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use registry::{Error, PullOptions, Stored};
use registry_support::distribution::{push_image, Push, Registry, Setup};
use registry_support::helpers::{gone, PassStore};
use registry_support::image::{self, Image};
use registry_support::tls::{certs, htpasswd, Certs};
use registry_support::{login, options, pull, secrets};
use serde_json::json;

const USER: &str = "helped";
const PASSWORD: &str = "pa55-From-The-Store";
/// A password the registry refuses.
const WRONG: &str = "not-the-password";
/// What the garbage-answering helper prints.
const GARBAGE: &str = "hunter2-garbage";

struct Fixture {
    pass: PassStore,
    registry: Registry,
    certs: Certs,
    image: Image,
    work: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        secrets::register_basic(USER, PASSWORD);
        secrets::register_basic(USER, WRONG);
        secrets::register(GARBAGE);
        let work = tempfile::tempdir().unwrap();
        let certs = certs(work.path(), "helpers");
        let registry = Registry::start(Setup {
            tls: Some((certs.server_cert.clone(), certs.server_key.clone())),
            htpasswd: Some(htpasswd(work.path(), USER, PASSWORD)),
            ..Setup::default()
        });
        let image = image::simple("amd64", 12);
        let creds = format!("{USER}:{PASSWORD}");
        let destination = format!("{}/helped/app:v1", registry.host());
        let push = Push {
            creds: Some(&creds),
            cert_dir: Some(&certs.ca_dir),
            ..Push::default()
        };
        push_image(work.path(), &image, &destination, push);
        Fixture {
            pass: PassStore::new(),
            registry,
            certs,
            image,
            work,
        }
    }

    fn reference(&self) -> String {
        format!("{}/helped/app:v1", self.registry.host())
    }

    /// Options with this Docker config, the helpers' environment, the test CA.
    fn options(&self, docker_config: PathBuf) -> PullOptions {
        let mut opts = options(self.work.path());
        opts.config.ca_bundles = vec![self.certs.ca.clone()];
        opts.config.docker_config = Some(docker_config);
        opts.config.helper_env = Some(self.pass.env());
        opts
    }

    /// The text of `e` (Display and Debug); the support checked it for secrets.
    fn text(&self, e: &Error) -> String {
        format!("{e} {e:?}")
    }
}

#[test]
fn pulls_through_the_pass_store_as_creds_store_and_cred_helper() {
    let f = Fixture::new();
    let host = f.registry.host();
    f.pass.store(&host, USER, PASSWORD);
    let config = f.pass.docker_config(json!({"credsStore": "pass"}));
    assert_eq!(pull(&f.reference(), &f.options(config)).unwrap().digest, f.image.manifest_digest);

    // credHelpers names the helper for this host alone; the store named for
    // every other host does not exist, and is not asked.
    let config = f
        .pass
        .docker_config(json!({"credsStore": "not-installed", "credHelpers": {host.clone(): "pass"}}));
    assert_eq!(pull(&f.reference(), &f.options(config)).unwrap().digest, f.image.manifest_digest);

    // Without the helper entry, that missing store is all there is.
    let config = f.pass.docker_config(json!({"credsStore": "not-installed"}));
    match pull(&f.reference(), &f.options(config)) {
        Err(e @ Error::Authentication { .. }) => {
            let text = f.text(&e);
            assert!(text.contains("docker-credential-not-installed is not installed"), "{text}");
        }
        other => panic!("expected an authentication error, got {:?}", other.map(|p| p.digest)),
    }
}

#[test]
fn login_stores_through_the_helper_and_logout_erases() {
    let f = Fixture::new();
    let host = f.registry.host();
    let config = f.pass.docker_config(json!({"credsStore": "pass", "proxies": {"default": {}}}));
    let opts = f.options(config.clone());

    match login(&host, USER, WRONG, &opts.config) {
        Err(e @ Error::Authentication { .. }) => assert!(!f.text(&e).contains(WRONG)),
        other => panic!("expected an authentication error, got {other:?}"),
    }
    assert!(f.pass.list().is_empty(), "refused credentials are not stored");

    let stored = login(&host, USER, PASSWORD, &opts.config).unwrap();
    assert_eq!(stored, Stored::Helper("docker-credential-pass".into()));
    assert_eq!(f.pass.list().get(&host).and_then(|v| v.as_str()), Some(USER));
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(file["auths"][&host], json!({}), "Docker's empty entry beside the helper");
    assert_eq!(file["proxies"], json!({"default": {}}), "other settings are kept");
    assert!(!std::fs::read_to_string(&config).unwrap().contains(PASSWORD));
    assert_eq!(pull(&f.reference(), &opts).unwrap().digest, f.image.manifest_digest);

    assert!(registry::logout(&host, &opts.config).unwrap());
    assert!(f.pass.list().is_empty());
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(file["auths"].get(&host).is_none());
    assert!(!registry::logout(&host, &opts.config).unwrap(), "nothing left to forget");
    assert!(matches!(pull(&f.reference(), &opts), Err(Error::Authentication { .. })));
}

#[test]
fn login_without_a_helper_writes_config_json() {
    let f = Fixture::new();
    let host = f.registry.host();
    let config = f.work.path().join("fresh/config.json");
    let opts = f.options(config.clone());
    assert_eq!(
        login(&format!("https://{host}/"), USER, PASSWORD, &opts.config).unwrap(),
        Stored::File(config.clone())
    );
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(file["auths"][&host]["auth"], STANDARD.encode(format!("{USER}:{PASSWORD}")));
    assert_eq!(pull(&f.reference(), &opts).unwrap().digest, f.image.manifest_digest);
    assert!(registry::logout(&host, &opts.config).unwrap());
    assert!(!registry::logout(&host, &opts.config).unwrap());
}

#[test]
fn broken_helpers_leave_the_pull_anonymous_and_say_why() {
    let f = Fixture::new();
    let pidfile = f.pass.dir.path().join("hang.pid");
    f.pass.script("hang", &format!("sleep 60 & echo $! > {}\nwait", pidfile.display()));
    f.pass.script("fail", "echo 'the store is locked'\nexit 3");
    f.pass.script("garbage", &format!("echo '{GARBAGE} user:{GARBAGE}'"));
    f.pass.script("empty", "echo 'credentials not found in native keychain'\nexit 1");
    let cases = [
        ("hang", "docker-credential-hang did not answer within 10 s and was killed", 12),
        ("fail", "docker-credential-fail failed (exit status: 3): the store is locked", 3),
        (
            "garbage",
            "docker-credential-garbage answered something that is not credentials JSON",
            3,
        ),
        ("empty", "docker-credential-empty has no credentials for", 3),
        ("absent", "docker-credential-absent is not installed", 3),
    ];
    for (helper, reason, bound) in cases {
        let config = f.pass.docker_config(json!({"credHelpers": {f.registry.host(): helper}}));
        let started = Instant::now();
        match pull(&f.reference(), &f.options(config)) {
            Err(e @ Error::Authentication { .. }) => {
                let text = f.text(&e);
                assert!(
                    text.contains("no credentials were found") && text.contains(reason),
                    "{helper}: {text}"
                );
            }
            other => panic!("{helper}: expected an authentication error, got {:?}", other.map(|p| p.digest)),
        }
        assert!(started.elapsed() < Duration::from_secs(bound), "{helper}: {:?}", started.elapsed());
    }
    let pid: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(gone(pid), "what the hung helper started was killed too");
}

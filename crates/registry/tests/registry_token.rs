//! A real registry in token-auth mode with a token issuer run by the test:
//! bearer tokens from the `WWW-Authenticate` challenge, one token per pull,
//! one refresh when the registry refuses a token, and authentication errors
//! that never carry credentials or tokens.

mod registry_support;

use std::sync::atomic::Ordering;

use registry::Error;
use registry::{Credentials, PullOptions};
use registry_support::distribution::{push_image, Push, Registry, Setup};
use registry_support::image::{self, Image};
use registry_support::tls::signing_key;
use registry_support::token::{Issuer, ISSUER, SERVICE};
use registry_support::{options, pull, secrets};

const USER: &str = "robot";
const PASSWORD: &str = "t0ken-Issuer-Pass";
/// A password the issuer refuses.
const WRONG: &str = "wrong-password";
/// A bearer token the registry refuses.
const BAD_TOKEN: &str = "not-a-valid-token";

struct Fixture {
    issuer: Issuer,
    registry: Registry,
    image: Image,
    work: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        secrets::register_basic(USER, PASSWORD);
        secrets::register_basic(USER, WRONG);
        secrets::register(BAD_TOKEN);
        let work = tempfile::tempdir().unwrap();
        let (key, cert_der, cert_pem) = signing_key(work.path());
        let issuer = Issuer::start(&key, &cert_der, USER, PASSWORD);
        let registry = Registry::start(Setup {
            token: Some((issuer.realm(), SERVICE.into(), ISSUER.into(), cert_pem)),
            ..Setup::default()
        });
        let image = image::simple("amd64", 20);
        let creds = format!("{USER}:{PASSWORD}");
        push_image(
            work.path(),
            &image,
            &format!("{}/secured/app:v1", registry.host()),
            Push {
                creds: Some(&creds),
                ..Push::default()
            },
        );
        Fixture {
            issuer,
            registry,
            image,
            work,
        }
    }

    fn reference(&self) -> String {
        format!("{}/secured/app:v1", self.registry.host())
    }

    fn options(&self, password: Option<&str>) -> PullOptions {
        let mut opts = options(self.work.path());
        opts.auth = password.map(|p| Credentials::Basic {
            username: USER.into(),
            password: p.into(),
        });
        opts
    }
}

#[test]
fn pulls_with_one_bearer_token() {
    let f = Fixture::new();
    let before = f.issuer.requests();
    let pulled = pull(&f.reference(), &f.options(Some(PASSWORD))).unwrap();
    assert_eq!(pulled.digest, f.image.manifest_digest);
    assert_eq!(f.issuer.requests() - before, 1, "one token serves the whole pull");
    let request = f.issuer.server.requests_to("/token").pop().unwrap();
    assert!(request.path.contains("scope=repository%3Asecured%2Fapp%3Apull"), "{}", request.path);
    assert!(request.path.contains(&format!("service={SERVICE}")), "{}", request.path);
    assert!(request.header("authorization").is_some_and(|a| a.starts_with("Basic ")));
}

#[test]
fn refreshes_a_refused_token_once() {
    let f = Fixture::new();
    let before = f.issuer.requests();
    f.issuer.expire_next.store(true, Ordering::SeqCst);
    let pulled = pull(&f.reference(), &f.options(Some(PASSWORD))).unwrap();
    assert_eq!(pulled.digest, f.image.manifest_digest);
    assert_eq!(f.issuer.requests() - before, 2, "the refused token was replaced once");
}

#[test]
fn a_token_without_access_fails_after_one_refresh() {
    let f = Fixture::new();
    // Anonymous tokens grant nothing here: the registry refuses both.
    let before = f.issuer.requests();
    match pull(&f.reference(), &f.options(None)) {
        Err(e @ Error::Authentication { .. }) => {
            let text = format!("{e} {e:?}");
            assert!(text.contains("secured/app") && text.contains(&f.registry.host()), "{text}");
            assert!(text.contains("anonymous token") && text.contains("no credentials"), "{text}");
        }
        other => panic!("expected an authentication error, got {:?}", other.map(|p| p.digest)),
    }
    assert_eq!(f.issuer.requests() - before, 2, "one token, one refresh, then give up");
}

#[test]
fn refused_credentials_are_authentication_errors() {
    let f = Fixture::new();
    let started = std::time::Instant::now();
    match pull(&f.reference(), &f.options(Some(WRONG))) {
        Err(e @ Error::Authentication { .. }) => {
            let text = format!("{e} {e:?}");
            assert!(text.contains("refused the credentials"), "{text}");
            assert!(!text.contains(WRONG), "{text}");
        }
        other => panic!("expected an authentication error, got {:?}", other.map(|p| p.digest)),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "refusals are not retried");
}

#[test]
fn a_ready_token_is_sent_as_is() {
    let f = Fixture::new();
    pull(&f.reference(), &f.options(Some(PASSWORD))).unwrap();
    let token = f.issuer.tokens.lock().unwrap().last().unwrap().clone();
    let before = f.issuer.requests();
    let mut opts = f.options(None);
    opts.auth = Some(Credentials::Token(token));
    assert_eq!(pull(&f.reference(), &opts).unwrap().digest, f.image.manifest_digest);
    assert_eq!(f.issuer.requests(), before, "the token service was not asked");
    opts.auth = Some(Credentials::Token(BAD_TOKEN.into()));
    match pull(&f.reference(), &opts) {
        Err(e @ Error::Authentication { .. }) => assert!(!format!("{e} {e:?}").contains(BAD_TOKEN)),
        other => panic!("expected an authentication error, got {:?}", other.map(|p| p.digest)),
    }
}

//! Identity tokens against a real registry in token-auth mode, whose token
//! service (run by the test) gives pull tokens for a refresh token only:
//! the OAuth2 `refresh_token` grant as a POST form, from `identitytoken`
//! in Docker's config and from a credential helper's `<token>` answer
//! (Debian's docker-credential-pass); a service that refuses the POST is
//! asked with a GET, as Docker does; a revoked identity token is an
//! authentication error that names no secret.

mod registry_support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use registry::{Error, PullOptions};
use registry_support::distribution::{push_image, Push, Registry, Setup};
use registry_support::fake::Reply;
use registry_support::helpers::PassStore;
use registry_support::image::{self, Image};
use registry_support::tls::signing_key;
use registry_support::token::{params, values, Issuer, ISSUER, SERVICE};
use registry_support::{options, pull, secrets};
use serde_json::json;

const IDENTITY: &str = "refresh-7f3a9c-Identity";
const PUSHER: &str = "pusher:push-Only-pass";

struct Fixture {
    issuer: Issuer,
    registry: Registry,
    image: Image,
    /// Refresh tokens the service honours.
    valid: Arc<Mutex<HashSet<String>>>,
    /// Answer POSTs with 404, as services without the OAuth2 endpoint do.
    refuse_post: Arc<AtomicBool>,
    work: tempfile::TempDir,
}

fn json_reply(status: u16, body: &str) -> Reply {
    Reply::new(status, &[("Content-Type", "application/json")], body.to_string())
}

impl Fixture {
    fn new() -> Fixture {
        secrets::register_basic("<token>", IDENTITY);
        let (pusher, pusher_password) = PUSHER.split_once(':').unwrap();
        secrets::register_basic(pusher, pusher_password);
        let work = tempfile::tempdir().unwrap();
        let (key, cert_der, cert_pem) = signing_key(work.path());
        let valid = Arc::new(Mutex::new(HashSet::from([IDENTITY.to_string()])));
        let refuse_post = Arc::new(AtomicBool::new(false));
        let pusher = format!("Basic {}", STANDARD.encode(PUSHER));
        let issuer = {
            let (valid, refuse_post) = (valid.clone(), refuse_post.clone());
            Issuer::start_with(&key, &cert_der, move |request| {
                let params = params(request);
                let first = |k: &str| values(&params, k).into_iter().next().unwrap_or_default();
                let known = |token: &str| valid.lock().unwrap().contains(token);
                if request.method == "POST" {
                    if refuse_post.load(Ordering::SeqCst) {
                        return Err(json_reply(404, r#"{"details":"not found"}"#));
                    }
                    let grant = first("grant_type") == "refresh_token" && !first("client_id").is_empty();
                    return match grant && known(&first("refresh_token")) {
                        true => Ok(Some("robot".into())),
                        false => Err(json_reply(400, r#"{"error":"invalid_grant"}"#)),
                    };
                }
                let authorization = request.header("authorization").unwrap_or_default();
                // The test's own pushes, for push scopes only.
                if authorization == pusher && first("scope").contains("push") {
                    return Ok(Some("pusher".into()));
                }
                // The GET fallback: the identity token as the Basic password.
                let fallback = STANDARD
                    .decode(authorization.strip_prefix("Basic ").unwrap_or_default())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .and_then(|d| d.split_once(':').map(|(_, secret)| secret.to_string()));
                match fallback {
                    Some(secret) if refuse_post.load(Ordering::SeqCst) && known(&secret) => Ok(Some("robot".into())),
                    _ => Err(json_reply(401, r#"{"details":"refresh tokens only"}"#)),
                }
            })
        };
        let registry = Registry::start(Setup {
            token: Some((issuer.realm(), SERVICE.into(), ISSUER.into(), cert_pem)),
            ..Setup::default()
        });
        let image = image::simple("amd64", 14);
        let destination = format!("{}/secured/app:v1", registry.host());
        push_image(
            work.path(),
            &image,
            &destination,
            Push {
                creds: Some(PUSHER),
                ..Push::default()
            },
        );
        Fixture {
            issuer,
            registry,
            image,
            valid,
            refuse_post,
            work,
        }
    }

    fn reference(&self) -> String {
        format!("{}/secured/app:v1", self.registry.host())
    }

    fn options(&self, docker_config: serde_json::Value) -> PullOptions {
        let path = self.work.path().join("docker-config.json");
        std::fs::write(&path, docker_config.to_string()).unwrap();
        let mut opts = options(self.work.path());
        opts.config.docker_config = Some(path);
        opts
    }

    /// Error text (Display and Debug); the support checked it for the
    /// identity token and every token the issuer minted.
    fn text(&self, e: &Error) -> String {
        format!("{e} {e:?}")
    }

    /// The refresh grants the service received.
    fn grants(&self) -> Vec<Vec<(String, String)>> {
        let requests = self.issuer.server.requests_to("/token");
        requests.iter().filter(|r| r.method == "POST").map(params).collect()
    }
}

#[test]
fn an_identity_token_in_docker_config_is_exchanged_with_the_refresh_grant() {
    let f = Fixture::new();
    let opts = f.options(json!({"auths": {f.registry.host(): {"identitytoken": IDENTITY}}}));
    assert_eq!(pull(&f.reference(), &opts).unwrap().digest, f.image.manifest_digest);
    let grants = f.grants();
    assert_eq!(grants.len(), 1, "one token serves the pull");
    let grant = &grants[0];
    let first = |k: &str| values(grant, k).into_iter().next();
    assert_eq!(first("grant_type").as_deref(), Some("refresh_token"));
    assert_eq!(first("refresh_token").as_deref(), Some(IDENTITY));
    assert_eq!(first("scope").as_deref(), Some("repository:secured/app:pull"));
    assert_eq!(first("service").as_deref(), Some(SERVICE));
    assert!(first("client_id").is_some_and(|c| !c.is_empty()));
}

#[test]
fn an_identity_token_from_a_credential_helper() {
    let f = Fixture::new();
    let pass = PassStore::new();
    pass.store(&f.registry.host(), "<token>", IDENTITY);
    let mut opts = f.options(json!({"credsStore": "pass"}));
    opts.config.helper_env = Some(pass.env());
    assert_eq!(pull(&f.reference(), &opts).unwrap().digest, f.image.manifest_digest);
    assert_eq!(f.grants().len(), 1);
}

#[test]
fn a_service_refusing_the_post_is_asked_with_a_get() {
    let f = Fixture::new();
    f.refuse_post.store(true, Ordering::SeqCst);
    let opts = f.options(json!({"auths": {f.registry.host(): {"identitytoken": IDENTITY}}}));
    assert_eq!(pull(&f.reference(), &opts).unwrap().digest, f.image.manifest_digest);
    let pulls = |r: &registry_support::fake::Request| values(&params(r), "scope").iter().all(|s| !s.contains("push"));
    let gets = f
        .issuer
        .server
        .requests_to("/token")
        .iter()
        .filter(|r| r.method == "GET" && pulls(r))
        .count();
    assert_eq!((f.grants().len(), gets), (1, 1), "one refused POST, then one GET");
}

#[test]
fn a_revoked_identity_token_is_an_authentication_error() {
    let f = Fixture::new();
    f.valid.lock().unwrap().clear();
    let opts = f.options(json!({"auths": {f.registry.host(): {"identitytoken": IDENTITY}}}));
    match pull(&f.reference(), &opts) {
        Err(e @ Error::Authentication { .. }) => {
            let text = f.text(&e);
            assert!(text.contains("refused the identity token"), "{text}");
            assert!(text.contains(&f.registry.host()) && text.contains("secured/app"), "{text}");
        }
        other => panic!("expected an authentication error, got {:?}", other.map(|p| p.digest)),
    }
}

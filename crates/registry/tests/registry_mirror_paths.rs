//! Mirrors as containerd's `hosts.toml` describes them: a real registry
//! serving under a path prefix (`/v2/dockerhub/…`, the repository prefix
//! Harbor and Artifactory proxies use), a pull-through cache (CNCF
//! distribution in proxy mode) behind a front end that routes a base path
//! (`/cache/v2/…`), and a mirror that may pull but not resolve, which then
//! serves blobs only.

mod registry_support;

use std::collections::HashMap;

use registry::{Mirror, PullOptions};
use registry_support::distribution::{push_image, Push, Registry, Setup};
use registry_support::fake::rewriting_proxy;
use registry_support::image::{self, Image};
use registry_support::{options, pull};

struct Fixture {
    origin: Registry,
    image: Image,
    work: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let work = tempfile::tempdir().unwrap();
        let origin = Registry::start(Setup::default());
        let image = image::simple("amd64", 25);
        push_image(work.path(), &image, &format!("{}/mirrored/app:v1", origin.host()), Push::default());
        Fixture { origin, image, work }
    }

    fn reference(&self) -> String {
        format!("{}/mirrored/app:v1", self.origin.host())
    }

    fn options(&self, mirrors: Vec<Mirror>) -> PullOptions {
        let mut opts = options(self.work.path());
        opts.config.mirrors = HashMap::from([(self.origin.host(), mirrors)]);
        opts
    }
}

#[test]
fn a_mirror_under_a_repository_prefix_serves_the_pull() {
    let mut f = Fixture::new();
    // A registry holding the image under `dockerhub/…`: on the wire, what a
    // prefix-routing proxy cache serves.
    let mirror = Registry::start(Setup::default());
    let under_prefix = format!("{}/dockerhub/mirrored/app:v1", mirror.host());
    push_image(f.work.path(), &f.image, &under_prefix, Push::default());
    let opts = f.options(vec![Mirror::new(format!("http://{}/v2/dockerhub", mirror.host()))]);
    f.origin.stop();
    let pulled = pull(&f.reference(), &opts).unwrap();
    assert_eq!(pulled.digest, f.image.manifest_digest);
    assert_eq!(pulled.layers.len(), 2);
}

#[test]
fn a_pull_through_cache_under_a_base_path() {
    let f = Fixture::new();
    let cache = Registry::start(Setup {
        proxy: Some(format!("http://{}", f.origin.host())),
        ..Setup::default()
    });
    let front = rewriting_proxy(format!("http://{}", cache.host()), "/cache");
    let opts = f.options(vec![Mirror::new(format!("http://{}/cache", front.host()))]);
    let pulled = pull(&f.reference(), &opts).unwrap();
    assert_eq!(pulled.digest, f.image.manifest_digest);
    assert!(!front.requests_to("/cache/v2/mirrored/app/manifests/v1").is_empty());
    for (digest, _) in f.image.blobs() {
        assert!(
            !front.requests_to(&format!("/cache/v2/mirrored/app/blobs/{digest}")).is_empty(),
            "{digest}"
        );
        assert!(cache.stores_blob(&digest), "the cache did not serve {digest}:\n{}", cache.log());
    }
}

#[test]
fn a_mirror_without_resolve_serves_blobs_only() {
    let f = Fixture::new();
    let cache = Registry::start(Setup {
        proxy: Some(format!("http://{}", f.origin.host())),
        ..Setup::default()
    });
    let front = rewriting_proxy(format!("http://{}", cache.host()), "/cache");
    let mut blobs_only = Mirror::new(format!("http://{}/cache", front.host()));
    blobs_only.resolve = false;
    let pulled = pull(&f.reference(), &f.options(vec![blobs_only])).unwrap();
    assert_eq!(pulled.digest, f.image.manifest_digest);
    assert!(
        front.requests_to("/cache/v2/mirrored/app/manifests/").is_empty(),
        "the tag resolved at the origin"
    );
    for (digest, _) in f.image.blobs() {
        assert!(
            !front.requests_to(&format!("/cache/v2/mirrored/app/blobs/{digest}")).is_empty(),
            "{digest}"
        );
    }
}

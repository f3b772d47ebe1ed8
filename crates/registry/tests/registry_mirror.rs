//! Mirrors: a real registry in pull-through (proxy) mode in front of the
//! origin serves the pull; a dead mirror, or one without the image, is
//! skipped for the next one and finally the origin.

mod registry_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use registry::Error;
use registry::PullOptions;
use registry_support::distribution::{push_image, Push, Registry, Setup};
use registry_support::image::{self, Image};
use registry_support::{free_port, options, pull};

struct Fixture {
    origin: Registry,
    image: Image,
    work: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let work = tempfile::tempdir().unwrap();
        let origin = Registry::start(Setup::default());
        let image = image::simple("amd64", 40);
        push_image(work.path(), &image, &format!("{}/mirrored/app:v1", origin.host()), Push::default());
        Fixture { origin, image, work }
    }

    fn reference(&self) -> String {
        format!("{}/mirrored/app:v1", self.origin.host())
    }

    fn options(&self, mirrors: &[String]) -> PullOptions {
        let mut opts = options(self.work.path());
        opts.config.mirrors = HashMap::from([(self.origin.host(), mirrors.iter().map(registry::Mirror::new).collect())]);
        opts
    }
}

#[test]
fn pulls_through_a_pull_through_cache() {
    let f = Fixture::new();
    let mut mirror = Registry::start(Setup {
        proxy: Some(format!("http://{}", f.origin.host())),
        ..Setup::default()
    });
    let opts = f.options(&[format!("http://{}", mirror.host())]);
    let pulled = pull(&f.reference(), &opts).unwrap();
    assert_eq!(pulled.digest, f.image.manifest_digest);
    // The mirror served (and so cached) every blob.
    for (digest, _) in f.image.blobs() {
        assert!(mirror.stores_blob(&digest), "the mirror did not serve {digest}:\n{}", mirror.log());
    }

    // With the origin gone, the mirror alone serves a pinned pull.
    let mut f = f;
    f.origin.stop();
    let pinned = format!("{}/mirrored/app@{}", f.origin.host(), f.image.manifest_digest);
    assert_eq!(pull(&pinned, &opts).unwrap().layers.len(), 2);
    // And with the mirror gone too, the error is the origin's, noting the mirror's.
    mirror.stop();
    match pull(&pinned, &opts) {
        Err(Error::Registry { registry, message, .. }) => {
            assert_eq!(registry, f.origin.host());
            assert!(message.contains(&format!("mirror {}", mirror.host())), "{message}");
        }
        other => panic!("expected a registry error, got {:?}", other.map(|p| p.digest)),
    }
}

#[test]
fn falls_back_past_dead_and_empty_mirrors() {
    let f = Fixture::new();
    let dead = format!("http://127.0.0.1:{}", free_port());
    // A plain registry that does not have the image (404 for everything).
    let empty = Registry::start(Setup::default());
    let started = Instant::now();
    let opts = f.options(&[dead, empty.host()]);
    let pulled = pull(&f.reference(), &opts).unwrap();
    assert_eq!(pulled.digest, f.image.manifest_digest);
    assert_eq!(pulled.layers.len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "dead mirrors are not retried: {:?}",
        started.elapsed()
    );
}

#[test]
fn refuses_plain_http_mirrors_that_are_not_allowed() {
    let f = Fixture::new();
    let opts = f.options(&["http://mirror.invalid".into()]);
    let reference = oci::reference::Reference::parse(&f.reference()).unwrap();
    assert!(matches!(registry::Client::new(&reference, &opts), Err(Error::InvalidArgument(_))));
}

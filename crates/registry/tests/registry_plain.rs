//! Pulls from a real registry (CNCF distribution over plain HTTP on
//! 127.0.0.1, which loopback hosts may use) images pushed with skopeo: by
//! tag, by digest, from a multi-platform index, with zstd layers, and as
//! Docker schema 2.

mod registry_support;

use oci::digest::Digest;
use oci::manifest::{DOCKER_MANIFEST, OCI_MANIFEST};
use oci::platform::Platform;
use oci::progress::Progress;
use registry::Error;
use registry_support::distribution::{push, push_image, Push, Registry, Setup};
use registry_support::image::{self, Compression, Image};
use registry_support::{options, pull, Events};

/// Checks that what was pulled is `image`, byte for byte.
fn assert_pulled(pulled: &registry_support::Pulled, image: &Image) {
    assert_eq!(pulled.digest, image.manifest_digest);
    assert_eq!(pulled.manifest_bytes, image.manifest);
    assert_eq!(pulled.config, image.config);
    let expected: Vec<Vec<u8>> = image.layers.iter().map(|(_, bytes)| bytes.clone()).collect();
    assert_eq!(pulled.layers, expected);
}

#[test]
fn pulls_by_tag_and_by_digest() {
    let registry = Registry::start(Setup::default());
    let work = tempfile::tempdir().unwrap();
    let image = image::simple("amd64", 1);
    let pushed = push_image(work.path(), &image, &format!("{}/team/app:v1", registry.host()), Push::default());
    assert_eq!(pushed, image.manifest_digest);

    let mut opts = options(work.path());
    let events = Events::default();
    events.attach(&mut opts);
    let by_tag = pull(&format!("{}/team/app:v1", registry.host()), &opts).unwrap();
    assert_pulled(&by_tag, &image);
    assert_eq!(by_tag.manifest.media_type, OCI_MANIFEST);
    // Each layer reports its start and its completion, and not per read.
    for (layer, _) in &image.layers {
        let mine: Vec<(u64, u64)> = events
            .all()
            .iter()
            .filter_map(|e| match e {
                Progress::Download { digest, downloaded, total } if *digest == layer.digest => Some((*downloaded, *total)),
                _ => None,
            })
            .collect();
        assert_eq!(mine.first(), Some(&(0, layer.size)));
        assert_eq!(mine.last(), Some(&(layer.size, layer.size)));
        assert!(mine.len() < 20, "too many progress events: {}", mine.len());
    }

    let by_digest = pull(&format!("{}/team/app@{}", registry.host(), image.manifest_digest), &opts).unwrap();
    assert_pulled(&by_digest, &image);
}

#[test]
fn picks_the_platform_from_a_multi_platform_index() {
    let registry = Registry::start(Setup::default());
    let work = tempfile::tempdir().unwrap();
    let amd64 = image::simple("amd64", 2);
    let arm64 = image::simple("arm64", 3);
    let layout = work.path().join("layout");
    let index = image::write_index_layout(&layout, "multi", &[&amd64, &arm64]);
    let pushed = push(
        &layout,
        "multi",
        &format!("{}/multi:latest", registry.host()),
        Push {
            all: true,
            ..Push::default()
        },
    );
    assert_eq!(pushed, Digest::of(&index));

    let reference = format!("{}/multi:latest", registry.host());
    let mut opts = options(work.path());
    opts.platform = Platform::parse("linux/arm64").unwrap();
    assert_pulled(&pull(&reference, &opts).unwrap(), &arm64);
    opts.platform = Platform::parse("linux/amd64").unwrap();
    assert_pulled(&pull(&reference, &opts).unwrap(), &amd64);
    // Pinned to the index's digest works the same way.
    assert_pulled(&pull(&format!("{}/multi@{pushed}", registry.host()), &opts).unwrap(), &amd64);

    opts.platform = Platform::parse("linux/s390x").unwrap();
    match pull(&reference, &opts) {
        Err(Error::Registry { message, digest, .. }) => {
            assert!(message.contains("linux/s390x") && message.contains("linux/arm64"), "{message}");
            assert_eq!(digest, Some(pushed.to_string()));
        }
        other => panic!("expected a registry error, got {:?}", other.map(|p| p.digest)),
    }
}

#[test]
fn pulls_zstd_layers() {
    let registry = Registry::start(Setup::default());
    let work = tempfile::tempdir().unwrap();
    let image = image::build(
        "linux",
        "amd64",
        &[vec![("a", b"zstd layer".to_vec())], vec![("b", image::noise(100_000, 4))]],
        Compression::Zstd,
    );
    push_image(work.path(), &image, &format!("{}/zstd:z", registry.host()), Push::default());
    let pulled = pull(&format!("{}/zstd:z", registry.host()), &options(work.path())).unwrap();
    assert_pulled(&pulled, &image);
    assert!(pulled
        .manifest
        .layers
        .iter()
        .all(|l| l.media_type == "application/vnd.oci.image.layer.v1.tar+zstd"));
    assert!(
        pulled.layers.iter().all(|l| l.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])),
        "layers are zstd frames"
    );
}

#[test]
fn pulls_docker_schema2_manifests() {
    let registry = Registry::start(Setup::default());
    let work = tempfile::tempdir().unwrap();
    let image = image::simple("amd64", 5);
    let pushed = push_image(
        work.path(),
        &image,
        &format!("{}/docker:d", registry.host()),
        Push {
            docker: true,
            ..Push::default()
        },
    );
    assert_ne!(pushed, image.manifest_digest, "skopeo converted the manifest");

    let pulled = pull(&format!("{}/docker:d", registry.host()), &options(work.path())).unwrap();
    assert_eq!(pulled.digest, pushed);
    assert_eq!(Digest::of(&pulled.manifest_bytes), pushed);
    assert_eq!(pulled.manifest.media_type, DOCKER_MANIFEST);
    assert!(pulled
        .manifest
        .layers
        .iter()
        .all(|l| l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"));
    let expected: Vec<Vec<u8>> = image.layers.iter().map(|(_, bytes)| bytes.clone()).collect();
    assert_eq!(pulled.layers, expected, "layer blobs are unchanged by the conversion");
}

#[test]
fn unknown_tags_and_repositories_are_image_not_found() {
    let registry = Registry::start(Setup::default());
    let work = tempfile::tempdir().unwrap();
    let image = image::simple("amd64", 6);
    push_image(work.path(), &image, &format!("{}/present:v1", registry.host()), Push::default());
    for reference in [format!("{}/present:v2", registry.host()), format!("{}/absent:v1", registry.host())] {
        match pull(&reference, &options(work.path())) {
            Err(Error::ImageNotFound { reference: named, .. }) => assert_eq!(named, reference),
            other => panic!("{reference}: expected ImageNotFound, got {:?}", other.map(|p| p.digest)),
        }
    }
}

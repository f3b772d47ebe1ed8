//! Targets for what the sources parse from a published image or a
//! registry before any layer is read: manifests, indexes and configs,
//! references and platforms, `WWW-Authenticate` and `Retry-After`, and a
//! docker archive's `manifest.json` through the whole load.

use std::io::Write;
use std::sync::OnceLock;

use oci::manifest::{self, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// Arbitrary bytes as a manifest or index (under each media type a server
/// could declare), as a config, and as a reference and a platform string.
pub fn documents(data: &[u8]) {
    for declared in [None, Some(OCI_MANIFEST), Some(OCI_INDEX), Some(DOCKER_MANIFEST), Some(DOCKER_MANIFEST_LIST)] {
        let _ = manifest::parse_document(data, declared);
    }
    let digest = oci::Digest::of(data);
    for layers in [0, 1, 3] {
        let _ = manifest::parse_config(data, &digest, layers);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = oci::Reference::parse(text);
        let _ = oci::Platform::parse(text);
    }
}

/// Arbitrary text as `WWW-Authenticate` headers (one per line) and as a
/// `Retry-After` value.
pub fn registry_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let headers: Vec<&str> = text.lines().collect();
    let _ = registry::fuzzing::www_authenticate(&headers);
    let _ = registry::fuzzing::retry_after(&text);
}

/// A valid config and layer blob, named as `docker save` names them, that
/// a fuzzed `manifest.json` may point at (or not).
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;

/// Arbitrary bytes as the `manifest.json` of a docker archive that also
/// holds a config blob, loaded into a cache: a result or a typed error,
/// never a panic or a hang.
pub fn docker_archive(data: &[u8]) {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let home = HOME.get_or_init(|| tempfile::tempdir().unwrap());
    let Ok(cache) = cache::Cache::open(&home.path().join("cache")) else {
        return;
    };
    let mut archive = tempfile::NamedTempFile::new_in(home.path()).unwrap();
    {
        let mut tar = tar::Builder::new(archive.as_file_mut());
        let config_name = format!("{}.json", oci::Digest::of(CONFIG).hex());
        for (name, bytes) in [("manifest.json", data), (config_name.as_str(), CONFIG)] {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, bytes).unwrap();
        }
        tar.finish().unwrap();
    }
    archive.flush().unwrap();
    let _ = cache.load(archive.path(), &cache::LoadOptions::default());
}

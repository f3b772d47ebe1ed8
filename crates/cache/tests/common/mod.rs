//! Fixtures for engine tests: OCI layouts and docker archives built from
//! real tar streams, written byte for byte the way the specs describe them.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest as _, Sha256};

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A layer: its uncompressed tar and how to compress it.
#[derive(Clone, Debug)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub compression: Compression,
}

/// An image to write: references, layers, config extras.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub names: Vec<String>,
    pub layers: Vec<Layer>,
    pub env: Vec<String>,
    pub architecture: String,
    /// Claim a wrong diff_id for the first layer.
    pub wrong_diff_id: bool,
}

impl TestImage {
    pub fn new(name: &str, layers: Vec<Layer>) -> TestImage {
        TestImage {
            names: vec![name.to_string()],
            layers,
            env: vec!["PATH=/bin".into()],
            architecture: "amd64".into(),
            wrong_diff_id: false,
        }
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A tar with the given regular files (and their parent directories).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _) in files {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
    }
    for dir in dirs {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_mtime(1_700_000_000);
        header.set_size(0);
        builder.append_data(&mut header, format!("{}/", dir.display()), &[][..]).unwrap();
    }
    for (path, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_size(content.len() as u64);
        builder.append_data(&mut header, path, *content).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn layer(files: &[(&str, &[u8])], compression: Compression) -> Layer {
    Layer {
        tar: tar_of(files),
        compression,
    }
}

fn compress(layer: &Layer) -> (Vec<u8>, &'static str) {
    match layer.compression {
        Compression::None => (layer.tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&layer.tar).unwrap();
            (enc.finish().unwrap(), "application/vnd.oci.image.layer.v1.tar+gzip")
        }
        Compression::Zstd => (
            zstd::encode_all(&layer.tar[..], 3).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    }
}

/// Digests of what was written for one image.
#[derive(Clone, Debug)]
pub struct Written {
    pub manifest: String,
    pub config: String,
    pub diff_ids: Vec<String>,
    pub blobs: Vec<String>,
}

/// The config JSON of an image.
pub fn config_json(image: &TestImage) -> Vec<u8> {
    let mut diff_ids: Vec<String> = image.layers.iter().map(|l| sha256(&l.tar)).collect();
    if image.wrong_diff_id {
        diff_ids[0] = sha256(b"not this layer");
    }
    serde_json::to_vec(&json!({
        "architecture": image.architecture,
        "os": "linux",
        "config": { "Env": image.env, "Cmd": ["/bin/sh"], "WorkingDir": "/work", "Labels": { "test": "yes" } },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap()
}

/// Writes an OCI image layout directory holding `images`.
pub fn oci_layout(dir: &Path, images: &[TestImage]) -> Vec<Written> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        digest
    };
    let mut entries = Vec::new();
    let mut written = Vec::new();
    for image in images {
        let mut layer_descriptors = Vec::new();
        let mut blob_digests = Vec::new();
        for layer in &image.layers {
            let (blob, media_type) = compress(layer);
            let digest = put(&blob);
            blob_digests.push(digest.clone());
            layer_descriptors.push(json!({ "mediaType": media_type, "digest": digest, "size": blob.len() }));
        }
        let config = config_json(image);
        let config_digest = put(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
            "layers": layer_descriptors,
        }))
        .unwrap();
        let manifest_digest = put(&manifest);
        for name in &image.names {
            entries.push(json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest.len(),
                "annotations": { "org.opencontainers.image.ref.name": name },
            }));
        }
        written.push(Written {
            manifest: manifest_digest,
            config: config_digest,
            diff_ids: image.layers.iter().map(|l| sha256(&l.tar)).collect(),
            blobs: blob_digests,
        });
    }
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": entries })).unwrap(),
    )
    .unwrap();
    written
}

/// Tars a directory's files (relative paths) into `out`.
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut builder = tar::Builder::new(fs::File::create(out).unwrap());
    builder.append_dir_all(".", dir).unwrap();
    builder.finish().unwrap();
}

/// Writes a docker archive (`docker save` layout) of `images`.
pub fn docker_archive(out: &Path, images: &[TestImage]) {
    let mut builder = tar::Builder::new(fs::File::create(out).unwrap());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, bytes).unwrap();
    };
    let mut manifest = Vec::new();
    for image in images {
        let config = config_json(image);
        let config_name = format!("{}.json", &sha256(&config)[7..]);
        add(&config_name, &config);
        let mut layers = Vec::new();
        for layer in &image.layers {
            let name = format!("{}/layer.tar", &sha256(&layer.tar)[7..19]);
            add(&name, &compress(layer).0);
            layers.push(name);
        }
        manifest.push(json!({ "Config": config_name, "RepoTags": image.names, "Layers": layers }));
    }
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    builder.finish().unwrap();
}

/// A fresh cache directory and the path of a scratch directory.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    (dir, home)
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(read) = fs::read_dir(dir) else { return };
        for entry in read {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The artifact files of a cache (what the index should reach).
pub fn artifacts(home: &Path) -> Vec<String> {
    files_under(home)
        .into_iter()
        .filter(|f| ["layers/", "fsmeta/", "vmdk/"].iter().any(|p| f.starts_with(p)))
        .collect()
}

/// Rows per table of a cache's index: what a failed operation must leave as it was.
pub fn row_counts(home: &Path) -> Vec<(&'static str, i64)> {
    let conn = rusqlite::Connection::open_with_flags(home.join("db/index.sqlite"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    [
        "blobs",
        "blob_content",
        "configs",
        "layers",
        "layer_framing",
        "manifests",
        "manifest_layers",
        "image_refs",
    ]
    .into_iter()
    .map(|table| {
        (
            table,
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))
                .unwrap(),
        )
    })
    .collect()
}

/// Bytes of manifests, configs and layer framing kept in a cache's index.
pub fn indexed_bytes(home: &Path) -> u64 {
    let conn = rusqlite::Connection::open_with_flags(home.join("db/index.sqlite"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row(
        "SELECT (SELECT coalesce(sum(length(content)), 0) FROM blob_content) + (SELECT coalesce(sum(length(framing)), 0) FROM layer_framing)",
        [],
        |row| row.get::<_, i64>(0),
    )
    .unwrap() as u64
}

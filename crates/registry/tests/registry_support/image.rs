//! Small images built in memory (tar layers, gzip or zstd), written as OCI
//! layouts that skopeo can push, or served directly by the fake registry.

use std::io::Write;
use std::path::Path;

use oci::digest::Digest;
use oci::manifest::{Descriptor, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, REF_NAME_ANNOTATION};
use serde_json::{json, Value};

/// How a layer's tar is compressed.
#[derive(Clone, Copy)]
pub enum Compression {
    Gzip,
    Zstd,
}

/// One built image: every blob with its bytes.
#[derive(Clone)]
pub struct Image {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layers: Vec<(Descriptor, Vec<u8>)>,
    pub platform: (String, String),
}

impl Image {
    /// A descriptor of the manifest, with its platform (for indexes).
    pub fn index_entry(&self) -> Value {
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": self.manifest_digest.to_string(),
            "size": self.manifest.len(),
            "platform": {"os": self.platform.0, "architecture": self.platform.1},
        })
    }

    /// Every blob but the manifest: config and layers.
    pub fn blobs(&self) -> Vec<(Digest, Vec<u8>)> {
        let mut blobs = vec![(self.config_digest.clone(), self.config.clone())];
        blobs.extend(self.layers.iter().map(|(d, b)| (d.digest.clone(), b.clone())));
        blobs
    }
}

/// A tar of regular files.
pub fn tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// `n` bytes that do not compress away (so streams are long enough to cut).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn compress(data: &[u8], compression: Compression) -> (Vec<u8>, &'static str) {
    match compression {
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(data).unwrap();
            (encoder.finish().unwrap(), "application/vnd.oci.image.layer.v1.tar+gzip")
        }
        Compression::Zstd => (zstd::encode_all(data, 1).unwrap(), "application/vnd.oci.image.layer.v1.tar+zstd"),
    }
}

/// An OCI image for `os/arch` whose layers hold `layers` (one file list each).
pub fn build(os: &str, arch: &str, layers: &[Vec<(&str, Vec<u8>)>], compression: Compression) -> Image {
    let mut built = Vec::new();
    let mut diff_ids = Vec::new();
    for files in layers {
        let tar = tar(files);
        diff_ids.push(Digest::of(&tar).to_string());
        let (blob, media_type) = compress(&tar, compression);
        built.push((
            Descriptor {
                media_type: media_type.into(),
                digest: Digest::of(&blob),
                size: blob.len() as u64,
            },
            blob,
        ));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": os,
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": built.iter().map(|(d, _)| json!({"mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size})).collect::<Vec<_>>(),
    }))
    .unwrap();
    Image {
        manifest_digest: Digest::of(&manifest),
        manifest,
        config_digest,
        config,
        layers: built,
        platform: (os.into(), arch.into()),
    }
}

/// A two-layer gzip image for linux/`arch`, distinct per `seed`.
pub fn simple(arch: &str, seed: u64) -> Image {
    build(
        "linux",
        arch,
        &[
            vec![("etc/hello", format!("hello {arch} {seed}\n").into_bytes())],
            vec![("data/noise", noise(200_000, seed))],
        ],
        Compression::Gzip,
    )
}

/// An OCI index of `images`.
pub fn index(images: &[&Image]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": images.iter().map(|i| i.index_entry()).collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    let path = dir.join("blobs/sha256").join(digest.hex());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    digest
}

/// Writes an OCI layout at `dir` whose `tag` names `image`.
pub fn write_layout(dir: &Path, tag: &str, image: &Image) {
    write_layout_root(dir, tag, OCI_MANIFEST, &image.manifest, &[image]);
}

/// Writes an OCI layout at `dir` whose `tag` names an index of `images`;
/// returns the index bytes.
pub fn write_index_layout(dir: &Path, tag: &str, images: &[&Image]) -> Vec<u8> {
    let index = index(images);
    write_layout_root(dir, tag, OCI_INDEX, &index, images);
    index
}

fn write_layout_root(dir: &Path, tag: &str, media_type: &str, root: &[u8], images: &[&Image]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for image in images {
        write_blob(dir, &image.manifest);
        for (_, bytes) in image.blobs() {
            write_blob(dir, &bytes);
        }
    }
    let digest = write_blob(dir, root);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": root.len(),
            "annotations": {REF_NAME_ANNOTATION: tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

//! `docker save` archives: `manifest.json` lists each image's config, tags
//! and layer files. They carry no registry manifest, so one is synthesized
//! (OCI, deterministic), as skopeo does when copying such an archive.

use std::io::Read;

use serde::Deserialize;
use serde_json::json;

use oci::digest::{self, Digest, HashingReader};
use oci::manifest::{self, Descriptor, Manifest, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, OCI_CONFIG, OCI_MANIFEST};

use super::{archive_name, Archive};
use crate::error::Result;
use crate::ingest::ResolvedImage;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The images of a docker archive, one per `manifest.json` entry.
pub fn resolve(archive: &mut Archive) -> Result<Vec<ResolvedImage>> {
    let bytes = archive.read("manifest.json", MAX_MANIFEST_BYTES)?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&bytes).map_err(|e| archive.error(format!("manifest.json is not a docker archive manifest: {e}")))?;
    let mut images = Vec::with_capacity(entries.len());
    for entry in entries {
        images.push(load_image(archive, &entry)?);
    }
    Ok(images)
}

fn load_image(archive: &mut Archive, entry: &Entry) -> Result<ResolvedImage> {
    let config_bytes = archive.read(&entry.config, MAX_CONFIG_BYTES)?;
    let config_digest = Digest::of(&config_bytes);
    if let Some(named) = digest_in_name(&entry.config) {
        digest::verify(
            &format!("config {}", entry.config),
            &named,
            None,
            &config_digest,
            config_bytes.len() as u64,
        )?;
    }
    let config = manifest::parse_config(&config_bytes, &config_digest, entry.layers.len()).map_err(|m| archive.error(m))?;
    let mut layers = Vec::with_capacity(entry.layers.len());
    for (name, diff_id) in entry.layers.iter().zip(&config.diff_ids) {
        let layer = layer_descriptor(archive, name, diff_id)?;
        archive.named_blobs.push((layer.clone(), name.clone()));
        layers.push(layer);
    }
    let config_descriptor = Descriptor {
        media_type: OCI_CONFIG.into(),
        digest: config_digest,
        size: config_bytes.len() as u64,
    };
    let manifest_bytes = synthesize(&config_descriptor, &layers);
    let mut references = Vec::new();
    for tag in entry.repo_tags.iter().flatten() {
        let reference = archive_name(tag).ok_or_else(|| archive.error(format!("invalid RepoTag {tag:?}")))?;
        if !references.contains(&reference) {
            references.push(reference);
        }
    }
    Ok(ResolvedImage {
        references,
        manifest_digest: Digest::of(&manifest_bytes),
        manifest_bytes,
        manifest: Manifest {
            media_type: OCI_MANIFEST.into(),
            config: config_descriptor,
            layers,
        },
        config_bytes,
        config,
    })
}

/// Newer `docker save` names blobs by digest; older ones use `<id>/layer.tar`
/// and `<config hex>.json`.
fn digest_in_name(name: &str) -> Option<Digest> {
    let hex = name.strip_prefix("blobs/sha256/").or_else(|| name.strip_suffix(".json"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Describes a layer file: digest from its name when it has one; an
/// uncompressed layer's digest is its diff_id (checked while ingesting);
/// otherwise the file is hashed now.
fn layer_descriptor(archive: &Archive, name: &str, diff_id: &Digest) -> Result<Descriptor> {
    let size = archive.member_size(name)?;
    let mut head = [0u8; 4];
    let mut reader = archive.open_member(name)?;
    let got = reader.read(&mut head).map_err(|e| archive.error(format!("{name}: {e}")))?;
    let media_type = match &head[..got] {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => manifest::OCI_LAYER_TAR,
    };
    let digest = match digest_in_name(name) {
        Some(digest) => digest,
        None if media_type == manifest::OCI_LAYER_TAR => diff_id.clone(),
        None => {
            let mut hashing = HashingReader::new(archive.open_member(name)?);
            hashing.drain().map_err(|e| archive.error(format!("{name}: {e}")))?;
            hashing.finish().0
        }
    };
    Ok(Descriptor {
        media_type: media_type.into(),
        digest,
        size,
    })
}

/// The OCI manifest for a docker-archive image: keys sorted, so the same
/// archive always yields the same manifest digest.
fn synthesize(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let descriptor = |d: &Descriptor| json!({ "mediaType": d.media_type, "digest": d.digest.as_str(), "size": d.size });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&manifest).expect("json values serialize")
}

//! OCI image layouts (directory or tar): `index.json` names manifests, or
//! nested indexes from which the wanted platform is picked.

use std::collections::BTreeMap;

use oci::manifest::{self, Document, IndexEntry, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use oci::{Platform, Reference};

use super::{archive_name, Archive};
use crate::error::{Error, Result};
use crate::ingest::ResolvedImage;
use crate::source::read_small;

const MAX_NESTING: usize = 4;

/// The images of an OCI layout: one per name (or per unnamed manifest).
pub fn resolve(archive: &Archive, want: &Platform) -> Result<Vec<ResolvedImage>> {
    let bytes = archive.read("index.json", MAX_MANIFEST_BYTES)?;
    let Document::Index(entries) =
        manifest::parse_document(&bytes, Some(manifest::OCI_INDEX)).map_err(|m| archive.error(format!("index.json: {m}")))?
    else {
        unreachable!("parsed as an index");
    };
    // Entries sharing a name are platform variants of one image; groups go
    // in name order, unnamed entries (each its own image) first.
    let mut groups: BTreeMap<String, (Option<Reference>, Vec<IndexEntry>)> = BTreeMap::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let reference = entry
            .annotations
            .get(manifest::IMAGE_NAME_ANNOTATION)
            .or_else(|| entry.annotations.get(manifest::REF_NAME_ANNOTATION))
            .and_then(|n| archive_name(n));
        let key = reference.as_ref().map_or_else(|| format!("\0unnamed {i}"), ToString::to_string);
        groups.entry(key).or_insert_with(|| (reference, Vec::new())).1.push(entry);
    }
    let mut images: Vec<ResolvedImage> = Vec::new();
    for (reference, entries) in groups.into_values() {
        let entry = pick(archive, &entries, want, 0)?;
        let mut image = load_image(archive, &entry)?;
        // Two names for one manifest make one image with two references.
        match images.iter_mut().find(|i| i.manifest_digest == image.manifest_digest) {
            Some(existing) => existing.references.extend(reference),
            None => {
                image.references.extend(reference);
                images.push(image);
            }
        }
    }
    Ok(images)
}

/// Follows indexes down to the one manifest that serves `want`.
fn pick(archive: &Archive, entries: &[IndexEntry], want: &Platform, depth: usize) -> Result<IndexEntry> {
    if depth > MAX_NESTING {
        return Err(archive.error("indexes nested too deeply"));
    }
    let entry = match entries {
        [only] => only,
        many => manifest::select_platform(many, want).map_err(|m| archive.error(m))?,
    };
    if !manifest::is_index(&entry.descriptor.media_type) {
        return Ok(entry.clone());
    }
    let bytes = read_small(archive, &entry.descriptor, MAX_MANIFEST_BYTES, "index")?;
    match manifest::parse_document(&bytes, Some(&entry.descriptor.media_type)).map_err(|m| archive.error(m))? {
        Document::Index(nested) => {
            let chosen = manifest::select_platform(&nested, want).map_err(|m| archive.error(m))?;
            pick(archive, std::slice::from_ref(chosen), want, depth + 1)
        }
        Document::Manifest(_) => Err(archive.error(format!("{} is declared an index but is a manifest", entry.descriptor.digest))),
    }
}

fn load_image(archive: &Archive, entry: &IndexEntry) -> Result<ResolvedImage> {
    let descriptor = &entry.descriptor;
    let manifest_bytes = read_small(archive, descriptor, MAX_MANIFEST_BYTES, "manifest")?;
    let parsed = match manifest::parse_document(&manifest_bytes, Some(&descriptor.media_type)).map_err(|m| archive.error(m))? {
        Document::Manifest(m) => m,
        Document::Index(_) => return Err(archive.error(format!("{} is an index, expected a manifest", descriptor.digest))),
    };
    let config_bytes = read_small(archive, &parsed.config, MAX_CONFIG_BYTES, "config")?;
    let config = manifest::parse_config(&config_bytes, &parsed.config.digest, parsed.layers.len()).map_err(|m| archive.error(m))?;
    for layer in &parsed.layers {
        let name = archive.blob_member(layer);
        if !archive.exists(&name) {
            return Err(Error::archive(
                &archive.path,
                format!("layer {} is missing from the archive", layer.digest),
            ));
        }
    }
    Ok(ResolvedImage {
        references: Vec::new(),
        manifest_digest: descriptor.digest.clone(),
        manifest_bytes,
        manifest: parsed,
        config_bytes,
        config,
    })
}

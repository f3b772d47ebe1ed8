//! OCI (and Docker schema 2) manifests, indexes and configs: parsing,
//! validation, platform selection. Shared by every source (archives,
//! registries) so they all accept and refuse the same things.

use std::collections::HashMap;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde_json::Value;

use crate::digest::Digest;
use crate::platform::Platform;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Largest manifest or index accepted (as the distribution spec suggests).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest config accepted.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Most layers an image may have. Docker refuses images of more than 125
/// (overlayfs stacks at most 128 directories); fsmeta's device table
/// could hold 65,534, but each layer costs a conversion, a file and an
/// open descriptor at boot, so a hostile manifest is bounded here.
pub const MAX_LAYERS: usize = 256;
/// Annotation naming an image inside an OCI layout.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd and Docker use for the full image name in a layout.
pub const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// A content descriptor: what a blob is, its digest and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type as declared.
    pub media_type: String,
    /// Content digest.
    pub digest: Digest,
    /// Content size in bytes.
    pub size: u64,
}

/// A parsed image manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// OCI or Docker manifest media type.
    pub media_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom to top.
    pub layers: Vec<Descriptor>,
}

/// One entry of an index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// The manifest (or nested index) it points at.
    pub descriptor: Descriptor,
    /// Its platform, when declared.
    pub platform: Option<Platform>,
    /// Its annotations.
    pub annotations: HashMap<String, String>,
}

/// What a manifest-or-index document turned out to be.
#[derive(Debug, Clone)]
pub enum Document {
    /// A single-platform image manifest.
    Manifest(Manifest),
    /// An index (or Docker manifest list) of manifests.
    Index(Vec<IndexEntry>),
}

/// The OCI config fields a sandbox needs to run an image, as the cache
/// stores and reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDetails {
    /// Digest of the config blob (the image ID).
    pub digest: Digest,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Default command, when set.
    pub cmd: Option<Vec<String>>,
    /// Entrypoint, when set.
    pub entrypoint: Option<Vec<String>>,
    /// Working directory, when set (an empty string counts as unset).
    pub working_dir: Option<String>,
    /// Default user, when set.
    pub user: Option<String>,
    /// Labels, when the config has any map (possibly empty).
    pub labels: Option<serde_json::Map<String, serde_json::Value>>,
    /// Stop signal, when set.
    pub stop_signal: Option<String>,
}

/// A parsed image config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The fields the cache reports.
    pub details: ConfigDetails,
    /// Platform of the image.
    pub platform: Platform,
    /// Uncompressed digests of the layers, bottom to top.
    pub diff_ids: Vec<Digest>,
}

fn descriptor(d: &oci_spec::image::Descriptor) -> Result<Descriptor, String> {
    Ok(Descriptor {
        media_type: d.media_type().to_string(),
        digest: Digest::parse(d.digest().as_ref())?,
        size: d.size(),
    })
}

/// Whether a media type names an index rather than a manifest.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Parses a manifest or index. `declared` is the media type the referrer
/// gave; when absent, the document's own `mediaType` or shape decides.
pub fn parse_document(bytes: &[u8], declared: Option<&str>) -> Result<Document, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    let own = value.get("mediaType").and_then(Value::as_str);
    if let (Some(declared), Some(own)) = (declared, own) {
        if declared != own {
            return Err(format!("manifest declares media type {own} but was referenced as {declared}"));
        }
    }
    let media_type = declared.or(own).map(str::to_string).unwrap_or_else(|| {
        if value.get("manifests").is_some() {
            OCI_INDEX.to_string()
        } else {
            OCI_MANIFEST.to_string()
        }
    });
    if is_index(&media_type) {
        let index: ImageIndex = serde_json::from_value(value).map_err(|e| format!("invalid image index: {e}"))?;
        let entries = index
            .manifests()
            .iter()
            .map(|d| {
                Ok(IndexEntry {
                    descriptor: descriptor(d)?,
                    platform: d
                        .platform()
                        .as_ref()
                        .map(|p| Platform::new(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref())),
                    annotations: d.annotations().clone().unwrap_or_default(),
                })
            })
            .collect::<Result<_, String>>()?;
        return Ok(Document::Index(entries));
    }
    if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(format!("unsupported manifest media type {media_type}"));
    }
    let manifest: ImageManifest = serde_json::from_value(value).map_err(|e| format!("invalid image manifest: {e}"))?;
    if manifest.schema_version() != 2 {
        return Err(format!("unsupported manifest schema version {}", manifest.schema_version()));
    }
    if manifest.layers().len() > MAX_LAYERS {
        return Err(format!(
            "the manifest has {} layers, more than the {MAX_LAYERS} allowed",
            manifest.layers().len()
        ));
    }
    let layers = manifest.layers().iter().map(descriptor).collect::<Result<Vec<_>, _>>()?;
    for layer in &layers {
        if !is_layer_media_type(&layer.media_type) {
            return Err(format!("unsupported layer media type {} for {}", layer.media_type, layer.digest));
        }
    }
    Ok(Document::Manifest(Manifest {
        media_type,
        config: descriptor(manifest.config())?,
        layers,
    }))
}

/// Layer media types this cache can unpack: tar, optionally gzip or zstd
/// compressed, OCI or Docker spelling (including non-distributable ones).
pub fn is_layer_media_type(media_type: &str) -> bool {
    const KNOWN: [&str; 8] = [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ];
    KNOWN.contains(&media_type) || media_type == "application/vnd.docker.image.rootfs.diff.tar"
}

/// Parses a config and checks it against its manifest's layer count.
pub fn parse_config(bytes: &[u8], digest: &Digest, layer_count: usize) -> Result<Config, String> {
    serde_json::from_slice::<Value>(bytes).map_err(|e| format!("config {digest} is not valid JSON: {e}"))?;
    let config: ImageConfiguration = serde_json::from_slice(bytes).map_err(|e| format!("invalid image config {digest}: {e}"))?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("config {digest}: {e}"))?;
    if diff_ids.len() != layer_count {
        return Err(format!(
            "config {digest} lists {} diff_ids but the manifest has {layer_count} layers",
            diff_ids.len()
        ));
    }
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let c = config.config().clone().unwrap_or_default();
    let details = ConfigDetails {
        digest: digest.clone(),
        env: c.env().clone().unwrap_or_default(),
        cmd: c.cmd().clone(),
        entrypoint: c.entrypoint().clone(),
        working_dir: nonempty(c.working_dir()),
        user: nonempty(c.user()),
        labels: c
            .labels()
            .as_ref()
            .map(|l| l.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()),
        stop_signal: nonempty(c.stop_signal()),
    };
    let platform = Platform::new(
        &config.os().to_string(),
        &config.architecture().to_string(),
        config.variant().as_deref(),
    );
    Ok(Config {
        details,
        platform,
        diff_ids,
    })
}

/// Picks the entry of an index that best serves `want` (see
/// [`Platform::score`]; the first of equals wins), skipping
/// attestations and other non-image entries. With one image entry and no
/// platform information, that entry is the answer.
pub fn select_platform<'a>(entries: &'a [IndexEntry], want: &Platform) -> Result<&'a IndexEntry, String> {
    let images: Vec<&IndexEntry> = entries
        .iter()
        .filter(|e| !e.annotations.contains_key("vnd.docker.reference.type"))
        .filter(|e| e.platform.as_ref().is_none_or(|p| p.os != "unknown"))
        .collect();
    // The first of the best, as the image index spec asks.
    let best = images
        .iter()
        .filter_map(|e| e.platform.as_ref().map(|p| (want.score(p), *e)))
        .filter(|(s, _)| *s > 0)
        .fold(None, |best: Option<(u8, &IndexEntry)>, (s, e)| match best {
            Some((b, _)) if b >= s => best,
            _ => Some((s, e)),
        });
    match (best, images.as_slice()) {
        (Some((_, entry)), _) => Ok(entry),
        (None, [only]) if only.platform.is_none() => Ok(only),
        _ => {
            let available: Vec<String> = images.iter().filter_map(|e| e.platform.as_ref().map(ToString::to_string)).collect();
            Err(format!(
                "no manifest for platform {want}; available: {}",
                if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn parses_manifest_and_refuses_junk() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":3}}]}}"#,
            d('a'),
            d('b')
        );
        let Document::Manifest(parsed) = parse_document(m.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert_eq!(parsed.layers.len(), 1);
        assert_eq!(parsed.config.size, 2);
        assert!(parse_document(b"not json", None).is_err());
        assert!(parse_document(m.as_bytes(), Some(DOCKER_MANIFEST)).is_err());
        // One more layer than allowed: MAX_LAYERS before the manifest's own.
        let layer = format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":3}}"#,
            d('b')
        );
        let many = m.replace(
            r#""layers":["#,
            &format!(r#""layers":[{},"#, vec![layer.as_str(); MAX_LAYERS].join(",")),
        );
        assert!(parse_document(many.as_bytes(), None)
            .unwrap_err()
            .contains("more than the 256 allowed"));
        let bad_layer = m.replace("tar+gzip", "tar+bzip2");
        assert!(parse_document(bad_layer.as_bytes(), None)
            .unwrap_err()
            .contains("unsupported layer media type"));
    }

    #[test]
    fn selects_platform() {
        let entry = |arch: &str, variant: Option<&str>| IndexEntry {
            descriptor: Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: Digest::of(arch.as_bytes()),
                size: 1,
            },
            platform: Some(Platform::new("linux", arch, variant)),
            annotations: HashMap::new(),
        };
        let entries = vec![
            entry("amd64", None),
            entry("arm64", Some("v8")),
            entry("arm", Some("v6")),
            entry("arm", Some("v7")),
        ];
        assert_eq!(
            select_platform(&entries, &Platform::parse("linux/arm64").unwrap())
                .unwrap()
                .descriptor
                .digest,
            Digest::of(b"arm64")
        );
        assert_eq!(
            select_platform(&entries, &Platform::parse("linux/arm/v7").unwrap())
                .unwrap()
                .platform
                .as_ref()
                .unwrap()
                .variant
                .as_deref(),
            Some("v7")
        );
        assert!(select_platform(&entries, &Platform::parse("linux/s390x").unwrap())
            .unwrap_err()
            .contains("linux/amd64"));
    }
}

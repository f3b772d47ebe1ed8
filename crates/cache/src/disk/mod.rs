//! A manifest's root disk: the merged metadata image (fsmeta) built from
//! the cached layer images alone, and the VMDK descriptor that concatenates
//! fsmeta and the layers into one read-only disk.

pub mod vmdk;

use std::fs;
use std::path::PathBuf;

use oci::Digest;

use crate::error::{Error, Result};
use crate::ingest::Lease;
use crate::seal::FileSealing;
use crate::store::Artifact;
use vmdk::Extent;

/// Sizes of a manifest's root-disk artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSizes {
    /// fsmeta image bytes.
    pub fsmeta: u64,
    /// VMDK descriptor bytes.
    pub vmdk: u64,
}

/// Makes sure fsmeta and the VMDK of `manifest` exist and describe the
/// current layer files, building whatever is missing or stale. `layers` are
/// diff_ids, bottom to top; their images must already be in the store.
/// Files it publishes are recorded in `lease`. A layer image converted
/// again is the same bytes (conversion is deterministic), so an existing
/// fsmeta stays valid. An fsmeta built now comes with its seal, hashed
/// while the file was made durable: a caller recording the root disk
/// needs it, and taking it afterwards would read the file again while
/// nothing else runs.
pub fn ensure(lease: &Lease<'_>, manifest: &Digest, layers: &[Digest]) -> Result<(DiskSizes, Option<Digest>)> {
    let store = lease.store();
    let _lock = store.lock_artifact("disk", manifest)?;
    let fsmeta_path = store.fsmeta_path(manifest);
    let vmdk_path = store.vmdk_path(manifest);
    let layer_paths: Vec<PathBuf> = layers.iter().map(|d| store.layer_path(d)).collect();
    let mut sealing = None;
    if !fsmeta_path.exists() {
        let tags: Vec<String> = layers.iter().map(|d| d.hex().to_string()).collect();
        let inputs: Vec<erofs::FsmetaLayer<'_>> = layer_paths
            .iter()
            .zip(&tags)
            .map(|(path, tag)| erofs::FsmetaLayer { path, tag: tag.as_bytes() })
            .collect();
        let mut tmp = store.temp_file()?;
        erofs::build_fsmeta(&inputs, tmp.file()).map_err(|e| match e {
            erofs::Error::Io(source) => Error::Cache {
                path: tmp.path().to_path_buf(),
                source,
            },
            other => Error::Internal(format!("cannot build fsmeta for {manifest}: {other}")),
        })?;
        sealing = Some(FileSealing::start(tmp.path())?);
        tmp.publish(&fsmeta_path)?;
        lease.published(Artifact::Fsmeta(manifest.clone()));
    }
    let size = |path: &PathBuf| fs::metadata(path).map(|m| m.len()).map_err(Error::cache(path));
    let fsmeta = size(&fsmeta_path)?;
    let mut extents = vec![Extent {
        path: &fsmeta_path,
        size: fsmeta,
    }];
    for path in &layer_paths {
        extents.push(Extent { path, size: size(path)? });
    }
    let cid = u32::from_str_radix(&manifest.hex()[..8], 16).expect("digest hex is hex");
    let descriptor = vmdk::descriptor(&extents, cid)?;
    // A descriptor names absolute paths: rewrite it if the cache moved.
    if fs::read(&vmdk_path).ok().as_deref() != Some(descriptor.as_bytes()) {
        store.write_atomic(&vmdk_path, descriptor.as_bytes())?;
        lease.published(Artifact::Vmdk(manifest.clone()));
    }
    let sizes = DiskSizes {
        fsmeta,
        vmdk: descriptor.len() as u64,
    };
    Ok((sizes, sealing.map(FileSealing::join).transpose()?))
}

//! Deleting the files the collector condemned. Prune deletes every file
//! no row reaches, in inode order: ext4 touches each inode-table and
//! bitmap block once per run of neighbouring inodes instead of once per
//! file, which halves the time on a journaled ext4. Remove deletes only
//! the files of the rows it dropped. Both measure each file just before
//! unlinking it, so `bytesReclaimed` is what the disk got back. A dry run
//! does not come here: it measures the same listing
//! ([`super::measure::Measured::unreached`]).

use std::path::PathBuf;

use crate::error::Result;
use crate::index::reach::{Doomed, LiveSet};
use crate::model::PruneReport;
use crate::parallel;
use crate::store::{self, Artifact, Kind, Store};

/// Threads deleting files at once. An unlink holds its directory only
/// briefly; most of its cost (freeing the inode and blocks, and on a disk
/// mounted with `discard` waiting for the device) runs in parallel, so many
/// threads beat one even on few cores.
const DELETERS: usize = 32;

/// A file or directory to delete.
struct Garbage {
    path: PathBuf,
    /// Which counter a deleted file adds to.
    kind: Kind,
    /// The order to delete in (0 when unknown).
    inode: u64,
}

/// Deletes the files of rows [`crate::index::reach::drop_refs`] dropped.
pub fn doomed(store: &Store, doomed: &Doomed) -> Result<PruneReport> {
    let garbage: Vec<Garbage> = doomed
        .manifests
        .iter()
        .cloned()
        .map(Artifact::Fsmeta)
        .chain(doomed.manifests.iter().cloned().map(Artifact::Vmdk))
        .chain(doomed.layers.iter().cloned().map(Artifact::Layer))
        .map(|artifact| Garbage {
            path: store.path(&artifact),
            kind: artifact.kind(),
            inode: 0,
        })
        .collect();
    let mut report = PruneReport {
        image_refs_removed: doomed.refs,
        manifests_removed: doomed.manifests.len() as u64,
        layers_removed: doomed.layers.len() as u64,
        ..PruneReport::default()
    };
    remove_all(&garbage, &mut report)?;
    Ok(report)
}

/// Deletes every file in the cache that `live` does not reach: what the collection just dropped, leftovers
/// of a crash between publishing and recording, and temp files. Adds what
/// it deleted to `report`; returns the bytes of those under `tmp/`.
pub fn unreached(store: &Store, live: &LiveSet, report: &mut PruneReport) -> Result<u64> {
    let mut garbage = Vec::new();
    for kind in Kind::ALL {
        for entry in store::entries(&store.dir(kind))? {
            let reached = entry
                .name
                .strip_suffix(kind.suffix())
                .is_some_and(|hex| live.reaches_hex(kind, hex));
            if !reached {
                garbage.push(Garbage {
                    path: entry.path,
                    kind,
                    inode: entry.inode,
                });
            }
        }
    }
    // Stable: where there are no inode numbers, directory order is kept.
    garbage.sort_by_key(|g| g.inode);
    remove_all(&garbage, report)?;
    let mut temp = 0;
    for entry in store::entries(&store.tmp_dir())? {
        temp += store::remove(&entry.path)?.unwrap_or(0);
    }
    report.bytes_reclaimed += temp;
    Ok(temp)
}

/// Deletes `garbage` with [`DELETERS`] threads, each taking one
/// contiguous run, adding the files and bytes deleted to `report`.
fn remove_all(garbage: &[Garbage], report: &mut PruneReport) -> Result<()> {
    let chunks: Vec<&[Garbage]> = garbage.chunks(garbage.len().div_ceil(DELETERS).max(1)).collect();
    let remove_chunk = |chunk: &&[Garbage]| -> Result<(u64, u64, u64)> {
        let (mut fsmeta, mut vmdk, mut bytes) = (0, 0, 0);
        for item in *chunk {
            if let Some(size) = store::remove(&item.path)? {
                bytes += size;
                match item.kind {
                    Kind::Fsmeta => fsmeta += 1,
                    Kind::Vmdk => vmdk += 1,
                    Kind::Layer => {}
                }
            }
        }
        Ok((fsmeta, vmdk, bytes))
    };
    for (fsmeta, vmdk, bytes) in parallel::map(&chunks, DELETERS, remove_chunk)? {
        report.fsmeta_removed += fsmeta;
        report.vmdk_removed += vmdk;
        report.bytes_reclaimed += bytes;
    }
    Ok(())
}

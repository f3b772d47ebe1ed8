//! `diskUsage`: what the cache holds on disk, as `docker system df -v`
//! shows it, from one listing of the files (the sizes a budget counts,
//! [`crate::gc::measure`]) and the plan of a plain prune in a read
//! transaction, so `reclaimableBytes` is exactly what `prune()` would free.

use std::collections::{HashMap, HashSet};

use super::Cache;
use crate::error::Result;
use crate::gc::budget::{self, hex_of};
use crate::gc::measure::{self, Measured};
use crate::gc::policy::PruneOptions;
use crate::index::{now_ms, plan};
use crate::model::{DiskUsage, FileCount, ImageUsage};
use crate::parallel;
use crate::store::Kind;

impl Cache {
    /// What the cache holds on disk. Holds the collector lock exclusively,
    /// as a prune does, so no ingest in flight counts as garbage.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let _lock = self.store.lock_collect()?;
        // The files are listed and measured beside the read transaction's
        // first statements (system calls beside SQLite's CPU); the graph,
        // which needs their sizes, is read in the same snapshot after.
        let (measured, live, graph, refs) = std::thread::scope(|scope| {
            let measuring = scope.spawn(|| measure::measure(&self.store));
            self.index.read(|conn| {
                let tx = conn.unchecked_transaction()?;
                plan::select(&tx, &PruneOptions::default(), now_ms())?;
                plan::take(&tx, None)?;
                let live = plan::follow(&tx)?.live;
                let mut stmt = tx.prepare_cached(
                    "SELECT r.reference, r.manifest_digest, m.last_used_at FROM image_refs r \
                     JOIN manifests m ON m.digest = r.manifest_digest ORDER BY r.reference",
                )?;
                let refs: Vec<(String, String, Option<i64>)> = stmt
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let measured = parallel::join(measuring, "measuring the cache")?;
                let graph = budget::graph(&tx, &measured)?;
                Ok((measured, live, graph, refs))
            })
        })?;
        let temp = measure::tree_size(&self.store.tmp_dir())?.unwrap_or(0);
        let count = |kind: Kind| {
            let files = measured.of(kind);
            FileCount {
                count: files.count,
                bytes: files.bytes,
            }
        };
        Ok(DiskUsage {
            total_bytes: measured.total,
            reclaimable_bytes: measured.unreached(&live).bytes + temp,
            index_bytes: measured.index,
            layers: count(Kind::Layer),
            fsmeta: count(Kind::Fsmeta),
            vmdk: count(Kind::Vmdk),
            images: images(&measured, &graph, refs),
        })
    }
}

/// Per reference: its files, and what removing it alone would free (its
/// fsmeta and VMDK, and the layers no other live manifest uses, unless
/// another reference or a root keeps the manifest).
fn images(measured: &Measured, graph: &budget::Graph, refs: Vec<(String, String, Option<i64>)>) -> Vec<ImageUsage> {
    let (nodes, lost) = graph;
    let mut users: HashMap<&str, u64> = HashMap::new();
    for node in nodes.values().filter(|n| n.refs > 0 || n.rooted) {
        for layer in &node.layers {
            *users.entry(layer.as_str()).or_default() += 1;
        }
    }
    let layer_bytes = |hex: &str| if lost.contains(hex) { 0 } else { measured.size(Kind::Layer, hex) };
    refs.into_iter()
        .map(|(reference, manifest, last_used_at)| {
            let node = nodes.get(hex_of(&manifest));
            let (mut size, mut unique) = (0, 0);
            let mut in_use = false;
            if let Some(node) = node {
                in_use = node.rooted;
                let alone = node.refs == 1 && !node.rooted;
                size += node.disk_bytes;
                unique += if alone { node.disk_bytes } else { 0 };
                let mut own: HashMap<&str, u64> = HashMap::new();
                for layer in &node.layers {
                    *own.entry(layer.as_str()).or_default() += 1;
                }
                let mut seen = HashSet::new();
                for layer in &node.layers {
                    if !seen.insert(layer.as_str()) {
                        continue;
                    }
                    size += layer_bytes(layer);
                    if alone && users.get(layer.as_str()) == own.get(layer.as_str()) {
                        unique += layer_bytes(layer);
                    }
                }
            }
            ImageUsage {
                reference,
                manifest_digest: manifest,
                size_bytes: size,
                unique_bytes: unique,
                shared_bytes: size - unique,
                in_use,
                last_used_at,
            }
        })
        .collect()
}

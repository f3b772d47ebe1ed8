//! `diskUsage`: what the cache holds on disk, as `docker system df -v`
//! shows it, from one [`gc::Survey`] (the sizes a budget counts,
//! [`crate::gc::measure`]) and the plan of a plain prune over it, so
//! `reclaimableBytes` is exactly what `prune()` would free.

use super::Cache;
use crate::error::Result;
use crate::gc::{self, measure, policy::PruneOptions, Survey};
use crate::model::{DiskUsage, FileCount, ImageUsage};
use crate::parallel;
use crate::store::Kind;

impl Cache {
    /// What the cache holds on disk. Holds the collector lock exclusively,
    /// as a prune does, so no ingest in flight counts as garbage.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let _lock = self.store.lock_collect()?;
        let Survey {
            mut graph,
            candidates,
            measured,
        } = std::thread::scope(|scope| {
            let listing = scope.spawn(|| measure::list(&self.store));
            self.index.read(|conn| {
                let tx = conn.unchecked_transaction()?;
                gc::survey(&tx, &self.store, &PruneOptions::default(), listing)
            })
        })?;
        // What a prune would free, beside each image's bytes: two passes
        // over the rows, independent of each other.
        let (unreached, bytes) = std::thread::scope(|scope| {
            let unreached = scope.spawn(|| Ok(measured.unreached(&graph.plan(&candidates).live).bytes));
            let bytes = graph.usage(&measured);
            (parallel::join(unreached, "planning a prune"), bytes)
        });
        let temp = measure::tree_size(&self.store.tmp_dir())?.unwrap_or(0);
        let count = |kind: Kind| {
            let files = measured.of(kind);
            FileCount {
                count: files.count,
                bytes: files.bytes,
            }
        };
        let images = std::mem::take(&mut graph.refs)
            .into_iter()
            .zip(bytes)
            .map(|(r, bytes)| {
                let manifest = &graph.manifests[r.manifest];
                ImageUsage {
                    reference: r.name,
                    manifest_digest: manifest.digest.clone(),
                    size_bytes: bytes.size,
                    unique_bytes: bytes.unique,
                    shared_bytes: bytes.size - bytes.unique,
                    in_use: manifest.rooted,
                    last_used_at: manifest.last_used_at,
                }
            })
            .collect();
        let usage = DiskUsage {
            total_bytes: measured.total,
            reclaimable_bytes: unreached? + temp,
            index_bytes: measured.index,
            layers: count(Kind::Layer),
            fsmeta: count(Kind::Fsmeta),
            vmdk: count(Kind::Vmdk),
            images,
        };
        parallel::drop_beside((graph, measured));
        Ok(usage)
    }
}

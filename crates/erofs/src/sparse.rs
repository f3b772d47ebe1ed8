//! Sparse files as chunk-based inodes: which chunk size, and which
//! chunks hold data.
//!
//! The chunk size is chosen per file to minimise "map bytes + stored
//! bytes": small chunks store fewer zeros, large chunks need fewer map
//! entries (see [`plan_sparse`]). For 1 GiB with one block of data at
//! each end that is 64 KiB chunks: a 128 KiB map in fsmeta and 128 KiB
//! stored. The map is capped at [`MAX_CHUNKS`] chunks, so only files
//! beyond 4 TiB of logical size with scattered data store noticeable
//! zeros; [`crate::limits::SPARSE_SIZE_MAX`] and
//! [`crate::limits::SPARSE_ZEROS_MAX`] bound them.

use crate::format::CHUNK_BLKBITS_MAX;
use crate::BLOCK_SIZE;

/// Chunk layout of a sparse file.
#[derive(Debug, PartialEq, Eq)]
pub struct SparsePlan {
    /// Chunk size is `BLOCK_SIZE << chunkbits`.
    pub chunkbits: u8,
    /// Ranges of chunks holding data, as (first chunk, count), sorted.
    pub mapped: Vec<(u64, u64)>,
    /// Blocks the mapped chunks occupy in the image.
    pub stored_blocks: u64,
}

impl SparsePlan {
    /// Zeros the plan stores beside `data` bytes of data.
    pub fn zeros(&self, data: u64) -> u64 {
        (self.stored_blocks * BLOCK_SIZE).saturating_sub(data)
    }
}

/// Bytes a chunk is counted at in the map: 8, what fsmeta's chunk index
/// took before packing (its block map entry now takes 4), so the bound
/// stayed where it was.
const INDEX_COST: u128 = 8;

/// Most chunks a sparse file's map may have (8 MiB of fsmeta indexes):
/// bounds metadata for absurd logical sizes, at the price of storing
/// zeros inside chunks that are only partly data.
pub const MAX_CHUNKS: u64 = 1 << 20;

/// Picks the chunk size minimising map bytes plus stored bytes for the
/// data segments `segs` (sorted, non-overlapping, within `size`), among
/// chunk sizes giving at most [`MAX_CHUNKS`] chunks (or the largest).
pub fn plan_sparse(segs: &[(u64, u64)], size: u64) -> SparsePlan {
    let mut best: Option<(u128, SparsePlan)> = None;
    for bits in 0..=CHUNK_BLKBITS_MAX {
        let chunk = BLOCK_SIZE << bits;
        let nchunks = size.div_ceil(chunk);
        let mut mapped: Vec<(u64, u64)> = Vec::new();
        for &(off, len) in segs {
            let (first, last) = (off / chunk, (off + len - 1) / chunk);
            match mapped.last_mut() {
                Some((f, c)) if *f + *c >= first => *c = (*c).max(last + 1 - *f),
                _ => mapped.push((first, last + 1 - first)),
            }
        }
        let stored_blocks: u64 = mapped
            .iter()
            .map(|&(f, c)| ((f + c) * chunk).min(size).div_ceil(BLOCK_SIZE) - f * (chunk / BLOCK_SIZE))
            .sum();
        let cost = u128::from(nchunks) * INDEX_COST + u128::from(stored_blocks) * u128::from(BLOCK_SIZE);
        let allowed = nchunks <= MAX_CHUNKS || bits == CHUNK_BLKBITS_MAX;
        if allowed && best.as_ref().is_none_or(|(c, _)| cost <= *c) {
            best = Some((
                cost,
                SparsePlan {
                    chunkbits: bits,
                    mapped,
                    stored_blocks,
                },
            ));
        }
        if chunk >= size {
            break;
        }
    }
    best.expect("at least one chunk size is tried").1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_plan_prefers_holes_over_zeros() {
        // 1 GiB file with 4 KiB of data at each end: tiny chunks would need a
        // huge map, huge chunks would store zeros; the plan must store only
        // a few blocks and keep the map small.
        let size = 1 << 30;
        let plan = plan_sparse(&[(0, 4096), (size - 4096, 4096)], size);
        let chunk = BLOCK_SIZE << plan.chunkbits;
        assert_eq!(plan.mapped.len(), 2);
        assert!(plan.mapped.iter().all(|&(_, c)| c == 1));
        let cost = size / chunk * 8 + 2 * chunk;
        assert!(cost <= 256 << 10, "{plan:?}");
    }

    #[test]
    fn sparse_plan_handles_empty_and_dense() {
        assert!(plan_sparse(&[], 1 << 40).mapped.is_empty());
        let absurd = plan_sparse(&[(0, 1), (1 << 60, 1)], (1 << 60) + 1);
        assert!(((1u64 << 60) + 1).div_ceil(BLOCK_SIZE << absurd.chunkbits) <= MAX_CHUNKS);
        let dense = plan_sparse(&[(0, 10_000)], 10_000);
        assert_eq!(dense.mapped, vec![(0, 1)]);
    }
}

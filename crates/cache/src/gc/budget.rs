//! What a size budget evicts: candidates in least-recently-used order
//! until the cache fits. Bytes are freed the way the sweep frees them: a
//! manifest's fsmeta and VMDK when its last reference goes (and no root
//! holds it), a layer image when the last manifest using it goes, and
//! first of all whatever no root reaches already. Sizes are the measured
//! ones ([`Measured`]). The index file does not shrink when rows go
//! (nothing VACUUMs it; freed pages are reused by the next ingest), so it
//! counts as it is.

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;

use super::measure::Measured;
use crate::error::Result;
use crate::index::plan;
use crate::store::Kind;

/// One manifest as the budget (and `diskUsage`) sees it.
pub struct Node {
    /// References naming it.
    pub refs: u64,
    /// Whether a sandbox or snapshot holds it.
    pub rooted: bool,
    /// Bytes of its fsmeta and VMDK files that an index row names.
    pub disk_bytes: u64,
    /// Hex diff_ids of its layers (one entry per position).
    pub layers: Vec<String>,
}

/// Every manifest by hex digest, and the layers a repair dropped.
pub type Graph = (HashMap<String, Node>, HashSet<String>);

/// The references to evict (a prefix of the candidates by age), given the
/// cache as `measured` and the `budget`; all candidates when even that
/// does not fit.
pub fn choose(conn: &Connection, measured: &Measured, budget: u64) -> Result<Vec<String>> {
    let (mut nodes, lost) = graph(conn, measured)?;
    let mut users: HashMap<String, u64> = HashMap::new();
    for node in nodes.values().filter(|n| n.refs > 0 || n.rooted) {
        for layer in &node.layers {
            *users.entry(layer.clone()).or_default() += 1;
        }
    }
    let layer_bytes = |hex: &str| if lost.contains(hex) { 0 } else { measured.size(Kind::Layer, hex) };
    let kept: u64 = nodes.values().filter(|n| n.refs > 0 || n.rooted).map(|n| n.disk_bytes).sum::<u64>()
        + users.keys().map(|hex| layer_bytes(hex)).sum::<u64>();
    let artifacts: u64 = measured.kinds.iter().map(|k| k.bytes).sum();
    let mut remaining = measured.total - (artifacts - kept.min(artifacts));
    let mut chosen = Vec::new();
    for (reference, manifest) in plan::candidates_by_age(conn)? {
        if remaining <= budget {
            break;
        }
        chosen.push(reference);
        let Some(node) = nodes.get_mut(hex_of(&manifest)) else { continue };
        node.refs -= 1;
        if node.refs > 0 || node.rooted {
            continue;
        }
        remaining = remaining.saturating_sub(node.disk_bytes);
        for layer in &node.layers {
            let count = users.get_mut(layer).expect("a live manifest's layers have users");
            *count -= 1;
            if *count == 0 {
                remaining = remaining.saturating_sub(layer_bytes(layer));
            }
        }
    }
    Ok(chosen)
}

/// The hex part of a digest as stored (`sha256:<hex>`).
pub fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, hex)| hex)
}

/// Reads the [`Graph`], with sizes from `measured`.
pub fn graph(conn: &Connection, measured: &Measured) -> Result<Graph> {
    let mut nodes = HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT m.digest, m.fsmeta_size IS NOT NULL, m.vmdk_size IS NOT NULL, \
         (SELECT count(*) FROM image_refs WHERE manifest_digest = m.digest), \
         EXISTS (SELECT 1 FROM sandboxes WHERE manifest_digest = m.digest) \
         OR EXISTS (SELECT 1 FROM snapshots WHERE manifest_digest = m.digest) \
         FROM manifests m",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let digest: String = row.get(0)?;
        let hex = hex_of(&digest).to_string();
        let fsmeta = if row.get(1)? { measured.size(Kind::Fsmeta, &hex) } else { 0 };
        let vmdk = if row.get(2)? { measured.size(Kind::Vmdk, &hex) } else { 0 };
        let node = Node {
            refs: row.get::<_, i64>(3)? as u64,
            rooted: row.get(4)?,
            disk_bytes: fsmeta + vmdk,
            layers: Vec::new(),
        };
        nodes.insert(hex, node);
    }
    let mut stmt = conn.prepare_cached("SELECT manifest_digest, diff_id FROM manifest_layers")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let manifest: String = row.get(0)?;
        let diff_id: String = row.get(1)?;
        if let Some(node) = nodes.get_mut(hex_of(&manifest)) {
            node.layers.push(hex_of(&diff_id).to_string());
        }
    }
    let mut stmt = conn.prepare_cached("SELECT diff_id FROM layers WHERE lost = 1")?;
    let lost = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .map(|d| d.map(|d| hex_of(&d).to_string()))
        .collect::<rusqlite::Result<_>>()?;
    Ok((nodes, lost))
}

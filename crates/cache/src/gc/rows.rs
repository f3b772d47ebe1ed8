//! The collector's SQL, apart from its algorithm ([`super::graph`]): the
//! rows the graph is built from, read in one pass per table; the
//! references the pattern filters select (globs, labels); and the
//! deletion of what a plan takes. A dry run and a real prune read and plan
//! alike, in one snapshot of the index; only the real one then deletes, in
//! the same transaction.
//!
//! Every plan also takes what no root reaches whatever the filters: a
//! manifest no reference names and no sandbox or snapshot holds, a layer
//! no remaining manifest uses.

use rusqlite::types::Type;
use rusqlite::{params, Connection, Row};

use super::graph::{Graph, LayerNode, ManifestNode, Plan};
use super::policy::{Pattern, PruneOptions};
use crate::error::Result;

/// References the pattern filters select: a `references` pattern matches
/// them, their config's labels match, no `keep` pattern matches them. The
/// other conditions (no root holds the image, the durations) and the
/// order are the graph's ([`Graph::candidates`]).
const MATCHING: &str = "
    SELECT r.reference
    FROM image_refs r
    JOIN manifests m ON m.digest = r.manifest_digest
    LEFT JOIN configs c ON c.digest = m.config_digest
    WHERE (?1 IS NULL OR r.reference IN (SELECT value FROM json_each(?1))
           OR EXISTS (SELECT 1 FROM json_each(?2) WHERE r.reference GLOB value))
      AND (?3 IS NULL OR NOT EXISTS (
            SELECT 1 FROM json_each(?3) want WHERE NOT EXISTS (
              SELECT 1 FROM json_each(c.labels) have
              WHERE have.key = want.key AND (want.type = 'true' OR (have.type = 'text' AND have.value = want.value)))))
      AND r.reference NOT IN (SELECT value FROM json_each(?4))
      AND NOT EXISTS (SELECT 1 FROM json_each(?5) WHERE r.reference GLOB value)
";

/// The references the pattern filters of `options` select (globs as
/// SQLite's GLOB, labels from the configs' JSON), or None when it has none:
/// then every reference passes them.
pub fn matching(conn: &Connection, options: &PruneOptions) -> Result<Option<Vec<String>>> {
    if options.references.is_none() && options.labels.is_none() && options.keep.is_empty() {
        return Ok(None);
    }
    let (exact, globs) = match &options.references {
        Some(patterns) => {
            let (exact, globs) = Pattern::split_json(patterns);
            (Some(exact), globs)
        }
        None => (None, "[]".to_string()),
    };
    let labels = options.labels.as_ref().map(|labels| {
        let object: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.clone().map_or(serde_json::Value::Bool(true), serde_json::Value::String),
                )
            })
            .collect();
        serde_json::Value::Object(object).to_string()
    });
    let (keep_exact, keep_globs) = Pattern::split_json(&options.keep);
    let mut stmt = conn.prepare_cached(MATCHING)?;
    let rows = stmt.query_map(params![exact, globs, labels, keep_exact, keep_globs], |row| row.get(0))?;
    Ok(Some(rows.collect::<rusqlite::Result<_>>()?))
}

/// Deletes the planned rows, children before parents (the collector runs
/// with foreign keys off, see [`crate::index::Index::write_bulk`]): one
/// statement per table, the keys passed as one JSON array.
pub fn execute(conn: &Connection, plan: &Plan) -> Result<()> {
    let json = |keys: &[String]| serde_json::to_string(keys).expect("strings serialize");
    let (refs, manifests, layers) = (json(&plan.references), json(&plan.manifests), json(&plan.layers));
    for (sql, keys) in [
        ("DELETE FROM image_refs WHERE reference IN (SELECT value FROM json_each(?1))", &refs),
        (
            "DELETE FROM manifest_layers WHERE manifest_digest IN (SELECT value FROM json_each(?1))",
            &manifests,
        ),
        (
            "DELETE FROM manifests WHERE digest IN (SELECT value FROM json_each(?1))",
            &manifests,
        ),
        (
            "DELETE FROM layer_framing WHERE diff_id IN (SELECT value FROM json_each(?1))",
            &layers,
        ),
        ("DELETE FROM layers WHERE diff_id IN (SELECT value FROM json_each(?1))", &layers),
    ] {
        conn.execute(sql, [keys])?;
    }
    Ok(())
}

/// Reads the [`Graph`]: every manifest, layer, link and reference row, and
/// which manifests a sandbox or snapshot holds.
pub fn graph(conn: &Connection) -> Result<Graph> {
    let mut graph = Graph::default();
    let size = |v: Option<i64>| v.map(|v| v.max(0) as u64);
    let mut stmt = conn.prepare_cached("SELECT digest, last_used_at, fsmeta_size, vmdk_size, layer_count FROM manifests")?;
    let mut rows = stmt.query([])?;
    let mut links = 0;
    while let Some(row) = rows.next()? {
        let layers = row.get::<_, i64>(4)?.clamp(0, 1 << 10) as usize;
        links += layers;
        graph.add_manifest(ManifestNode {
            digest: row.get(0)?,
            last_used_at: row.get(1)?,
            fsmeta_size: size(row.get(2)?),
            vmdk_size: size(row.get(3)?),
            rooted: false,
            // Its links come later, one at a time: room for them at once.
            layers: Vec::with_capacity(layers),
        });
    }
    graph.reserve(links.min(1 << 22));
    let mut stmt = conn.prepare_cached("SELECT diff_id, erofs_size, lost FROM layers ORDER BY diff_id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        graph.add_layer(LayerNode {
            diff_id: row.get(0)?,
            size: row.get::<_, i64>(1)?.max(0) as u64,
            lost: row.get(2)?,
        });
    }
    // By diff_id, as the layers: a scan of the covering index
    // `manifest_layers_diff_id`, half the width of the table.
    let mut stmt = conn.prepare_cached("SELECT manifest_digest, diff_id FROM manifest_layers ORDER BY diff_id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        graph.link(bytes(row, 0)?, bytes(row, 1)?);
    }
    graph.linked();
    let mut stmt = conn.prepare_cached("SELECT manifest_digest FROM sandboxes UNION SELECT manifest_digest FROM snapshots")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        graph.root(bytes(row, 0)?);
    }
    let mut stmt = conn.prepare_cached("SELECT reference, manifest_digest, created_at FROM image_refs ORDER BY reference")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        graph.add_ref(row.get(0)?, bytes(row, 1)?, row.get(2)?);
    }
    Ok(graph)
}

/// Column `i` of `row` as the bytes of its text, borrowed from the row:
/// digests are compared and decoded as bytes, so 100,000 of them per read
/// are not checked as UTF-8 first.
fn bytes<'a>(row: &'a Row<'_>, i: usize) -> rusqlite::Result<&'a [u8]> {
    row.get_ref(i)?
        .as_bytes()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

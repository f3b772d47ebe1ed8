//! A prune's plan: which references, manifests and layers go. The same
//! statements compute it for a dry run and for a real prune, into TEMP
//! tables of the connection (kept in memory), so a dry run's counters
//! cannot drift from the real prune's: the real one then deletes by
//! joining them, the dry run drops them. Writing TEMP tables takes no
//! lock on the index, so a dry run runs in a read transaction.
//!
//! Every plan also takes what no root reaches whatever the filters: a
//! manifest no reference names and no sandbox or snapshot holds, a layer
//! no remaining manifest uses.

use rusqlite::{params, Connection};

use super::reach::{self, LiveSet};
use crate::error::Result;
use crate::gc::policy::{Pattern, PruneOptions};

const CREATE: &str = "
    DROP TABLE IF EXISTS temp.prune_candidates;
    DROP TABLE IF EXISTS temp.prune_refs;
    DROP TABLE IF EXISTS temp.prune_manifests;
    DROP TABLE IF EXISTS temp.prune_layers;
    CREATE TEMP TABLE prune_candidates (reference TEXT PRIMARY KEY, manifest TEXT NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TEMP TABLE prune_refs (reference TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TEMP TABLE prune_manifests (digest TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TEMP TABLE prune_layers (diff_id TEXT PRIMARY KEY) WITHOUT ROWID;
";

const DROP: &str = "
    DROP TABLE IF EXISTS temp.prune_candidates;
    DROP TABLE IF EXISTS temp.prune_refs;
    DROP TABLE IF EXISTS temp.prune_manifests;
    DROP TABLE IF EXISTS temp.prune_layers;
";

/// References the filters select: no sandbox or snapshot holds their
/// image, and every given filter selects them. `at` is what least recently
/// used means: the image's `last_used_at`, or the reference's `created_at`
/// for an image never acquired.
const CANDIDATES: &str = "
    INSERT INTO temp.prune_candidates (reference, manifest, at)
    SELECT r.reference, r.manifest_digest, coalesce(m.last_used_at, r.created_at)
    FROM image_refs r
    JOIN manifests m ON m.digest = r.manifest_digest
    LEFT JOIN configs c ON c.digest = m.config_digest
    WHERE r.manifest_digest NOT IN (SELECT manifest_digest FROM sandboxes UNION SELECT manifest_digest FROM snapshots)
      AND (?1 IS NULL OR coalesce(m.last_used_at, r.created_at) < ?1)
      AND (?2 IS NULL OR r.created_at < ?2)
      AND (?3 IS NULL OR r.reference IN (SELECT value FROM json_each(?3))
           OR EXISTS (SELECT 1 FROM json_each(?4) WHERE r.reference GLOB value))
      AND (?5 IS NULL OR NOT EXISTS (
            SELECT 1 FROM json_each(?5) want WHERE NOT EXISTS (
              SELECT 1 FROM json_each(c.labels) have
              WHERE have.key = want.key AND (want.type = 'true' OR (have.type = 'text' AND have.value = want.value)))))
      AND r.reference NOT IN (SELECT value FROM json_each(?6))
      AND NOT EXISTS (SELECT 1 FROM json_each(?7) WHERE r.reference GLOB value)
";

/// Manifests nothing keeps once the planned references go.
const MANIFESTS: &str = "
    INSERT INTO temp.prune_manifests (digest)
    SELECT m.digest FROM manifests m
    WHERE NOT EXISTS (SELECT 1 FROM image_refs r WHERE r.manifest_digest = m.digest
                      AND r.reference NOT IN (SELECT reference FROM temp.prune_refs))
      AND NOT EXISTS (SELECT 1 FROM sandboxes WHERE manifest_digest = m.digest)
      AND NOT EXISTS (SELECT 1 FROM snapshots WHERE manifest_digest = m.digest)
";

/// Layers no manifest uses once the planned manifests go.
const LAYERS: &str = "
    INSERT INTO temp.prune_layers (diff_id)
    SELECT l.diff_id FROM layers l
    WHERE NOT EXISTS (SELECT 1 FROM manifest_layers ml WHERE ml.diff_id = l.diff_id
                      AND ml.manifest_digest NOT IN (SELECT digest FROM temp.prune_manifests))
";

/// Deletes the planned rows, children before parents (the collector runs
/// with foreign keys off, see [`super::Index::write_bulk`]).
const EXECUTE: &str = "
    DELETE FROM image_refs WHERE reference IN (SELECT reference FROM temp.prune_refs);
    DELETE FROM manifest_layers WHERE manifest_digest IN (SELECT digest FROM temp.prune_manifests);
    DELETE FROM manifests WHERE digest IN (SELECT digest FROM temp.prune_manifests);
    DELETE FROM layer_framing WHERE diff_id IN (SELECT diff_id FROM temp.prune_layers);
    DELETE FROM layers WHERE diff_id IN (SELECT diff_id FROM temp.prune_layers);
";

/// What a plan takes.
#[derive(Debug, Default)]
pub struct Plan {
    /// References, sorted.
    pub references: Vec<String>,
    /// Manifest rows (each names an fsmeta image and a VMDK).
    pub manifests: u64,
    /// Layer rows (each names a layer image).
    pub layers: u64,
    /// The files the index reaches once the plan is carried out.
    pub live: LiveSet,
}

/// Creates the plan's tables and fills the candidates the filters of
/// `options` select, at time `now` (ms).
pub fn select(conn: &Connection, options: &PruneOptions, now: i64) -> Result<()> {
    conn.execute_batch(CREATE)?;
    let cutoff = |ms: Option<u64>| ms.map(|ms| now.saturating_sub(ms as i64));
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
    conn.prepare_cached(CANDIDATES)?.execute(params![
        cutoff(options.unused_for),
        cutoff(options.older_than),
        exact,
        globs,
        labels,
        keep_exact,
        keep_globs
    ])?;
    Ok(())
}

/// The candidates, least recently used first (ties by reference), with
/// their manifests.
pub fn candidates_by_age(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached("SELECT reference, manifest FROM temp.prune_candidates ORDER BY at, reference")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Plans to take `references` (a budget's choice among the candidates),
/// or every candidate when None.
pub fn take(conn: &Connection, references: Option<&[String]>) -> Result<()> {
    match references {
        None => {
            conn.execute("INSERT INTO temp.prune_refs SELECT reference FROM temp.prune_candidates", [])?;
        }
        Some(references) => {
            let mut stmt = conn.prepare_cached("INSERT INTO temp.prune_refs (reference) VALUES (?1)")?;
            for r in references {
                stmt.execute([r])?;
            }
        }
    }
    Ok(())
}

/// Follows the planned references to the manifests and layers that go
/// with them, and returns the plan.
pub fn follow(conn: &Connection) -> Result<Plan> {
    let manifests = conn.execute(MANIFESTS, [])? as u64;
    let layers = conn.execute(LAYERS, [])? as u64;
    let mut stmt = conn.prepare_cached("SELECT reference FROM temp.prune_refs ORDER BY reference")?;
    let references = stmt.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(Plan {
        references,
        manifests,
        layers,
        live: reach::live_after_plan(conn)?,
    })
}

/// Deletes the planned rows.
pub fn execute(conn: &Connection) -> Result<()> {
    conn.execute_batch(EXECUTE)?;
    Ok(())
}

/// Drops the plan's tables (a pooled connection keeps its TEMP tables).
pub fn discard(conn: &Connection) -> Result<()> {
    conn.execute_batch(DROP)?;
    Ok(())
}

//! Automatic collection: `$MSB_HOME/config.json` states a budget once,
//!
//! ```json
//! { "gc": { "maxBytes": 20000000000, "targetBytes": 16000000000, "minAge": "10m" } }
//! ```
//!
//! and every load or pull that leaves the cache above `maxBytes` evicts
//! least recently used images down to `targetBytes` (default 80% of
//! `maxBytes`) before it returns: never an image a sandbox or snapshot
//! holds, never a reference the call just brought in, never one that
//! entered the cache less than `minAge` ago (default 0). The settings are
//! read before the call changes anything, so a bad file refuses the call.
//! A cache under its budget pays one file read and one SUM over the sizes
//! the index records; only above it are the files measured.

use std::fs;
use std::io;
use std::path::Path;

use oci::progress::{Progress, Sink};
use oci::Reference;
use serde_json::Value;

use super::Cache;
use crate::error::{Error, Result};
use crate::gc;
use crate::gc::policy::{self, Pattern, PruneOptions};
use crate::index::read;

/// The settings file in the cache directory.
pub const SETTINGS: &str = "config.json";
/// `targetBytes` when not given, as a fraction of `maxBytes`.
const DEFAULT_TARGET: f64 = 0.8;

/// The `gc` section of `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcSettings {
    /// Collect when the cache is above this many bytes.
    pub max_bytes: u64,
    /// Collect down to this many bytes.
    pub target_bytes: u64,
    /// Never evict a reference younger than this (ms).
    pub min_age: u64,
}

/// Reads the `gc` settings of the cache in `home` (None: no file, or no
/// `gc` section).
pub fn settings(home: &Path) -> Result<Option<GcSettings>> {
    let path = home.join(SETTINGS);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::cache(&path)(e)),
    };
    let bad = |message: String| Error::InvalidArgument(format!("{}: {message}", path.display()));
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Some(gc) = value.get("gc") else { return Ok(None) };
    let gc = gc.as_object().ok_or_else(|| bad("gc must be an object".into()))?;
    if let Some(key) = gc.keys().find(|k| !["maxBytes", "targetBytes", "minAge"].contains(&k.as_str())) {
        return Err(bad(format!("gc.{key} is not a setting (maxBytes, targetBytes, minAge)")));
    }
    let size = |key: &str| -> Result<Option<u64>> {
        match gc.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => policy::bytes(n.as_f64().unwrap_or(f64::NAN), &format!("{} gc.{key}", path.display())).map(Some),
            Some(_) => Err(bad(format!("gc.{key} must be a number of bytes"))),
        }
    };
    let max_bytes = size("maxBytes")?.ok_or_else(|| bad("gc.maxBytes is required".into()))?;
    let target_bytes = size("targetBytes")?.unwrap_or((max_bytes as f64 * DEFAULT_TARGET) as u64);
    if target_bytes > max_bytes {
        return Err(bad(format!("gc.targetBytes ({target_bytes}) is above gc.maxBytes ({max_bytes})")));
    }
    let what = format!("{} gc.minAge", path.display());
    let min_age = match gc.get("minAge") {
        None => 0,
        Some(Value::Number(n)) => policy::duration_ms(n.as_f64().unwrap_or(f64::NAN), &what)?,
        Some(Value::String(s)) => policy::parse_duration(s, &what)?,
        Some(_) => {
            return Err(bad(
                "gc.minAge must be a duration (milliseconds, or a string such as \"10m\")".into()
            ))
        }
    };
    Ok(Some(GcSettings {
        max_bytes,
        target_bytes,
        min_age,
    }))
}

impl Cache {
    /// The automatic collection after a load or pull that brought in
    /// `brought`, under `settings`; reports what it did to `progress`.
    pub(super) fn collect_after(&self, settings: Option<GcSettings>, brought: &[Reference], progress: &Sink) -> Result<()> {
        let Some(gc) = settings else { return Ok(()) };
        if self.estimated_size()? <= gc.max_bytes {
            return Ok(());
        }
        let options = PruneOptions {
            max_bytes: Some(gc.target_bytes),
            keep: brought.iter().map(|r| Pattern::Exact(r.to_string())).collect(),
            older_than: (gc.min_age > 0).then_some(gc.min_age),
            ..PruneOptions::default()
        };
        let Some(report) = gc::prune_above(&self.store, &self.index, gc.max_bytes, &options)? else {
            return Ok(());
        };
        let budget = report.budget.expect("a budget prune reports its budget");
        progress(Progress::Gc {
            references: report.references,
            bytes_reclaimed: report.bytes_reclaimed,
            remaining_bytes: budget.remaining_bytes,
            budget_bytes: budget.budget_bytes,
        });
        Ok(())
    }

    /// The cache's size from the recorded artifact sizes and the few files
    /// outside the artifact directories: no directory is listed.
    fn estimated_size(&self) -> Result<u64> {
        let root = self.store.root();
        let db = self.store.db_path();
        let mut files = vec![root.join(SETTINGS), root.join(crate::REGISTRY_SETTINGS), db.clone()];
        files.extend(["-wal", "-shm"].map(|suffix| {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            name.into()
        }));
        let others: u64 = files.iter().filter_map(|f| fs::metadata(f).ok()).map(|m| m.len()).sum();
        Ok(self.index.read(read::recorded_artifact_bytes)? + others)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str) -> Result<Option<GcSettings>> {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SETTINGS), text).unwrap();
        settings(dir.path())
    }

    #[test]
    fn reads_the_gc_section() {
        assert_eq!(with("{}").unwrap(), None);
        let s = with(r#"{ "gc": { "maxBytes": 1000, "minAge": "10m" } }"#).unwrap().unwrap();
        assert_eq!(
            s,
            GcSettings {
                max_bytes: 1000,
                target_bytes: 800,
                min_age: 600_000
            }
        );
        let s = with(r#"{ "gc": { "maxBytes": 1000, "targetBytes": 10, "minAge": 5 } }"#)
            .unwrap()
            .unwrap();
        assert_eq!((s.target_bytes, s.min_age), (10, 5));
        for bad in [
            "nope",
            r#"{ "gc": 1 }"#,
            r#"{ "gc": {} }"#,
            r#"{ "gc": { "maxBytes": -1 } }"#,
            r#"{ "gc": { "maxBytes": "1GB" } }"#,
            r#"{ "gc": { "maxBytes": 10, "targetBytes": 11 } }"#,
            r#"{ "gc": { "maxBytes": 10, "minAge": "10y" } }"#,
            r#"{ "gc": { "maxBytes": 10, "maxbytes": 10 } }"#,
        ] {
            assert_eq!(with(bad).unwrap_err().code(), "invalid_argument", "{bad}");
        }
    }
}

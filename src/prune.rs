//! `Image.prune` options, parsed on the JavaScript thread into the
//! engine's [`PruneOptions`]: every key known, every value of its type,
//! durations and patterns checked by the engine's own parsers, so a bad
//! option rejects with `InvalidArgumentError` before anything is touched.

use napi::bindgen_prelude::*;
use napi::ValueType;

use cache::prune_policy::{self, Labels, Pattern, PruneOptions};

use crate::args::{self, invalid};

/// Every option `Image.prune` takes.
const KNOWN: &[&str] = &["dryRun", "unusedFor", "olderThan", "references", "labels", "keep", "maxBytes"];

/// Parses `Image.prune`'s options (none: the plain prune).
pub fn parse(opts: Option<Unknown<'_>>) -> cache::Result<PruneOptions> {
    let opts = args::options(opts, "opts")?;
    args::known_keys(&opts, KNOWN, "opts")?;
    let patterns = |key: &str| -> cache::Result<Option<Vec<Pattern>>> {
        let Some(value) = args::field(&opts, key)? else { return Ok(None) };
        let texts = args::strings(Some(value), key)?;
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Pattern::parse(t, &format!("{key}[{i}]")))
            .collect::<cache::Result<_>>()
            .map(Some)
    };
    Ok(PruneOptions {
        dry_run: args::opt_bool(&opts, "dryRun")?.unwrap_or(false),
        unused_for: duration(&opts, "unusedFor")?,
        older_than: duration(&opts, "olderThan")?,
        references: patterns("references")?,
        labels: labels(&opts)?,
        keep: patterns("keep")?.unwrap_or_default(),
        max_bytes: args::opt_number(&opts, "maxBytes")?
            .map(|n| prune_policy::bytes(n, "maxBytes"))
            .transpose()?,
    })
}

/// A duration option: milliseconds, or a string such as `"7d"`.
fn duration(opts: &Option<Object<'_>>, key: &str) -> cache::Result<Option<u64>> {
    let Some(value) = args::field(opts, key)? else { return Ok(None) };
    match value.get_type().ok() {
        Some(ValueType::Number) => prune_policy::duration_ms(args::number(value, key)?, key).map(Some),
        Some(ValueType::String) => prune_policy::parse_duration(&args::string(Some(value), key)?, key).map(Some),
        _ => Err(invalid(format!("{key} must be milliseconds or a string such as \"7d\""))),
    }
}

/// `labels`: `{ key: value }` (equal) or `{ key: true }` (present).
fn labels(opts: &Option<Object<'_>>) -> cache::Result<Option<Labels>> {
    let Some(object) = args::opt_object(opts, "labels")? else {
        return Ok(None);
    };
    let mut labels = Vec::new();
    let object = Some(object);
    let keys = Object::keys(object.as_ref().expect("just set")).map_err(|e| invalid(format!("labels: {e}")))?;
    for key in keys {
        let what = format!("labels[{key:?}]");
        let value = args::field(&object, &key)?;
        let wanted = match value.as_ref().and_then(|v| v.get_type().ok()) {
            Some(ValueType::String) => Some(args::string(value, &what)?),
            Some(ValueType::Boolean) if args::opt_bool(&object, &key)? == Some(true) => None,
            _ => return Err(invalid(format!("{what} must be a string (equal to) or true (present)"))),
        };
        labels.push((key, wanted));
    }
    Ok(Some(labels))
}

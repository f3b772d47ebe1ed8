//! What a prune may take, as the caller states it: filters that must all
//! select an image, references never to take, and a size budget. Parsed
//! and checked here, once, for `Image.prune` and for the automatic
//! collection `config.json` configures, so both refuse the same bad input
//! with the same words.

use crate::engine::parse_reference;
use crate::error::{Error, Result};

/// Milliseconds per duration unit: `ms`, `s`, `m` (minutes), `h`, `d`, `w`.
const UNITS: [(&str, f64); 6] = [
    ("ms", 1.0),
    ("s", 1e3),
    ("m", 60e3),
    ("h", 3600e3),
    ("d", 86400e3),
    ("w", 7.0 * 86400e3),
];

/// Config labels a prune requires: key, and the value it must equal (None:
/// present with any value).
pub type Labels = Vec<(String, Option<String>)>;

/// Options of one prune; the default is the plain `Image.prune()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneOptions {
    /// Compute the report, change nothing.
    pub dry_run: bool,
    /// Only images no sandbox acquired for this long (ms); never acquired:
    /// counted from when the reference was cached.
    pub unused_for: Option<u64>,
    /// Only references cached longer ago than this (ms).
    pub older_than: Option<u64>,
    /// Only references matching one of these.
    pub references: Option<Vec<Pattern>>,
    /// Only images whose config labels match all of these (None: present
    /// with any value).
    pub labels: Option<Labels>,
    /// References never pruned.
    pub keep: Vec<Pattern>,
    /// Evict least recently used images until the cache is at most this big.
    pub max_bytes: Option<u64>,
}

impl PruneOptions {
    /// Whether this is the plain prune of the API page (no filter, no budget).
    pub fn is_plain(&self) -> bool {
        self.unused_for.is_none()
            && self.older_than.is_none()
            && self.references.is_none()
            && self.labels.is_none()
            && self.keep.is_empty()
            && self.max_bytes.is_none()
    }
}

/// A reference pattern: SQLite GLOB semantics on the normalized reference
/// (`*` any run of characters, `/` included; `?` one character; `[...]` a
/// class), or, when it has none of `*?[`, a reference normalized as any
/// other and matched exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// A normalized reference.
    Exact(String),
    /// A glob, as given.
    Glob(String),
}

impl Pattern {
    /// Parses one pattern; `what` names the option in errors.
    pub fn parse(text: &str, what: &str) -> Result<Pattern> {
        if text.is_empty() {
            return Err(Error::InvalidArgument(format!("{what}: an empty pattern matches nothing")));
        }
        if text.contains(['*', '?', '[']) {
            return Ok(Pattern::Glob(text.to_string()));
        }
        let reference = parse_reference(text).map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))?;
        Ok(Pattern::Exact(reference.to_string()))
    }

    /// The exact references and the globs of `patterns`, as JSON arrays
    /// (what the plan's statements take).
    pub fn split_json(patterns: &[Pattern]) -> (String, String) {
        let (mut exact, mut globs) = (Vec::new(), Vec::new());
        for p in patterns {
            match p {
                Pattern::Exact(r) => exact.push(r.as_str()),
                Pattern::Glob(g) => globs.push(g.as_str()),
            }
        }
        let json = |v: Vec<&str>| serde_json::to_string(&v).expect("strings serialize");
        (json(exact), json(globs))
    }
}

/// A duration given in milliseconds: finite, not negative.
pub fn duration_ms(value: f64, what: &str) -> Result<u64> {
    if !value.is_finite() || value < 0.0 || value > 2f64.powi(53) {
        return Err(Error::InvalidArgument(format!(
            "{what}: {value} is not a duration (milliseconds, 0 or more)"
        )));
    }
    Ok(value.round() as u64)
}

/// A duration written as a decimal number and a unit (`90s`, `1.5h`,
/// `7d`); see [`UNITS`].
pub fn parse_duration(text: &str, what: &str) -> Result<u64> {
    let bad = || {
        Error::InvalidArgument(format!(
            "{what}: {text:?} is not a duration: a number and one of ms, s, m, h, d, w (e.g. \"90s\", \"1.5h\", \"7d\")"
        ))
    };
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let well_formed = !number.is_empty() && !number.starts_with('.') && !number.ends_with('.') && number.matches('.').count() <= 1;
    let factor = UNITS.iter().find(|(u, _)| *u == unit).map(|(_, f)| *f);
    match (well_formed, factor, number.parse::<f64>()) {
        (true, Some(factor), Ok(n)) => duration_ms(n * factor, what),
        _ => Err(bad()),
    }
}

/// A byte count: a whole number, not negative.
pub fn bytes(value: f64, what: &str) -> Result<u64> {
    if !value.is_finite() || value < 0.0 || value.fract() != 0.0 || value > 2f64.powi(53) {
        return Err(Error::InvalidArgument(format!(
            "{what}: {value} is not a size (whole bytes, 0 or more)"
        )));
    }
    Ok(value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s", "x").unwrap(), 90_000);
        assert_eq!(parse_duration("1.5h", "x").unwrap(), 5_400_000);
        assert_eq!(parse_duration("7d", "x").unwrap(), 7 * 86_400_000);
        assert_eq!(parse_duration("2w", "x").unwrap(), 14 * 86_400_000);
        assert_eq!(parse_duration("10m", "x").unwrap(), 600_000);
        assert_eq!(parse_duration("250ms", "x").unwrap(), 250);
        for bad in ["", "7", "d", "7y", "1.h", ".5h", "-1s", "1h30m", "7 d", "1..5s", "7D"] {
            assert!(parse_duration(bad, "x").is_err(), "{bad:?}");
        }
        assert!(duration_ms(-1.0, "x").is_err());
        assert!(duration_ms(f64::NAN, "x").is_err());
        assert!(bytes(1.5, "x").is_err());
        assert!(bytes(-1.0, "x").is_err());
    }

    #[test]
    fn patterns() {
        assert_eq!(
            Pattern::parse("python:3.12", "x").unwrap(),
            Pattern::Exact("docker.io/library/python:3.12".into())
        );
        assert_eq!(Pattern::parse("*/python:*", "x").unwrap(), Pattern::Glob("*/python:*".into()));
        assert!(Pattern::parse("", "x").is_err());
        assert!(Pattern::parse("UPPER:case", "x").is_err());
    }
}

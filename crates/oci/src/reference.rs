//! Image references, parsed and normalized the way Docker does, so that
//! `python:3.12` and `docker.io/library/python:3.12` name one cache entry.

use std::fmt;

use crate::digest::Digest;

/// Registry host used when a reference names none (Docker Hub).
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Tag assumed when a reference carries neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A fully normalized reference: always a domain, always a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a reference string was refused; the caller adds the input.
pub type ParseError = String;

impl Reference {
    /// Parses and normalizes `input` (Docker's `ParseNormalizedNamed` plus the
    /// default `latest` tag).
    pub fn parse(input: &str) -> Result<Reference, ParseError> {
        if input.is_empty() {
            return Err("reference is empty".into());
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a 64-character hexadecimal string is an image ID, not a reference".into());
        }
        let (rest, digest) = match input.split_once('@') {
            Some((name, digest)) => (name, Some(Digest::parse(digest)?)),
            None => (input, None),
        };
        // A tag follows the last ':' unless that ':' belongs to a port in the domain.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        let (domain, path) = split_domain(name)?;
        check_path(&path)?;
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(format!("repository name is longer than {MAX_NAME_LEN} characters"));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { domain, path, tag, digest })
    }

    /// Registry host (with port), e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path inside the registry, e.g. `library/python`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`: the repository this reference lives in.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, when the reference names one (always, unless it is digest-only).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned manifest digest, when the reference carries one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
}

impl fmt::Display for Reference {
    /// The canonical spelling stored in the index: `docker.io/library/python:3.12`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component is a registry host only when it looks
/// like one (has a dot or a port, or is `localhost`) and is lowercase.
fn split_domain(name: &str) -> Result<(String, String), ParseError> {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if (first.contains('.') || first.contains(':') || first == "localhost") && first.to_ascii_lowercase() == first =>
        {
            check_domain(first)?;
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DOMAIN {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_PREFIX}{path}")
    } else {
        path
    };
    Ok((domain, path))
}

fn check_domain(domain: &str) -> Result<(), ParseError> {
    let bad = || format!("invalid registry host {domain:?}");
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // Bracketed IPv6 literal, optionally followed by a port.
        let (ip, tail) = rest.split_once(']').ok_or_else(bad)?;
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(bad());
        }
        let port = if tail.is_empty() {
            None
        } else {
            Some(tail.strip_prefix(':').ok_or_else(bad)?)
        };
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    let component_ok =
        |c: &str| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !c.starts_with('-') && !c.ends_with('-');
    if host.is_some_and(|h| !h.split('.').all(component_ok)) {
        return Err(bad());
    }
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), ParseError> {
    if path.is_empty() {
        return Err("repository name is empty".into());
    }
    for component in path.split('/') {
        check_path_component(component)?;
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn check_path_component(component: &str) -> Result<(), ParseError> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.iter().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    let bad = || format!("invalid repository name component {component:?}");
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), ParseError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty() && bytes.len() <= MAX_TAG_LEN && word(bytes[0]) && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid tag {tag:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("python:3.12"), "docker.io/library/python:3.12");
        assert_eq!(norm("docker.io/library/python:3.12"), "docker.io/library/python:3.12");
        assert_eq!(norm("index.docker.io/library/python"), "docker.io/library/python:latest");
        assert_eq!(norm("python"), "docker.io/library/python:latest");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("localhost/app:v1"), "localhost/app:v1");
        assert_eq!(norm("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(norm("127.0.0.1:5000/a"), "127.0.0.1:5000/a:latest");
        assert_eq!(norm("[::1]:5000/a:t"), "[::1]:5000/a:t");
        assert_eq!(norm("ghcr.io/o/r-x__y.z:1.0-rc_1"), "ghcr.io/o/r-x__y.z:1.0-rc_1");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(norm(&format!("python@{d}")), format!("docker.io/library/python@{d}"));
        assert_eq!(norm(&format!("python:3@{d}")), format!("docker.io/library/python:3@{d}"));
        // An uppercase first component is not a domain, so the path check refuses it.
        assert!(Reference::parse("Registry.io/app").is_err());
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "a/",
            "/a",
            ":tag",
            "a:",
            "a:-tag",
            "a:ta g",
            "a@sha256:abc",
            "a@md5:0123456789abcdef0123456789abcdef",
            "a b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "localhost:port/a",
            &"a".repeat(64).replace('a', "f"),
            &format!("a:{}", "t".repeat(129)),
            &"a".repeat(300),
        ] {
            assert!(Reference::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn accessors() {
        let r = Reference::parse("localhost:5000/team/app:v2").unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "team/app");
        assert_eq!(r.repository(), "localhost:5000/team/app");
        assert_eq!(r.tag(), Some("v2"));
        assert!(r.digest().is_none());
    }
}

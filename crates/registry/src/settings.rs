//! The user's registry settings file (`registries.json` in the cache
//! directory), in the spirit of Docker's `daemon.json` and containerd's
//! `hosts.toml`. Per registry host: mirrors (a URL, or an object with
//! capabilities and the mirror's own TLS settings), CA bundles, a client
//! certificate and key, `insecure`. The first shape of the file (top-level
//! `mirrors`, `caBundles`, `insecureRegistries`) is still read, and both may
//! be mixed. Relative paths are taken from the file's directory. The schema
//! is in the README ("Pulling").

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{HostTls, Mirror, RegistryConfig};
use crate::error::{Error, Result};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct SettingsFile {
    /// Per registry host as references spell it.
    registries: HashMap<String, RegistryEntry>,
    mirrors: HashMap<String, Vec<MirrorEntry>>,
    ca_bundles: Vec<PathBuf>,
    insecure_registries: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct RegistryEntry {
    mirrors: Vec<MirrorEntry>,
    ca_bundles: Vec<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_key: Option<PathBuf>,
    insecure: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MirrorEntry {
    Url(String),
    Detailed(DetailedMirror),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DetailedMirror {
    url: String,
    #[serde(default = "all_capabilities")]
    capabilities: Vec<Capability>,
    #[serde(default)]
    ca_bundles: Vec<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_key: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Capability {
    Pull,
    Resolve,
}

fn all_capabilities() -> Vec<Capability> {
    vec![Capability::Pull, Capability::Resolve]
}

impl RegistryConfig {
    /// The settings in `path`, on top of the defaults; a missing file means defaults.
    pub fn from_file(path: &Path) -> Result<RegistryConfig> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryConfig::default()),
            Err(e) => return Err(Error::InvalidArgument(format!("{}: {e}", path.display()))),
        };
        let invalid = |why: String| Error::InvalidArgument(format!("{}: {why}", path.display()));
        let file: SettingsFile = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let at = |p: PathBuf| if p.is_absolute() { p } else { dir.join(p) };
        let mut config = RegistryConfig {
            ca_bundles: file.ca_bundles.into_iter().map(at).collect(),
            insecure_hosts: file.insecure_registries,
            ..RegistryConfig::default()
        };
        let add_host = |config: &mut RegistryConfig, host: &str, tls: HostTls, insecure: bool| {
            if insecure {
                config.insecure_hosts.push(host.to_string());
            }
            if tls != HostTls::default() {
                let entry = config.hosts.entry(host.to_ascii_lowercase()).or_default();
                entry.ca_bundles.extend(tls.ca_bundles);
                entry.client_certificate = entry.client_certificate.take().or(tls.client_certificate);
            }
        };
        let mirrors_of = |config: &mut RegistryConfig, registry: &str, entries: Vec<MirrorEntry>| -> Result<()> {
            for entry in entries {
                let mirror = match entry {
                    MirrorEntry::Url(url) => Mirror::new(url),
                    MirrorEntry::Detailed(m) => {
                        let authority = authority_of(&m.url)
                            .ok_or_else(|| invalid(format!("mirror {:?} of {registry}: not a [scheme://]host[:port][/path]", m.url)))?
                            .to_string();
                        let pair = certificate_pair(m.client_certificate, m.client_key, &format!("mirror {authority}")).map_err(invalid)?;
                        let tls = HostTls {
                            ca_bundles: m.ca_bundles.into_iter().map(at).collect(),
                            client_certificate: pair.map(|(c, k)| (at(c), at(k))),
                        };
                        add_host(config, &authority, tls, m.insecure);
                        Mirror {
                            url: m.url,
                            resolve: m.capabilities.contains(&Capability::Resolve),
                            pull: m.capabilities.contains(&Capability::Pull),
                        }
                    }
                };
                config.mirrors.entry(registry.to_string()).or_default().push(mirror);
            }
            Ok(())
        };
        for (registry, entries) in file.mirrors {
            mirrors_of(&mut config, &registry, entries)?;
        }
        for (registry, entry) in file.registries {
            let pair = certificate_pair(entry.client_certificate, entry.client_key, &registry).map_err(invalid)?;
            let tls = HostTls {
                ca_bundles: entry.ca_bundles.into_iter().map(at).collect(),
                client_certificate: pair.map(|(c, k)| (at(c), at(k))),
            };
            add_host(&mut config, &registry, tls, entry.insecure);
            mirrors_of(&mut config, &registry, entry.mirrors)?;
        }
        Ok(config)
    }
}

/// A certificate and its key, both or neither.
fn certificate_pair(cert: Option<PathBuf>, key: Option<PathBuf>, whose: &str) -> Result<Option<(PathBuf, PathBuf)>, String> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        _ => Err(format!("{whose}: clientCertificate and clientKey go together")),
    }
}

/// `host[:port]` of a mirror URL (`[scheme://]host[:port][/path]`).
fn authority_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    (!authority.is_empty() && !authority.contains(['@', '?', '#', ' '])).then_some(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_shapes_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.json");
        let json = r#"{
            "mirrors": { "docker.io": ["https://old.example"] },
            "caBundles": ["/etc/ca.pem"],
            "insecureRegistries": ["lan:5000"],
            "registries": {
                "docker.io": {
                    "mirrors": [
                        { "url": "https://m.example/v2/hub", "capabilities": ["pull"], "caBundles": ["m.pem"],
                          "clientCertificate": "c.pem", "clientKey": "k.pem", "insecure": true }
                    ]
                },
                "Private.Example": { "caBundles": ["/p.pem"], "clientCertificate": "/c", "clientKey": "/k" }
            }
        }"#;
        std::fs::write(&path, json).unwrap();
        let config = RegistryConfig::from_file(&path).unwrap();
        let hub = &config.mirrors["docker.io"];
        assert_eq!(hub[0], Mirror::new("https://old.example"));
        assert_eq!(
            (hub[1].url.as_str(), hub[1].pull, hub[1].resolve),
            ("https://m.example/v2/hub", true, false)
        );
        assert_eq!(config.ca_bundles, [PathBuf::from("/etc/ca.pem")]);
        assert!(config.is_insecure("lan:5000") && config.is_insecure("m.example"));
        let mirror = &config.hosts["m.example"];
        assert_eq!(mirror.ca_bundles, [dir.path().join("m.pem")]);
        assert_eq!(
            mirror.client_certificate,
            Some((dir.path().join("c.pem"), dir.path().join("k.pem")))
        );
        assert_eq!(config.hosts["private.example"].client_certificate, Some(("/c".into(), "/k".into())));

        std::fs::write(&path, r#"{"registries": {"r": {"clientCertificate": "/c"}}}"#).unwrap();
        assert!(matches!(RegistryConfig::from_file(&path), Err(Error::InvalidArgument(m)) if m.contains("go together")));
        std::fs::write(
            &path,
            r#"{"registries": {"r": {"mirrors": [{"url": "x", "capabilities": ["push"]}]}}}"#,
        )
        .unwrap();
        assert!(RegistryConfig::from_file(&path).is_err());
        std::fs::write(&path, r#"{"mirror": {}}"#).unwrap();
        assert!(RegistryConfig::from_file(&path).is_err());
        assert!(RegistryConfig::from_file(&dir.path().join("none.json")).unwrap().mirrors.is_empty());
    }
}

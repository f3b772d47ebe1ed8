//! Where a repository can be pulled from and how each place may be spoken
//! to: mirrors before the origin, which hosts may use plain HTTP or skip
//! TLS verification, which CAs are trusted, how hard to retry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem};

use crate::error::{Error, Result};
use oci::reference::{Reference, DEFAULT_DOMAIN};

/// Host that serves the registry API for references on `docker.io`.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Registry settings shared by every pull, typically from the user's
/// configuration rather than from one call.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Docker's config file, read for `auths` credentials. None means
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; a missing
    /// file simply provides no credentials.
    pub docker_config: Option<PathBuf>,
    /// Mirrors per registry host as references spell it (`docker.io` for
    /// Docker Hub), each `https://host[:port]`, `http://host[:port]` or a bare
    /// `host[:port]`, tried in order before the registry itself.
    pub mirrors: HashMap<String, Vec<String>>,
    /// PEM files of CA certificates trusted, in addition to Mozilla's roots,
    /// for every registry, mirror and token service (private CAs).
    pub ca_bundles: Vec<PathBuf>,
    /// Hosts (`host` for any port, or `host:port`) allowed plain HTTP and
    /// unverified TLS, like Docker's `insecure-registries`.
    pub insecure_hosts: Vec<String>,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// Longest wait to connect, for response headers, or for any body data,
    /// before the attempt counts as a (transient) failure.
    pub timeout: Duration,
}

impl Default for RegistryConfig {
    /// No mirrors, no extra CAs, no insecure hosts, default retries, 30 s timeout.
    fn default() -> Self {
        RegistryConfig {
            docker_config: None,
            mirrors: HashMap::new(),
            ca_bundles: Vec::new(),
            insecure_hosts: Vec::new(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// The user's registry settings file (`registries.json` in the cache
/// directory), in the spirit of Docker's `daemon.json`:
/// `{ "mirrors": { "docker.io": ["https://mirror.example"] },
///    "caBundles": ["/etc/ssl/private-ca.pem"], "insecureRegistries": ["registry.lan:5000"] }`.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct SettingsFile {
    mirrors: HashMap<String, Vec<String>>,
    ca_bundles: Vec<PathBuf>,
    insecure_registries: Vec<String>,
}

impl RegistryConfig {
    /// The settings in `path`, on top of the defaults; a missing file means defaults.
    pub fn from_file(path: &std::path::Path) -> Result<RegistryConfig> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryConfig::default()),
            Err(e) => return Err(Error::InvalidArgument(format!("{}: {e}", path.display()))),
        };
        let settings: SettingsFile =
            serde_json::from_slice(&text).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
        Ok(RegistryConfig {
            mirrors: settings.mirrors,
            ca_bundles: settings.ca_bundles,
            insecure_hosts: settings.insecure_registries,
            ..RegistryConfig::default()
        })
    }
}

impl RegistryConfig {
    /// These settings (the user's file) under a call's own: the call's
    /// mirrors and CA bundles come first, then the file's; an insecure host
    /// of either counts.
    pub fn extended_by(self, call: &RegistryConfig) -> RegistryConfig {
        let mut merged = call.clone();
        for (host, mirrors) in self.mirrors {
            merged.mirrors.entry(host).or_default().extend(mirrors);
        }
        merged.ca_bundles.extend(self.ca_bundles);
        merged.insecure_hosts.extend(self.insecure_hosts);
        merged
    }
}

/// Bounded exponential backoff: try `attempts` times in all, waiting
/// `initial_delay`, then twice that, and so on up to `max_delay` (or what a
/// 429/503's `Retry-After` asks, within `max_delay`).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries per request, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the first retry.
    pub initial_delay: Duration,
    /// Longest wait between two tries.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 tries, waiting 200 ms, 400 ms, 800 ms, 1.6 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based).
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// URL scheme of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// One place a repository can be pulled from: a mirror or the origin.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `host[:port]` as used in URLs.
    pub authority: String,
    /// The registry name errors report.
    pub label: String,
    /// Schemes to try, in order, until one answers like a registry.
    pub schemes: Vec<Scheme>,
    /// A mirror (falls through to the next target on any failure).
    pub mirror: bool,
}

impl RegistryConfig {
    /// Whether `authority` (`host[:port]`) is listed as insecure.
    pub(crate) fn is_insecure(&self, authority: &str) -> bool {
        let host = host_of(authority);
        self.insecure_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(authority) || h.eq_ignore_ascii_case(host))
    }

    /// Whether `authority` may be spoken to over plain HTTP: loopback hosts
    /// (Docker's default) and insecure ones.
    pub(crate) fn plain_http_allowed(&self, authority: &str) -> bool {
        is_loopback(host_of(authority)) || self.is_insecure(authority)
    }

    /// This configuration with `reference`'s registry listed as insecure
    /// (the pull's `insecure` option), so the registry, its token service
    /// and redirects to it are relaxed alike.
    pub(crate) fn with_insecure_origin(mut self, reference: &Reference) -> RegistryConfig {
        self.insecure_hosts.push(api_authority(reference.domain()));
        self
    }

    /// The mirrors, then the origin, for `reference`'s registry.
    pub(crate) fn targets(&self, reference: &Reference) -> Result<Vec<Target>> {
        let domain = reference.domain();
        let mut targets = Vec::new();
        for mirror in self.mirrors.get(domain).into_iter().flatten() {
            targets.push(self.mirror_target(domain, mirror)?);
        }
        let authority = api_authority(domain);
        let schemes = if self.plain_http_allowed(&authority) {
            vec![Scheme::Https, Scheme::Http]
        } else {
            vec![Scheme::Https]
        };
        targets.push(Target {
            authority,
            label: domain.to_string(),
            schemes,
            mirror: false,
        });
        Ok(targets)
    }

    fn mirror_target(&self, domain: &str, mirror: &str) -> Result<Target> {
        // Name the mirror without any `user:password@` it may carry.
        let shown = match mirror.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.rsplit_once('@').map_or(rest, |(_, host)| host)),
            None => mirror.rsplit_once('@').map_or(mirror, |(_, host)| host).to_string(),
        };
        let invalid = |why: &str| Error::InvalidArgument(format!("mirror {shown:?} of {domain}: {why}"));
        let (scheme, rest) = match mirror.split_once("://") {
            Some(("https", rest)) => (Some(Scheme::Https), rest),
            Some(("http", rest)) => (Some(Scheme::Http), rest),
            Some(_) => return Err(invalid("only http and https mirrors are supported")),
            None => (None, mirror),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(invalid("expected [scheme://]host[:port] without a path"));
        }
        let plain_ok = self.plain_http_allowed(authority);
        let schemes = match scheme {
            Some(Scheme::Http) if !plain_ok => return Err(invalid("plain HTTP is only allowed for loopback hosts and insecure hosts")),
            Some(scheme) => vec![scheme],
            None if plain_ok => vec![Scheme::Https, Scheme::Http],
            None => vec![Scheme::Https],
        };
        Ok(Target {
            authority: authority.to_ascii_lowercase(),
            label: authority.to_ascii_lowercase(),
            schemes,
            mirror: true,
        })
    }

    /// Mozilla's roots plus the configured CA bundles.
    pub(crate) fn root_certs(&self) -> Result<Vec<Certificate<'static>>> {
        let mut roots: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()))
            .collect();
        for path in &self.ca_bundles {
            let invalid = |why: String| Error::InvalidArgument(format!("CA bundle {}: {why}", path.display()));
            let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
            let before = roots.len();
            for item in ureq::tls::parse_pem(&pem) {
                if let PemItem::Certificate(cert) = item.map_err(|e| invalid(e.to_string()))? {
                    roots.push(cert);
                }
            }
            if roots.len() == before {
                return Err(invalid("no PEM certificate in the file".into()));
            }
        }
        Ok(roots)
    }

    /// The Docker config file to read credentials from, if any.
    pub(crate) fn docker_config_path(&self) -> Option<PathBuf> {
        self.docker_config.clone().or_else(Self::docker_config_from_env)
    }

    /// Where Docker keeps its config: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`. Callers that can (the Node binding) resolve
    /// this on the thread that owns the environment and pass it in.
    pub fn docker_config_from_env() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
    }
}

/// The host serving the registry API for a reference's domain.
fn api_authority(domain: &str) -> String {
    if domain == DEFAULT_DOMAIN {
        DOCKER_HUB_API.to_string()
    } else {
        domain.to_string()
    }
}

/// The host part of `host[:port]` or `[v6]:port`, brackets removed.
pub(crate) fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_plain_http_policy() {
        let mut config = RegistryConfig::default();
        let hub = Reference::parse("alpine").unwrap();
        let t = config.targets(&hub).unwrap();
        assert_eq!(
            (t[0].authority.as_str(), t[0].label.as_str()),
            ("registry-1.docker.io", "docker.io")
        );
        assert_eq!(t[0].schemes, vec![Scheme::Https]);
        let local = Reference::parse("127.0.0.1:5000/a").unwrap();
        assert_eq!(config.targets(&local).unwrap()[0].schemes, vec![Scheme::Https, Scheme::Http]);
        assert!(!config.is_insecure("127.0.0.1:5000"));
        let v6 = Reference::parse("[::1]:5000/a").unwrap();
        assert_eq!(config.targets(&v6).unwrap()[0].schemes, vec![Scheme::Https, Scheme::Http]);
        let private = Reference::parse("registry.lan:5000/a").unwrap();
        assert_eq!(config.targets(&private).unwrap()[0].schemes, vec![Scheme::Https]);
        assert!(config.clone().with_insecure_origin(&private).is_insecure("registry.lan:5000"));
        config.insecure_hosts.push("registry.lan".into());
        assert_eq!(config.targets(&private).unwrap()[0].schemes, vec![Scheme::Https, Scheme::Http]);

        config
            .mirrors
            .insert("docker.io".into(), vec!["http://127.0.0.1:5001/".into(), "mirror.example".into()]);
        let t = config.targets(&hub).unwrap();
        assert_eq!(
            t.iter().map(|t| t.authority.as_str()).collect::<Vec<_>>(),
            ["127.0.0.1:5001", "mirror.example", "registry-1.docker.io"]
        );
        assert_eq!(t[0].schemes, vec![Scheme::Http]);
        assert_eq!(t[1].schemes, vec![Scheme::Https]);
        config.mirrors.insert("docker.io".into(), vec!["http://mirror.example".into()]);
        assert!(matches!(config.targets(&hub), Err(Error::InvalidArgument(_))));
        config
            .mirrors
            .insert("docker.io".into(), vec!["https://mirror.example/v2/x".into()]);
        assert!(matches!(config.targets(&hub), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn backoff_is_bounded() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1), Duration::from_millis(200));
        assert_eq!(policy.delay(3), Duration::from_millis(800));
        assert_eq!(policy.delay(40), Duration::from_secs(5));
    }
}

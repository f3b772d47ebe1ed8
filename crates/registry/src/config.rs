//! Where a repository can be pulled from and how each place may be spoken
//! to: mirrors before the origin (each with its capabilities and an
//! optional path), which hosts may use plain HTTP or skip TLS
//! verification, which CAs and client certificates each host gets, how
//! hard to retry and how long to wait. The user's file is read in
//! `settings.rs`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PemItem};

use crate::error::{Error, Result};
use oci::reference::{Reference, DEFAULT_DOMAIN};

/// Host that serves the registry API for references on `docker.io`.
pub(crate) const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Registry settings shared by every pull, typically from the user's
/// configuration rather than from one call.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Docker's config file, read for credentials (`auths`, `credHelpers`,
    /// `credsStore`). None means `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`; a missing file simply provides no credentials.
    pub docker_config: Option<PathBuf>,
    /// The environment Docker credential helpers run in (and whose `PATH`
    /// finds them). None means this process's. The Node binding passes a
    /// copy taken on the JavaScript thread, which owns the environment.
    pub helper_env: Option<Vec<(OsString, OsString)>>,
    /// Mirrors per registry host as references spell it (`docker.io` for
    /// Docker Hub), tried in order before the registry itself.
    pub mirrors: HashMap<String, Vec<Mirror>>,
    /// PEM files of CA certificates trusted, in addition to Mozilla's roots,
    /// for every registry, mirror and token service (private CAs).
    pub ca_bundles: Vec<PathBuf>,
    /// Hosts (`host` for any port, or `host:port`) allowed plain HTTP and
    /// unverified TLS, like Docker's `insecure-registries`.
    pub insecure_hosts: Vec<String>,
    /// TLS settings of single hosts (`host` or `host:port`; `docker.io`
    /// stands for Docker Hub's API host): extra CAs, a client certificate.
    pub hosts: HashMap<String, HostTls>,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// Longest wait to connect, for response headers, or for any body data,
    /// before the attempt counts as a (transient) failure.
    pub timeout: Duration,
    /// Longest one request for a document (a manifest, a token, the body of
    /// an error) may take in all, so a server that drips its answer a byte
    /// at a time cannot hold a pull forever. Blob streams are exempt: they
    /// report progress and resume, and their size is known.
    pub deadline: Duration,
}

impl Default for RegistryConfig {
    /// No mirrors, no extra CAs, no insecure hosts, default retries, 30 s
    /// timeout, 120 s per document request.
    fn default() -> Self {
        RegistryConfig {
            docker_config: None,
            helper_env: None,
            mirrors: HashMap::new(),
            ca_bundles: Vec::new(),
            insecure_hosts: Vec::new(),
            hosts: HashMap::new(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
        }
    }
}

/// One mirror of a registry: where it is and what it may be asked, as
/// containerd's `hosts.toml` host entries say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// `https://host[:port][/path]`, `http://…` or a bare `host[:port]`. A
    /// path holding a `/v2` segment names the API root and a repository
    /// prefix (`https://mirror.example/v2/dockerhub` serves
    /// `/v2/dockerhub/<repository>/…`); a path without one is where `/v2/`
    /// lives (`https://mirror.example/cache` serves `/cache/v2/<repository>/…`).
    pub url: String,
    /// May resolve tags to manifests (containerd's `resolve`).
    pub resolve: bool,
    /// May serve content by digest: blobs and manifests (containerd's `pull`).
    pub pull: bool,
}

impl Mirror {
    /// A mirror that may do everything (resolve and pull).
    pub fn new(url: impl Into<String>) -> Mirror {
        Mirror {
            url: url.into(),
            resolve: true,
            pull: true,
        }
    }
}

/// TLS settings of one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTls {
    /// PEM CA bundles trusted for this host, besides the global ones.
    pub ca_bundles: Vec<PathBuf>,
    /// A client certificate (PEM chain) and its key (PEM), for mutual TLS.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

impl RegistryConfig {
    /// These settings (the user's file) under a call's own: the call's
    /// mirrors and CA bundles come first, then the file's; an insecure host
    /// of either counts; a host's client certificate is the call's if it
    /// names one.
    pub fn extended_by(self, call: &RegistryConfig) -> RegistryConfig {
        let mut merged = call.clone();
        for (host, mirrors) in self.mirrors {
            merged.mirrors.entry(host).or_default().extend(mirrors);
        }
        merged.ca_bundles.extend(self.ca_bundles);
        merged.insecure_hosts.extend(self.insecure_hosts);
        for (host, tls) in self.hosts {
            let entry = merged.hosts.entry(host).or_default();
            entry.ca_bundles.extend(tls.ca_bundles);
            if entry.client_certificate.is_none() {
                entry.client_certificate = tls.client_certificate;
            }
        }
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
    /// The path before `/v2/` (empty, or `/cache`).
    pub base: String,
    /// What precedes the repository after `/v2/` (empty, or `dockerhub/`).
    pub namespace: String,
    /// May resolve tags.
    pub resolve: bool,
    /// May serve content by digest.
    pub pull: bool,
}

impl Target {
    /// `<scheme>://<authority><base>/v2/`, what answers the version check.
    pub(crate) fn api_root(&self, scheme: Scheme) -> String {
        format!("{}://{}{}/v2/", scheme.as_str(), self.authority, self.base)
    }

    /// The repository as this target names it (its namespace first).
    pub(crate) fn repository(&self, path: &str) -> String {
        format!("{}{path}", self.namespace)
    }
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
        targets.push(self.origin(domain));
        Ok(targets)
    }

    /// The registry `domain` itself (`docker.io` is served by its API host).
    pub(crate) fn origin(&self, domain: &str) -> Target {
        let authority = api_authority(domain);
        let schemes = if self.plain_http_allowed(&authority) {
            vec![Scheme::Https, Scheme::Http]
        } else {
            vec![Scheme::Https]
        };
        Target {
            authority,
            label: domain.to_string(),
            schemes,
            mirror: false,
            base: String::new(),
            namespace: String::new(),
            resolve: true,
            pull: true,
        }
    }

    fn mirror_target(&self, domain: &str, mirror: &Mirror) -> Result<Target> {
        let url = mirror.url.as_str();
        // Name the mirror without any `user:password@` it may carry.
        let shown = match url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.rsplit_once('@').map_or(rest, |(_, host)| host)),
            None => url.rsplit_once('@').map_or(url, |(_, host)| host).to_string(),
        };
        let invalid = |why: &str| Error::InvalidArgument(format!("mirror {shown:?} of {domain}: {why}"));
        let (scheme, rest) = match url.split_once("://") {
            Some(("https", rest)) => (Some(Scheme::Https), rest),
            Some(("http", rest)) => (Some(Scheme::Http), rest),
            Some(_) => return Err(invalid("only http and https mirrors are supported")),
            None => (None, url),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains(['?', '#', '@', ' ']) {
            return Err(invalid("expected [scheme://]host[:port][/path]"));
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let bad_segment = |s: &&str| matches!(*s, "." | "..") || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if segments.iter().any(bad_segment) {
            return Err(invalid("the path may hold only letters, digits and -._~ between slashes"));
        }
        let (base, namespace) = match segments.iter().position(|s| *s == "v2") {
            Some(v2) => (&segments[..v2], &segments[v2 + 1..]),
            None => (&segments[..], &[][..]),
        };
        let plain_ok = self.plain_http_allowed(authority);
        let schemes = match scheme {
            Some(Scheme::Http) if !plain_ok => return Err(invalid("plain HTTP is only allowed for loopback hosts and insecure hosts")),
            Some(scheme) => vec![scheme],
            None if plain_ok => vec![Scheme::Https, Scheme::Http],
            None => vec![Scheme::Https],
        };
        if !mirror.resolve && !mirror.pull {
            return Err(invalid("a mirror needs at least one capability (pull, resolve)"));
        }
        let authority = authority.to_ascii_lowercase();
        let label = format!("{authority}{}", segments.iter().map(|s| format!("/{s}")).collect::<String>());
        Ok(Target {
            authority,
            label,
            schemes,
            mirror: true,
            base: base.iter().map(|s| format!("/{s}")).collect(),
            namespace: namespace.iter().map(|s| format!("{s}/")).collect(),
            resolve: mirror.resolve,
            pull: mirror.pull,
        })
    }

    /// The TLS settings of `authority`: those given for it (or its host, or
    /// `docker.io` for Docker Hub's API host).
    fn host_tls(&self, authority: &str) -> Option<&HostTls> {
        let host = host_of(authority);
        let alias = (authority.eq_ignore_ascii_case(DOCKER_HUB_API)).then_some(DEFAULT_DOMAIN);
        self.hosts
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(authority))
            .or_else(|| {
                self.hosts
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(host) || Some(k.as_str()) == alias)
            })
            .map(|(_, tls)| tls)
    }

    /// Mozilla's roots plus the global CA bundles and those of `authority`.
    pub(crate) fn root_certs(&self, authority: Option<&str>) -> Result<Vec<Certificate<'static>>> {
        let mut roots: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()))
            .collect();
        let own = authority
            .and_then(|a| self.host_tls(a))
            .map(|t| t.ca_bundles.as_slice())
            .unwrap_or_default();
        for path in self.ca_bundles.iter().chain(own) {
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

    /// The client certificate `authority` is configured with, read.
    pub(crate) fn client_cert(&self, authority: &str) -> Result<Option<ClientCert>> {
        let Some((cert, key)) = self.host_tls(authority).and_then(|t| t.client_certificate.as_ref()) else {
            return Ok(None);
        };
        let invalid =
            |path: &PathBuf, why: String| Error::InvalidArgument(format!("client certificate of {authority}: {}: {why}", path.display()));
        let read = |path: &PathBuf| std::fs::read(path).map_err(|e| invalid(path, e.to_string()));
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        let mut chain = Vec::new();
        for item in ureq::tls::parse_pem(&cert_pem) {
            if let PemItem::Certificate(c) = item.map_err(|e| invalid(cert, e.to_string()))? {
                chain.push(c);
            }
        }
        if chain.is_empty() {
            return Err(invalid(cert, "no PEM certificate in the file".into()));
        }
        // The key's own error would not say which file; no key text is quoted.
        let key = ureq::tls::parse_pem(&key_pem)
            .filter_map(|item| match item {
                Ok(PemItem::PrivateKey(key)) => Some(key),
                _ => None,
            })
            .next()
            .ok_or_else(|| invalid(key, "no PEM private key in the file".into()))?;
        Ok(Some(ClientCert::new_with_certs(&chain, key)))
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
pub(crate) fn api_authority(domain: &str) -> String {
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

        let mirrors = |urls: &[&str]| urls.iter().map(|u| Mirror::new(*u)).collect::<Vec<_>>();
        config
            .mirrors
            .insert("docker.io".into(), mirrors(&["http://127.0.0.1:5001/", "mirror.example"]));
        let t = config.targets(&hub).unwrap();
        assert_eq!(
            t.iter().map(|t| t.authority.as_str()).collect::<Vec<_>>(),
            ["127.0.0.1:5001", "mirror.example", "registry-1.docker.io"]
        );
        assert_eq!(t[0].schemes, vec![Scheme::Http]);
        assert_eq!(t[1].schemes, vec![Scheme::Https]);
        config.mirrors.insert("docker.io".into(), mirrors(&["http://mirror.example"]));
        assert!(matches!(config.targets(&hub), Err(Error::InvalidArgument(_))));
        config
            .mirrors
            .insert("docker.io".into(), mirrors(&["https://mirror.example/a/../b"]));
        assert!(matches!(config.targets(&hub), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn mirror_paths_name_the_api_root_and_a_prefix() {
        let mut config = RegistryConfig::default();
        let hub = Reference::parse("alpine").unwrap();
        let mut pull_only = Mirror::new("https://m.example/cache/");
        pull_only.resolve = false;
        config
            .mirrors
            .insert("docker.io".into(), vec![Mirror::new("https://m.example/v2/dockerhub"), pull_only]);
        let t = config.targets(&hub).unwrap();
        assert_eq!(t[0].api_root(Scheme::Https), "https://m.example/v2/");
        assert_eq!(t[0].repository(hub.path()), "dockerhub/library/alpine");
        assert_eq!(t[0].label, "m.example/v2/dockerhub");
        assert_eq!(t[1].api_root(Scheme::Https), "https://m.example/cache/v2/");
        assert_eq!(t[1].repository(hub.path()), "library/alpine");
        assert!((t[1].pull, t[1].resolve) == (true, false) && t[2].resolve);
    }

    #[test]
    fn backoff_is_bounded() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1), Duration::from_millis(200));
        assert_eq!(policy.delay(3), Duration::from_millis(800));
        assert_eq!(policy.delay(40), Duration::from_secs(5));
    }
}

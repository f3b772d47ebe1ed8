//! `login` and `logout` as `docker login`/`docker logout` do them, so a user
//! who logs in here is logged in for Docker too: the credentials are first
//! checked against the registry (`GET /v2/`, answering its challenge), then
//! stored through the credential helper Docker would use for that registry
//! (`credHelpers`, else `credsStore`, with an empty `auths` entry beside
//! it, as Docker writes), else as `auths[registry].auth` in `config.json`.
//! The file is rewritten whole (temporary file, then rename), owner-only,
//! every other setting in it kept.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use oci::{Platform, Reference};
use serde_json::{Map, Value};

use crate::auth::scrub;
use crate::client::Client;
use crate::config::Scheme;
use crate::docker::{keys_for, normalize_key, DockerConfig};
use crate::error::{Error, Result};
use crate::helper::{self, Answer, Helpers, Trouble};
use crate::net::CancelFlag;
use crate::transport::Http;
use crate::{Credentials, RegistryConfig};

/// Where `login` stored the credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Through this credential helper (`docker-credential-<name>`).
    Helper(String),
    /// In this file, base64-encoded, as Docker does without a helper.
    File(PathBuf),
}

/// Checks `username`/`password` against `registry` (`host[:port]`, a URL,
/// or `docker.io`) with the TLS settings of `config`, then stores them
/// where Docker looks (see the module). Refused credentials are
/// `Error::Authentication`; nothing is stored then.
pub fn login(registry: &str, username: &str, password: &str, config: &RegistryConfig) -> Result<Stored> {
    let domain = registry_name(registry)?;
    let credentials = Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    };
    check(&domain, &credentials, config)?;
    let path = config_path(config)?;
    let docker = DockerConfig::load(&path).map_err(Error::InvalidArgument)?;
    let keys = keys_for(&domain);
    let key = keys[0].clone();
    let stored = match docker.helper_for(&keys) {
        Some(name) => {
            Helpers::new(config.helper_env.clone())
                .store(name, &key, username, password)
                .map_err(|t| refusal(&domain, t, password))?;
            edit(&path, |auths| {
                // Docker's native store leaves an empty entry naming the registry.
                auths.insert(key.clone(), Value::Object(Map::new()));
                true
            })?;
            Stored::Helper(helper::program(name))
        }
        None => {
            edit(&path, |auths| {
                let mut entry = Map::new();
                entry.insert("auth".into(), Value::String(BASE64.encode(format!("{username}:{password}"))));
                auths.insert(key.clone(), Value::Object(entry));
                true
            })?;
            Stored::File(path)
        }
    };
    Ok(stored)
}

/// Forgets what is stored for `registry`: erased from its credential
/// helper, and its `auths` entries (under any spelling of the host) removed.
/// Whether there was anything to forget.
pub fn logout(registry: &str, config: &RegistryConfig) -> Result<bool> {
    let domain = registry_name(registry)?;
    let path = config_path(config)?;
    let docker = DockerConfig::load(&path).map_err(Error::InvalidArgument)?;
    let keys = keys_for(&domain);
    let mut removed = false;
    if let Some(name) = docker.helper_for(&keys) {
        let helpers = Helpers::new(config.helper_env.clone());
        removed |= match helpers.erase(name, &keys[0]) {
            Ok(erased) => erased,
            // Some helpers fail to erase what they never held (pass 0.6
            // says "not in the password store"); Docker only warns. Only
            // credentials still there make the failure real.
            Err(trouble) => match helpers.get(name, &keys[0], &CancelFlag::default()) {
                Ok(Answer::NotFound) => false,
                _ => return Err(refusal(&domain, trouble, "")),
            },
        };
    }
    if path.exists() {
        let hosts: Vec<String> = keys.iter().map(|k| normalize_key(k)).collect();
        removed |= edit(&path, |auths| {
            let before = auths.len();
            auths.retain(|k, _| !hosts.contains(&normalize_key(k)));
            auths.len() != before
        })?;
    }
    Ok(removed)
}

/// The registry as references name it: `host[:port]` lowercase, Docker Hub
/// in any spelling (`https://index.docker.io/v1/`) as `docker.io`.
fn registry_name(registry: &str) -> Result<String> {
    let host = normalize_key(registry.trim());
    let valid = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !valid {
        return Err(Error::InvalidArgument(format!("{registry:?} is not a registry host")));
    }
    Ok(if keys_for(&host).len() > 1 {
        oci::reference::DEFAULT_DOMAIN.to_string()
    } else {
        host
    })
}

fn config_path(config: &RegistryConfig) -> Result<PathBuf> {
    config
        .docker_config_path()
        .ok_or_else(|| Error::InvalidArgument("nowhere to keep Docker's config: neither DOCKER_CONFIG nor HOME is set".into()))
}

/// A helper that could not store or erase, as an authentication error.
fn refusal(domain: &str, trouble: Trouble, password: &str) -> Error {
    Error::Authentication {
        registry: domain.to_string(),
        repository: String::new(),
        message: scrub(trouble.to_string(), &[password.to_string()]),
    }
}

/// `GET /v2/` of `domain` with `credentials`, answering its challenge: what
/// `docker login` checks before it stores anything.
fn check(domain: &str, credentials: &Credentials, config: &RegistryConfig) -> Result<()> {
    // A client needs a repository; the check never names it.
    let placeholder = Reference::parse(&format!("{domain}/login")).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let target = config.origin(domain);
    let endpoints = Client::endpoints(config, vec![target], Some(credentials), None);
    let http = Http::new(config.clone(), None, CancelFlag::default())?;
    let client = Client {
        reference: placeholder,
        platform: Platform::host(),
        http,
        endpoints,
    };
    let endpoint = &client.endpoints[0];
    client.http.agent_for(&endpoint.target.authority)?;
    let checked = client.scheme(endpoint).and_then(|scheme: Scheme| {
        let url = endpoint.target.api_root(scheme);
        client.get_url(endpoint, scheme, &url, Some("application/json"), 0, None, |_| Ok(()))
    });
    checked.map_err(|e| match e {
        Error::Authentication { registry, message, .. } => Error::Authentication {
            registry,
            repository: String::new(),
            message,
        },
        Error::Registry {
            registry,
            digest,
            status,
            message,
            ..
        } => Error::Registry {
            registry,
            repository: String::new(),
            digest,
            status,
            message,
        },
        e => e,
    })
}

/// Rewrites the `auths` of the config file at `path` with `change`
/// (which says whether it changed anything); nothing is written otherwise.
fn edit(path: &Path, change: impl FnOnce(&mut Map<String, Value>) -> bool) -> Result<bool> {
    let invalid = |why: String| Error::InvalidArgument(format!("docker config {}: {why}", path.display()));
    let mut root = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes).map_err(|e| invalid(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Object(Map::new()),
        Err(e) => return Err(invalid(e.to_string())),
    };
    let root_map = root.as_object_mut().ok_or_else(|| invalid("not a JSON object".into()))?;
    let auths = root_map.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    let auths = auths.as_object_mut().ok_or_else(|| invalid("\"auths\" is not an object".into()))?;
    if !change(auths) {
        return Ok(false);
    }
    write_private(path, &root).map_err(|e| invalid(e.to_string()))?;
    Ok(true)
}

/// Writes `value` as Docker does (tab-indented JSON) to a temporary file
/// beside `path`, owner-only, then renames it over `path`.
fn write_private(path: &Path, value: &Value) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    serde::Serialize::serialize(value, &mut serde_json::Serializer::with_formatter(&mut text, formatter))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_registries_as_references_do() {
        assert_eq!(registry_name("https://index.docker.io/v1/").unwrap(), "docker.io");
        assert_eq!(registry_name("Registry.Example:5000").unwrap(), "registry.example:5000");
        assert_eq!(registry_name("https://127.0.0.1:5000/v2/").unwrap(), "127.0.0.1:5000");
        assert!(registry_name("").is_err() && registry_name("a b").is_err());
    }

    #[test]
    fn edits_keep_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        assert!(edit(&path, |a| {
            a.insert("r.example".into(), Value::Object(Map::new()));
            true
        })
        .unwrap());
        std::fs::write(&path, r#"{"auths":{"r.example":{}},"proxies":{"default":{}},"credsStore":"x"}"#).unwrap();
        assert!(edit(&path, |a| a.remove("r.example").is_some()).unwrap());
        assert!(!edit(&path, |a| a.remove("r.example").is_some()).unwrap());
        let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(value["proxies"], serde_json::json!({"default": {}}));
        assert_eq!(value["credsStore"], "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}

//! Docker's `config.json` as Docker reads it for credentials: per registry,
//! `credHelpers[host]` first, then `credsStore`, then the entry in `auths`
//! (an identity token before a password, as Docker's token handler prefers
//! it). Helpers run at most once per registry per pull, only when the
//! registry asks for credentials, and never on the JavaScript thread.
//! What went wrong with a helper is kept for the authentication error a
//! refusal then raises; it never holds a secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;

use crate::auth::Credentials;
use crate::config::DOCKER_HUB_API;
use crate::error::{Error, Result};
use crate::helper::{self, Answer, Helpers};
use crate::net::CancelFlag;

/// The key Docker files Docker Hub's credentials under, and hands its helpers.
pub(crate) const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// What a helper's `Username` says when its `Secret` is an identity token.
pub(crate) const TOKEN_USERNAME: &str = "<token>";

/// The parts of Docker's config file that hold credentials.
#[derive(Default)]
pub(crate) struct DockerConfig {
    /// `auths`, by normalized host.
    auths: HashMap<String, Credentials>,
    /// `credHelpers`, by normalized host (an empty name: use the file).
    cred_helpers: HashMap<String, String>,
    /// `credsStore`.
    creds_store: Option<String>,
}

/// `host[:port]` of a config key: Docker writes some keys as URLs
/// (`https://index.docker.io/v1/`), lowercase.
pub(crate) fn normalize_key(key: &str) -> String {
    let host = key.split_once("://").map_or(key, |(_, rest)| rest);
    host.split('/').next().unwrap_or_default().to_ascii_lowercase()
}

/// The hosts credentials for `registry` (as references name it) may be
/// filed under, the first being the one helpers are asked for.
pub(crate) fn keys_for(registry: &str) -> Vec<String> {
    let registry = registry.to_ascii_lowercase();
    if ["docker.io", "index.docker.io", DOCKER_HUB_API].contains(&registry.as_str()) {
        vec![
            DOCKER_HUB_KEY.into(),
            "index.docker.io".into(),
            "docker.io".into(),
            DOCKER_HUB_API.into(),
        ]
    } else {
        vec![registry]
    }
}

impl DockerConfig {
    /// Reads `path`; a missing file holds no credentials.
    pub(crate) fn load(path: &Path) -> Result<DockerConfig, String> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DockerConfig::default()),
            Err(e) => return Err(format!("cannot read docker config {}: {e}", path.display())),
        };
        DockerConfig::parse(&bytes).map_err(|why| format!("docker config {}: {why}", path.display()))
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<DockerConfig, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let mut config = DockerConfig {
            creds_store: value.get("credsStore").and_then(Value::as_str).map(str::to_string),
            ..DockerConfig::default()
        };
        if let Some(helpers) = value.get("credHelpers") {
            let helpers = helpers.as_object().ok_or("\"credHelpers\" is not an object")?;
            for (key, name) in helpers {
                let name = name.as_str().ok_or(format!("the credHelpers entry of {key} is not a string"))?;
                config.cred_helpers.insert(normalize_key(key), name.to_string());
            }
        }
        let Some(auths) = value.get("auths") else { return Ok(config) };
        let auths = auths.as_object().ok_or("\"auths\" is not an object")?;
        for (key, entry) in auths {
            let host = normalize_key(key);
            if let Some(credentials) = entry_credentials(&host, entry)? {
                config.auths.insert(host, credentials);
            }
        }
        Ok(config)
    }

    /// The helper to ask for `keys`' credentials: `credHelpers` (an empty
    /// name there means none, as in Docker), else `credsStore`.
    pub(crate) fn helper_for(&self, keys: &[String]) -> Option<&str> {
        let named = keys.iter().find_map(|k| self.cred_helpers.get(&normalize_key(k)));
        match named {
            Some(name) => Some(name.as_str()).filter(|n| !n.is_empty()),
            None => self.creds_store.as_deref().filter(|n| !n.is_empty()),
        }
    }

    fn file_credentials(&self, keys: &[String]) -> Option<Credentials> {
        keys.iter().find_map(|k| self.auths.get(&normalize_key(k)).cloned())
    }
}

/// One `auths` entry: an identity token wins over a password; an entry
/// with neither (Docker writes `{}` when a helper holds the secret) is none.
fn entry_credentials(host: &str, entry: &Value) -> Result<Option<Credentials>, String> {
    let field = |name: &str| entry.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    let basic = if let Some(encoded) = field("auth") {
        let decoded = BASE64
            .decode(encoded.trim())
            .map_err(|_| format!("the \"auth\" of {host} is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| format!("the \"auth\" of {host} is not UTF-8"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or(format!("the \"auth\" of {host} is not user:password"))?;
        Some((username.to_string(), password.to_string()))
    } else {
        field("username")
            .zip(field("password"))
            .map(|(u, p)| (u.to_string(), p.to_string()))
    };
    if let Some(token) = field("identitytoken") {
        let username = basic.map(|(u, _)| u).or(field("username").map(str::to_string));
        return Ok(Some(Credentials::Identity {
            username: username.unwrap_or_else(|| TOKEN_USERNAME.into()),
            token: token.to_string(),
        }));
    }
    if let Some((username, password)) = basic {
        return Ok(Some(Credentials::Basic { username, password }));
    }
    Ok(field("registrytoken").map(|t| Credentials::Token(t.to_string())))
}

/// What looking up one registry's credentials found.
#[derive(Clone, Default)]
pub(crate) struct Lookup {
    pub(crate) credentials: Option<Credentials>,
    /// What went wrong on the way (a helper's failure, a broken file), for
    /// the message of an authentication error; never a secret.
    pub(crate) trouble: Vec<String>,
}

/// Docker's credentials for one pull: the file read once, each registry's
/// look-up run once and remembered.
pub(crate) struct DockerCredentials {
    config: Result<DockerConfig, String>,
    helpers: Helpers,
    /// By first key; a slot's lock is held while its look-up runs, so it runs once.
    found: Mutex<HashMap<String, Arc<Mutex<Option<Lookup>>>>>,
}

impl DockerCredentials {
    pub(crate) fn new(path: Option<PathBuf>, helpers: Helpers) -> DockerCredentials {
        let config = match path {
            Some(path) => DockerConfig::load(&path),
            None => Ok(DockerConfig::default()),
        };
        DockerCredentials {
            config,
            helpers,
            found: Mutex::new(HashMap::new()),
        }
    }

    /// The credentials for `registry` (as references name it), looked up
    /// on the first call for it. `Err` only for an abort.
    pub(crate) fn lookup(&self, registry: &str, cancel: &CancelFlag) -> Result<Lookup> {
        let keys = keys_for(registry);
        let slot = {
            let mut found = self.found.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            found.entry(keys[0].clone()).or_default().clone()
        };
        let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(done) = slot.as_ref() {
            return Ok(done.clone());
        }
        let lookup = self.look_up(&keys, cancel)?;
        *slot = Some(lookup.clone());
        Ok(lookup)
    }

    fn look_up(&self, keys: &[String], cancel: &CancelFlag) -> Result<Lookup> {
        let config = match &self.config {
            Ok(config) => config,
            Err(why) => {
                return Ok(Lookup {
                    credentials: None,
                    trouble: vec![why.clone()],
                })
            }
        };
        let mut lookup = Lookup::default();
        if let Some(name) = config.helper_for(keys) {
            match self.helpers.get(name, &keys[0], cancel) {
                Ok(Answer::Found { username, secret }) => {
                    lookup.credentials = Some(if username == TOKEN_USERNAME {
                        Credentials::Identity { username, token: secret }
                    } else {
                        Credentials::Basic {
                            username,
                            password: secret,
                        }
                    });
                    return Ok(lookup);
                }
                Ok(Answer::NotFound) => lookup
                    .trouble
                    .push(format!("{} has no credentials for {}", helper::program(name), keys[0])),
                Err(helper::Trouble::Aborted) => return Err(Error::Aborted),
                Err(trouble) => lookup.trouble.push(trouble.to_string()),
            }
        }
        lookup.credentials = config.file_credentials(keys);
        Ok(lookup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_helpers_and_the_store() {
        let json = r#"{
            "auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                "Registry.Example:5000": {"username": "u", "password": "p"},
                "tok.example": {"registrytoken": "t"},
                "id.example": {"auth": "dXNlcjpwYTpzcw==", "identitytoken": "refresh"},
                "helper.example": {}
            },
            "credHelpers": {"gcr.io": "gcloud", "plain.example": ""},
            "credsStore": "pass"
        }"#;
        let config = DockerConfig::parse(json.as_bytes()).unwrap();
        let basic = |u: &str, p: &str| Credentials::Basic {
            username: u.into(),
            password: p.into(),
        };
        assert_eq!(config.file_credentials(&keys_for("docker.io")), Some(basic("user", "pa:ss")));
        assert_eq!(config.file_credentials(&keys_for("registry.example:5000")), Some(basic("u", "p")));
        assert_eq!(
            config.file_credentials(&keys_for("tok.example")),
            Some(Credentials::Token("t".into()))
        );
        assert_eq!(
            config.file_credentials(&keys_for("id.example")),
            Some(Credentials::Identity {
                username: "user".into(),
                token: "refresh".into()
            })
        );
        assert_eq!(config.file_credentials(&keys_for("helper.example")), None);
        assert_eq!(config.helper_for(&keys_for("GCR.io")), Some("gcloud"));
        assert_eq!(config.helper_for(&keys_for("plain.example")), None);
        assert_eq!(config.helper_for(&keys_for("docker.io")), Some("pass"));
        assert_eq!(keys_for("registry-1.docker.io")[0], DOCKER_HUB_KEY);
        assert!(DockerConfig::parse(br#"{"auths":{"x":{"auth":"!!"}}}"#).is_err());
        assert!(DockerConfig::parse(br#"{"credHelpers":{"x":1}}"#).is_err());
        assert!(DockerConfig::parse(b"{").is_err());
    }
}

//! `Image.login`'s arguments.

use napi::bindgen_prelude::*;

use registry::RegistryConfig;

use crate::args::{self, invalid};
use crate::pull;

/// One login, parsed on the JavaScript thread.
pub struct LoginCall {
    /// The registry as the caller named it.
    pub registry: String,
    /// The user name to check and store.
    pub username: String,
    /// The password (or token) to check and store.
    pub password: String,
    /// Docker's config, the helpers' environment, and `insecure`.
    pub config: RegistryConfig,
}

/// Parses `Image.login(registry, { username, password, insecure? })`.
pub fn parse_login(registry: Option<Unknown<'_>>, credentials: Option<Unknown<'_>>) -> cache::Result<LoginCall> {
    let registry = args::string(registry, "registry")?;
    let opts = args::options(credentials, "credentials")?;
    args::known_keys(&opts, &["username", "password", "insecure"], "credentials")?;
    let required = |key: &str| -> cache::Result<String> {
        args::opt_string(&opts, key)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid(format!("credentials.{key} is required")))
    };
    let (username, password) = (required("username")?, required("password")?);
    let mut config = pull::from_environment();
    if args::opt_bool(&opts, "insecure")?.unwrap_or(false) {
        config.insecure_hosts.push(registry.clone());
    }
    Ok(LoginCall {
        registry,
        username,
        password,
        config,
    })
}

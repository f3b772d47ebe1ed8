//! `docker login` / `docker logout` for the cache's users: the credentials
//! go where Docker keeps them (its credential helper or `config.json`), so
//! a login here serves `docker pull` too and the reverse. The cache itself
//! stores nothing; only its `registries.json` (CAs, client certificates,
//! insecure hosts) shapes how the registry is reached.

use registry::{RegistryConfig, Stored};

use super::Cache;
use crate::error::Result;
use crate::source::pull::registry_settings;

impl Cache {
    /// Checks `username`/`password` against `registry`, then stores them
    /// where Docker looks. `call` adds to `registries.json` (as a pull's
    /// options do) and names Docker's config file and the helpers'
    /// environment.
    pub fn login(&self, registry: &str, username: &str, password: &str, call: &RegistryConfig) -> Result<Stored> {
        let config = registry_settings(self.home(), call)?;
        Ok(registry::login(registry, username, password, &config)?)
    }

    /// Forgets the credentials stored for `registry`; whether there were any.
    pub fn logout(&self, registry: &str, call: &RegistryConfig) -> Result<bool> {
        let config = registry_settings(self.home(), call)?;
        Ok(registry::logout(registry, &config)?)
    }
}

//! Which backend serves image calls. The local backend keeps the cache on
//! this machine; a cloud backend keeps none, so every cache call is refused
//! before anything on disk is touched.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Environment variable selecting the backend (`local`, the default, or `cloud`).
pub const BACKEND_VAR: &str = "MSB_BACKEND";
/// Environment variable overriding the cache directory.
pub const HOME_VAR: &str = "MSB_HOME";
const DEFAULT_DIR: &str = ".microsandbox";

/// The configured backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A cache in this directory.
    Local(PathBuf),
    /// A remote service: no local image cache.
    Cloud,
}

impl Backend {
    /// Reads the configuration from the environment, at call time, so a
    /// process can switch caches between calls.
    pub fn from_env() -> Result<Backend> {
        match std::env::var(BACKEND_VAR).unwrap_or_default().as_str() {
            "" | "local" => Ok(Backend::Local(home()?)),
            "cloud" => Ok(Backend::Cloud),
            other => Err(Error::InvalidArgument(format!(
                "{BACKEND_VAR}={other:?}: expected \"local\" or \"cloud\""
            ))),
        }
    }

    /// The cache directory, or `Unsupported` for backends without one.
    pub fn local_home(&self, operation: &str) -> Result<&PathBuf> {
        match self {
            Backend::Local(home) => Ok(home),
            Backend::Cloud => Err(Error::Unsupported(format!(
                "Image.{operation} needs the local backend; the cloud backend keeps no local image cache"
            ))),
        }
    }
}

fn home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os(HOME_VAR).filter(|v| !v.is_empty()) {
        // Absolute, so a relative $MSB_HOME names one cache whatever the current directory.
        let home = PathBuf::from(home);
        return std::path::absolute(&home).map_err(|e| Error::InvalidArgument(format!("{HOME_VAR}={}: {e}", home.display())));
    }
    std::env::home_dir()
        .map(|h| h.join(DEFAULT_DIR))
        .ok_or_else(|| Error::InvalidArgument(format!("cannot find a home directory; set {HOME_VAR}")))
}

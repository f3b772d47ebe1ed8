//! `Image.pull`'s options: policy, platform, credentials, per-call
//! registry settings, and the callbacks every long call takes
//! ([`crate::callbacks`]).

use napi::bindgen_prelude::*;

use cache::{Error, PullPolicy};
use oci::progress::Sink;
use oci::Platform;
use registry::{Credentials, Mirror, PullOptions, RegistryConfig};

use crate::args::{self, invalid};
use crate::callbacks::{self, AbortHook};

/// Everything one pull needs, parsed on the JavaScript thread.
pub struct PullCall {
    /// The reference as given.
    pub reference: String,
    /// When to contact the registry.
    pub policy: PullPolicy,
    /// The platform asked for, if any.
    pub platform: Option<Platform>,
    /// Registry options, including the cancel flag.
    pub options: PullOptions,
    /// Receives engine events.
    pub progress: Sink,
    /// The signal listener, taken out before the call leaves the JavaScript
    /// thread and removed when it settles.
    pub abort: Option<AbortHook>,
}

/// Parses `Image.pull`'s arguments.
pub fn parse(env: &Env, reference: Option<Unknown<'_>>, opts: Option<Unknown<'_>>) -> cache::Result<PullCall> {
    let reference = args::string(reference, "reference")?;
    let opts = args::options(opts, "opts")?;
    let policy = match args::opt_string(&opts, "pullPolicy")?.as_deref() {
        None | Some("if-missing") => PullPolicy::IfMissing,
        Some("always") => PullPolicy::Always,
        Some("never") => PullPolicy::Never,
        Some(other) => {
            return Err(invalid(format!(
                "pullPolicy {other:?}: expected \"if-missing\", \"always\" or \"never\""
            )))
        }
    };
    let mut options = PullOptions::default();
    let platform = args::opt_string(&opts, "platform")?
        .map(|p| Platform::parse(&p).map_err(Error::InvalidArgument))
        .transpose()?;
    options.insecure = args::opt_bool(&opts, "insecure")?.unwrap_or(false);
    options.config = from_environment();
    options.auth = auth(&opts)?;
    if let Some(mirrors) = args::opt_object(&opts, "mirrors")? {
        for host in Object::keys(&mirrors).map_err(|e| invalid(format!("mirrors: {e}")))? {
            let list = args::strings(
                mirrors.get(&host).map_err(|e| invalid(format!("mirrors: {e}")))?,
                &format!("mirrors[{host:?}]"),
            )?;
            options.config.mirrors.insert(host, list.into_iter().map(Mirror::new).collect());
        }
    }
    if let Some(bundles) = args::field(&opts, "caBundles")? {
        options.config.ca_bundles = args::strings(Some(bundles), "caBundles")?.into_iter().map(Into::into).collect();
    }
    let progress = callbacks::progress(&opts)?;
    let (cancel, abort) = callbacks::signal(env, &opts)?;
    options.cancel = Some(cancel);
    Ok(PullCall {
        reference,
        policy,
        platform,
        options,
        progress,
        abort,
    })
}

/// Registry settings from the environment: Docker's config file, and the
/// environment its credential helpers run in. Read here, on the JavaScript
/// thread that owns the environment (`process.env` writes it), never on a
/// worker.
pub fn from_environment() -> RegistryConfig {
    RegistryConfig {
        docker_config: RegistryConfig::docker_config_from_env(),
        helper_env: Some(std::env::vars_os().collect()),
        ..RegistryConfig::default()
    }
}

fn auth(opts: &Option<Object<'_>>) -> cache::Result<Option<Credentials>> {
    let Some(auth) = args::opt_object(opts, "auth")? else {
        return Ok(None);
    };
    let auth = Some(auth);
    let token = args::opt_string(&auth, "token")?;
    let username = args::opt_string(&auth, "username")?;
    let password = args::opt_string(&auth, "password")?;
    match (token, username, password) {
        (Some(token), None, None) => Ok(Some(Credentials::Token(token))),
        (None, Some(username), Some(password)) => Ok(Some(Credentials::Basic { username, password })),
        _ => Err(invalid("auth must be { username, password } or { token }".into())),
    }
}

//! `Image.pull` plumbing: its options, the `onProgress` callback (called
//! on the JavaScript thread through a threadsafe function, errors it throws
//! swallowed), and the `AbortSignal` (a listener that raises the engine's
//! cancel flag, removed when the call settles).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::ValueType;

use cache::{Error, PullPolicy};
use oci::progress::{Progress, Sink};
use oci::Platform;
use registry::{Credentials, PullOptions, RegistryConfig};

use crate::args::{self, invalid};
use crate::progress::PullProgressEvent;

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

type ProgressFn = ThreadsafeFunction<PullProgressEvent, Unknown<'static>, PullProgressEvent, Status, false>;
/// `addEventListener` / `removeEventListener` of an `AbortSignal`.
type ListenerMethod<'env> = Function<'env, FnArgs<(String, Function<'env, (), ()>)>, ()>;

/// A listener on the caller's `AbortSignal`.
pub struct AbortHook {
    signal: ObjectRef,
    listener: FunctionRef<(), ()>,
}

impl AbortHook {
    /// Removes the listener, so a long-lived signal does not collect one per call.
    pub fn detach(self, env: &Env) {
        let detached = (|| -> Result<()> {
            let signal = self.signal.get_value(env)?;
            let remove: ListenerMethod<'_> = signal.get_named_property("removeEventListener")?;
            remove.apply(signal, (String::from("abort"), self.listener.borrow_back(env)?).into())?;
            Ok(())
        })();
        let _ = detached; // nothing to do if the signal object misbehaves
        let _ = self.signal.unref(env);
    }
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
    // Read here, on the thread that owns the environment, not on the worker.
    options.config.docker_config = RegistryConfig::docker_config_from_env();
    options.auth = auth(&opts)?;
    if let Some(mirrors) = args::opt_object(&opts, "mirrors")? {
        for host in Object::keys(&mirrors).map_err(|e| invalid(format!("mirrors: {e}")))? {
            let list = args::strings(
                mirrors.get(&host).map_err(|e| invalid(format!("mirrors: {e}")))?,
                &format!("mirrors[{host:?}]"),
            )?;
            options.config.mirrors.insert(host, list);
        }
    }
    if let Some(bundles) = args::field(&opts, "caBundles")? {
        options.config.ca_bundles = args::strings(Some(bundles), "caBundles")?.into_iter().map(Into::into).collect();
    }
    let progress = progress(&opts)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let abort = match args::field(&opts, "signal")? {
        Some(signal) => Some(listen(env, signal, cancel.clone())?),
        None => None,
    };
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

/// The engine observer: forwards events to `onProgress`, if given.
fn progress(opts: &Option<Object<'_>>) -> cache::Result<Sink> {
    let Some(callback) = args::field(opts, "onProgress")? else {
        return Ok(oci::progress::ignore());
    };
    if callback.get_type().ok() != Some(ValueType::Function) {
        return Err(invalid("onProgress must be a function".into()));
    }
    // SAFETY: the value was just checked to be a function.
    let function =
        unsafe { callback.cast::<Function<'_, PullProgressEvent, Unknown<'static>>>() }.map_err(|e| invalid(format!("onProgress: {e}")))?;
    let tsfn: ProgressFn = function
        .build_threadsafe_function::<PullProgressEvent>()
        .callee_handled::<false>()
        .build()
        .map_err(|e| invalid(format!("onProgress: {e}")))?;
    Ok(Arc::new(move |event: Progress| {
        // A throwing callback must not take the process down: its error is dropped.
        tsfn.call_with_return_value(event.into(), ThreadsafeFunctionCallMode::NonBlocking, |_, _| Ok(()));
    }))
}

/// Raises `cancel` when `signal` aborts (or right away if it already has).
fn listen(env: &Env, signal: Unknown<'_>, cancel: Arc<AtomicBool>) -> cache::Result<AbortHook> {
    let not_a_signal = || invalid("signal must be an AbortSignal".into());
    if signal.get_type().ok() != Some(ValueType::Object) {
        return Err(not_a_signal());
    }
    // SAFETY: the value was just checked to be an object.
    let signal = unsafe { signal.cast::<Object<'_>>() }.map_err(|_| not_a_signal())?;
    let aborted: bool = signal
        .get_named_property::<Unknown<'_>>("aborted")
        .ok()
        .and_then(|v| unsafe { v.cast::<bool>() }.ok())
        .ok_or_else(not_a_signal)?;
    if aborted {
        return Err(Error::Aborted);
    }
    let flag = cancel.clone();
    let listener = env
        .create_function_from_closure::<(), (), _>("onAbort", move |_| {
            flag.store(true, Ordering::Relaxed);
            Ok(())
        })
        .map_err(|_| not_a_signal())?;
    let add: ListenerMethod<'_> = signal.get_named_property("addEventListener").map_err(|_| not_a_signal())?;
    add.apply(signal, (String::from("abort"), listener).into())
        .map_err(|_| not_a_signal())?;
    Ok(AbortHook {
        signal: signal.create_ref().map_err(|_| not_a_signal())?,
        listener: listener.create_ref().map_err(|_| not_a_signal())?,
    })
}

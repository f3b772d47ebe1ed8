//! The JavaScript callbacks a long call (pull, load) holds: `onProgress`,
//! called on the JavaScript thread through a threadsafe function (errors
//! it throws are swallowed, so a bad callback cannot disturb the call), and
//! the `AbortSignal`, whose listener raises the engine's cancel flag and
//! is removed when the call settles.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::ValueType;

use cache::Error;
use oci::progress::{Progress, Sink};

use crate::args::{self, invalid};
use crate::progress::PullProgressEvent;

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

/// The engine observer: forwards events to `onProgress`, if given.
pub fn progress(opts: &Option<Object<'_>>) -> cache::Result<Sink> {
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

/// The cancel flag the engine watches, raised when the options' `signal`
/// aborts, and the listener that raises it (none without a signal).
pub fn signal(env: &Env, opts: &Option<Object<'_>>) -> cache::Result<(Arc<AtomicBool>, Option<AbortHook>)> {
    let cancel = Arc::new(AtomicBool::new(false));
    let hook = match args::field(opts, "signal")? {
        Some(signal) => Some(listen(env, signal, cancel.clone())?),
        None => None,
    };
    Ok((cancel, hook))
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

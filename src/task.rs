//! Every engine call runs on a blocking worker thread, never on the Node
//! event loop; its result (or error, as one of the exported error classes)
//! is converted back on the JavaScript thread.

use std::panic::{catch_unwind, AssertUnwindSafe};

use napi::bindgen_prelude::*;

use crate::errors;

/// Runs `work` off the event loop and settles a promise with `convert`'s
/// value. A panic in the engine becomes an `internal` error, never an abort.
pub fn run<'env, T, V>(
    env: &'env Env,
    work: impl FnOnce() -> cache::Result<T> + Send + 'static,
    convert: impl FnOnce(T) -> V + 'static,
) -> Result<PromiseRaw<'env, V>>
where
    T: Send + 'static,
    V: ToNapiValue,
{
    run_then(env, work, |_, result| result.map(convert))
}

/// Like [`run`], with `finish` seeing the engine's result on the JavaScript
/// thread first (to release JavaScript resources the call held, whatever
/// the outcome). Engine errors become the exported error classes.
pub fn run_then<'env, T, V>(
    env: &'env Env,
    work: impl FnOnce() -> cache::Result<T> + Send + 'static,
    finish: impl FnOnce(&Env, cache::Result<T>) -> cache::Result<V> + 'static,
) -> Result<PromiseRaw<'env, V>>
where
    T: Send + 'static,
    V: ToNapiValue,
{
    let blocking = napi::bindgen_prelude::spawn_blocking(move || {
        catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(cache::Error::Internal(format!("engine panicked: {message}")))
        })
    });
    env.spawn_future_with_callback(
        async move {
            Ok(blocking
                .await
                .unwrap_or_else(|e| Err(cache::Error::Internal(format!("worker failed: {e}")))))
        },
        move |env, result| finish(env, result).map_err(|error| errors::to_js(env, &error)),
    )
}

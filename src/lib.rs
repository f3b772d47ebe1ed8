//! Node binding of the microsandbox image cache: converts arguments,
//! results and errors between JavaScript and the `cache` engine crate, and
//! runs every engine call off the event loop. No cache logic lives here.

#![warn(missing_docs)]

mod args;
mod callbacks;
mod errors;
mod image;
mod login;
mod progress;
mod prune;
mod pull;
mod task;
mod types;

use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Installs the error classes (and ImageHandle's console view) when the addon loads.
#[napi(module_exports)]
pub fn init(mut exports: Object, env: Env) -> Result<()> {
    errors::install(&env, &mut exports)
}

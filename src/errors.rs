//! Engine errors become instances of exported JavaScript error classes
//! (`err instanceof ImageNotFoundError`, `err.code === "image_not_found"`).
//! The classes are plain JS classes extending `Error`, defined by
//! `install.js` when the addon loads; the `#[napi]` structs below only make
//! the generated `index.js`/`index.d.ts` export and declare them.

use std::cell::RefCell;

use napi::bindgen_prelude::*;
use napi_derive::napi;

/// `createError(code, message, details)`.
type FactoryArgs = FnArgs<(String, String, Option<serde_json::Value>)>;
type Factory = FunctionRef<FactoryArgs, Unknown<'static>>;

thread_local! {
    /// The `createError` function of this thread's JavaScript environment.
    static FACTORY: RefCell<Option<Factory>> = const { RefCell::new(None) };
}

/// Runs `install.js` on `exports` (error classes, ImageHandle inspection) and keeps the error factory.
pub fn install(env: &Env, exports: &mut Object) -> Result<()> {
    let installer: Function<'_, Object<'_>, Function<'_, FactoryArgs, Unknown<'static>>> = env.run_script(include_str!("install.js"))?;
    let factory = installer.call(*exports)?;
    let factory = factory.create_ref()?;
    FACTORY.with(|f| f.replace(Some(factory)));
    Ok(())
}

/// Builds the JavaScript error for an engine error, to reject a promise with.
pub fn to_js(env: &Env, error: &cache::Error) -> Error {
    let details = match error {
        cache::Error::ImageInUse { sandboxes, .. } => Some(serde_json::json!({ "sandboxes": sandboxes })),
        cache::Error::DigestMismatch { expected, actual, .. } => Some(serde_json::json!({ "expected": expected, "actual": actual })),
        cache::Error::InvalidReference { reference, .. } | cache::Error::ImageNotFound { reference, .. } => {
            Some(serde_json::json!({ "reference": reference }))
        }
        cache::Error::Archive { path, .. } => Some(serde_json::json!({ "path": path })),
        cache::Error::Cache { path, .. } => Some(serde_json::json!({ "path": path.display().to_string() })),
        cache::Error::Registry {
            registry,
            repository,
            digest,
            status,
            ..
        } => Some(serde_json::json!({ "registry": registry, "repository": repository, "digest": digest, "status": status })),
        cache::Error::Authentication { registry, repository, .. } => {
            Some(serde_json::json!({ "registry": registry, "repository": repository }))
        }
        _ => None,
    };
    let built = FACTORY.with(|f| -> Result<Error> {
        let factory = f.borrow();
        let factory = factory
            .as_ref()
            .ok_or_else(|| Error::from_reason("microsandbox error classes are not installed"))?;
        let create = factory.borrow_back(env)?;
        let value = create.call((error.code().to_string(), error.to_string(), details).into())?;
        Ok(Error::from(value))
    });
    // Without the classes (never expected), still reject with the code.
    built.unwrap_or_else(|_| Error::from_reason(format!("[{}] {error}", error.code())))
}

/// Base class of every error this package rejects with; `code` names the kind.
#[napi]
pub struct MicrosandboxError;

/// No cached image answers to the reference (`code: "image_not_found"`).
#[napi]
pub struct ImageNotFoundError;

/// Sandboxes still use the image (`code: "image_in_use"`); `sandboxes` names them.
#[napi]
pub struct ImageInUseError;

/// The configured backend keeps no local image cache (`code: "unsupported"`).
#[napi]
pub struct UnsupportedError;

/// The reference is malformed (`code: "invalid_reference"`).
#[napi]
pub struct InvalidReferenceError;

/// The archive is missing, unreadable, malformed or unsafe (`code: "image_archive"`).
#[napi]
pub struct ImageArchiveError;

/// Content did not match its digest or size (`code: "digest_mismatch"`); `expected` and `actual` say how.
#[napi]
pub struct DigestMismatchError;

/// A layer cannot become a filesystem image (`code: "invalid_layer"`).
#[napi]
pub struct InvalidLayerError;

/// An argument or option makes no sense (`code: "invalid_argument"`).
#[napi]
pub struct InvalidArgumentError;

/// The cache directory cannot be read or written (`code: "cache"`); `path` names it.
#[napi]
pub struct CacheError;

/// The cache index failed (`code: "cache_index"`).
#[napi]
pub struct CacheIndexError;

/// A registry failed or refused a request (`code: "registry"`); `registry`, `repository`, `digest` and `status` say which.
#[napi]
pub struct RegistryError;

/// The registry wants credentials we lack or refused ours (`code: "authentication"`).
#[napi]
pub struct AuthenticationError;

/// The caller's `AbortSignal` aborted the operation (`code: "aborted"`).
#[napi]
pub struct AbortError;

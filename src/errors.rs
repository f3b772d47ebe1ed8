//! Engine errors become instances of exported JavaScript error classes
//! (`err instanceof ImageNotFoundError`, `err.code === "image_not_found"`).
//! The classes are plain JS classes extending `Error`, defined by
//! `install.js` when the addon loads from the class table the build script
//! makes of the engine's error taxonomy; the `#[napi]` declarations it makes
//! too only let the generated `index.js`/`index.d.ts` export and declare them.

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
    type Installer<'env> = Function<'env, FnArgs<(Object<'env>, Vec<(String, String)>)>, Function<'env, FactoryArgs, Unknown<'static>>>;
    let installer: Installer<'_> = env.run_script(include_str!("install.js"))?;
    let classes = CLASSES.iter().map(|(name, code)| (name.to_string(), code.to_string())).collect();
    let factory = installer.call((*exports, classes).into())?;
    let factory = factory.create_ref()?;
    FACTORY.with(|f| f.replace(Some(factory)));
    Ok(())
}

/// Builds the JavaScript error for an engine error, to reject a promise with.
pub fn to_js(env: &Env, error: &cache::Error) -> Error {
    use cache::Error as E;
    use registry::Error as R;
    let details = match error {
        E::ImageInUse { sandboxes, .. } => Some(serde_json::json!({ "sandboxes": sandboxes })),
        E::DigestMismatch { expected, actual, .. } | E::Registry(R::DigestMismatch { expected, actual, .. }) => {
            Some(serde_json::json!({ "expected": expected, "actual": actual }))
        }
        E::InvalidReference { reference, .. } | E::ImageNotFound { reference, .. } | E::Registry(R::ImageNotFound { reference, .. }) => {
            Some(serde_json::json!({ "reference": reference }))
        }
        E::Archive { path, .. } => Some(serde_json::json!({ "path": path })),
        E::Cache { path, .. } => Some(serde_json::json!({ "path": path.display().to_string() })),
        E::Registry(R::Registry {
            registry,
            repository,
            digest,
            status,
            ..
        }) => Some(serde_json::json!({ "registry": registry, "repository": repository, "digest": digest, "status": status })),
        E::Registry(R::Authentication { registry, repository, .. }) => {
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
        let details = details.map(printable);
        let value = create.call((error.code().to_string(), error.message(), details).into())?;
        Ok(Error::from(value))
    });
    // Without the classes (never expected), still reject with the code.
    built.unwrap_or_else(|_| Error::from_reason(format!("[{}] {}", error.code(), error.message())))
}

/// The details with control characters escaped in every string, as in
/// the message: they quote the same input.
fn printable(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(cache::error::printable(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(printable).collect()),
        Value::Object(fields) => Value::Object(fields.into_iter().map(|(k, v)| (k, printable(v))).collect()),
        other => other,
    }
}

include!(concat!(env!("OUT_DIR"), "/error_classes.rs"));

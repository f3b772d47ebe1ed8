//! Arguments arrive untyped from JavaScript; a wrong type becomes an
//! `InvalidArgumentError` rejection rather than a synchronous throw.

use napi::bindgen_prelude::*;
use napi::ValueType;

use cache::Error;

/// An `InvalidArgumentError` with `message`.
pub fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

/// A required string argument.
pub fn string(value: Option<Unknown<'_>>, what: &str) -> cache::Result<String> {
    match value {
        Some(v) if v.get_type().ok() == Some(ValueType::String) => {
            // SAFETY: the value was just checked to be a string.
            unsafe { v.cast::<String>() }.map_err(|e| invalid(format!("{what}: {e}")))
        }
        _ => Err(invalid(format!("{what} must be a string"))),
    }
}

/// One string or an array of strings.
pub fn strings(value: Option<Unknown<'_>>, what: &str) -> cache::Result<Vec<String>> {
    let Some(v) = value else {
        return Err(invalid(format!("{what} must be a string or an array of strings")));
    };
    if v.get_type().ok() == Some(ValueType::String) {
        return Ok(vec![string(Some(v), what)?]);
    }
    if v.is_array().unwrap_or(false) {
        // SAFETY: the value was just checked to be an array.
        let items = unsafe { v.cast::<Vec<Unknown<'_>>>() }.map_err(|e| invalid(format!("{what}: {e}")))?;
        return items.into_iter().map(|item| string(Some(item), what)).collect();
    }
    Err(invalid(format!("{what} must be a string or an array of strings")))
}

/// An optional options object (`undefined` and `null` mean none).
pub fn options<'env>(value: Option<Unknown<'env>>, what: &str) -> cache::Result<Option<Object<'env>>> {
    match value.map(|v| (v.get_type().ok(), v)) {
        None | Some((Some(ValueType::Undefined | ValueType::Null), _)) => Ok(None),
        // SAFETY: the value was just checked to be an object.
        Some((Some(ValueType::Object), v)) => unsafe { v.cast::<Object<'env>>() }
            .map(Some)
            .map_err(|e| invalid(format!("{what}: {e}"))),
        _ => Err(invalid(format!("{what} must be an object"))),
    }
}

/// An option's raw value, `undefined` meaning absent.
pub fn field<'env>(options: &Option<Object<'env>>, key: &str) -> cache::Result<Option<Unknown<'env>>> {
    let Some(obj) = options else { return Ok(None) };
    let value: Option<Unknown<'env>> = obj.get(key).map_err(|e| invalid(format!("{key}: {e}")))?;
    Ok(value.filter(|v| !matches!(v.get_type(), Ok(ValueType::Undefined))))
}

/// An optional string option.
pub fn opt_string(options: &Option<Object<'_>>, key: &str) -> cache::Result<Option<String>> {
    field(options, key)?.map(|v| string(Some(v), key)).transpose()
}

/// An optional boolean option.
pub fn opt_bool(options: &Option<Object<'_>>, key: &str) -> cache::Result<Option<bool>> {
    match field(options, key)? {
        None => Ok(None),
        Some(v) if v.get_type().ok() == Some(ValueType::Boolean) => {
            // SAFETY: the value was just checked to be a boolean.
            unsafe { v.cast::<bool>() }.map(Some).map_err(|e| invalid(format!("{key}: {e}")))
        }
        Some(_) => Err(invalid(format!("{key} must be a boolean"))),
    }
}

/// An optional object option.
pub fn opt_object<'env>(options: &Option<Object<'env>>, key: &str) -> cache::Result<Option<Object<'env>>> {
    match field(options, key)? {
        None => Ok(None),
        Some(v) => options_of(v, key),
    }
}

fn options_of<'env>(v: Unknown<'env>, key: &str) -> cache::Result<Option<Object<'env>>> {
    self::options(Some(v), key)?
        .map(Some)
        .ok_or_else(|| invalid(format!("{key} must be an object")))
}

/// Refuses an option the method does not know: for methods that delete,
/// an option silently ignored (a misspelt `dryRun`) would delete for real.
pub fn known_keys(options: &Option<Object<'_>>, known: &[&str], what: &str) -> cache::Result<()> {
    let Some(obj) = options else { return Ok(()) };
    for key in Object::keys(obj).map_err(|e| invalid(format!("{what}: {e}")))? {
        if !known.contains(&key.as_str()) {
            return Err(invalid(format!("{what}.{key} is not an option (expected {})", known.join(", "))));
        }
    }
    Ok(())
}

/// An optional number option.
pub fn opt_number(options: &Option<Object<'_>>, key: &str) -> cache::Result<Option<f64>> {
    match field(options, key)? {
        None => Ok(None),
        Some(v) => number(v, key).map(Some),
    }
}

/// A number value.
pub fn number(v: Unknown<'_>, key: &str) -> cache::Result<f64> {
    if v.get_type().ok() != Some(ValueType::Number) {
        return Err(invalid(format!("{key} must be a number")));
    }
    // SAFETY: the value was just checked to be a number.
    unsafe { v.cast::<f64>() }.map_err(|e| invalid(format!("{key}: {e}")))
}

//! Reading what registries answer: why a try failed (and whether another
//! may succeed), error bodies quoted without secrets, headers, and the
//! URLs of redirects.

use std::io;
use std::time::Duration;

use serde_json::Value;
use ureq::http::{HeaderMap, Response};
use ureq::Body;

use super::auth::Auth;
use super::config::Scheme;
use crate::error::{Error, Result};

/// Largest error body read for its message.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// Longest server-supplied text quoted in an error.
const MAX_SERVER_TEXT: usize = 300;
/// Why one try of a request failed, and what to do about it.
pub(super) enum Failure {
    /// Worth another try after a pause: a dropped connection, a timeout, 408, 429, 5xx.
    Transient {
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Try again at once without counting a try (the credentials changed).
    Again,
    /// Permanent: give up with this status and message.
    Fatal { status: Option<u16>, message: String },
    /// Permanent, already typed (authentication, digest, abort).
    Stop(Error),
}

impl Failure {
    /// A transport error, transient or not as [`classify`] says.
    pub(super) fn transport(e: ureq::Error, authority: &str) -> Failure {
        match classify(e, authority) {
            Ok(reason) => Failure::Transient {
                status: None,
                reason,
                retry_after: None,
            },
            Err(message) => Failure::Fatal { status: None, message },
        }
    }

    /// An unexpected status: transient for 408, 429 and 5xx (but 501, 505).
    pub(super) fn status(response: Response<Body>, authority: &str, auth: Option<&Auth>) -> Failure {
        let status = response.status().as_u16();
        let retry_after = header(&response, "retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let message = describe(response, authority, auth);
        if matches!(status, 408 | 429) || (status >= 500 && !matches!(status, 501 | 505)) {
            Failure::Transient {
                status: Some(status),
                reason: message,
                retry_after,
            }
        } else {
            Failure::Fatal {
                status: Some(status),
                message,
            }
        }
    }
}

/// Describes a transport error: `Ok` when a new try may cure it (the
/// connection broke or stalled), `Err` when not (nothing listens, the name
/// does not resolve, TLS fails, the peer speaks garbage).
pub(super) fn classify(e: ureq::Error, authority: &str) -> Result<String, String> {
    use io::ErrorKind::*;
    let transient = match &e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => {
            matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | UnexpectedEof | TimedOut | BrokenPipe | Interrupted | NotConnected | WouldBlock
            )
        }
        _ => false,
    };
    let mut description = format!("{authority}: {e}");
    if transient {
        return Ok(description);
    }
    if description.contains("invalid peer certificate") {
        description.push_str(" (TLS verification failed: add the registry's CA to the CA bundles, or mark the host insecure)");
    }
    Err(description)
}

/// `"<authority> answered HTTP 404 Not Found: MANIFEST_UNKNOWN: ..."`, quoting
/// the registry's JSON errors (scrubbed of secrets), never raw bodies.
pub(super) fn describe(response: Response<Body>, authority: &str, auth: Option<&Auth>) -> String {
    let status = response.status();
    let mut message = format!("{authority} answered HTTP {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        message.push(' ');
        message.push_str(reason);
    }
    let body = response
        .into_body()
        .into_with_config()
        .limit(MAX_ERROR_BODY)
        .read_to_vec()
        .unwrap_or_default();
    let errors = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("errors").and_then(Value::as_array).cloned());
    let detail: Vec<String> = errors
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            [field("code"), field("message")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ")
        })
        .filter(|s| !s.is_empty())
        .collect();
    if !detail.is_empty() {
        let mut detail = detail.join("; ");
        if detail.len() > MAX_SERVER_TEXT {
            let cut = (0..=MAX_SERVER_TEXT).rev().find(|i| detail.is_char_boundary(*i)).unwrap_or(0);
            detail.truncate(cut);
            detail.push('…');
        }
        message.push_str(": ");
        message.push_str(&detail.replace(|c: char| c.is_control(), " "));
    }
    match auth {
        Some(auth) => auth.redact(message),
        None => message,
    }
}

/// A response header as text.
pub(super) fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn headers_named<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok())
}

/// Scheme and `host[:port]` of an absolute http(s) URL (none with userinfo).
pub(super) fn split_url(url: &str) -> Option<(Scheme, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return None,
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    (!authority.is_empty() && !authority.contains('@')).then_some((scheme, authority))
}

/// Resolves a `Location` against the URL that answered it.
pub(super) fn resolve_location(base: &str, location: &str) -> Option<String> {
    if split_url(location).is_some() {
        return Some(location.to_string());
    }
    let (scheme, authority) = split_url(base)?;
    let origin = format!("{}://{authority}", scheme.as_str());
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{}://{rest}", scheme.as_str()));
    }
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let path = &base[origin.len()..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Some(format!("{origin}{}{location}", if dir.is_empty() { "/" } else { dir }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations() {
        let base = "https://r.example/v2/a/blobs/sha256:x?q=1";
        assert_eq!(
            resolve_location(base, "https://cdn.example/b?sig=s").unwrap(),
            "https://cdn.example/b?sig=s"
        );
        assert_eq!(resolve_location(base, "//cdn.example/b").unwrap(), "https://cdn.example/b");
        assert_eq!(resolve_location(base, "/x/y").unwrap(), "https://r.example/x/y");
        assert_eq!(resolve_location(base, "z").unwrap(), "https://r.example/v2/a/blobs/z");
        assert_eq!(resolve_location("http://h:1", "z").unwrap(), "http://h:1/z");
        assert!(classify(ureq::Error::Io(io::ErrorKind::ConnectionReset.into()), "h").is_ok());
        assert!(classify(ureq::Error::Io(io::ErrorKind::ConnectionRefused.into()), "h").is_err());
        assert!(split_url("ftp://x/").is_none());
        assert!(split_url("https://user:pw@x/").is_none());
        assert_eq!(split_url("HTTP://[::1]:5000/v2/"), Some((Scheme::Http, "[::1]:5000")));
    }
}

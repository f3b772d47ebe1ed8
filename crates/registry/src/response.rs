//! Reading what registries answer: error bodies quoted without secrets,
//! headers, and the URLs of redirects.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::http::{HeaderMap, Response};
use ureq::Body;

use crate::config::Scheme;

/// Largest error body read for its message.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// Longest server-supplied text quoted in an error.
const MAX_SERVER_TEXT: usize = 300;
/// Longest an error body is read for its message: a server dripping it
/// gets this long, then the error is reported with what came.
const ERROR_BODY_DEADLINE: Duration = Duration::from_secs(10);
/// `"<authority> answered HTTP 404 Not Found: MANIFEST_UNKNOWN: ..."`, quoting
/// the registry's JSON errors (scrubbed of secrets), never raw bodies.
pub(crate) fn describe(response: Response<Body>, authority: &str, redact: &dyn Fn(String) -> String) -> String {
    let status = response.status();
    let mut message = format!("{authority} answered HTTP {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        message.push(' ');
        message.push_str(reason);
    }
    let body = read_for(
        response.into_body().into_with_config().limit(MAX_ERROR_BODY).reader(),
        ERROR_BODY_DEADLINE,
    );
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
    redact(message)
}

/// What `reader` yields within `deadline` (the reads themselves are bounded
/// by the transport's per-read timeout and cancellation); errors end it.
fn read_for(mut reader: impl Read, deadline: Duration) -> Vec<u8> {
    let until = Instant::now() + deadline;
    let mut body = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < until {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    body
}

/// A response header as text.
pub(crate) fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn headers_named<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok())
}

/// Scheme and `host[:port]` of an absolute http(s) URL (none with userinfo).
pub(crate) fn split_url(url: &str) -> Option<(Scheme, &str)> {
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
pub(crate) fn resolve_location(base: &str, location: &str) -> Option<String> {
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
        assert!(split_url("ftp://x/").is_none());
        assert!(split_url("https://user:pw@x/").is_none());
        assert_eq!(split_url("HTTP://[::1]:5000/v2/"), Some((Scheme::Http, "[::1]:5000")));
    }
}

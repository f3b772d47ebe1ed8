//! Bearer tokens from a registry's token service, as the distribution token
//! specs say: a GET with Basic credentials (or none), or, for an identity
//! token, the OAuth2 `refresh_token` grant as a POST form (`grant_type`,
//! `refresh_token`, `client_id`, `scope`, `service`). Services that refuse
//! the POST (400, 401, 404, 405: GCR, Artifactory, ACR did) are asked again
//! with a GET, the identity token as Basic password, as containerd's docker
//! resolver (which Docker uses) falls back. Bodies are read under the
//! document deadline.

use serde_json::Value;

use crate::auth::Credentials;
use crate::config::Scheme;
use crate::error::{Error, Result};
use crate::transport::{Failure, Http};

/// Lifetime assumed for tokens that do not say (the token spec's default).
const DEFAULT_TOKEN_LIFETIME: u64 = 60;
/// Largest token-service response read.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// What the OAuth2 form calls us.
const CLIENT_ID: &str = "microsandbox";

/// What to ask the token service for.
pub(crate) struct Request<'a> {
    pub(crate) realm: &'a str,
    pub(crate) service: Option<&'a str>,
    pub(crate) scope: Option<&'a str>,
    pub(crate) credentials: Option<&'a Credentials>,
}

/// A token the service granted.
pub(crate) struct Grant {
    pub(crate) token: String,
    /// Seconds.
    pub(crate) lifetime: u64,
    /// A new refresh token, when the service rotated it.
    pub(crate) refresh: Option<String>,
}

/// Asks the token service for a token. Failures become `fail(status,
/// message)`; cancellation stays `Aborted`.
pub(crate) fn fetch(http: &Http, request: &Request<'_>, fail: &dyn Fn(Option<u16>, String) -> Error) -> Result<Grant> {
    let (scheme, authority) =
        crate::response::split_url(request.realm).ok_or_else(|| fail(None, "the token realm is not an http(s) URL".into()))?;
    if scheme == Scheme::Http && !http.config.plain_http_allowed(authority) {
        return Err(fail(None, format!("refusing to ask the token service {authority} over plain HTTP")));
    }
    let body = match request.credentials {
        Some(Credentials::Identity { token, .. }) => match post(http, request, authority, token, fail) {
            Ok(body) => body,
            Err(Refused::Status(400 | 401 | 404 | 405)) => get(http, request, authority, fail)?,
            Err(Refused::Status(status)) => {
                return Err(fail(Some(status), format!("the token service {authority} answered HTTP {status}")))
            }
            Err(Refused::Error(e)) => return Err(e),
        },
        _ => get(http, request, authority, fail)?,
    };
    let value: Value =
        serde_json::from_slice(&body).map_err(|_| fail(None, format!("the token service {authority} answered malformed JSON")))?;
    let text = |k: &str| value.get(k).and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string);
    let token = text("token")
        .or_else(|| text("access_token"))
        .ok_or_else(|| fail(None, format!("the token service {authority} answered no token")))?;
    Ok(Grant {
        token,
        lifetime: value.get("expires_in").and_then(Value::as_u64).unwrap_or(DEFAULT_TOKEN_LIFETIME),
        refresh: text("refresh_token"),
    })
}

/// Why the POST gave no body.
enum Refused {
    /// The service answered this status (the GET may still work).
    Status(u16),
    Error(Error),
}

fn post(
    http: &Http,
    request: &Request<'_>,
    authority: &str,
    refresh: &str,
    fail: &dyn Fn(Option<u16>, String) -> Error,
) -> Result<Vec<u8>, Refused> {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", CLIENT_ID),
    ];
    form.extend(request.scope.map(|s| ("scope", s)));
    form.extend(request.service.map(|s| ("service", s)));
    let form: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_query(v).replace("%20", "+")))
        .collect::<Vec<_>>()
        .join("&");
    let mut refused = None;
    let body = http.retrying(
        None,
        |status, why| fail(status, format!("cannot get a token from {authority}: {why}")),
        || {
            let agent = http.agent_for(authority).map_err(Failure::Stop)?;
            let post = http
                .document(agent.post(request.realm))
                .header("Content-Type", "application/x-www-form-urlencoded");
            let response = post.send(form.as_str()).map_err(|e| Failure::transport(e, authority))?;
            match response.status().as_u16() {
                200..=299 => read_body(http, response, authority),
                status @ (400..=499) if status != 408 && status != 429 => {
                    refused = Some(status);
                    Err(Failure::Fatal {
                        status: Some(status),
                        message: String::new(),
                    })
                }
                _ => Err(Failure::status(response, authority, &|m| m)),
            }
        },
    );
    match (body, refused) {
        (Ok(body), _) => Ok(body),
        (Err(Error::Aborted), _) => Err(Refused::Error(Error::Aborted)),
        (Err(_), Some(status)) => Err(Refused::Status(status)),
        (Err(e), None) => Err(Refused::Error(e)),
    }
}

fn get(http: &Http, request: &Request<'_>, authority: &str, fail: &dyn Fn(Option<u16>, String) -> Error) -> Result<Vec<u8>> {
    let mut query = Vec::new();
    query.extend(request.scope.map(|s| format!("scope={}", encode_query(s))));
    query.extend(request.service.map(|s| format!("service={}", encode_query(s))));
    let mut url = request.realm.to_string();
    if !query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&query.join("&"));
    }
    let basic = request.credentials.and_then(Credentials::basic_header);
    let what = match request.credentials {
        Some(Credentials::Identity { .. }) => "the identity token",
        Some(_) => "the credentials",
        None => "an anonymous request",
    };
    http.retrying(
        None,
        |status, why| fail(status, format!("cannot get a token from {authority}: {why}")),
        || {
            let agent = http.agent_for(authority).map_err(Failure::Stop)?;
            let mut get = http.document(agent.get(&url));
            if let Some(basic) = &basic {
                get = get.header("Authorization", basic);
            }
            let response = get.call().map_err(|e| Failure::transport(e, authority))?;
            match response.status().as_u16() {
                200..=299 => read_body(http, response, authority),
                status @ (401 | 403) => Err(Failure::Fatal {
                    status: Some(status),
                    message: format!("the token service refused {what} (HTTP {status})"),
                }),
                _ => Err(Failure::status(response, authority, &|m| m)),
            }
        },
    )
}

fn read_body(http: &Http, response: ureq::http::Response<ureq::Body>, authority: &str) -> Result<Vec<u8>, Failure> {
    let body = response
        .into_body()
        .into_with_config()
        .limit(MAX_TOKEN_RESPONSE)
        .read_to_vec()
        .map_err(|e| Failure::transport(e, authority))?;
    http.check_cancel().map_err(Failure::Stop)?;
    Ok(body)
}

/// Percent-encodes a query value (scopes hold ':' and '/').
pub(crate) fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode_query("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}

//! Authentication: credentials (from the caller or Docker's `config.json`),
//! `WWW-Authenticate` challenges, and bearer tokens from the registry's
//! token service, cached per endpoint and refreshed when they expire or are
//! refused. Every message built here is free of secrets.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;

use crate::config::Scheme;
use crate::error::{Error, Result};
use crate::transport::{Failure, Http};

/// Lifetime assumed for tokens that do not say (the token spec's default).
const DEFAULT_TOKEN_LIFETIME: u64 = 60;
/// Tokens are refreshed this long before they expire, so none expires in flight.
const TOKEN_MARGIN: u64 = 5;
/// Tokens remembered for scrubbing messages (a pull refreshes only a few).
const MAX_SEEN_TOKENS: usize = 16;
/// Largest token-service response read.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// How to authenticate to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A username and password (or an access token used as password): sent
    /// as Basic auth, or to the registry's token service for a bearer token.
    Basic {
        /// The account name.
        username: String,
        /// Its password or access token.
        password: String,
    },
    /// A ready bearer token, sent to the registry as is (its token service is
    /// not asked); when it is refused the pull fails.
    Token(String),
}

impl fmt::Debug for Credentials {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic {{ username: {username:?}, password: <redacted> }}"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

impl Credentials {
    fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!("Basic {}", BASE64.encode(format!("{username}:{password}")))),
            Credentials::Token(_) => None,
        }
    }
}

/// The `auths` of Docker's config file, by registry host; a file that
/// cannot be read is remembered as an error raised only if credentials are
/// needed, so a broken file does not break anonymous pulls.
pub(crate) struct DockerAuths(Result<HashMap<String, Credentials>, String>);

impl DockerAuths {
    /// Reads `path`; a missing file holds no credentials.
    pub(crate) fn load(path: Option<&Path>) -> DockerAuths {
        let Some(path) = path else { return DockerAuths(Ok(HashMap::new())) };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DockerAuths(Ok(HashMap::new())),
            Err(e) => return DockerAuths(Err(format!("cannot read docker config {}: {e}", path.display()))),
        };
        DockerAuths(parse_docker_config(&bytes).map_err(|why| format!("docker config {}: {why}", path.display())))
    }

    /// Credentials for the first of `hosts` (`host[:port]`) that has any.
    pub(crate) fn lookup(&self, hosts: &[&str]) -> Result<Option<Credentials>, String> {
        let auths = self.0.as_ref().map_err(Clone::clone)?;
        Ok(hosts.iter().find_map(|h| auths.get(&h.to_ascii_lowercase()).cloned()))
    }
}

/// Keys are normalized to `host[:port]`: Docker writes some as URLs
/// (`https://index.docker.io/v1/`).
fn parse_docker_config(bytes: &[u8]) -> Result<HashMap<String, Credentials>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut out = HashMap::new();
    let Some(auths) = value.get("auths") else { return Ok(out) };
    let auths = auths.as_object().ok_or("\"auths\" is not an object")?;
    for (key, entry) in auths {
        let host = key.split_once("://").map_or(key.as_str(), |(_, rest)| rest);
        let host = host.split('/').next().unwrap_or_default().to_ascii_lowercase();
        let field = |name: &str| entry.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
        let credentials = if let Some(encoded) = field("auth") {
            let decoded = BASE64
                .decode(encoded.trim())
                .map_err(|_| format!("the \"auth\" of {host} is not base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| format!("the \"auth\" of {host} is not UTF-8"))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or(format!("the \"auth\" of {host} is not user:password"))?;
            Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            }
        } else if let (Some(username), Some(password)) = (field("username"), field("password")) {
            Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            }
        } else if let Some(token) = field("registrytoken") {
            Credentials::Token(token.to_string())
        } else {
            continue;
        };
        out.insert(host, credentials);
    }
    Ok(out)
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// The challenge to answer among `headers` (Bearer preferred over Basic).
pub(crate) fn parse_challenges<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = false;
    for header in headers {
        for (scheme, params) in split_challenges(header) {
            if scheme.eq_ignore_ascii_case("bearer") {
                if let Some(realm) = params.get("realm").filter(|r| !r.is_empty()) {
                    return Some(Challenge::Bearer {
                        realm: realm.clone(),
                        service: params.get("service").cloned(),
                    });
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// RFC 7235 challenges: `Scheme k=v, k="quoted", Other k=v`.
fn split_challenges(header: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut out: Vec<(String, HashMap<String, String>)> = Vec::new();
    let mut chars = header.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let mut token = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != ',' && *c != '=') {
            token.push(c);
        }
        if token.is_empty() {
            // Stray '=' or end of input.
            if chars.next().is_none() {
                return out;
            }
            continue;
        }
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            out.push((token, HashMap::new()));
            continue;
        }
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                value.push(c);
            }
        }
        if let Some((_, params)) = out.last_mut() {
            params.insert(token.to_ascii_lowercase(), value);
        }
    }
}

struct Token {
    value: String,
    refresh_at: Instant,
}

#[derive(Default)]
struct State {
    challenge: Option<Challenge>,
    token: Option<Token>,
    /// The latest tokens received, to scrub them from server-supplied messages.
    seen: Vec<String>,
}

/// One endpoint's authentication: its credentials and what it asked for.
pub(crate) struct Auth {
    credentials: Result<Option<Credentials>, String>,
    /// `repository:<path>:pull`.
    scope: String,
    state: Mutex<State>,
}

impl Auth {
    pub(crate) fn new(credentials: Result<Option<Credentials>, String>, repository: &str) -> Auth {
        Auth {
            credentials,
            scope: format!("repository:{repository}:pull"),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers what the registry asked for; a new challenge or a refused
    /// token drops the cached token (only if it is the one that was sent).
    pub(crate) fn challenged(&self, challenge: Option<Challenge>, sent: Option<&str>) {
        let mut state = self.state();
        let sent_token = sent.and_then(|s| s.strip_prefix("Bearer "));
        if state
            .token
            .as_ref()
            .is_some_and(|t| sent_token == Some(t.value.as_str()) || challenge != state.challenge)
        {
            state.token = None;
        }
        if challenge.is_some() {
            state.challenge = challenge;
        }
    }

    /// Whether any credentials are available (for error messages).
    pub(crate) fn has_credentials(&self) -> bool {
        matches!(self.credentials, Ok(Some(_)))
    }

    /// The `Authorization` value to send, fetching a token when the registry
    /// wants one and none is cached (holding the lock, so concurrent
    /// requests share one token fetch). Errors are `Error::Authentication`
    /// for `registry`/`repository`.
    pub(crate) fn header(&self, http: &Http, registry: &str, repository: &str) -> Result<Option<String>> {
        let denied = |message: String| Error::Authentication {
            registry: registry.to_string(),
            repository: repository.to_string(),
            message,
        };
        if let Ok(Some(Credentials::Token(token))) = &self.credentials {
            return Ok(Some(format!("Bearer {token}")));
        }
        let mut state = self.state();
        match state.challenge.clone() {
            None => Ok(None),
            Some(Challenge::Basic) => match &self.credentials {
                Ok(credentials) => Ok(credentials.as_ref().and_then(Credentials::basic_header)),
                Err(why) => Err(denied(why.clone())),
            },
            Some(Challenge::Bearer { realm, service }) => {
                if let Some(token) = state.token.as_ref().filter(|t| Instant::now() < t.refresh_at) {
                    return Ok(Some(format!("Bearer {}", token.value)));
                }
                let basic = match &self.credentials {
                    Ok(credentials) => credentials.as_ref().and_then(Credentials::basic_header),
                    Err(why) => return Err(denied(why.clone())),
                };
                // Only a refusal is an authentication failure; an unreachable
                // or broken token service is the registry's problem.
                let scrubbed = |status: Option<u16>, message: String| {
                    let message = self.redact_with(&state, message);
                    match status {
                        Some(401 | 403) => denied(message),
                        _ => Error::Registry {
                            registry: registry.to_string(),
                            repository: repository.to_string(),
                            digest: None,
                            status,
                            message,
                        },
                    }
                };
                let (value, lifetime) = fetch_token(http, &realm, service.as_deref(), &self.scope, basic.as_deref(), &scrubbed)?;
                if state.seen.len() == MAX_SEEN_TOKENS {
                    state.seen.remove(0);
                }
                state.seen.push(value.clone());
                let refresh_at = Instant::now() + Duration::from_secs(lifetime.saturating_sub(TOKEN_MARGIN));
                state.token = Some(Token {
                    value: value.clone(),
                    refresh_at,
                });
                Ok(Some(format!("Bearer {value}")))
            }
        }
    }

    /// `message` with every secret this endpoint knows replaced by `***`.
    pub(crate) fn redact(&self, message: String) -> String {
        self.redact_with(&self.state(), message)
    }

    fn redact_with(&self, state: &State, mut message: String) -> String {
        let mut secrets: Vec<String> = state.seen.clone();
        match &self.credentials {
            Ok(Some(c @ Credentials::Basic { password, .. })) => {
                secrets.push(password.clone());
                secrets.extend(c.basic_header().map(|h| h["Basic ".len()..].to_string()));
            }
            Ok(Some(Credentials::Token(token))) => secrets.push(token.clone()),
            _ => {}
        }
        for secret in secrets.iter().filter(|s| s.len() >= 3) {
            for form in spellings(secret) {
                message = message.replace(&form, "***");
            }
        }
        message
    }
}

/// The ways a secret can reach a message: as it is, percent-encoded (in a
/// URL or a form), base64 (standard and URL-safe, padded or not), and hex
/// (either case) — a server echoing a request back may use any of them.
fn spellings(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = secret.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut forms = vec![
        secret.to_string(),
        encode_query(secret),
        BASE64.encode(bytes),
        BASE64.encode(bytes).trim_end_matches('=').to_string(),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        hex.to_ascii_uppercase(),
        hex,
    ];
    // Longest first, so a form that contains another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
}

/// Asks the token service for a pull token: `(token, lifetime in seconds)`.
/// Failures become `fail(status, message)`; cancellation stays `Aborted`.
fn fetch_token(
    http: &Http,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    basic: Option<&str>,
    fail: &dyn Fn(Option<u16>, String) -> Error,
) -> Result<(String, u64)> {
    let (scheme, authority) =
        crate::response::split_url(realm).ok_or_else(|| fail(None, "the token realm is not an http(s) URL".into()))?;
    if scheme == Scheme::Http && !http.config.plain_http_allowed(authority) {
        return Err(fail(None, format!("refusing to ask the token service {authority} over plain HTTP")));
    }
    let mut url = format!(
        "{realm}{}scope={}",
        if realm.contains('?') { '&' } else { '?' },
        encode_query(scope)
    );
    if let Some(service) = service {
        url.push_str(&format!("&service={}", encode_query(service)));
    }
    let body = http.retrying(
        None,
        |status, why| fail(status, format!("cannot get a token from {authority}: {why}")),
        || {
            let mut request = http.agent_for(authority).get(&url);
            if let Some(basic) = basic {
                request = request.header("Authorization", basic);
            }
            let response = request.call().map_err(|e| Failure::transport(e, authority))?;
            match response.status().as_u16() {
                200..=299 => response
                    .into_body()
                    .into_with_config()
                    .limit(MAX_TOKEN_RESPONSE)
                    .read_to_vec()
                    .map_err(|e| Failure::transport(e, authority)),
                status @ (401 | 403) => Err(Failure::Fatal {
                    status: Some(status),
                    message: format!(
                        "the token service refused {} (HTTP {status})",
                        if basic.is_some() {
                            "the credentials"
                        } else {
                            "an anonymous request"
                        }
                    ),
                }),
                _ => Err(Failure::status(response, authority, &|m| m)),
            }
        },
    )?;
    let value: Value =
        serde_json::from_slice(&body).map_err(|_| fail(None, format!("the token service {authority} answered malformed JSON")))?;
    let token = ["token", "access_token"]
        .iter()
        .find_map(|k| value.get(*k).and_then(Value::as_str).filter(|t| !t.is_empty()))
        .ok_or_else(|| fail(None, format!("the token service {authority} answered no token")))?;
    let lifetime = value.get("expires_in").and_then(Value::as_u64).unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Ok((token.to_string(), lifetime))
}

/// Percent-encodes a query value (scopes hold ':' and '/').
fn encode_query(s: &str) -> String {
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
    fn parses_challenges() {
        let bearer = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse_challenges([bearer]),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(parse_challenges([r#"Basic realm="Registry Realm""#]), Some(Challenge::Basic));
        assert_eq!(
            parse_challenges([r#"Basic realm="a, b", Bearer realm="https://x/t""#]),
            Some(Challenge::Bearer {
                realm: "https://x/t".into(),
                service: None
            })
        );
        assert_eq!(
            parse_challenges([r#"Bearer realm="q\"x""#]),
            Some(Challenge::Bearer {
                realm: "q\"x".into(),
                service: None
            })
        );
        assert_eq!(parse_challenges(["Negotiate", "=,,"]), None);
    }

    #[test]
    fn reads_docker_config() {
        let json = r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
            "Registry.Example:5000":{"username":"u","password":"p"},
            "tok.example":{"registrytoken":"t"},
            "helper.example":{}
        }}"#;
        let auths = parse_docker_config(json.as_bytes()).unwrap();
        assert_eq!(
            auths["index.docker.io"],
            Credentials::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            }
        );
        assert_eq!(
            auths["registry.example:5000"],
            Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(auths["tok.example"], Credentials::Token("t".into()));
        assert!(!auths.contains_key("helper.example"));
        assert!(parse_docker_config(br#"{"auths":{"x":{"auth":"!!"}}}"#).is_err());
        assert!(parse_docker_config(b"{").is_err());
        assert!(parse_docker_config(b"{}").unwrap().is_empty());
    }

    #[test]
    fn debug_and_redaction_hide_secrets() {
        let basic = Credentials::Basic {
            username: "me".into(),
            password: "hunter22".into(),
        };
        assert!(!format!("{basic:?}").contains("hunter22"));
        assert!(!format!("{:?}", Credentials::Token("sekrit".into())).contains("sekrit"));
        let auth = Auth::new(Ok(Some(basic)), "a/b");
        let header = BASE64.encode("me:hunter22");
        assert_eq!(auth.redact(format!("echo hunter22 {header}")), "echo *** ***");
        let forms = format!("{} {} {}", BASE64.encode("hunter22"), "68756e7465723232", "68756E7465723232");
        assert_eq!(auth.redact(forms), "*** *** ***");
        let spaced = Auth::new(
            Ok(Some(Credentials::Basic {
                username: "me".into(),
                password: "a b/c".into(),
            })),
            "a/b",
        );
        assert_eq!(spaced.redact("sent a%20b%2Fc".into()), "sent ***");
        assert_eq!(encode_query("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}

//! Authentication: credentials (from the caller, or Docker's config and
//! credential helpers, looked up when a registry first asks),
//! `WWW-Authenticate` challenges, and bearer tokens from the registry's
//! token service (`token.rs`), cached per endpoint and refreshed when they
//! expire or are refused. Every message built here is free of secrets, in
//! every spelling they travel in ([`spellings`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::docker::{DockerCredentials, Lookup};
use crate::error::{Error, Result};
use crate::token::{self, encode_query};
use crate::transport::Http;

/// Tokens are refreshed this long before they expire, so none expires in flight.
const TOKEN_MARGIN: u64 = 5;
/// Tokens remembered for scrubbing messages (a pull refreshes only a few).
const MAX_SEEN_TOKENS: usize = 16;
/// Secrets shorter than this are not scrubbed (they would mangle messages).
const MIN_SECRET: usize = 3;

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
    /// An identity token (an OAuth2 refresh token, Docker's
    /// `identitytoken`): exchanged at the token service for bearer tokens.
    Identity {
        /// The account name, `<token>` when unknown (as Docker's helpers say).
        username: String,
        /// The refresh token.
        token: String,
    },
}

impl fmt::Debug for Credentials {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic {{ username: {username:?}, password: <redacted> }}"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::Identity { username, .. } => write!(f, "Identity {{ username: {username:?}, token: <redacted> }}"),
        }
    }
}

impl Credentials {
    /// The `Authorization` value for Basic auth (registries that ask for it,
    /// token services on GET); an identity token goes as the password.
    pub(crate) fn basic_header(&self) -> Option<String> {
        let (username, secret) = match self {
            Credentials::Basic { username, password } => (username, password),
            Credentials::Identity { username, token } => (username, token),
            Credentials::Token(_) => return None,
        };
        Some(format!("Basic {}", BASE64.encode(format!("{username}:{secret}"))))
    }

    /// The secrets these credentials hold.
    fn secrets(&self) -> Vec<String> {
        let mut out = match self {
            Credentials::Basic { password, .. } => vec![password.clone()],
            Credentials::Token(token) | Credentials::Identity { token, .. } => vec![token.clone()],
        };
        out.extend(self.basic_header().map(|h| h["Basic ".len()..].to_string()));
        out
    }
}

/// Every way `secret` may appear in text that went over the wire or into a
/// log: as is, percent-encoded (queries, forms), base64 (standard and
/// URL-safe, padded or not) and hex (either case).
pub(crate) fn spellings(secret: &str) -> Vec<String> {
    let mut out = vec![
        secret.to_string(),
        encode_query(secret),
        encode_query(secret).replace("%20", "+"),
        BASE64.encode(secret),
        BASE64.encode(secret).trim_end_matches('=').to_string(),
        URL_SAFE.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        secret.bytes().map(|b| format!("{b:02x}")).collect(),
        secret.bytes().map(|b| format!("{b:02X}")).collect(),
    ];
    out.retain(|s| s.len() >= MIN_SECRET);
    // Longest first, so a spelling containing another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `message` with every spelling of every secret replaced by `***`.
pub(crate) fn scrub<'a>(mut message: String, secrets: impl IntoIterator<Item = &'a String>) -> String {
    let mut all: Vec<String> = secrets
        .into_iter()
        .filter(|s| s.len() >= MIN_SECRET)
        .flat_map(|s| spellings(s))
        .collect();
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for spelling in all {
        message = message.replace(spelling.as_str(), "***");
    }
    message
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
    /// Docker's credentials for this endpoint, once looked up.
    lookup: Option<Lookup>,
    /// A newer identity token the token service handed back.
    rotated: Option<String>,
    /// The latest tokens received, to scrub them from server-supplied messages.
    seen: Vec<String>,
}

/// Where an endpoint's credentials come from.
pub(crate) enum Source {
    /// The caller's.
    Given(Credentials),
    /// Docker's, for this registry (as references name it, or the mirror's host).
    Docker(Arc<DockerCredentials>, String),
}

/// One endpoint's authentication: its credentials and what it asked for.
pub(crate) struct Auth {
    source: Source,
    /// `repository:<path>:pull`, or none (a login asks for no scope).
    scope: Option<String>,
    state: Mutex<State>,
}

impl Auth {
    pub(crate) fn new(source: Source, repository: Option<&str>) -> Auth {
        Auth {
            source,
            scope: repository.map(|r| format!("repository:{r}:pull")),
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

    /// The credentials to use, looking Docker's up on first need (running
    /// a credential helper, off the JavaScript thread: pulls run on workers).
    fn credentials(&self, state: &mut State, http: &Http) -> Result<Option<Credentials>> {
        let mut credentials = match &self.source {
            Source::Given(credentials) => Some(credentials.clone()),
            Source::Docker(docker, registry) => {
                if state.lookup.is_none() {
                    state.lookup = Some(docker.lookup(registry, &http.cancel)?);
                }
                state.lookup.as_ref().and_then(|l| l.credentials.clone())
            }
        };
        if let (Some(Credentials::Identity { token, .. }), Some(rotated)) = (&mut credentials, &state.rotated) {
            token.clone_from(rotated);
        }
        Ok(credentials)
    }

    /// Whether any credentials were found (for error messages).
    pub(crate) fn has_credentials(&self) -> bool {
        match &self.source {
            Source::Given(_) => true,
            Source::Docker(..) => self.state().lookup.as_ref().is_some_and(|l| l.credentials.is_some()),
        }
    }

    /// `message`, followed by what went wrong looking credentials up.
    pub(crate) fn explain(&self, message: String) -> String {
        self.explain_with(&self.state(), message)
    }

    /// The `Authorization` value to send, fetching a token when the registry
    /// wants one and none is cached (holding the lock, so concurrent
    /// requests share one token fetch). Errors are `Error::Authentication`
    /// for `registry`/`repository`.
    pub(crate) fn header(&self, http: &Http, registry: &str, repository: &str) -> Result<Option<String>> {
        if let Source::Given(Credentials::Token(token)) = &self.source {
            return Ok(Some(format!("Bearer {token}")));
        }
        let mut state = self.state();
        let Some(challenge) = state.challenge.clone() else {
            return Ok(None);
        };
        let credentials = self.credentials(&mut state, http)?;
        let (realm, service) = match challenge {
            Challenge::Basic => return Ok(credentials.as_ref().and_then(Credentials::basic_header)),
            _ if matches!(credentials, Some(Credentials::Token(_))) => {
                return Ok(credentials.and_then(|c| match c {
                    Credentials::Token(token) => Some(format!("Bearer {token}")),
                    _ => None,
                }))
            }
            Challenge::Bearer { realm, service } => (realm, service),
        };
        if let Some(token) = state.token.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(Some(format!("Bearer {}", token.value)));
        }
        // Only a refusal is an authentication failure; an unreachable or
        // broken token service is the registry's problem.
        let fail = |status: Option<u16>, message: String| {
            let message = self.redact_with(&state, message);
            match status {
                Some(400 | 401 | 403) => Error::Authentication {
                    registry: registry.to_string(),
                    repository: repository.to_string(),
                    message: self.explain_with(&state, message),
                },
                _ => Error::Registry {
                    registry: registry.to_string(),
                    repository: repository.to_string(),
                    digest: None,
                    status,
                    message,
                },
            }
        };
        let request = token::Request {
            realm: &realm,
            service: service.as_deref(),
            scope: self.scope.as_deref(),
            credentials: credentials.as_ref(),
        };
        let grant = token::fetch(http, &request, &fail)?;
        if state.seen.len() >= MAX_SEEN_TOKENS {
            state.seen.remove(0);
        }
        state.seen.push(grant.token.clone());
        if let Some(refresh) = grant.refresh {
            state.seen.push(refresh.clone());
            state.rotated = Some(refresh);
        }
        let refresh_at = Instant::now() + Duration::from_secs(grant.lifetime.saturating_sub(TOKEN_MARGIN));
        state.token = Some(Token {
            value: grant.token.clone(),
            refresh_at,
        });
        Ok(Some(format!("Bearer {}", grant.token)))
    }

    fn explain_with(&self, state: &State, message: String) -> String {
        let trouble = state.lookup.as_ref().map(|l| l.trouble.join("; ")).unwrap_or_default();
        if trouble.is_empty() {
            message
        } else {
            format!("{message} ({trouble})")
        }
    }

    /// `message` with every secret this endpoint knows replaced by `***`.
    pub(crate) fn redact(&self, message: String) -> String {
        self.redact_with(&self.state(), message)
    }

    fn redact_with(&self, state: &State, message: String) -> String {
        let mut secrets: Vec<String> = state.seen.clone();
        let known = match &self.source {
            Source::Given(credentials) => Some(credentials),
            Source::Docker(..) => state.lookup.as_ref().and_then(|l| l.credentials.as_ref()),
        };
        secrets.extend(known.map(Credentials::secrets).unwrap_or_default());
        secrets.extend(state.rotated.clone());
        scrub(message, &secrets)
    }
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
    fn debug_and_redaction_hide_secrets() {
        let basic = Credentials::Basic {
            username: "me".into(),
            password: "hunter22".into(),
        };
        assert!(!format!("{basic:?}").contains("hunter22"));
        assert!(!format!("{:?}", Credentials::Token("sekrit".into())).contains("sekrit"));
        let identity = Credentials::Identity {
            username: "<token>".into(),
            token: "refresh-me".into(),
        };
        assert!(!format!("{identity:?}").contains("refresh-me"));
        let auth = Auth::new(Source::Given(basic), Some("a/b"));
        let header = BASE64.encode("me:hunter22");
        assert_eq!(auth.redact(format!("echo hunter22 {header}")), "echo *** ***");
        let auth = Auth::new(Source::Given(identity), None);
        let secret = "refresh-me";
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        let text = format!(
            "{secret} {} {} {hex} {}",
            BASE64.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            hex.to_uppercase()
        );
        assert_eq!(auth.redact(text), "*** *** *** *** ***");
        assert_eq!(scrub("a b/c+d".into(), &["b/c d".to_string()]), "a b/c+d");
        assert_eq!(scrub("x=b%2Fc+d".into(), &["b/c d".to_string()]), "x=***");
    }
}

//! The secrets the tests hand the client, and one check over every message
//! the support passes on (issue 11: no error or progress event carries a
//! password, token or identity token). Tests register their constants;
//! the support registers what flows through it (htpasswd users, the
//! token issuer's credentials and minted tokens, the password store's
//! entries, `auth` of the options). The support's `pull` and `login` scan
//! every error (Display and Debug) and `Events::attach` every progress
//! event, panicking with the test and the place, never the secret. The
//! registry is per test binary, so each test is also checked against the
//! secrets of the tests running beside it.

use std::fmt::{Debug, Display};
use std::sync::Mutex;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use registry::Credentials;

/// One spelling of a registered secret, with what to call it in a failure.
struct Spelling {
    text: String,
    label: String,
}

static SPELLINGS: Mutex<Vec<Spelling>> = Mutex::new(Vec::new());

/// Shorter secrets would match unrelated text by chance.
const MIN_LEN: usize = 6;

/// Watches for `secret` as written, percent-encoded, hex and base64
/// (standard and URL-safe): the spellings the client scrubs.
pub fn register(secret: &str) {
    assert!(secret.len() >= MIN_LEN, "a secret of {} bytes would match by chance", secret.len());
    let percent: String = secret
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    let forms = [
        ("raw", secret.to_string()),
        ("percent-encoded", percent),
        ("hex", hex),
        ("base64", STANDARD.encode(secret)),
        ("base64url", URL_SAFE_NO_PAD.encode(secret)),
    ];
    let mut spellings = SPELLINGS.lock().unwrap_or_else(|p| p.into_inner());
    let id = spellings.len();
    for (kind, text) in forms {
        if !spellings.iter().any(|s| s.text == text) {
            spellings.push(Spelling {
                text,
                label: format!("secret registered at #{id} ({kind})"),
            });
        }
    }
}

/// Watches for a password and for the Basic header's `base64(user:password)`.
pub fn register_basic(user: &str, password: &str) {
    register(password);
    register(&format!("{user}:{password}"));
}

/// Watches for whatever secret `credentials` hold.
pub fn register_credentials(credentials: &Credentials) {
    match credentials {
        Credentials::Basic { username, password } => register_basic(username, password),
        Credentials::Token(token) => register(token),
        Credentials::Identity { username, token } => register_basic(username, token),
    }
}

/// The name of the running test (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("an unnamed thread").to_string()
}

/// Panics if `text` holds a registered secret, naming the test and `place` only.
pub fn check(test: &str, place: &str, text: &str) {
    let spellings = SPELLINGS.lock().unwrap_or_else(|p| p.into_inner());
    let found: Vec<&str> = spellings
        .iter()
        .filter(|s| text.contains(&s.text))
        .map(|s| s.label.as_str())
        .collect();
    assert!(found.is_empty(), "{test}: {place} holds {}", found.join(", "));
}

/// [`check`] over an error's Display and Debug text.
pub fn check_error(place: &str, error: &(impl Display + Debug)) {
    check(&test_name(), place, &format!("{error}\n{error:?}"));
}

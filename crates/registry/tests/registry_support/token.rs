//! A token issuer for the registry's `auth: token:` mode, on the fake
//! server: checks Basic credentials and returns an ES256 JWT whose `x5c`
//! header carries a certificate the registry trusts (its rootcertbundle),
//! granting the requested repository actions to the known user only.
//! Its credentials and every token it mints are registered as secrets.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::fake::{Reply, Request, Server};

pub const SERVICE: &str = "test-registry";
pub const ISSUER: &str = "test-issuer";

/// A running issuer and what it handed out.
pub struct Issuer {
    pub server: Server,
    /// Every token issued, in order.
    pub tokens: Arc<Mutex<Vec<String>>>,
    /// When set, the next token issued is already expired (beyond the
    /// registry's 60 s leeway), so the registry refuses it.
    pub expire_next: Arc<AtomicBool>,
}

impl Issuer {
    /// Serves tokens for `user`/`password` (Basic, on GET), signed with the
    /// PKCS#8 `key` whose certificate is `cert_der`; anonymous requests get
    /// tokens granting nothing.
    pub fn start(key: &[u8], cert_der: &[u8], user: &str, password: &str) -> Issuer {
        super::secrets::register_basic(user, password);
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        let user = user.to_string();
        Issuer::start_with(key, cert_der, move |request| match request.header("authorization") {
            None => Ok(None),
            Some(a) if a == expected => Ok(Some(user.clone())),
            Some(_) => Err(Reply::new(
                401,
                &[("Content-Type", "application/json")],
                r#"{"details":"bad credentials"}"#,
            )),
        })
    }

    /// Serves tokens to whom `authorize` names, granting every scope asked
    /// for (in the query of a GET or the form of a POST) to a subject.
    pub fn start_with(
        key: &[u8],
        cert_der: &[u8],
        authorize: impl Fn(&Request) -> Result<Option<String>, Reply> + Send + Sync + 'static,
    ) -> Issuer {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key, &rng).expect("a P-256 PKCS#8 key");
        let x5c = STANDARD.encode(cert_der);
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let expire_next = Arc::new(AtomicBool::new(false));
        let serial = AtomicU64::new(0);
        let server = {
            let (tokens, expire_next) = (tokens.clone(), expire_next.clone());
            Server::start(move |request: &Request| {
                let subject = match authorize(request) {
                    Ok(subject) => subject,
                    Err(reply) => return reply,
                };
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
                let exp = if expire_next.swap(false, Ordering::SeqCst) {
                    now - 600
                } else {
                    now + 300
                };
                let params = params(request);
                let access: Vec<Value> = values(&params, "scope")
                    .iter()
                    .flat_map(|s| s.split(' ').map(str::to_string).collect::<Vec<_>>())
                    .filter(|_| subject.is_some())
                    .filter_map(|scope| {
                        let mut parts = scope.splitn(3, ':');
                        let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                        Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                    })
                    .collect();
                let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
                let claims = json!({
                    "iss": ISSUER,
                    "sub": subject.clone().unwrap_or_default(),
                    "aud": values(&params, "service").first().cloned().unwrap_or_default(),
                    "exp": exp,
                    "nbf": now - 10,
                    "iat": now,
                    "jti": serial.fetch_add(1, Ordering::SeqCst).to_string(),
                    "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                );
                let signature = key.sign(&SystemRandom::new(), signing_input.as_bytes()).unwrap();
                let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
                super::secrets::register(&token);
                tokens.lock().unwrap().push(token.clone());
                let body = json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
                Reply::new(200, &[("Content-Type", "application/json")], body)
            })
        };
        Issuer {
            server,
            tokens,
            expire_next,
        }
    }

    /// The realm URL to configure in the registry.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.host())
    }

    /// Token requests received.
    pub fn requests(&self) -> usize {
        self.server.requests_to("/token").len()
    }
}

/// The parameters of a token request: its query, and its form when a POST.
pub fn params(request: &Request) -> Vec<(String, String)> {
    let query = request.path.split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default();
    let form = if request.method == "POST" {
        String::from_utf8_lossy(&request.body).into_owned()
    } else {
        String::new()
    };
    [query, form]
        .iter()
        .flat_map(|text| {
            text.split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every value of parameter `name`.
pub fn values(params: &[(String, String)], name: &str) -> Vec<String> {
    params.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], escaped) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

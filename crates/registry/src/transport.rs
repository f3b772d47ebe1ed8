//! The transport: connection-pooling agents (one per host, with that
//! host's TLS settings, over sockets that wake on cancellation), how a
//! failed try is classified (transient or not), and the retry loop with its
//! bounded backoff, progress and cancellation. Everything that speaks HTTP
//! goes through here; what is said (auth, manifests, blobs) lives in the
//! modules above it.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use oci::progress::{Progress, Sink};
use oci::Digest;
use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::{Agent, Body, RequestBuilder};

use crate::config::RegistryConfig;
use crate::error::{Error, Result};
use crate::net::{self, CancelFlag};
use crate::response::{describe, header};

const USER_AGENT: &str = concat!("microsandbox-cache/", env!("CARGO_PKG_VERSION"));
/// How often a wait checks for cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(25);

/// Agents, retry policy, progress and cancellation, shared by all endpoints.
pub(crate) struct Http {
    pub(crate) config: RegistryConfig,
    /// By authority, made on first use.
    agents: Mutex<HashMap<String, Agent>>,
    progress: Option<Sink>,
    pub(crate) cancel: CancelFlag,
}

impl Http {
    /// Checks the global CA bundles now, so a bad one fails before any traffic.
    pub(crate) fn new(config: RegistryConfig, progress: Option<Sink>, cancel: CancelFlag) -> Result<Http> {
        config.root_certs(None)?;
        Ok(Http {
            config,
            agents: Mutex::new(HashMap::new()),
            progress,
            cancel,
        })
    }

    /// The agent for `authority`: its CA bundles and client certificate,
    /// unverified TLS only if it is insecure. Errors name a bad file.
    pub(crate) fn agent_for(&self, authority: &str) -> Result<Agent> {
        let key = authority.to_ascii_lowercase();
        let mut agents = self.agents.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(agent) = agents.get(&key) {
            return Ok(agent.clone());
        }
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(self.config.root_certs(Some(&key))?)))
            .client_cert(self.config.client_cert(&key)?)
            .disable_verification(self.config.is_insecure(&key))
            .build();
        let timeout = Some(self.config.timeout);
        let config = Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .timeout_resolve(timeout)
            .timeout_connect(timeout)
            .timeout_recv_response(timeout)
            .timeout_per_read(timeout)
            .timeout_per_write(timeout)
            .build();
        let resolver = net::InterruptibleResolver {
            cancel: self.cancel.clone(),
        };
        let agent = Agent::with_parts(config, net::connector(self.cancel.clone()), resolver);
        agents.insert(key, agent.clone());
        Ok(agent)
    }

    /// `request` bounded in all by the document deadline (see
    /// [`RegistryConfig::deadline`]): for manifests, tokens, pings.
    pub(crate) fn document<B>(&self, request: RequestBuilder<B>) -> RequestBuilder<B> {
        request.config().timeout_per_call(Some(self.config.deadline)).build()
    }

    pub(crate) fn check_cancel(&self) -> Result<()> {
        if self.cancel.raised() {
            Err(Error::Aborted)
        } else {
            Ok(())
        }
    }

    pub(crate) fn emit(&self, event: Progress) {
        if let Some(progress) = &self.progress {
            progress(event);
        }
    }

    /// Sleeps `delay`, waking early (with `Aborted`) if cancelled.
    pub(crate) fn pause(&self, delay: Duration) -> Result<()> {
        let until = Instant::now() + delay;
        loop {
            self.check_cancel()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(CANCEL_POLL));
        }
    }

    /// Runs `attempt` until it succeeds, fails permanently, or has failed
    /// transiently `retry.attempts` times; `fail` types the final error.
    pub(crate) fn retrying<T>(
        &self,
        digest: Option<&Digest>,
        fail: impl Fn(Option<u16>, String) -> Error,
        mut attempt: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T> {
        let policy = &self.config.retry;
        let mut failures = 0;
        loop {
            self.check_cancel()?;
            match attempt() {
                Ok(value) => return Ok(value),
                // Whatever a cancelled try ended with, it ended because of the abort.
                Err(_) if self.cancel.raised() => return Err(Error::Aborted),
                Err(Failure::Again) => {}
                Err(Failure::Transient {
                    status,
                    reason,
                    retry_after,
                }) => {
                    failures += 1;
                    if failures >= policy.attempts.max(1) {
                        return Err(fail(status, format!("gave up after {failures} tries: {reason}")));
                    }
                    let wait = retry_after.map_or_else(|| policy.delay(failures), |d| d.min(policy.max_delay));
                    self.emit(Progress::Retry {
                        digest: digest.cloned(),
                        attempt: failures,
                        reason,
                        wait,
                    });
                    self.pause(wait)?;
                }
                Err(Failure::Fatal { status, message }) => return Err(fail(status, message)),
                Err(Failure::Stop(error)) => return Err(error),
            }
        }
    }
}

/// Why one try of a request failed, and what to do about it.
pub(crate) enum Failure {
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
    pub(crate) fn transport(e: ureq::Error, authority: &str) -> Failure {
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
    pub(crate) fn status(response: Response<Body>, authority: &str, redact: &dyn Fn(String) -> String) -> Failure {
        let status = response.status().as_u16();
        let retry_after = header(&response, "retry-after").and_then(|v| retry_after(v, SystemTime::now()));
        let message = describe(response, authority, redact);
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

/// A `Retry-After` value as a wait from `now`: delay-seconds, or an
/// HTTP-date (RFC 9110: IMF-fixdate, or the obsolete RFC 850 and asctime
/// forms), a date in the past meaning at once.
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = crate::httpdate::parse(value)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Describes a transport error: `Ok` when a new try may cure it (the
/// connection broke or stalled), `Err` when not (nothing listens, the name
/// does not resolve, TLS fails, the peer speaks garbage).
pub(crate) fn classify(e: ureq::Error, authority: &str) -> Result<String, String> {
    use io::ErrorKind::*;
    let transient = match &e {
        // A document that took longer than its deadline in all: the server
        // is dripping it, and would again.
        ureq::Error::Timeout(ureq::Timeout::PerCall) => false,
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
    if matches!(e, ureq::Error::Timeout(ureq::Timeout::PerCall)) {
        description.push_str(" (the answer took longer than the per-request deadline)");
    }
    if transient {
        return Ok(description);
    }
    if ["fatal alert: BadCertificate", "fatal alert: CertificateRequired"]
        .iter()
        .any(|a| description.contains(a))
    {
        description.push_str(
            " (the registry may want a client certificate: name clientCertificate and clientKey for this host in registries.json)",
        );
    }
    if description.contains("invalid peer certificate") {
        description.push_str(" (TLS verification failed: add the registry's CA to the CA bundles, or mark the host insecure)");
    }
    Err(description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_757); // Sun, 06 Nov 1994 08:49:17 GMT
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(20)));
        assert_eq!(retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), Some(Duration::from_secs(20)));
        assert_eq!(retry_after("Sun Nov  6 08:49:37 1994", now), Some(Duration::from_secs(20)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn classifies_transport_errors() {
        assert!(classify(ureq::Error::Io(io::ErrorKind::ConnectionReset.into()), "h").is_ok());
        assert!(classify(ureq::Error::Io(io::ErrorKind::ConnectionRefused.into()), "h").is_err());
    }
}

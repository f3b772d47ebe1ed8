//! The transport: connection-pooling agents (verified and unverified TLS),
//! how a failed try is classified (transient or not), and the retry loop
//! with its bounded backoff, progress and cancellation. Everything that
//! speaks HTTP goes through here; what is said (auth, manifests, blobs)
//! lives in the modules above it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci::progress::{Progress, Sink};
use oci::Digest;
use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::{Agent, Body};

use crate::config::RegistryConfig;
use crate::error::{Error, Result};
use crate::response::{describe, header};
use crate::PullOptions;

const USER_AGENT: &str = concat!("microsandbox-cache/", env!("CARGO_PKG_VERSION"));
/// How often a wait checks for cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(25);

/// Agents, retry policy, progress and cancellation, shared by all endpoints.
pub(crate) struct Http {
    pub(crate) config: RegistryConfig,
    verified: Agent,
    unverified: Agent,
    progress: Option<Sink>,
    cancel: Option<Arc<AtomicBool>>,
}

impl Http {
    /// Agents trusting the configured roots, with the options' progress and cancellation.
    pub(crate) fn new(config: RegistryConfig, options: &PullOptions) -> Result<Http> {
        let roots = RootCerts::Specific(Arc::new(config.root_certs()?));
        let timeout = Some(config.timeout);
        let agent = |verify: bool| -> Agent {
            let tls = TlsConfig::builder().root_certs(roots.clone()).disable_verification(!verify).build();
            Agent::config_builder()
                .tls_config(tls)
                .http_status_as_error(false)
                .max_redirects(0)
                .user_agent(USER_AGENT)
                .timeout_connect(timeout)
                .timeout_recv_response(timeout)
                .timeout_per_read(timeout)
                .build()
                .into()
        };
        Ok(Http {
            config,
            verified: agent(true),
            unverified: agent(false),
            progress: options.progress.clone(),
            cancel: options.cancel.clone(),
        })
    }

    /// The agent for `authority`: unverified TLS only for insecure hosts.
    pub(crate) fn agent_for(&self, authority: &str) -> &Agent {
        if self.config.is_insecure(authority) {
            &self.unverified
        } else {
            &self.verified
        }
    }

    pub(crate) fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Aborted),
            _ => Ok(()),
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
        let retry_after = header(&response, "retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
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

/// Describes a transport error: `Ok` when a new try may cure it (the
/// connection broke or stalled), `Err` when not (nothing listens, the name
/// does not resolve, TLS fails, the peer speaks garbage).
pub(crate) fn classify(e: ureq::Error, authority: &str) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_transport_errors() {
        assert!(classify(ureq::Error::Io(io::ErrorKind::ConnectionReset.into()), "h").is_ok());
        assert!(classify(ureq::Error::Io(io::ErrorKind::ConnectionRefused.into()), "h").is_err());
    }
}

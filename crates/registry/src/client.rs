//! The HTTP layer: one `Client` per pulled repository, holding its
//! endpoints (mirrors, then the origin) and the transport's agents.
//! Requests are retried on transient failures, redirects are followed by
//! hand so credentials never leave the registry's origin, and a 401 gets
//! one token refresh.

use std::sync::{Arc, Mutex, MutexGuard};

use oci::{Digest, Platform, Reference};
use ureq::http::Response;
use ureq::Body;

use crate::auth::{parse_challenges, Auth, Challenge, Source};
use crate::config::{Scheme, Target};
use crate::docker::DockerCredentials;
use crate::error::{Error, Result};
use crate::helper::Helpers;
use crate::net::CancelFlag;
use crate::response::{describe, header, headers_named, resolve_location, split_url};
use crate::transport::{Failure, Http};
use crate::{Credentials, PullOptions, RegistryConfig};

const MAX_REDIRECTS: usize = 5;

#[derive(Clone, Copy)]
enum Probe {
    Unknown,
    Ready(Scheme),
    Failed,
}

/// What a request is used for: a mirror serves only what its capabilities allow.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// A tag resolved to a manifest.
    Resolve,
    /// Content by digest (a blob, a pinned manifest).
    Pull,
}

/// One place the repository is pulled from.
pub(crate) struct Endpoint {
    pub(crate) target: Target,
    pub(crate) auth: Auth,
    probe: Mutex<Probe>,
}

impl Endpoint {
    fn probe(&self) -> MutexGuard<'_, Probe> {
        self.probe.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What one exchange (with redirects) ended with, short of a failure.
enum Exchange {
    Done(Response<Body>),
    Unauthorized(Option<Challenge>),
}

/// A registry client for one repository: resolves its manifest, fetches
/// its config, and streams its blobs (see [`super::BlobSource`]). Cheap to
/// share between threads; connections are pooled.
pub struct Client {
    pub(crate) reference: Reference,
    pub(crate) platform: Platform,
    pub(crate) http: Http,
    pub(crate) endpoints: Vec<Endpoint>,
}

impl Client {
    /// Prepares to pull `reference`: endpoints, TLS roots and client
    /// certificates (read now, so a bad file fails first), credentials
    /// (looked up when a registry first asks). No network traffic happens
    /// until the first request.
    pub fn new(reference: &Reference, options: &PullOptions) -> Result<Client> {
        let mut config = options.config.clone();
        if options.insecure {
            config = config.with_insecure_origin(reference);
        }
        let targets = config.targets(reference)?;
        let endpoints = Client::endpoints(&config, targets, options.auth.as_ref(), Some(reference.path()));
        let http = Http::new(config, options.progress.clone(), CancelFlag(options.cancel.clone()))?;
        for endpoint in &endpoints {
            http.agent_for(&endpoint.target.authority)?;
        }
        Ok(Client {
            reference: reference.clone(),
            platform: options.platform.clone(),
            http,
            endpoints,
        })
    }

    /// Endpoints for `targets`: the caller's credentials for the origin,
    /// Docker's (by registry, or by mirror host) for the rest.
    pub(crate) fn endpoints(
        config: &RegistryConfig,
        targets: Vec<Target>,
        auth: Option<&Credentials>,
        repository: Option<&str>,
    ) -> Vec<Endpoint> {
        let docker = Arc::new(DockerCredentials::new(
            config.docker_config_path(),
            Helpers::new(config.helper_env.clone()),
        ));
        targets
            .into_iter()
            .map(|target| {
                let source = match (auth, target.mirror) {
                    (Some(credentials), false) => Source::Given(credentials.clone()),
                    (_, false) => Source::Docker(docker.clone(), target.label.clone()),
                    (_, true) => Source::Docker(docker.clone(), target.authority.clone()),
                };
                Endpoint {
                    auth: Auth::new(source, repository.map(|r| target.repository(r)).as_deref()),
                    target,
                    probe: Mutex::new(Probe::Unknown),
                }
            })
            .collect()
    }

    /// A `Registry` error about `endpoint`, scrubbed of its secrets.
    pub(crate) fn registry_error(&self, endpoint: &Endpoint, digest: Option<&Digest>, status: Option<u16>, message: String) -> Error {
        Error::Registry {
            registry: endpoint.target.label.clone(),
            repository: self.reference.path().to_string(),
            digest: digest.map(ToString::to_string),
            status,
            message: endpoint.auth.redact(message),
        }
    }

    fn denied(&self, endpoint: &Endpoint, message: String) -> Error {
        Error::Authentication {
            registry: endpoint.target.label.clone(),
            repository: self.reference.path().to_string(),
            message: endpoint.auth.redact(endpoint.auth.explain(message)),
        }
    }

    /// Runs `f` on each endpoint from index `start` (mirrors, then the
    /// origin) until one succeeds. A mirror's failure falls through; the
    /// origin's is returned, noting what the mirrors said.
    /// Mirrors without the capability `need` are passed over.
    pub(crate) fn each_endpoint<T>(
        &self,
        start: usize,
        need: Need,
        mut f: impl FnMut(usize, &Endpoint) -> Result<T>,
    ) -> Result<(usize, T)> {
        let mut mirror_errors = Vec::new();
        for (i, endpoint) in self.endpoints.iter().enumerate().skip(start) {
            let capable = match need {
                Need::Resolve => endpoint.target.resolve,
                Need::Pull => endpoint.target.pull,
            };
            if !capable || (endpoint.target.mirror && matches!(*endpoint.probe(), Probe::Failed)) {
                continue;
            }
            match f(i, endpoint) {
                Ok(value) => return Ok((i, value)),
                Err(Error::Aborted) => return Err(Error::Aborted),
                Err(e) if endpoint.target.mirror => mirror_errors.push(format!("mirror {}: {e}", endpoint.target.label)),
                Err(Error::Registry {
                    registry,
                    repository,
                    digest,
                    status,
                    mut message,
                }) if !mirror_errors.is_empty() => {
                    message.push_str(&format!(" (after {})", mirror_errors.join("; ")));
                    return Err(Error::Registry {
                        registry,
                        repository,
                        digest,
                        status,
                        message,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Internal("no registry endpoint left to try".into()))
    }

    /// GETs `/v2/<repository>/<path>` from `endpoint` (from byte `from`)
    /// with retries, one token refresh on 401, and redirects; `handle` takes
    /// the 2xx response inside the retry loop, so it can read the body and
    /// have transient failures retried too.
    pub(crate) fn get<T>(
        &self,
        endpoint: &Endpoint,
        path: &str,
        accept: Option<&str>,
        from: u64,
        digest: Option<&Digest>,
        handle: impl FnMut(Response<Body>) -> Result<T, Failure>,
    ) -> Result<T> {
        let scheme = self.scheme(endpoint)?;
        let url = format!(
            "{}{}/{path}",
            endpoint.target.api_root(scheme),
            endpoint.target.repository(self.reference.path())
        );
        self.get_url(endpoint, scheme, &url, accept, from, digest, handle)
    }

    /// [`Client::get`] of a whole URL on `endpoint`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn get_url<T>(
        &self,
        endpoint: &Endpoint,
        scheme: Scheme,
        url: &str,
        accept: Option<&str>,
        from: u64,
        digest: Option<&Digest>,
        mut handle: impl FnMut(Response<Body>) -> Result<T, Failure>,
    ) -> Result<T> {
        let mut refreshed = false;
        self.http.retrying(
            digest,
            |status, message| self.registry_error(endpoint, digest, status, message),
            || {
                let sent = endpoint
                    .auth
                    .header(&self.http, &endpoint.target.label, self.reference.path())
                    .map_err(Failure::Stop)?;
                match self.exchange(endpoint, scheme, url, accept, from, sent.as_deref())? {
                    Exchange::Done(response) => handle(response),
                    Exchange::Unauthorized(challenge) if !refreshed => {
                        refreshed = true;
                        endpoint.auth.challenged(challenge, sent.as_deref());
                        Err(Failure::Again)
                    }
                    Exchange::Unauthorized(_) => Err(Failure::Stop(self.denied(endpoint, unauthorized(endpoint, sent.is_some())))),
                }
            },
        )
    }

    /// One request and its redirects. `Authorization` goes to the
    /// endpoint's own origin only; a redirect may not downgrade to plain
    /// HTTP unless the target host is allowed it.
    fn exchange(
        &self,
        endpoint: &Endpoint,
        scheme: Scheme,
        url: &str,
        accept: Option<&str>,
        from: u64,
        authorization: Option<&str>,
    ) -> Result<Exchange, Failure> {
        let fatal = |message: String| Failure::Fatal { status: None, message };
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let (this_scheme, authority) = split_url(&url).ok_or_else(|| fatal("redirected to a URL that is not http(s)".into()))?;
            let same_origin = this_scheme == scheme && authority.eq_ignore_ascii_case(&endpoint.target.authority);
            let agent = self.http.agent_for(authority).map_err(Failure::Stop)?;
            let mut request = agent.get(&url);
            if accept.is_some() {
                // A manifest: a document, bounded in all.
                request = self.http.document(request);
            }
            if let Some(accept) = accept {
                request = request.header("Accept", accept);
            }
            if from > 0 {
                request = request.header("Range", format!("bytes={from}-"));
            }
            if let (true, Some(authorization)) = (same_origin, authorization) {
                request = request.header("Authorization", authorization);
            }
            let response = request.call().map_err(|e| Failure::transport(e, authority))?;
            match response.status().as_u16() {
                200..=299 => return Ok(Exchange::Done(response)),
                301 | 302 | 303 | 307 | 308 => {
                    let location =
                        header(&response, "location").ok_or_else(|| fatal(format!("{authority} redirected without a Location")))?;
                    let next =
                        resolve_location(&url, location).ok_or_else(|| fatal(format!("{authority} redirected to an unusable location")))?;
                    let (next_scheme, next_authority) =
                        split_url(&next).ok_or_else(|| fatal("redirected to a URL that is not http(s)".into()))?;
                    if next_scheme == Scheme::Http && scheme == Scheme::Https && !self.http.config.plain_http_allowed(next_authority) {
                        return Err(fatal(format!("refusing a redirect from HTTPS to plain HTTP ({next_authority})")));
                    }
                    url = next;
                }
                401 if same_origin => {
                    return Ok(Exchange::Unauthorized(parse_challenges(headers_named(
                        response.headers(),
                        "www-authenticate",
                    ))))
                }
                403 if same_origin => {
                    return Err(Failure::Stop(self.denied(
                        endpoint,
                        format!("access denied: {}", describe(response, authority, &|m| endpoint.auth.redact(m))),
                    )))
                }
                _ => return Err(Failure::status(response, authority, &|m| endpoint.auth.redact(m))),
            }
        }
        Err(fatal(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// The scheme `endpoint` answers on, found once with `GET /v2/`: HTTPS
    /// first; plain HTTP only where allowed, only if HTTPS failed, and only
    /// if it answers like a registry (200 or 401). A 401 primes the auth.
    pub(crate) fn scheme(&self, endpoint: &Endpoint) -> Result<Scheme> {
        let mut probe = endpoint.probe();
        match *probe {
            Probe::Ready(scheme) => return Ok(scheme),
            Probe::Failed => return Err(self.registry_error(endpoint, None, None, "mirror unreachable earlier in this pull".into())),
            Probe::Unknown => {}
        }
        let authority = endpoint.target.authority.as_str();
        let mut first_error = None;
        for &scheme in &endpoint.target.schemes {
            // With plain HTTP to fall back on, a failed HTTPS try is not retried.
            let may_fall_back = scheme == Scheme::Https && endpoint.target.schemes.len() > 1;
            let url = endpoint.target.api_root(scheme);
            let answer = self.http.retrying(
                None,
                |status, message| self.registry_error(endpoint, None, status, message),
                || {
                    let agent = self.http.agent_for(authority).map_err(Failure::Stop)?;
                    let response = self
                        .http
                        .document(agent.get(&url))
                        .call()
                        .map_err(|e| match Failure::transport(e, authority) {
                            Failure::Transient { reason, .. } if may_fall_back => Failure::Fatal {
                                status: None,
                                message: reason,
                            },
                            failure => failure,
                        })?;
                    match response.status().as_u16() {
                        408 | 429 | 500 | 502..=504 => Err(Failure::status(response, authority, &|m| m)),
                        status => Ok((status, parse_challenges(headers_named(response.headers(), "www-authenticate")))),
                    }
                },
            );
            match answer {
                Ok((status, challenge)) if scheme == Scheme::Https || matches!(status, 200 | 401) => {
                    if status == 401 {
                        endpoint.auth.challenged(challenge, None);
                    }
                    *probe = Probe::Ready(scheme);
                    return Ok(scheme);
                }
                Ok((status, _)) => {
                    let message = format!("{authority} answered HTTP {status} to /v2/ over plain HTTP: not a registry");
                    first_error.get_or_insert(self.registry_error(endpoint, None, Some(status), message));
                }
                Err(Error::Aborted) => return Err(Error::Aborted),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if endpoint.target.mirror {
            *probe = Probe::Failed;
        }
        Err(first_error.unwrap_or_else(|| Error::Internal(format!("no scheme to try for {authority}"))))
    }
}

/// Why a 401 that survived a token refresh is final.
fn unauthorized(endpoint: &Endpoint, sent: bool) -> String {
    let label = &endpoint.target.label;
    match (sent, endpoint.auth.has_credentials()) {
        (false, false) => format!("the registry requires authentication and no credentials were found for {label}"),
        (true, false) => {
            format!("the registry refused an anonymous token (HTTP 401, even after a refresh) and no credentials were found for {label}")
        }
        (false, true) => "the registry answered HTTP 401 without a usable challenge".to_string(),
        (true, true) => "the registry refused the credentials (HTTP 401, even after a refresh)".to_string(),
    }
}

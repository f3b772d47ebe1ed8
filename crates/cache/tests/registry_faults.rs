//! Faults a real registry does not make on demand, from a handcrafted HTTP
//! server: broken and stalled streams (resumed with `Range`), throttling
//! and server errors (retried, boundedly), permanent refusals (not
//! retried), bad manifests, wrong digests and sizes, redirects to other
//! hosts, cancellation, and secrets echoed back by a hostile server.

mod registry_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cache::digest::Digest;
use cache::error::Error;
use cache::manifest::{Descriptor, OCI_MANIFEST};
use cache::reference::Reference;
use cache::registry::{BlobSource, Client, Credentials, DownloadEvent, PullOptions};
use registry_support::fake::{blob_reply, Content, Reply, Request, Server};
use registry_support::image::{self, Image};
use registry_support::{options, pull, read_blob, Events};

const REPO: &str = "fault/app";

fn image() -> Image {
    image::simple("amd64", 30)
}

/// The image's big layer (about 200 kB) and its path on the server.
fn big_layer(image: &Image) -> (Descriptor, Vec<u8>, String) {
    let (descriptor, bytes) = image.layers[1].clone();
    let path = format!("/v2/{REPO}/blobs/{}", descriptor.digest);
    (descriptor, bytes, path)
}

/// A registry serving `image` as `v1`, unless `fault` answers first.
fn serve(image: &Image, fault: impl Fn(&Request, &Content) -> Option<Reply> + Send + Sync + 'static) -> Server {
    let content = Content::with_image(REPO, "v1", image);
    Server::start(move |request| fault(request, &content).unwrap_or_else(|| content.serve(request)))
}

fn reference(server: &Server) -> String {
    format!("{}/{REPO}:v1", server.host())
}

fn client(server: &Server, opts: &PullOptions) -> Client {
    Client::new(&Reference::parse(&reference(server)).unwrap(), opts).unwrap()
}

fn open_error(client: &Client, blob: &Descriptor) -> Error {
    match client.open(blob) {
        Err(e) => e,
        Ok(_) => panic!("opening {} should fail", blob.digest),
    }
}

/// The first call returns 0, then 1, ...
fn next(counter: &AtomicUsize) -> usize {
    counter.fetch_add(1, Ordering::SeqCst)
}

fn work() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn resumes_a_broken_blob_with_range() {
    for reset in [true, false] {
        let image = image();
        let (_, bytes, path) = big_layer(&image);
        let hits = AtomicUsize::new(0);
        let server = {
            let path = path.clone();
            serve(&image, move |request, _| {
                (request.path == path && next(&hits) == 0).then(|| Reply::Cut {
                    status: 200,
                    headers: vec![],
                    body: bytes[..bytes.len() / 2].to_vec(),
                    declared: bytes.len(),
                    reset,
                })
            })
        };
        let dir = work();
        let mut opts = options(dir.path());
        let events = Events::default();
        events.attach(&mut opts);
        let pulled = pull(&reference(&server), &opts).unwrap();
        assert_eq!(pulled.layers[1], image.layers[1].1);
        let requests = server.requests_to(&path);
        assert_eq!(requests.len(), 2, "reset={reset}");
        assert_eq!(requests[0].header("range"), None);
        let range = requests[1].header("range").expect("the second request resumes");
        let from: u64 = range
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .unwrap()
            .parse()
            .unwrap();
        assert!(from > 0 && from <= image.layers[1].0.size / 2, "{range}");
        assert_eq!(events.retries(), 1);
    }
}

#[test]
fn restarts_when_the_server_ignores_range_and_checks_content_range() {
    let image = image();
    let (descriptor, bytes, path) = big_layer(&image);
    let hits = Arc::new(AtomicUsize::new(0));
    let bad_range = Arc::new(AtomicBool::new(false));
    let server = {
        let (path, hits, bad_range) = (path.clone(), hits.clone(), bad_range.clone());
        serve(&image, move |request, _| {
            if request.path != path {
                return None;
            }
            if next(&hits).is_multiple_of(2) {
                return Some(Reply::Cut {
                    status: 200,
                    headers: vec![],
                    body: bytes[..1000].to_vec(),
                    declared: bytes.len(),
                    reset: false,
                });
            }
            if bad_range.load(Ordering::SeqCst) {
                let range = format!("bytes 0-{}/{}", bytes.len() - 1, bytes.len());
                return Some(Reply::new(206, &[("Content-Range", &range)], bytes[1000..].to_vec()));
            }
            // Ignores Range: the whole blob again.
            Some(Reply::new(200, &[], bytes.clone()))
        })
    };
    let dir = work();
    let client = client(&server, &options(dir.path()));
    assert_eq!(read_blob(&client, &descriptor).unwrap(), image.layers[1].1);
    assert_eq!(server.requests_to(&path).len(), 2);

    bad_range.store(true, Ordering::SeqCst);
    match read_blob(&client, &descriptor) {
        Err(Error::Registry { message, digest, .. }) => {
            assert!(message.contains("Content-Range"), "{message}");
            assert_eq!(digest, Some(descriptor.digest.to_string()));
        }
        other => panic!("expected a registry error, got {other:?}"),
    }
}

#[test]
fn retries_throttling_and_server_errors() {
    let image = image();
    let manifest_hits = Arc::new(AtomicUsize::new(0));
    let blob_hits = Arc::new(AtomicUsize::new(0));
    let (_, _, path) = big_layer(&image);
    let server = {
        let (manifest_hits, blob_hits) = (manifest_hits.clone(), blob_hits.clone());
        serve(&image, move |request, _| {
            if request.path.contains("/manifests/") {
                return match next(&manifest_hits) {
                    0 => Some(Reply::new(429, &[("Retry-After", "0")], "slow down")),
                    1 => Some(Reply::error(503, "UNAVAILABLE", "try later")),
                    _ => None,
                };
            }
            (request.path == path && next(&blob_hits) == 0).then(|| Reply::new(502, &[], "bad gateway"))
        })
    };
    let dir = work();
    let mut opts = options(dir.path());
    let events = Events::default();
    events.attach(&mut opts);
    let pulled = pull(&reference(&server), &opts).unwrap();
    assert_eq!(pulled.digest, image.manifest_digest);
    assert_eq!(manifest_hits.load(Ordering::SeqCst), 3);
    assert_eq!(blob_hits.load(Ordering::SeqCst), 2);
    assert_eq!(events.retries(), 3);
}

#[test]
fn gives_up_after_bounded_retries() {
    let image = image();
    let server = serve(&image, |request, _| {
        request
            .path
            .contains("/manifests/")
            .then(|| Reply::error(503, "UNAVAILABLE", "down for maintenance"))
    });
    let dir = work();
    let started = Instant::now();
    match pull(&reference(&server), &options(dir.path())) {
        Err(Error::Registry {
            registry,
            repository,
            status,
            message,
            ..
        }) => {
            assert_eq!((registry, repository, status), (server.host(), REPO.to_string(), Some(503)));
            assert!(
                message.contains("gave up after 4 tries") && message.contains("down for maintenance"),
                "{message}"
            );
        }
        other => panic!("expected a registry error, got {:?}", other.map(|p| p.digest)),
    }
    assert_eq!(server.requests_to(&format!("/v2/{REPO}/manifests/")).len(), 4);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn permanent_errors_fail_fast() {
    let image = image();
    let (descriptor, _, path) = big_layer(&image);
    let forbidden = Arc::new(AtomicBool::new(false));
    let server = {
        let (path, forbidden) = (path.clone(), forbidden.clone());
        serve(&image, move |request, _| {
            (request.path == path).then(|| match forbidden.load(Ordering::SeqCst) {
                true => Reply::error(403, "DENIED", "requested access to the resource is denied"),
                false => Reply::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
            })
        })
    };
    let dir = work();
    let opts = options(dir.path());

    let missing = format!("{}/{REPO}:nope", server.host());
    match pull(&missing, &opts) {
        Err(Error::ImageNotFound { reference, .. }) => assert_eq!(reference, missing),
        other => panic!("expected ImageNotFound, got {:?}", other.map(|p| p.digest)),
    }
    assert_eq!(server.requests_to(&format!("/v2/{REPO}/manifests/nope")).len(), 1);

    let client = client(&server, &opts);
    match open_error(&client, &descriptor) {
        Error::Registry {
            status: Some(404),
            digest,
            message,
            ..
        } => {
            assert_eq!(digest, Some(descriptor.digest.to_string()));
            assert!(message.contains("BLOB_UNKNOWN"), "{message}");
        }
        other => panic!("expected a 404 registry error, got {other:?}"),
    }
    forbidden.store(true, Ordering::SeqCst);
    match open_error(&client, &descriptor) {
        Error::Authentication { message, .. } => assert!(message.contains("DENIED"), "{message}"),
        other => panic!("expected an authentication error, got {other:?}"),
    }
    assert_eq!(server.requests_to(&path).len(), 2, "neither was retried");
}

#[test]
fn refuses_oversized_malformed_and_unsupported_manifests() {
    let huge = format!("{{\"schemaVersion\":2,\"pad\":\"{}\"}}", "x".repeat(4 << 20));
    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::new(200, &[("Content-Type", OCI_MANIFEST)], huge.clone()),
            "larger than the 4 MiB",
        ),
        (
            Reply::Full {
                status: 200,
                headers: vec![("Content-Type".into(), OCI_MANIFEST.into())],
                body: huge.into_bytes(),
                length: false,
            },
            "larger than the 4 MiB",
        ),
        (Reply::new(200, &[("Content-Type", OCI_MANIFEST)], "{not json"), "not valid JSON"),
        (
            Reply::new(
                200,
                &[("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws")],
                r#"{"schemaVersion":1}"#,
            ),
            "unsupported manifest media type application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        (
            Reply::new(
                200,
                &[("Content-Type", "application/json")],
                r#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#,
            ),
            "unsupported manifest media type application/vnd.example+json",
        ),
    ];
    for (reply, expected) in cases {
        let reply = std::sync::Mutex::new(Some(reply));
        let server = serve(&image(), move |request, _| {
            request
                .path
                .contains("/manifests/")
                .then(|| reply.lock().unwrap().take().unwrap_or_else(|| Reply::new(500, &[], "asked twice")))
        });
        let dir = work();
        match pull(&reference(&server), &options(dir.path())) {
            Err(Error::Registry {
                message,
                registry,
                repository,
                ..
            }) => {
                assert!(message.contains(expected), "{message}");
                assert_eq!((registry, repository), (server.host(), REPO.to_string()));
            }
            other => panic!("{expected}: expected a registry error, got {:?}", other.map(|p| p.digest)),
        }
        assert_eq!(
            server.requests_to(&format!("/v2/{REPO}/manifests/")).len(),
            1,
            "{expected}: not retried"
        );
    }
}

#[test]
fn detects_wrong_digests() {
    let image = image();
    let other = image::simple("amd64", 31);
    let lie = Digest::of(b"something else").to_string();
    let server = {
        let (image, other, lie) = (image.clone(), other.clone(), lie.clone());
        serve(&image.clone(), move |request, content| {
            let path = request.path.strip_prefix(&format!("/v2/{REPO}/"))?;
            match path {
                // The tag's Docker-Content-Digest vouches for other bytes.
                "manifests/v1" => Some(Reply::new(
                    200,
                    &[("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", &lie)],
                    image.manifest.clone(),
                )),
                // The digest serves another manifest.
                p if p == format!("manifests/{}", image.manifest_digest) => {
                    Some(Reply::new(200, &[("Content-Type", OCI_MANIFEST)], other.manifest.clone()))
                }
                // Config and first layer: same size, other bytes.
                p if p == format!("blobs/{}", image.config_digest) => {
                    let mut bytes = image.config.clone();
                    bytes[0] ^= 1;
                    Some(Reply::new(200, &[], bytes))
                }
                p if p == format!("blobs/{}", image.layers[0].0.digest) => {
                    let mut bytes = image.layers[0].1.clone();
                    *bytes.last_mut().unwrap() ^= 1;
                    Some(blob_reply(request, &bytes))
                }
                _ => {
                    let _ = content;
                    None
                }
            }
        })
    };
    let dir = work();
    let opts = options(dir.path());
    for reference in [reference(&server), format!("{}/{REPO}@{}", server.host(), image.manifest_digest)] {
        match pull(&reference, &opts) {
            Err(Error::DigestMismatch { what, .. }) => assert!(what.contains(REPO) && what.contains(&server.host()), "{what}"),
            other => panic!("{reference}: expected a digest mismatch, got {:?}", other.map(|p| p.digest)),
        }
    }
    let client = client(&server, &opts);
    let manifest = cache::manifest::parse_document(&image.manifest, None).unwrap();
    let cache::manifest::Document::Manifest(manifest) = manifest else {
        panic!()
    };
    match client.fetch_config(&manifest) {
        Err(Error::DigestMismatch { what, expected, .. }) => {
            assert!(what.contains(&image.config_digest.to_string()), "{what}");
            assert_eq!(expected, image.config_digest.to_string());
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(matches!(read_blob(&client, &image.layers[0].0), Err(Error::DigestMismatch { .. })));
}

#[test]
fn detects_wrong_blob_sizes() {
    let image = image();
    let (descriptor, bytes, path) = big_layer(&image);
    let mode = Arc::new(AtomicUsize::new(0));
    let server = {
        let (mode, path) = (mode.clone(), path.clone());
        serve(&image, move |request, _| {
            if request.path != path {
                return None;
            }
            let mut longer = bytes.clone();
            longer.extend_from_slice(b"0123456789");
            let shorter = bytes[..bytes.len() - 10].to_vec();
            Some(match mode.load(Ordering::SeqCst) {
                0 => Reply::new(200, &[], longer),
                1 => Reply::new(200, &[], shorter),
                2 => Reply::Full {
                    status: 200,
                    headers: vec![],
                    body: longer,
                    length: false,
                },
                _ => Reply::Full {
                    status: 200,
                    headers: vec![],
                    body: shorter,
                    length: false,
                },
            })
        })
    };
    let dir = work();
    let client = client(&server, &options(dir.path()));
    for declared in [0, 1] {
        mode.store(declared, Ordering::SeqCst);
        match open_error(&client, &descriptor) {
            Error::DigestMismatch { what, actual, .. } => {
                assert!(what.contains(&descriptor.digest.to_string()) && what.contains(REPO), "{what}");
                assert!(actual.contains("Content-Length"), "{actual}");
            }
            other => panic!("expected a size mismatch, got {other:?}"),
        }
    }
    // Without Content-Length: extra bytes are an error, never handed out.
    mode.store(2, Ordering::SeqCst);
    assert!(matches!(read_blob(&client, &descriptor), Err(Error::DigestMismatch { .. })));
    // A body that always ends early is an error after bounded retries, not EOF.
    mode.store(3, Ordering::SeqCst);
    let before = server.requests_to(&path).len();
    match read_blob(&client, &descriptor) {
        Err(Error::Registry { message, digest, .. }) => {
            assert!(message.contains("broke 4 times") && message.contains("closed early"), "{message}");
            assert_eq!(digest, Some(descriptor.digest.to_string()));
        }
        other => panic!("expected a registry error, got {other:?}"),
    }
    assert_eq!(server.requests_to(&path).len() - before, 4);
}

#[test]
fn redirects_keep_credentials_on_the_registry() {
    let image = image();
    let blobs: Vec<(Digest, Vec<u8>)> = image.blobs();
    let storage = Server::start(move |request| {
        let digest = request
            .path
            .strip_prefix("/storage/")
            .and_then(|p| p.split('?').next())
            .unwrap_or_default()
            .to_string();
        match blobs.iter().find(|(d, _)| d.to_string() == digest) {
            Some((_, bytes)) => blob_reply(request, bytes),
            None => Reply::new(404, &[], "no such object"),
        }
    });
    let password = "redirect-pa55";
    let expected = format!("Basic {}", STANDARD.encode(format!("someone:{password}")));
    let storage_host = storage.host();
    let config_digest = image.config_digest.to_string();
    let server = serve(&image, move |request, content| {
        if request.path == "/v2/" {
            return None;
        }
        if request.header("authorization") != Some(expected.as_str()) {
            return Some(Reply::new(401, &[("WWW-Authenticate", r#"Basic realm="fake""#)], "{}"));
        }
        if let Some(blob) = request.path.strip_prefix("/internal/") {
            return Some(blob_reply(request, &content.blobs[blob]));
        }
        let blob = request.path.strip_prefix(&format!("/v2/{REPO}/blobs/"))?;
        if blob == config_digest {
            // Same origin, relative Location: credentials follow.
            return Some(Reply::new(302, &[("Location", &format!("/internal/{blob}"))], ""));
        }
        // Another host (another port on 127.0.0.1): credentials must not.
        Some(Reply::new(
            307,
            &[("Location", &format!("http://{storage_host}/storage/{blob}?signature=abc"))],
            "",
        ))
    });
    let dir = work();
    let mut opts = options(dir.path());
    opts.auth = Some(Credentials::Basic {
        username: "someone".into(),
        password: password.into(),
    });
    let pulled = pull(&reference(&server), &opts).unwrap();
    assert_eq!(pulled.config, image.config);
    assert_eq!(storage.requests().len(), 2, "both layers came from storage");
    assert!(
        storage.requests().iter().all(|r| r.header("authorization").is_none()),
        "credentials leaked to the storage host"
    );
    let blob_requests = server.requests_to(&format!("/v2/{REPO}/blobs/"));
    assert!(!blob_requests.is_empty() && blob_requests.iter().all(|r| r.header("authorization").is_some()));
    let internal = server.requests_to("/internal/");
    assert_eq!(internal.len(), 1);
    assert!(
        internal[0].header("authorization").is_some(),
        "same-origin redirects keep credentials"
    );
}

#[test]
fn cancellation_aborts_requests_streams_and_backoff() {
    let image = image();
    let (descriptor, _, _) = big_layer(&image);
    let down = Arc::new(AtomicBool::new(false));
    let server = {
        let down = down.clone();
        serve(&image, move |request, _| {
            (down.load(Ordering::SeqCst) && request.path.contains("/manifests/")).then(|| Reply::new(503, &[], "down"))
        })
    };
    let dir = work();
    let cancel = Arc::new(AtomicBool::new(true));
    let mut opts = options(dir.path());
    opts.cancel = Some(cancel.clone());
    assert!(matches!(pull(&reference(&server), &opts), Err(Error::Aborted)));

    // Mid-stream: the first progress event of the big layer cancels.
    cancel.store(false, Ordering::SeqCst);
    let (flag, big) = (cancel.clone(), descriptor.digest.clone());
    opts.progress = Some(Arc::new(move |event: &DownloadEvent| {
        if matches!(event, DownloadEvent::Bytes { digest, .. } if *digest == big) {
            flag.store(true, Ordering::SeqCst);
        }
    }));
    let client = client(&server, &opts);
    assert!(matches!(read_blob(&client, &descriptor), Err(Error::Aborted)));

    // During a backoff pause: long delays, cancelled from another thread.
    cancel.store(false, Ordering::SeqCst);
    down.store(true, Ordering::SeqCst);
    opts.progress = None;
    opts.config.retry.initial_delay = Duration::from_secs(30);
    opts.config.retry.max_delay = Duration::from_secs(30);
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cancel.store(true, Ordering::SeqCst);
        })
    };
    let started = Instant::now();
    assert!(matches!(pull(&reference(&server), &opts), Err(Error::Aborted)));
    assert!(started.elapsed() < Duration::from_secs(5));
    canceller.join().unwrap();
}

#[test]
fn errors_never_repeat_secrets_a_server_echoes() {
    let password = "echo-Pa55word";
    let header = format!("Basic {}", STANDARD.encode(format!("echo:{password}")));
    let server = {
        let header = header.clone();
        serve(&image(), move |request, _| {
            if request.path == "/v2/" {
                return None;
            }
            if request.header("authorization").is_none() {
                return Some(Reply::new(401, &[("WWW-Authenticate", r#"Basic realm="echo""#)], "{}"));
            }
            let echoed = format!("you sent {header}, that is {password}");
            Some(Reply::error(
                if request.path.contains("/manifests/") { 500 } else { 400 },
                "ECHO",
                &echoed,
            ))
        })
    };
    let dir = work();
    let mut opts = options(dir.path());
    opts.auth = Some(Credentials::Basic {
        username: "echo".into(),
        password: password.into(),
    });
    let events = Events::default();
    events.attach(&mut opts);
    let error = pull(&reference(&server), &opts).err().expect("the server only fails");
    let mut texts = vec![format!("{error} {error:?}")];
    texts.extend(events.all().iter().map(|e| format!("{e:?}")));
    for text in &texts {
        assert!(!text.contains(password) && !text.contains(&header[6..]), "{text}");
    }
    assert!(texts[0].contains("ECHO") && texts[0].contains("***"), "{}", texts[0]);
}

#[test]
fn stalled_connections_time_out_and_retry() {
    let image = image();
    let (_, _, path) = big_layer(&image);
    let hits = AtomicUsize::new(0);
    let server = {
        let path = path.clone();
        serve(&image, move |request, _| {
            (request.path == path && next(&hits) == 0).then(|| Reply::Stall(Duration::from_secs(3)))
        })
    };
    let dir = work();
    let mut opts = options(dir.path());
    opts.config.timeout = Duration::from_millis(300);
    let events = Events::default();
    events.attach(&mut opts);
    let started = Instant::now();
    let pulled = pull(&reference(&server), &opts).unwrap();
    assert_eq!(pulled.layers[1], image.layers[1].1);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(server.requests_to(&path).len(), 2);
    assert_eq!(events.retries(), 1);
}

#[test]
fn failed_pulls_leave_the_cache_as_it_was_and_the_next_pull_succeeds() {
    let image = image();
    let (layer, bytes, layer_path) = big_layer(&image);
    let fault = Arc::new(AtomicUsize::new(0));
    let server = {
        let (fault, layer_path) = (fault.clone(), layer_path.clone());
        serve(&image, move |request, _| {
            if request.path != layer_path {
                return None;
            }
            match fault.load(Ordering::SeqCst) {
                // The layer's bytes are not the ones its digest names.
                1 => {
                    let mut wrong = bytes.clone();
                    let middle = wrong.len() / 2;
                    wrong[middle] ^= 0xff;
                    Some(blob_reply(request, &wrong))
                }
                // The body always breaks off halfway.
                2 => Some(Reply::Cut {
                    status: 200,
                    headers: vec![],
                    body: bytes[..bytes.len() / 2].to_vec(),
                    declared: bytes.len(),
                    reset: false,
                }),
                // Refused for good.
                3 => Some(Reply::error(403, "DENIED", "no")),
                _ => None,
            }
        })
    };
    let dir = work();
    let home = dir.path().join("cache");
    let cache = cache::Cache::open(&home).unwrap();
    let opts = options(dir.path());
    let quiet: cache::PullObserver = Arc::new(|_| {});
    let artifacts = |home: &std::path::Path| -> Vec<String> {
        ["blobs/sha256", "layers/sha256", "fsmeta/sha256", "vmdk/sha256", "tmp"]
            .iter()
            .flat_map(|d| {
                std::fs::read_dir(home.join(d))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            })
            .collect()
    };
    for (kind, expected) in [(1, "digest_mismatch"), (2, "registry"), (3, "authentication")] {
        fault.store(kind, Ordering::SeqCst);
        let err = cache
            .pull(&reference(&server), cache::PullPolicy::IfMissing, None, &opts, &quiet)
            .unwrap_err();
        assert_eq!(err.code(), expected, "fault {kind}: {err}");
        assert!(
            err.to_string().contains(&layer.digest.to_string()) || kind == 3,
            "fault {kind} names the layer: {err}"
        );
        assert!(cache.list().unwrap().is_empty(), "fault {kind} added to the index");
        assert_eq!(artifacts(&home), Vec::<String>::new(), "fault {kind} left files behind");
    }
    fault.store(0, Ordering::SeqCst);
    let pulled = cache
        .pull(&reference(&server), cache::PullPolicy::IfMissing, None, &opts, &quiet)
        .unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest_digest.to_string());
    let boot = cache.acquire(&reference(&server), "after-faults").unwrap();
    assert!(boot.vmdk.exists());
}

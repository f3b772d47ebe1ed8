//! Transient faults a real registry does not make on demand, from a
//! handcrafted HTTP server: broken and stalled streams (resumed with
//! `Range`), throttling and server errors (retried, boundedly),
//! cancellation. (Failed pulls through the whole cache: the cache crate's
//! `pull_faults` test.)

mod registry_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci::progress::Progress;
use registry::Error;
use registry_support::fake::Reply;
use registry_support::faulty::*;
use registry_support::{options, pull, read_blob, Events};

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
    opts.progress = Some(Arc::new(move |event: Progress| {
        if matches!(&event, Progress::Download { digest, .. } if *digest == big) {
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

//! Registries that stall, from the handcrafted server: one that accepts
//! and says nothing, one that stops inside its response headers, ones that
//! drip a manifest, a token, an error or a blob body a byte at a time. A
//! raised cancel flag (an `AbortSignal`, in the binding) ends each pull
//! with `Aborted` within 1 s; without one, a dripped document ends at the
//! per-request deadline. Each test prints the measured abort latency.
//! Also: `Retry-After` as an HTTP date, reported in the retry event.

mod registry_support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oci::progress::Progress;
use registry::Error;
use registry_support::fake::{Content, Reply, Request};
use registry_support::faulty::*;
use registry_support::{options, pull, run, Events};

/// When the flag is raised, as `AbortSignal.timeout(500)` would.
const SIGNAL_AFTER: Duration = Duration::from_millis(500);
/// Longest a stalled pull may take in all (500 ms, then at most 1 s).
const BOUND: Duration = Duration::from_millis(1500);
/// Long enough that only the abort can end the wait.
const FOREVER: Duration = Duration::from_secs(60);
const DRIP: Duration = Duration::from_millis(200);

fn drip(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    Reply::Drip {
        status,
        headers: vec![("Content-Type".into(), content_type.into())],
        body: body.into(),
        every: DRIP,
    }
}

/// Pulls from a registry answering as `fault` says, raising the cancel
/// flag after [`SIGNAL_AFTER`]: the pull must end `Aborted` within [`BOUND`].
fn aborts_in_time(kind: &str, fault: impl Fn(&Request, &Content) -> Option<Reply> + Send + Sync + 'static) {
    let image = image();
    let server = serve(&image, fault);
    let dir = work();
    let mut opts = options(dir.path());
    let cancel = Arc::new(AtomicBool::new(false));
    opts.cancel = Some(cancel.clone());
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(SIGNAL_AFTER);
        cancel.store(true, Ordering::SeqCst);
    });
    let started = Instant::now();
    let result = pull(&reference(&server), &opts);
    let elapsed = started.elapsed();
    raiser.join().unwrap();
    assert!(matches!(result, Err(Error::Aborted)), "{kind}: {:?}", result.map(|p| p.digest));
    assert!(elapsed < BOUND, "{kind}: the abort took {elapsed:?}");
    eprintln!("{kind}: aborted {:?} after the signal", elapsed.saturating_sub(SIGNAL_AFTER));
}

#[test]
fn a_registry_that_accepts_and_says_nothing() {
    aborts_in_time("silent after accept", |r, _| (r.path == "/v2/").then_some(Reply::Stall(FOREVER)));
}

#[test]
fn a_registry_that_stops_inside_its_headers() {
    aborts_in_time("stopped inside the headers", |r, _| {
        r.path.contains("/manifests/").then(|| {
            let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Le".to_vec();
            Reply::Partial(head, FOREVER)
        })
    });
}

#[test]
fn a_registry_that_drips_a_manifest() {
    aborts_in_time("dripped manifest", |r, _| {
        r.path
            .contains("/manifests/")
            .then(|| drip(200, oci::manifest::OCI_MANIFEST, vec![b' '; 4096]))
    });
}

#[test]
fn a_registry_that_drips_an_error() {
    aborts_in_time("dripped error body", |r, _| {
        let body = format!(r#"{{"errors":[{{"code":"MANIFEST_UNKNOWN","message":"{}"}}]}}"#, "x".repeat(4096));
        r.path.contains("/manifests/").then(|| drip(404, "application/json", body))
    });
}

#[test]
fn a_token_service_that_drips_its_token() {
    aborts_in_time("dripped token", |r, _| {
        let host = r.header("host").unwrap_or_default().to_string();
        if r.path.starts_with("/token") {
            return Some(drip(200, "application/json", format!(r#"{{"token":"{}"}}"#, "t".repeat(4096))));
        }
        let bearer = format!(r#"Bearer realm="http://{host}/token",service="fake""#);
        (!r.header("authorization").is_some_and(|a| a.starts_with("Bearer ")))
            .then(|| Reply::new(401, &[("WWW-Authenticate", &bearer)], "{}"))
    });
}

#[test]
fn a_registry_that_drips_a_blob() {
    aborts_in_time("dripped blob", |r, content| {
        let digest = r.path.rsplit_once("/blobs/")?.1;
        content
            .blobs
            .get(digest)
            .map(|bytes| drip(200, "application/octet-stream", bytes.clone()))
    });
}

#[test]
fn without_a_signal_a_dripped_manifest_ends_at_the_deadline() {
    let image = image();
    let server = serve(&image, |r, _| {
        r.path
            .contains("/manifests/")
            .then(|| drip(200, oci::manifest::OCI_MANIFEST, vec![b' '; 4096]))
    });
    let dir = work();
    let mut opts = options(dir.path());
    opts.config.deadline = Duration::from_secs(1);
    let started = Instant::now();
    match pull(&reference(&server), &opts) {
        Err(Error::Registry { message, .. }) => assert!(message.contains("deadline"), "{message}"),
        other => panic!("expected a registry error, got {:?}", other.map(|p| p.digest)),
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(
        server.requests_to(&format!("/v2/{REPO}/manifests/")).len(),
        1,
        "a dripping server is not asked again"
    );
}

/// `at` as an IMF-fixdate, by `date` (coreutils).
fn http_date(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut date = Command::new("date");
    date.env("LC_ALL", "C")
        .args(["-u", "-d", &format!("@{seconds}"), "+%a, %d %b %Y %H:%M:%S GMT"]);
    run(&mut date).trim().to_string()
}

#[test]
fn retry_after_as_a_date_is_waited_and_reported() {
    let image = image();
    let hits = AtomicUsize::new(0);
    let server = serve(&image, move |r, _| {
        if !r.path.contains("/manifests/") || next(&hits) > 0 {
            return None;
        }
        let date = http_date(SystemTime::now() + Duration::from_secs(2));
        Some(Reply::new(429, &[("Retry-After", &date)], "slow down"))
    });
    let dir = work();
    let mut opts = options(dir.path());
    opts.config.retry.max_delay = Duration::from_secs(5);
    let events = Events::default();
    events.attach(&mut opts);
    let started = Instant::now();
    pull(&reference(&server), &opts).unwrap();
    let waits: Vec<Duration> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Progress::Retry { wait, .. } => Some(wait),
            _ => None,
        })
        .collect();
    // Whole seconds: the date names a moment between 1 and 2 s away.
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(
        waits[0] > Duration::from_millis(900) && waits[0] <= Duration::from_secs(2),
        "{waits:?}"
    );
    assert!(started.elapsed() >= waits[0]);

    // Capped as the seconds form is.
    let capped = serve(&image, |r, _| {
        let date = http_date(SystemTime::now() + Duration::from_secs(3600));
        (r.path.contains("/manifests/") && !r.path.contains("sha256")).then(|| Reply::new(503, &[("Retry-After", &date)], "later"))
    });
    let events = Events::default();
    let mut opts = options(dir.path());
    opts.config.retry.attempts = 2;
    events.attach(&mut opts);
    assert!(pull(&reference(&capped), &opts).is_err());
    let capped_waits: Vec<Duration> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Progress::Retry { wait, .. } => Some(wait),
            _ => None,
        })
        .collect();
    assert_eq!(capped_waits, [opts.config.retry.max_delay]);
}

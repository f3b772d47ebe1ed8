//! Permanent refusals a real registry does not make on demand, from a
//! handcrafted HTTP server: errors not retried, bad manifests, wrong
//! digests and sizes, redirects to other hosts, and secrets echoed back by
//! a hostile server.

mod registry_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use oci::digest::Digest;
use oci::manifest::OCI_MANIFEST;
use registry::Credentials;
use registry::Error;
use registry_support::fake::{blob_reply, Reply, Server};
use registry_support::faulty::*;
use registry_support::image::{self};
use registry_support::{options, pull, read_blob, secrets, Events};

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
    let manifest = oci::manifest::parse_document(&image.manifest, None).unwrap();
    let oci::manifest::Document::Manifest(manifest) = manifest else {
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
    secrets::register_basic("someone", password);
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
fn errors_never_repeat_secrets_a_server_echoes() {
    let password = "echo-Pa55word";
    secrets::register_basic("echo", password);
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
fn the_secret_check_fails_on_a_registered_secret_and_names_only_where() {
    let password = "caught-Pa55word";
    secrets::register_basic("someone", password);
    secrets::check("this test", "clean text", "no credentials here");
    let header = format!("Basic {}", STANDARD.encode(format!("someone:{password}")));
    let caught = std::panic::catch_unwind(|| secrets::check("this test", "a message", &format!("sent {header}")));
    let message = *caught.expect_err("the check panics").downcast::<String>().unwrap();
    assert!(
        message.starts_with("this test: a message holds secret registered at #"),
        "{message}"
    );
    assert!(!message.contains(password) && !message.contains(&header[6..]), "{message}");
}

//! Mutual TLS against a real registry (CNCF distribution with
//! `http.tls.clientcas`): refused without a client certificate, served
//! with the per-host certificate and key `registries.json` names, and
//! refused again when the file names them for another host only.

mod registry_support;

use std::time::{Duration, Instant};

use registry::{Error, PullOptions, RegistryConfig};
use registry_support::distribution::{push_image, Push, Registry, Setup};
use registry_support::image;
use registry_support::tls::{certs, client_certs};
use registry_support::{options, pull};
use serde_json::json;

#[test]
fn a_client_certificate_per_host_from_registries_json() {
    let work = tempfile::tempdir().unwrap();
    let server = certs(work.path(), "mtls");
    let client = client_certs(work.path(), "mtls", &server.ca);
    let registry = Registry::start(Setup {
        tls: Some((server.server_cert.clone(), server.server_key.clone())),
        client_ca: Some(client.ca.clone()),
        ..Setup::default()
    });
    let image = image::simple("amd64", 9);
    let reference = format!("{}/mutual/app:v1", registry.host());
    let push = Push {
        cert_dir: Some(&client.cert_dir),
        ..Push::default()
    };
    push_image(work.path(), &image, &reference, push);

    let settings = work.path().join("registries.json");
    let with_file = |host: &str| -> PullOptions {
        let entry = json!({"caBundles": [server.ca], "clientCertificate": client.cert, "clientKey": client.key});
        std::fs::write(&settings, json!({"registries": {host: entry}}).to_string()).unwrap();
        let mut opts = options(work.path());
        opts.config = RegistryConfig::from_file(&settings).unwrap().extended_by(&opts.config);
        opts
    };

    // The CA alone: the registry refuses the handshake, at once.
    let mut opts = options(work.path());
    opts.config.ca_bundles = vec![server.ca.clone()];
    let started = Instant::now();
    match pull(&reference, &opts) {
        Err(Error::Registry {
            registry: r,
            status: None,
            message,
            ..
        }) => {
            assert_eq!(r, registry.host());
            assert!(message.contains("may want a client certificate"), "{message}");
        }
        other => panic!("expected a TLS refusal, got {:?}", other.map(|p| p.digest)),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "handshake refusals are not retried");

    assert_eq!(
        pull(&reference, &with_file(&registry.host())).unwrap().digest,
        image.manifest_digest
    );
    // By host, for any port, too.
    assert_eq!(pull(&reference, &with_file("127.0.0.1")).unwrap().digest, image.manifest_digest);
    // Another host's certificate is not offered here.
    let mut opts = with_file("other.example");
    opts.config.ca_bundles = vec![server.ca.clone()];
    assert!(matches!(pull(&reference, &opts), Err(Error::Registry { status: None, .. })));
}

//! A pull that fails (corrupt layer, broken stream, refusal) leaves the
//! cache exactly as it was, and the next pull succeeds: the engine over a
//! faulty registry on 127.0.0.1 (the registry crate's test support).

#[path = "../../registry/tests/registry_support/mod.rs"]
mod registry_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cache::{PullPolicy, PullRequest};
use registry_support::fake::{blob_reply, Reply};
use registry_support::faulty::*;
use registry_support::options;

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
    let quiet = oci::progress::ignore();
    let request = PullRequest {
        policy: PullPolicy::IfMissing,
        platform: None,
        options: &opts,
        progress: &quiet,
    };
    let artifacts = |home: &std::path::Path| -> Vec<String> {
        ["layers/sha256", "fsmeta/sha256", "vmdk/sha256", "tmp"]
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
        let err = cache.pull(&reference(&server), &request).unwrap_err();
        assert_eq!(err.code(), expected, "fault {kind}: {err}");
        assert!(
            err.to_string().contains(&layer.digest.to_string()) || kind == 3,
            "fault {kind} names the layer: {err}"
        );
        assert!(cache.list().unwrap().is_empty(), "fault {kind} added to the index");
        assert_eq!(artifacts(&home), Vec::<String>::new(), "fault {kind} left files behind");
    }
    fault.store(0, Ordering::SeqCst);
    let pulled = cache.pull(&reference(&server), &request).unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest_digest);
    let boot = cache.acquire(&reference(&server), "after-faults").unwrap();
    assert!(boot.vmdk.exists());
}

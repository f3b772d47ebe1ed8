//! Every input the fuzz targets (fuzz/, bench/fuzz.sh) ever found
//! crashing, hanging or running out of memory is kept in
//! tests/fuzz/TARGET/ and replayed here through the same target bodies
//! (tests/common/targets.rs), each with a deadline, so a fixed finding
//! stays fixed.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::targets;

/// A fuzz target's body.
type Target = fn(&[u8]);

/// Runs `target` on every file of tests/fuzz/`name`; each must finish,
/// without panicking, within a minute.
fn replay(name: &str, target: Target) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz").join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            target(&data);
            tx.send(()).unwrap();
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => count += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("{} hangs", path.display()),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{} panics", path.display()),
        }
    }
    count
}

#[test]
fn every_finding_stays_fixed() {
    let targets: [(&str, Target); 4] = [
        ("tar_reader", targets::tar_reader),
        ("framing_decode", targets::framing_decode),
        ("erofs_reader", targets::erofs_reader),
        ("layer_roundtrip", targets::layer_roundtrip),
    ];
    let replayed: usize = targets.iter().map(|&(name, target)| replay(name, target)).sum();
    assert!(replayed > 0, "no findings found under tests/fuzz");
}

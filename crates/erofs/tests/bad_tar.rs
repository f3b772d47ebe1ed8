//! Malformed or hostile archives get the right error, never a panic.
#![cfg(target_os = "linux")]

mod common;

use std::fs::File;
use std::io::Read;

use common::*;
use erofs::Error;

fn build(tar: &[u8]) -> Result<erofs::LayerSummary, Error> {
    let t = tempfile::tempdir().unwrap();
    build_layer_bytes(tar, &t.path().join("img"))
}

fn valid() -> Vec<u8> {
    ustar(&[Member::dir("a/"), Member::file("a/f", &[7u8; 3000]), Member::file("b", b"bee")])
}

#[test]
fn error_is_send_sync_static() {
    fn check<T: Send + Sync + 'static + std::error::Error>() {}
    check::<Error>();
}

#[test]
fn valid_archive_builds() {
    build(&valid()).unwrap();
}

#[test]
fn truncated_archives_are_invalid() {
    let tar = valid();
    // Inside file data, inside a header, and right after a header.
    for cut in [512 * 2 + 100, 512 + 200, 512 * 2] {
        let err = build(&tar[..cut]).unwrap_err();
        assert!(matches!(err, Error::InvalidTar { .. }), "cut at {cut}: {err:?}");
    }
}

#[test]
fn clean_end_without_zero_blocks_is_accepted() {
    let tar = valid();
    // Header + data blocks of all three members, no end-of-archive blocks.
    let end = 512 + 512 + 3072 + 512 + 512;
    build(&tar[..end]).unwrap();
}

#[test]
fn wrong_checksum_is_invalid() {
    let mut tar = valid();
    tar[512] ^= 1; // name of the second header
    assert!(matches!(build(&tar), Err(Error::InvalidTar { offset: 512, .. })));
}

#[test]
fn bad_numeric_field_is_invalid() {
    let mut tar = valid();
    tar[124..135].copy_from_slice(b"000000009x0");
    fix_checksum(&mut tar[..512]);
    assert!(matches!(build(&tar), Err(Error::InvalidTar { .. })));
}

#[test]
fn absurd_size_is_invalid() {
    let mut tar = valid();
    // Base-256 size of 2^80 bytes.
    let mut size = [0u8; 12];
    size[0] = 0x80;
    size[1] = 1;
    tar[512 + 124..512 + 136].copy_from_slice(&size);
    fix_checksum(&mut tar[512..1024]);
    assert!(matches!(build(&tar), Err(Error::InvalidTar { .. })));
}

#[test]
fn file_larger_than_the_format_is_too_large() {
    // 2^50 bytes fits a tar size field but not 2^32 blocks of 4 KiB.
    let mut h = ustar_header(&Member::file("huge", b""), 0);
    let mut size = [0u8; 12];
    size[0] = 0x80;
    size[5] = 4; // 2^50
    h[124..136].copy_from_slice(&size);
    fix_checksum(&mut h);
    assert!(matches!(build(&h), Err(Error::TooLarge { .. })));
}

#[test]
fn path_traversal_is_unsafe() {
    for name in ["../x", "a/../../x", "a/b/../c", "/../etc/passwd"] {
        let tar = ustar(&[Member::file(name, b"evil")]);
        let err = build(&tar).unwrap_err();
        assert!(matches!(err, Error::UnsafePath { .. }), "{name}: {err:?}");
    }
}

#[test]
fn hardlinks_must_point_at_earlier_entries() {
    let missing = ustar(&[Member::hardlink("l", "nowhere")]);
    assert!(matches!(build(&missing), Err(Error::UnsafePath { .. })));
    let later = ustar(&[Member::hardlink("l", "f"), Member::file("f", b"x")]);
    assert!(matches!(build(&later), Err(Error::UnsafePath { .. })));
    let escaping = ustar(&[Member::file("f", b"x"), Member::hardlink("l", "../f")]);
    assert!(matches!(build(&escaping), Err(Error::UnsafePath { .. })));
    let to_dir = ustar(&[Member::dir("d/"), Member::hardlink("l", "d")]);
    assert!(matches!(build(&to_dir), Err(Error::UnsafePath { .. })));
    let fine = ustar(&[Member::file("f", b"x"), Member::hardlink("./l", "/f")]);
    build(&fine).unwrap();
}

#[test]
fn whole_stream_is_read_including_trailing_bytes() {
    struct Counting<'a>(&'a [u8], usize);
    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (self.0.len() - self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }
    let mut tar = valid();
    tar.extend_from_slice(&[0u8; 10_000]);
    tar.extend_from_slice(b"trailing garbage");
    let t = tempfile::tempdir().unwrap();
    let mut r = Counting(&tar, 0);
    let img = t.path().join("img");
    let mut framing = Vec::new();
    erofs::build_layer(std::io::BufReader::new(&mut r), &File::create(&img).unwrap(), &mut framing).unwrap();
    assert_eq!(r.1, tar.len());
    assert_rebuilds(&img, &framing, &tar[..], tar.len() as u64);
}

//! Layer images built from GNU tar archives must hold exactly what the
//! archive holds: checked with `fsck.erofs --extract` (erofs-utils 1.5),
//! `dump.erofs`, and a kernel mount, against GNU tar's own extraction.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;

/// Sets mtimes (with nanoseconds) bottom-up, symlinks included.
fn set_times(root: &Path) {
    run(Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import os, sys
root = os.fsencode(sys.argv[1])
i = 0
for dirpath, dirs, files in os.walk(root, topdown=False):
    for n in files + dirs:
        i += 1
        t = 1_600_000_000_000_000_000 + i * 1_000_000_123
        os.utime(os.path.join(dirpath, n), ns=(t, t), follow_symlinks=False)
"#,
        )
        .arg(root));
}

fn mknod(path: &Path, kind: &str, major: u32, minor: u32) {
    run(Command::new("mknod")
        .arg(path)
        .arg(kind)
        .arg(major.to_string())
        .arg(minor.to_string()));
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with every kind of entry a tar can carry.
fn rich_tree(src: &Path, with_xattrs: bool) {
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("empty-file"), b"").unwrap();
    fs::write(src.join("tiny"), b"hello").unwrap();
    fs::write(src.join("a/one-block"), noise(4096, 1)).unwrap();
    fs::write(src.join("a/b/block-plus-one"), noise(4097, 2)).unwrap();
    fs::write(src.join("a/b/c/mib"), noise((1 << 20) + 123, 3)).unwrap();
    fs::write(src.join("suid"), b"#!/bin/sh\n").unwrap();
    chmod(&src.join("suid"), 0o4755);
    fs::write(src.join("sgid"), b"x").unwrap();
    chmod(&src.join("sgid"), 0o2711);
    fs::write(src.join("private"), b"secret").unwrap();
    chmod(&src.join("private"), 0o600);
    fs::create_dir(src.join("sticky")).unwrap();
    chmod(&src.join("sticky"), 0o1777);
    fs::create_dir(src.join("setgid-dir")).unwrap();
    chmod(&src.join("setgid-dir"), 0o2775);
    fs::write(src.join("big-ids"), b"ids").unwrap();
    chown(&src.join("big-ids"), 70000, 80000);
    fs::write(src.join("huge-ids"), b"ids").unwrap();
    chown(&src.join("huge-ids"), 3_000_000, 4_000_000);
    chown(&src.join("a/b"), 65536, 65537);
    // Hardlinks: three names for one inode.
    fs::write(src.join("h1"), b"linked data").unwrap();
    fs::hard_link(src.join("h1"), src.join("h2")).unwrap();
    fs::hard_link(src.join("h1"), src.join("a/h3")).unwrap();
    // Symlinks, including a 4095-byte target.
    symlink("tiny", src.join("link-rel")).unwrap();
    symlink("/etc/passwd", src.join("link-abs")).unwrap();
    symlink("../../nowhere", src.join("a/link-dangling")).unwrap();
    let long_target: String = (0..4095).map(|i| if i % 50 == 49 { '/' } else { 'x' }).collect();
    symlink(&long_target, src.join("link-4095")).unwrap();
    let mid_target: String = "y".repeat(3000);
    symlink(&mid_target, src.join("link-3000")).unwrap();
    // Devices and fifo.
    mknod(&src.join("null"), "c", 1, 3);
    mknod(&src.join("sda1"), "b", 8, 1);
    mknod(&src.join("bigminor"), "c", 259, 70000);
    run(Command::new("mkfifo").arg(src.join("fifo")));
    // Names: 255 bytes, not UTF-8, long paths (GNU long names / pax path).
    fs::write(src.join("n".repeat(255)), b"long name").unwrap();
    let latin1 = src.join(os(b"caf\xe9"));
    fs::create_dir(&latin1).unwrap();
    fs::write(latin1.join(os(b"\xff\xfe-file")), b"bytes").unwrap();
    let deep = src.join("d".repeat(200)).join("e".repeat(200));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f".repeat(150)), b"deep").unwrap();
    symlink("t".repeat(150), deep.join("long-link-name")).unwrap();
    fs::hard_link(deep.join("f".repeat(150)), src.join("hard-to-deep")).unwrap();
    if with_xattrs {
        set_xattr(&src.join("tiny"), "user.comment", b"a value");
        set_xattr(&src.join("tiny"), "user.binary", &[0, 1, 2, 255, b'\n']);
        set_xattr(
            &src.join("suid"),
            "security.capability",
            &[1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        set_xattr(&src.join("a"), "trusted.dir-attr", b"on a directory");
        set_xattr(&src.join("empty-file"), "user.empty", b"");
        set_xattr(&src.join("h1"), "user.shared", b"all names see this");
    }
    set_times(src);
}

fn check_format(tar_args: &[&str], with_xattrs: bool) {
    let t = tempfile::tempdir().unwrap();
    let (src, tar, img) = (t.path().join("src"), t.path().join("l.tar"), t.path().join("l.erofs"));
    fs::create_dir(&src).unwrap();
    rich_tree(&src, with_xattrs);
    make_tar(&src, &tar, tar_args);
    let reference = t.path().join("ref");
    extract_tar(&tar, &reference);
    let expected = snapshot(&reference);

    let summary = build_layer_file(&tar, &img).unwrap();
    assert_eq!(summary.size_bytes, fs::metadata(&img).unwrap().len());
    assert_eq!(summary.size_bytes % erofs::BLOCK_SIZE, 0);
    assert_eq!(
        summary.inodes,
        expected.values().map(|n| n.ino).collect::<std::collections::BTreeSet<_>>().len() as u64 + 1
    );

    // erofs-utils 1.5: copies hardlinks and drops setuid/setgid and xattrs.
    let out = t.path().join("fsck");
    fsck_extract(&img, &[], &out);
    assert_same(
        &expected,
        &snapshot(&out),
        Compare {
            links: false,
            ignore_suid: true,
        },
    );

    // dump.erofs sees link counts and owners (it prints only the low
    // 9 mode bits, so setuid is checked through the kernel below).
    let d = dump_path(&img, "/h1");
    assert!(d.contains("Links: 3"), "{d}");
    let d = dump_path(&img, "/huge-ids");
    assert!(d.contains("Uid: 3000000   Gid: 4000000"), "{d}");

    // The kernel sees everything.
    let mnt = Mount::new(&img, &t.path().join("mnt"));
    assert_same(
        &expected,
        &snapshot(&mnt.dir),
        Compare {
            links: true,
            ignore_suid: false,
        },
    );
    assert_eq!(xattrs(&reference), xattrs(&mnt.dir));
    if with_xattrs {
        // Six attributes, one of them on an inode with three names.
        assert_eq!(xattrs(&mnt.dir).len(), 8);
    }
    let mib = b"a/b/c/mib";
    assert!(fs::read(reference.join(os(mib))).unwrap() == fs::read(mnt.dir.join(os(mib))).unwrap());
}

#[test]
fn gnu_format_round_trips() {
    check_format(&["--format=gnu"], false);
}

#[test]
fn posix_format_with_xattrs_round_trips() {
    check_format(&["--format=posix", "--xattrs", "--xattrs-include=*"], true);
}

#[test]
fn directory_with_100k_entries() {
    let t = tempfile::tempdir().unwrap();
    let (src, tar, img) = (t.path().join("src"), t.path().join("l.tar"), t.path().join("l.erofs"));
    fs::create_dir_all(src.join("big")).unwrap();
    run(Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import os, sys
d = sys.argv[1]
for i in range(100000):
    name = "f%06d" % i if i % 3 else ("%d-" % i) * (1 + i % 7)
    open(os.path.join(d, name), "w").close()
"#,
        )
        .arg(src.join("big")));
    make_tar(&src, &tar, &["--format=gnu"]);
    let reference = t.path().join("ref");
    extract_tar(&tar, &reference);
    let expected = snapshot(&reference);
    assert_eq!(expected.len(), 100_001);
    build_layer_file(&tar, &img).unwrap();

    let out = t.path().join("fsck");
    fsck_extract(&img, &[], &out);
    assert_same(
        &expected,
        &snapshot(&out),
        Compare {
            links: false,
            ignore_suid: false,
        },
    );
    // Every name is looked up through the kernel's binary search.
    let mnt = Mount::new(&img, &t.path().join("mnt"));
    assert_same(
        &expected,
        &snapshot(&mnt.dir),
        Compare {
            links: true,
            ignore_suid: false,
        },
    );
    assert!(!mnt.dir.join("big/f000000").exists(), "f000000 is not created (i % 3 == 0)");
    assert!(mnt.dir.join("big/f099998").exists());
}

/// Builds a sparse file: `size` bytes with data at `(offset, len)` pieces.
fn sparse_file(path: &Path, size: u64, pieces: &[(u64, usize)]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (i, &(off, len)) in pieces.iter().enumerate() {
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(&noise(len, 100 + i as u64)).unwrap();
    }
}

fn check_sparse(tar_args: &[&str], size: u64, pieces: &[(u64, usize)]) {
    let t = tempfile::tempdir().unwrap();
    let (src, tar, img) = (t.path().join("src"), t.path().join("l.tar"), t.path().join("l.erofs"));
    fs::create_dir(&src).unwrap();
    sparse_file(&src.join("sparse"), size, pieces);
    sparse_file(&src.join("all-hole"), 10 << 20, &[]);
    sparse_file(&src.join("dense"), 3 * 4096 + 5, &[(0, 3 * 4096 + 5)]);
    make_tar(&src, &tar, tar_args);
    let reference = t.path().join("ref");
    extract_tar(&tar, &reference);
    let summary = build_layer_file(&tar, &img).unwrap();
    let stored: u64 = pieces.iter().map(|p| p.1 as u64).sum();
    assert!(
        summary.size_bytes < stored + (8 << 20),
        "holes must not be stored: image is {} bytes for {stored} bytes of data",
        summary.size_bytes
    );
    // fsck.erofs 1.5 checks the structure; its --extract writes holes
    // wrongly (it skips unmapped chunks without seeking), so contents are
    // compared through the kernel instead.
    require_tool("fsck.erofs");
    run(Command::new("fsck.erofs").arg(&img));
    let mnt = Mount::new(&img, &t.path().join("mnt"));
    assert_same(
        &snapshot(&reference),
        &snapshot(&mnt.dir),
        Compare {
            links: true,
            ignore_suid: false,
        },
    );
    for name in ["sparse", "all-hole", "dense"] {
        assert_same_bytes(&reference.join(name), &mnt.dir.join(name));
    }
}

const SMALL_PIECES: &[(u64, usize)] = &[(0, 10), (5000, 100), (1 << 20, 70000), ((8 << 20) - 3, 3)];

#[test]
fn sparse_gnu_old_format() {
    check_sparse(&["--format=gnu", "--sparse"], 8 << 20, SMALL_PIECES);
}

#[test]
fn sparse_pax_0_0() {
    check_sparse(&["--format=posix", "--sparse", "--sparse-version=0.0"], 8 << 20, SMALL_PIECES);
}

#[test]
fn sparse_pax_0_1() {
    check_sparse(&["--format=posix", "--sparse", "--sparse-version=0.1"], 8 << 20, SMALL_PIECES);
}

#[test]
fn sparse_pax_1_0() {
    check_sparse(&["--format=posix", "--sparse", "--sparse-version=1.0"], 8 << 20, SMALL_PIECES);
}

#[test]
fn sparse_multi_gib() {
    let gib = 1u64 << 30;
    check_sparse(
        &["--format=posix", "--sparse"],
        5 * gib + 17,
        &[(0, 4096), (gib + 12345, 100_000), (3 * gib, 1 << 20), (5 * gib + 17 - 4000, 4000)],
    );
}

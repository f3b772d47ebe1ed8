//! Tar framing: `write_tar(image, framing)` must give back the exact tar
//! `build_layer` read (same bytes, so the same diff_id), for archives of
//! every shape, and refuse damaged framing without panicking.
//!
//! Every other test that builds a layer through `common` checks the
//! round trip too; this file adds the odd shapes and the failure cases.
#![cfg(target_os = "linux")]

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use erofs::Error;

/// Builds a layer from `tar`, asserts the round trip, and returns the
/// directory, the image path and the framing.
fn round_trip(tar: &[u8]) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    let mut framing = Vec::new();
    erofs::build_layer(tar, &File::create(&img).unwrap(), &mut framing).unwrap();
    assert_rebuilds(&img, &framing, tar, tar.len() as u64);
    (t, img, framing)
}

/// Rebuilds the tar; a refused framing must have written nothing.
fn rebuild(img: &Path, framing: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    match erofs::write_tar(&File::open(img).unwrap(), framing, &mut out) {
        Ok(n) => {
            assert_eq!(n, out.len() as u64);
            Ok(out)
        }
        Err(e) => {
            assert!(out.is_empty(), "refused framing wrote {} bytes first", out.len());
            Err(e)
        }
    }
}

fn member<'a>(name: &'a str, typeflag: u8, link: &'a str, data: &'a [u8]) -> Member<'a> {
    Member {
        name: name.as_bytes(),
        typeflag,
        link: link.as_bytes(),
        mode: 0o644,
        data,
    }
}

/// A GNU long name ('L') or long link ('K') member for the next entry.
fn gnu_long(typeflag: u8, value: &str) -> Vec<u8> {
    let body = [value.as_bytes(), b"\0"].concat();
    ustar_members(&[member("././@LongLink", typeflag, "", &body)])
}

/// A global ('g') pax header.
fn global_pax(records: &[String]) -> Vec<u8> {
    let mut g = pax_header(records);
    g[156] = b'g';
    fix_checksum(&mut g[..512]);
    g
}

/// Files of sizes around tar blocks, image blocks and the copy buffer.
fn sized_files() -> Vec<u8> {
    let sizes = [0usize, 1, 511, 512, 513, 4095, 4096, 4097, 8192, 1 << 20, (1 << 20) + 1];
    let data: Vec<Vec<u8>> = sizes.iter().map(|&n| noise(n, n as u64)).collect();
    let names: Vec<String> = sizes.iter().map(|n| format!("sizes/f{n}")).collect();
    let members: Vec<Member> = names.iter().zip(&data).map(|(n, d)| Member::file(n, d)).collect();
    ustar(&members)
}

#[test]
fn files_around_block_boundaries_round_trip() {
    round_trip(&sized_files());
}

#[test]
fn every_entry_kind_round_trips() {
    let tar = ustar(&[
        Member::dir("./"),
        Member::dir("d/"),
        Member::file("d/f", b"content"),
        Member::file("d/empty", b""),
        Member::hardlink("d/hard", "d/f"),
        member("d/sym", b'2', "f", b""),
        member("d/null", b'3', "", b""),
        member("d/sda", b'4', "", b""),
        member("d/fifo", b'6', "", b""),
        member("d/contiguous", b'7', "", b"type 7 is a regular file"),
        member("d/old-style", 0, "", b"NUL typeflag"),
    ]);
    round_trip(&tar);
}

#[test]
fn skipped_entry_data_round_trips() {
    // Data the image does not keep: a whiteout, a hardlink and a GNU
    // dumpdir with bodies, and a volume label with data.
    let tar = ustar(&[
        member("VOLUME", b'V', "", b"volume label data"),
        Member::file("f", b"kept"),
        member("hard", b'1', "f", b"hardlink body"),
        Member::file("etc/.wh.gone", b"whiteout with a body"),
        Member::file("etc/.wh..wh..opq", b"opaque marker body"),
        Member::file("etc/.wh..wh.plnk", b"plink"),
        member("dumpdir/", b'D', "", b"Yfile\0Nother\0\0"),
    ]);
    round_trip(&tar);
}

#[test]
fn whiteouts_round_trip() {
    let tar = ustar(&[
        Member::file("etc/.wh.passwd", b""),
        Member::file("var/cache/.wh..wh..opq", b""),
        Member::file("d", b"a file"),
        Member::file("d/.wh.child", b""),
        Member::dir("etc/"),
    ]);
    round_trip(&tar);
}

#[test]
fn same_path_written_three_times_round_trips() {
    // The image keeps all three data copies; the framing points at each.
    let tar = ustar(&[
        Member::file("x", &[1u8; 5000]),
        Member::file("x", b"second"),
        Member::file("x", &[3u8; 9000]),
    ]);
    round_trip(&tar);
}

#[test]
fn archive_endings_round_trip() {
    let body = ustar_members(&[Member::dir("a/"), Member::file("a/f", &[7u8; 3000]), Member::file("b", b"bee")]);
    // No end-of-archive blocks at all.
    round_trip(&body);
    // Two zero blocks, then zeros up to a 10240-byte record (GNU tar's
    // default blocking).
    let mut blocked = body.clone();
    blocked.resize((blocked.len() + 1024).next_multiple_of(10240), 0);
    round_trip(&blocked);
    // Trailing garbage: zeros, text, and 200 KB of noise (several
    // maximal literal records).
    let mut garbage = ustar(&[Member::file("f", b"x")]);
    garbage.extend_from_slice(&[0u8; 10_000]);
    garbage.extend_from_slice(b"trailing garbage");
    garbage.extend(noise(200_000, 9));
    round_trip(&garbage);
    // Only end-of-archive blocks, and nothing at all.
    round_trip(&[0u8; 1024]);
    round_trip(&[]);
}

/// Local pax headers with paths, ids and xattrs round-trip in
/// conversion.rs (every build there checks it); these are the records
/// the image keeps nothing of.
#[test]
fn pax_extensions_round_trip() {
    // An ignored record larger than one literal record.
    let mut tar = pax_header(&[format!("comment={}", "c".repeat(100_000))]);
    tar.extend(ustar_members(&[Member::file("commented", &noise(70_000, 4))]));
    tar.extend(global_pax(&["uid=777".into(), "SCHILY.xattr.user.g=global".into()]));
    tar.extend(ustar_members(&[Member::file("global", b"g")]));
    tar.extend(pax_header(&["uid=".into()]));
    tar.extend(ustar(&[Member::file("cancelled", b"")]));
    round_trip(&tar);
}

#[test]
fn gnu_long_names_round_trip() {
    let name = "n".repeat(150) + "/" + &"m".repeat(150);
    let target = "t/".repeat(150);
    let mut tar = gnu_long(b'L', &name);
    tar.extend(gnu_long(b'K', &target));
    tar.extend(ustar_members(&[member("ignored", b'2', "ignored", b"")]));
    tar.extend(gnu_long(b'L', "x/".repeat(300).as_str()));
    tar.extend(ustar(&[Member::file("ignored-too", &noise(513, 5))]));
    round_trip(&tar);
}

#[test]
fn hand_made_sparse_formats_round_trip() {
    let data = [[1u8; 4096], [2u8; 4096]].concat();
    let size = 1_000_000u64;
    let far = size - 4096;
    // PAX 0.1.
    let mut tar = pax_header(&[
        format!("GNU.sparse.size={size}"),
        format!("GNU.sparse.map=0,4096,{far},4096"),
        "GNU.sparse.name=sparse-01".into(),
    ]);
    tar.extend(ustar_members(&[Member::file("GNUSparseFile.0/sparse-01", &data)]));
    // PAX 0.0.
    tar.extend(pax_header(&[
        format!("GNU.sparse.size={size}"),
        "GNU.sparse.numblocks=2".into(),
        "GNU.sparse.offset=0".into(),
        "GNU.sparse.numbytes=4096".into(),
        format!("GNU.sparse.offset={far}"),
        "GNU.sparse.numbytes=4096".into(),
        "GNU.sparse.name=sparse-00".into(),
    ]));
    tar.extend(ustar_members(&[Member::file("GNUSparseFile.0/sparse-00", &data)]));
    // PAX 1.0: the map is the start of the entry data (literal bytes).
    let mut body = format!("2\n0\n4096\n{far}\n4096\n").into_bytes();
    body.resize(512, 0);
    body.extend_from_slice(&data);
    tar.extend(pax_header(&[
        "GNU.sparse.major=1".into(),
        "GNU.sparse.minor=0".into(),
        format!("GNU.sparse.realsize={size}"),
        "GNU.sparse.name=sparse-10".into(),
    ]));
    tar.extend(ustar_members(&[Member::file("GNUSparseFile.0/sparse-10", &body)]));
    // Old GNU 'S': two segments in the header, real size at 483.
    let mut h = ustar_header(&member("sparse-S", b'S', "", b""), data.len() as u64);
    for (i, (off, len)) in [(0u64, 4096u64), (far, 4096)].into_iter().enumerate() {
        let at = 386 + i * 24;
        h[at..at + 11].copy_from_slice(format!("{off:011o}").as_bytes());
        h[at + 12..at + 23].copy_from_slice(format!("{len:011o}").as_bytes());
    }
    h[483..494].copy_from_slice(format!("{size:011o}").as_bytes());
    h[257..265].copy_from_slice(b"ustar  \0");
    fix_checksum(&mut h);
    tar.extend_from_slice(&h);
    tar.extend_from_slice(&data);
    tar.extend_from_slice(&[0u8; 1024]);
    let (_t, img, _) = round_trip(&tar);
    let image = erofs::reader::Image::open(&img).unwrap();
    for name in ["sparse-01", "sparse-00", "sparse-10", "sparse-S"] {
        assert_eq!(image.lookup(name.as_bytes()).unwrap().unwrap().size, size, "{name}");
    }
}

/// A directory with what GNU tar turns into long names, long links,
/// hardlinks, sparse maps (with extension blocks) and xattrs.
fn gnu_tree(src: &Path) {
    fs::create_dir_all(src.join("empty-dir")).unwrap();
    for n in [0usize, 1, 511, 512, 513, 4096, 4097, (1 << 20) + 3] {
        fs::write(src.join(format!("f{n}")), noise(n, n as u64 + 1)).unwrap();
    }
    let deep = src.join("d".repeat(120)).join("e".repeat(120));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f".repeat(100)), b"deep").unwrap();
    std::os::unix::fs::symlink("t/".repeat(100), src.join("long-link")).unwrap();
    fs::hard_link(src.join("f513"), src.join("hard")).unwrap();
    fs::hard_link(deep.join("f".repeat(100)), src.join("hard-to-deep")).unwrap();
    run(Command::new("mkfifo").arg(src.join("fifo")));
    set_xattr(&src.join("f1"), "user.comment", b"a value");
    let f = File::create(src.join("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    for i in 0..6u64 {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&noise(3000 + i as usize * 1000, i), i * (1 << 20) + 777).unwrap();
    }
}

#[test]
fn gnu_tar_archives_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    gnu_tree(&src);
    let formats: &[&[&str]] = &[
        &["--format=gnu"],
        &["--format=oldgnu"],
        &["--format=posix"],
        &["--format=posix", "--xattrs", "--xattrs-include=*"],
        &["--format=posix", "--pax-option=comment=global"],
        &["--format=gnu", "--blocking-factor=1"],
        &["--format=gnu", "--sparse"],
        &["--format=oldgnu", "--sparse"],
        &["--format=posix", "--sparse", "--sparse-version=0.0"],
        &["--format=posix", "--sparse", "--sparse-version=0.1"],
        &["--format=posix", "--sparse", "--sparse-version=1.0"],
    ];
    for (i, args) in formats.iter().enumerate() {
        let (tar, img) = (t.path().join(format!("{i}.tar")), t.path().join(format!("{i}.erofs")));
        make_tar(&src, &tar, args);
        build_layer_file(&tar, &img).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
}

#[test]
fn large_file_is_one_image_range() {
    let data = noise(40 << 20, 11);
    let (_t, _img, framing) = round_trip(&ustar(&[Member::file("big", &data)]));
    // Version, a literal header, one range, zeros, the end record.
    assert!(framing.len() < 200, "{} bytes", framing.len());
}

/// 2,000 files of 100 bytes: 1,000 KiB of ustar headers in 2,049,024
/// bytes of tar. The raw framing is 201,009 bytes (~100 bytes a file:
/// the non-zero header fields, one zero run for the field fill plus
/// padding, one image range); GNU tar --format=gnu of the same tree gives
/// 204,778. (For scale: a 5.3 GB pax tar of /usr with 131,769 entries
/// gave 53 MB raw, 5.4 MB after zstd -3.)
#[test]
fn framing_of_2000_small_files_is_a_fraction_of_the_headers() {
    let names: Vec<String> = (0..2000).map(|i| format!("dir{}/file-{i:05}", i % 20)).collect();
    let data: Vec<Vec<u8>> = (0..2000).map(|i| noise(100, i)).collect();
    let members: Vec<Member> = names.iter().zip(&data).map(|(n, d)| Member::file(n, d)).collect();
    let tar = ustar(&members);
    let (_t, _img, framing) = round_trip(&tar);
    let headers = 2000 * 512;
    eprintln!(
        "hand-made ustar: {} tar bytes, {headers} header bytes, {} framing bytes",
        tar.len(),
        framing.len()
    );
    assert!(framing.len() < headers / 4, "{} bytes of framing", framing.len());

    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    for (n, d) in names.iter().zip(&data) {
        fs::create_dir_all(src.join(n).parent().unwrap()).unwrap();
        fs::write(src.join(n), d).unwrap();
    }
    let (tar, img) = (t.path().join("l.tar"), t.path().join("l.erofs"));
    make_tar(&src, &tar, &["--format=gnu"]);
    let mut framing = Vec::new();
    erofs::build_layer(
        std::io::BufReader::new(File::open(&tar).unwrap()),
        &File::create(&img).unwrap(),
        &mut framing,
    )
    .unwrap();
    let len = fs::metadata(&tar).unwrap().len();
    assert_rebuilds(&img, &framing, File::open(&tar).unwrap(), len);
    eprintln!("GNU tar: {len} tar bytes, {} framing bytes", framing.len());
    assert!(framing.len() < headers / 4, "{} bytes of framing", framing.len());
}

/// A layer whose framing has every record kind, for the damage tests.
fn sample() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let mut tar = pax_header(&["SCHILY.xattr.user.a=b".into()]);
    tar.extend(ustar_members(&[
        Member::file("a", &noise(5000, 1)),
        Member::file("b", b"bee"),
        Member::file("c/.wh.d", b"skipped"),
    ]));
    tar.extend_from_slice(&[0u8; 3000]);
    tar.extend_from_slice(b"tail");
    round_trip(&tar)
}

fn assert_invalid(r: Result<Vec<u8>, Error>, what: &str) {
    match r {
        Err(Error::InvalidFraming { .. }) => {}
        other => panic!("{what}: {:?}", other.map(|v| v.len())),
    }
}

#[test]
fn truncated_framing_is_invalid() {
    let (_t, img, framing) = sample();
    for cut in 0..framing.len() {
        assert_invalid(rebuild(&img, &framing[..cut]), &format!("cut at {cut}"));
    }
    let mut longer = framing.clone();
    longer.push(0);
    assert_invalid(rebuild(&img, &longer), "trailing byte");
}

#[test]
fn flipped_framing_bytes_are_invalid() {
    let (_t, img, framing) = sample();
    for i in 0..framing.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = framing.clone();
            bad[i] ^= mask;
            assert_invalid(rebuild(&img, &bad), &format!("byte {i} ^ {mask:#x}"));
        }
    }
}

#[test]
fn unknown_version_is_invalid() {
    let (_t, img, mut framing) = sample();
    framing[0] = 3;
    let Err(Error::InvalidFraming { message }) = rebuild(&img, &framing) else {
        panic!("version 3 accepted")
    };
    assert!(message.contains("version"), "{message}");
}

#[test]
fn ranges_outside_the_image_are_invalid() {
    let (t, img, framing) = sample();
    // The same framing against a shorter image.
    let short = t.path().join("short");
    fs::copy(&img, &short).unwrap();
    File::options().write(true).open(&short).unwrap().set_len(4096 + 100).unwrap();
    let Err(Error::InvalidFraming { message }) = rebuild(&short, &framing) else {
        panic!("range past the end accepted")
    };
    assert!(message.contains("outside"), "{message}");
    // Hand-made records: a range past the end, one overflowing u64, an
    // oversized literal and zero run (no allocation, no output storm).
    let len = fs::metadata(&img).unwrap().len();
    let varint = |mut v: u64| {
        let mut b = Vec::new();
        while v >= 0x80 {
            b.push(v as u8 | 0x80);
            v >>= 7;
        }
        b.push(v as u8);
        b
    };
    let cases: Vec<Vec<u8>> = vec![
        [&[1u8, 3][..], &varint(len), &varint(1)].concat(),
        [&[1u8, 3][..], &varint(4096), &varint(u64::MAX)].concat(),
        [&[1u8, 1][..], &varint(1 << 40)].concat(),
        [&[1u8, 2][..], &varint((64 << 10) + 1)].concat(),
        [&[1u8, 2][..], &varint(0)].concat(),
        vec![1, 9],
        vec![1, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    ];
    for (i, f) in cases.iter().enumerate() {
        assert_invalid(rebuild(&img, f), &format!("case {i}"));
    }
}

#[test]
fn framing_is_written_while_the_tar_streams() {
    // A sink that records how much framing had arrived when the tar
    // reader had consumed a given amount: the first records must reach
    // the sink long before the archive ends.
    struct Tar<'a> {
        data: &'a [u8],
        pos: std::rc::Rc<std::cell::Cell<usize>>,
    }
    impl std::io::Read for Tar<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let p = self.pos.get();
            let n = (self.data.len() - p).min(buf.len());
            buf[..n].copy_from_slice(&self.data[p..p + n]);
            self.pos.set(p + n);
            Ok(n)
        }
    }
    struct Sink {
        pos: std::rc::Rc<std::cell::Cell<usize>>,
        first_write_at: Option<usize>,
        bytes: Vec<u8>,
    }
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.first_write_at.get_or_insert(self.pos.get());
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // 20,000 entries with names that do not compress to zero runs.
    let names: Vec<String> = (0..20_000).map(|i| format!("{:0>90}", i * 7919)).collect();
    let tar = ustar(&names.iter().map(|n| Member::file(n, b"")).collect::<Vec<_>>());
    let pos = std::rc::Rc::new(std::cell::Cell::new(0));
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    let mut sink = Sink {
        pos: pos.clone(),
        first_write_at: None,
        bytes: Vec::new(),
    };
    erofs::build_layer(
        std::io::BufReader::with_capacity(1 << 20, Tar { data: &tar, pos }),
        &File::create(&img).unwrap(),
        &mut sink,
    )
    .unwrap();
    let first = sink.first_write_at.unwrap();
    assert!(
        first < tar.len() / 2,
        "first framing write after {first} of {} tar bytes",
        tar.len()
    );
    assert_rebuilds(&img, &sink.bytes, &tar[..], tar.len() as u64);
}

#[test]
fn backward_ranges_need_version_2() {
    let (_t, img, _) = sample();
    // Version 1 framing was written while ranges only moved forward.
    let Err(Error::InvalidFraming { message }) = rebuild(&img, &[1, 0x04, 1, 1]) else {
        panic!("a backward range in version 1 accepted")
    };
    assert!(message.contains("backward"), "{message}");
}

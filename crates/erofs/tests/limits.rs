//! Every limit of `erofs::limits` refuses what passes it with a typed
//! error, and accepts what stays at it: hand-made archives whose headers
//! ask for memory, CPU or disk their size does not pay for.
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;

use common::*;
use erofs::limits::*;
use erofs::reader::Image;
use erofs::Error;

fn build(tar: &[u8]) -> Result<(tempfile::TempDir, Image), Error> {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    build_layer_bytes(tar, &img)?;
    // fsck.erofs 1.5 recurses with frames of several KiB per directory
    // level: 1,000 levels overflow the default 8 MiB stack.
    require_tool("fsck.erofs");
    run(Command::new("sh")
        .arg("-c")
        .arg("ulimit -s unlimited && fsck.erofs \"$0\"")
        .arg(&img));
    let image = Image::open(&img).unwrap();
    Ok((t, image))
}

fn too_large(tar: &[u8], what: &str) {
    match build(tar) {
        Err(Error::TooLarge { .. }) => {}
        other => panic!("{what}: {:?}", other.map(|_| ())),
    }
}

/// A file entry under a pax header with `records`.
fn with_pax(records: &[String], name: &str) -> Vec<u8> {
    let mut tar = pax_header(records);
    tar.extend(ustar(&[Member::file(name, b"")]));
    tar
}

fn global(records: &[String]) -> Vec<u8> {
    let mut g = pax_header(records);
    g[156] = b'g';
    fix_checksum(&mut g[..512]);
    g
}

#[test]
fn paths_stop_at_path_max() {
    // 2,048 components, 4,095 bytes: the longest path the kernel resolves.
    let longest = "d/".repeat(2047) + "f";
    assert_eq!(longest.len(), PATH_MAX - 1);
    let (_t, img) = build(&with_pax(&[format!("path=./{longest}")], "x")).unwrap();
    assert!(img.lookup(longest.as_bytes()).unwrap().unwrap().is_regular());
    too_large(&with_pax(&[format!("path={longest}f")], "x"), "4,096-byte path");
    // Hardlink targets too.
    let mut tar = ustar_members(&[Member::file("f", b"")]);
    tar.extend(with_pax(&[format!("linkpath={}", "./".repeat(10) + &"l/".repeat(2048) + "f")], "x"));
    let last = tar.len() - 1024 - 512;
    tar[last + 156] = b'1';
    fix_checksum(&mut tar[last..last + 512]);
    too_large(&tar, "4,097-byte hardlink target");
}

#[test]
fn a_million_components_cost_nothing() {
    // One path of a million components asked for a million implicit
    // directories; its header is now refused before it is read...
    too_large(&with_pax(&[format!("path={}", "a/".repeat(1_000_000))], "x"), "2 MB pax path");
    // ...and a path under the header limit is refused by PATH_MAX.
    too_large(&with_pax(&[format!("path={}", "a/".repeat(400_000))], "x"), "800 kB pax path");
    // "./" components cost no directories, whatever their number.
    let (_t, img) = build(&with_pax(&[format!("path={}f", "./".repeat(400_000))], "x")).unwrap();
    assert!(img.lookup(b"f").unwrap().is_some());
}

#[test]
fn extension_headers_stop_at_their_limit() {
    let body = format!("comment={}", "c".repeat(EXTENSION_HEADER_MAX as usize));
    too_large(&with_pax(std::slice::from_ref(&body), "x"), "pax header");
    let mut g = global(&[body]);
    g.extend(ustar(&[Member::file("x", b"")]));
    too_large(&g, "global pax header");
    let mut long = Member::file("././@LongLink", b"");
    let name = vec![b'n'; EXTENSION_HEADER_MAX as usize + 1];
    long.data = &name;
    long.typeflag = b'L';
    let mut tar = ustar_members(&[long]);
    tar.extend(ustar(&[Member::file("x", b"")]));
    too_large(&tar, "GNU long name");
}

#[test]
fn unapplied_global_records_are_not_kept() {
    // Three global comments of 900 kB each: read, dropped, never counted.
    let mut tar = Vec::new();
    for i in 0..3 {
        tar.extend(global(&[format!("comment={}", "c".repeat(900_000)), format!("uid={}", 100 + i)]));
        tar.extend(ustar_members(&[Member::file(&format!("f{i}"), b"")]));
    }
    tar.extend_from_slice(&[0; 1024]);
    let (_t, img) = build(&tar).unwrap();
    assert_eq!(img.lookup(b"f2").unwrap().unwrap().uid, 102);
    // Applied global records add up, and stop at GLOBAL_RECORDS_MAX.
    let mut tar = Vec::new();
    for i in 0..20 {
        tar.extend(global(&[format!("SCHILY.xattr.user.g{i}={}", "v".repeat(60_000))]));
    }
    tar.extend(ustar(&[Member::file("f", b"")]));
    too_large(&tar, "1.2 MB of global xattrs");
}

#[test]
fn global_records_cost_linear_time() {
    // Ten global headers each setting the same 30,000 xattr records
    // (780 kB, under GLOBAL_RECORDS_MAX), then one clearing them: 330,000
    // records. Kept in a list (found by a scan, removed by a shift), that
    // was 300,000 shifts of 30,000 records: over a minute. By key, well
    // under a second of CPU (the bound leaves room for a loaded machine).
    let set: Vec<String> = (0..30_000).map(|i| format!("SCHILY.xattr.user.{i:05}=1")).collect();
    let clear: Vec<String> = (0..30_000).map(|i| format!("SCHILY.xattr.user.{i:05}=")).collect();
    let mut tar = Vec::new();
    for _ in 0..10 {
        tar.extend(global(&set));
    }
    tar.extend(global(&clear));
    tar.extend(ustar(&[Member::file("f", b"")]));
    let start = std::time::Instant::now();
    erofs::build_layer(&tar[..], &tempfile::tempfile().unwrap(), &mut std::io::sink()).unwrap();
    assert!(start.elapsed().as_secs() < 15, "took {:?}", start.elapsed());
    let (_t, img) = build(&tar).unwrap();
    assert!(img.xattrs(&img.lookup(b"f").unwrap().unwrap()).unwrap().is_empty());
}

#[test]
fn xattrs_stop_at_the_kernel_limits() {
    let name = |len: usize| format!("user.{}", "n".repeat(len - 5));
    let ok = with_pax(
        &[
            format!("SCHILY.xattr.{}=v", name(XATTR_NAME_MAX)),
            format!("SCHILY.xattr.user.big={}", "v".repeat(60_000)),
        ],
        "f",
    );
    let (_t, img) = build(&ok).unwrap();
    let f = img.lookup(b"f").unwrap().unwrap();
    assert_eq!(img.xattrs(&f).unwrap()[1].1.len(), 60_000);
    too_large(
        &with_pax(&[format!("SCHILY.xattr.{}=v", name(XATTR_NAME_MAX + 1))], "f"),
        "256-byte name",
    );
    let value = "v".repeat(XATTR_VALUE_MAX + 1);
    too_large(&with_pax(&[format!("SCHILY.xattr.user.v={value}")], "f"), "65,536-byte value");
    let halves: Vec<String> = (0..2)
        .map(|i| format!("SCHILY.xattr.user.{i}={}", "v".repeat(XATTRS_SIZE_MAX / 2)))
        .collect();
    too_large(&with_pax(&halves, "f"), "two 32 KiB values");
    // Many small records cost O(n log n), not O(n^2): 6,000 distinct
    // names within the limit, then each replaced by a later record.
    let mut records: Vec<String> = (0..6000).map(|i| format!("SCHILY.xattr.user.{i:04}=")).collect();
    records.extend((0..6000).map(|i| format!("SCHILY.xattr.user.{i:04}=1")));
    let (_t, img) = build(&with_pax(&records, "f")).unwrap();
    let x = img.xattrs(&img.lookup(b"f").unwrap().unwrap()).unwrap();
    assert_eq!(x.len(), 6000);
    assert!(x.iter().all(|(_, v)| v == b"1"));
}

#[test]
fn repeated_large_xattrs_are_stored_once() {
    // A global 30 kB xattr on 200 files, a 1 kB one on two of them, a
    // small one inline: the image holds each large value once (in the
    // shared xattr area), and the kernel, fsck.erofs and fsmeta read
    // every value back.
    let mut tar = global(&[format!("SCHILY.xattr.user.g={}", "v".repeat(30_000))]);
    let names: Vec<String> = (0..200).map(|i| format!("f{i:03}")).collect();
    for (i, n) in names.iter().enumerate() {
        let mut records = vec![format!("SCHILY.xattr.user.small={i}")];
        if i < 2 {
            records.push(format!("SCHILY.xattr.security.big={}", "b".repeat(1000)));
        }
        tar.extend(pax_header(&records));
        tar.extend(ustar_members(&[Member::file(n, b"")]));
    }
    tar.extend_from_slice(&[0; 1024]);
    let (t, img) = build(&tar).unwrap();
    let path = t.path().join("img");
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len < 64 << 10, "200 copies of a 30 kB xattr took {len} bytes");
    let expected = |i: usize| {
        let mut x = vec![(b"user.small".to_vec(), i.to_string().into_bytes())];
        if i < 2 {
            x.push((b"security.big".to_vec(), vec![b'b'; 1000]));
        }
        x.push((b"user.g".to_vec(), vec![b'v'; 30_000]));
        x.sort();
        x
    };
    for (i, n) in names.iter().enumerate() {
        let mut x = img.xattrs(&img.lookup(n.as_bytes()).unwrap().unwrap()).unwrap();
        x.sort();
        assert_eq!(x, expected(i), "{n}");
    }
    let mnt = Mount::new(&path, &t.path().join("mnt"));
    let seen = xattrs(&mnt.dir);
    assert_eq!(seen.len(), 200 * 2 + 2);
    for (i, n) in names.iter().enumerate() {
        for (name, value) in expected(i) {
            assert_eq!(seen[&(n.as_bytes().to_vec(), name.clone())], value, "{n}");
        }
    }
    drop(mnt);
    let fsmeta = t.path().join("fsmeta");
    let layer = erofs::FsmetaLayer { path: &path, tag: b"t" };
    erofs::build_fsmeta(&[layer], &std::fs::File::create(&fsmeta).unwrap()).unwrap();
    assert!(std::fs::metadata(&fsmeta).unwrap().len() < 64 << 10);
    let disk = common::root_disk(&fsmeta, std::slice::from_ref(&path), &t.path().join("disk"));
    run(Command::new("fsck.erofs").arg(format!("--device={}", path.display())).arg(disk));
    let merged = Image::open(&fsmeta).unwrap();
    let mut x = merged.xattrs(&merged.lookup(b"f001").unwrap().unwrap()).unwrap();
    x.sort();
    assert_eq!(x, expected(1));
}

/// A PAX 0.1 sparse file of `size` bytes with one data byte at its end.
fn sparse_at_end(name: &str, size: u64) -> Vec<u8> {
    let mut tar = pax_header(&[
        format!("GNU.sparse.size={size}"),
        format!("GNU.sparse.map={},1", size - 1),
        format!("GNU.sparse.name={name}"),
    ]);
    tar.extend(ustar_members(&[Member::file("GNUSparseFile.0/x", b"z")]));
    tar
}

#[test]
fn sparse_files_stay_sparse_up_to_their_limit() {
    too_large(&[sparse_at_end("s", 1 << 62), vec![0; 1024]].concat(), "2^62-byte sparse file");
    too_large(&[sparse_at_end("s", SPARSE_SIZE_MAX + 1), vec![0; 1024]].concat(), "16 TiB + 1");
    // The largest: 2^20 chunks of 16 MiB, one of them stored.
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    build_layer_bytes(&[sparse_at_end("s", SPARSE_SIZE_MAX), vec![0; 1024]].concat(), &img).unwrap();
    let len = std::fs::metadata(&img).unwrap().len();
    assert!(len < 24 << 20, "a 16 TiB sparse file with one byte took {len} bytes");
    let image = Image::open(&img).unwrap();
    assert_eq!(image.lookup(b"s").unwrap().unwrap().size, SPARSE_SIZE_MAX);
    // Each such file stores 16 MiB of zeros: the fifth passes SPARSE_ZEROS_MAX.
    let mut tar: Vec<u8> = (0..4).flat_map(|i| sparse_at_end(&format!("s{i}"), SPARSE_SIZE_MAX)).collect();
    build_layer_bytes(&[tar.clone(), vec![0; 1024]].concat(), &img).unwrap();
    tar.extend(sparse_at_end("s4", SPARSE_SIZE_MAX));
    too_large(&[tar, vec![0; 1024]].concat(), "80 MiB of zeros");
}

#[test]
fn sparse_maps_stop_at_their_segment_limit() {
    // PAX 1.0: the map is in the entry data; its count is read first.
    let mut map = format!("{}\n", SPARSE_SEGMENTS_MAX + 1).into_bytes();
    while map.len() < 1024 {
        map.extend_from_slice(b"0\n1\n");
    }
    map.truncate(1024);
    let mut tar = pax_header(&[
        "GNU.sparse.major=1".into(),
        "GNU.sparse.minor=0".into(),
        "GNU.sparse.realsize=1000000000".into(),
        "GNU.sparse.name=s".into(),
    ]);
    tar.extend(ustar(&[Member::file("GNUSparseFile.0/s", &map)]));
    too_large(&tar, "262,145 segments");
}

#[test]
fn metadata_stops_at_the_memory_budget() {
    // Each entry asks for 2,000 directories of its own: about 1 MB of
    // memory per 1.5 kB of tar. Refused long before 200 of them.
    let mut tar = Vec::new();
    for i in 0..200 {
        tar.extend(pax_header(&[format!("path=r{i}/{}f", "d/".repeat(1999))]));
        tar.extend(ustar_members(&[Member::file("f", b"")]));
    }
    tar.extend_from_slice(&[0; 1024]);
    let Err(Error::TooLarge { message }) = build(&tar).map(|_| ()) else {
        panic!("200 deep trees accepted")
    };
    assert!(message.contains("memory"), "{message}");
}

#[test]
fn symlink_targets_stop_at_symlink_max() {
    let link = |target: &str| {
        let mut tar = pax_header(&[format!("linkpath={target}")]);
        let mut m = Member::file("l", b"");
        m.typeflag = b'2';
        tar.extend(ustar(&[m]));
        tar
    };
    let (_t, img) = build(&link(&"t".repeat(SYMLINK_MAX))).unwrap();
    let l = img.lookup(b"l").unwrap().unwrap();
    assert_eq!(img.symlink_target(&l).unwrap().len(), SYMLINK_MAX);
    assert!(matches!(build(&link(&"t".repeat(SYMLINK_MAX + 1))), Err(Error::InvalidTar { .. })));
}

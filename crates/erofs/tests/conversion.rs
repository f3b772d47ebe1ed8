//! How tar entries map onto the layer image, checked with the crate's
//! reader: whiteouts, opaque and implicit directories, duplicates, the
//! root entry, pax/GNU extensions.
#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;

use common::*;
use erofs::reader::{FileMap, Image};

fn image(tar: &[u8]) -> (tempfile::TempDir, Image) {
    let t = tempfile::tempdir().unwrap();
    let p: PathBuf = t.path().join("img");
    build_layer_bytes(tar, &p).unwrap();
    require_tool("fsck.erofs");
    run(std::process::Command::new("fsck.erofs").arg(&p));
    let img = Image::open(&p).unwrap();
    (t, img)
}

fn xattr_names(img: &Image, path: &str) -> Vec<String> {
    let i = img.lookup(path.as_bytes()).unwrap().unwrap();
    img.xattrs(&i)
        .unwrap()
        .into_iter()
        .map(|(n, _)| String::from_utf8(n).unwrap())
        .collect()
}

#[test]
fn whiteouts_become_overlay_entries() {
    let tar = ustar(&[
        Member::file("etc/.wh.passwd", b""),
        Member::file("var/cache/.wh..wh..opq", b""),
        Member::file("var/.wh..wh.plnk", b""),
        Member::dir("etc/"),
    ]);
    let (_t, img) = image(&tar);
    let wh = img.lookup(b"etc/passwd").unwrap().unwrap();
    assert_eq!(wh.mode & 0o170000, 0o020000);
    assert_eq!(wh.device_number(), (0, 0));
    assert!(img.lookup(b"etc/.wh.passwd").unwrap().is_none());
    assert!(img.lookup(b"var/.wh..wh.plnk").unwrap().is_none());
    assert!(img.lookup(b"var/cache/.wh..wh..opq").unwrap().is_none());
    assert_eq!(xattr_names(&img, "var/cache"), ["trusted.msb.implicit", "trusted.overlay.opaque"]);
    assert_eq!(xattr_names(&img, "var"), ["trusted.msb.implicit"]);
    // `etc/` came later: explicit now.
    assert!(xattr_names(&img, "etc").is_empty());
    // No root entry: the root is implicit too.
    assert_eq!(xattr_names(&img, ""), ["trusted.msb.implicit"]);
    let root = img.inode(img.root_nid()).unwrap();
    assert_eq!((root.mode, root.uid, root.gid, root.mtime), (0o040755, 0, 0, 0));
}

#[test]
fn whiteouts_under_a_file_of_this_layer_are_moot() {
    // umoci's diff for "directory d became a file": the file, then the
    // whiteouts of the directory's old children.
    let tar = ustar(&[
        Member::file("d", b"now a file"),
        Member::file("d/.wh.child", b""),
        Member::file("d/.wh..wh..opq", b""),
        Member::file("d/deeper/.wh.x", b""),
    ]);
    let (_t, img) = image(&tar);
    let d = img.lookup(b"d").unwrap().unwrap();
    assert!(d.is_regular(), "d stays the file the layer wrote");
    assert_eq!(d.size, 10);
}

#[test]
fn later_entries_win() {
    let tar = ustar(&[
        Member::dir("./"),
        Member::file("d/sub/f", b"old"),
        Member::file("d", b"now a file"),
        Member::file("x", b"first"),
        Member::file("x", b"second!"),
        Member::file("y", b"y"),
        Member::dir("y/"),
        Member::file("y/inside", b"i"),
    ]);
    let (_t, img) = image(&tar);
    let d = img.lookup(b"d").unwrap().unwrap();
    assert!(d.is_regular());
    assert_eq!(d.size, 10);
    assert_eq!(img.lookup(b"x").unwrap().unwrap().size, 7);
    assert!(img.lookup(b"y").unwrap().unwrap().is_dir());
    assert!(img.lookup(b"y/inside").unwrap().is_some());
    // The explicit root entry removed the implicit marker.
    assert!(xattr_names(&img, "").is_empty());
    let root = img.inode(img.root_nid()).unwrap();
    assert_eq!(root.nlink, 3); // ".", "..", and y
    assert_eq!(img.read_dir(&root).unwrap().len(), 3);
}

#[test]
fn pax_and_gnu_extensions() {
    let long = "p/".repeat(60) + "file";
    // pax header: long path, a uid beyond 16 bits, mtime with
    // nanoseconds, xattrs in both spellings (and one in no namespace
    // EROFS can name, which is dropped).
    let mut tar = pax_header(&[
        format!("path={long}"),
        "uid=4000000000".into(),
        "mtime=1700000000.123456789".into(),
        "SCHILY.xattr.user.one=1".into(),
        "LIBARCHIVE.xattr.user.tw%6F=dHdv".into(),
        "SCHILY.xattr.other.ns=dropped".into(),
        "SCHILY.xattr.trusted.msb.implicit=forged".into(),
    ]);
    tar.extend(ustar(&[Member::file("short-name", b"data")]));
    let (_t, img) = image(&tar);
    let f = img.lookup(long.as_bytes()).unwrap().unwrap();
    assert_eq!((f.uid, f.mtime, f.mtime_nsec), (4_000_000_000, 1_700_000_000, 123_456_789));
    let x = img.xattrs(&f).unwrap();
    assert_eq!(
        x,
        vec![(b"user.one".to_vec(), b"1".to_vec()), (b"user.two".to_vec(), b"two".to_vec())]
    );
    // Four bytes: packed whole beside the inode.
    assert_eq!(img.file_map(&f).unwrap(), FileMap::Tail { blkaddr: 0, tail_len: 4 });
}

#[test]
fn huge_sparse_file_stores_only_its_data() {
    // PAX 0.1 sparse: 64 GiB logical size, 8 KiB of data in two places.
    let size: u64 = 1 << 36;
    let mut tar = pax_header(&[
        format!("GNU.sparse.size={size}"),
        format!("GNU.sparse.map=0,4096,{},4096", size - 4096),
        "GNU.sparse.name=huge".into(),
    ]);
    let data = [[1u8; 4096], [2u8; 4096]].concat();
    tar.extend(ustar(&[Member::file("GNUSparseFile.0/huge", &data)]));
    let (t, img) = image(&tar);
    // About 512 KiB of map and two 512 KiB chunks.
    assert!(std::fs::metadata(t.path().join("img")).unwrap().len() < 4 << 20);
    let f = img.lookup(b"huge").unwrap().unwrap();
    assert_eq!(f.size, size);
    let FileMap::Chunked { chunkbits, chunks } = img.file_map(&f).unwrap() else {
        panic!("not chunked")
    };
    assert!(chunks.len() <= 1 << 17, "{} chunks of 2^{} blocks", chunks.len(), chunkbits);
    assert_eq!(chunks.iter().filter(|c| c.is_some()).count(), 2);
    assert!(chunks[0].is_some() && chunks[chunks.len() - 1].is_some());
}

#[test]
fn unknown_sparse_version_is_invalid() {
    let mut tar = pax_header(&["GNU.sparse.major=2".into(), "GNU.sparse.minor=0".into()]);
    tar.extend(ustar(&[Member::file("f", b"x")]));
    let t = tempfile::tempdir().unwrap();
    let err = build_layer_bytes(&tar, &t.path().join("img")).unwrap_err();
    assert!(matches!(err, erofs::Error::InvalidTar { .. }), "{err:?}");
}

#[test]
fn global_pax_headers_apply_to_later_entries() {
    let mut global = pax_header(&["uid=777".into(), "SCHILY.xattr.user.g=global".into()]);
    global[156] = b'g';
    fix_checksum(&mut global[..512]);
    let mut tar = ustar(&[Member::file("before", b"")]);
    tar.truncate(512);
    tar.extend(global);
    tar.extend(ustar(&[Member::file("a", b"")]).split_at(512).0);
    // An empty local value cancels the global one: back to the header (0).
    tar.extend(pax_header(&["uid=".into()]));
    tar.extend(ustar(&[Member::file("b", b"")]));
    let (_t, img) = image(&tar);
    let get = |p: &[u8]| img.lookup(p).unwrap().unwrap();
    assert_eq!(get(b"before").uid, 0);
    assert_eq!(get(b"a").uid, 777);
    assert_eq!(get(b"b").uid, 0);
    assert_eq!(img.xattrs(&get(b"b")).unwrap(), vec![(b"user.g".to_vec(), b"global".to_vec())]);
    assert!(img.xattrs(&get(b"before")).unwrap().is_empty());
}

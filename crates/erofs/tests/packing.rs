//! Small files packed into shared blocks, tails packed beside their
//! inodes, and fsmeta naming a layer's packed records in the root disk:
//! checked with erofs-utils 1.5 and a kernel mount of the disk the VMDK
//! makes (fsmeta ++ layers).
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use erofs::reader::{FileMap, Image};

/// fsmeta of `layers` (tagged by position), written to `out`.
fn fsmeta_of(layers: &[PathBuf], out: &Path) -> PathBuf {
    let tags: Vec<String> = (0..layers.len()).map(|i| format!("{:064x}", i + 1)).collect();
    let inputs: Vec<erofs::FsmetaLayer> = layers
        .iter()
        .zip(&tags)
        .map(|(path, tag)| erofs::FsmetaLayer { path, tag: tag.as_bytes() })
        .collect();
    erofs::build_fsmeta(&inputs, &fs::File::create(out).unwrap()).unwrap();
    out.to_path_buf()
}

#[test]
fn small_files_share_blocks_and_tails_sit_beside_their_inodes() {
    let t = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("d/f{i:03}")).collect();
    let datas: Vec<Vec<u8>> = (0..300).map(|i| noise(50 + i * 7, i as u64)).collect();
    let tail_file = noise(3 * 4096 + 1000, 9);
    let aligned = noise(2 * 4096, 10);
    let mut members = vec![Member::dir("d")];
    for (n, d) in names.iter().zip(&datas) {
        members.push(Member::file(n, d));
        if n == "d/f150" {
            // Big files between small ones: packs stay open across them.
            members.push(Member::file("d/tailed", &tail_file));
            members.push(Member::file("d/aligned", &aligned));
        }
    }
    members.push(Member::file("d/empty", b""));
    members.push(Member::hardlink("d/again", "d/f007"));
    let tar = ustar(&members);
    let img = t.path().join("l.erofs");
    // build_layer_bytes also rebuilds the tar from the framing, whose
    // image ranges now go back into packs reserved earlier.
    let s = build_layer_bytes(&tar, &img).unwrap();

    // 300 records of 114 to 2,207 bytes fill at least 85 blocks (118 as
    // first written); one block per file would be 300. Plus: superblock,
    // root, tailed's 3 blocks, aligned's 2, the directories and the rest
    // of the metadata.
    let data: usize = datas.iter().map(|d| d.len() + 64).sum();
    let blocks = s.size_bytes / erofs::BLOCK_SIZE;
    assert!(
        blocks <= (data as u64 / erofs::BLOCK_SIZE) * 13 / 10 + 12,
        "{blocks} blocks for {data} bytes of records"
    );

    let reader = Image::open(&img).unwrap();
    assert_eq!(reader.meta_blkaddr(), 0, "nids count from byte 0");
    let f = reader.lookup(b"d/f007").unwrap().unwrap();
    assert_eq!(f.nlink, 2, "the packed record's link count was patched");
    assert_eq!(
        reader.file_map(&f).unwrap(),
        FileMap::Tail {
            blkaddr: 0,
            tail_len: datas[7].len() as u16
        }
    );
    assert_eq!(tail_bytes(&img, &reader, &f), datas[7]);
    let tailed = reader.lookup(b"d/tailed").unwrap().unwrap();
    let FileMap::Tail { tail_len, .. } = reader.file_map(&tailed).unwrap() else {
        panic!("tailed is not tail-packed")
    };
    assert_eq!(usize::from(tail_len), tail_file.len() - 3 * 4096);
    assert_eq!(tail_bytes(&img, &reader, &tailed), tail_file[3 * 4096..]);
    let aligned_inode = reader.lookup(b"d/aligned").unwrap().unwrap();
    assert!(matches!(reader.file_map(&aligned_inode).unwrap(), FileMap::Contiguous { .. }));

    // erofs-utils and the kernel read what GNU tar extracts.
    let (src, out) = (t.path().join("src"), t.path().join("out"));
    fs::create_dir(&src).unwrap();
    fs::write(t.path().join("l.tar"), &tar).unwrap();
    extract_tar(&t.path().join("l.tar"), &src);
    fsck_extract(&img, &[], &out);
    let how = Compare {
        links: false,
        ignore_suid: true,
    };
    assert_same(&snapshot(&src), &snapshot(&out), how);
    let mnt = Mount::new(&img, &t.path().join("mnt"));
    assert_same(
        &snapshot(&src),
        &snapshot(&mnt.dir),
        Compare {
            links: true,
            ignore_suid: false,
        },
    );
}

#[test]
fn fsmeta_names_packed_records_and_copies_only_what_it_must() {
    let t = tempfile::tempdir().unwrap();
    let tail_file = noise(4096 + 700, 3);
    let lower = ustar(&[
        Member::file("small", b"packed and borrowed"),
        Member::file("h1", b"two names below"),
        Member::hardlink("h2", "h1"),
        Member::file("tailed", &tail_file),
        Member::file("gone", b"whited out above"),
    ]);
    let upper = ustar(&[
        Member::file(".wh.h2", b""),
        Member::file(".wh.gone", b""),
        Member::file("top", b"upper"),
    ]);
    let mut layers = Vec::new();
    for (i, tar) in [lower, upper].iter().enumerate() {
        let img = t.path().join(format!("l{i}.erofs"));
        build_layer_bytes(tar, &img).unwrap();
        layers.push(img);
    }
    let fsmeta = fsmeta_of(&layers, &t.path().join("fsmeta.erofs"));
    let fsmeta_len = fs::metadata(&fsmeta).unwrap().len();

    // `small` and `top` are named where their layer records are on the
    // disk, past fsmeta; h1 (two names in its layer, one left) and
    // tailed (blocks in the layer, tail copied) have inodes of their own.
    let meta = Image::open(&fsmeta).unwrap();
    let root = meta.inode(meta.root_nid()).unwrap();
    let pos = |name: &[u8]| {
        let e = meta.read_dir(&root).unwrap().into_iter().find(|e| e.name == name).unwrap();
        meta.meta_blkaddr() * erofs::BLOCK_SIZE + e.nid * 32
    };
    assert!(pos(b"small") >= fsmeta_len && pos(b"top") >= fsmeta_len);
    assert!(pos(b"h1") < fsmeta_len && pos(b"tailed") < fsmeta_len);
    assert!(meta.devices().iter().all(|d| d.mapped_blkaddr == 0));

    let disk = root_disk(&fsmeta, &layers, &t.path().join("disk"));
    let out = t.path().join("out");
    fsck_extract(&disk, &layers.iter().map(PathBuf::from).collect::<Vec<_>>(), &out);
    let mnt = Mount::new(&disk, &t.path().join("mnt"));
    for dir in [&out, &mnt.dir] {
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["h1", "small", "tailed", "top"], "{}", dir.display());
        assert_eq!(fs::read(dir.join("small")).unwrap(), b"packed and borrowed");
        assert_eq!(fs::read(dir.join("h1")).unwrap(), b"two names below");
        assert_eq!(fs::read(dir.join("tailed")).unwrap(), tail_file);
        assert_eq!(fs::read(dir.join("top")).unwrap(), b"upper");
    }
    assert_eq!(fs::metadata(mnt.dir.join("h1")).unwrap().nlink(), 1);
}

#[test]
fn a_root_whose_xattrs_outgrow_its_block_shares_them() {
    let t = tempfile::tempdir().unwrap();
    let value = "v".repeat(1500);
    let records: Vec<String> = (0..4).map(|i| format!("SCHILY.xattr.user.big{i}={value}")).collect();
    let mut tar = pax_header(&records);
    tar.extend(ustar(&[Member::dir("./"), Member::file("f", b"x")]));
    let img = t.path().join("l.erofs");
    build_layer_bytes(&tar, &img).unwrap();
    let reader = Image::open(&img).unwrap();
    let root = reader.inode(reader.root_nid()).unwrap();
    assert_eq!(reader.xattrs(&root).unwrap().len(), 4);
    run(std::process::Command::new("fsck.erofs").arg(&img));
    let mnt = Mount::new(&img, &t.path().join("mnt"));
    let read = run(std::process::Command::new("python3")
        .arg("-c")
        .arg("import os,sys; print(sorted((n, len(os.getxattr(sys.argv[1], n))) for n in os.listxattr(sys.argv[1])))")
        .arg(&mnt.dir));
    assert_eq!(
        read.trim(),
        "[('user.big0', 1500), ('user.big1', 1500), ('user.big2', 1500), ('user.big3', 1500)]"
    );
    assert_eq!(fs::read(mnt.dir.join("f")).unwrap(), b"x");
}

#[test]
fn layers_written_before_packing_merge_with_packed_ones() {
    // A layer image written before small files were packed (a fuzz seed):
    // metadata after the data, every file's data in blocks of its own.
    let t = tempfile::tempdir().unwrap();
    let old = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/erofs_reader/layer-xattrs.erofs");
    assert!(Image::open(&old).unwrap().meta_blkaddr() > 0, "the seed predates packing");
    let new = t.path().join("new.erofs");
    build_layer_bytes(&ustar(&[Member::file("new-small", b"packed above an old layer")]), &new).unwrap();
    let layers = vec![old.clone(), new.clone()];
    let fsmeta = fsmeta_of(&layers, &t.path().join("fsmeta.erofs"));
    let disk = root_disk(&fsmeta, &layers, &t.path().join("disk"));

    let (below, merged) = (t.path().join("below"), t.path().join("merged"));
    fsck_extract(&old, &[], &below);
    fsck_extract(&disk, &layers, &merged);
    let expected = snapshot(&below);
    let mut actual = snapshot(&merged);
    let how = Compare {
        links: false,
        ignore_suid: true,
    };
    actual.remove(b"new-small".as_slice()).expect("the upper layer's file");
    assert_same(&expected, &actual, how);
    assert_eq!(fs::read(merged.join("new-small")).unwrap(), b"packed above an old layer");
    let mnt = Mount::new(&disk, &t.path().join("mnt"));
    let mut mounted = snapshot(&mnt.dir);
    assert_eq!(fs::read(mnt.dir.join("new-small")).unwrap(), b"packed above an old layer");
    mounted.remove(b"new-small".as_slice());
    assert_same(&snapshot(&below), &mounted, how);
}

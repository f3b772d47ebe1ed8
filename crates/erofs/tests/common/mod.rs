//! Helpers shared by the integration tests: fixtures built with GNU tar,
//! images checked with erofs-utils 1.5 and the kernel, trees compared.
#![allow(dead_code)] // each test binary uses a different subset

pub mod targets;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hasher};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bytes of a tail-packed file's last partial block, read where the
/// reader says they are.
pub fn tail_bytes(img: &Path, reader: &erofs::reader::Image, inode: &erofs::reader::Inode) -> Vec<u8> {
    let erofs::reader::FileMap::Tail { tail_len, .. } = reader.file_map(inode).unwrap() else {
        panic!("nid {} is not tail-packed", inode.nid)
    };
    let mut out = vec![0; usize::from(tail_len)];
    erofs::read_exact_at(&File::open(img).unwrap(), &mut out, reader.tail_pos(inode).unwrap()).unwrap();
    out
}

/// Fails (never skips) when a tool the tests rely on is missing.
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "required tool `{name}` is not installed (erofs-utils, GNU tar, python3 and util-linux are needed)"
    );
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates `tar_path` from the contents of `src` with GNU tar.
pub fn make_tar(src: &Path, tar_path: &Path, args: &[&str]) {
    require_tool("tar");
    let mut c = Command::new("tar");
    c.args(args)
        .arg("--numeric-owner")
        .arg("-C")
        .arg(src)
        .arg("-cf")
        .arg(tar_path)
        .arg(".");
    run(&mut c);
}

/// Extracts `tar_path` into `dest` with GNU tar (the reference tree).
pub fn extract_tar(tar_path: &Path, dest: &Path) {
    fs::create_dir_all(dest).unwrap();
    run(Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(tar_path)
        .arg("-C")
        .arg(dest));
}

/// Builds a layer image from a tar file; on success also checks that
/// the framing rebuilds the tar byte for byte (see [`assert_rebuilds`]).
pub fn build_layer_file(tar_path: &Path, img: &Path) -> Result<erofs::LayerSummary, erofs::Error> {
    let out = File::create(img).unwrap();
    let mut framing = Vec::new();
    let summary = erofs::build_layer(
        std::io::BufReader::with_capacity(1 << 20, File::open(tar_path).unwrap()),
        &out,
        &mut framing,
    )?;
    let len = fs::metadata(tar_path).unwrap().len();
    assert_rebuilds(img, &framing, File::open(tar_path).unwrap(), len);
    Ok(summary)
}

/// [`build_layer_file`] for a tar held in memory.
pub fn build_layer_bytes(tar: &[u8], img: &Path) -> Result<erofs::LayerSummary, erofs::Error> {
    let out = File::create(img).unwrap();
    let mut framing = Vec::new();
    let summary = erofs::build_layer(tar, &out, &mut framing)?;
    assert_rebuilds(img, &framing, tar, tar.len() as u64);
    Ok(summary)
}

/// Asserts that `write_tar(img, framing)` yields exactly the `len` bytes
/// of `expected` (compared as they stream, so large tars need no copy).
pub fn assert_rebuilds(img: &Path, framing: &[u8], expected: impl Read, len: u64) {
    let mut same = SameAs { expected, pos: 0 };
    let written = erofs::write_tar(&File::open(img).unwrap(), framing, &mut same)
        .unwrap_or_else(|e| panic!("write_tar failed after {} matching bytes: {e}", same.pos));
    assert_eq!(written, len, "write_tar length");
    assert_eq!(same.pos, len);
    assert_eq!(
        same.expected.read(&mut [0u8]).unwrap(),
        0,
        "rebuilt tar is shorter than the original"
    );
}

/// A writer that checks each byte written against a reference stream.
pub struct SameAs<R> {
    pub expected: R,
    pub pos: u64,
}

impl<R: Read> std::io::Write for SameAs<R> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut want = vec![0u8; buf.len()];
        let got = read_full(&mut self.expected, &mut want);
        if let Some(i) = (0..buf.len()).find(|&i| i >= got || buf[i] != want[i]) {
            panic!("rebuilt tar differs from the original at byte {}", self.pos + i as u64);
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// The root disk the VMDK makes of `fsmeta` and its layers: the files
/// one after the other, written to `disk`. fsmeta names records and
/// blocks of its layers by where they are on it.
pub fn root_disk(fsmeta: &Path, layers: &[PathBuf], disk: &Path) -> PathBuf {
    let mut all = fs::read(fsmeta).unwrap();
    for l in layers {
        all.extend(fs::read(l).unwrap());
    }
    fs::write(disk, all).unwrap();
    disk.to_path_buf()
}

/// `fsck.erofs [--device=..] --extract=dest img`, which must succeed.
pub fn fsck_extract(img: &Path, devices: &[PathBuf], dest: &Path) {
    require_tool("fsck.erofs");
    let mut c = Command::new("fsck.erofs");
    for d in devices {
        c.arg(format!("--device={}", d.display()));
    }
    c.arg(format!("--extract={}", dest.display())).arg(img);
    run(&mut c);
}

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub content: u64,
    pub target: Vec<u8>,
    pub rdev: u64,
    pub nlink: u64,
    pub ino: u64,
}

pub type Snapshot = BTreeMap<Vec<u8>, Node>;

/// Files larger than this are not hashed by [`snapshot`] (unoptimised
/// test builds hash slowly); compare them with [`assert_same_bytes`].
pub const HASH_LIMIT: u64 = 64 << 20;

/// Compares two files byte for byte with `cmp`.
pub fn assert_same_bytes(a: &Path, b: &Path) {
    require_tool("cmp");
    run(Command::new("cmp").arg(a).arg(b));
}

fn hash_file(p: &Path) -> u64 {
    if fs::metadata(p).unwrap().len() > HASH_LIMIT {
        return u64::MAX;
    }
    let mut f = File::open(p).unwrap();
    let mut h = DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return h.finish();
        }
        h.write(&buf[..n]);
    }
}

/// Walks `root` (not following symlinks); keys are paths relative to it.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    walk(root, Vec::new(), &mut out);
    out
}

fn walk(dir: &Path, rel: Vec<u8>, out: &mut Snapshot) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let md = fs::symlink_metadata(&p).unwrap();
        let mut key = rel.clone();
        if !key.is_empty() {
            key.push(b'/');
        }
        key.extend_from_slice(e.file_name().as_bytes());
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_file() {
            'f'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        let node = Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: (md.mtime(), md.mtime_nsec()),
            size: if kind == 'f' || kind == 'l' { md.size() } else { 0 },
            content: if kind == 'f' { hash_file(&p) } else { 0 },
            target: if kind == 'l' {
                fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
            } else {
                Vec::new()
            },
            rdev: if kind == 'c' || kind == 'b' { md.rdev() } else { 0 },
            nlink: if kind == 'd' { 0 } else { md.nlink() },
            ino: md.ino(),
        };
        out.insert(key.clone(), node);
        if kind == 'd' {
            walk(&p, key, out);
        }
    }
}

/// How strictly two snapshots are compared.
#[derive(Clone, Copy)]
pub struct Compare {
    /// Compare link counts and which names share an inode.
    pub links: bool,
    /// Ignore setuid/setgid on non-directories (erofs-utils 1.5 loses them
    /// because it chowns after chmod).
    pub ignore_suid: bool,
}

/// Asserts that two trees are equal, listing every difference.
pub fn assert_same(expected: &Snapshot, actual: &Snapshot, how: Compare) {
    let mut diffs = Vec::new();
    for (k, e) in expected {
        let name = String::from_utf8_lossy(k);
        let Some(a) = actual.get(k) else {
            diffs.push(format!("missing {name}"));
            continue;
        };
        let (mut e, mut a) = (e.clone(), a.clone());
        if how.ignore_suid && e.kind != 'd' {
            e.mode &= !0o6000;
            a.mode &= !0o6000;
        }
        if !how.links {
            e.nlink = 0;
            a.nlink = 0;
        }
        e.ino = 0;
        a.ino = 0;
        if e != a {
            diffs.push(format!("{name}:\n  expected {e:?}\n  actual   {a:?}"));
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        diffs.push(format!("unexpected {}", String::from_utf8_lossy(k)));
    }
    if how.links {
        // Names sharing an inode must share one on the other side too.
        let group = |s: &Snapshot| {
            let mut by_ino: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
            for (k, n) in s.iter().filter(|(_, n)| n.kind != 'd') {
                by_ino.entry(n.ino).or_default().push(k.clone());
            }
            let mut groups: Vec<Vec<Vec<u8>>> = by_ino.into_values().filter(|g| g.len() > 1).collect();
            groups.sort();
            groups
        };
        if group(expected) != group(actual) {
            diffs.push("hardlink groups differ".into());
        }
    }
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
}

/// All xattrs under `root` as (path, name) -> value, read with python3.
pub fn xattrs(root: &Path) -> BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>> {
    require_tool("python3");
    let script = r#"
import os, sys
root = os.fsencode(sys.argv[1])
def visit(p, rel):
    for name in os.listxattr(p, follow_symlinks=False):
        v = os.getxattr(p, name, follow_symlinks=False)
        print(rel.hex(), os.fsencode(name).hex(), v.hex() or '-')
for dirpath, dirs, files in os.walk(root):
    for n in dirs + files:
        full = os.path.join(dirpath, n)
        visit(full, os.path.relpath(full, root))
"#;
    let out = run(Command::new("python3").arg("-c").arg(script).arg(root));
    let unhex = |s: &str| -> Vec<u8> {
        if s == "-" {
            return Vec::new();
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            ((unhex(f[0]), unhex(f[1])), unhex(f[2]))
        })
        .collect()
}

/// Sets an xattr with python3 (no attr package needed).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    run(Command::new("python3")
        .arg("-c")
        .arg("import os,sys; os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), follow_symlinks=False)")
        .arg(path)
        .arg(name)
        .arg(hex));
}

/// A read-only kernel mount of an EROFS image (loop device), unmounted on drop.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    pub fn new(img: &Path, dir: &Path) -> Mount {
        require_tool("mount");
        fs::create_dir_all(dir).unwrap();
        run(Command::new("mount").args(["-t", "erofs", "-o", "ro,loop"]).arg(img).arg(dir));
        Mount { dir: dir.to_path_buf() }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// `dump.erofs --path=P img` output (inode details: links, mode, xattr size).
pub fn dump_path(img: &Path, path: &str) -> String {
    require_tool("dump.erofs");
    run(Command::new("dump.erofs").arg(format!("--path={path}")).arg(img))
}

pub fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// One member for [`ustar`].
pub struct Member<'a> {
    pub name: &'a [u8],
    pub typeflag: u8,
    pub link: &'a [u8],
    pub mode: u32,
    pub data: &'a [u8],
}

impl<'a> Member<'a> {
    pub fn file(name: &'a str, data: &'a [u8]) -> Self {
        Member {
            name: name.as_bytes(),
            typeflag: b'0',
            link: b"",
            mode: 0o644,
            data,
        }
    }
    pub fn dir(name: &'a str) -> Self {
        Member {
            name: name.as_bytes(),
            typeflag: b'5',
            link: b"",
            mode: 0o755,
            data: b"",
        }
    }
    pub fn hardlink(name: &'a str, target: &'a str) -> Self {
        Member {
            name: name.as_bytes(),
            typeflag: b'1',
            link: target.as_bytes(),
            mode: 0o644,
            data: b"",
        }
    }
}

/// Writes one ustar header block (checksum included).
pub fn ustar_header(m: &Member<'_>, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..m.name.len()].copy_from_slice(m.name);
    h[100..107].copy_from_slice(format!("{:07o}", m.mode).as_bytes());
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"14000000000");
    h[156] = m.typeflag;
    h[157..157 + m.link.len()].copy_from_slice(m.link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    fix_checksum(&mut h);
    h
}

/// Recomputes a header's checksum after it was edited.
pub fn fix_checksum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u32 = h[..512].iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

/// A minimal ustar writer for hand-made (and hand-broken) archives.
pub fn ustar(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        out.extend_from_slice(&ustar_header(m, m.data.len() as u64));
        out.extend_from_slice(m.data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// [`ustar`] without the end-of-archive blocks, to splice archives.
pub fn ustar_members(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = ustar(members);
    out.truncate(out.len() - 1024);
    out
}

/// A pax header member carrying `records` (no end-of-archive blocks).
pub fn pax_header(records: &[String]) -> Vec<u8> {
    let mut body = Vec::new();
    for r in records {
        let mut len = r.len() + 3;
        while format!("{len} {r}\n").len() != len {
            len += 1;
        }
        body.extend_from_slice(format!("{len} {r}\n").as_bytes());
    }
    let mut x = Member::file("PaxHeader", &body);
    x.typeflag = b'x';
    let mut out = ustar(&[x]);
    out.truncate(512 + body.len().next_multiple_of(512));
    out
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

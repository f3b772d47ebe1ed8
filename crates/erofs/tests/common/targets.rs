//! The fuzz targets' bodies, shared by `fuzz/` (which includes this file)
//! and by tests/fuzz_regressions.rs (which replays every finding kept in
//! tests/fuzz/TARGET/): one definition of what must hold for any input.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use erofs::reader::{FileMap, Image};

/// Directories walked at most per image, so the walk of an arbitrary
/// image ends whatever its directories name.
const MAX_VISITS: usize = 10_000;

/// Reads every inode reachable from the root of the image at `path` with
/// every accessor of the reader; returns the first error. On arbitrary
/// bytes errors are fine (panics are not); on images the crate wrote
/// there must be none.
pub fn walk(path: &Path) -> Result<u64, erofs::Error> {
    let img = Image::open(path)?;
    let mut stack = vec![img.inode(img.root_nid())?];
    let (mut seen, mut visits) = (0u64, 0);
    while let Some(dir) = stack.pop() {
        visits += 1;
        if visits > MAX_VISITS {
            break;
        }
        img.xattrs(&dir)?;
        for entry in img.read_dir(&dir)? {
            let inode = img.inode(entry.nid)?;
            seen += 1;
            img.xattrs(&inode)?;
            if inode.is_dir() {
                stack.push(inode);
            } else if inode.is_symlink() {
                img.symlink_target(&inode)?;
            } else if inode.is_regular() {
                if let FileMap::Chunked { chunks, .. } = img.file_map(&inode)? {
                    seen += chunks.len() as u64;
                }
            }
        }
    }
    img.lookup(b"a/b/c")?;
    Ok(seen)
}

/// Counts bytes and drops them: rebuilt tars can be large.
#[derive(Default)]
pub struct Count(pub u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compares what is written with `expected`, byte for byte.
struct Same<'a> {
    expected: &'a [u8],
    pos: usize,
}

impl Write for Same<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let end = self.pos + buf.len();
        assert!(end <= self.expected.len(), "rebuilt tar is longer than the input");
        assert!(buf == &self.expected[self.pos..end], "rebuilt tar differs after byte {}", self.pos);
        self.pos = end;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A fresh temporary directory and an image file in it.
fn temp() -> (tempfile::TempDir, File, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let file = File::create(&path).unwrap();
    (dir, file, path)
}

/// tar_reader: arbitrary bytes as a layer tar give an image or an error.
pub fn tar_reader(data: &[u8]) {
    let (_dir, file, _path) = temp();
    if let Ok(summary) = erofs::build_layer(data, &file, &mut std::io::sink()) {
        assert_eq!(summary.size_bytes, file.metadata().unwrap().len());
    }
}

/// The tar the framing_decode seeds were recorded from (GNU tar, posix
/// format with xattrs).
pub const FRAMING_TAR: &[u8] = include_bytes!("../../../../fuzz/fixtures/framing.tar");

/// The layer image of [`FRAMING_TAR`], built once per process.
pub fn framing_image() -> &'static File {
    static IMAGE: std::sync::OnceLock<(tempfile::TempDir, File)> = std::sync::OnceLock::new();
    &IMAGE
        .get_or_init(|| {
            let (dir, file, path) = temp();
            erofs::build_layer(FRAMING_TAR, &file, &mut std::io::sink()).unwrap();
            (dir, File::open(path).unwrap())
        })
        .1
}

/// framing_decode: arbitrary framing replays or is refused before a
/// byte is written.
pub fn framing_decode(data: &[u8]) {
    let mut out = Count::default();
    match erofs::write_tar(framing_image(), data, &mut out) {
        Ok(n) => assert_eq!(n, out.0),
        Err(_) => assert_eq!(out.0, 0, "refused framing wrote bytes"),
    }
}

/// erofs_reader: arbitrary bytes as an image can be walked and merged
/// as an fsmeta layer, with a result or an error.
pub fn erofs_reader(data: &[u8]) {
    let (dir, mut file, path) = temp();
    file.write_all(data).unwrap();
    let _ = walk(&path);
    let out = File::create(dir.path().join("fsmeta")).unwrap();
    let layer = erofs::FsmetaLayer { path: &path, tag: b"fuzz" };
    let _ = erofs::build_fsmeta(&[layer], &out);
}

/// layer_roundtrip: whatever build_layer accepts reads back, merges,
/// and rebuilds the input tar byte for byte.
pub fn layer_roundtrip(data: &[u8]) {
    let (dir, file, path) = temp();
    let mut framing = Vec::new();
    if erofs::build_layer(data, &file, &mut framing).is_err() {
        return;
    }
    walk(&path).expect("the reader reads what the writer wrote");
    let out = File::create(dir.path().join("fsmeta")).unwrap();
    let layer = erofs::FsmetaLayer { path: &path, tag: b"fuzz" };
    erofs::build_fsmeta(&[layer], &out).expect("fsmeta merges a layer the crate wrote");
    let mut same = Same { expected: data, pos: 0 };
    let n = erofs::write_tar(&File::open(&path).unwrap(), &framing, &mut same).expect("framing replays");
    assert_eq!(n as usize, data.len());
    assert_eq!(same.pos, data.len());
}

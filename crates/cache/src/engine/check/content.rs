//! A full check's reading of content: each artifact against what was true
//! when it was published (see [`crate::seal`]). A layer image whose
//! metadata area starts after its data (as layers were written before
//! small files were packed): the tar rebuilt from it and its framing
//! hashes to the diff_id (every byte of file data), its superblock and
//! metadata area hash to the seal, and every other byte of its data area
//! (block padding) is zero. A layer whose metadata area is the whole file
//! (packed records lie among the data), fsmeta and VMDK: the whole file
//! hashes to its seal, which covers every byte in one pass; a layer's
//! framing must still decompress.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use erofs::reader::{FileMap, Image};
use erofs::BLOCK_SIZE;
use oci::digest::HashingWriter;
use oci::Digest;

use crate::error::{Error, Result};
use crate::seal;

/// What is wrong with a layer image's content (None: nothing), given its
/// framing (zstd-compressed, as stored) and recorded seal.
pub fn layer(path: &Path, diff_id: &Digest, framing: &[u8], recorded: Option<&Digest>) -> Result<Option<String>> {
    let Ok(raw) = zstd::stream::decode_all(framing) else {
        return Ok(Some("its tar framing in the index cannot be decompressed".into()));
    };
    let image = match Image::open(path) {
        Ok(image) => image,
        Err(erofs::Error::Io(e)) => return Err(Error::cache(path)(e)),
        Err(e) => return Ok(Some(format!("unreadable: {e}"))),
    };
    let meta_start = image.meta_blkaddr() * BLOCK_SIZE;
    if let (0, Some(recorded)) = (meta_start, recorded) {
        return whole(path, recorded);
    }
    let file = File::open(path).map_err(Error::cache(path))?;
    let mut out = HashingWriter::new(io::sink());
    match erofs::write_tar(&file, &raw, &mut out) {
        Ok(_) => {}
        Err(erofs::Error::Io(e)) => return Err(Error::cache(path)(e)),
        Err(e) => return Ok(Some(format!("its tar cannot be rebuilt: {e}"))),
    }
    let (rebuilt, _, _) = out.finish();
    if &rebuilt != diff_id {
        return Ok(Some(format!("file data differs from the layer's: its tar hashes to {rebuilt}")));
    }
    if let Some(recorded) = recorded {
        if &seal::layer_of(&file, meta_start).map_err(Error::cache(path))? != recorded {
            return Ok(Some("its superblock or metadata area differs from when it was published".into()));
        }
    }
    padding(path, &file, &image, meta_start)
}

/// What is wrong with a whole-file artifact (None: it hashes to `recorded`).
pub fn whole(path: &Path, recorded: &Digest) -> Result<Option<String>> {
    let (actual, _) = seal::file(path)?;
    Ok((&actual != recorded).then(|| format!("its content hashes to {actual}, not {recorded} as published")))
}

/// Checks that the data area holds nothing but file data: every byte
/// between the first block and the metadata area that no regular file's
/// data covers is zero.
fn padding(path: &Path, file: &File, image: &Image, meta_start: u64) -> Result<Option<String>> {
    let mut extents = match data_extents(image) {
        Ok(extents) => extents,
        Err(e) => return Ok(Some(format!("unreadable: {e}"))),
    };
    extents.sort_unstable();
    let mut cursor = BLOCK_SIZE.min(meta_start);
    let mut buf = Vec::new();
    for (start, len) in extents.into_iter().chain([(meta_start, 0)]) {
        if start > cursor {
            let gap = (start.min(meta_start) - cursor) as usize;
            buf.resize(gap, 0);
            let mut reader = file;
            reader.seek(SeekFrom::Start(cursor)).map_err(Error::cache(path))?;
            reader.read_exact(&mut buf).map_err(Error::cache(path))?;
            if let Some(at) = buf.iter().position(|&b| b != 0) {
                return Ok(Some(format!(
                    "byte {} lies outside any file's data and is not zero",
                    cursor + at as u64
                )));
            }
        }
        cursor = cursor.max(start + len);
    }
    Ok(None)
}

/// (offset, length) of every stored run of regular-file data in the image.
fn data_extents(image: &Image) -> Result<Vec<(u64, u64)>, erofs::Error> {
    let mut extents = Vec::new();
    let mut seen = HashSet::new();
    let mut dirs = vec![image.root_nid()];
    while let Some(nid) = dirs.pop() {
        let dir = image.inode(nid)?;
        for entry in image.read_dir(&dir)? {
            if !seen.insert(entry.nid) {
                continue;
            }
            let inode = image.inode(entry.nid)?;
            if inode.is_dir() {
                dirs.push(entry.nid);
            } else if inode.is_regular() {
                match image.file_map(&inode)? {
                    FileMap::Tail { blkaddr, tail } => {
                        if inode.size >= BLOCK_SIZE {
                            extents.push((blkaddr * BLOCK_SIZE, inode.size - tail.len() as u64));
                        }
                    }
                    FileMap::Contiguous { blkaddr } => extents.push((blkaddr * BLOCK_SIZE, inode.size)),
                    FileMap::Chunked { chunkbits, chunks } => {
                        let chunk = BLOCK_SIZE << chunkbits;
                        for (i, addr) in chunks.iter().enumerate() {
                            let Some(addr) = addr.filter(|a| a.device_id == 0) else { continue };
                            let len = chunk.min(inode.size - i as u64 * chunk);
                            extents.push((addr.blkaddr * BLOCK_SIZE, len));
                        }
                    }
                }
            }
        }
    }
    Ok(extents)
}

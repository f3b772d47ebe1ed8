//! A full check's reading of content: each artifact against what was true
//! when it was published (see [`crate::seal`]). A layer image: the tar
//! rebuilt from it and its framing hashes to the diff_id (every byte of
//! file data), and the rest hashes to its seal (a layer written before
//! packing: its superblock and metadata area, and every other byte of
//! its data area, block padding, must be zero; a packed layer: every
//! byte but file data). fsmeta and VMDK: the whole file hashes to its
//! seal.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use erofs::reader::Image;
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
        match seal::layer_of(&file, &image) {
            Ok(seal) if &seal == recorded => {}
            Ok(_) => {
                return Ok(Some(
                    "its superblock, metadata or padding differs from when it was published".into(),
                ))
            }
            Err(erofs::Error::Io(e)) => return Err(Error::cache(path)(e)),
            Err(e) => return Ok(Some(format!("unreadable: {e}"))),
        }
    }
    if meta_start == 0 {
        // A packed layer's seal covered its padding too.
        return Ok(None);
    }
    padding(path, &file, &image, meta_start)
}

/// What is wrong with a whole-file artifact (None: it hashes to `recorded`).
pub fn whole(path: &Path, recorded: &Digest) -> Result<Option<String>> {
    let (actual, _) = seal::file(path)?;
    Ok((&actual != recorded).then(|| format!("its content hashes to {actual}, not {recorded} as published")))
}

/// Checks that the data area of a layer written before packing holds
/// nothing but file data: every byte between the first block and the
/// metadata area that no regular file's data covers is zero.
fn padding(path: &Path, file: &File, image: &Image, meta_start: u64) -> Result<Option<String>> {
    let mut extents = match seal::data_extents(image) {
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

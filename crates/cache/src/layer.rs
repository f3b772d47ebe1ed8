//! One layer, from source stream to published artifacts: the compressed
//! blob (kept, so `save` can reproduce it) and the layer's EROFS image.
//! The stream is read once. One thread reads, hashes, copies and
//! decompresses; the other hashes the tar (diff_id) and writes EROFS. Nothing
//! is published until both digests and the size match.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use crate::digest::{self, Digest, HashingReader};
use crate::error::{Error, Result};
use crate::index::write::{BlobRecord, LayerRecord};
use crate::manifest::Descriptor;
use crate::source::BlobSource;
use crate::store::{Artifact, Store, TempFile};

const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;

/// Makes sure the blob and the EROFS image of a layer are in the store,
/// converting from `source` only what is missing. Safe to call from several
/// threads or processes at once: one converts, the others wait and reuse.
/// Files it publishes are added to `published`.
pub fn materialize(
    store: &Store,
    source: &dyn BlobSource,
    blob: &Descriptor,
    diff_id: &Digest,
    published: &mut Vec<Artifact>,
) -> Result<LayerRecord> {
    let _lock = store.lock_artifact("layer", diff_id)?;
    let erofs_path = store.layer_path(diff_id);
    let blob_path = store.blob_path(&blob.digest);
    let mut erofs_tmp = if erofs_path.exists() { None } else { Some(store.temp_file()?) };
    let mut blob_tmp = if blob_path.exists() { None } else { Some(store.temp_file()?) };
    if erofs_tmp.is_some() || blob_tmp.is_some() {
        let input = source.open(blob)?;
        let pass = convert(input, blob_tmp.as_mut(), erofs_tmp.as_mut());
        // Attribute a failure in order: the source or the cache failing, then
        // content that is not what its descriptor promised (even when that
        // also broke decompression or the tar), then a bad layer.
        let (blob_digest, blob_size) = pass.blob.map_err(|failure| failure.into_error(source, blob, diff_id))?;
        digest::verify(&format!("layer blob {}", blob.digest), &blob.digest, Some(blob.size), &blob_digest, blob_size)?;
        if let Some(e) = pass.decode_error {
            return Err(Failure::Decompress(e).into_error(source, blob, diff_id));
        }
        let (diff, diff_size) = pass.diff_id.map_err(|failure| failure.into_error(source, blob, diff_id))?;
        digest::verify(&format!("diff_id of layer {}", blob.digest), diff_id, None, &diff, diff_size)?;
        if let Some(tmp) = blob_tmp {
            tmp.publish(&blob_path)?;
            published.push(Artifact::Blob(blob.digest.clone()));
        }
        if let Some(tmp) = erofs_tmp {
            tmp.publish(&erofs_path)?;
            published.push(Artifact::Layer(diff_id.clone()));
        }
    }
    let erofs_size = std::fs::metadata(&erofs_path).map_err(Error::cache(&erofs_path))?.len();
    Ok(LayerRecord {
        diff_id: diff_id.to_string(),
        blob: BlobRecord { digest: blob.digest.to_string(), size: blob.size, media_type: Some(blob.media_type.clone()) },
        erofs_size,
    })
}

/// What one pass over a layer stream measured. The blob is always read to
/// its end, even after the decompressor or the consumer gave up, so a
/// corrupted blob is reported as a digest mismatch.
struct Pass {
    /// Digest and size of the whole blob, unless reading it failed.
    blob: Result<(Digest, u64), Failure>,
    /// Why decompression stopped early, if it did.
    decode_error: Option<io::Error>,
    /// Digest and size of the decompressed stream, or why the consumer failed.
    diff_id: Result<(Digest, u64), Failure>,
}

/// Why a conversion failed, before it is attributed to source, data or cache.
enum Failure {
    /// Reading the source failed.
    Source(io::Error),
    /// The compressed stream is corrupt.
    Decompress(io::Error),
    /// The tar could not become EROFS.
    Layer(erofs::Error),
    /// Writing the cache failed.
    Cache(PathBuf, io::Error),
}

impl Failure {
    fn into_error(self, source: &dyn BlobSource, blob: &Descriptor, diff_id: &Digest) -> Error {
        let layer = format!("{} (diff_id {diff_id})", blob.digest);
        match self {
            Failure::Source(e) => source.read_error(blob, e),
            Failure::Decompress(e) => Error::InvalidLayer { layer, message: format!("cannot decompress: {e}") },
            Failure::Layer(e) => Error::InvalidLayer { layer, message: e.to_string() },
            Failure::Cache(path, e) => Error::Cache { path, source: e },
        }
    }
}

/// Which side of the producer an I/O error came from, carried through the
/// decoders (which pass their input's errors on untouched).
#[derive(Debug)]
enum Origin {
    Source(io::Error),
    Copy(io::Error),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Source(e) | Origin::Copy(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Origin {}

fn tagged(e: io::Error, origin: fn(io::Error) -> Origin) -> io::Error {
    io::Error::new(e.kind(), origin(e))
}

/// Attributes a producer error: the source, the blob copy, or the data itself.
fn classify(e: io::Error, copy_path: &Path) -> Failure {
    if e.get_ref().is_some_and(|inner| inner.is::<Origin>()) {
        let inner = e.into_inner().expect("checked above").downcast::<Origin>().expect("checked above");
        return match *inner {
            Origin::Source(e) => Failure::Source(e),
            Origin::Copy(e) => Failure::Cache(copy_path.to_path_buf(), e),
        };
    }
    Failure::Decompress(e)
}

/// Reads the source, hashes it, and copies it to the blob temp file.
struct Tap<'a, R> {
    inner: HashingReader<R>,
    copy: Option<BufWriter<&'a mut File>>,
}

impl<R: Read> Read for Tap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| tagged(e, Origin::Source))?;
        if let Some(copy) = &mut self.copy {
            copy.write_all(&buf[..n]).map_err(|e| tagged(e, Origin::Copy))?;
        }
        Ok(n)
    }
}

impl<R: Read> Tap<'_, R> {
    /// Reads to the end (trailing bytes still belong to the blob's digest),
    /// flushes the copy, and returns the blob's digest and size.
    fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        if let Some(copy) = self.copy.take() {
            copy.into_inner().map_err(|e| tagged(e.into_error(), Origin::Copy))?;
        }
        Ok(self.inner.finish())
    }
}

/// The decompressor chosen by sniffing the stream's magic bytes (media types lie).
enum Decoder<T: BufRead> {
    Gzip(flate2::bufread::MultiGzDecoder<T>),
    Zstd(zstd::stream::read::Decoder<'static, T>),
    Plain(T),
}

impl<T: BufRead> Decoder<T> {
    fn sniff(mut input: T) -> io::Result<Self> {
        let head = input.fill_buf()?;
        Ok(if head.starts_with(&[0x1f, 0x8b]) {
            Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(input))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(input)?)
        } else {
            Decoder::Plain(input)
        })
    }

}

impl<T: BufRead> Read for Decoder<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Plain(t) => t.read(buf),
        }
    }
}

/// Hands decompressed chunks from the producer thread to the tar consumer;
/// a closed channel is the end of the stream (or the producer's failure,
/// which the caller reports in preference to whatever the consumer saw).
struct ChannelReader {
    chunks: Receiver<Vec<u8>>,
    recycle: Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    let old = std::mem::replace(&mut self.current, chunk);
                    let _ = self.recycle.send(old);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One pass: source → (hash, copy) → decompress ⇒ (hash) → EROFS.
fn convert<R: Read + Send>(input: R, blob_out: Option<&mut TempFile>, erofs_out: Option<&mut TempFile>) -> Pass {
    let blob_path = blob_out.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_default();
    let (chunk_tx, chunk_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let (recycle_tx, recycle_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || produce(input, blob_out.map(TempFile::file), chunk_tx, recycle_rx));
        let reader = ChannelReader { chunks: chunk_rx, recycle: recycle_tx, current: Vec::new(), pos: 0 };
        let diff_id = consume(reader, erofs_out);
        let (blob, decode_error) = match producer.join() {
            Ok(Ok(produced)) => (Ok(produced.blob), produced.decode_error),
            Ok(Err(e)) => (Err(classify(e, &blob_path)), None),
            Err(_) => (Err(Failure::Decompress(io::Error::other("decompressor panicked"))), None),
        };
        Pass { blob, decode_error, diff_id }
    })
}

/// The producer's account of the blob.
struct Produced {
    blob: (Digest, u64),
    decode_error: Option<io::Error>,
}

/// Decompresses `input` into `chunks`, then reads whatever is left of the
/// blob, so its digest covers every byte whether or not decoding finished.
fn produce<R: Read>(input: R, copy: Option<&mut File>, chunks: SyncSender<Vec<u8>>, recycle: Receiver<Vec<u8>>) -> io::Result<Produced> {
    let tap = Tap { inner: HashingReader::new(input), copy: copy.map(|f| BufWriter::with_capacity(CHUNK, f)) };
    let mut input = BufReader::with_capacity(CHUNK, tap);
    let mut decode_error = None;
    match Decoder::sniff(&mut input) {
        Err(e) => decode_error = Some(e),
        Ok(mut decoder) => loop {
            let mut buf = recycle.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            let n = match read_full(&mut decoder, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    decode_error = Some(e);
                    break;
                }
            };
            buf.truncate(n);
            if n == 0 || chunks.send(buf).is_err() {
                break; // done, or the consumer hung up (it reports why)
            }
        },
    }
    drop(chunks);
    if let Some(e) = decode_error {
        // Source and copy failures are not the data's fault: report them as such.
        if e.get_ref().is_some_and(|inner| inner.is::<Origin>()) {
            return Err(e);
        }
        decode_error = Some(e);
    }
    io::copy(&mut input, &mut io::sink())?;
    let blob = input.into_inner().finish()?;
    Ok(Produced { blob, decode_error })
}

fn consume(reader: ChannelReader, erofs_out: Option<&mut TempFile>) -> Result<(Digest, u64), Failure> {
    let mut hashed = HashingReader::new(reader);
    if let Some(out) = erofs_out {
        let path = out.path().to_path_buf();
        erofs::build_layer(&mut hashed, out.file()).map_err(|e| match e {
            erofs::Error::Io(e) => Failure::Cache(path, e),
            other => Failure::Layer(other),
        })?;
    }
    hashed.drain().map_err(Failure::Decompress)?;
    Ok(hashed.finish())
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

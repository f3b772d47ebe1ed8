//! One layer, from source stream to published artifacts: the compressed
//! blob (kept, so `save` can reproduce it) and the layer's EROFS image.
//! The stream is read once, on two threads: the producer reads the source
//! and decompresses; the consumer hashes and copies the blob as it passed
//! the producer, hashes the tar (diff_id) and writes EROFS. Decompression is
//! the slower half, so everything else rides on the other core. Nothing is
//! published until both digests and the size match.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use crate::compression::Decoder;
use crate::digest::{self, Digest, HashingReader, HashingWriter};
use crate::error::{Error, Result};
use crate::index::write::{BlobRecord, LayerRecord};
use crate::manifest::Descriptor;
use crate::source::BlobSource;
use crate::store::{self, Artifact, Store, TempFile};

const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;
/// How much of the stream passes between two writeback kicks.
const WRITEBACK_EVERY: u64 = 64 << 20;

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
        let blame = |failure: Failure| failure.into_error(source, blob, diff_id);
        let (blob_digest, blob_size) = pass.blob.map_err(blame)?;
        digest::verify(
            &format!("layer blob {}", blob.digest),
            &blob.digest,
            Some(blob.size),
            &blob_digest,
            blob_size,
        )?;
        if let Some(e) = pass.decode_error {
            return Err(blame(Failure::Decompress(e)));
        }
        let (diff, diff_size) = pass.diff_id.map_err(blame)?;
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
        blob: BlobRecord {
            digest: blob.digest.to_string(),
            size: blob.size,
            media_type: Some(blob.media_type.clone()),
        },
        erofs_size,
    })
}

/// What one pass over a layer stream measured. The blob is always read to
/// its end, even after the decompressor or the consumer gave up, so a
/// corrupted blob is reported as a digest mismatch.
struct Pass {
    /// Digest and size of the whole blob, unless reading or copying it failed.
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
            Failure::Decompress(e) => Error::InvalidLayer {
                layer,
                message: format!("cannot decompress: {e}"),
            },
            Failure::Layer(e) => Error::InvalidLayer {
                layer,
                message: e.to_string(),
            },
            Failure::Cache(path, e) => Error::Cache { path, source: e },
        }
    }
}

/// A piece of the stream on its way from the producer to the consumer.
enum Chunk {
    /// Bytes of the blob as stored: hashed and copied by the consumer.
    Blob(Vec<u8>),
    /// Bytes of the uncompressed tar.
    Tar(Vec<u8>),
}

/// Why the producer stopped before the end of the blob. Travels inside an
/// `io::Error` through the decoders (which pass their input's errors on
/// untouched), so it is never blamed on the data.
#[derive(Debug)]
enum Stop {
    /// The source failed.
    Source(io::Error),
    /// The consumer hung up; it knows why.
    HungUp,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Source(e) => e.fmt(f),
            Stop::HungUp => f.write_str("layer consumer hung up"),
        }
    }
}

impl std::error::Error for Stop {}

impl Stop {
    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// The stop an I/O error carries, or the error itself (corrupt data).
    fn from_io(e: io::Error) -> Result<Stop, io::Error> {
        if e.get_ref().is_some_and(|inner| inner.is::<Stop>()) {
            return Ok(*e.into_inner().expect("checked above").downcast::<Stop>().expect("checked above"));
        }
        Err(e)
    }
}

/// The producer's view of the source: every byte read is also sent to the
/// consumer as a blob chunk.
struct Forward<'a, R> {
    inner: R,
    chunks: &'a SyncSender<Chunk>,
    recycle: &'a Receiver<Vec<u8>>,
}

impl<R: Read> Read for Forward<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| Stop::Source(e).into_io())?;
        if n > 0 {
            let mut copy = self.recycle.try_recv().unwrap_or_default();
            copy.clear();
            copy.extend_from_slice(&buf[..n]);
            self.chunks.send(Chunk::Blob(copy)).map_err(|_| Stop::HungUp.into_io())?;
        }
        Ok(n)
    }
}

/// What the producer reports: why decoding stopped early, if it did.
type Produced = Result<Option<io::Error>, Stop>;

/// Reads and decompresses the source, sending blob and tar chunks. After the
/// tar ends (or decoding fails, or the consumer asks), the rest of the blob
/// is still forwarded, so its digest covers every byte.
fn produce<R: Read>(input: R, chunks: SyncSender<Chunk>, recycle: Receiver<Vec<u8>>, skip_decode: &AtomicBool) -> Produced {
    let mut input = BufReader::with_capacity(
        CHUNK,
        Forward {
            inner: input,
            chunks: &chunks,
            recycle: &recycle,
        },
    );
    let decoded = (|| -> io::Result<()> {
        let mut decoder = Decoder::sniff(&mut input)?;
        while !skip_decode.load(Ordering::Relaxed) {
            let mut buf = recycle.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            let n = read_full(&mut decoder, &mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            chunks.send(Chunk::Tar(buf)).map_err(|_| Stop::HungUp.into_io())?;
        }
        Ok(())
    })();
    let decode_error = match decoded.map_err(Stop::from_io) {
        Ok(()) => None,
        Err(Ok(stop)) => return Err(stop),
        Err(Err(corrupt)) => Some(corrupt),
    };
    // Whatever follows the compressed data still belongs to the blob's digest.
    io::copy(&mut input, &mut io::sink()).map_err(|e| Stop::from_io(e).unwrap_or_else(Stop::Source))?;
    Ok(decode_error)
}

/// The consumer's view of the stream: tar bytes to read; blob chunks are
/// hashed and copied as they pass.
struct Stream<'a> {
    chunks: Receiver<Chunk>,
    recycle: Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    blob: HashingWriter<Box<dyn Write + 'a>>,
    copy_error: Option<io::Error>,
    /// The files being written, whose writeback starts as the stream goes.
    outputs: Vec<&'a File>,
    since_writeback: u64,
}

impl Stream<'_> {
    /// Handles one chunk; false when the stream is over.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.since_writeback >= WRITEBACK_EVERY {
            self.outputs.iter().for_each(|f| store::start_writeback(f));
            self.since_writeback = 0;
        }
        match self.chunks.recv() {
            Ok(Chunk::Tar(chunk)) => {
                self.since_writeback += chunk.len() as u64;
                let old = std::mem::replace(&mut self.current, chunk);
                let _ = self.recycle.send(old);
                self.pos = 0;
                Ok(true)
            }
            Ok(Chunk::Blob(chunk)) => {
                if let Err(e) = self.blob.write_all(&chunk) {
                    let message = e.to_string();
                    self.copy_error = Some(e);
                    return Err(io::Error::other(message));
                }
                let _ = self.recycle.send(chunk);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Consumes the rest of the stream (hashing the blob, dropping the tar)
    /// and returns the blob's digest and size, or why copying it failed.
    fn finish(mut self) -> Result<(Digest, u64), io::Error> {
        if let Some(e) = self.copy_error.take() {
            return Err(e); // dropping the channel tells the producer to stop
        }
        loop {
            match self.next_chunk() {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => return Err(self.copy_error.take().expect("only copying fails")),
            }
        }
        let (digest, size, mut copy) = self.blob.finish();
        copy.flush()?;
        Ok((digest, size))
    }
}

impl Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One pass: source ⇒ decompress ⇒ (blob hash + copy, tar hash, EROFS).
fn convert<R: Read + Send>(input: R, blob_out: Option<&mut TempFile>, erofs_out: Option<&mut TempFile>) -> Pass {
    let blob_path = blob_out.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_default();
    let (chunk_tx, chunk_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let (recycle_tx, recycle_rx) = mpsc::channel();
    let skip_decode = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let producer = scope.spawn(|| produce(input, chunk_tx, recycle_rx, &skip_decode));
        let blob_file: Option<&File> = blob_out.map(|t| &*t.file());
        let erofs_path = erofs_out.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_default();
        let erofs_file: Option<&File> = erofs_out.map(|t| &*t.file());
        let copy: Box<dyn Write> = match blob_file {
            Some(f) => Box::new(BufWriter::with_capacity(CHUNK, f)),
            None => Box::new(io::sink()),
        };
        let stream = Stream {
            chunks: chunk_rx,
            recycle: recycle_tx,
            current: Vec::new(),
            pos: 0,
            blob: HashingWriter::new(copy),
            copy_error: None,
            outputs: blob_file.into_iter().chain(erofs_file).collect(),
            since_writeback: 0,
        };
        let mut tar = HashingReader::new(stream);
        let built = match erofs_file {
            Some(out) => erofs::build_layer(&mut tar, out).map(drop).map_err(|e| match e {
                erofs::Error::Io(e) => Failure::Cache(erofs_path, e),
                other => Failure::Layer(other),
            }),
            None => Ok(()),
        };
        if built.is_err() {
            skip_decode.store(true, Ordering::Relaxed);
        }
        let drained = tar.drain();
        let (diff, diff_size, stream) = tar.into_parts();
        let copy_failed = stream.copy_error.is_some();
        let blob = stream.finish().map_err(|e| Failure::Cache(blob_path, e));
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(Stop::Source(io::Error::other("decompressor panicked"))));
        let (blob, decode_error) = match (produced, blob) {
            (Err(Stop::Source(e)), _) => (Err(Failure::Source(e)), None),
            (_, Err(copy)) => (Err(copy), None),
            (Err(Stop::HungUp), Ok(_)) => (Err(Failure::Decompress(io::Error::other("layer stream ended early"))), None),
            (Ok(decode_error), Ok(blob)) => (Ok(blob), decode_error),
        };
        let diff_id = match (built, drained) {
            (Err(failure), _) => Err(failure),
            (Ok(()), Err(e)) if !copy_failed => Err(Failure::Decompress(e)),
            _ => Ok((diff, diff_size)),
        };
        Pass {
            blob,
            decode_error,
            diff_id,
        }
    })
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

//! One layer, from source stream to published artifacts: the layer's EROFS
//! image, and in the index the tar framing that rebuilds its exact tar
//! stream (so `save` reproduces the diff_id without keeping the compressed
//! blob, as containers/storage does with tar-split). The stream is read
//! once, on three threads: the producer reads the source and decompresses;
//! the hasher hashes the blob as it passed the producer and the tar
//! (diff_id); the consumer parses the tar and writes EROFS. Which of them
//! is slowest depends on the layer (decompression for large files, the
//! writer for many small ones); hashing on a stage of its own lets the
//! scheduler give it whichever core is idle. Nothing is published until
//! both digests and the size match.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use oci::digest::{self, HashingWriter};
use oci::progress::{LayerStep, Progress, Sink};
use oci::{Descriptor, Digest};

use super::compression::Decoder;
use crate::error::{Error, Result};
use crate::index::rows::LayerRow;
use crate::index::write::LayerRecord;
use crate::index::{read, write};
use crate::ingest::Lease;
use crate::seal::Sealing;
use crate::source::BlobSource;
use crate::store::{Artifact, SpaceWatch, TempFile};

const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;
/// How much of the stream passes between two writeback kicks.
const WRITEBACK_EVERY: u64 = 8 << 20;
/// zstd level for framing. The consumer thread (tar, framing, image) is
/// what bounds the conversion of a layer of small files, and level 3 took
/// a sixth of it there; level 1 takes half that, for framing 3% larger
/// (742 KB against 722 KB for the 15 MB of headers of 30,000 entries).
const FRAMING_LEVEL: i32 = 1;
/// Largest framing kept for a layer: 50 times that of a 130,000-file /usr.
const MAX_FRAMING: usize = 256 << 20;

/// Makes sure the layer with `diff_id` is in the cache (its EROFS image on
/// disk, its row and framing in the index), converting it from `source` only
/// when it is not. Safe to call from several threads or processes at once:
/// one converts, the others wait and reuse. The row is written as soon as
/// the image is published, so concurrent ingests reuse it; it stays
/// unreferenced until a manifest is recorded (whose commit first makes the
/// rename durable), and the collector, held off by the lease meanwhile,
/// takes it back if none ever is. Reports each step to `progress`. A layer
/// converted now comes with its seal still being taken ([`Sealing`]), for
/// the caller to record once it has built what it needs the layer for.
pub fn materialize(
    lease: &Lease<'_>,
    source: &dyn BlobSource,
    blob: &Descriptor,
    diff_id: &Digest,
    progress: &Sink,
) -> Result<(LayerRecord, Option<Sealing>)> {
    let store = lease.store();
    let _lock = store.lock_artifact("layer", diff_id)?;
    let erofs_path = store.layer_path(diff_id);
    let known = lease.index().read(|conn| read::layer(conn, diff_id))?;
    let step = |step| {
        progress(Progress::Layer {
            digest: blob.digest.clone(),
            diff_id: diff_id.clone(),
            step,
        })
    };
    let (row, sealing) = match known {
        Some(row) if erofs_path.exists() => {
            step(LayerStep::Cached);
            (row, None)
        }
        _ => {
            let mut erofs_tmp = store.temp_file()?;
            let input = source.open(blob)?;
            let pass = convert(
                input,
                &mut erofs_tmp,
                store.watch_space(format!("the EROFS image of layer {diff_id}")),
            );
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
            let (diff, diff_size, framing) = pass.diff_id.map_err(blame)?;
            digest::verify(&format!("diff_id of layer {}", blob.digest), diff_id, None, &diff, diff_size)?;
            step(LayerStep::Verified);
            store.ensure_space(framing.len() as u64, &format!("the framing of layer {diff_id}"))?;
            let erofs_size = erofs_tmp.file().metadata().map_err(Error::cache(erofs_tmp.path()))?.len();
            let sealing = Sealing::start(erofs_tmp.path(), &erofs_path, diff_id)?;
            erofs_tmp.publish(&erofs_path)?;
            lease.published(Artifact::Layer(diff_id.clone()));
            // Lost in a power cut, the row only means converting again.
            lease
                .index()
                .write_lazily(|tx| write::record_layer(tx, diff_id, erofs_size, &framing))?;
            step(LayerStep::Converted);
            let row = LayerRow {
                erofs_size,
                framing_size: framing.len() as u64,
            };
            (row, Some(sealing))
        }
    };
    let record = LayerRecord {
        diff_id: diff_id.clone(),
        blob: blob.clone(),
        erofs_size: row.erofs_size,
        framing_size: row.framing_size,
    };
    Ok((record, sealing))
}

/// What one pass over a layer stream measured. The blob is always read to
/// its end, even after the decompressor or the consumer gave up, so a
/// corrupted blob is reported as a digest mismatch.
struct Pass {
    /// Digest and size of the whole blob, unless reading it failed.
    blob: Result<(Digest, u64), Failure>,
    /// Why decompression stopped early, if it did.
    decode_error: Option<io::Error>,
    /// Digest and size of the decompressed stream and its framing
    /// (compressed), or why the consumer failed.
    diff_id: Result<(Digest, u64, Vec<u8>), Failure>,
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

/// The digests and sizes the hasher measured: the blob's and the tar's.
struct Hashed {
    blob: (Digest, u64),
    tar: (Digest, u64),
}

/// The middle stage: hashes every chunk as it passes and forwards the tar
/// to the consumer for as long as it listens; what follows is only hashed,
/// so both digests cover every byte however early the consumer stopped.
fn hash(chunks: Receiver<Chunk>, tar_out: SyncSender<Vec<u8>>, recycle: Sender<Vec<u8>>) -> Hashed {
    let (mut blob, mut tar) = (HashingWriter::new(io::sink()), HashingWriter::new(io::sink()));
    let mut listening = true;
    for chunk in chunks {
        let spent = match chunk {
            Chunk::Blob(bytes) => {
                blob.write_all(&bytes).expect("hashing into a sink cannot fail");
                bytes
            }
            Chunk::Tar(bytes) => {
                tar.write_all(&bytes).expect("hashing into a sink cannot fail");
                if !listening {
                    bytes
                } else if let Err(mpsc::SendError(bytes)) = tar_out.send(bytes) {
                    listening = false;
                    bytes
                } else {
                    continue;
                }
            }
        };
        let _ = recycle.send(spent);
    }
    let measured = |h: HashingWriter<io::Sink>| {
        let (digest, size, _) = h.finish();
        (digest, size)
    };
    Hashed {
        blob: measured(blob),
        tar: measured(tar),
    }
}

/// The consumer's view of the stream: the tar bytes the hasher forwards.
struct Stream<'a> {
    chunks: Receiver<Vec<u8>>,
    recycle: Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    /// The image being written, whose writeback starts as the stream goes.
    output: &'a File,
    since_writeback: u64,
    /// The free space, watched while the image grows with the tar.
    space: SpaceWatch,
}

impl Stream<'_> {
    /// Takes the next tar chunk; false when the stream is over. Fails when
    /// the image, which grows with the tar, would not fit on the disk.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.since_writeback >= WRITEBACK_EVERY {
            crate::os::start_writeback(self.output);
            self.since_writeback = 0;
        }
        let Ok(chunk) = self.chunks.recv() else { return Ok(false) };
        self.since_writeback += chunk.len() as u64;
        self.space.wrote(chunk.len() as u64)?;
        let old = std::mem::replace(&mut self.current, chunk);
        let _ = self.recycle.send(old);
        self.pos = 0;
        Ok(true)
    }
}

/// The chunks are the tar reader's buffer: the layer builder copies file
/// data from them straight into the image.
impl BufRead for Stream<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.current.len() {
            if !self.next_chunk()? {
                break;
            }
        }
        Ok(&self.current[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.current.len());
    }
}

impl Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let chunk = self.fill_buf()?;
            let n = buf.len().min(chunk.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

/// One pass: source ⇒ decompress ⇒ hash (blob, tar) ⇒ EROFS and framing,
/// stopping the image before it would take the disk's reserve (`space`).
fn convert<R: Read + Send>(input: R, erofs_out: &mut TempFile, space: SpaceWatch) -> Pass {
    let (chunk_tx, chunk_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let (tar_tx, tar_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let (recycle_tx, recycle_rx) = mpsc::channel();
    let skip_decode = AtomicBool::new(false);
    let erofs_path = erofs_out.path().to_path_buf();
    let erofs_file: &File = erofs_out.file();
    std::thread::scope(|scope| {
        let producer = scope.spawn(|| produce(input, chunk_tx, recycle_rx, &skip_decode));
        let hasher_recycle = recycle_tx.clone();
        let hasher = scope.spawn(move || hash(chunk_rx, tar_tx, hasher_recycle));
        let mut stream = Stream {
            chunks: tar_rx,
            recycle: recycle_tx,
            current: Vec::new(),
            pos: 0,
            output: erofs_file,
            since_writeback: 0,
            space,
        };
        let built = build(&mut stream, erofs_file, MAX_FRAMING).map_err(|e| match e {
            erofs::Error::Io(e) => Failure::Cache(erofs_path, e),
            other => Failure::Layer(other),
        });
        if built.is_err() {
            skip_decode.store(true, Ordering::Relaxed);
        }
        // Hanging up: what is left of the tar is only hashed, not written.
        drop(stream);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(Stop::Source(io::Error::other("decompressor panicked"))));
        let Ok(hashed) = hasher.join() else {
            let panicked = || Failure::Source(io::Error::other("layer hasher panicked"));
            return Pass {
                blob: Err(panicked()),
                decode_error: None,
                diff_id: Err(panicked()),
            };
        };
        let (blob, decode_error) = match produced {
            Err(Stop::Source(e)) => (Err(Failure::Source(e)), None),
            Err(Stop::HungUp) => (Err(Failure::Decompress(io::Error::other("layer stream ended early"))), None),
            Ok(decode_error) => (Ok(hashed.blob), decode_error),
        };
        let (diff, diff_size) = hashed.tar;
        Pass {
            blob,
            decode_error,
            diff_id: built.map(|framing| (diff, diff_size, framing)),
        }
    })
}

/// Writes the layer image and returns its framing, zstd-compressed, of at
/// most `max_framing` bytes.
fn build(tar: &mut impl BufRead, out: &File, max_framing: usize) -> Result<Vec<u8>, erofs::Error> {
    let too_large = |e: io::Error| match e.get_ref().is_some_and(|inner| inner.is::<FramingTooLarge>()) {
        true => erofs::Error::TooLarge {
            message: format!("the tar carries more than {max_framing} bytes (compressed) that no file holds"),
        },
        false => erofs::Error::Io(e),
    };
    let capped = Capped {
        bytes: Vec::new(),
        max: max_framing,
    };
    let mut framing = zstd::stream::write::Encoder::new(capped, FRAMING_LEVEL)?;
    erofs::build_layer(tar, out, &mut framing).map_err(|e| match e {
        erofs::Error::Io(e) => too_large(e),
        other => other,
    })?;
    Ok(framing.finish().map_err(too_large)?.bytes)
}

/// The framing of a layer, refused past `max` bytes. Headers compress about
/// tenfold, so a real layer stays far below; only bytes the image does not
/// hold (data of entries it skips, bytes after the end of the archive) can
/// grow it, and memory must not grow with them.
struct Capped {
    bytes: Vec<u8>,
    max: usize,
}

/// Why framing stopped growing; travels inside an `io::Error`.
#[derive(Debug)]
struct FramingTooLarge;

impl std::fmt::Display for FramingTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("layer framing too large")
    }
}

impl std::error::Error for FramingTooLarge {}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.max {
            return Err(io::Error::other(FramingTooLarge));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_past_its_cap_is_a_bad_layer_not_a_cache_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = File::create(dir.path().join("img")).unwrap();
        // An empty archive followed by 1 MiB that compresses badly.
        let mut tar = vec![0u8; 1024];
        let mut x = 1u64;
        tar.extend((0..1 << 20).map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 56) as u8
        }));
        match build(&mut &tar[..], &out, 64 << 10) {
            Err(erofs::Error::TooLarge { message }) => assert!(message.contains("65536"), "{message}"),
            other => panic!("expected TooLarge, got {:?}", other.map(|f| f.len())),
        }
        assert!(build(&mut &tar[..], &File::create(dir.path().join("img2")).unwrap(), 4 << 20).is_ok());
    }
}

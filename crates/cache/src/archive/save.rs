//! Writing archives that skopeo, Docker and `load` read back: docker-archive
//! (layer tars named by diff_id, as `docker save` and skopeo write them) or
//! oci-archive (uncompressed layers, so a manifest of its own, as
//! `podman save` writes them). Each layer's tar is rebuilt from its EROFS
//! image and framing and checked against its diff_id; the config is written
//! as cached, so its digest and diff_ids are the original ones. The archive
//! is written next to its destination and renamed into place when complete.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::digest::{self, Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor};
use crate::reference::Reference;
use crate::store::Store;

/// Which archive format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `docker save` layout: manifest.json, `<config>.json`, `<diff_id>.tar`.
    Docker,
    /// OCI image layout in a tar: oci-layout, index.json, blobs/.
    Oci,
}

/// One cached image to write, with the references to name it by.
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// Names to record in the archive.
    pub references: Vec<Reference>,
    /// The cached manifest's digest, which identifies the image.
    pub manifest: Digest,
    /// The cached config.
    pub config: Descriptor,
    /// The config's bytes, as distributed.
    pub config_bytes: Vec<u8>,
    /// Each layer's diff_id and framing (zstd-compressed), bottom to top.
    pub layers: Vec<(Digest, Vec<u8>)>,
}

/// Writes `images` to `output` in `format`.
pub fn save(store: &Store, images: &[SaveImage], output: &Path, format: Format) -> Result<()> {
    let partial = Partial::create(output)?;
    let mut builder = tar::Builder::new(BufWriter::new(partial.file.try_clone().map_err(Error::cache(&partial.path))?));
    let mut writer = ArchiveWriter {
        store,
        builder: &mut builder,
        sizes: HashMap::new(),
        output,
    };
    match format {
        Format::Docker => writer.docker(images)?,
        Format::Oci => writer.oci(images)?,
    }
    let inner = builder.into_inner().map_err(|e| write_error(output, e))?;
    inner.into_inner().map_err(|e| write_error(output, e.into_error()))?;
    partial.finish()
}

struct ArchiveWriter<'a> {
    store: &'a Store,
    builder: &'a mut tar::Builder<BufWriter<File>>,
    /// Members written so far, with their sizes.
    sizes: HashMap<String, u64>,
    output: &'a Path,
}

impl ArchiveWriter<'_> {
    fn docker(&mut self, images: &[SaveImage]) -> Result<()> {
        let mut entries = Vec::new();
        for image in images {
            let config_name = format!("{}.json", image.config.digest.hex());
            self.once(&config_name, |w| w.bytes(&config_name, &image.config_bytes))?;
            let mut layers = Vec::new();
            for (diff_id, framing) in &image.layers {
                let name = format!("{}.tar", diff_id.hex());
                self.once(&name, |w| w.layer(diff_id, framing, &name).map(drop))?;
                layers.push(name);
            }
            let tags: Vec<String> = image
                .references
                .iter()
                .filter(|r| r.tag().is_some() && r.digest().is_none())
                .map(ToString::to_string)
                .collect();
            entries.push(json!({ "Config": config_name, "RepoTags": tags, "Layers": layers }));
        }
        self.bytes("manifest.json", &serde_json::to_vec(&entries).expect("json serializes"))
    }

    fn oci(&mut self, images: &[SaveImage]) -> Result<()> {
        self.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut manifests = Vec::new();
        for image in images {
            let manifest = self.oci_manifest(image)?;
            for reference in &image.references {
                manifests.push(json!({
                    "mediaType": manifest::OCI_MANIFEST,
                    "digest": manifest.digest.as_str(),
                    "size": manifest.size,
                    "annotations": { manifest::REF_NAME_ANNOTATION: reference.to_string() },
                }));
            }
        }
        let index = json!({ "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": manifests });
        self.bytes("index.json", &serde_json::to_vec(&index).expect("json serializes"))
    }

    /// Writes the image's config, layers (uncompressed, so each is named by
    /// its diff_id) and an OCI manifest listing them.
    fn oci_manifest(&mut self, image: &SaveImage) -> Result<Descriptor> {
        let config_name = blob_name(&image.config.digest);
        self.once(&config_name, |w| w.bytes(&config_name, &image.config_bytes))?;
        let mut layers = Vec::new();
        for (diff_id, framing) in &image.layers {
            let name = blob_name(diff_id);
            let size = match self.sizes.get(&name) {
                Some(&size) => size,
                None => self.layer(diff_id, framing, &name)?,
            };
            layers.push(json!({ "mediaType": manifest::OCI_LAYER_TAR, "digest": diff_id.as_str(), "size": size }));
        }
        let config = &image.config;
        let converted = json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": { "mediaType": manifest::OCI_CONFIG, "digest": config.digest.as_str(), "size": config.size },
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&converted).expect("json serializes");
        let digest = Digest::of(&bytes);
        let name = blob_name(&digest);
        self.once(&name, |w| w.bytes(&name, &bytes))?;
        Ok(Descriptor {
            media_type: manifest::OCI_MANIFEST.into(),
            digest,
            size: bytes.len() as u64,
        })
    }

    /// Writes member `name` with `write` unless it is in the archive already.
    fn once(&mut self, name: &str, write: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        if self.sizes.contains_key(name) {
            return Ok(());
        }
        write(self)
    }

    /// Rebuilds a layer's tar into a temp file (a tar header needs the size
    /// up front), checks it against the diff_id, then appends it as `name`.
    /// Returns its size.
    fn layer(&mut self, diff_id: &Digest, framing: &[u8], name: &str) -> Result<u64> {
        let path = self.store.layer_path(diff_id);
        let image = File::open(&path).map_err(Error::cache(&path))?;
        let mut tmp = self.store.temp_file()?;
        let tmp_path = tmp.path().to_path_buf();
        let mut write_error = None;
        let mut out = HashingWriter::new(BufWriter::new(Blame {
            inner: tmp.file(),
            error: &mut write_error,
        }));
        let rebuilt = zstd::stream::decode_all(framing)
            .map_err(erofs::Error::Io)
            .and_then(|framing| erofs::write_tar(&image, &framing, &mut out))
            .and_then(|_| out.flush().map_err(erofs::Error::Io));
        let (actual, size, _) = out.finish();
        if let Some(e) = write_error {
            return Err(Error::cache(&tmp_path)(e));
        }
        rebuilt.map_err(|e| match e {
            erofs::Error::Io(e) => Error::cache(&path)(e),
            other => Error::Cache {
                path: path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, format!("cannot rebuild the layer's tar: {other}")),
            },
        })?;
        digest::verify(
            &format!("layer {diff_id} rebuilt from {}", path.display()),
            diff_id,
            None,
            &actual,
            size,
        )?;
        let reopened = File::open(&tmp_path).map_err(Error::cache(&tmp_path))?;
        self.append_from(name, size, reopened, &tmp_path)?;
        Ok(size)
    }

    fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.append(name, bytes.len() as u64, bytes)
    }

    /// Appends a member read from the cache file `source`, blaming a read
    /// failure on it and a write failure on the archive.
    fn append_from(&mut self, name: &str, size: u64, source: File, source_path: &Path) -> Result<()> {
        let mut read_error = None;
        let reader = Blame {
            inner: source,
            error: &mut read_error,
        };
        let appended = self.append(name, size, reader);
        match read_error {
            Some(e) => Err(Error::cache(source_path)(e)),
            None => appended,
        }
    }

    fn append(&mut self, name: &str, size: u64, data: impl Read) -> Result<()> {
        self.sizes.insert(name.to_string(), size);
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        self.builder
            .append_data(&mut header, name, data)
            .map_err(|e| write_error(self.output, e))
    }
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Keeps a reader's or writer's failure aside, so it is not mistaken for
/// the other side's.
struct Blame<'a, T> {
    inner: T,
    error: &'a mut Option<io::Error>,
}

impl<T> Blame<'_, T> {
    fn keep<V>(&mut self, result: io::Result<V>) -> io::Result<V> {
        result.inspect_err(|e| *self.error = Some(io::Error::new(e.kind(), e.to_string())))
    }
}

impl<R: Read> Read for Blame<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        self.keep(result)
    }
}

impl<W: Write> Write for Blame<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.keep(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.keep(result)
    }
}

fn write_error(output: &Path, e: io::Error) -> Error {
    Error::archive(output, format!("cannot write: {e}"))
}

/// The archive being written beside its destination; removed unless finished.
struct Partial {
    path: PathBuf,
    dest: PathBuf,
    file: File,
    done: bool,
}

impl Partial {
    /// A new file beside `dest`, under a name nobody else uses: created
    /// exclusively, so a planted symlink or a concurrent save is never
    /// written through.
    fn create(dest: &Path) -> Result<Partial> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = dest
            .file_name()
            .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", dest.display())))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = dest.with_file_name(format!(
            ".{}.{}-{}-{nanos:x}.partial",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| write_error(dest, e))?;
        Ok(Partial {
            path,
            dest: dest.to_path_buf(),
            file,
            done: false,
        })
    }

    fn finish(mut self) -> Result<()> {
        crate::os::sync_file(&self.file).map_err(|e| write_error(&self.dest, e))?;
        crate::os::rename(&self.path, &self.dest).map_err(|e| write_error(&self.dest, e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

//! Writing archives that skopeo, Docker and `load` read back: docker-archive
//! (uncompressed layer tars named by diff_id, as `docker save` and skopeo
//! write them) or oci-archive (the blobs as cached). The archive is written
//! next to its destination and renamed into place when complete.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::compression::Decoder;
use crate::digest::Digest;
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
    /// The cached manifest.
    pub manifest: Descriptor,
    /// The cached config.
    pub config: Descriptor,
    /// Each layer's cached blob and diff_id, bottom to top.
    pub layers: Vec<(Descriptor, Digest)>,
}

/// Writes `images` to `output` in `format`.
pub fn save(store: &Store, images: &[SaveImage], output: &Path, format: Format) -> Result<()> {
    let partial = Partial::create(output)?;
    let mut builder = tar::Builder::new(BufWriter::new(partial.file.try_clone().map_err(Error::cache(&partial.path))?));
    let mut writer = ArchiveWriter {
        store,
        builder: &mut builder,
        written: HashSet::new(),
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
    written: HashSet<String>,
    output: &'a Path,
}

impl ArchiveWriter<'_> {
    fn docker(&mut self, images: &[SaveImage]) -> Result<()> {
        let mut entries = Vec::new();
        for image in images {
            let config_name = format!("{}.json", image.config.digest.hex());
            self.blob_as(&image.config.digest, &config_name)?;
            let mut layers = Vec::new();
            for (blob, diff_id) in &image.layers {
                let name = format!("{}.tar", diff_id.hex());
                self.uncompressed_layer(blob, &name)?;
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
            self.blob_as(&image.config.digest, &blob_name(&image.config.digest))?;
            for (blob, _) in &image.layers {
                self.blob_as(&blob.digest, &blob_name(&blob.digest))?;
            }
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

    /// Writes the image's manifest as an OCI manifest, converting a Docker
    /// schema 2 one (same config and layers, OCI media types).
    fn oci_manifest(&mut self, image: &SaveImage) -> Result<Descriptor> {
        if image.manifest.media_type == manifest::OCI_MANIFEST {
            self.blob_as(&image.manifest.digest, &blob_name(&image.manifest.digest))?;
            return Ok(image.manifest.clone());
        }
        let descriptor = |d: &Descriptor, media_type: &str| json!({ "mediaType": media_type, "digest": d.digest.as_str(), "size": d.size });
        let layers: Vec<_> = image
            .layers
            .iter()
            .map(|(blob, _)| descriptor(blob, oci_layer_type(&blob.media_type)))
            .collect();
        let converted = json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": descriptor(&image.config, manifest::OCI_CONFIG),
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&converted).expect("json serializes");
        let digest = Digest::of(&bytes);
        self.bytes(&blob_name(&digest), &bytes)?;
        Ok(Descriptor {
            media_type: manifest::OCI_MANIFEST.into(),
            digest,
            size: bytes.len() as u64,
        })
    }

    fn blob_as(&mut self, digest: &Digest, name: &str) -> Result<()> {
        if !self.written.insert(name.to_string()) {
            return Ok(());
        }
        let path = self.store.blob_path(digest);
        let file = File::open(&path).map_err(Error::cache(&path))?;
        let size = file.metadata().map_err(Error::cache(&path))?.len();
        self.append_from(name, size, file, &path)
    }

    /// Docker archives hold uncompressed layers: decompress into a temp file
    /// (a tar header needs the size up front), then append it.
    fn uncompressed_layer(&mut self, blob: &Descriptor, name: &str) -> Result<()> {
        if !self.written.insert(name.to_string()) {
            return Ok(());
        }
        let path = self.store.blob_path(&blob.digest);
        let file = File::open(&path).map_err(Error::cache(&path))?;
        let mut decoder = Decoder::sniff(io::BufReader::new(file)).map_err(Error::cache(&path))?;
        let (tmp, size) = self.store.temp_file_from(&mut decoder, Error::cache(&path))?;
        let reopened = File::open(tmp.path()).map_err(Error::cache(tmp.path()))?;
        self.append_from(name, size, reopened, tmp.path())
    }

    fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.append(name, bytes.len() as u64, bytes)
    }

    /// Appends a member read from the cache file `source`, blaming a read
    /// failure on it and a write failure on the archive.
    fn append_from(&mut self, name: &str, size: u64, source: File, source_path: &Path) -> Result<()> {
        let mut read_error = None;
        let reader = ReadBlame {
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

fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar" => manifest::OCI_LAYER_TAR,
        other => other,
    }
}

/// Keeps a reader's failure aside, so it is not mistaken for the archive's.
struct ReadBlame<'a, R> {
    inner: R,
    error: &'a mut Option<io::Error>,
}

impl<R: Read> Read for ReadBlame<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|e| *self.error = Some(io::Error::new(e.kind(), e.to_string())))
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
        self.file.sync_all().map_err(|e| write_error(&self.dest, e))?;
        fs::rename(&self.path, &self.dest).map_err(|e| write_error(&self.dest, e))?;
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

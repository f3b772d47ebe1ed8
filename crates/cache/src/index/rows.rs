//! Rows as the index hands them out: named, typed records instead of
//! tuples of strings, so digests and references are parsed once, where
//! they leave SQLite, and a corrupt row is an index error right there.

use oci::{Digest, Reference};

/// A reference and the manifest it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefRow {
    /// The stored (normalized) spelling.
    pub reference: Reference,
    /// The manifest.
    pub manifest: Digest,
}

/// A converted layer: its image on disk and its framing in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerRow {
    /// Bytes of the layer's EROFS image.
    pub erofs_size: u64,
    /// Bytes of its (compressed) framing.
    pub framing_size: u64,
}

/// A manifest's root-disk artifacts, as recorded (None: not built).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskRow {
    /// Bytes of the fsmeta image.
    pub fsmeta: Option<u64>,
    /// Bytes of the VMDK descriptor.
    pub vmdk: Option<u64>,
}

/// A stored manifest or config document's descriptor fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRow {
    /// Its size in bytes.
    pub size: u64,
    /// The media type its referrer declared.
    pub media_type: Option<String>,
}

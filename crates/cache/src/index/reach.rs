//! Reachability in the index, for the collector and for an ingest taking
//! back what it published. Roots are image references, sandboxes and
//! snapshots; a manifest no root reaches is unreachable, and so are the
//! layers, configs and documents only unreachable manifests use. These
//! statements find and delete such rows; which to run, and when files go,
//! is the collector's business ([`crate::gc`]).
//!
//! Deletions name children before parents explicitly, because the
//! collector runs them with foreign keys off ([`super::Index::write_bulk`]).

use std::collections::BTreeSet;

use oci::Digest;
use rusqlite::{Connection, OptionalExtension, Transaction};

use super::rows::RefRow;
use crate::error::Result;
use crate::store::{Artifact, Key, Kind};
use crate::DigestSet;

const UNROOTED: &str = "NOT EXISTS (SELECT 1 FROM image_refs WHERE manifest_digest = manifests.digest) \
     AND NOT EXISTS (SELECT 1 FROM sandboxes WHERE manifest_digest = manifests.digest) \
     AND NOT EXISTS (SELECT 1 FROM snapshots WHERE manifest_digest = manifests.digest)";
const CONFIG_UNUSED: &str = "NOT EXISTS (SELECT 1 FROM manifests WHERE config_digest = configs.digest)";

/// SQL: no manifest uses the layer whose diff_id is `column`.
fn layer_unused(column: &str) -> String {
    format!("NOT EXISTS (SELECT 1 FROM manifest_layers WHERE diff_id = {column})")
}

/// SQL: no manifest is, or has as its config, the document `column` names.
fn document_unused(column: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM manifests WHERE digest = {column}) \
         AND NOT EXISTS (SELECT 1 FROM manifests WHERE config_digest = {column})"
    )
}

/// Drops the configs and the manifest and config documents no manifest
/// uses any more. They name no file, so this may run beside the file
/// sweep; rows a crash leaves behind go with the next prune.
pub fn drop_unused_content(tx: &Transaction<'_>) -> Result<()> {
    tx.execute(&format!("DELETE FROM configs WHERE {CONFIG_UNUSED}"), [])?;
    tx.execute(
        &format!("DELETE FROM blob_content WHERE {}", document_unused("blob_content.digest")),
        [],
    )?;
    tx.execute(&format!("DELETE FROM blobs WHERE {}", document_unused("blobs.digest")), [])?;
    Ok(())
}

/// The rows [`drop_refs`] deleted: the files they named must go next.
#[derive(Debug, Default)]
pub struct Doomed {
    /// References deleted.
    pub refs: u64,
    /// Manifests deleted: their fsmeta and VMDK go.
    pub manifests: Vec<Digest>,
    /// Layers deleted: their images go.
    pub layers: Vec<Digest>,
}

/// Drops the given references, then whichever of their manifests (and the
/// content below) no root reaches any more. Only content those manifests
/// referenced is examined, so removing one image costs the same in a cache
/// of ten images or ten thousand.
pub fn drop_refs(tx: &Transaction<'_>, refs: &[RefRow]) -> Result<Doomed> {
    let mut doomed = Doomed::default();
    for row in refs {
        doomed.refs += tx
            .prepare_cached("DELETE FROM image_refs WHERE reference = ?1")?
            .execute([&row.reference])? as u64;
    }
    let (mut layers, mut configs, mut documents) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let candidates: BTreeSet<&Digest> = refs.iter().map(|row| &row.manifest).collect();
    let unrooted_config = format!("SELECT config_digest FROM manifests WHERE digest = ?1 AND {UNROOTED}");
    for manifest in candidates {
        let config: Option<Digest> = tx
            .prepare_cached(&unrooted_config)?
            .query_row([manifest], |row| row.get(0))
            .optional()?;
        let Some(config) = config else { continue };
        let mut stmt = tx.prepare_cached("SELECT diff_id FROM manifest_layers WHERE manifest_digest = ?1")?;
        for diff_id in stmt.query_map([manifest], |row| row.get::<_, Digest>(0))? {
            layers.insert(diff_id?);
        }
        tx.prepare_cached("DELETE FROM manifest_layers WHERE manifest_digest = ?1")?
            .execute([manifest])?;
        tx.prepare_cached("DELETE FROM manifests WHERE digest = ?1")?.execute([manifest])?;
        doomed.manifests.push(manifest.clone());
        documents.insert(manifest.clone());
        documents.insert(config.clone());
        configs.insert(config);
    }
    for diff_id in &layers {
        doomed.layers.extend(drop_layer_if_unused(tx, diff_id)?);
    }
    let drop_config = format!("DELETE FROM configs WHERE digest = ?1 AND {CONFIG_UNUSED}");
    for config in &configs {
        tx.prepare_cached(&drop_config)?.execute([config])?;
    }
    let unused = document_unused("?1");
    for digest in &documents {
        tx.prepare_cached(&format!("DELETE FROM blob_content WHERE digest = ?1 AND {unused}"))?
            .execute([digest])?;
        tx.prepare_cached(&format!("DELETE FROM blobs WHERE digest = ?1 AND {unused}"))?
            .execute([digest])?;
    }
    Ok(doomed)
}

/// Deletes the framing and row of layer `diff_id` unless a manifest uses
/// it; returns it if it went.
pub fn drop_layer_if_unused(tx: &Transaction<'_>, diff_id: &Digest) -> Result<Option<Digest>> {
    let unused = layer_unused("?1");
    tx.prepare_cached(&format!("DELETE FROM layer_framing WHERE diff_id = ?1 AND {unused}"))?
        .execute([diff_id])?;
    Ok(tx
        .prepare_cached(&format!("DELETE FROM layers WHERE diff_id = ?1 AND {unused} RETURNING diff_id"))?
        .query_row([diff_id], |row| row.get(0))
        .optional()?)
}

/// The files the index reaches, by kind: what must exist on disk.
#[derive(Debug, Default)]
pub struct LiveSet {
    /// diff_ids of layers (as keys: no digest is spelled out per file
    /// while sweeping, and a file name is decoded, not allocated).
    layers: DigestSet<Key>,
    /// Digests of manifests with an fsmeta image.
    fsmeta: DigestSet<Key>,
    /// Digests of manifests with a VMDK.
    vmdk: DigestSet<Key>,
}

impl LiveSet {
    /// The live set of these digests (layers, manifests with an fsmeta
    /// image, manifests with a VMDK).
    pub fn new(layers: DigestSet<Key>, fsmeta: DigestSet<Key>, vmdk: DigestSet<Key>) -> LiveSet {
        LiveSet { layers, fsmeta, vmdk }
    }

    /// Whether the index reaches the artifact of `kind` whose digest is `key`.
    pub fn reaches_key(&self, kind: Kind, key: &Key) -> bool {
        match kind {
            Kind::Layer => self.layers.contains(key),
            Kind::Fsmeta => self.fsmeta.contains(key),
            Kind::Vmdk => self.vmdk.contains(key),
        }
    }

    /// Whether the index reaches the artifact of `kind` whose file name
    /// spells `hex` (a name that spells no digest: never).
    pub fn reaches_hex(&self, kind: Kind, hex: &str) -> bool {
        Key::from_hex(hex).is_some_and(|key| self.reaches_key(kind, &key))
    }

    /// Whether the index reaches `artifact`.
    pub fn reaches(&self, artifact: &Artifact) -> bool {
        self.reaches_hex(artifact.kind(), artifact.digest().hex())
    }
}

/// Reads the live set.
pub fn live_set(conn: &Connection) -> Result<LiveSet> {
    Ok(LiveSet {
        layers: hexes(conn, "SELECT diff_id FROM layers WHERE lost = 0")?,
        fsmeta: hexes(conn, "SELECT digest FROM manifests WHERE fsmeta_size IS NOT NULL")?,
        vmdk: hexes(conn, "SELECT digest FROM manifests WHERE vmdk_size IS NOT NULL")?,
    })
}

/// The keys of the digests a one-column query of digests returns.
fn hexes(conn: &Connection, sql: &str) -> Result<DigestSet<Key>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([], |row| row.get::<_, Digest>(0))?;
    let mut set = DigestSet::default();
    for digest in rows {
        set.extend(Key::of(&digest?));
    }
    Ok(set)
}

//! Versioned schema migrations, applied in order inside one transaction and
//! tracked with SQLite's `user_version`.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// Each entry moves the schema from version `i` to `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    -- Content descriptors: manifests, configs and compressed layers (schema 1 kept their files under blobs/).
    CREATE TABLE blobs (
        digest      TEXT PRIMARY KEY,
        size        INTEGER NOT NULL,
        media_type  TEXT
    ) WITHOUT ROWID;

    -- Parsed image configs (the document itself: blob_content since schema 2).
    CREATE TABLE configs (
        digest        TEXT PRIMARY KEY REFERENCES blobs(digest),
        architecture  TEXT,
        os            TEXT,
        variant       TEXT,
        env           TEXT NOT NULL,   -- JSON array of KEY=value
        cmd           TEXT,            -- JSON array or NULL
        entrypoint    TEXT,            -- JSON array or NULL
        working_dir   TEXT,
        user          TEXT,
        labels        TEXT,            -- JSON object or NULL
        stop_signal   TEXT
    ) WITHOUT ROWID;

    -- Layer EROFS images under layers/, by diff_id (shared by every image using the layer).
    CREATE TABLE layers (
        diff_id     TEXT PRIMARY KEY,
        erofs_size  INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Image manifests, with the per-manifest artifacts (fsmeta, vmdk) when built.
    CREATE TABLE manifests (
        digest         TEXT PRIMARY KEY REFERENCES blobs(digest),
        config_digest  TEXT NOT NULL REFERENCES configs(digest),
        layer_count    INTEGER NOT NULL,
        fsmeta_size    INTEGER,
        vmdk_size      INTEGER,
        size_bytes     INTEGER NOT NULL,
        last_used_at   INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX manifests_config ON manifests(config_digest);

    -- Layer order of each manifest, position 0 at the bottom.
    CREATE TABLE manifest_layers (
        manifest_digest  TEXT NOT NULL REFERENCES manifests(digest) ON DELETE CASCADE,
        position         INTEGER NOT NULL,
        diff_id          TEXT NOT NULL REFERENCES layers(diff_id),
        blob_digest      TEXT NOT NULL REFERENCES blobs(digest),
        media_type       TEXT,
        PRIMARY KEY (manifest_digest, position)
    ) WITHOUT ROWID;
    CREATE INDEX manifest_layers_diff_id ON manifest_layers(diff_id);
    CREATE INDEX manifest_layers_blob ON manifest_layers(blob_digest);

    -- Names users know images by (normalized references).
    CREATE TABLE image_refs (
        reference        TEXT PRIMARY KEY,
        repository       TEXT NOT NULL,
        manifest_digest  TEXT NOT NULL REFERENCES manifests(digest),
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX image_refs_manifest ON image_refs(manifest_digest);

    -- GC roots: sandboxes using an image, and snapshots pinning one.
    CREATE TABLE sandboxes (
        name             TEXT PRIMARY KEY,
        manifest_digest  TEXT NOT NULL REFERENCES manifests(digest),
        reference        TEXT NOT NULL,
        acquired_at      INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sandboxes_manifest ON sandboxes(manifest_digest);

    CREATE TABLE snapshots (
        name             TEXT PRIMARY KEY,
        manifest_digest  TEXT NOT NULL REFERENCES manifests(digest),
        reference        TEXT NOT NULL,
        pinned_at        INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX snapshots_manifest ON snapshots(manifest_digest);
    "#,
    // 2: no compressed layer blobs and no blob files. Manifests and configs
    // live in the index; a layer keeps, beside its EROFS image, the tar
    // framing that rebuilds its exact tar stream (zstd-compressed). Rowid
    // tables, since their rows are kilobytes. A compressed layer is now only
    // a descriptor, kept with the manifest's layer row, so `blobs` holds
    // manifests and configs alone. A cache with files under blobs/ is moved
    // over by `upgrade` right after this migration.
    r#"
    CREATE TABLE blob_content (
        digest   TEXT PRIMARY KEY REFERENCES blobs(digest),
        content  BLOB NOT NULL
    );

    CREATE TABLE layer_framing (
        diff_id  TEXT PRIMARY KEY REFERENCES layers(diff_id),
        framing  BLOB NOT NULL
    );

    CREATE TABLE manifest_layers_2 (
        manifest_digest  TEXT NOT NULL REFERENCES manifests(digest) ON DELETE CASCADE,
        position         INTEGER NOT NULL,
        diff_id          TEXT NOT NULL REFERENCES layers(diff_id),
        blob_digest      TEXT NOT NULL,   -- the compressed layer as distributed
        blob_size        INTEGER NOT NULL,
        media_type       TEXT,
        PRIMARY KEY (manifest_digest, position)
    ) WITHOUT ROWID;
    INSERT INTO manifest_layers_2
        SELECT ml.manifest_digest, ml.position, ml.diff_id, ml.blob_digest, coalesce(b.size, 0), ml.media_type
        FROM manifest_layers ml LEFT JOIN blobs b ON b.digest = ml.blob_digest;
    DROP TABLE manifest_layers;
    ALTER TABLE manifest_layers_2 RENAME TO manifest_layers;
    CREATE INDEX manifest_layers_diff_id ON manifest_layers(diff_id);
    DELETE FROM blobs WHERE digest NOT IN (SELECT digest FROM manifests UNION SELECT config_digest FROM manifests);
    "#,
    // 3: what a full check compares against, recorded at publication. A
    // layer image's file data is covered by its diff_id (the framing
    // rebuilds the tar from it), so a layer records only a seal: the
    // sha256 of its superblock block and metadata area. fsmeta and VMDK
    // are small and hashed whole. NULL: not recorded yet (a cache written
    // before this migration; `check` seals those on open). A layer whose
    // image `check --repair` dropped keeps its row (manifests still list
    // it) with `lost` set: the next load or pull converts it again.
    r#"
    ALTER TABLE layers ADD COLUMN seal TEXT;
    ALTER TABLE layers ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE manifests ADD COLUMN fsmeta_sha256 TEXT;
    ALTER TABLE manifests ADD COLUMN vmdk_sha256 TEXT;
    CREATE INDEX layers_unsealed ON layers(diff_id) WHERE seal IS NULL AND lost = 0;
    CREATE INDEX manifests_unsealed ON manifests(digest) WHERE fsmeta_sha256 IS NULL OR vmdk_sha256 IS NULL;
    "#,
];

/// Brings the schema up to date; refuses an index written by a newer version.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: usize = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(Error::Internal(format!(
            "the cache index has schema version {version}, newer than this library's {}; upgrade microsandbox",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    tx.commit()?;
    Ok(())
}

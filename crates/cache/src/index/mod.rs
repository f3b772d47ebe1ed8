//! The SQLite index: which images, manifests, configs and layers the cache
//! holds, and which sandboxes and snapshots hold on to them. Several
//! processes may share one index: WAL mode, a busy timeout and immediate
//! write transactions keep them from tripping over each other.

pub mod audit;
pub mod reach;
pub mod read;
pub mod rows;
mod schema;
pub mod write;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, ToSql, Transaction, TransactionBehavior};

use crate::error::{Error, Result};

const BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// WAL pages after which a commit checkpoints (SQLite's default).
const WAL_AUTOCHECKPOINT: i64 = 1000;

/// A connection setting changed for one transaction: the pragma, its value
/// then, and its usual value (as [`Index::connect`] sets it, or SQLite's
/// default).
type Setting = (&'static str, &'static dyn ToSql, &'static dyn ToSql);
const MAX_IDLE_CONNECTIONS: usize = 4;
/// Page cache per connection, in KiB.
const CACHE_KIB: i64 = 64 << 10;

/// A pool of connections to one index file.
pub struct Index {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Index {
    /// Opens the index at `path`, creating and migrating it as needed. The
    /// caller holds the store's index lock, so only one process at a time
    /// switches a new database to WAL or migrates it.
    pub fn open(path: &Path) -> Result<Index> {
        let index = Index {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        };
        let mut conn = index.connect()?;
        // WAL (persistent in the file) lets readers run beside a writer.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| index.classify(Error::Index(e)))?;
        schema::migrate(&mut conn).map_err(|e| index.classify(e))?;
        index.idle.lock().map_err(poisoned)?.push(conn);
        Ok(index)
    }

    fn connect(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let setup = || -> rusqlite::Result<Connection> {
            let conn = Connection::open_with_flags(&self.path, flags)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // FULL makes each commit durable before the collector deletes
            // the files a commit dropped.
            conn.pragma_update(None, "synchronous", "FULL")?;
            crate::os::SQLITE_DURABILITY
                .iter()
                .try_for_each(|(name, value)| conn.pragma_update(None, name, value))?;
            // Big transactions (a prune of thousands of images) would spill a
            // small page cache to the WAL over and over; pages are allocated
            // only as used.
            conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
            conn.pragma_update(None, "foreign_keys", true)?;
            // Ephemeral tables (a prune's `IN (SELECT ...)` key lists, sorts)
            // stay in memory, not temp files.
            conn.pragma_update(None, "temp_store", "MEMORY")?;
            conn.set_prepared_statement_cache_capacity(64);
            Ok(conn)
        };
        setup().map_err(|e| self.classify(Error::Index(e)))
    }

    /// Reports storage-level SQLite failures (read-only directory, disk full,
    /// permissions) as cache errors naming the file, like any other I/O failure.
    fn classify(&self, error: Error) -> Error {
        use rusqlite::ErrorCode::*;
        match error {
            Error::Index(rusqlite::Error::SqliteFailure(f, msg))
                if matches!(f.code, CannotOpen | ReadOnly | PermissionDenied | DiskFull | SystemIoFailure) =>
            {
                let text = msg.unwrap_or_else(|| f.to_string());
                Error::Cache {
                    path: self.path.clone(),
                    source: std::io::Error::other(text),
                }
            }
            other => other,
        }
    }

    /// Runs `f` on a pooled connection.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.checkout()?;
        let result = f(&conn);
        self.checkin(conn);
        result.map_err(|e| self.classify(e))
    }

    /// Runs `f` in an immediate (write-locked) transaction, committing on Ok.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.write_with(&[], f)
    }

    /// Like [`Index::write`], for the collector's bulk deletes. Foreign keys
    /// are not enforced: the collector deletes children before parents
    /// itself, and checking every deleted row's references would double the
    /// cost of deleting tens of thousands. Nor is the WAL checkpointed at
    /// commit: the caller runs [`Index::checkpoint`] beside its file
    /// deletions instead of before them.
    pub fn write_bulk<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.write_with(
            &[("foreign_keys", &false, &true), ("wal_autocheckpoint", &0, &WAL_AUTOCHECKPOINT)],
            f,
        )
    }

    /// Like [`Index::write`], but without waiting for the commit to reach the
    /// disk (`synchronous = NORMAL`), for rows whose loss in a power cut only
    /// costs work to redo: the next durable commit (the WAL is sequential)
    /// makes them durable with it.
    pub fn write_lazily<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.write_with(&[("synchronous", &"NORMAL", &"FULL")], f)
    }

    /// Copies what the WAL holds into the database, as far as readers allow
    /// (SQLite's automatic checkpoint, run on purpose).
    pub fn checkpoint(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?))
    }

    /// Copies the whole WAL into the database and empties the WAL file, as
    /// far as readers allow (a reader in the middle of the WAL leaves it as
    /// it is): before the collector measures the cache, and after it deleted.
    pub fn checkpoint_truncate(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?))
    }

    /// Runs `f` in a transaction on a connection with `settings` changed for
    /// it, then puts the usual values back; a connection that cannot be
    /// restored is not reused.
    fn write_with<T>(&self, settings: &[Setting], f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.checkout()?;
        let result = settings
            .iter()
            .try_for_each(|(name, value, _)| conn.pragma_update(None, name, value))
            .map_err(Error::from)
            .and_then(|()| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            });
        let restored = settings
            .iter()
            .try_for_each(|(name, _, usual)| conn.pragma_update(None, name, usual));
        if restored.is_ok() {
            self.checkin(conn);
        }
        result.map_err(|e| self.classify(e))
    }

    fn checkout(&self) -> Result<Connection> {
        let pooled = self.idle.lock().map_err(poisoned)?.pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn checkin(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE_CONNECTIONS {
                idle.push(conn);
            }
        }
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("index connection pool poisoned".into())
}

/// Milliseconds since the Unix epoch: the unit of every timestamp in the index.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

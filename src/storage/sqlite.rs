//! SQLite backend: one file in WAL mode, for single-instance deployments.
//!
//! SQLite allows one writer at a time. Single statements take the write lock when they start,
//! and transactions that read before writing start with `BEGIN IMMEDIATE`, so a read inside
//! them can never be overtaken by another writer; waiting writers retry for [`BUSY_TIMEOUT`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::memo::Memo;
use super::sql::{Backend, Statement, TxLock, Value, migrator};
use super::{Result, StorageError};

/// How long a statement waits for another connection's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const MAX_CONNECTIONS: u32 = 8;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "revocation counter",
        include_str!("../../migrations/sqlite/0002_revocation_counter.sql"),
    ),
];

/// A SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    pool: SqlitePool,
    path: PathBuf,
    memo: Arc<Memo>,
}

impl SqliteStorage {
    /// Opens the database at `path`, creating the directory and the file on first start, and
    /// applies pending migrations. Every failure to use the file is `Unavailable` with a
    /// message that names it.
    pub async fn open(path: &Path) -> Result<SqliteStorage, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                unavailable(
                    path,
                    &format!("cannot create the directory {}", dir.display()),
                    &e,
                )
            })?;
        }
        // SQLite reports a directory only as "unable to open database file"; say what is wrong.
        if tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir()) {
            return Err(StorageError::Unavailable(format!(
                "SQLite database {}: the path is a directory, not a database file",
                path.display()
            )));
        }

        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable against application crashes in WAL mode and only risks the
            // last commits on power loss, for far fewer fsyncs on the token path.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            // A local file connection cannot go stale; pinging it before every query would
            // double the round trips to the connection's worker thread.
            .test_before_acquire(false)
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(BUSY_TIMEOUT * 2)
            .connect_with(options)
            .await
            .map_err(|e| classify(path, e))?;

        let storage = SqliteStorage {
            pool,
            path: path.to_owned(),
            memo: Arc::default(),
        };
        storage.migrate().await?;
        Ok(storage)
    }

    /// Applies pending migrations inside one `BEGIN IMMEDIATE` transaction, so two processes
    /// opening a new file at once take turns instead of both creating the tables.
    async fn migrate(&self) -> Result<()> {
        let failed = |e: sqlx::migrate::MigrateError| match e {
            sqlx::migrate::MigrateError::Execute(inner) => self.error(inner),
            other => unavailable(&self.path, "cannot apply the schema migrations", &other),
        };
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.error(e))?;
        // `run_direct` takes the connection itself; `run` would need `Acquire`, whose
        // higher-ranked bound makes this future unusable from a spawned task.
        migrator(MIGRATIONS)
            .run_direct(None, &mut *tx, false)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(|e| self.error(e))
    }

    /// The database file this storage was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every pooled connection, checkpointing the WAL into the main file.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn error(&self, e: sqlx::Error) -> StorageError {
        classify(&self.path, e)
    }
}

fn query(stmt: Statement) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
    let mut q = sqlx::query(stmt.sql);
    for value in stmt.values {
        q = match value {
            Value::Text(v) => q.bind(v),
            Value::OptText(v) => q.bind(v),
            Value::Int(v) => q.bind(v),
            Value::OptInt(v) => q.bind(v),
            Value::Bool(v) => q.bind(v),
            Value::Bytes(v) => q.bind(v),
        };
    }
    q
}

fn unavailable(path: &Path, what: &str, cause: &dyn std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!(
        "SQLite database {}: {what} ({cause})",
        path.display()
    ))
}

// Primary result codes (the low byte of extended codes), from sqlite3.h.
const SQLITE_PERM: i64 = 3;
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_NOMEM: i64 = 7;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_PROTOCOL: i64 = 15;
const SQLITE_AUTH: i64 = 23;
const SQLITE_NOTADB: i64 = 26;

fn classify(path: &Path, e: sqlx::Error) -> StorageError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::AlreadyExists,
        sqlx::Error::Database(db) => {
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            let what = match primary {
                Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_PROTOCOL) => {
                    "the file is locked by another process or connection"
                }
                Some(SQLITE_READONLY) => "the file or its directory is read-only",
                Some(SQLITE_PERM | SQLITE_AUTH) => "access to the file was denied",
                Some(SQLITE_CANTOPEN) => {
                    "cannot open the file (check that it is a regular file the service may \
                     read and write, in a directory it may write)"
                }
                Some(SQLITE_NOTADB) => "the file is not a SQLite database",
                Some(SQLITE_CORRUPT) => "the file is damaged",
                Some(SQLITE_FULL) => "the disk is full",
                Some(SQLITE_IOERR) => "an I/O error occurred",
                Some(SQLITE_NOMEM) => "out of memory",
                _ => {
                    return StorageError::Internal(format!(
                        "SQLite database {}: {}",
                        path.display(),
                        db.message()
                    ));
                }
            };
            unavailable(path, what, &db.message())
        }
        sqlx::Error::Io(io) => unavailable(path, "an I/O error occurred", io),
        sqlx::Error::PoolTimedOut => unavailable(path, "no connection became free in time", &e),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            unavailable(path, "the connection is gone", &e)
        }
        _ => StorageError::Internal(format!("SQLite database {}: {e}", path.display())),
    }
}

#[async_trait]
impl Backend for SqliteStorage {
    type Row = SqliteRow;
    type Tx = Transaction<'static, Sqlite>;

    fn memo(&self) -> &Memo {
        &self.memo
    }

    fn remembers_sessions(&self) -> bool {
        true
    }

    async fn execute(&self, stmt: Statement) -> Result<u64> {
        let done = query(stmt)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done.rows_affected())
    }

    async fn fetch_optional(&self, stmt: Statement) -> Result<Option<SqliteRow>> {
        query(stmt)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    async fn fetch_all(&self, stmt: Statement) -> Result<Vec<SqliteRow>> {
        query(stmt)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    async fn begin_write(&self, _lock: TxLock) -> Result<Self::Tx> {
        // IMMEDIATE takes the database write lock up front, which serializes every writer
        // and therefore covers both lock scopes.
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.error(e))
    }

    async fn tx_execute(&self, tx: &mut Self::Tx, stmt: Statement) -> Result<u64> {
        let done = query(stmt)
            .execute(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done.rows_affected())
    }

    async fn tx_fetch_optional(
        &self,
        tx: &mut Self::Tx,
        stmt: Statement,
    ) -> Result<Option<SqliteRow>> {
        query(stmt)
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.error(e))
    }

    async fn commit(&self, tx: Self::Tx) -> Result<()> {
        tx.commit().await.map_err(|e| self.error(e))
    }
}

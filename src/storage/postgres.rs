//! PostgreSQL backend, for deployments with several replicas sharing one database.
//!
//! Conditional updates rely on PostgreSQL re-checking the `WHERE` clause of an `UPDATE`
//! after waiting for a concurrent writer of the same row (READ COMMITTED), so exactly one
//! caller wins. Creating the next signing key reads the table before inserting, which a row
//! lock cannot protect when the table is empty, so that transaction locks the table.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Transaction};

use super::memo::Memo;
use super::sql::{Backend, Statement, TxLock, Value, migrator};
use super::{Result, StorageError};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "revocation counter",
        include_str!("../../migrations/postgres/0002_revocation_counter.sql"),
    ),
];

/// How long a query waits for a pooled connection, including reconnecting to a server that
/// refuses connections. While the database is down every request that needs it waits this
/// long before it is answered 503, so it stays short: long enough to ride over a fast
/// restart, short enough that clients and probes are not left hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pool of connections to one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    pool: PgPool,
    /// The URL without its password, for error messages.
    target: String,
    memo: Arc<Memo>,
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://user:password@host:port/database?...`), applies pending
    /// migrations under an advisory lock, and keeps a pool of at most `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PostgresStorage, StorageError> {
        let target = redact(url);
        let options: PgConnectOptions = url.parse().map_err(|e| {
            StorageError::Unavailable(format!("invalid PostgreSQL URL {target}: {e}"))
        })?;

        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| classify(&target, e))?;

        // The migrator holds a PostgreSQL advisory lock on its connection while it checks and
        // applies migrations, so replicas starting together apply each one once. If it fails
        // half-way the pool is dropped here, which closes that connection and frees the lock.
        migrator(MIGRATIONS).run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => classify(&target, inner),
            other => StorageError::Unavailable(format!(
                "PostgreSQL {target}: cannot apply the schema migrations ({other})"
            )),
        })?;
        Ok(PostgresStorage {
            pool,
            target,
            memo: Arc::default(),
        })
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn error(&self, e: sqlx::Error) -> StorageError {
        classify(&self.target, e)
    }
}

/// The URL with any password replaced, safe for logs.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot carry credentials at all.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

fn query(stmt: Statement) -> sqlx::query::Query<'static, Postgres, PgArguments> {
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

/// SQLSTATEs after which retrying later can succeed: connection loss, resource exhaustion,
/// server shutdown, lock and serialization failures, and a read-only server (a standby
/// reached during fail-over).
fn is_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || code.starts_with("58")
        || matches!(code, "40001" | "40P01" | "55P03" | "25006")
}

/// SQLSTATEs that mean the database cannot be used as configured: wrong credentials or a
/// database that does not exist.
fn is_unreachable(code: &str) -> bool {
    code.starts_with("28") || code == "3D000"
}

fn classify(target: &str, e: sqlx::Error) -> StorageError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::AlreadyExists,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = format!("PostgreSQL {target}: {} (SQLSTATE {code})", db.message());
            if is_transient(&code) || is_unreachable(&code) {
                StorageError::Unavailable(message)
            } else {
                StorageError::Internal(message)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => {
            StorageError::Unavailable(format!("PostgreSQL {target}: {e}"))
        }
        _ => StorageError::Internal(format!("PostgreSQL {target}: {e}")),
    }
}

#[async_trait]
impl Backend for PostgresStorage {
    type Row = PgRow;
    type Tx = Transaction<'static, Postgres>;

    fn memo(&self) -> &Memo {
        &self.memo
    }

    fn remembers_sessions(&self) -> bool {
        false
    }

    async fn execute(&self, stmt: Statement) -> Result<u64> {
        let done = query(stmt)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done.rows_affected())
    }

    async fn fetch_optional(&self, stmt: Statement) -> Result<Option<PgRow>> {
        query(stmt)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    async fn fetch_all(&self, stmt: Statement) -> Result<Vec<PgRow>> {
        query(stmt)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    async fn begin_write(&self, lock: TxLock) -> Result<Self::Tx> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        match lock {
            TxLock::Rows => {}
            TxLock::SigningKeys => {
                // SHARE ROW EXCLUSIVE conflicts with itself and with every write, but not with
                // plain reads, so verifiers keep listing keys while one replica rotates.
                sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.error(e))?;
            }
        }
        Ok(tx)
    }

    async fn tx_execute(&self, tx: &mut Self::Tx, stmt: Statement) -> Result<u64> {
        let done = query(stmt)
            .execute(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done.rows_affected())
    }

    async fn tx_fetch_optional(&self, tx: &mut Self::Tx, stmt: Statement) -> Result<Option<PgRow>> {
        query(stmt)
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.error(e))
    }

    async fn commit(&self, tx: Self::Tx) -> Result<()> {
        tx.commit().await.map_err(|e| self.error(e))
    }
}

//! The part of the SQL backends that does not depend on the database.
//!
//! SQLite and PostgreSQL read the same statements here: sqlx accepts `$n` placeholders for
//! both, `ON CONFLICT` and `RETURNING` exist in both, and the schemas use the same table and
//! column names. So every [`Storage`] method is written once, over the small [`Backend`]
//! trait, and a backend only supplies how to run a statement, how to start a transaction
//! that serializes writers, and how to classify its errors.

use async_trait::async_trait;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::memo::{Key, Memo, Remembered};
use super::{
    AuditEvent, AuthCode, AuthRequest, Client, CodePresentation, DeviceDecision, DeviceRequest,
    DeviceStatus, GcStats, RefreshToken, Result, SessionRecord, SigningKey, Storage, StorageError,
    Timestamp, User,
};

/// A value bound to a statement placeholder.
#[derive(Debug, Clone)]
pub enum Value {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    Bytes(Vec<u8>),
}

/// SQL text with its bound values, in placeholder order.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: &'static str,
    pub values: Vec<Value>,
}

impl Statement {
    fn new(sql: &'static str) -> Self {
        Statement {
            sql,
            values: Vec::new(),
        }
    }

    fn text(mut self, v: &str) -> Self {
        self.values.push(Value::Text(v.to_owned()));
        self
    }

    fn opt_text(mut self, v: &Option<String>) -> Self {
        self.values.push(Value::OptText(v.clone()));
        self
    }

    fn int(mut self, v: i64) -> Self {
        self.values.push(Value::Int(v));
        self
    }

    fn opt_int(mut self, v: Option<i64>) -> Self {
        self.values.push(Value::OptInt(v));
        self
    }

    fn flag(mut self, v: bool) -> Self {
        self.values.push(Value::Bool(v));
        self
    }

    fn bytes(mut self, v: &[u8]) -> Self {
        self.values.push(Value::Bytes(v.to_vec()));
        self
    }

    /// String lists are kept as JSON arrays in a text column: both databases can store and
    /// compare them, and nothing queries inside them.
    fn list(self, v: &[String]) -> Self {
        let json = serde_json::Value::from(v.to_vec()).to_string();
        self.text(&json)
    }
}

/// Typed access to the columns of a result row, by name.
pub trait RowExt {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn flag(&self, col: &str) -> Result<bool>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;

    fn list(&self, col: &str) -> Result<Vec<String>> {
        let text = self.text(col)?;
        serde_json::from_str(&text)
            .map_err(|e| StorageError::Internal(format!("column {col} is not a JSON list: {e}")))
    }
}

impl<R> RowExt for R
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&self, col: &str) -> Result<String> {
        self.try_get(col).map_err(|e| decode_error(col, e))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).map_err(|e| decode_error(col, e))
    }
    fn int(&self, col: &str) -> Result<i64> {
        self.try_get(col).map_err(|e| decode_error(col, e))
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).map_err(|e| decode_error(col, e))
    }
    fn flag(&self, col: &str) -> Result<bool> {
        self.try_get(col).map_err(|e| decode_error(col, e))
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        self.try_get(col).map_err(|e| decode_error(col, e))
    }
}

fn decode_error(col: &str, e: sqlx::Error) -> StorageError {
    StorageError::Internal(format!("reading column {col}: {e}"))
}

/// How strongly a write transaction must exclude concurrent writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxLock {
    /// Row locks taken by the statements themselves are enough.
    Rows,
    /// No other writer of `signing_keys` may run until commit, even when the table is empty
    /// (a row lock cannot protect a row that does not exist yet).
    SigningKeys,
}

/// What a database must provide for the shared [`Storage`] implementation.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    type Row: RowExt + Send;
    type Tx: Send;

    /// What this process remembers (see [`Memo`]).
    fn memo(&self) -> &Memo;

    /// Whether browser sessions may be remembered: only where one server process uses the
    /// database. With several replicas, a session changed at one of them while another
    /// still remembered it could be written back stale by the other.
    fn remembers_sessions(&self) -> bool;

    async fn execute(&self, stmt: Statement) -> Result<u64>;
    async fn fetch_optional(&self, stmt: Statement) -> Result<Option<Self::Row>>;
    async fn fetch_all(&self, stmt: Statement) -> Result<Vec<Self::Row>>;

    /// Starts a transaction in which a read cannot be invalidated by another writer before
    /// this one writes. Dropping the transaction without [`Backend::commit`] rolls it back.
    async fn begin_write(&self, lock: TxLock) -> Result<Self::Tx>;
    async fn tx_execute(&self, tx: &mut Self::Tx, stmt: Statement) -> Result<u64>;
    async fn tx_fetch_optional(
        &self,
        tx: &mut Self::Tx,
        stmt: Statement,
    ) -> Result<Option<Self::Row>>;
    async fn commit(&self, tx: Self::Tx) -> Result<()>;
}

fn expect_one(affected: u64) -> Result<()> {
    if affected == 0 {
        Err(StorageError::NotFound)
    } else {
        Ok(())
    }
}

async fn fetch_model<B, T>(db: &B, stmt: Statement, decode: fn(&B::Row) -> Result<T>) -> Result<T>
where
    B: Backend + ?Sized,
{
    match db.fetch_optional(stmt).await? {
        Some(row) => decode(&row),
        None => Err(StorageError::NotFound),
    }
}

async fn fetch_models<B, T>(
    db: &B,
    stmt: Statement,
    decode: fn(&B::Row) -> Result<T>,
) -> Result<Vec<T>>
where
    B: Backend + ?Sized,
{
    db.fetch_all(stmt).await?.iter().map(decode).collect()
}

/// After a conditional update changed nothing: `Conflict` when the row exists (its state
/// did not allow the change), `NotFound` when it does not.
async fn conflict_or_missing<B: Backend + ?Sized>(
    db: &B,
    exists_sql: &'static str,
    id: &str,
) -> Result<StorageError> {
    Ok(if exists(db, Statement::new(exists_sql).text(id)).await? {
        StorageError::Conflict
    } else {
        StorageError::NotFound
    })
}

async fn exists<B: Backend + ?Sized>(db: &B, stmt: Statement) -> Result<bool> {
    Ok(db.fetch_optional(stmt).await?.is_some())
}

fn client_from_row(r: &impl RowExt) -> Result<Client> {
    Ok(Client {
        id: r.text("id")?,
        name: r.text("name")?,
        secret_hash: r.opt_text("secret_hash")?,
        redirect_uris: r.list("redirect_uris")?,
        post_logout_redirect_uris: r.list("post_logout_redirect_uris")?,
        public: r.flag("public")?,
        default_scopes: r.list("default_scopes")?,
        skip_approval: r.flag("skip_approval")?,
        allowed_connectors: r.list("allowed_connectors")?,
        created_at: r.int("created_at")?,
    })
}

fn auth_request_from_row(r: &impl RowExt) -> Result<AuthRequest> {
    Ok(AuthRequest {
        id: r.text("id")?,
        client_id: r.text("client_id")?,
        redirect_uri: r.text("redirect_uri")?,
        response_mode: r.text("response_mode")?,
        scopes: r.list("scopes")?,
        state: r.opt_text("state")?,
        nonce: r.opt_text("nonce")?,
        code_challenge: r.opt_text("code_challenge")?,
        prompt: r.list("prompt")?,
        max_age: r.opt_int("max_age")?,
        login_hint: r.opt_text("login_hint")?,
        connector_id: r.opt_text("connector_id")?,
        device_request_id: r.opt_text("device_request_id")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
    })
}

fn device_request_from_row(r: &impl RowExt) -> Result<DeviceRequest> {
    let status = r.text("status")?;
    Ok(DeviceRequest {
        id: r.text("id")?,
        user_code: r.text("user_code")?,
        client_id: r.text("client_id")?,
        scopes: r.list("scopes")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
        interval: r.int("poll_interval")?,
        last_polled_at: r.opt_int("last_polled_at")?,
        status: DeviceStatus::parse(&status).ok_or_else(|| {
            StorageError::Internal(format!("unknown device request status {status:?}"))
        })?,
        user_id: r.opt_text("user_id")?,
        connector_id: r.opt_text("connector_id")?,
        auth_time: r.opt_int("auth_time")?,
        session_id: r.opt_text("session_id")?,
    })
}

fn audit_event_from_row(r: &impl RowExt) -> Result<AuditEvent> {
    Ok(AuditEvent {
        at: r.int("at")?,
        kind: r.text("kind")?,
        user_id: r.opt_text("user_id")?,
        client_id: r.opt_text("client_id")?,
        connector_id: r.opt_text("connector_id")?,
        detail: r.opt_text("detail")?,
    })
}

fn auth_code_from_row(r: &impl RowExt) -> Result<AuthCode> {
    Ok(AuthCode {
        id: r.text("id")?,
        client_id: r.text("client_id")?,
        redirect_uri: r.text("redirect_uri")?,
        scopes: r.list("scopes")?,
        nonce: r.opt_text("nonce")?,
        code_challenge: r.opt_text("code_challenge")?,
        user_id: r.text("user_id")?,
        connector_id: r.text("connector_id")?,
        session_id: r.opt_text("session_id")?,
        auth_time: r.int("auth_time")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
        redeemed_at: r.opt_int("redeemed_at")?,
    })
}

fn refresh_token_from_row(r: &impl RowExt) -> Result<RefreshToken> {
    Ok(RefreshToken {
        id: r.text("id")?,
        secret_hash: r.text("secret_hash")?,
        family_id: r.text("family_id")?,
        client_id: r.text("client_id")?,
        user_id: r.text("user_id")?,
        connector_id: r.text("connector_id")?,
        scopes: r.list("scopes")?,
        nonce: r.opt_text("nonce")?,
        session_id: r.opt_text("session_id")?,
        auth_time: r.int("auth_time")?,
        created_at: r.int("created_at")?,
        last_used_at: r.int("last_used_at")?,
        expires_at: r.int("expires_at")?,
        absolute_expires_at: r.int("absolute_expires_at")?,
        rotated_at: r.opt_int("rotated_at")?,
        revoked: r.flag("revoked")?,
    })
}

fn user_from_row(r: &impl RowExt) -> Result<User> {
    Ok(User {
        id: r.text("id")?,
        connector_id: r.text("connector_id")?,
        upstream_id: r.text("upstream_id")?,
        username: r.text("username")?,
        display_name: r.opt_text("display_name")?,
        email: r.opt_text("email")?,
        email_verified: r.flag("email_verified")?,
        phone: r.opt_text("phone")?,
        picture: r.opt_text("picture")?,
        groups: r.list("user_groups")?,
        connector_data: r.opt_text("connector_data")?,
        created_at: r.int("created_at")?,
        last_login_at: r.int("last_login_at")?,
    })
}

fn signing_key_from_row(r: &impl RowExt) -> Result<SigningKey> {
    Ok(SigningKey {
        kid: r.text("kid")?,
        alg: r.text("alg")?,
        private_der: r.bytes("private_der")?,
        created_at: r.int("created_at")?,
        rotate_at: r.int("rotate_at")?,
        expires_at: r.int("expires_at")?,
    })
}

fn session_from_row(r: &impl RowExt) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: r.text("id")?,
        user_id: r.opt_text("user_id")?,
        data: r.text("data")?,
        expires_at: r.int("expires_at")?,
    })
}

fn insert_refresh_token(t: &RefreshToken) -> Statement {
    Statement::new(
        "INSERT INTO refresh_tokens (id, secret_hash, family_id, client_id, user_id, \
         connector_id, scopes, nonce, session_id, auth_time, created_at, \
         last_used_at, expires_at, absolute_expires_at, rotated_at, revoked) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .text(&t.id)
    .text(&t.secret_hash)
    .text(&t.family_id)
    .text(&t.client_id)
    .text(&t.user_id)
    .text(&t.connector_id)
    .list(&t.scopes)
    .opt_text(&t.nonce)
    .opt_text(&t.session_id)
    .int(t.auth_time)
    .int(t.created_at)
    .int(t.last_used_at)
    .int(t.expires_at)
    .int(t.absolute_expires_at)
    .opt_int(t.rotated_at)
    .flag(t.revoked)
}

/// Commits a transaction that revoked something: raises the revocation counter in it, so
/// other processes forget what they remember at their next `sync_revocations`, and forgets
/// everything this process remembers once it is committed.
async fn commit_revocation<B: Backend + ?Sized>(db: &B, mut tx: B::Tx) -> Result<()> {
    db.tx_execute(
        &mut tx,
        Statement::new("UPDATE revocation_counter SET n = n + 1 WHERE id = 1"),
    )
    .await?;
    db.commit(tx).await?;
    db.memo().forget();
    Ok(())
}

/// Counts the rows of a `RETURNING rotated_at` that had not been rotated: those are the
/// tokens a revocation actually took away from a client.
fn count_live(rows: &[impl RowExt]) -> Result<u64> {
    let mut live = 0;
    for row in rows {
        if row.opt_int("rotated_at")?.is_none() {
            live += 1;
        }
    }
    Ok(live)
}

#[async_trait]
impl<B: Backend> Storage for B {
    async fn ping(&self) -> Result<()> {
        self.fetch_optional(Statement::new("SELECT 1")).await?;
        Ok(())
    }

    async fn get_or_init_setting(&self, name: &str, value: &str) -> Result<String> {
        self.execute(
            Statement::new(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .text(name)
            .text(value),
        )
        .await?;
        let row = self
            .fetch_optional(Statement::new("SELECT value FROM settings WHERE name = $1").text(name))
            .await?
            .ok_or_else(|| StorageError::Internal(format!("setting {name} vanished")))?;
        row.text("value")
    }

    async fn create_client(&self, c: &Client) -> Result<()> {
        self.execute(
            Statement::new(
                "INSERT INTO clients (id, name, secret_hash, redirect_uris, \
                 post_logout_redirect_uris, public, default_scopes, skip_approval, \
                 allowed_connectors, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .text(&c.id)
            .text(&c.name)
            .opt_text(&c.secret_hash)
            .list(&c.redirect_uris)
            .list(&c.post_logout_redirect_uris)
            .flag(c.public)
            .list(&c.default_scopes)
            .flag(c.skip_approval)
            .list(&c.allowed_connectors)
            .int(c.created_at),
        )
        .await?;
        Ok(())
    }

    async fn get_client(&self, id: &str) -> Result<Client> {
        let stmt = Statement::new("SELECT * FROM clients WHERE id = $1").text(id);
        fetch_model(self, stmt, client_from_row).await
    }

    async fn list_clients(&self) -> Result<Vec<Client>> {
        let stmt = Statement::new("SELECT * FROM clients ORDER BY id");
        fetch_models(self, stmt, client_from_row).await
    }

    async fn delete_client(&self, id: &str) -> Result<()> {
        expect_one(
            self.execute(Statement::new("DELETE FROM clients WHERE id = $1").text(id))
                .await?,
        )
    }

    async fn create_auth_request(&self, r: &AuthRequest) -> Result<()> {
        self.execute(
            Statement::new(
                "INSERT INTO auth_requests (id, client_id, redirect_uri, response_mode, scopes, \
                 state, nonce, code_challenge, prompt, max_age, login_hint, connector_id, \
                 device_request_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .text(&r.id)
            .text(&r.client_id)
            .text(&r.redirect_uri)
            .text(&r.response_mode)
            .list(&r.scopes)
            .opt_text(&r.state)
            .opt_text(&r.nonce)
            .opt_text(&r.code_challenge)
            .list(&r.prompt)
            .opt_int(r.max_age)
            .opt_text(&r.login_hint)
            .opt_text(&r.connector_id)
            .opt_text(&r.device_request_id)
            .int(r.created_at)
            .int(r.expires_at),
        )
        .await?;
        Ok(())
    }

    async fn get_auth_request(&self, id: &str) -> Result<AuthRequest> {
        let stmt = Statement::new("SELECT * FROM auth_requests WHERE id = $1").text(id);
        fetch_model(self, stmt, auth_request_from_row).await
    }

    async fn delete_auth_request(&self, id: &str) -> Result<()> {
        expect_one(
            self.execute(Statement::new("DELETE FROM auth_requests WHERE id = $1").text(id))
                .await?,
        )
    }

    async fn create_auth_code(&self, c: &AuthCode) -> Result<()> {
        self.execute(
            Statement::new(
                "INSERT INTO auth_codes (id, client_id, redirect_uri, scopes, nonce, \
                 code_challenge, user_id, connector_id, session_id, auth_time, created_at, \
                 expires_at, redeemed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .text(&c.id)
            .text(&c.client_id)
            .text(&c.redirect_uri)
            .list(&c.scopes)
            .opt_text(&c.nonce)
            .opt_text(&c.code_challenge)
            .text(&c.user_id)
            .text(&c.connector_id)
            .opt_text(&c.session_id)
            .int(c.auth_time)
            .int(c.created_at)
            .int(c.expires_at)
            .opt_int(c.redeemed_at),
        )
        .await?;
        Ok(())
    }

    async fn get_auth_code(&self, id: &str) -> Result<AuthCode> {
        let stmt = Statement::new("SELECT * FROM auth_codes WHERE id = $1").text(id);
        fetch_model(self, stmt, auth_code_from_row).await
    }

    async fn redeem_auth_code(&self, id: &str, now: Timestamp) -> Result<AuthCode> {
        // One conditional statement: the database evaluates `redeemed_at IS NULL` under the
        // row's write lock, so of many concurrent callers exactly one sees it true.
        let redeemed = self
            .fetch_optional(
                Statement::new(
                    "UPDATE auth_codes SET redeemed_at = $1 \
                     WHERE id = $2 AND redeemed_at IS NULL RETURNING *",
                )
                .int(now)
                .text(id),
            )
            .await?;
        if let Some(row) = redeemed {
            return auth_code_from_row(&row);
        }
        Err(conflict_or_missing(self, "SELECT 1 FROM auth_codes WHERE id = $1", id).await?)
    }

    async fn redeem_auth_code_matching(
        &self,
        id: &str,
        now: Timestamp,
        presented: &CodePresentation<'_>,
    ) -> Result<Option<AuthCode>> {
        let redeemed = self
            .fetch_optional(
                Statement::new(
                    "UPDATE auth_codes SET redeemed_at = $1 \
                     WHERE id = $2 AND redeemed_at IS NULL AND expires_at > $1 \
                     AND client_id = $3 AND redirect_uri = $4 \
                     AND COALESCE(code_challenge, '') = $5 RETURNING *",
                )
                .int(now)
                .text(id)
                .text(presented.client_id)
                .text(presented.redirect_uri)
                .text(presented.code_challenge.unwrap_or("")),
            )
            .await?;
        redeemed.as_ref().map(auth_code_from_row).transpose()
    }

    async fn create_device_request(&self, r: &DeviceRequest) -> Result<()> {
        self.execute(
            Statement::new(
                "INSERT INTO device_requests (id, user_code, client_id, scopes, created_at, \
                 expires_at, poll_interval, last_polled_at, status, user_id, connector_id, \
                 auth_time, session_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .text(&r.id)
            .text(&r.user_code)
            .text(&r.client_id)
            .list(&r.scopes)
            .int(r.created_at)
            .int(r.expires_at)
            .int(r.interval)
            .opt_int(r.last_polled_at)
            .text(r.status.as_str())
            .opt_text(&r.user_id)
            .opt_text(&r.connector_id)
            .opt_int(r.auth_time)
            .opt_text(&r.session_id),
        )
        .await?;
        Ok(())
    }

    async fn get_device_request(&self, id: &str) -> Result<DeviceRequest> {
        let stmt = Statement::new("SELECT * FROM device_requests WHERE id = $1").text(id);
        fetch_model(self, stmt, device_request_from_row).await
    }

    async fn get_device_request_by_user_code(&self, user_code: &str) -> Result<DeviceRequest> {
        let stmt =
            Statement::new("SELECT * FROM device_requests WHERE user_code = $1").text(user_code);
        fetch_model(self, stmt, device_request_from_row).await
    }

    async fn record_device_poll(&self, id: &str, now: Timestamp, interval: i64) -> Result<()> {
        let n = self
            .execute(
                Statement::new(
                    "UPDATE device_requests SET last_polled_at = $1, poll_interval = $2 \
                     WHERE id = $3",
                )
                .int(now)
                .int(interval)
                .text(id),
            )
            .await?;
        expect_one(n)
    }

    async fn decide_device_request(&self, id: &str, decision: &DeviceDecision) -> Result<()> {
        let stmt = match decision {
            DeviceDecision::Approve {
                user_id,
                connector_id,
                auth_time,
                session_id,
            } => Statement::new(
                "UPDATE device_requests SET status = 'approved', user_id = $1, \
                 connector_id = $2, auth_time = $3, session_id = $4 \
                 WHERE id = $5 AND status = 'pending'",
            )
            .text(user_id)
            .text(connector_id)
            .int(*auth_time)
            .opt_text(session_id)
            .text(id),
            DeviceDecision::Deny => Statement::new(
                "UPDATE device_requests SET status = 'denied' WHERE id = $1 AND status = 'pending'",
            )
            .text(id),
        };
        if self.execute(stmt).await? == 1 {
            return Ok(());
        }
        Err(conflict_or_missing(self, "SELECT 1 FROM device_requests WHERE id = $1", id).await?)
    }

    async fn consume_device_request(&self, id: &str) -> Result<DeviceRequest> {
        let consumed = self
            .fetch_optional(
                Statement::new(
                    "UPDATE device_requests SET status = 'consumed' \
                     WHERE id = $1 AND status = 'approved' RETURNING *",
                )
                .text(id),
            )
            .await?;
        if let Some(row) = consumed {
            return device_request_from_row(&row);
        }
        Err(conflict_or_missing(self, "SELECT 1 FROM device_requests WHERE id = $1", id).await?)
    }

    async fn revoke_grant(&self, grant_id: &str, expires_at: Timestamp) -> Result<()> {
        let mut tx = self.begin_write(TxLock::Rows).await?;
        // Keep the later expiry when a grant is revoked twice, so the record outlives every
        // token it has to block.
        self.tx_execute(
            &mut tx,
            Statement::new(
                "INSERT INTO revoked_grants (grant_id, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (grant_id) DO UPDATE SET expires_at = CASE \
                 WHEN excluded.expires_at > revoked_grants.expires_at \
                 THEN excluded.expires_at ELSE revoked_grants.expires_at END",
            )
            .text(grant_id)
            .int(expires_at),
        )
        .await?;
        commit_revocation(self, tx).await
    }

    async fn is_grant_revoked(&self, grant_id: &str) -> Result<bool> {
        let key = Key::Grant(grant_id.to_owned());
        if let Some(Remembered::Grant { revoked }) = self.memo().get(&key) {
            return Ok(revoked);
        }
        let ticket = self.memo().ticket();
        let revoked = exists(
            self,
            Statement::new("SELECT 1 FROM revoked_grants WHERE grant_id = $1").text(grant_id),
        )
        .await?;
        self.memo().put(ticket, key, Remembered::Grant { revoked });
        Ok(revoked)
    }

    async fn sync_revocations(&self) -> Result<()> {
        let row = self
            .fetch_optional(Statement::new(
                "SELECT n FROM revocation_counter WHERE id = 1",
            ))
            .await?
            .ok_or_else(|| StorageError::Internal("the revocation counter is missing".into()))?;
        self.memo().synced(row.int("n")?);
        Ok(())
    }

    async fn create_refresh_token(&self, token: &RefreshToken) -> Result<()> {
        self.execute(insert_refresh_token(token)).await?;
        Ok(())
    }

    async fn get_refresh_token(&self, id: &str) -> Result<RefreshToken> {
        let stmt = Statement::new("SELECT * FROM refresh_tokens WHERE id = $1").text(id);
        fetch_model(self, stmt, refresh_token_from_row).await
    }

    async fn rotate_refresh_token(
        &self,
        old_id: &str,
        now: Timestamp,
        new: &RefreshToken,
    ) -> Result<()> {
        let mut tx = self.begin_write(TxLock::Rows).await?;
        let claimed = self
            .tx_execute(
                &mut tx,
                Statement::new(
                    "UPDATE refresh_tokens SET rotated_at = $1, last_used_at = $1 \
                     WHERE id = $2 AND rotated_at IS NULL AND revoked = FALSE",
                )
                .int(now)
                .text(old_id),
            )
            .await?;
        if claimed == 0 {
            let found = self
                .tx_fetch_optional(
                    &mut tx,
                    Statement::new("SELECT 1 FROM refresh_tokens WHERE id = $1").text(old_id),
                )
                .await?;
            return Err(match found {
                Some(_) => StorageError::Conflict,
                None => StorageError::NotFound,
            });
        }
        self.tx_execute(&mut tx, insert_refresh_token(new)).await?;
        self.commit(tx).await
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<u64> {
        let rows = self
            .fetch_all(
                Statement::new(
                    "UPDATE refresh_tokens SET revoked = TRUE \
                     WHERE family_id = $1 AND revoked = FALSE RETURNING rotated_at",
                )
                .text(family_id),
            )
            .await?;
        count_live(&rows)
    }

    async fn list_refresh_tokens_for_user(&self, user_id: &str) -> Result<Vec<RefreshToken>> {
        let stmt = Statement::new(
            "SELECT * FROM refresh_tokens WHERE user_id = $1 ORDER BY created_at, id",
        )
        .text(user_id);
        fetch_models(self, stmt, refresh_token_from_row).await
    }

    async fn revoke_refresh_tokens_for_user(&self, user_id: &str) -> Result<u64> {
        let rows = self
            .fetch_all(
                Statement::new(
                    "UPDATE refresh_tokens SET revoked = TRUE \
                     WHERE user_id = $1 AND revoked = FALSE RETURNING rotated_at",
                )
                .text(user_id),
            )
            .await?;
        count_live(&rows)
    }

    async fn create_user(&self, u: &User) -> Result<()> {
        self.execute(
            Statement::new(
                "INSERT INTO users (id, connector_id, upstream_id, username, display_name, \
                 email, email_verified, phone, picture, user_groups, connector_data, created_at, \
                 last_login_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .text(&u.id)
            .text(&u.connector_id)
            .text(&u.upstream_id)
            .text(&u.username)
            .opt_text(&u.display_name)
            .opt_text(&u.email)
            .flag(u.email_verified)
            .opt_text(&u.phone)
            .opt_text(&u.picture)
            .list(&u.groups)
            .opt_text(&u.connector_data)
            .int(u.created_at)
            .int(u.last_login_at),
        )
        .await?;
        Ok(())
    }

    async fn get_user(&self, id: &str) -> Result<User> {
        let key = Key::User(id.to_owned());
        if let Some(Remembered::User(user)) = self.memo().get(&key) {
            return Ok(user);
        }
        let ticket = self.memo().ticket();
        let stmt = Statement::new("SELECT * FROM users WHERE id = $1").text(id);
        let user = fetch_model(self, stmt, user_from_row).await?;
        self.memo().put(ticket, key, Remembered::User(user.clone()));
        Ok(user)
    }

    async fn get_user_for_grant(&self, user_id: &str, grant_id: &str) -> Result<(User, bool)> {
        let key = Key::UserGrant(user_id.to_owned(), grant_id.to_owned());
        if let Some(Remembered::UserGrant { user, revoked }) = self.memo().get(&key) {
            return Ok((user, revoked));
        }
        let ticket = self.memo().ticket();
        let row = self
            .fetch_optional(
                Statement::new(
                    "SELECT users.*, EXISTS (SELECT 1 FROM revoked_grants WHERE grant_id = $2) \
                     AS grant_revoked FROM users WHERE id = $1",
                )
                .text(user_id)
                .text(grant_id),
            )
            .await?
            .ok_or(StorageError::NotFound)?;
        let (user, revoked) = (user_from_row(&row)?, row.flag("grant_revoked")?);
        self.memo().put(
            ticket,
            key,
            Remembered::UserGrant {
                user: user.clone(),
                revoked,
            },
        );
        Ok((user, revoked))
    }

    async fn get_user_by_upstream(&self, connector_id: &str, upstream_id: &str) -> Result<User> {
        let stmt =
            Statement::new("SELECT * FROM users WHERE connector_id = $1 AND upstream_id = $2")
                .text(connector_id)
                .text(upstream_id);
        fetch_model(self, stmt, user_from_row).await
    }

    async fn get_user_by_username(&self, username: &str) -> Result<User> {
        let stmt = Statement::new("SELECT * FROM users WHERE username = $1").text(username);
        fetch_model(self, stmt, user_from_row).await
    }

    async fn update_user(&self, u: &User) -> Result<()> {
        // The identity (id, connector, upstream id) and created_at never change.
        let updated = expect_one(
            self.execute(
                Statement::new(
                    "UPDATE users SET username = $1, display_name = $2, email = $3, \
                     email_verified = $4, phone = $5, picture = $6, user_groups = $7, \
                     connector_data = $8, last_login_at = $9 WHERE id = $10",
                )
                .text(&u.username)
                .opt_text(&u.display_name)
                .opt_text(&u.email)
                .flag(u.email_verified)
                .opt_text(&u.phone)
                .opt_text(&u.picture)
                .list(&u.groups)
                .opt_text(&u.connector_data)
                .int(u.last_login_at)
                .text(&u.id),
            )
            .await?,
        );
        self.memo().forget();
        updated
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let stmt = Statement::new("SELECT * FROM users ORDER BY username");
        fetch_models(self, stmt, user_from_row).await
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>> {
        let stmt = Statement::new("SELECT * FROM signing_keys ORDER BY created_at, kid");
        fetch_models(self, stmt, signing_key_from_row).await
    }

    async fn rotate_signing_keys(
        &self,
        expected_newest: Option<&str>,
        key: &SigningKey,
        now: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.begin_write(TxLock::SigningKeys).await?;
        let newest = self
            .tx_fetch_optional(
                &mut tx,
                Statement::new(
                    "SELECT kid FROM signing_keys WHERE alg = $1 \
                     ORDER BY created_at DESC, kid DESC LIMIT 1",
                )
                .text(&key.alg),
            )
            .await?
            .map(|row| row.text("kid"))
            .transpose()?;
        if newest.as_deref() != expected_newest {
            return Ok(false);
        }
        self.tx_execute(
            &mut tx,
            Statement::new("DELETE FROM signing_keys WHERE expires_at < $1").int(now),
        )
        .await?;
        self.tx_execute(
            &mut tx,
            Statement::new(
                "INSERT INTO signing_keys (kid, alg, private_der, created_at, rotate_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .text(&key.kid)
            .text(&key.alg)
            .bytes(&key.private_der)
            .int(key.created_at)
            .int(key.rotate_at)
            .int(key.expires_at),
        )
        .await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        self.execute(
            Statement::new(
                "INSERT INTO sessions (id, user_id, data, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .text(&s.id)
            .opt_text(&s.user_id)
            .text(&s.data)
            .int(s.expires_at),
        )
        .await?;
        Ok(())
    }

    async fn save_session(&self, s: &SessionRecord) -> Result<()> {
        // An update, never an insert: a request that loaded the session before it was ended
        // (by a logout, or by `idbridge sessions revoke` in another process) must not write it
        // back.
        let updated = self
            .execute(
                Statement::new(
                    "UPDATE sessions SET user_id = $2, data = $3, expires_at = $4 WHERE id = $1",
                )
                .text(&s.id)
                .opt_text(&s.user_id)
                .text(&s.data)
                .int(s.expires_at),
            )
            .await;
        if self.remembers_sessions() {
            self.memo().forget_key(Key::Session(s.id.clone()));
        }
        expect_one(updated?)
    }

    async fn load_session(&self, id: &str, now: Timestamp) -> Result<Option<SessionRecord>> {
        let key = Key::Session(id.to_owned());
        if self.remembers_sessions()
            && let Some(Remembered::Session(record)) = self.memo().get(&key)
        {
            return Ok((record.expires_at > now).then_some(record));
        }
        let ticket = self.memo().ticket();
        let record = self
            .fetch_optional(
                Statement::new("SELECT * FROM sessions WHERE id = $1 AND expires_at > $2")
                    .text(id)
                    .int(now),
            )
            .await?
            .map(|row| session_from_row(&row))
            .transpose()?;
        if self.remembers_sessions()
            && let Some(r) = &record
        {
            self.memo().put(ticket, key, Remembered::Session(r.clone()));
        }
        Ok(record)
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        // Idempotent: a session that expired and was collected is already "deleted".
        self.execute(Statement::new("DELETE FROM sessions WHERE id = $1").text(id))
            .await?;
        if self.remembers_sessions() {
            self.memo().forget_key(Key::Session(id.to_owned()));
        }
        Ok(())
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<u64> {
        // Usually run by the command line while a server runs: the counter tells the server
        // to forget the sessions it remembers.
        let mut tx = self.begin_write(TxLock::Rows).await?;
        let deleted = self
            .tx_execute(
                &mut tx,
                Statement::new("DELETE FROM sessions WHERE user_id = $1").text(user_id),
            )
            .await?;
        commit_revocation(self, tx).await?;
        Ok(deleted)
    }

    async fn count_sessions(&self, now: Timestamp) -> Result<u64> {
        let row = self
            .fetch_optional(
                Statement::new("SELECT COUNT(*) AS n FROM sessions WHERE expires_at > $1").int(now),
            )
            .await?
            .ok_or_else(|| StorageError::Internal("COUNT returned no row".into()))?;
        u64::try_from(row.int("n")?)
            .map_err(|e| StorageError::Internal(format!("session count out of range: {e}")))
    }

    async fn append_audit_events(&self, events: &[AuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // One transaction per batch, and many rows per statement: each statement is a round
        // trip to the database, so a batch costs a few of them whatever its size.
        let mut tx = self.begin_write(TxLock::Rows).await?;
        let mut rest = events;
        while !rest.is_empty() {
            let rows = AUDIT_INSERT_ROWS
                .iter()
                .copied()
                .find(|&n| n <= rest.len())
                .unwrap_or(1);
            let (chunk, tail) = rest.split_at(rows);
            let mut stmt = Statement::new(audit_insert_sql(rows));
            for e in chunk {
                stmt = stmt
                    .int(e.at)
                    .text(&e.kind)
                    .opt_text(&e.user_id)
                    .opt_text(&e.client_id)
                    .opt_text(&e.connector_id)
                    .opt_text(&e.detail);
            }
            self.tx_execute(&mut tx, stmt).await?;
            rest = tail;
        }
        self.commit(tx).await
    }

    async fn delete_audit_events_before(&self, before: Timestamp) -> Result<u64> {
        self.execute(Statement::new("DELETE FROM audit_events WHERE at < $1").int(before))
            .await
    }

    async fn list_audit_events(
        &self,
        since: Timestamp,
        user_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let stmt = match user_id {
            Some(u) => Statement::new(
                "SELECT * FROM audit_events WHERE at >= $1 AND user_id = $2 ORDER BY seq LIMIT $3",
            )
            .int(since)
            .text(u)
            .int(i64::from(limit)),
            None => {
                Statement::new("SELECT * FROM audit_events WHERE at >= $1 ORDER BY seq LIMIT $2")
                    .int(since)
                    .int(i64::from(limit))
            }
        };
        fetch_models(self, stmt, audit_event_from_row).await
    }

    async fn try_lease(&self, name: &str, holder: &str, now: Timestamp, ttl: i64) -> Result<bool> {
        // One conditional upsert: the row changes only when it is ours or has expired, and
        // RETURNING tells whether it did.
        let taken = self
            .fetch_optional(
                Statement::new(
                    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     expires_at = excluded.expires_at \
                     WHERE leases.holder = excluded.holder OR leases.expires_at <= $4 \
                     RETURNING holder",
                )
                .text(name)
                .text(holder)
                .int(now + ttl)
                .int(now),
            )
            .await?;
        Ok(taken.is_some())
    }

    async fn garbage_collect(&self, now: Timestamp) -> Result<GcStats> {
        let delete = |sql| Statement::new(sql).int(now);
        Ok(GcStats {
            auth_requests: self
                .execute(delete("DELETE FROM auth_requests WHERE expires_at < $1"))
                .await?,
            auth_codes: self
                .execute(delete("DELETE FROM auth_codes WHERE expires_at < $1"))
                .await?,
            device_requests: self
                .execute(delete("DELETE FROM device_requests WHERE expires_at < $1"))
                .await?,
            refresh_tokens: self
                .execute(delete(
                    "DELETE FROM refresh_tokens WHERE expires_at < $1 OR absolute_expires_at < $1",
                ))
                .await?,
            sessions: self
                .execute(delete("DELETE FROM sessions WHERE expires_at < $1"))
                .await?,
            revocations: self
                .execute(delete("DELETE FROM revoked_grants WHERE expires_at < $1"))
                .await?,
        })
    }
}

/// Rows per audit `INSERT`, largest first. A few fixed sizes rather than one per batch size,
/// so the prepared statements each connection caches stay few; and no more than 16 rows,
/// because binding costs grow with the square of the placeholders (SQLite finds each
/// placeholder's name by a linear search, and sqlx asks for every one).
const AUDIT_INSERT_ROWS: [usize; 3] = [16, 4, 1];

/// `INSERT INTO audit_events ... VALUES (...), (...)` with `rows` rows of placeholders, for
/// each size in [`AUDIT_INSERT_ROWS`].
fn audit_insert_sql(rows: usize) -> &'static str {
    static SQL: std::sync::LazyLock<Vec<(usize, String)>> = std::sync::LazyLock::new(|| {
        AUDIT_INSERT_ROWS
            .iter()
            .map(|&rows| {
                let values: Vec<String> = (0..rows)
                    .map(|r| {
                        let p: Vec<String> = (1..=6).map(|c| format!("${}", r * 6 + c)).collect();
                        format!("({})", p.join(", "))
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO audit_events (at, kind, user_id, client_id, connector_id, \
                     detail) VALUES {}",
                    values.join(", ")
                );
                (rows, sql)
            })
            .collect()
    });
    SQL.iter()
        .find(|(n, _)| *n == rows)
        .map_or(SQL[SQL.len() - 1].1.as_str(), |(_, sql)| sql.as_str())
}

/// Builds a migrator over migrations embedded in the binary, so a deployment needs no
/// files besides the executable.
pub fn migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

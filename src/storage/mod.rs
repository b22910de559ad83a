//! Persistent state behind one trait.
//!
//! Every backend implements [`Storage`]; the conformance suite in the integration tests runs
//! against each of them. Operations that must be atomic across replicas (redeeming a code,
//! rotating a refresh token, creating the next signing key) are single trait methods rather
//! than read-modify-write sequences in callers, so each backend can make them atomic in its
//! own way (a conditional UPDATE, a transaction).
//!
//! All times are Unix seconds supplied by the caller: storage never reads the clock.

pub mod memo;
pub mod postgres;
mod sql;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Opens the SQLite database at `path`, creating it (and its directory) on first start and
/// bringing its schema up to date.
pub async fn open_sqlite(path: &Path) -> Result<Arc<dyn Storage>> {
    Ok(Arc::new(sqlite::SqliteStorage::open(path).await?))
}

/// Connects to PostgreSQL at `url` with a pool of at most `max_connections` and brings the
/// schema up to date (replicas starting together take turns).
pub async fn open_postgres(url: &str, max_connections: u32) -> Result<Arc<dyn Storage>> {
    Ok(Arc::new(
        postgres::PostgresStorage::connect(url, max_connections).await?,
    ))
}

/// Unix time in seconds.
pub type Timestamp = i64;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    /// A conditional update lost: the row was already redeemed, rotated or replaced.
    #[error("conflict: the record was changed concurrently or already used")]
    Conflict,
    /// The database could not be reached or answered with a transient failure.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Internal(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A client registered in the database (static clients from the config live in memory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// Keyed hash of the secret (see `oidc::secrets`); `None` for public clients.
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    pub default_scopes: Vec<String>,
    pub skip_approval: bool,
    pub allowed_connectors: Vec<String>,
    pub created_at: Timestamp,
}

/// An authorization request between `/auth` and the code being issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub id: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// `query` or `form_post`.
    pub response_mode: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// PKCE S256 challenge, when the client sent one.
    pub code_challenge: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub connector_id: Option<String>,
    /// Set when this request is the browser half of a device authorization (RFC 8628): the
    /// login then approves that device request instead of issuing a code.
    pub device_request_id: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The state of a device authorization request (RFC 8628).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceStatus {
    Pending,
    Approved,
    Denied,
    /// Approved and already exchanged for tokens.
    Consumed,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Consumed => "consumed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeviceStatus::Pending),
            "approved" => Some(DeviceStatus::Approved),
            "denied" => Some(DeviceStatus::Denied),
            "consumed" => Some(DeviceStatus::Consumed),
            _ => None,
        }
    }
}

/// A device authorization request. `id` is the SHA-256 of the device code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRequest {
    pub id: String,
    /// The user code without separators, upper case.
    pub user_code: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Seconds the device must wait between polls.
    pub interval: i64,
    pub last_polled_at: Option<Timestamp>,
    pub status: DeviceStatus,
    /// Who approved, once approved.
    pub user_id: Option<String>,
    pub connector_id: Option<String>,
    pub auth_time: Option<Timestamp>,
    pub session_id: Option<String>,
}

/// The user's decision on a device request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceDecision {
    Approve {
        user_id: String,
        connector_id: String,
        auth_time: Timestamp,
        session_id: Option<String>,
    },
    Deny,
}

/// An issued authorization code. `id` is the SHA-256 of the code, never the code itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCode {
    pub id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub user_id: String,
    pub connector_id: String,
    pub session_id: Option<String>,
    pub auth_time: Timestamp,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub redeemed_at: Option<Timestamp>,
}

/// What a token request presents with an authorization code.
#[derive(Clone, Copy, Debug)]
pub struct CodePresentation<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    /// The S256 challenge computed from the request's `code_verifier`, or `None` when the
    /// request had none (then the code must have been issued without a challenge).
    pub code_challenge: Option<&'a str>,
}

/// A refresh token. The presented token is `<id>.<secret>`; only a hash of the secret is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub id: String,
    pub secret_hash: String,
    /// Every token obtained by rotating from the same original grant shares a family.
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub connector_id: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub session_id: Option<String>,
    pub auth_time: Timestamp,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    /// Sliding expiry, pushed forward on every use.
    pub expires_at: Timestamp,
    /// Absolute expiry of the family, never moved.
    pub absolute_expires_at: Timestamp,
    /// Set when this token was exchanged for its successor.
    pub rotated_at: Option<Timestamp>,
    pub revoked: bool,
}

/// A user as we know them: one per (connector, upstream id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Our subject: opaque, stable, `[a-z0-9]{1,63}`.
    pub id: String,
    pub connector_id: String,
    pub upstream_id: String,
    /// Unique `preferred_username`, lowercase RFC 1123.
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone: Option<String>,
    pub picture: Option<String>,
    pub groups: Vec<String>,
    /// Opaque per-connector data from the last login or refresh (for example the upstream
    /// refresh token). Kept per user, not per token: upstreams that rotate their refresh
    /// tokens would otherwise see two of our clients revoke each other's grant.
    pub connector_data: Option<String>,
    pub created_at: Timestamp,
    pub last_login_at: Timestamp,
}

/// A signing key. Keys are used for signing until `rotate_at` and published until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    /// PKCS#8 DER of the private key.
    pub private_der: Vec<u8>,
    pub created_at: Timestamp,
    pub rotate_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A browser session record, as kept for the session layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    /// The signed-in user, when there is one (lets an admin end every session of a user).
    pub user_id: Option<String>,
    /// Serialized session data (JSON).
    pub data: String,
    pub expires_at: Timestamp,
}

/// Something worth an audit trail: sign-ins, tokens, revocations, administrative changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: Timestamp,
    /// `login_succeeded`, `login_failed`, `token_issued`, `token_refreshed`, `token_revoked`,
    /// `refresh_reuse_detected`, `code_replayed`, `logout`, `client_added`, ...
    pub kind: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub connector_id: Option<String>,
    /// Free text (a reason, a grant type); never a secret or a token.
    pub detail: Option<String>,
}

/// What a garbage-collection pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    pub auth_requests: u64,
    pub auth_codes: u64,
    pub device_requests: u64,
    pub refresh_tokens: u64,
    pub sessions: u64,
    pub revocations: u64,
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Cheap round trip to check the database answers.
    async fn ping(&self) -> Result<()>;

    /// Returns the stored value of `name`, storing `value` first if there is none. The first
    /// writer wins, so replicas agree on instance secrets.
    async fn get_or_init_setting(&self, name: &str, value: &str) -> Result<String>;

    // Clients kept in the database.
    async fn create_client(&self, client: &Client) -> Result<()>;
    async fn get_client(&self, id: &str) -> Result<Client>;
    async fn list_clients(&self) -> Result<Vec<Client>>;
    async fn delete_client(&self, id: &str) -> Result<()>;

    // Authorization requests.
    async fn create_auth_request(&self, req: &AuthRequest) -> Result<()>;
    async fn get_auth_request(&self, id: &str) -> Result<AuthRequest>;
    async fn delete_auth_request(&self, id: &str) -> Result<()>;

    // Authorization codes.
    async fn create_auth_code(&self, code: &AuthCode) -> Result<()>;
    async fn get_auth_code(&self, id: &str) -> Result<AuthCode>;
    /// Marks the code redeemed at `now`, atomically. `Conflict` if it was already redeemed,
    /// `NotFound` if it does not exist. Exactly one of many concurrent callers succeeds.
    async fn redeem_auth_code(&self, id: &str, now: Timestamp) -> Result<AuthCode>;
    /// Redeems the code at `now` only if it is unredeemed, unexpired and issued to exactly
    /// what the token request presents; `None` (and nothing changed) otherwise. The common
    /// case of a code exchange in one statement: on `None` the caller reads the code to find
    /// out what is wrong. Exactly one of many concurrent callers succeeds.
    async fn redeem_auth_code_matching(
        &self,
        id: &str,
        now: Timestamp,
        presented: &CodePresentation<'_>,
    ) -> Result<Option<AuthCode>>;

    // Device authorization requests (RFC 8628).
    /// `AlreadyExists` when the id or the user code is taken.
    async fn create_device_request(&self, req: &DeviceRequest) -> Result<()>;
    async fn get_device_request(&self, id: &str) -> Result<DeviceRequest>;
    async fn get_device_request_by_user_code(&self, user_code: &str) -> Result<DeviceRequest>;
    /// Records a poll of a pending request and the interval the device must now respect.
    async fn record_device_poll(&self, id: &str, now: Timestamp, interval: i64) -> Result<()>;
    /// Approves or denies a pending request; `Conflict` if it is no longer pending.
    async fn decide_device_request(&self, id: &str, decision: &DeviceDecision) -> Result<()>;
    /// Marks an approved request consumed and returns it; `Conflict` unless it was approved.
    /// Exactly one of many concurrent callers succeeds.
    async fn consume_device_request(&self, id: &str) -> Result<DeviceRequest>;

    // Revoked grants: a grant is the family of tokens issued from one code or one login.
    async fn revoke_grant(&self, grant_id: &str, expires_at: Timestamp) -> Result<()>;
    async fn is_grant_revoked(&self, grant_id: &str) -> Result<bool>;
    /// Reads the database's revocation counter. A server calls it every
    /// `memo::SYNC_INTERVAL`: while it does, the answers of [`Storage::is_grant_revoked`] and
    /// [`Storage::get_user_for_grant`] may come from memory, and revocations made by other
    /// processes still reach them within that interval. Without it, every call reads the
    /// database.
    async fn sync_revocations(&self) -> Result<()>;

    // Refresh tokens.
    async fn create_refresh_token(&self, token: &RefreshToken) -> Result<()>;
    async fn get_refresh_token(&self, id: &str) -> Result<RefreshToken>;
    /// Marks `old_id` rotated at `now` and stores `new` in one transaction. `Conflict` if
    /// `old_id` was already rotated or revoked.
    async fn rotate_refresh_token(
        &self,
        old_id: &str,
        now: Timestamp,
        new: &RefreshToken,
    ) -> Result<()>;
    /// Revokes every token of a family; returns how many were live.
    async fn revoke_refresh_family(&self, family_id: &str) -> Result<u64>;
    async fn list_refresh_tokens_for_user(&self, user_id: &str) -> Result<Vec<RefreshToken>>;
    /// Revokes every refresh token of a user; returns how many were live.
    async fn revoke_refresh_tokens_for_user(&self, user_id: &str) -> Result<u64>;

    // Users.
    async fn create_user(&self, user: &User) -> Result<()>;
    async fn get_user(&self, id: &str) -> Result<User>;
    /// The user, and whether `grant_id` has been revoked: what userinfo needs, in one call.
    async fn get_user_for_grant(&self, user_id: &str, grant_id: &str) -> Result<(User, bool)>;
    async fn get_user_by_upstream(&self, connector_id: &str, upstream_id: &str) -> Result<User>;
    async fn get_user_by_username(&self, username: &str) -> Result<User>;
    /// Replaces every mutable field of the user with the given id.
    async fn update_user(&self, user: &User) -> Result<()>;
    async fn list_users(&self) -> Result<Vec<User>>;

    // Signing keys.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>>;
    /// Stores `key` only if the newest stored key of the same algorithm is still
    /// `expected_newest` (by `created_at`, then `kid`), and deletes keys whose `expires_at` has
    /// passed. Returns `false` when another
    /// process rotated first; the caller then reloads.
    async fn rotate_signing_keys(
        &self,
        expected_newest: Option<&str>,
        key: &SigningKey,
        now: Timestamp,
    ) -> Result<bool>;

    // Browser sessions.
    /// Stores a new session; `AlreadyExists` when the id is taken.
    async fn create_session(&self, record: &SessionRecord) -> Result<()>;
    /// Replaces an existing session; `NotFound` when it no longer exists (it was ended by a
    /// logout, `idbridge sessions revoke` or collection). A save never brings an ended
    /// session back.
    async fn save_session(&self, record: &SessionRecord) -> Result<()>;
    /// Returns the session if it exists and has not expired at `now`.
    async fn load_session(&self, id: &str, now: Timestamp) -> Result<Option<SessionRecord>>;
    /// Succeeds when the session does not exist (it may have expired and been collected).
    async fn delete_session(&self, id: &str) -> Result<()>;
    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<u64>;
    async fn count_sessions(&self, now: Timestamp) -> Result<u64>;

    // Audit trail.
    async fn append_audit_events(&self, events: &[AuditEvent]) -> Result<()>;
    /// Deletes events older than `before` (retention); returns how many.
    async fn delete_audit_events_before(&self, before: Timestamp) -> Result<u64>;
    /// Events at or after `since`, oldest first, optionally of one user, at most `limit`.
    async fn list_audit_events(
        &self,
        since: Timestamp,
        user_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>>;

    /// Takes or renews the lease `name` for `holder` until `now + ttl`, unless another holder
    /// has a lease that has not expired. Replicas use it so that periodic work (garbage
    /// collection) runs on one of them at a time.
    async fn try_lease(&self, name: &str, holder: &str, now: Timestamp, ttl: i64) -> Result<bool>;

    /// Deletes everything that expired before `now`.
    async fn garbage_collect(&self, now: Timestamp) -> Result<GcStats>;
}

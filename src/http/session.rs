//! Browser sessions: tower-sessions backed by our own storage, so sessions live in the same
//! database as everything else and an administrator can end every session of a user.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::storage::{SessionRecord, Storage, StorageError};

/// The key under which our data lives in the session record.
const KEY: &str = "idbridge";
/// At most this many authorization requests in flight per browser.
const MAX_PENDING: usize = 16;

#[derive(Clone)]
pub struct DbSessionStore {
    storage: Arc<dyn Storage>,
}

impl DbSessionStore {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage }
    }
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbSessionStore")
    }
}

fn backend(e: StorageError) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

/// The stored form of a tower-sessions record.
fn stored(record: &Record) -> session_store::Result<SessionRecord> {
    let user_id = record
        .data
        .get(KEY)
        .and_then(|v| v.get("user"))
        .and_then(|u| u.get("user_id"))
        .and_then(|id| id.as_str())
        .map(str::to_string);
    let data = serde_json::to_string(&record.data)
        .map_err(|e| session_store::Error::Encode(e.to_string()))?;
    Ok(SessionRecord {
        id: record.id.to_string(),
        user_id,
        data,
        expires_at: record.expiry_date.unix_timestamp(),
    })
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // Ids are 128 random bits: a collision means a broken generator, so a few attempts.
        for _ in 0..3 {
            match self.storage.create_session(&stored(record)?).await {
                Err(StorageError::AlreadyExists) => record.id = Id::default(),
                other => return other.map_err(backend),
            }
        }
        Err(session_store::Error::Backend(
            "could not find a free session id".into(),
        ))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self.storage.save_session(&stored(record)?).await {
            // Ended (logout, `idbridge sessions revoke`) while this request used it: it stays
            // ended, and the browser's next request starts a new session.
            Err(StorageError::NotFound) => {
                tracing::debug!("session ended during the request; not saved");
                Ok(())
            }
            other => other.map_err(backend),
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let Some(stored) = self
            .storage
            .load_session(&id.to_string(), now)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data: HashMap<String, serde_json::Value> = serde_json::from_str(&stored.data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(stored.expires_at)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.storage
            .delete_session(&id.to_string())
            .await
            .map_err(backend)
    }
}

/// Who is signed in on this browser.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedIn {
    pub user_id: String,
    pub connector_id: String,
    pub auth_time: i64,
    /// Session id as published in tokens (`sid`), stable for the login.
    pub sid: String,
}

/// Pending upstream login: which connector, and what it asked us to keep.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpstreamLogin {
    pub request_id: String,
    pub connector_id: String,
    pub data: Option<String>,
}

/// Pending test-login run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestLogin {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BrowserSession {
    pub user: Option<SignedIn>,
    pub csrf: String,
    /// Authorization requests started in this browser: a request id from elsewhere is refused.
    pub pending: Vec<String>,
    /// Clients the user approved in this session.
    pub consents: Vec<String>,
    pub upstream: Vec<UpstreamLogin>,
    /// Clients that received a code in this session (for back-channel logout).
    pub clients: Vec<String>,
    pub test_login: Option<TestLogin>,
}

impl BrowserSession {
    pub async fn load(session: &Session) -> Result<Self, session_store::Error> {
        let mut s: Self = session
            .get(KEY)
            .await
            .map_err(|e| session_store::Error::Backend(e.to_string()))?
            .unwrap_or_default();
        if s.csrf.is_empty() {
            s.csrf = crate::oidc::random::token(24);
        }
        Ok(s)
    }

    pub async fn store(&self, session: &Session) -> Result<(), session_store::Error> {
        session
            .insert(KEY, self)
            .await
            .map_err(|e| session_store::Error::Backend(e.to_string()))
    }

    pub fn add_pending(&mut self, request_id: &str) {
        self.pending.retain(|p| p != request_id);
        self.pending.push(request_id.to_string());
        if self.pending.len() > MAX_PENDING {
            let excess = self.pending.len() - MAX_PENDING;
            self.pending.drain(..excess);
        }
    }

    pub fn owns(&self, request_id: &str) -> bool {
        self.pending.iter().any(|p| p == request_id)
    }

    pub fn finish(&mut self, request_id: &str) {
        self.pending.retain(|p| p != request_id);
        self.upstream.retain(|u| u.request_id != request_id);
    }

    pub fn check_csrf(&self, presented: Option<&str>) -> bool {
        match presented {
            Some(p) => crate::oidc::random::constant_time_eq(p.as_bytes(), self.csrf.as_bytes()),
            None => false,
        }
    }
}

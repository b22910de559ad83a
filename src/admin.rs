//! Administration behind `idbridge clients`, `idbridge users` and `idbridge sessions`: plain
//! functions over the configuration and an open storage, so they are tested without the
//! binary. The command line only parses arguments and prints what these return.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use url::Url;

use crate::config::{Config, is_loopback_host};
use crate::http::TEST_LOGIN_CLIENT_ID;
use crate::oidc::clients::{GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, SecretHasher};
use crate::oidc::random;
use crate::storage::{Client, Storage, StorageError, Timestamp, User};

/// The grants a database client gets (the client registry grants exactly these).
pub const DATABASE_CLIENT_GRANTS: [&str; 2] = [GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN];

/// Bytes of randomness in a generated client secret.
const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request itself is wrong; every problem, one per line.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error(
        "client {0:?} is defined in the configuration file (staticClients): edit the file to change or remove it"
    )]
    StaticClient(String),
    #[error("a client with the id {0:?} already exists in the database")]
    ClientExists(String),
    #[error("no client with the id {0:?} in the database")]
    NoSuchClient(String),
    #[error("no user has the username or subject {0:?}")]
    NoSuchUser(String),
    #[error("cannot read the instance key from storage: {0}")]
    InstanceKey(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What `idbridge clients add` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewClient {
    pub id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    pub default_scopes: Vec<String>,
    pub skip_approval: bool,
    pub allowed_connectors: Vec<String>,
}

/// A client just stored. `secret` is the only copy of a confidential client's secret: storage
/// keeps a keyed hash of it.
#[derive(Clone, PartialEq, Eq)]
pub struct AddedClient {
    pub client: Client,
    pub secret: Option<String>,
    /// Findings that did not stop the creation (plain http redirect on a public host...).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for AddedClient {
    // The secret must not end up in logs or panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddedClient")
            .field("client", &self.client)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("warnings", &self.warnings)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientSource {
    /// `staticClients` in the configuration file (or the built-in test-login client).
    Static,
    Database,
}

impl ClientSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientSource::Static => "static",
            ClientSource::Database => "database",
        }
    }
}

/// One line of `idbridge clients list`. Never carries a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientListing {
    pub id: String,
    pub name: String,
    pub source: ClientSource,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
}

/// What `idbridge sessions revoke` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub user: User,
    /// Browser sessions deleted: the next authorization shows the login form.
    pub sessions: u64,
    /// Refresh tokens that were live and are now revoked.
    pub refresh_tokens: u64,
    /// Grants marked revoked, so idbridge's own userinfo and introspection refuse the access
    /// tokens issued alongside those refresh tokens.
    pub grants: u64,
}

/// Ids of the clients that come from the configuration, including the built-in test-login
/// client when it is enabled.
pub fn static_client_ids(config: &Config) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = config.static_clients.iter().map(|c| c.id.clone()).collect();
    if config.test_login.enabled {
        ids.insert(TEST_LOGIN_CLIENT_ID.to_string());
    }
    ids
}

/// Checks a registered redirect URI with the rules applied to static clients: an absolute URL
/// without fragment; https, or http (warned about off loopback); a private-use scheme only for
/// a public (native) client; never a script or data scheme. Returns a warning, if any.
pub fn check_redirect_uri(uri: &str, public: bool) -> Result<Option<String>, String> {
    let url = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URL: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} must not contain a fragment (#...)"));
    }
    match url.scheme() {
        "https" => Ok(None),
        "http" if url.host_str().is_some_and(is_loopback_host) => Ok(None),
        "http" => Ok(Some(format!(
            "{uri} uses plain http on a non-loopback host"
        ))),
        scheme @ ("javascript" | "data" | "file" | "vbscript" | "blob") => {
            Err(format!("{uri:?}: scheme {scheme:?} is not allowed"))
        }
        _ if public => Ok(None),
        scheme => Err(format!(
            "{uri:?}: scheme {scheme:?} is only allowed for public (native) clients; use https"
        )),
    }
}

/// Validates a new client against the configuration: returns warnings, or every error.
pub fn validate_new_client(config: &Config, new: &NewClient) -> Result<Vec<String>, Vec<String>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if new.id.is_empty() {
        errors.push("the client id must not be empty".to_string());
    } else if new.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.push("the client id must not contain spaces or control characters".to_string());
    }
    if new.redirect_uris.is_empty() {
        errors.push(
            "at least one --redirect-uri is needed: database clients use the authorization_code \
             grant"
                .to_string(),
        );
    }
    for (flag, uris) in [
        ("--redirect-uri", &new.redirect_uris),
        ("--post-logout-redirect-uri", &new.post_logout_redirect_uris),
    ] {
        for uri in uris {
            match check_redirect_uri(uri, new.public) {
                Ok(Some(warning)) => warnings.push(format!("{flag}: {warning}")),
                Ok(None) => {}
                Err(error) => errors.push(format!("{flag}: {error}")),
            }
        }
    }
    for scope in &new.default_scopes {
        if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c == '"') {
            errors.push(format!(
                "--default-scope: invalid scope {scope:?}: one scope per option, no spaces"
            ));
        }
    }
    if !new.default_scopes.is_empty() && !new.default_scopes.iter().any(|s| s == "openid") {
        warnings.push(
            "--default-scope does not include openid, so a request without scope gets no ID token"
                .to_string(),
        );
    }
    for connector in &new.allowed_connectors {
        if !config.connectors.iter().any(|c| &c.id == connector) {
            errors.push(format!(
                "--allowed-connector: no connector has the id {connector:?} (configured: {})",
                config
                    .connectors
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(errors)
    }
}

/// The hasher the server uses for client secrets, from the instance key in storage.
pub async fn secret_hasher(storage: &dyn Storage) -> Result<SecretHasher, AdminError> {
    let key = crate::app::instance_secret(storage, "client_secret_key")
        .await
        .map_err(|e| AdminError::InstanceKey(e.to_string()))?;
    Ok(SecretHasher::new(&key))
}

/// Registers a client in the database. A confidential client gets a generated secret, which
/// is returned once and stored only as a keyed hash.
pub async fn add_client(
    config: &Config,
    storage: &dyn Storage,
    new: NewClient,
    now: Timestamp,
) -> Result<AddedClient, AdminError> {
    let warnings = validate_new_client(config, &new).map_err(AdminError::Invalid)?;
    if static_client_ids(config).contains(&new.id) {
        return Err(AdminError::StaticClient(new.id));
    }
    match storage.get_client(&new.id).await {
        Ok(_) => return Err(AdminError::ClientExists(new.id)),
        Err(StorageError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let (secret, secret_hash) = if new.public {
        (None, None)
    } else {
        let secret = random::token(SECRET_BYTES);
        let hash = secret_hasher(storage).await?.hash(&secret);
        (Some(secret), Some(hash))
    };
    let client = Client {
        name: new.name.clone().unwrap_or_else(|| new.id.clone()),
        id: new.id,
        secret_hash,
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        public: new.public,
        default_scopes: new.default_scopes,
        skip_approval: new.skip_approval,
        allowed_connectors: new.allowed_connectors,
        created_at: now,
    };
    match storage.create_client(&client).await {
        Ok(()) => {}
        Err(StorageError::AlreadyExists) => return Err(AdminError::ClientExists(client.id)),
        Err(e) => return Err(e.into()),
    }
    audit(storage, now, "client_added", None, Some(&client.id)).await?;
    Ok(AddedClient {
        client,
        secret,
        warnings,
    })
}

/// Static clients first (in file order), then database clients (by id).
pub async fn list_clients(
    config: &Config,
    storage: &dyn Storage,
) -> Result<Vec<ClientListing>, AdminError> {
    let mut out: Vec<ClientListing> = config
        .static_clients
        .iter()
        .map(|c| ClientListing {
            id: c.id.clone(),
            name: c.name.clone(),
            source: ClientSource::Static,
            public: c.public,
            redirect_uris: c.redirect_uris.clone(),
            grant_types: c.grant_types.clone(),
        })
        .collect();
    if config.test_login.enabled {
        out.push(ClientListing {
            id: TEST_LOGIN_CLIENT_ID.to_string(),
            name: "Test login".to_string(),
            source: ClientSource::Static,
            public: true,
            redirect_uris: vec![config.endpoint("/test-login/callback")],
            grant_types: DATABASE_CLIENT_GRANTS
                .iter()
                .map(|g| g.to_string())
                .collect(),
        });
    }
    for c in storage.list_clients().await? {
        out.push(ClientListing {
            id: c.id,
            name: c.name,
            source: ClientSource::Database,
            public: c.public,
            redirect_uris: c.redirect_uris,
            grant_types: DATABASE_CLIENT_GRANTS
                .iter()
                .map(|g| g.to_string())
                .collect(),
        });
    }
    Ok(out)
}

/// Removes a database client. Tokens already issued to it stay valid until they expire, but
/// it can no longer authenticate, refresh or start a login.
pub async fn remove_client(
    config: &Config,
    storage: &dyn Storage,
    id: &str,
) -> Result<(), AdminError> {
    if static_client_ids(config).contains(id) {
        return Err(AdminError::StaticClient(id.to_string()));
    }
    match storage.delete_client(id).await {
        Ok(()) => {}
        Err(StorageError::NotFound) => return Err(AdminError::NoSuchClient(id.to_string())),
        Err(e) => return Err(e.into()),
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    audit(storage, now, "client_removed", None, Some(id)).await
}

/// Administrative changes go to the same audit trail as sign-ins.
async fn audit(
    storage: &dyn Storage,
    at: i64,
    kind: &str,
    user_id: Option<&str>,
    client_id: Option<&str>,
) -> Result<(), AdminError> {
    storage
        .append_audit_events(&[audit_event(at, kind, user_id, client_id)])
        .await?;
    Ok(())
}

fn audit_event(
    at: i64,
    kind: &str,
    user_id: Option<&str>,
    client_id: Option<&str>,
) -> crate::storage::AuditEvent {
    crate::storage::AuditEvent {
        at,
        kind: kind.to_string(),
        user_id: user_id.map(str::to_string),
        client_id: client_id.map(str::to_string),
        connector_id: None,
        detail: Some("idbridge command line".to_string()),
    }
}

/// Every user, most recent login first.
pub async fn list_users(storage: &dyn Storage) -> Result<Vec<User>, AdminError> {
    let mut users = storage.list_users().await?;
    users.sort_by(|a, b| {
        b.last_login_at
            .cmp(&a.last_login_at)
            .then_with(|| a.username.cmp(&b.username))
    });
    Ok(users)
}

/// Finds a user by username (as given, then lower-cased) or by subject.
pub async fn find_user(storage: &dyn Storage, name: &str) -> Result<User, AdminError> {
    let lower = name.to_lowercase();
    let mut candidates = vec![name];
    if lower != name {
        candidates.push(&lower);
    }
    for candidate in candidates {
        match storage.get_user_by_username(candidate).await {
            Ok(user) => return Ok(user),
            Err(StorageError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match storage.get_user(name).await {
        Ok(user) => Ok(user),
        Err(StorageError::NotFound) => Err(AdminError::NoSuchUser(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Signs a user out everywhere: deletes their browser sessions, revokes their refresh tokens,
/// and marks the grants of those refresh tokens revoked so that idbridge's own userinfo and
/// introspection refuse the matching access tokens. Services that validate access tokens
/// offline keep accepting them until they expire.
pub async fn revoke_user_sessions(
    config: &Config,
    storage: &dyn Storage,
    name: &str,
    now: Timestamp,
) -> Result<Revocation, AdminError> {
    let user = find_user(storage, name).await?;
    let live_families: BTreeSet<String> = storage
        .list_refresh_tokens_for_user(&user.id)
        .await?
        .into_iter()
        .filter(|t| {
            !t.revoked
                && t.rotated_at.is_none()
                && t.expires_at > now
                && t.absolute_expires_at > now
        })
        .map(|t| t.family_id)
        .collect();
    let sessions = storage.delete_sessions_for_user(&user.id).await?;
    let refresh_tokens = storage.revoke_refresh_tokens_for_user(&user.id).await?;
    // The revocation record must outlive every access token of the grant.
    let until = now + config.expiry.access_tokens.as_secs() as i64;
    for family in &live_families {
        storage.revoke_grant(family, until).await?;
    }
    audit(storage, now, "sessions_revoked", Some(&user.id), None).await?;
    Ok(Revocation {
        user,
        sessions,
        refresh_tokens,
        grants: live_families.len() as u64,
    })
}

/// `2026-11-03 10:15:00 UTC`.
pub fn utc(ts: Timestamp) -> String {
    crate::inspect::utc(ts)
}

/// The table printed by `idbridge clients list`.
pub fn render_clients(clients: &[ClientListing]) -> String {
    let rows: Vec<[String; 5]> = clients
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                c.source.as_str().to_string(),
                if c.public { "public" } else { "confidential" }.to_string(),
                c.grant_types.join(","),
                if c.redirect_uris.is_empty() {
                    "-".to_string()
                } else {
                    c.redirect_uris.join(" ")
                },
            ]
        })
        .collect();
    render_table(
        ["ID", "SOURCE", "TYPE", "GRANTS", "REDIRECT URIS"],
        &rows,
        "no clients",
    )
}

/// The table printed by `idbridge users list`.
pub fn render_users(users: &[User]) -> String {
    let rows: Vec<[String; 5]> = users
        .iter()
        .map(|u| {
            [
                u.id.clone(),
                u.username.clone(),
                u.connector_id.clone(),
                u.email.clone().unwrap_or_else(|| "-".to_string()),
                utc(u.last_login_at),
            ]
        })
        .collect();
    render_table(
        ["SUBJECT", "USERNAME", "CONNECTOR", "EMAIL", "LAST LOGIN"],
        &rows,
        "no users yet: users are created at their first login",
    )
}

fn render_table<const N: usize>(headers: [&str; N], rows: &[[String; N]], empty: &str) -> String {
    if rows.is_empty() {
        return format!("({empty})\n");
    }
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RefreshToken;

    const CONFIG: &str = r#"
issuer: https://sso.example.com
storage:
  type: sqlite
  config:
    file: /nonexistent/unused.db
connectors:
  - type: local
    id: local
    name: Email
staticClients:
  - id: grafana
    secret: s3cret
    redirectURIs: [https://grafana.example.com/login/generic_oauth]
"#;

    fn config() -> Config {
        Config::from_yaml_str(CONFIG).unwrap()
    }

    async fn storage() -> (tempfile::TempDir, std::sync::Arc<dyn Storage>) {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::open_sqlite(&dir.path().join("t.db"))
            .await
            .unwrap();
        (dir, storage)
    }

    fn new_client(id: &str) -> NewClient {
        NewClient {
            id: id.into(),
            redirect_uris: vec!["https://app.example.com/cb".into()],
            ..NewClient::default()
        }
    }

    #[test]
    fn redirect_uris_follow_the_static_client_rules() {
        assert_eq!(
            check_redirect_uri("https://a.example.com/cb", false),
            Ok(None)
        );
        assert_eq!(
            check_redirect_uri("http://127.0.0.1:8000/cb", false),
            Ok(None)
        );
        assert_eq!(check_redirect_uri("http://localhost/cb", false), Ok(None));
        assert!(
            check_redirect_uri("http://a.example.com/cb", false)
                .unwrap()
                .is_some()
        );
        assert!(
            check_redirect_uri("com.example.app:/cb", true)
                .unwrap()
                .is_none()
        );
        for (uri, public) in [
            ("com.example.app:/cb", false),
            ("https://a.example.com/cb#x", false),
            ("/relative", false),
            ("javascript:alert(1)", true),
            ("data:text/html,x", true),
        ] {
            assert!(check_redirect_uri(uri, public).is_err(), "{uri}");
        }
    }

    #[test]
    fn validation_collects_every_error() {
        let bad = NewClient {
            id: "has space".into(),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec!["https://x.example.com/#f".into()],
            default_scopes: vec!["openid profile".into()],
            allowed_connectors: vec!["dingtalk".into()],
            ..NewClient::default()
        };
        let errors = validate_new_client(&config(), &bad).unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        let ok = NewClient {
            default_scopes: vec!["profile".into()],
            allowed_connectors: vec!["local".into()],
            ..new_client("app")
        };
        let warnings = validate_new_client(&config(), &ok).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[tokio::test]
    async fn confidential_client_secret_is_returned_once_and_hashed_with_the_server_key() {
        let (_dir, storage) = storage().await;
        let config = config();
        let added = add_client(&config, storage.as_ref(), new_client("app"), 100)
            .await
            .unwrap();
        let secret = added.secret.clone().unwrap();
        assert!(secret.len() >= 43, "{secret}");
        assert!(!format!("{added:?}").contains(&secret));
        let stored = storage.get_client("app").await.unwrap();
        let hash = stored.secret_hash.unwrap();
        assert_ne!(hash, secret);
        // The same instance key as the server: what build_provider would use.
        let hasher = secret_hasher(storage.as_ref()).await.unwrap();
        assert!(hasher.verify(&secret, &hash));
        assert_eq!(stored.name, "app");
        assert_eq!(stored.created_at, 100);

        let public = NewClient {
            public: true,
            ..new_client("cli")
        };
        let added = add_client(&config, storage.as_ref(), public, 100)
            .await
            .unwrap();
        assert!(added.secret.is_none());
        assert!(
            storage
                .get_client("cli")
                .await
                .unwrap()
                .secret_hash
                .is_none()
        );
    }

    #[tokio::test]
    async fn duplicate_and_static_ids_are_refused() {
        let (_dir, storage) = storage().await;
        let config = config();
        add_client(&config, storage.as_ref(), new_client("app"), 1)
            .await
            .unwrap();
        assert!(matches!(
            add_client(&config, storage.as_ref(), new_client("app"), 1).await,
            Err(AdminError::ClientExists(_))
        ));
        assert!(matches!(
            add_client(&config, storage.as_ref(), new_client("grafana"), 1).await,
            Err(AdminError::StaticClient(_))
        ));
        let err = remove_client(&config, storage.as_ref(), "grafana")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("configuration file"), "{err}");
        remove_client(&config, storage.as_ref(), "app")
            .await
            .unwrap();
        assert!(matches!(
            remove_client(&config, storage.as_ref(), "app").await,
            Err(AdminError::NoSuchClient(_))
        ));
    }

    #[tokio::test]
    async fn listing_shows_both_sources_and_no_secret() {
        let (_dir, storage) = storage().await;
        let config = config();
        let added = add_client(&config, storage.as_ref(), new_client("app"), 1)
            .await
            .unwrap();
        let list = list_clients(&config, storage.as_ref()).await.unwrap();
        let ids: Vec<(&str, ClientSource)> =
            list.iter().map(|c| (c.id.as_str(), c.source)).collect();
        assert_eq!(
            ids,
            vec![
                ("grafana", ClientSource::Static),
                ("app", ClientSource::Database)
            ]
        );
        let text = render_clients(&list);
        assert!(!text.contains(added.secret.as_deref().unwrap()));
        assert!(!text.contains("s3cret"));
        assert!(text.starts_with("ID "), "{text}");
        assert!(text.contains("app      database  confidential"), "{text}");
    }

    fn user(id: &str, username: &str) -> User {
        User {
            id: id.into(),
            connector_id: "local".into(),
            upstream_id: id.into(),
            username: username.into(),
            display_name: None,
            email: Some(format!("{username}@example.com")),
            email_verified: true,
            phone: None,
            picture: None,
            groups: vec![],
            connector_data: None,
            created_at: 1,
            last_login_at: 1_700_000_000,
        }
    }

    fn refresh(id: &str, user_id: &str, family: &str) -> RefreshToken {
        RefreshToken {
            id: id.into(),
            secret_hash: "h".into(),
            family_id: family.into(),
            client_id: "grafana".into(),
            user_id: user_id.into(),
            connector_id: "local".into(),
            scopes: vec!["openid".into()],
            nonce: None,
            session_id: None,
            auth_time: 1,
            created_at: 1,
            last_used_at: 1,
            expires_at: 10_000,
            absolute_expires_at: 20_000,
            rotated_at: None,
            revoked: false,
        }
    }

    #[tokio::test]
    async fn revoking_a_user_ends_sessions_tokens_and_grants() {
        let (_dir, storage) = storage().await;
        let config = config();
        storage.create_user(&user("sub1", "alice")).await.unwrap();
        storage.create_user(&user("sub2", "bob")).await.unwrap();
        for (id, user_id) in [("s1", "sub1"), ("s2", "sub1"), ("s3", "sub2")] {
            storage
                .create_session(&crate::storage::SessionRecord {
                    id: id.into(),
                    user_id: Some(user_id.into()),
                    data: "{}".into(),
                    expires_at: 10_000,
                })
                .await
                .unwrap();
        }
        storage
            .create_refresh_token(&refresh("r1", "sub1", "fam1"))
            .await
            .unwrap();
        storage
            .create_refresh_token(&refresh("r2", "sub2", "fam2"))
            .await
            .unwrap();

        let done = revoke_user_sessions(&config, storage.as_ref(), "ALICE", 100)
            .await
            .unwrap();
        assert_eq!(done.user.id, "sub1");
        assert_eq!((done.sessions, done.refresh_tokens, done.grants), (2, 1, 1));
        assert!(storage.get_refresh_token("r1").await.unwrap().revoked);
        assert!(storage.is_grant_revoked("fam1").await.unwrap());
        assert!(!storage.get_refresh_token("r2").await.unwrap().revoked);
        assert!(storage.load_session("s3", 100).await.unwrap().is_some());

        let by_subject = revoke_user_sessions(&config, storage.as_ref(), "sub2", 100)
            .await
            .unwrap();
        assert_eq!(by_subject.user.username, "bob");
        assert!(matches!(
            revoke_user_sessions(&config, storage.as_ref(), "carol", 100).await,
            Err(AdminError::NoSuchUser(_))
        ));
    }

    #[tokio::test]
    async fn users_are_listed_with_their_last_login() {
        let (_dir, storage) = storage().await;
        assert!(render_users(&list_users(storage.as_ref()).await.unwrap()).contains("no users"));
        storage.create_user(&user("sub1", "alice")).await.unwrap();
        let text = render_users(&list_users(storage.as_ref()).await.unwrap());
        assert!(text.contains("sub1"), "{text}");
        assert!(text.contains("alice@example.com"), "{text}");
        assert!(text.contains("2023-11-14 22:13:20 UTC"), "{text}");
    }
}

//! The storage conformance suite: every behaviour runs against every backend.
//!
//! Each behaviour is an `async fn(Arc<dyn Storage>)`; the `conformance!` macro turns it into
//! one test per backend (`storage_conformance::sqlite::NAME`, `storage_conformance::postgres::NAME`).
//! SQLite tests use a fresh file in a temporary directory. PostgreSQL tests need a server URL
//! in `IDBRIDGE_TEST_POSTGRES_URL` (see `scripts/pg-test-server`); each creates a database of
//! its own and drops it afterwards. Without the variable they report that they were skipped.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use idbridge::storage::postgres::PostgresStorage;
use idbridge::storage::sqlite::SqliteStorage;
use idbridge::storage::{
    AuditEvent, AuthCode, AuthRequest, Client, CodePresentation, DeviceDecision, DeviceRequest,
    DeviceStatus, GcStats, RefreshToken, SessionRecord, SigningKey, Storage, StorageError, User,
    open_postgres, open_sqlite,
};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const POSTGRES_URL_VAR: &str = "IDBRIDGE_TEST_POSTGRES_URL";

/// Asserts that a storage call failed with the given `StorageError` variant.
macro_rules! assert_err {
    ($result:expr, $variant:ident) => {
        match $result {
            Err(StorageError::$variant) => {}
            other => panic!(
                "expected Err({}), got {:?}",
                stringify!($variant),
                other.map(|_| "Ok(..)")
            ),
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Backends

struct SqliteFixture {
    storage: Arc<dyn Storage>,
    _dir: tempfile::TempDir,
}

async fn sqlite_fixture() -> SqliteFixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_sqlite(&dir.path().join("idbridge.sqlite3"))
        .await
        .unwrap();
    SqliteFixture { storage, _dir: dir }
}

/// A database of its own on the test server, dropped by [`PostgresFixture::drop_database`].
struct PostgresFixture {
    storage: Arc<dyn Storage>,
    server_url: String,
    database: String,
}

fn postgres_server_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|u| !u.is_empty())
}

fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates an empty database on the server and returns its URL.
async fn create_postgres_database(server_url: &str) -> (String, String) {
    let database = unique_name("idb");
    let mut admin = PgConnection::connect(server_url).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let mut url = url::Url::parse(server_url).unwrap();
    url.set_path(&database);
    (database, url.to_string())
}

async fn drop_postgres_database(server_url: &str, database: &str) {
    let mut admin = PgConnection::connect(server_url).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
}

async fn postgres_fixture() -> Option<PostgresFixture> {
    let server_url = postgres_server_url()?;
    let (database, url) = create_postgres_database(&server_url).await;
    let storage = open_postgres(&url, 16).await.unwrap();
    Some(PostgresFixture {
        storage,
        server_url,
        database,
    })
}

impl PostgresFixture {
    async fn drop_database(self) {
        drop(self.storage);
        drop_postgres_database(&self.server_url, &self.database).await;
    }
}

fn skipped(test: &str) {
    // The test command sets IDBRIDGE_TEST_REQUIRE_ALL: there a missing server is a failure.
    if std::env::var_os("IDBRIDGE_TEST_REQUIRE_ALL").is_some() {
        panic!("postgres::{test} needs {POSTGRES_URL_VAR}");
    }
    println!("skipped postgres::{test}: {POSTGRES_URL_VAR} is not set");
}

/// Instantiates each behaviour once per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fixture = super::sqlite_fixture().await;
                    super::$name(fixture.storage.clone()).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(fixture) = super::postgres_fixture().await else {
                        super::skipped(stringify!($name));
                        return;
                    };
                    super::$name(fixture.storage.clone()).await;
                    fixture.drop_database().await;
                }
            )*
        }
    };
}

conformance!(
    ping_answers,
    setting_first_writer_wins,
    setting_first_writer_wins_concurrently,
    client_lifecycle,
    auth_request_lifecycle,
    auth_code_lifecycle,
    auth_code_redeemed_exactly_once_under_concurrency,
    auth_code_redeemed_only_when_everything_matches,
    auth_code_matching_redeemed_exactly_once_under_concurrency,
    device_request_lifecycle,
    audit_events_append_and_list,
    leases_have_one_holder_at_a_time,
    device_request_consumed_exactly_once_under_concurrency,
    grant_revocation,
    remembered_answers_follow_writes,
    refresh_token_lifecycle,
    refresh_token_rotated_exactly_once_under_concurrency,
    refresh_token_revocation,
    user_lifecycle,
    user_uniqueness,
    signing_key_rotation,
    signing_key_order_breaks_ties_by_kid,
    signing_key_rotated_exactly_once_under_concurrency,
    session_lifecycle,
    garbage_collection,
    no_lost_updates_under_concurrency,
);

// ---------------------------------------------------------------------------------------------
// Model builders

const NOW: i64 = 1_800_000_000;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn client(id: &str) -> Client {
    Client {
        id: id.into(),
        name: format!("Client {id}"),
        secret_hash: Some(format!("hash-of-{id}")),
        redirect_uris: strings(&["https://app.example/cb", "http://127.0.0.1:8000/cb"]),
        post_logout_redirect_uris: strings(&["https://app.example/"]),
        public: false,
        default_scopes: strings(&["openid", "profile"]),
        skip_approval: true,
        allowed_connectors: strings(&["dingtalk"]),
        created_at: NOW,
    }
}

fn auth_request(id: &str, expires_at: i64) -> AuthRequest {
    AuthRequest {
        id: id.into(),
        client_id: "grafana".into(),
        redirect_uri: "https://grafana.example/login/generic_oauth".into(),
        response_mode: "query".into(),
        scopes: strings(&["openid", "email", "groups"]),
        state: Some("st\u{e4}te with \"quotes\"".into()),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        prompt: strings(&["login", "consent"]),
        max_age: Some(3600),
        login_hint: Some("alice".into()),
        connector_id: Some("dingtalk".into()),
        device_request_id: Some("device-1".into()),
        created_at: expires_at - 600,
        expires_at,
    }
}

fn device_request(id: &str, user_code: &str, expires_at: i64) -> DeviceRequest {
    DeviceRequest {
        id: id.into(),
        user_code: user_code.into(),
        client_id: "kubectl".into(),
        scopes: strings(&["openid", "offline_access"]),
        created_at: expires_at - 300,
        expires_at,
        interval: 5,
        last_polled_at: None,
        status: DeviceStatus::Pending,
        user_id: None,
        connector_id: None,
        auth_time: None,
        session_id: None,
    }
}

fn auth_code(id: &str, expires_at: i64) -> AuthCode {
    AuthCode {
        id: id.into(),
        client_id: "grafana".into(),
        redirect_uri: "https://grafana.example/login/generic_oauth".into(),
        scopes: strings(&["openid", "offline_access"]),
        nonce: Some("nonce".into()),
        code_challenge: None,
        user_id: "u1".into(),
        connector_id: "dingtalk".into(),
        session_id: Some("s1".into()),
        auth_time: expires_at - 120,
        created_at: expires_at - 60,
        expires_at,
        redeemed_at: None,
    }
}

fn refresh_token(id: &str, family: &str, user: &str) -> RefreshToken {
    RefreshToken {
        id: id.into(),
        secret_hash: format!("secret-hash-{id}"),
        family_id: family.into(),
        client_id: "kubectl".into(),
        user_id: user.into(),
        connector_id: "dingtalk".into(),
        scopes: strings(&["openid", "groups", "offline_access"]),
        nonce: None,
        session_id: Some("s1".into()),
        auth_time: NOW - 100,
        created_at: NOW,
        last_used_at: NOW,
        expires_at: NOW + 3600,
        absolute_expires_at: NOW + 86_400,
        rotated_at: None,
        revoked: false,
    }
}

fn user(id: &str, username: &str, upstream_id: &str) -> User {
    User {
        id: id.into(),
        connector_id: "dingtalk".into(),
        upstream_id: upstream_id.into(),
        username: username.into(),
        display_name: Some(format!("{username} \u{5f20}\u{4e09}")),
        email: Some(format!("{username}@example.com")),
        email_verified: true,
        phone: Some("+86 138 0000 0000".into()),
        picture: None,
        groups: strings(&["dev", "ops"]),
        connector_data: Some(r#"{"upstream_refresh":"abc"}"#.into()),
        created_at: NOW,
        last_login_at: NOW,
    }
}

fn signing_key(kid: &str, created_at: i64) -> SigningKey {
    SigningKey {
        kid: kid.into(),
        alg: "ES256".into(),
        private_der: vec![0x30, 0x81, 0x87, 0x00, 0xff, 0x10, kid.len() as u8],
        created_at,
        rotate_at: created_at + 86_400,
        expires_at: created_at + 3 * 86_400,
    }
}

fn session(id: &str, user_id: Option<&str>, expires_at: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        user_id: user_id.map(str::to_owned),
        data: format!(r#"{{"id":"{id}","csrf":"x"}}"#),
        expires_at,
    }
}

// ---------------------------------------------------------------------------------------------
// Behaviours

async fn ping_answers(s: Arc<dyn Storage>) {
    s.ping().await.unwrap();
}

async fn setting_first_writer_wins(s: Arc<dyn Storage>) {
    assert_eq!(
        s.get_or_init_setting("cookie_key", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        s.get_or_init_setting("cookie_key", "second").await.unwrap(),
        "first"
    );
    assert_eq!(
        s.get_or_init_setting("other", "value").await.unwrap(),
        "value"
    );
}

async fn setting_first_writer_wins_concurrently(s: Arc<dyn Storage>) {
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.get_or_init_setting("instance_secret", &format!("candidate-{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        seen.insert(task.await.unwrap());
    }
    assert_eq!(seen.len(), 1, "replicas disagree: {seen:?}");
    let stored = s
        .get_or_init_setting("instance_secret", "late")
        .await
        .unwrap();
    assert!(seen.contains(&stored));
}

async fn client_lifecycle(s: Arc<dyn Storage>) {
    let confidential = client("harbor");
    let public = Client {
        secret_hash: None,
        public: true,
        skip_approval: false,
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        default_scopes: vec![],
        allowed_connectors: vec![],
        ..client("kubectl")
    };
    s.create_client(&public).await.unwrap();
    s.create_client(&confidential).await.unwrap();
    assert_err!(s.create_client(&confidential).await, AlreadyExists);

    assert_eq!(s.get_client("harbor").await.unwrap(), confidential);
    assert_eq!(s.get_client("kubectl").await.unwrap(), public);
    assert_err!(s.get_client("missing").await, NotFound);
    assert_eq!(
        s.list_clients().await.unwrap(),
        vec![confidential.clone(), public]
    );

    s.delete_client("kubectl").await.unwrap();
    assert_err!(s.get_client("kubectl").await, NotFound);
    assert_err!(s.delete_client("kubectl").await, NotFound);
    assert_eq!(s.list_clients().await.unwrap(), vec![confidential]);
}

async fn leases_have_one_holder_at_a_time(s: Arc<dyn Storage>) {
    assert!(s.try_lease("gc", "a", NOW, 60).await.unwrap());
    assert!(!s.try_lease("gc", "b", NOW + 30, 60).await.unwrap());
    // The holder renews.
    assert!(s.try_lease("gc", "a", NOW + 50, 60).await.unwrap());
    assert!(!s.try_lease("gc", "b", NOW + 100, 60).await.unwrap());
    // Once it lapses, another takes over, and the first is then refused.
    assert!(s.try_lease("gc", "b", NOW + 110, 60).await.unwrap());
    assert!(!s.try_lease("gc", "a", NOW + 120, 60).await.unwrap());
    // Leases are independent by name.
    assert!(s.try_lease("other", "a", NOW + 120, 60).await.unwrap());
    // Of many racing for a free lease, exactly one wins.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.try_lease("race", &format!("h{i}"), NOW, 60).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

async fn audit_events_append_and_list(s: Arc<dyn Storage>) {
    let event = |at: i64, kind: &str, user: Option<&str>| AuditEvent {
        at,
        kind: kind.into(),
        user_id: user.map(str::to_string),
        client_id: Some("grafana".into()),
        connector_id: None,
        detail: Some("détail \"quoted\"".into()),
    };
    s.append_audit_events(&[]).await.unwrap();
    let batch = vec![
        event(NOW, "login_succeeded", Some("u1")),
        event(NOW + 1, "token_issued", Some("u1")),
        event(NOW + 2, "login_failed", None),
        event(NOW + 3, "logout", Some("u2")),
    ];
    s.append_audit_events(&batch).await.unwrap();
    assert_eq!(s.list_audit_events(NOW, None, 100).await.unwrap(), batch);
    assert_eq!(
        s.list_audit_events(NOW + 1, Some("u1"), 100).await.unwrap(),
        vec![batch[1].clone()]
    );
    assert_eq!(
        s.list_audit_events(NOW, None, 2).await.unwrap(),
        batch[..2].to_vec()
    );
    assert!(
        s.list_audit_events(NOW + 4, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.delete_audit_events_before(NOW + 2).await.unwrap(), 2);
    assert_eq!(
        s.list_audit_events(0, None, 100).await.unwrap(),
        batch[2..].to_vec()
    );

    // A large batch (written several rows per statement) keeps every event and its order.
    let large: Vec<AuditEvent> = (0..150)
        .map(|i| AuditEvent {
            detail: Some(format!("event {i}")),
            connector_id: (i % 3 == 0).then(|| "dingtalk".to_string()),
            ..event(NOW + 10 + i, "token_issued", Some("u3"))
        })
        .collect();
    s.append_audit_events(&large).await.unwrap();
    assert_eq!(
        s.list_audit_events(NOW + 10, Some("u3"), 1000)
            .await
            .unwrap(),
        large
    );
}

async fn device_request_lifecycle(s: Arc<dyn Storage>) {
    let req = device_request("dev-a", "BCDFGHJK", NOW + 300);
    s.create_device_request(&req).await.unwrap();
    assert_err!(s.create_device_request(&req).await, AlreadyExists);
    // The user code is unique too.
    assert_err!(
        s.create_device_request(&device_request("dev-b", "BCDFGHJK", NOW + 300))
            .await,
        AlreadyExists
    );
    assert_eq!(s.get_device_request("dev-a").await.unwrap(), req);
    assert_eq!(
        s.get_device_request_by_user_code("BCDFGHJK").await.unwrap(),
        req
    );
    assert_err!(s.get_device_request("nope").await, NotFound);
    assert_err!(
        s.get_device_request_by_user_code("ZZZZZZZZ").await,
        NotFound
    );

    s.record_device_poll("dev-a", NOW + 10, 10).await.unwrap();
    let polled = s.get_device_request("dev-a").await.unwrap();
    assert_eq!(
        (polled.last_polled_at, polled.interval),
        (Some(NOW + 10), 10)
    );
    assert_err!(s.record_device_poll("nope", NOW, 5).await, NotFound);

    // Not approved yet: nothing to consume.
    assert_err!(s.consume_device_request("dev-a").await, Conflict);
    let approve = DeviceDecision::Approve {
        user_id: "u1".into(),
        connector_id: "local".into(),
        auth_time: NOW + 20,
        session_id: Some("sid".into()),
    };
    s.decide_device_request("dev-a", &approve).await.unwrap();
    // A decision is final.
    assert_err!(
        s.decide_device_request("dev-a", &DeviceDecision::Deny)
            .await,
        Conflict
    );
    assert_err!(
        s.decide_device_request("nope", &DeviceDecision::Deny).await,
        NotFound
    );
    let consumed = s.consume_device_request("dev-a").await.unwrap();
    assert_eq!(consumed.user_id.as_deref(), Some("u1"));
    assert_eq!(consumed.auth_time, Some(NOW + 20));
    assert_eq!(consumed.session_id.as_deref(), Some("sid"));
    assert_err!(s.consume_device_request("dev-a").await, Conflict);
    assert_eq!(
        s.get_device_request("dev-a").await.unwrap().status,
        DeviceStatus::Consumed
    );

    let denied = device_request("dev-c", "CDFGHJKL", NOW + 300);
    s.create_device_request(&denied).await.unwrap();
    s.decide_device_request("dev-c", &DeviceDecision::Deny)
        .await
        .unwrap();
    assert_eq!(
        s.get_device_request("dev-c").await.unwrap().status,
        DeviceStatus::Denied
    );
    assert_err!(s.consume_device_request("dev-c").await, Conflict);

    // Expired requests are collected.
    let stats = s.garbage_collect(NOW + 301).await.unwrap();
    assert_eq!(stats.device_requests, 2);
    assert_err!(s.get_device_request("dev-a").await, NotFound);
}

async fn device_request_consumed_exactly_once_under_concurrency(s: Arc<dyn Storage>) {
    s.create_device_request(&device_request("dev-race", "DFGHJKLM", NOW + 300))
        .await
        .unwrap();
    let approve = DeviceDecision::Approve {
        user_id: "u1".into(),
        connector_id: "local".into(),
        auth_time: NOW,
        session_id: None,
    };
    s.decide_device_request("dev-race", &approve).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.consume_device_request("dev-race").await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StorageError::Conflict) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 1);
}

async fn auth_request_lifecycle(s: Arc<dyn Storage>) {
    let full = auth_request("req-full", NOW + 600);
    let minimal = AuthRequest {
        state: None,
        nonce: None,
        code_challenge: None,
        prompt: vec![],
        max_age: None,
        login_hint: None,
        connector_id: None,
        device_request_id: None,
        response_mode: "form_post".into(),
        ..auth_request("req-min", NOW + 600)
    };
    s.create_auth_request(&full).await.unwrap();
    s.create_auth_request(&minimal).await.unwrap();
    assert_err!(s.create_auth_request(&full).await, AlreadyExists);
    assert_eq!(s.get_auth_request("req-full").await.unwrap(), full);
    assert_eq!(s.get_auth_request("req-min").await.unwrap(), minimal);

    s.delete_auth_request("req-full").await.unwrap();
    assert_err!(s.get_auth_request("req-full").await, NotFound);
    assert_err!(s.delete_auth_request("req-full").await, NotFound);
    assert_eq!(s.get_auth_request("req-min").await.unwrap(), minimal);
}

async fn auth_code_lifecycle(s: Arc<dyn Storage>) {
    let code = auth_code("code-hash-1", NOW + 60);
    s.create_auth_code(&code).await.unwrap();
    assert_err!(s.create_auth_code(&code).await, AlreadyExists);
    assert_eq!(s.get_auth_code("code-hash-1").await.unwrap(), code);
    assert_err!(s.get_auth_code("missing").await, NotFound);

    let redeemed = s.redeem_auth_code("code-hash-1", NOW + 5).await.unwrap();
    assert_eq!(
        redeemed,
        AuthCode {
            redeemed_at: Some(NOW + 5),
            ..code.clone()
        }
    );
    assert_eq!(s.get_auth_code("code-hash-1").await.unwrap(), redeemed);
    assert_err!(s.redeem_auth_code("code-hash-1", NOW + 6).await, Conflict);
    assert_eq!(
        s.get_auth_code("code-hash-1").await.unwrap().redeemed_at,
        Some(NOW + 5),
        "a failed redemption must not move the redemption time"
    );
    assert_err!(s.redeem_auth_code("missing", NOW).await, NotFound);
}

async fn auth_code_redeemed_exactly_once_under_concurrency(s: Arc<dyn Storage>) {
    s.create_auth_code(&auth_code("contended", NOW + 60))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.redeem_auth_code("contended", NOW + i).await })
        })
        .collect();
    let (mut won, mut conflicts) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(code) => won.push(code.redeemed_at),
            Err(StorageError::Conflict) => conflicts += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one redemption must succeed");
    assert_eq!(conflicts, 99);
    assert_eq!(
        s.get_auth_code("contended").await.unwrap().redeemed_at,
        won[0]
    );
}

async fn auth_code_redeemed_only_when_everything_matches(s: Arc<dyn Storage>) {
    let with_pkce = AuthCode {
        code_challenge: Some("challenge".into()),
        ..auth_code("pkce", NOW + 60)
    };
    s.create_auth_code(&with_pkce).await.unwrap();
    s.create_auth_code(&auth_code("plain", NOW + 60))
        .await
        .unwrap();
    let right = CodePresentation {
        client_id: "grafana",
        redirect_uri: "https://grafana.example/login/generic_oauth",
        code_challenge: Some("challenge"),
    };
    let wrong = [
        CodePresentation {
            client_id: "argocd",
            ..right
        },
        CodePresentation {
            redirect_uri: "https://grafana.example/login/generic_oauth/",
            ..right
        },
        CodePresentation {
            code_challenge: Some("challengf"),
            ..right
        },
        CodePresentation {
            code_challenge: None,
            ..right
        },
    ];
    for presented in &wrong {
        let got = s
            .redeem_auth_code_matching("pkce", NOW, presented)
            .await
            .unwrap();
        assert!(got.is_none(), "{presented:?} must not redeem the code");
    }
    // Expired: not redeemed either.
    assert!(
        s.redeem_auth_code_matching("pkce", NOW + 60, &right)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.get_auth_code("pkce").await.unwrap(),
        with_pkce,
        "a refused presentation leaves the code as it was"
    );

    let redeemed = s
        .redeem_auth_code_matching("pkce", NOW + 5, &right)
        .await
        .unwrap()
        .expect("the matching presentation redeems the code");
    assert_eq!(
        redeemed,
        AuthCode {
            redeemed_at: Some(NOW + 5),
            ..with_pkce.clone()
        }
    );
    assert!(
        s.redeem_auth_code_matching("pkce", NOW + 6, &right)
            .await
            .unwrap()
            .is_none(),
        "a code is redeemed once"
    );
    assert_eq!(
        s.get_auth_code("pkce").await.unwrap().redeemed_at,
        Some(NOW + 5)
    );

    // A code issued without a challenge matches only a request without a verifier.
    let plain = CodePresentation {
        code_challenge: None,
        ..right
    };
    assert!(
        s.redeem_auth_code_matching("plain", NOW, &right)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.redeem_auth_code_matching("plain", NOW, &plain)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.redeem_auth_code_matching("missing", NOW, &plain)
            .await
            .unwrap()
            .is_none()
    );
}

async fn auth_code_matching_redeemed_exactly_once_under_concurrency(s: Arc<dyn Storage>) {
    s.create_auth_code(&auth_code("contended-matching", NOW + 60))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let presented = CodePresentation {
                    client_id: "grafana",
                    redirect_uri: "https://grafana.example/login/generic_oauth",
                    code_challenge: None,
                };
                s.redeem_auth_code_matching("contended-matching", NOW + i, &presented)
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().is_some() {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one redemption must succeed");
}

/// While a server reads the revocation counter, answers may come from memory; they must still
/// follow every write made through the same handle at once.
async fn remembered_answers_follow_writes(s: Arc<dyn Storage>) {
    let alice = user("u-alice", "alice", "up-alice");
    s.create_user(&alice).await.unwrap();
    s.sync_revocations().await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            s.get_user_for_grant("u-alice", "g1").await.unwrap(),
            (alice.clone(), false)
        );
        assert!(!s.is_grant_revoked("g2").await.unwrap());
        assert_eq!(s.get_user("u-alice").await.unwrap(), alice);
    }
    s.revoke_grant("g1", NOW + 100).await.unwrap();
    assert_eq!(
        s.get_user_for_grant("u-alice", "g1").await.unwrap(),
        (alice.clone(), true)
    );
    s.revoke_grant("g2", NOW + 100).await.unwrap();
    assert!(s.is_grant_revoked("g2").await.unwrap());

    // Remembered again, then changed.
    assert_eq!(s.get_user("u-alice").await.unwrap(), alice);
    assert_eq!(
        s.get_user_for_grant("u-alice", "g3").await.unwrap(),
        (alice.clone(), false)
    );
    let changed = User {
        email: Some("alice@new.example".into()),
        groups: strings(&["ops"]),
        ..alice.clone()
    };
    s.update_user(&changed).await.unwrap();
    assert_eq!(s.get_user("u-alice").await.unwrap(), changed);
    assert_eq!(
        s.get_user_for_grant("u-alice", "g3").await.unwrap(),
        (changed.clone(), false)
    );
    s.sync_revocations().await.unwrap();
    assert_eq!(s.get_user("u-alice").await.unwrap(), changed);
    assert_err!(s.get_user("nobody").await, NotFound);

    // Sessions: every save and delete is seen by the next load.
    let first = session("sess-1", Some("u-alice"), NOW + 600);
    s.create_session(&first).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            s.load_session("sess-1", NOW).await.unwrap(),
            Some(first.clone())
        );
    }
    let second = SessionRecord {
        data: r#"{"id":"sess-1","csrf":"y"}"#.into(),
        ..first.clone()
    };
    s.save_session(&second).await.unwrap();
    assert_eq!(
        s.load_session("sess-1", NOW).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        s.load_session("sess-1", NOW + 600).await.unwrap(),
        None,
        "expired"
    );
    s.delete_session("sess-1").await.unwrap();
    assert_eq!(s.load_session("sess-1", NOW).await.unwrap(), None);
    s.create_session(&second).await.unwrap();
    assert_eq!(s.load_session("sess-1", NOW).await.unwrap(), Some(second));
    assert_eq!(s.delete_sessions_for_user("u-alice").await.unwrap(), 1);
    assert_eq!(s.load_session("sess-1", NOW).await.unwrap(), None);
}

/// Revocations made by another process (a replica, the command line) reach a server at its
/// next read of the revocation counter; a server that cannot read it asks the database.
async fn revocations_reach_another_process(a: Arc<dyn Storage>, b: Arc<dyn Storage>) {
    let alice = user("u-alice", "alice", "up-alice");
    a.create_user(&alice).await.unwrap();
    a.sync_revocations().await.unwrap();
    assert!(!a.is_grant_revoked("g1").await.unwrap());
    assert!(!a.get_user_for_grant("u-alice", "g1").await.unwrap().1);

    b.revoke_grant("g1", NOW + 100).await.unwrap();
    a.sync_revocations().await.unwrap();
    assert!(a.is_grant_revoked("g1").await.unwrap());
    assert!(a.get_user_for_grant("u-alice", "g1").await.unwrap().1);

    // Profile changes made elsewhere are seen once what was remembered has aged out.
    let changed = User {
        display_name: Some("Alice Changed".into()),
        ..alice.clone()
    };
    assert_eq!(a.get_user("u-alice").await.unwrap(), alice);
    b.update_user(&changed).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    a.sync_revocations().await.unwrap();
    assert_eq!(a.get_user("u-alice").await.unwrap(), changed);

    // Sessions ended by another process (`idbridge sessions revoke`).
    let browser = session("sess-a", Some("u-alice"), NOW + 600);
    a.create_session(&browser).await.unwrap();
    assert_eq!(
        a.load_session("sess-a", NOW).await.unwrap(),
        Some(browser.clone())
    );
    assert_eq!(b.delete_sessions_for_user("u-alice").await.unwrap(), 1);
    // Before `a` learns of it, a request it is serving may still save the session: that must
    // not bring it back.
    assert_err!(a.save_session(&browser).await, NotFound);
    a.sync_revocations().await.unwrap();
    assert_eq!(a.load_session("sess-a", NOW).await.unwrap(), None);

    // Without a recent read of the counter nothing is answered from memory.
    assert!(!a.is_grant_revoked("g2").await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    b.revoke_grant("g2", NOW + 100).await.unwrap();
    assert!(a.is_grant_revoked("g2").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_revocations_reach_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite3");
    let a = open_sqlite(&path).await.unwrap();
    let b = open_sqlite(&path).await.unwrap();
    revocations_reach_another_process(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_revocations_reach_another_process() {
    let Some(server_url) = postgres_server_url() else {
        skipped("revocations_reach_another_process");
        return;
    };
    let (database, url) = create_postgres_database(&server_url).await;
    let a = open_postgres(&url, 4).await.unwrap();
    let b = open_postgres(&url, 4).await.unwrap();
    revocations_reach_another_process(a, b).await;
    drop_postgres_database(&server_url, &database).await;
}

async fn grant_revocation(s: Arc<dyn Storage>) {
    let alice = user("u-alice", "alice", "up-alice");
    s.create_user(&alice).await.unwrap();
    assert_eq!(
        s.get_user_for_grant("u-alice", "family-1").await.unwrap(),
        (alice.clone(), false)
    );
    assert_err!(s.get_user_for_grant("nobody", "family-1").await, NotFound);
    assert!(!s.is_grant_revoked("family-1").await.unwrap());
    s.revoke_grant("family-1", NOW + 100).await.unwrap();
    assert!(s.is_grant_revoked("family-1").await.unwrap());
    assert_eq!(
        s.get_user_for_grant("u-alice", "family-1").await.unwrap(),
        (alice, true)
    );
    assert!(!s.is_grant_revoked("family-2").await.unwrap());

    // Revoking again with an earlier expiry keeps the later one.
    s.revoke_grant("family-1", NOW + 50).await.unwrap();
    s.garbage_collect(NOW + 75).await.unwrap();
    assert!(s.is_grant_revoked("family-1").await.unwrap());
    let stats = s.garbage_collect(NOW + 101).await.unwrap();
    assert_eq!(stats.revocations, 1);
    assert!(!s.is_grant_revoked("family-1").await.unwrap());
}

async fn refresh_token_lifecycle(s: Arc<dyn Storage>) {
    let first = refresh_token("rt1", "fam", "u1");
    s.create_refresh_token(&first).await.unwrap();
    assert_err!(s.create_refresh_token(&first).await, AlreadyExists);
    assert_eq!(s.get_refresh_token("rt1").await.unwrap(), first);
    assert_err!(s.get_refresh_token("missing").await, NotFound);

    let second = RefreshToken {
        id: "rt2".into(),
        secret_hash: "secret-hash-rt2".into(),
        last_used_at: NOW + 10,
        expires_at: NOW + 10 + 3600,
        ..first.clone()
    };
    s.rotate_refresh_token("rt1", NOW + 10, &second)
        .await
        .unwrap();
    let rotated = s.get_refresh_token("rt1").await.unwrap();
    assert_eq!(rotated.rotated_at, Some(NOW + 10));
    assert!(!rotated.revoked);
    assert_eq!(s.get_refresh_token("rt2").await.unwrap(), second);

    // The old token cannot be rotated again, and the would-be successor is not stored.
    let third = RefreshToken {
        id: "rt3".into(),
        ..second.clone()
    };
    assert_err!(
        s.rotate_refresh_token("rt1", NOW + 20, &third).await,
        Conflict
    );
    assert_err!(s.get_refresh_token("rt3").await, NotFound);
    assert_err!(
        s.rotate_refresh_token("missing", NOW + 20, &third).await,
        NotFound
    );
    assert_err!(s.get_refresh_token("rt3").await, NotFound);

    // A revoked token cannot be rotated.
    s.revoke_refresh_family("fam").await.unwrap();
    assert_err!(
        s.rotate_refresh_token("rt2", NOW + 30, &third).await,
        Conflict
    );
    assert_err!(s.get_refresh_token("rt3").await, NotFound);

    // A successor whose id is taken fails as a whole: the old token stays usable.
    let live = refresh_token("live", "fam2", "u1");
    s.create_refresh_token(&live).await.unwrap();
    let clash = RefreshToken {
        id: "rt1".into(),
        ..live.clone()
    };
    assert_err!(
        s.rotate_refresh_token("live", NOW + 40, &clash).await,
        AlreadyExists
    );
    assert_eq!(s.get_refresh_token("live").await.unwrap().rotated_at, None);
}

async fn refresh_token_rotated_exactly_once_under_concurrency(s: Arc<dyn Storage>) {
    s.create_refresh_token(&refresh_token("root", "fam", "u1"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let next = RefreshToken {
                    id: format!("next-{i}"),
                    ..refresh_token("unused", "fam", "u1")
                };
                s.rotate_refresh_token("root", NOW + 1, &next).await
            })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StorageError::Conflict) => conflicts += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 1, "exactly one rotation must succeed");
    assert_eq!(conflicts, 99);
    let family: Vec<_> = s
        .list_refresh_tokens_for_user("u1")
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.family_id == "fam")
        .collect();
    assert_eq!(family.len(), 2, "only the winner's successor is stored");
}

async fn refresh_token_revocation(s: Arc<dyn Storage>) {
    // Family A: a1 -> a2 -> a3, only a3 is live.
    s.create_refresh_token(&refresh_token("a1", "famA", "alice"))
        .await
        .unwrap();
    let a2 = RefreshToken {
        created_at: NOW + 1,
        ..refresh_token("a2", "famA", "alice")
    };
    s.rotate_refresh_token("a1", NOW + 1, &a2).await.unwrap();
    let a3 = RefreshToken {
        created_at: NOW + 2,
        ..refresh_token("a3", "famA", "alice")
    };
    s.rotate_refresh_token("a2", NOW + 2, &a3).await.unwrap();
    // Family B of the same user, and a token of another user.
    s.create_refresh_token(&RefreshToken {
        created_at: NOW + 3,
        ..refresh_token("b1", "famB", "alice")
    })
    .await
    .unwrap();
    s.create_refresh_token(&refresh_token("c1", "famC", "bob"))
        .await
        .unwrap();

    let listed: Vec<_> = s
        .list_refresh_tokens_for_user("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, ["a1", "a2", "a3", "b1"]);

    assert_eq!(s.revoke_refresh_family("famA").await.unwrap(), 1);
    assert_eq!(s.revoke_refresh_family("famA").await.unwrap(), 0);
    for id in ["a1", "a2", "a3"] {
        assert!(s.get_refresh_token(id).await.unwrap().revoked, "{id}");
    }
    assert!(!s.get_refresh_token("b1").await.unwrap().revoked);

    assert_eq!(s.revoke_refresh_tokens_for_user("alice").await.unwrap(), 1);
    assert_eq!(s.revoke_refresh_tokens_for_user("alice").await.unwrap(), 0);
    assert!(s.get_refresh_token("b1").await.unwrap().revoked);
    assert!(!s.get_refresh_token("c1").await.unwrap().revoked);
    assert_eq!(s.revoke_refresh_family("nobody").await.unwrap(), 0);
    assert!(
        s.list_refresh_tokens_for_user("nobody")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn user_lifecycle(s: Arc<dyn Storage>) {
    let alice = user("u1", "alice", "ding-001");
    let bare = User {
        display_name: None,
        email: None,
        email_verified: false,
        phone: None,
        picture: None,
        groups: vec![],
        ..user("u2", "bob", "ding-002")
    };
    s.create_user(&alice).await.unwrap();
    s.create_user(&bare).await.unwrap();

    assert_eq!(s.get_user("u1").await.unwrap(), alice);
    assert_eq!(s.get_user("u2").await.unwrap(), bare);
    assert_eq!(
        s.get_user_by_upstream("dingtalk", "ding-001")
            .await
            .unwrap(),
        alice
    );
    assert_eq!(s.get_user_by_username("bob").await.unwrap(), bare);
    assert_err!(s.get_user("u3").await, NotFound);
    assert_err!(s.get_user_by_upstream("idaas", "ding-001").await, NotFound);
    assert_err!(s.get_user_by_username("carol").await, NotFound);

    let updated = User {
        username: "alice2".into(),
        display_name: Some("Alice".into()),
        email: Some("alice@corp.example".into()),
        email_verified: false,
        phone: None,
        picture: Some("https://img.example/a.png".into()),
        groups: strings(&["admins"]),
        last_login_at: NOW + 500,
        ..alice.clone()
    };
    s.update_user(&updated).await.unwrap();
    assert_eq!(s.get_user("u1").await.unwrap(), updated);
    assert_eq!(s.get_user_by_username("alice2").await.unwrap(), updated);
    assert_err!(s.get_user_by_username("alice").await, NotFound);
    assert_err!(s.update_user(&user("u9", "nobody", "x")).await, NotFound);

    let names: Vec<_> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice2", "bob"]);
}

async fn user_uniqueness(s: Arc<dyn Storage>) {
    s.create_user(&user("u1", "alice", "ding-001"))
        .await
        .unwrap();
    s.create_user(&user("u2", "bob", "ding-002")).await.unwrap();
    // Same id.
    assert_err!(
        s.create_user(&user("u1", "carol", "ding-003")).await,
        AlreadyExists
    );
    // Same upstream identity under another id and name.
    assert_err!(
        s.create_user(&user("u3", "carol", "ding-001")).await,
        AlreadyExists
    );
    // Same username.
    assert_err!(
        s.create_user(&user("u3", "alice", "ding-003")).await,
        AlreadyExists
    );
    // The same upstream id under another connector is another person.
    let other_connector = User {
        connector_id: "idaas".into(),
        ..user("u3", "alice-idaas", "ding-001")
    };
    s.create_user(&other_connector).await.unwrap();
    // Renaming onto a taken username fails and changes nothing.
    let clash = User {
        username: "alice".into(),
        ..user("u2", "bob", "ding-002")
    };
    assert_err!(s.update_user(&clash).await, AlreadyExists);
    assert_eq!(s.get_user("u2").await.unwrap().username, "bob");
    assert_eq!(s.list_users().await.unwrap().len(), 3);
}

async fn signing_key_rotation(s: Arc<dyn Storage>) {
    assert!(s.list_signing_keys().await.unwrap().is_empty());

    let k1 = signing_key("k1", NOW);
    assert!(s.rotate_signing_keys(None, &k1, NOW).await.unwrap());
    // A second "first key" loses: someone already created one.
    assert!(
        !s.rotate_signing_keys(None, &signing_key("k1b", NOW), NOW)
            .await
            .unwrap()
    );
    assert_eq!(s.list_signing_keys().await.unwrap(), vec![k1.clone()]);

    let k2 = signing_key("k2", NOW + 86_400);
    assert!(
        !s.rotate_signing_keys(Some("k0"), &k2, NOW + 86_400)
            .await
            .unwrap()
    );
    assert!(
        s.rotate_signing_keys(Some("k1"), &k2, NOW + 86_400)
            .await
            .unwrap()
    );
    assert_eq!(
        s.list_signing_keys().await.unwrap(),
        vec![k1.clone(), k2.clone()]
    );

    // By the third rotation k1 has expired and is removed; k2 is still published.
    let at = k1.expires_at + 1;
    let k3 = signing_key("k3", at);
    assert!(s.rotate_signing_keys(Some("k2"), &k3, at).await.unwrap());
    assert_eq!(s.list_signing_keys().await.unwrap(), vec![k2, k3.clone()]);

    // A duplicate kid is refused.
    assert_err!(
        s.rotate_signing_keys(Some("k3"), &k3, at).await,
        AlreadyExists
    );
}

async fn signing_key_order_breaks_ties_by_kid(s: Arc<dyn Storage>) {
    let b = signing_key("b", NOW);
    let a = signing_key("a", NOW);
    assert!(s.rotate_signing_keys(None, &b, NOW).await.unwrap());
    // Created in the same second: "b" stays the newest because it sorts after "a".
    assert!(!s.rotate_signing_keys(Some("a"), &a, NOW).await.unwrap());
    assert!(s.rotate_signing_keys(Some("b"), &a, NOW).await.unwrap());
    let kids: Vec<_> = s
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["a", "b"]);
    // The newest is still "b" (same created_at, larger kid).
    assert!(
        !s.rotate_signing_keys(Some("a"), &signing_key("z", NOW + 1), NOW)
            .await
            .unwrap()
    );
    assert!(
        s.rotate_signing_keys(Some("b"), &signing_key("z", NOW + 1), NOW)
            .await
            .unwrap()
    );
}

async fn signing_key_rotated_exactly_once_under_concurrency(s: Arc<dyn Storage>) {
    for (round, expected, created_at) in [("first", None, NOW), ("second", Some("seed"), NOW + 20)]
    {
        if let Some(seed) = expected {
            // Start the second round from a known newest key.
            let keys = s.list_signing_keys().await.unwrap();
            let newest = keys.last().map(|k| k.kid.clone());
            let seed_key = signing_key(seed, NOW + 10);
            assert!(
                s.rotate_signing_keys(newest.as_deref(), &seed_key, NOW)
                    .await
                    .unwrap()
            );
        }
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let key = signing_key(&format!("{round}-{i}"), created_at);
                    s.rotate_signing_keys(expected, &key, NOW).await
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            if task.await.unwrap().unwrap() {
                winners += 1;
            }
        }
        assert_eq!(
            winners, 1,
            "{round} round: exactly one replica may create the key"
        );
        let created = s
            .list_signing_keys()
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.kid.starts_with(round))
            .count();
        assert_eq!(created, 1, "{round} round");
    }
}

async fn session_lifecycle(s: Arc<dyn Storage>) {
    let anonymous = session("s-anon", None, NOW + 100);
    let alice = session("s-alice", Some("u1"), NOW + 200);
    let alice2 = session("s-alice-2", Some("u1"), NOW + 300);
    for record in [&anonymous, &alice, &alice2] {
        s.create_session(record).await.unwrap();
    }
    assert_eq!(
        s.load_session("s-anon", NOW).await.unwrap(),
        Some(anonymous.clone())
    );
    assert_eq!(
        s.load_session("s-anon", NOW + 100).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(s.load_session("missing", NOW).await.unwrap(), None);
    assert_eq!(s.count_sessions(NOW).await.unwrap(), 3);
    assert_eq!(s.count_sessions(NOW + 150).await.unwrap(), 2);

    // Saving again replaces the record: the user signs in on an anonymous session.
    let signed_in = SessionRecord {
        user_id: Some("u2".into()),
        data: r#"{"user":"u2"}"#.into(),
        expires_at: NOW + 1000,
        ..anonymous
    };
    s.save_session(&signed_in).await.unwrap();
    assert_eq!(
        s.load_session("s-anon", NOW + 500).await.unwrap(),
        Some(signed_in)
    );

    assert_eq!(s.delete_sessions_for_user("u1").await.unwrap(), 2);
    assert_eq!(s.load_session("s-alice", NOW).await.unwrap(), None);
    assert_eq!(s.delete_sessions_for_user("u1").await.unwrap(), 0);

    s.delete_session("s-anon").await.unwrap();
    assert_eq!(s.load_session("s-anon", NOW).await.unwrap(), None);
    s.delete_session("s-anon").await.unwrap();
    assert_eq!(s.count_sessions(NOW).await.unwrap(), 0);

    // A save never brings an ended session back (a request that loaded it before a logout or
    // `idbridge sessions revoke` finishes after it); a new session needs a new id.
    assert_err!(s.save_session(&alice).await, NotFound);
    assert_eq!(s.load_session("s-alice", NOW).await.unwrap(), None);
    assert_eq!(s.count_sessions(NOW).await.unwrap(), 0);
    s.create_session(&alice).await.unwrap();
    assert_err!(s.create_session(&alice).await, AlreadyExists);
    assert_eq!(s.load_session("s-alice", NOW).await.unwrap(), Some(alice));
}

async fn garbage_collection(s: Arc<dyn Storage>) {
    s.create_auth_request(&auth_request("req-old", NOW - 1))
        .await
        .unwrap();
    s.create_auth_request(&auth_request("req-edge", NOW))
        .await
        .unwrap();
    s.create_auth_request(&auth_request("req-new", NOW + 600))
        .await
        .unwrap();

    s.create_auth_code(&auth_code("code-old", NOW - 1))
        .await
        .unwrap();
    s.create_auth_code(&auth_code("code-old-redeemed", NOW - 1))
        .await
        .unwrap();
    s.redeem_auth_code("code-old-redeemed", NOW - 30)
        .await
        .unwrap();
    s.create_auth_code(&auth_code("code-new", NOW + 60))
        .await
        .unwrap();

    let sliding_expired = RefreshToken {
        expires_at: NOW - 1,
        ..refresh_token("rt-idle", "f1", "u1")
    };
    let absolute_expired = RefreshToken {
        absolute_expires_at: NOW - 1,
        ..refresh_token("rt-old", "f2", "u1")
    };
    for token in [
        sliding_expired,
        absolute_expired,
        refresh_token("rt-live", "f3", "u1"),
    ] {
        s.create_refresh_token(&token).await.unwrap();
    }

    s.create_session(&session("s-old", Some("u1"), NOW - 1))
        .await
        .unwrap();
    s.create_session(&session("s-new", Some("u1"), NOW + 60))
        .await
        .unwrap();

    s.revoke_grant("g-old", NOW - 1).await.unwrap();
    s.revoke_grant("g-new", NOW + 60).await.unwrap();

    let stats = s.garbage_collect(NOW).await.unwrap();
    assert_eq!(
        stats,
        GcStats {
            auth_requests: 1,
            auth_codes: 2,
            device_requests: 0,
            refresh_tokens: 2,
            sessions: 1,
            revocations: 1,
        }
    );

    assert_err!(s.get_auth_request("req-old").await, NotFound);
    s.get_auth_request("req-edge").await.unwrap();
    s.get_auth_request("req-new").await.unwrap();
    assert_err!(s.get_auth_code("code-old").await, NotFound);
    assert_err!(s.get_auth_code("code-old-redeemed").await, NotFound);
    s.get_auth_code("code-new").await.unwrap();
    assert_err!(s.get_refresh_token("rt-idle").await, NotFound);
    assert_err!(s.get_refresh_token("rt-old").await, NotFound);
    s.get_refresh_token("rt-live").await.unwrap();
    assert!(s.load_session("s-new", NOW).await.unwrap().is_some());
    assert_eq!(s.count_sessions(NOW - 10).await.unwrap(), 1);
    assert!(!s.is_grant_revoked("g-old").await.unwrap());
    assert!(s.is_grant_revoked("g-new").await.unwrap());

    assert_eq!(s.garbage_collect(NOW).await.unwrap(), GcStats::default());
}

async fn no_lost_updates_under_concurrency(s: Arc<dyn Storage>) {
    let n = 50;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let u = user(&format!("u{i}"), &format!("user{i:02}"), &format!("up{i}"));
                s.create_user(&u).await.unwrap();
                s.update_user(&User {
                    last_login_at: NOW + i,
                    groups: vec![format!("g{i}")],
                    ..u
                })
                .await
                .unwrap();
                s.create_session(&session(&format!("s{i}"), Some(&format!("u{i}")), NOW + 60))
                    .await
                    .unwrap();
                s.revoke_grant(&format!("g{i}"), NOW + 60).await.unwrap();
                s.create_refresh_token(&refresh_token(&format!("rt{i}"), "shared", "u0"))
                    .await
                    .unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let users = s.list_users().await.unwrap();
    assert_eq!(users.len(), n as usize);
    for u in &users {
        let i: i64 = u.id[1..].parse().unwrap();
        assert_eq!(u.last_login_at, NOW + i, "{}", u.id);
        assert_eq!(u.groups, vec![format!("g{i}")]);
    }
    assert_eq!(s.count_sessions(NOW).await.unwrap(), n as u64);
    for i in 0..n {
        assert!(s.is_grant_revoked(&format!("g{i}")).await.unwrap());
    }
    assert_eq!(s.revoke_refresh_family("shared").await.unwrap(), n as u64);
}

// ---------------------------------------------------------------------------------------------
// SQLite file handling

fn expect_unavailable_naming(
    result: Result<SqliteStorage, StorageError>,
    path: &std::path::Path,
) -> String {
    match result {
        Err(StorageError::Unavailable(message)) => {
            assert!(
                message.contains(&path.display().to_string()),
                "message does not name {}: {message}",
                path.display()
            );
            println!("{message}");
            message
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("opening {} should have failed", path.display()),
    }
}

#[tokio::test]
async fn sqlite_open_creates_directory_and_file_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/idbridge.sqlite3");
    let first = SqliteStorage::open(&path).await.unwrap();
    assert!(path.is_file());
    first.get_or_init_setting("k", "v1").await.unwrap();
    first.close().await;

    // Reopening applies no migration twice and keeps the data.
    let second = SqliteStorage::open(&path).await.unwrap();
    assert_eq!(second.get_or_init_setting("k", "v2").await.unwrap(), "v1");
    assert_eq!(second.path(), path);
}

#[tokio::test]
async fn sqlite_open_two_handles_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite3");
    let (a, b) = tokio::join!(SqliteStorage::open(&path), SqliteStorage::open(&path));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.create_auth_code(&auth_code("c", NOW + 60)).await.unwrap();
    b.redeem_auth_code("c", NOW).await.unwrap();
    assert_err!(a.redeem_auth_code("c", NOW).await, Conflict);
}

#[tokio::test]
async fn sqlite_open_directory_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actually-a-directory");
    std::fs::create_dir(&path).unwrap();
    let message = expect_unavailable_naming(SqliteStorage::open(&path).await, &path);
    assert!(message.contains("directory"), "{message}");
}

#[tokio::test]
async fn sqlite_open_foreign_file_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the pages you are looking for\n".repeat(200),
    )
    .unwrap();
    let message = expect_unavailable_naming(SqliteStorage::open(&path).await, &path);
    assert!(message.contains("not a SQLite database"), "{message}");
}

#[tokio::test]
async fn sqlite_open_under_a_file_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let path = blocker.join("idbridge.sqlite3");
    expect_unavailable_naming(SqliteStorage::open(&path).await, &path);
}

#[tokio::test]
async fn sqlite_open_in_unwritable_location_is_unavailable() {
    // procfs refuses new files whoever asks, so this holds even with root privileges.
    let path = std::path::Path::new("/proc/idbridge-conformance.sqlite3");
    expect_unavailable_naming(SqliteStorage::open(path).await, path);
}

#[tokio::test]
async fn sqlite_open_unreadable_file_is_unavailable() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked-away.sqlite3");
    SqliteStorage::open(&path).await.unwrap().close().await;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&path).is_ok() {
        // Root ignores file modes, so there is nothing to observe.
        println!(
            "skipped sqlite_open_unreadable_file_is_unavailable: running with privileges that ignore file modes"
        );
        return;
    }
    expect_unavailable_naming(SqliteStorage::open(&path).await, &path);
}

#[tokio::test]
async fn sqlite_open_locked_file_is_unavailable() {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.sqlite3");
    // Another program holds an exclusive lock on a rollback-journal database: nobody else can
    // even read it until that program lets go.
    let mut holder = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Delete),
    )
    .await
    .unwrap();
    sqlx::query("CREATE TABLE other_program (x INTEGER)")
        .execute(&mut holder)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let message = expect_unavailable_naming(SqliteStorage::open(&path).await, &path);
    assert!(message.contains("locked"), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL connection handling

#[tokio::test]
async fn postgres_unreachable_server_is_unavailable_without_leaking_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let result = PostgresStorage::connect("postgres://idb:s3cr3t-pw@127.0.0.1:1/idbridge", 2).await;
    match result {
        Err(StorageError::Unavailable(message)) => {
            assert!(!message.contains("s3cr3t-pw"), "{message}");
            assert!(message.contains("127.0.0.1:1"), "{message}");
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connecting to a closed port should fail"),
    }
}

#[tokio::test]
async fn postgres_invalid_url_is_unavailable() {
    assert!(matches!(
        PostgresStorage::connect("not a url", 2).await,
        Err(StorageError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_starting_together_migrate_once() {
    let Some(server_url) = postgres_server_url() else {
        skipped("postgres_replicas_starting_together_migrate_once");
        return;
    };
    let (database, url) = create_postgres_database(&server_url).await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStorage::connect(&url, 2).await })
        })
        .collect();
    let mut replicas = Vec::new();
    for task in tasks {
        replicas.push(task.await.unwrap().unwrap());
    }
    replicas[0].create_client(&client("c")).await.unwrap();
    assert_eq!(replicas[5].get_client("c").await.unwrap(), client("c"));
    for replica in &replicas {
        replica.close().await;
    }
    drop_postgres_database(&server_url, &database).await;
}

#[tokio::test]
async fn postgres_missing_database_is_unavailable() {
    let Some(server_url) = postgres_server_url() else {
        skipped("postgres_missing_database_is_unavailable");
        return;
    };
    let mut url = url::Url::parse(&server_url).unwrap();
    url.set_path(&unique_name("idb_missing"));
    assert!(matches!(
        PostgresStorage::connect(url.as_str(), 2).await,
        Err(StorageError::Unavailable(_))
    ));
}

//! Faults of key material and of time: each gives a clear error, recovers when the fault
//! ends, and loses nothing.
//!
//! - Unreadable signing keys: the stored private key (or its algorithm) is damaged while the
//!   provider is stopped. Start-up fails with an error naming the key, instead of serving
//!   without a usable key; once the bytes are restored it starts and every token issued
//!   before still verifies.
//! - Clock skew between the provider and its upstream. The `oauth2` connector reads no time,
//!   so the provider's own clock is moved: its tokens follow it, and a jump in the middle of
//!   a sign-in ends that sign-in clearly. The `oidc` connector checks the upstream's ID token
//!   against the system clock (60 s leeway), which a test cannot move, so the upstream's
//!   clock is moved instead (a Node preload shifting `Date.now` of `oidc-provider`).

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command};
use std::time::Duration;

use idbridge::app;
use idbridge::clock::Clock;
use idbridge::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::net::TcpListener;

use crate::attacks::{LOCAL_CONNECTOR, UpstreamEnd, reconfigure, upstream_login, upstream_run};
use crate::harness::{
    ALICE, ClientAuth, GRAFANA_ID, GRAFANA_REDIRECT, GRAFANA_SECRET, SERVICE_ID, SERVICE_SECRET,
    TestApp, decode_jwt,
};
use crate::idaas_sim::{CLIENT_ID, CLIENT_SECRET, IdaasSim, USERINFO_PATH};
use crate::upstream_oidc::{node_available, spawn_node_upstream};

const GRAFANA: ClientAuth<'static> = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);

// ---------------------------------------------------------------------------------------------
// Unreadable key material.

/// The SQLite file named in a test configuration.
fn database_file(yaml: &str) -> PathBuf {
    let line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("file:"))
        .expect("a sqlite file in the config");
    PathBuf::from(line.trim_start()["file:".len()..].trim().trim_matches('"'))
}

async fn open_db(file: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("open the provider's database")
}

/// Starts the provider on a fresh port with `yaml`; `Err` carries the start-up error text.
async fn start(yaml: &str) -> Result<app::Server, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = Config::from_yaml_str(yaml).expect("config");
    // A panic inside start-up would surface here as a failed task, not as an Err.
    tokio::spawn(async move {
        app::spawn(config, listener, Clock::system())
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .expect("start-up must not panic")
}

async fn post(
    server: &app::Server,
    path: &str,
    form: &[(&str, &str)],
    auth: ClientAuth<'_>,
) -> Value {
    let (id, secret) = match auth {
        ClientAuth::Basic(id, secret) => (id, secret),
        _ => panic!("only Basic here"),
    };
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}", server.addr))
        .header("authorization", crate::harness::basic(id, secret))
        .form(form)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_signing_keys_stop_start_up_with_an_error_naming_the_key() {
    // Tokens issued before the fault.
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let kids = app.jwks_kids().await;
    // The provider stops: its database, as it is on disk, is copied out and used from now
    // on (the running test server keeps the original, which nothing reads any more).
    let live = open_db(&database_file(&app.yaml)).await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&live)
        .await
        .expect("checkpoint");
    live.close().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("stopped.db");
    std::fs::copy(database_file(&app.yaml), &file).expect("copy the database");
    let yaml = app.yaml.replace(
        &database_file(&app.yaml).display().to_string(),
        &file.display().to_string(),
    );
    drop(app);

    let db = open_db(&file).await;
    let rows = sqlx::query("SELECT kid, alg, private_der FROM signing_keys")
        .fetch_all(&db)
        .await
        .expect("read the keys");
    assert_eq!(rows.len(), 1, "one key after the first start");
    let kid: String = rows[0].get("kid");
    let alg: String = rows[0].get("alg");
    let original: Vec<u8> = rows[0].get("private_der");
    assert_eq!(kids, vec![kid.clone()]);

    // Another key type's bytes, a truncated key, one byte, and an unknown algorithm.
    let p256 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap()
    .as_ref()
    .to_vec();
    let corruptions: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("one zero byte", vec![0u8], &alg, "not an RSA PKCS#8 key"),
        (
            "truncated",
            original[..original.len() / 2].to_vec(),
            &alg,
            "not an RSA PKCS#8 key",
        ),
        (
            "a P-256 key under RS256",
            p256,
            &alg,
            "not an RSA PKCS#8 key",
        ),
        (
            "unknown algorithm",
            original.clone(),
            "HS256",
            "unknown algorithm",
        ),
    ];
    for (what, bytes, stored_alg, reason) in corruptions {
        sqlx::query("UPDATE signing_keys SET private_der = ?, alg = ? WHERE kid = ?")
            .bind(&bytes)
            .bind(stored_alg)
            .bind(&kid)
            .execute(&db)
            .await
            .expect("damage the key");
        let err = match start(&yaml).await {
            Ok(_) => panic!("{what}: started with a damaged signing key"),
            Err(e) => e,
        };
        assert!(err.contains(&kid), "{what}: the error names the key: {err}");
        assert!(err.contains("cannot be used"), "{what}: {err}");
        assert!(err.contains(reason), "{what}: {err}");
        // The damaged key was not replaced behind the operator's back.
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(count, 1, "{what}: no key was created or removed");
    }

    // The fault ends: the original bytes are back.
    sqlx::query("UPDATE signing_keys SET private_der = ?, alg = ? WHERE kid = ?")
        .bind(&original)
        .bind(&alg)
        .bind(&kid)
        .execute(&db)
        .await
        .expect("restore the key");
    db.close().await;
    let server = start(&yaml).await.expect("starts once the key is readable");
    // Nothing was lost: the same key, and the tokens issued before verify and refresh.
    let introspected = post(&server, "/introspect", &[("token", &access)], GRAFANA).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    let resp = reqwest::Client::new()
        .get(format!("http://{}/userinfo", server.addr))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let refreshed = post(
        &server,
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        GRAFANA,
    )
    .await;
    let (header, _) = decode_jwt(refreshed["access_token"].as_str().unwrap());
    assert_eq!(header["kid"], json!(kid), "signed with the same key");
    let machine = post(
        &server,
        "/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "inventory.read"),
        ],
        ClientAuth::Basic(SERVICE_ID, SERVICE_SECRET),
    )
    .await;
    assert!(machine["access_token"].is_string());
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Clock skew: the provider's clock moves (oauth2 connector).

/// The `oauth2` connector against the legacy IDaaS simulator, in front of the local one.
async fn idaas_app(sim: &IdaasSim) -> TestApp {
    let mut app = TestApp::spawn("").await;
    let block = format!(
        "connectors:
  - type: oauth2
    id: idaas
    name: IDaaS
    config:
      authorizationURL: {url}/oauth/authorize
      tokenURL: {url}/oauth/token
      userInfoURL: {url}{USERINFO_PATH}
      clientID: {CLIENT_ID}
      clientSecret: \"{CLIENT_SECRET}\"
      scopes: [read]
      successPath: success
      insecureSkipEmailVerified: true
      timeout: 2s
      claimMapping:
        userID: data.sub
        username: data.username
        name: data.nickname
        email: data.email
        groups: data.groups
  - type: local
",
        url = sim.url
    );
    reconfigure(&mut app, |y| y.replacen(LOCAL_CONNECTOR, &block, 1)).await;
    app
}

const SCOPES: &str = "openid profile email offline_access";

/// `iat` and `exp` of a token, and the lifetime they span.
fn times(token: &str) -> (i64, i64) {
    let (_, claims) = decode_jwt(token);
    (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_provider_clock_still_signs_in_and_its_tokens_follow_it() {
    let sim = IdaasSim::start().await;
    let app = idaas_app(&sim).await;
    for skew in [600, -600] {
        app.clock.advance(skew);
        let now = app.clock.now();
        let tokens = upstream_login(&app, &sim.url, "idaas", SCOPES).await;
        let access = tokens["access_token"].as_str().unwrap();
        let id_token = tokens["id_token"].as_str().unwrap();
        // Both lifetimes are an hour by default.
        for (token, lifetime) in [(access, 3600), (id_token, 3600)] {
            let (iat, exp) = times(token);
            assert!(
                (iat - now).abs() <= 5,
                "skew {skew}: iat {iat} vs the provider's {now}"
            );
            assert_eq!(exp - iat, lifetime, "skew {skew}");
        }
        assert_eq!(app.userinfo(Some(access)).await.status, StatusCode::OK);
        assert_eq!(app.introspect(access, GRAFANA).await["active"], true);
        // The fault ends: the clock is right again. Tokens issued meanwhile still work
        // (ten minutes off either way is inside their lifetime) and still refresh.
        app.clock.advance(-skew);
        assert_eq!(
            app.userinfo(Some(access)).await.status,
            StatusCode::OK,
            "skew {skew}: a token issued under the skew"
        );
        let resp = app
            .token(
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ],
                GRAFANA,
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "skew {skew}: {}", resp.body);
        let (iat, _) = times(resp.json()["access_token"].as_str().unwrap());
        assert!((iat - app.clock.now()).abs() <= 5);
    }
    // One user, not one per skewed login.
    let users = app.storage().list_users().await.unwrap();
    assert_eq!(users.len(), 1, "{users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jump_during_a_sign_in_ends_it_clearly_then_the_next_one_works() {
    let sim = IdaasSim::start().await;
    let app = idaas_app(&sim).await;
    // The provider's clock jumps past the sign-in's lifetime (10 minutes) while the browser
    // is at the upstream.
    let jump = || app.clock.advance(601);
    match upstream_run(&app, &sim.url, "idaas", SCOPES, Some(&jump)).await {
        UpstreamEnd::Page(status, body) => {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(body.contains("Sign-in expired"), "{body}");
        }
        UpstreamEnd::Code(_) => panic!("a sign-in outlived its lifetime"),
    }
    assert!(app.storage().list_users().await.unwrap().is_empty());
    // A fresh sign-in under the moved clock works.
    let tokens = upstream_login(&app, &sim.url, "idaas", SCOPES).await;
    assert!(tokens["id_token"].is_string());
}

// ---------------------------------------------------------------------------------------------
// Clock skew: the upstream's clock moves (oidc connector against oidc-provider).

const UP_CLIENT_ID: &str = "idbridge";
const UP_CLIENT_SECRET: &str = "idbridge-upstream-secret";

/// `oidc-provider` whose clock is off by the milliseconds written in `skew_file`, read at
/// every `Date.now()` so a test can move it while the upstream runs.
struct SkewedUpstream {
    child: Child,
    _stdin: ChildStdin,
    issuer: String,
    skew_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for SkewedUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SkewedUpstream {
    async fn start(redirect_uri: &str) -> SkewedUpstream {
        let dir = tempfile::tempdir().expect("temp dir");
        let skew_file = dir.path().join("skew-ms");
        std::fs::write(&skew_file, "0").unwrap();
        let preload = dir.path().join("skew.cjs");
        std::fs::write(
            &preload,
            "const fs = require('node:fs');\n\
             const file = process.env.SKEW_FILE;\n\
             const realNow = Date.now;\n\
             Date.now = () => {\n\
               let skew = 0;\n\
               try { skew = Number(fs.readFileSync(file, 'utf8')) || 0; } catch {}\n\
               return realNow() + skew;\n\
             };\n",
        )
        .unwrap();
        let mut command = Command::new("node");
        command
            .arg("--require")
            .arg(&preload)
            .arg("upstream.mjs")
            .args([UP_CLIENT_ID, UP_CLIENT_SECRET, redirect_uri])
            .env("UPSTREAM_PORT", "0")
            .env("SKEW_FILE", &skew_file);
        let (child, stdin, issuer) = spawn_node_upstream(command).await;
        SkewedUpstream {
            child,
            _stdin: stdin,
            issuer,
            skew_file,
            _dir: dir,
        }
    }

    fn set_skew(&self, seconds: i64) {
        std::fs::write(&self.skew_file, (seconds * 1000).to_string()).unwrap();
    }
}

/// Waits until the provider sends browsers to the upstream (its discovery runs in the
/// background from start-up).
async fn wait_until_ready(app: &TestApp, upstream: &str) {
    let url = app.auth_url(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("connector_id", "upstream"),
    ]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    for _ in 0..100 {
        let mut next = url.clone();
        for _ in 0..3 {
            let Ok(resp) = client.get(&next).send().await else {
                break;
            };
            let Some(location) = resp.headers().get("location").and_then(|v| v.to_str().ok())
            else {
                break;
            };
            let location = reqwest::Url::parse(&next)
                .and_then(|u| u.join(location))
                .expect("Location");
            if location.as_str().starts_with(upstream) {
                return;
            }
            next = location.to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the oidc connector never became ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_clock_behind_gives_a_clear_error_then_recovers() {
    let test = "faults_keys::an_upstream_clock_behind_gives_a_clear_error_then_recovers";
    if !node_available(test) {
        return;
    }
    let mut app = TestApp::spawn("").await;
    // A local user signed in before the fault: whatever happens upstream, they keep it.
    let local = app.grafana_tokens(&app.browser(), &ALICE).await;
    let upstream = SkewedUpstream::start(&format!("{}/callback", app.base)).await;
    let block = format!(
        "connectors:
  - type: oidc
    id: upstream
    name: Upstream
    config:
      issuer: {issuer}
      clientID: {UP_CLIENT_ID}
      clientSecret: {UP_CLIENT_SECRET}
      scopes: [openid, profile, email]
      timeout: 5s
  - type: local
",
        issuer = upstream.issuer
    );
    reconfigure(&mut app, |y| y.replacen(LOCAL_CONNECTOR, &block, 1)).await;
    wait_until_ready(&app, &upstream.issuer).await;

    // Inside the 60 s leeway either way, and far ahead (an ID token "issued in the future"
    // still has a valid exp; OpenID Connect Core 3.1.3.7 leaves rejecting on iat optional).
    for skew in [-30, 30, 600] {
        upstream.set_skew(skew);
        let tokens =
            upstream_login(&app, &upstream.issuer, "upstream", "openid profile email").await;
        assert!(tokens["id_token"].is_string(), "skew {skew}");
    }
    let users_before = app.storage().list_users().await.unwrap().len();

    // Fifteen minutes behind: the upstream's ten-minute ID tokens arrive already expired.
    upstream.set_skew(-900);
    match upstream_run(
        &app,
        &upstream.issuer,
        "upstream",
        "openid profile email",
        None,
    )
    .await
    {
        UpstreamEnd::Page(status, body) => {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
            assert!(body.contains("Identity provider error"), "{body}");
        }
        UpstreamEnd::Code(_) => panic!("an expired upstream ID token was accepted"),
    }
    // The reason is on record for the operator, in one line.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = app
        .storage()
        .list_audit_events(0, None, 1000)
        .await
        .unwrap();
    let failure = events
        .iter()
        .rev()
        .find(|e| e.kind == "login_failed")
        .expect("a login_failed audit event");
    let detail = failure.detail.as_deref().unwrap_or("");
    assert!(detail.contains("expired"), "{detail}");
    assert_eq!(
        app.storage().list_users().await.unwrap().len(),
        users_before
    );

    // The fault ends: the next sign-in works without restarting anything.
    upstream.set_skew(0);
    let tokens = upstream_login(&app, &upstream.issuer, "upstream", "openid profile email").await;
    assert!(tokens["id_token"].is_string());
    // Nothing was lost on our side.
    let access = local["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(Some(access)).await.status, StatusCode::OK);
    assert_eq!(
        app.storage().list_users().await.unwrap().len(),
        users_before
    );
}

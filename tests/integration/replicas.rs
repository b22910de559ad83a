//! Several replicas over one PostgreSQL database: real `idbridge serve` processes on different
//! loopback ports with the same issuer, as behind a load balancer without sticky sessions.
//!
//! Requests go to a replica by its own address with the issuer's paths (the provider does not
//! look at the Host header), so every redirect the provider sends, which names the issuer, is
//! followed at whichever replica the test chooses. Cookies are kept by hand so the test decides
//! which replica sees them.
//!
//! The helpers here are shared with the fault tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use idbridge::clock::Clock;
use idbridge::config::Config;
use idbridge::oidc::Provider;
use idbridge::oidc::keys::KeyManager;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub const POSTGRES_URL_VAR: &str = "IDBRIDGE_TEST_POSTGRES_URL";

pub const USER_LOGIN: &str = "carol";
pub const USER_EMAIL: &str = "carol@example.com";
pub const USER_PASSWORD: &str = "carol-replicated-secret";
pub const USER_ID: &str = "carol-0003";

/// A confidential client that skips the consent screen.
pub const CLIENT_ID: &str = "portal";
pub const CLIENT_SECRET: &str = "portal-secret";
pub const CLIENT_REDIRECT: &str = "https://portal.example.com/oauth/callback";
const SCOPES: &str = "openid profile email groups offline_access";

// ---------------------------------------------------------------------------------------------
// Environment

/// The PostgreSQL server URL the test command exports, if any.
pub fn postgres_server_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|u| !u.is_empty())
}

/// Reports a test that cannot run here; a failure when the test command requires every test.
pub fn skip(test: &str) {
    if std::env::var_os("IDBRIDGE_TEST_REQUIRE_ALL").is_some() {
        panic!("{test} needs {POSTGRES_URL_VAR} (a PostgreSQL server, see scripts/pg-test-server)");
    }
    println!("SKIP {test}: {POSTGRES_URL_VAR} is not set");
}

fn unique_name(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// An empty database of its own on the test server, dropped with [`TestDatabase::drop`].
pub struct TestDatabase {
    server_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(server_url: &str) -> TestDatabase {
        let name = unique_name("idb_ha");
        let mut admin = PgConnection::connect(server_url).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut url = url::Url::parse(server_url).unwrap();
        url.set_path(&name);
        TestDatabase {
            server_url: server_url.to_string(),
            name,
            url: url.to_string(),
        }
    }

    pub async fn drop(self) {
        let mut admin = PgConnection::connect(&self.server_url).await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
    }
}

/// A loopback port that was free a moment ago (the replica binds it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| idbridge::connectors::local::hash_password(USER_PASSWORD).unwrap())
}

/// The configuration of one replica: `listen` differs between replicas, everything else is
/// the same.
pub fn replica_yaml(issuer: &str, listen: &str, postgres_url: &str) -> String {
    format!(
        r#"issuer: {issuer}
storage:
  type: postgres
  config:
    url: "{postgres_url}"
    maxConnections: 4
web:
  http: {listen}
logger:
  level: warn
expiry:
  authCodes: 10m
connectors:
  - type: local
    id: local
    name: Email
staticPasswords:
  - email: {USER_EMAIL}
    username: {USER_LOGIN}
    hash: "{hash}"
    userID: {USER_ID}
    groups: [operators]
staticClients:
  - id: {CLIENT_ID}
    name: Portal
    secret: {CLIENT_SECRET}
    skipApproval: true
    redirectURIs: [{CLIENT_REDIRECT}]
"#,
        hash = password_hash(),
    )
}

// ---------------------------------------------------------------------------------------------
// Replica processes

/// One `idbridge serve` process. Killed (SIGKILL) when dropped.
pub struct Replica {
    pub name: &'static str,
    /// `http://127.0.0.1:PORT`: where to send this replica's requests.
    pub base: String,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Replica {
    /// Starts the binary on `port` with `yaml` (written to `dir/NAME.yaml`).
    pub fn start(name: &'static str, dir: &Path, port: u16, yaml: &str) -> Replica {
        let config_path = dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, yaml).unwrap();
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_idbridge"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .env_remove("IDBRIDGE_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start replica {name}: {e}"));
        Replica {
            name,
            base: format!("http://127.0.0.1:{port}"),
            log_path,
            child: Some(child),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200; panics with the replica's log when it exits or takes
    /// longer than `limit`.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "replica {} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log()
                );
            }
            let ready = http
                .get(format!("{}/readyz", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ready {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "replica {} not ready after {limit:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as when a node dies: no graceful shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A response, read completely.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    pub async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn location(&self) -> Option<String> {
        self.headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// A client without cookies that never follows redirects.
pub fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn encode_form(pairs: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish()
}

fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// POST /token at `base` as the confidential client.
pub async fn token(http: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> Resp {
    let resp = http
        .post(format!("{base}/token"))
        .header("authorization", basic(CLIENT_ID, CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(form))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {base}/token: {e}"));
    Resp::read(resp).await
}

pub async fn redeem(http: &reqwest::Client, base: &str, code: &str) -> Resp {
    token(
        http,
        base,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CLIENT_REDIRECT),
        ],
    )
    .await
}

pub async fn refresh(http: &reqwest::Client, base: &str, refresh_token: &str) -> Resp {
    token(
        http,
        base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

pub async fn userinfo(http: &reqwest::Client, base: &str, access_token: &str) -> Resp {
    let resp = http
        .get(format!("{base}/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {base}/userinfo: {e}"));
    Resp::read(resp).await
}

pub async fn get(http: &reqwest::Client, url: &str) -> Resp {
    Resp::read(
        http.get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}")),
    )
    .await
}

/// The authorization request of the test client, as a path under the issuer.
pub fn auth_path(state: &str) -> String {
    format!(
        "/auth?{}",
        encode_form(&[
            ("client_id", CLIENT_ID),
            ("redirect_uri", CLIENT_REDIRECT),
            ("response_type", "code"),
            ("scope", SCOPES),
            ("state", state),
        ])
    )
}

/// Decodes the HTML entities askama writes in attribute values.
fn html_unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&#x3d;", "=")
        .replace("&#x3D;", "=")
        .replace("&#61;", "=")
        .replace("&#43;", "+")
        .replace("&#x2b;", "+")
        .replace("&#x2B;", "+")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html_unescape(&html[start..end]))
}

fn form_action(html: &str, marker: &str) -> Option<String> {
    let at = html.find(marker)?;
    let form_start = html[..at].rfind("<form")?;
    let tag_end = html[form_start..].find('>')? + form_start;
    let tag = &html[form_start..tag_end];
    let start = tag.find("action=\"")? + "action=\"".len();
    let end = tag[start..].find('"')? + start;
    Some(html_unescape(&tag[start..end]))
}

/// A browser whose cookies the test carries from replica to replica: cookies do not depend on
/// the port, and behind a load balancer every replica sees the same ones.
pub struct Browser {
    http: reqwest::Client,
    issuer: String,
    cookies: Mutex<BTreeMap<String, String>>,
}

/// Where a browser run stopped.
#[derive(Debug)]
pub struct Flow {
    pub login_forms: usize,
    pub end: Resp,
}

impl Flow {
    /// The `code` of the redirect to the client.
    pub fn code(&self) -> String {
        let location = self.end.location().unwrap_or_else(|| {
            panic!(
                "expected a redirect to the client, got {}: {}",
                self.end.status, self.end.body
            )
        });
        assert!(
            location.starts_with(CLIENT_REDIRECT),
            "redirected elsewhere: {location}"
        );
        let url = url::Url::parse(&location).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {location}"))
    }

    /// The login form's action (a path under the issuer) and CSRF token.
    pub fn login_form(&self) -> (String, String) {
        assert!(
            self.end.body.contains("name=\"password\""),
            "expected the login form, got {}: {}",
            self.end.status,
            self.end.body
        );
        let action = form_action(&self.end.body, "name=\"password\"").expect("form action");
        let csrf = input_value(&self.end.body, "csrf").expect("csrf field");
        (action, csrf)
    }
}

impl Browser {
    pub fn new(issuer: &str) -> Browser {
        Browser {
            http: api_client(),
            issuer: issuer.to_string(),
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    /// `target` (an absolute issuer URL or a path under it) at the replica `base`.
    fn at(&self, base: &str, target: &str) -> String {
        let path = target.strip_prefix(&self.issuer).unwrap_or(target);
        assert!(path.starts_with('/'), "not a provider URL: {target}");
        format!("{base}{path}")
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&self, resp: &reqwest::Response) {
        let mut jar = self.cookies.lock().unwrap();
        for value in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            let pair = value.split(';').next().unwrap_or("");
            let Some((name, val)) = pair.split_once('=') else {
                continue;
            };
            let expired = value.to_ascii_lowercase().contains("max-age=0");
            if expired || val.is_empty() {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_string(), val.trim().to_string());
            }
        }
    }

    pub async fn get(&self, base: &str, target: &str) -> Resp {
        let url = self.at(base, target);
        let resp = self
            .http
            .get(&url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        self.remember(&resp);
        Resp::read(resp).await
    }

    pub async fn post_form(&self, base: &str, target: &str, pairs: &[(&str, &str)]) -> Resp {
        let url = self.at(base, target);
        let resp = self
            .http
            .post(&url)
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_form(pairs))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        self.remember(&resp);
        Resp::read(resp).await
    }

    /// Follows the provider's redirects at `base` from `resp`; fills in the login form when
    /// `login` is set, stops at it otherwise.
    pub async fn follow(&self, base: &str, mut resp: Resp, login: bool) -> Flow {
        let mut login_forms = 0;
        for _ in 0..12 {
            if resp.status.is_redirection() {
                let next = resp.location().expect("a redirect has a Location");
                if !(next.starts_with(&format!("{}/", self.issuer)) || next.starts_with('/')) {
                    break;
                }
                resp = self.get(base, &next).await;
                continue;
            }
            if resp.status == StatusCode::OK && resp.body.contains("name=\"password\"") {
                login_forms += 1;
                if !login {
                    break;
                }
                assert!(
                    login_forms <= 1,
                    "the login form came back: wrong password?"
                );
                let flow = Flow {
                    login_forms,
                    end: resp,
                };
                let (action, csrf) = flow.login_form();
                resp = self
                    .post_form(
                        base,
                        &action,
                        &[
                            ("login", USER_LOGIN),
                            ("password", USER_PASSWORD),
                            ("csrf", &csrf),
                        ],
                    )
                    .await;
                continue;
            }
            break;
        }
        Flow {
            login_forms,
            end: resp,
        }
    }

    /// Starts an authorization at `base` and follows it there.
    pub async fn authorize(&self, base: &str, state: &str, login: bool) -> Flow {
        let first = self.get(base, &auth_path(state)).await;
        self.follow(base, first, login).await
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens and keys

fn b64(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).expect("base64url")
}

pub fn jwt_header(token: &str) -> Value {
    serde_json::from_slice(&b64(token.split('.').next().expect("header"))).expect("JSON header")
}

/// The `kid`s of a JWKS document.
pub fn kids(jwks: &Value) -> BTreeSet<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}

/// Verifies a compact JWS with the key of its `kid` in `jwks`, as a relying party would.
pub fn verify_with_jwks(token: &str, jwks: &Value) -> Result<String, String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("not a compact JWS".into());
    }
    let header = jwt_header(token);
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("no keys")?
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let signed = format!("{}.{}", parts[0], parts[1]);
    let sig = b64(parts[2]);
    let field = |name: &str| b64(jwk[name].as_str().unwrap_or_default());
    let ok = match header["alg"].as_str() {
        Some("RS256") => RsaPublicKeyComponents {
            n: field("n"),
            e: field("e"),
        }
        .verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &sig,
        )
        .is_ok(),
        Some("ES256") => {
            let mut point = vec![4u8];
            point.extend(field("x"));
            point.extend(field("y"));
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed.as_bytes(), &sig)
                .is_ok()
        }
        Some("EdDSA") => UnparsedPublicKey::new(&signature::ED25519, field("x"))
            .verify(signed.as_bytes(), &sig)
            .is_ok(),
        other => return Err(format!("unexpected alg {other:?}")),
    };
    if ok {
        Ok(kid.to_string())
    } else {
        Err(format!("bad signature for kid {kid}"))
    }
}

/// Creates the next signing key in the replicas' database, as an administrator's key rotation
/// would, through the library (the same code the server runs).
async fn rotate_keys_in_storage(yaml: &str) -> BTreeSet<String> {
    let config = Config::from_yaml_str(yaml).unwrap();
    let storage = idbridge::app::open_storage(&config).await.unwrap();
    let now = Clock::system().now();
    let lifetime = config
        .expiry
        .id_tokens
        .max(config.expiry.access_tokens)
        .as_secs() as i64;
    let keys = KeyManager::load(
        storage.as_ref(),
        Provider::signing_algorithms(&config),
        config.signer.keys_rotation_period.as_secs() as i64,
        lifetime,
        now,
    )
    .await
    .unwrap();
    let before = kids(&serde_json::from_slice(&keys.jwks()).unwrap());
    keys.force_rotation(storage.as_ref(), now).await.unwrap();
    let after = kids(&serde_json::from_slice(&keys.jwks()).unwrap());
    after.difference(&before).cloned().collect()
}

// ---------------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_logins_tokens_and_keys() {
    let Some(server) = postgres_server_url() else {
        skip("replicas::two_replicas_share_logins_tokens_and_keys");
        return;
    };
    let started = Instant::now();
    let db = TestDatabase::create(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{port_a}");
    let yaml_a = replica_yaml(&issuer, &format!("127.0.0.1:{port_a}"), &db.url);
    let yaml_b = replica_yaml(&issuer, &format!("127.0.0.1:{port_b}"), &db.url);
    let http = api_client();

    // Both start at once over an empty database: the schema and the first key are created once.
    let mut a = Replica::start("a", dir.path(), port_a, &yaml_a);
    let mut b = Replica::start("b", dir.path(), port_b, &yaml_b);
    let ready_a = a.wait_ready(&http, Duration::from_secs(60)).await;
    let ready_b = b.wait_ready(&http, Duration::from_secs(60)).await;
    println!("replicas ready: a {ready_a:?}, b {ready_b:?}");
    let (a_url, b_url) = (a.base.clone(), b.base.clone());

    let jwks_a = get(&http, &format!("{a_url}/keys")).await.json();
    let jwks_b = get(&http, &format!("{b_url}/keys")).await.json();
    assert_eq!(jwks_a, jwks_b, "both replicas publish the same keys");
    assert_eq!(kids(&jwks_a).len(), 1, "one first key, not one per replica");
    let discovery_b = get(&http, &format!("{b_url}/.well-known/openid-configuration"))
        .await
        .json();
    assert_eq!(discovery_b["issuer"], issuer.as_str());

    // A login that starts on A (authorization request, login form) and finishes on B.
    let browser = Browser::new(&issuer);
    let on_a = browser.authorize(&a_url, "start-on-a", false).await;
    let (action, csrf) = on_a.login_form();
    let session_from_a = browser
        .cookie("idbridge_session")
        .expect("A set the session cookie");
    let posted = browser
        .post_form(
            &b_url,
            &action,
            &[
                ("login", USER_LOGIN),
                ("password", USER_PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    let finished_on_b = browser.follow(&b_url, posted, false).await;
    assert_eq!(
        finished_on_b.login_forms, 0,
        "B accepted the login form A showed (same session, same CSRF token)"
    );
    let code = finished_on_b.code();
    let from_b = redeem(&http, &b_url, &code).await;
    assert_eq!(
        from_b.status,
        StatusCode::OK,
        "redeem at B: {}",
        from_b.body
    );
    let from_b = from_b.json();
    println!(
        "session cookie from A {}, after login {}",
        session_from_a.len(),
        browser.cookie("idbridge_session").unwrap_or_default().len()
    );

    // Single sign-on at both replicas with the browser's one cookie, no login form.
    let sso_a = browser.authorize(&a_url, "sso-a", false).await;
    assert_eq!(sso_a.login_forms, 0, "SSO at A: {}", sso_a.end.body);
    let code_a = sso_a.code();
    let sso_b = browser.authorize(&b_url, "sso-b", false).await;
    assert_eq!(sso_b.login_forms, 0, "SSO at B: {}", sso_b.end.body);
    let code_b = sso_b.code();

    // A code made on A is redeemed on B, and the other way round; each only once.
    let a_code_at_b = redeem(&http, &b_url, &code_a).await;
    assert_eq!(a_code_at_b.status, StatusCode::OK, "{}", a_code_at_b.body);
    let replay_at_a = redeem(&http, &a_url, &code_a).await;
    assert_eq!(replay_at_a.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay_at_a.json()["error"], "invalid_grant");
    let from_a = redeem(&http, &a_url, &code_b).await;
    assert_eq!(
        from_a.status,
        StatusCode::OK,
        "redeem at A: {}",
        from_a.body
    );
    let from_a = from_a.json();

    // Refresh tokens cross replicas in both directions.
    let rt_a = from_a["refresh_token"]
        .as_str()
        .expect("refresh token from A");
    let refreshed_at_b = refresh(&http, &b_url, rt_a).await;
    assert_eq!(
        refreshed_at_b.status,
        StatusCode::OK,
        "refresh at B of A's token: {}",
        refreshed_at_b.body
    );
    let rt_b = from_b["refresh_token"]
        .as_str()
        .expect("refresh token from B");
    let refreshed_at_a = refresh(&http, &a_url, rt_b).await;
    assert_eq!(
        refreshed_at_a.status,
        StatusCode::OK,
        "refresh at A of B's token: {}",
        refreshed_at_a.body
    );

    // Tokens signed by A verify with B's JWKS, and B accepts A's access token.
    let id_token_a = from_a["id_token"].as_str().unwrap();
    let access_a = from_a["access_token"].as_str().unwrap();
    let old_kid = verify_with_jwks(id_token_a, &jwks_b).expect("A's ID token with B's JWKS");
    verify_with_jwks(access_a, &jwks_b).expect("A's access token with B's JWKS");
    let info = userinfo(&http, &b_url, access_a).await;
    assert_eq!(info.status, StatusCode::OK, "userinfo at B: {}", info.body);
    assert_eq!(info.json()["email"], USER_EMAIL);

    // Key rotation done elsewhere (an administrator's tool over the same database): both
    // replicas publish the new key at their next reload, and keep signing with the old one
    // until the new one has been published long enough.
    let rotated_at = Instant::now();
    let new_kids = rotate_keys_in_storage(&yaml_a).await;
    assert_eq!(new_kids.len(), 1, "one new key");
    let new_kid = new_kids.iter().next().unwrap().clone();
    let reload = Duration::from_secs(idbridge::oidc::keys::RELOAD_INTERVAL as u64);
    let mut seen: BTreeMap<&str, Duration> = BTreeMap::new();
    while seen.len() < 2 {
        for (name, base) in [("a", &a_url), ("b", &b_url)] {
            if !seen.contains_key(name) {
                let jwks = get(&http, &format!("{base}/keys")).await.json();
                if kids(&jwks).contains(&new_kid) {
                    seen.insert(name, rotated_at.elapsed());
                }
            }
        }
        assert!(
            rotated_at.elapsed() < reload + Duration::from_secs(10),
            "the new key {new_kid} is not published everywhere after {:?}: {seen:?}",
            rotated_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("new key published: {seen:?}");
    let jwks_a = get(&http, &format!("{a_url}/keys")).await.json();
    let jwks_b = get(&http, &format!("{b_url}/keys")).await.json();
    assert_eq!(jwks_a, jwks_b, "same keys after the rotation");
    assert_eq!(
        kids(&jwks_b),
        [old_kid.clone(), new_kid.clone()].into_iter().collect(),
        "old and new keys are both published"
    );

    let sso_a = browser.authorize(&a_url, "after-rotation", false).await;
    let fresh = redeem(&http, &a_url, &sso_a.code()).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
    let fresh_id_token = fresh.json()["id_token"].as_str().unwrap().to_string();
    let kid = verify_with_jwks(&fresh_id_token, &jwks_b).expect("verifies with B's JWKS");
    assert_eq!(
        kid, old_kid,
        "a key that was just published does not sign yet"
    );
    verify_with_jwks(id_token_a, &jwks_b).expect("older tokens still verify");

    drop(a);
    drop(b);
    db.drop().await;
    println!("replicas test took {:?}", started.elapsed());
}

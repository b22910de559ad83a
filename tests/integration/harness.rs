//! The test harness: the real provider on `127.0.0.1` with a fresh SQLite database and a clock
//! the test can move forward, plus a cookie-keeping browser that follows every redirect by hand
//! so each hop can be inspected.
//!
//! Every response that goes through the harness is checked for a 5xx status: no request a test
//! makes, however malformed, may make the server fail.

// Each test family uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use idbridge::app::{self, Server};
use idbridge::clock::Clock;
use idbridge::config::Config;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, LOCATION};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use url::Url;

/// A user of the `local` connector.
#[derive(Clone, Copy, Debug)]
pub struct TestUser {
    pub login: &'static str,
    pub email: &'static str,
    pub password: &'static str,
    pub user_id: &'static str,
}

pub const ALICE: TestUser = TestUser {
    login: "alice",
    email: "alice@example.com",
    password: "alice-correct-horse",
    user_id: "alice-0001",
};

pub const BOB: TestUser = TestUser {
    login: "bob",
    email: "bob@example.com",
    password: "bob-battery-staple",
    user_id: "bob-0002",
};

/// The KubeSphere client: confidential, consent required, default scopes. Its secret holds
/// `+`, `/` and `=`, which Go's oauth2 form-encodes inside HTTP Basic (RFC 6749 2.3.1).
pub const KS_ID: &str = "kubesphere";
pub const KS_SECRET: &str = "ks+secret/with=special==";
pub const KS_REDIRECT: &str = "https://kubesphere.example.com/oauth/redirect/idbridge";
pub const KS_LOGOUT_REDIRECT: &str = "https://kubesphere.example.com/login";

/// Grafana: confidential, skips the consent screen.
pub const GRAFANA_ID: &str = "grafana";
pub const GRAFANA_SECRET: &str = "grafana-secret";
pub const GRAFANA_REDIRECT: &str = "https://grafana.example.com/login/generic_oauth";

/// A public command-line client with a loopback redirect (any port, RFC 8252 7.3).
pub const CLI_ID: &str = "cli";
pub const CLI_REDIRECT: &str = "http://127.0.0.1/callback";

/// A machine client that may only use the client credentials grant.
pub const SERVICE_ID: &str = "service";
pub const SERVICE_SECRET: &str = "service-secret";

/// Password hashes are made once per test binary: argon2 is slow on purpose.
fn password_hashes() -> &'static (String, String) {
    static HASHES: OnceLock<(String, String)> = OnceLock::new();
    HASHES.get_or_init(|| {
        let hash = |p: &str| idbridge::connectors::local::hash_password(p).expect("hash password");
        (hash(ALICE.password), hash(BOB.password))
    })
}

/// Server logs, when `TEST_LOG` holds a filter (`TEST_LOG=debug cargo test ...`).
fn init_logging() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Indents every line of `text` by `spaces`, for splicing YAML fragments into the config.
fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Options on top of the default configuration.
#[derive(Default)]
pub struct TestAppBuilder {
    issuer_path: String,
    oauth2: Vec<String>,
    clients: Vec<String>,
    extra: Vec<String>,
}

impl TestAppBuilder {
    /// A path after the issuer's host, kept exactly as written (`/dex`, `/dex/`).
    pub fn issuer_path(mut self, path: &str) -> Self {
        self.issuer_path = path.to_string();
        self
    }

    /// A key under `oauth2:` (for example `alwaysShowLoginScreen: true`).
    pub fn oauth2(mut self, line: &str) -> Self {
        self.oauth2.push(line.to_string());
        self
    }

    /// One more `staticClients` entry, written as a YAML list item starting with `- id:`.
    pub fn client(mut self, item: &str) -> Self {
        self.clients.push(item.to_string());
        self
    }

    /// Top-level YAML appended to the configuration (`testLogin:`, `expiry:`, ...).
    pub fn yaml(mut self, text: &str) -> Self {
        self.extra.push(text.to_string());
        self
    }

    pub async fn spawn(self) -> TestApp {
        init_logging();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let issuer = format!("http://{addr}{}", self.issuer_path);
        let dir = tempfile::tempdir().expect("temp dir");
        let yaml = self.render(&issuer, addr, &dir);
        let clock = Clock::system();
        let server = start_provider(&yaml, listener, clock.clone()).await;
        let http = http_client(false);
        TestApp {
            addr,
            base: issuer.trim_end_matches('/').to_string(),
            issuer,
            clock,
            yaml,
            http,
            server: Some(server),
            _dir: dir,
        }
    }

    fn render(&self, issuer: &str, addr: SocketAddr, dir: &TempDir) -> String {
        let (alice_hash, bob_hash) = password_hashes();
        let db = dir.path().join("idbridge.db");
        let oauth2 = self
            .oauth2
            .iter()
            .map(|l| indent(l, 2))
            .collect::<Vec<_>>()
            .join("\n");
        let clients = self
            .clients
            .iter()
            .map(|c| indent(c, 2))
            .collect::<Vec<_>>()
            .join("\n");
        let extra = self.extra.join("\n");
        format!(
            r#"issuer: {issuer}
storage:
  type: sqlite
  config:
    file: "{db}"
web:
  http: {addr}
logger:
  level: warn
oauth2:
  skipApprovalScreen: false
{oauth2}
connectors:
  - type: local
    id: local
    name: Email
staticPasswords:
  - email: {alice_email}
    username: {alice_login}
    hash: "{alice_hash}"
    userID: {alice_id}
    groups: [developers, platform]
  - email: {bob_email}
    username: {bob_login}
    hash: "{bob_hash}"
    userID: {bob_id}
    groups: []
staticClients:
  - id: {KS_ID}
    name: KubeSphere
    secret: "{KS_SECRET}"
    redirectURIs: [{KS_REDIRECT}]
    postLogoutRedirectURIs: [{KS_LOGOUT_REDIRECT}]
    defaultScopes: [openid, profile, email]
  - id: {GRAFANA_ID}
    name: Grafana
    secret: {GRAFANA_SECRET}
    skipApproval: true
    redirectURIs: [{GRAFANA_REDIRECT}]
  - id: {CLI_ID}
    name: Command line
    public: true
    redirectURIs: [{CLI_REDIRECT}]
  - id: {SERVICE_ID}
    name: Service
    secret: {SERVICE_SECRET}
    grantTypes: [client_credentials]
    allowedScopes: [inventory.read, inventory.write]
    audience: [https://inventory.example.com]
{clients}
{extra}
"#,
            db = db.display(),
            alice_email = ALICE.email,
            alice_login = ALICE.login,
            alice_id = ALICE.user_id,
            bob_email = BOB.email,
            bob_login = BOB.login,
            bob_id = BOB.user_id,
        )
    }
}

/// A running provider. The temporary directory (and so the database) lives as long as this.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Exactly as configured: `http://127.0.0.1:PORT` plus the issuer path, if any.
    pub issuer: String,
    /// The issuer without a trailing slash: endpoint URLs are `{base}/token` and so on.
    pub base: String,
    /// Shared with the server: `clock.advance(secs)` expires codes and tokens.
    pub clock: Clock,
    /// The whole configuration as loaded.
    pub yaml: String,
    /// A client without cookies that never follows redirects, for API calls.
    pub http: reqwest::Client,
    server: Option<Server>,
    _dir: TempDir,
}

/// How a client authenticates at the token, introspection and revocation endpoints.
#[derive(Clone, Copy, Debug)]
pub enum ClientAuth<'a> {
    /// HTTP Basic with id and secret form-encoded first (RFC 6749 2.3.1), as Go's oauth2 does.
    Basic(&'a str, &'a str),
    /// `client_id` and `client_secret` in the body.
    Post(&'a str, &'a str),
    /// A public client: `client_id` only.
    Public(&'a str),
    None,
}

/// A response, read completely.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status();
        let headers = resp.headers().clone();
        let url = resp.url().clone();
        let body = resp.text().await.expect("read body");
        if std::env::var_os("TEST_TRACE").is_some() {
            let location = headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            eprintln!("{url} -> {status} {location}");
        }
        assert!(
            !status.is_server_error(),
            "{url} answered {status}: no request may make the server fail\n{body}"
        );
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header (`Set-Cookie` comes several times).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    pub fn location(&self) -> Option<Url> {
        self.header(LOCATION.as_str()).map(|l| {
            Url::parse(l).unwrap_or_else(|e| panic!("Location {l:?} is not absolute: {e}"))
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// Asserts an RFC 6749 5.2 error with this status and code.
    pub fn assert_oauth_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status} {code}, got {}: {}",
            self.status,
            self.body
        );
        assert_eq!(
            self.json()["error"],
            code,
            "expected error {code}: {}",
            self.body
        );
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// The default configuration plus `yaml_extra` (top-level keys).
    pub async fn spawn(yaml_extra: &str) -> TestApp {
        TestApp::builder().yaml(yaml_extra).spawn().await
    }

    /// The running server's storage, to observe what it wrote.
    pub fn storage(&self) -> std::sync::Arc<dyn idbridge::storage::Storage> {
        self.server
            .as_ref()
            .expect("server running")
            .provider
            .storage
            .clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A fresh browser with its own cookie jar.
    pub fn browser(&self) -> Browser {
        Browser {
            http: http_client(true),
            base: self.base.clone(),
        }
    }

    /// The authorization endpoint with these query parameters.
    pub fn auth_url(&self, params: &[(&str, &str)]) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            ser.append_pair(k, v);
        }
        format!("{}/auth?{}", self.base, ser.finish())
    }

    /// Stops the server and starts it again on the same port and database (same issuer).
    pub async fn restart(&mut self) {
        let server = self.server.take().expect("server is running");
        server.stop().await;
        // The port was ours a moment ago; a short bounded retry covers the listener's close.
        let mut listener = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let listener = listener.expect("re-bind the issuer's port");
        let config = Config::from_yaml_str(&self.yaml).expect("config");
        self.server = Some(
            app::spawn(config, listener, self.clock.clone())
                .await
                .expect("restart the provider"),
        );
    }

    pub async fn get(&self, path: &str) -> Resp {
        Resp::read(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    /// A form POST to an endpoint under the issuer, authenticated as `auth`.
    pub async fn post(&self, path: &str, form: &[(&str, &str)], auth: ClientAuth<'_>) -> Resp {
        let mut pairs: Vec<(&str, &str)> = form.to_vec();
        let mut req = self.http.post(self.url(path));
        match auth {
            ClientAuth::Basic(id, secret) => {
                req = req.header(AUTHORIZATION, basic(id, secret));
            }
            ClientAuth::Post(id, secret) => {
                pairs.push(("client_id", id));
                pairs.push(("client_secret", secret));
            }
            ClientAuth::Public(id) => pairs.push(("client_id", id)),
            ClientAuth::None => {}
        }
        let body = encode_form(&pairs);
        let resp = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        Resp::read(resp).await
    }

    /// A POST with a raw body and content type (for malformed requests).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        auth: ClientAuth<'_>,
    ) -> Resp {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body.to_string());
        if let ClientAuth::Basic(id, secret) = auth {
            req = req.header(AUTHORIZATION, basic(id, secret));
        }
        Resp::read(req.send().await.expect("POST")).await
    }

    pub async fn token(&self, form: &[(&str, &str)], auth: ClientAuth<'_>) -> Resp {
        self.post("/token", form, auth).await
    }

    /// Exchanges a code; `verifier` and `redirect_uri` only when given.
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
        auth: ClientAuth<'_>,
    ) -> Resp {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        self.token(&form, auth).await
    }

    /// GET /userinfo with a bearer token (or none).
    pub async fn userinfo(&self, token: Option<&str>) -> Resp {
        let mut req = self.http.get(self.url("/userinfo"));
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        Resp::read(req.send().await.expect("GET /userinfo")).await
    }

    pub async fn introspect(&self, token: &str, auth: ClientAuth<'_>) -> Value {
        let resp = self.post("/introspect", &[("token", token)], auth).await;
        assert_eq!(resp.status, StatusCode::OK, "introspection: {}", resp.body);
        resp.json()
    }

    /// The `kid`s published in the JWKS.
    pub async fn jwks_kids(&self) -> Vec<String> {
        let jwks = self.get("/keys").await.json();
        jwks["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_string())
            .collect()
    }

    /// Signs `user` in at Grafana (no consent screen) in `browser` and returns the code.
    pub async fn grafana_code(&self, browser: &Browser, user: &TestUser) -> String {
        let url = self.auth_url(&[
            ("client_id", GRAFANA_ID),
            ("redirect_uri", GRAFANA_REDIRECT),
            ("response_type", "code"),
            ("scope", "openid profile email groups offline_access"),
            ("state", "grafana-state"),
        ]);
        browser.authorize(&url, Some(user)).await.code()
    }

    /// A full Grafana login and code exchange: the token response.
    pub async fn grafana_tokens(&self, browser: &Browser, user: &TestUser) -> Value {
        let code = self.grafana_code(browser, user).await;
        let resp = self
            .exchange(
                &code,
                GRAFANA_REDIRECT,
                None,
                ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "token: {}", resp.body);
        resp.json()
    }
}

/// `Authorization: Basic` with id and secret form-encoded first (RFC 6749 2.3.1).
/// An HTTP client for tests: redirects are not followed (tests read them), requests time out
/// after 20 s, and with `cookies` it keeps a cookie jar like a browser.
pub fn http_client(cookies: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// Loads `yaml` as the configuration and starts a provider on `listener`.
pub async fn start_provider(yaml: &str, listener: TcpListener, clock: Clock) -> Server {
    let config = Config::from_yaml_str(yaml)
        .unwrap_or_else(|e| panic!("test config does not load:\n{e}\n---\n{yaml}"));
    app::spawn(config, listener, clock)
        .await
        .expect("start the provider")
}

/// Unindented YAML lines indented as the `config:` block of an item of `connectors:`.
pub fn connector_config_block(lines: &str) -> String {
    lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("      {l}\n"))
        .collect()
}

pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

pub fn encode_form(pairs: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish()
}

/// Header and claims of a compact JWS, without verifying it.
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = || {
        let p = parts.next().expect("JWS part");
        let bytes = URL_SAFE_NO_PAD.decode(p).expect("base64url");
        serde_json::from_slice::<Value>(&bytes).expect("JSON")
    };
    let header = part();
    let claims = part();
    (header, claims)
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    let verifier = format!("verifier-{}", idbridge::oidc::random::token(40));
    let challenge = idbridge::oidc::random::sha256_b64(verifier.as_bytes());
    (verifier, challenge)
}

/// Decodes the HTML entities askama writes in attribute values.
pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of the first `<input name="NAME" value="...">` in `html`.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html_unescape(&html[start..end]))
}

/// The `action` of the form that contains `marker`.
pub fn form_action(html: &str, marker: &str) -> Option<String> {
    let at = html.find(marker)?;
    let form_start = html[..at].rfind("<form")?;
    let tag_end = html[form_start..].find('>')? + form_start;
    let tag = &html[form_start..tag_end];
    let start = tag.find("action=\"")? + "action=\"".len();
    let end = tag[start..].find('"')? + start;
    Some(html_unescape(&tag[start..end]))
}

/// Every hidden input of a page, in order (the form_post page).
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<input type=\"hidden\"") {
        let tag_end = rest[i..].find('>').map_or(rest.len(), |e| e + i);
        let tag = &rest[i..tag_end];
        let attr = |name: &str| {
            let m = format!("{name}=\"");
            tag.find(&m).map(|s| {
                let s = s + m.len();
                let e = tag[s..].find('"').map_or(tag.len(), |e| e + s);
                html_unescape(&tag[s..e])
            })
        };
        if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
            out.push((n, v));
        }
        rest = &rest[tag_end..];
    }
    out
}

/// What the user does on the consent screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consent {
    Approve,
    Deny,
}

/// A browser: its own cookie jar, redirects followed one by one by [`Browser::authorize`].
pub struct Browser {
    pub http: reqwest::Client,
    base: String,
}

/// Where an authorization run ended, and what the user was shown on the way.
#[derive(Debug)]
pub struct Flow {
    /// Login forms shown (each one was filled in when a user was given).
    pub login_forms: usize,
    /// Consent screens shown.
    pub consents: usize,
    /// The last response: a redirect away from the provider, or a page.
    pub end: Resp,
}

impl Flow {
    /// The redirect to the client; panics if the run did not end with one.
    pub fn redirect(&self) -> Url {
        assert!(
            self.end.status.is_redirection(),
            "expected a redirect to the client, got {}: {}",
            self.end.status,
            self.end.body
        );
        self.end.location().expect("Location")
    }

    /// The authorization response parameters, from the redirect's query or the form_post page.
    pub fn params(&self) -> HashMap<String, String> {
        if self.end.status.is_redirection() {
            self.redirect().query_pairs().into_owned().collect()
        } else {
            assert!(
                self.end.body.contains("id=\"form-post\""),
                "expected a redirect or a form_post page, got {}: {}",
                self.end.status,
                self.end.body
            );
            hidden_inputs(&self.end.body).into_iter().collect()
        }
    }

    /// The authorization code; panics (with the error) if there is none.
    pub fn code(&self) -> String {
        let params = self.params();
        params
            .get("code")
            .cloned()
            .unwrap_or_else(|| panic!("no code in the authorization response: {params:?}"))
    }
}

impl Browser {
    pub async fn get(&self, url: &str) -> Resp {
        self.get_with(url, &[]).await
    }

    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Resp::read(
            req.send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}")),
        )
        .await
    }

    pub async fn post_form(&self, url: &str, pairs: &[(&str, &str)]) -> Resp {
        let resp = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_form(pairs))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        Resp::read(resp).await
    }

    fn is_ours(&self, url: &Url) -> bool {
        url.as_str().starts_with(&format!("{}/", self.base))
    }

    /// Starts at `url` and follows the provider's redirects, filling in the login form as
    /// `user` and approving consent. Stops at a login form when `user` is `None`.
    pub async fn authorize(&self, url: &str, user: Option<&TestUser>) -> Flow {
        self.authorize_with(url, user, Consent::Approve).await
    }

    pub async fn authorize_with(
        &self,
        url: &str,
        user: Option<&TestUser>,
        consent: Consent,
    ) -> Flow {
        let mut login_forms = 0;
        let mut consents = 0;
        let mut resp = self.get(url).await;
        for _ in 0..12 {
            if resp.status.is_redirection() {
                let next = resp.location().expect("a redirect has a Location");
                if !self.is_ours(&next) {
                    break;
                }
                resp = self.get(next.as_str()).await;
                continue;
            }
            if resp.status == StatusCode::OK && resp.body.contains("name=\"password\"") {
                login_forms += 1;
                let Some(user) = user else { break };
                assert!(login_forms <= 2, "the login form keeps coming back");
                let action = form_action(&resp.body, "name=\"password\"").expect("form action");
                let csrf = input_value(&resp.body, "csrf").expect("csrf field");
                resp = self
                    .submit_login(&action, user.login, user.password, &csrf)
                    .await;
                continue;
            }
            if resp.status == StatusCode::OK && resp.body.contains("name=\"approval\"") {
                consents += 1;
                assert!(consents <= 2, "the consent screen keeps coming back");
                let action = form_action(&resp.body, "name=\"approval\"").expect("form action");
                let csrf = input_value(&resp.body, "csrf").expect("csrf field");
                let req = input_value(&resp.body, "req").expect("req field");
                let choice = match consent {
                    Consent::Approve => "approve",
                    Consent::Deny => "deny",
                };
                resp = self
                    .post_form(
                        &action,
                        &[("csrf", &csrf), ("req", &req), ("approval", choice)],
                    )
                    .await;
                continue;
            }
            break;
        }
        Flow {
            login_forms,
            consents,
            end: resp,
        }
    }

    /// Submits the password form at `action` with these credentials and CSRF token.
    pub async fn submit_login(
        &self,
        action: &str,
        login: &str,
        password: &str,
        csrf: &str,
    ) -> Resp {
        self.post_form(
            action,
            &[("login", login), ("password", password), ("csrf", csrf)],
        )
        .await
    }

    /// GET a page of the login flow and return its CSRF token and form action (the login form
    /// reached from an authorization URL, without submitting it).
    pub async fn open_login_form(&self, auth_url: &str) -> (String, String) {
        let flow = self.authorize(auth_url, None).await;
        assert_eq!(
            flow.login_forms, 1,
            "expected the login form: {}",
            flow.end.body
        );
        let action = form_action(&flow.end.body, "name=\"password\"").expect("form action");
        let csrf = input_value(&flow.end.body, "csrf").expect("csrf");
        (action, csrf)
    }
}

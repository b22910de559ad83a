//! Sign-in through the `oauth2` and `oidc` connectors, end to end.
//!
//! - `oauth2` against the in-process legacy IDaaS simulator ([`crate::idaas_sim`]);
//! - `oidc` against a real, independent OpenID provider: panva's `oidc-provider` run by Node
//!   from `tests/js` (skipped with a SKIP line when Node or `tests/js/node_modules` is missing;
//!   `cd tests/js && npm ci` installs it).
//!
//! Upstream failures are answered with 502 error pages on purpose, so these tests read
//! responses themselves rather than through the harness's "never 5xx" reader.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use idbridge::app::Server;
use idbridge::clock::Clock;
use idbridge::config::Config;
use idbridge::connectors::{ConnectorError, Identity, Kind};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, LOCATION};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use url::Url;

use crate::browser_e2e::js_dir;
use crate::harness::{basic, connector_config_block, decode_jwt, http_client, start_provider};
use crate::idaas_sim::{self, CLIENT_ID, CLIENT_SECRET, Fault, IdaasSim, USERINFO_PATH};

const APP_ID: &str = "app";
const APP_SECRET: &str = "app-secret";
const APP_REDIRECT: &str = "https://app.example.com/oauth/callback";
const SCOPES: &str = "openid profile email phone groups offline_access";

// ---------------------------------------------------------------------------------------------
// The provider, a browser, and the token endpoint.

struct Bridge {
    issuer: String,
    server: Server,
    http: reqwest::Client,
    _dir: TempDir,
}

#[derive(Debug)]
struct Page {
    status: StatusCode,
    url: Url,
    location: Option<Url>,
    body: String,
}

impl Page {
    fn assert_status(&self, status: u16) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status} at {}, got {}: {}",
            self.url,
            self.status,
            self.body
        );
    }

    /// The code in the redirect to the client.
    fn code(&self) -> String {
        let loc = self.location.as_ref().unwrap_or_else(|| {
            panic!(
                "expected a redirect to the client, got {} at {}: {}",
                self.status, self.url, self.body
            )
        });
        assert!(
            loc.as_str().starts_with(APP_REDIRECT),
            "redirected to {loc}"
        );
        let q: HashMap<_, _> = loc.query_pairs().into_owned().collect();
        assert_eq!(q.get("state").map(String::as_str), Some("app-state"));
        q.get("code")
            .cloned()
            .unwrap_or_else(|| panic!("no code in {loc}"))
    }
}

/// Starts the provider on `listener` with one connector: `kind` and its `config:` block
/// (unindented YAML).
async fn spawn_bridge(listener: TcpListener, kind: &str, config: &str) -> Bridge {
    let addr = listener.local_addr().expect("addr");
    let issuer = format!("http://{addr}");
    let dir = tempfile::tempdir().expect("temp dir");
    let block = connector_config_block(config);
    let yaml = format!(
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
  skipApprovalScreen: true
connectors:
  - type: {kind}
    id: upstream
    name: Upstream
    config:
{block}staticClients:
  - id: {APP_ID}
    name: App
    secret: {APP_SECRET}
    redirectURIs: [{APP_REDIRECT}]
"#,
        db = dir.path().join("idbridge.db").display(),
    );
    let server = start_provider(&yaml, listener, Clock::system()).await;
    Bridge {
        issuer,
        server,
        http: http_client(false),
        _dir: dir,
    }
}

fn browser() -> reqwest::Client {
    http_client(true)
}

async fn get(browser: &reqwest::Client, url: &Url) -> Page {
    let resp = browser
        .get(url.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| url.join(l).expect("Location resolves"));
    let body = resp.text().await.expect("body");
    Page {
        status,
        url: url.clone(),
        location,
        body,
    }
}

/// Follows redirects among the services on 127.0.0.1 (the provider and its upstream) from
/// `start` until the browser is sent elsewhere (the client) or shown a page. With `stop_at`,
/// also stops before visiting a URL that starts with it.
async fn run(browser: &reqwest::Client, start: &str, stop_at: Option<&str>) -> Page {
    let mut page = get(browser, &Url::parse(start).expect("start URL")).await;
    for _ in 0..20 {
        let Some(next) = page
            .location
            .clone()
            .filter(|_| page.status.is_redirection())
        else {
            return page;
        };
        if next.host_str() != Some("127.0.0.1")
            || stop_at.is_some_and(|s| next.as_str().starts_with(s))
        {
            return page;
        }
        page = get(browser, &next).await;
    }
    panic!("too many redirects; last at {}", page.url);
}

fn auth_url(bridge: &Bridge) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("client_id", APP_ID),
        ("redirect_uri", APP_REDIRECT),
        ("response_type", "code"),
        ("scope", SCOPES),
        ("state", "app-state"),
        ("nonce", "app-nonce"),
    ] {
        ser.append_pair(k, v);
    }
    format!("{}/auth?{}", bridge.issuer, ser.finish())
}

/// A login in a fresh browser, from the client's authorization request to its redirect (or
/// the page that stopped it).
async fn login(bridge: &Bridge) -> Page {
    run(&browser(), &auth_url(bridge), None).await
}

async fn token(bridge: &Bridge, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        ser.append_pair(k, v);
    }
    let resp = bridge
        .http
        .post(format!("{}/token", bridge.issuer))
        .header(AUTHORIZATION, basic(APP_ID, APP_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(ser.finish())
        .send()
        .await
        .expect("POST /token");
    let status = resp.status();
    let body = resp.text().await.expect("token body");
    let json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("token body: {body}"));
    (status, json)
}

/// Exchanges the code of a finished login: the token response.
async fn exchange(bridge: &Bridge, page: &Page) -> Value {
    let code = page.code();
    let (status, body) = token(
        bridge,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", APP_REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "code exchange: {body}");
    body
}

async fn refresh(bridge: &Bridge, refresh_token: &str) -> (StatusCode, Value) {
    token(
        bridge,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

fn id_token_claims(tokens: &Value) -> Value {
    decode_jwt(tokens["id_token"].as_str().expect("id_token")).1
}

async fn users(bridge: &Bridge) -> Vec<idbridge::storage::User> {
    bridge
        .server
        .provider
        .storage
        .list_users()
        .await
        .expect("list users")
}

// ---------------------------------------------------------------------------------------------
// `oauth2` against the legacy IDaaS simulator.

fn idaas_config(sim: &IdaasSim, extra: &str) -> String {
    format!(
        "authorizationURL: {url}/oauth/authorize
tokenURL: {url}/oauth/token
userInfoURL: {url}{USERINFO_PATH}
clientID: {CLIENT_ID}
clientSecret: \"{CLIENT_SECRET}\"
scopes: [read]
successPath: success
insecureSkipEmailVerified: true
timeout: 1s
claimMapping:
  userID: data.sub
  username: data.username
  name: data.nickname
  email: data.email
  phone: data.phone_number
  groups: data.groups
{extra}",
        url = sim.url
    )
}

async fn idaas_bridge(sim: &IdaasSim, extra: &str) -> Bridge {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    spawn_bridge(listener, "oauth2", &idaas_config(sim, extra)).await
}

#[tokio::test]
async fn idaas_login_maps_the_envelope_into_our_id_token() {
    let sim = IdaasSim::start().await;
    let bridge = idaas_bridge(&sim, "").await;
    let page = login(&bridge).await;
    let tokens = exchange(&bridge, &page).await;

    let claims = id_token_claims(&tokens);
    assert_eq!(claims["preferred_username"], "zhangsan");
    assert_eq!(claims["name"], "张三");
    assert_eq!(claims["email"], "zhangsan@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["phone_number"], "13800000000");
    assert_eq!(claims["groups"], json!(["developers", "研发部"]));
    assert_eq!(claims["nonce"], "app-nonce");

    let stored = users(&bridge).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].upstream_id, "idaas-user-10001");
    assert_eq!(stored[0].connector_id, "upstream");

    // What went upstream: our callback, our auth request id as state, PKCE, Basic auth.
    let q = sim.last_authorize();
    assert_eq!(q["redirect_uri"], format!("{}/callback", bridge.issuer));
    assert_eq!(q["scope"], "read");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("state"));
    assert_eq!(sim.last_client_auth(), Some("basic"));
}

#[tokio::test]
async fn idaas_client_credentials_in_the_form_body() {
    let sim = IdaasSim::start().await;
    sim.accept(idaas_sim::ClientAuth::Post);
    let bridge = idaas_bridge(&sim, "tokenAuthStyle: post\npkce: false\n").await;
    let page = login(&bridge).await;
    let tokens = exchange(&bridge, &page).await;
    assert_eq!(id_token_claims(&tokens)["preferred_username"], "zhangsan");
    assert_eq!(sim.last_client_auth(), Some("post"));
    assert!(!sim.last_authorize().contains_key("code_challenge"));
}

#[tokio::test]
async fn idaas_envelope_failure_is_refused_with_an_error_page() {
    let sim = IdaasSim::start().await;
    sim.fail_envelope("user.not.authorized", "用户无权访问该应用");
    let bridge = idaas_bridge(&sim, "").await;
    let page = login(&bridge).await;
    page.assert_status(502);
    // The page names the upstream's error code and request id for the help desk.
    assert!(page.body.contains("user.not.authorized"), "{}", page.body);
    assert!(page.body.contains("sim-req-1"), "{}", page.body);
    assert!(users(&bridge).await.is_empty(), "no user may be created");
}

#[tokio::test]
async fn idaas_faults_give_502_pages_and_no_user() {
    let sim = IdaasSim::start().await;
    let bridge = idaas_bridge(&sim, "").await;
    for (endpoint, fault) in [
        ("token", Fault::ServerError),
        ("token", Fault::Garbage),
        ("token", Fault::Slow),
        ("userinfo", Fault::ServerError),
        ("userinfo", Fault::Garbage),
        ("userinfo", Fault::Slow),
    ] {
        sim.set_token_fault(Fault::None);
        sim.set_userinfo_fault(Fault::None);
        match endpoint {
            "token" => sim.set_token_fault(fault),
            _ => sim.set_userinfo_fault(fault),
        }
        let started = std::time::Instant::now();
        let page = login(&bridge).await;
        assert_eq!(
            page.status.as_u16(),
            502,
            "{endpoint} {fault:?}: {}",
            page.body
        );
        // The connector's 1 s timeout, not the simulator's 5 s delay, ends a slow answer.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{endpoint} {fault:?} took {:?}",
            started.elapsed()
        );
    }
    assert!(users(&bridge).await.is_empty());
    // Once the upstream recovers, logins work again.
    sim.set_userinfo_fault(Fault::None);
    login(&bridge).await.code();
}

#[tokio::test]
async fn idaas_refresh_uses_the_upstream_refresh_token() {
    let sim = IdaasSim::start().await;
    let bridge = idaas_bridge(&sim, "").await;
    let tokens = exchange(&bridge, &login(&bridge).await).await;
    let rt = tokens["refresh_token"].as_str().expect("refresh_token");

    // A profile change upstream shows up at our next refresh.
    let mut renamed = idaas_sim::zhang_san();
    renamed["nickname"] = json!("张三丰");
    sim.set_user(renamed);
    let (status, body) = refresh(&bridge, rt).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        sim.state.refresh_grants.load(Ordering::SeqCst),
        1,
        "our refresh must refresh the upstream grant (the core must keep the login's Identity.connector_data for the first refresh token)"
    );
    assert_eq!(id_token_claims(&body)["name"], "张三丰");

    // The upstream forgets the grant: our refresh token dies with it.
    sim.revoke_refresh_tokens();
    let rt = body["refresh_token"].as_str().expect("refresh_token");
    let (status, body) = refresh(&bridge, rt).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

// ---------------------------------------------------------------------------------------------
// `oidc` against panva/oidc-provider.

const UP_CLIENT_ID: &str = "idbridge";
const UP_CLIENT_SECRET: &str = "idbridge-upstream-secret";

/// The Node upstream; killed when dropped.
struct NodeUpstream {
    child: Child,
    _stdin: ChildStdin,
    issuer: String,
    http: reqwest::Client,
}

impl Drop for NodeUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeUpstream {
    async fn control(&self, method: &str, path: &str) -> Value {
        let url = format!("{}/_control/{path}", self.issuer);
        let req = match method {
            "POST" => self.http.post(&url),
            _ => self.http.get(&url),
        };
        let resp = req.send().await.expect("control request");
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        resp.json().await.expect("control JSON")
    }

    async fn grants(&self, kind: &str) -> u64 {
        self.control("GET", "stats").await["grants"][kind]
            .as_u64()
            .unwrap_or(0)
    }
}

/// Whether Node and the npm packages are there; prints a SKIP line when not.
pub(crate) fn node_available(test: &str) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        eprintln!("SKIP {test}: `node` is not installed");
        return false;
    }
    if !js_dir().join("node_modules/oidc-provider").is_dir() {
        eprintln!("SKIP {test}: tests/js/node_modules is missing (run `cd tests/js && npm ci`)");
        return false;
    }
    true
}

/// Starts oidc-provider with one client whose redirect URI is `redirect_uri`, on `port` (0 for
/// any free port).
async fn start_upstream(redirect_uri: &str, port: u16) -> NodeUpstream {
    let mut command = Command::new("node");
    command
        .arg("upstream.mjs")
        .args([UP_CLIENT_ID, UP_CLIENT_SECRET, redirect_uri])
        .env("UPSTREAM_PORT", port.to_string());
    let (child, stdin, issuer) = spawn_node_upstream(command).await;
    NodeUpstream {
        child,
        _stdin: stdin,
        issuer,
        http: reqwest::Client::new(),
    }
}

/// Spawns `command` (Node running `tests/js/upstream.mjs`, with its arguments and environment)
/// and returns the process, its stdin (the upstream exits when it closes) and the issuer it
/// printed. stdout is drained for the process's whole life: oidc-provider logs there, and a
/// closed pipe would kill it.
pub(crate) async fn spawn_node_upstream(mut command: Command) -> (Child, ChildStdin, String) {
    let mut child = command
        .current_dir(js_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = line.strip_prefix("LISTENING ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(port.trim().to_string());
            }
        }
    });
    let port = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .expect("reader")
        .expect("oidc-provider starts within 30 s and prints its port");
    (child, stdin, format!("http://127.0.0.1:{port}"))
}

fn oidc_config(issuer: &str) -> String {
    format!(
        "issuer: {issuer}
clientID: {UP_CLIENT_ID}
clientSecret: {UP_CLIENT_SECRET}
scopes: [openid, profile, email, groups]
getUserInfo: true
offlineAccess: true
timeout: 5s
claimMapping:
  groups: idaas.groups
"
    )
}

/// Waits until the connector has loaded the upstream's OpenID configuration (discovery runs
/// in the background from start-up).
async fn wait_for_discovery(bridge: &Bridge) {
    let connector = bridge
        .server
        .provider
        .connectors
        .get("upstream")
        .expect("connector");
    let Kind::Callback(cb) = &connector.kind else {
        panic!("not a callback connector")
    };
    for _ in 0..100 {
        if cb
            .login_url("http://127.0.0.1/callback", "probe")
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the oidc connector never loaded the upstream's configuration");
}

#[tokio::test]
async fn oidc_login_through_a_real_openid_provider() {
    if !node_available("oidc_login_through_a_real_openid_provider") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let callback = format!("http://{}/callback", listener.local_addr().unwrap());
    let upstream = start_upstream(&callback, 0).await;
    let bridge = spawn_bridge(listener, "oidc", &oidc_config(&upstream.issuer)).await;
    wait_for_discovery(&bridge).await;

    let page = login(&bridge).await;
    let tokens = exchange(&bridge, &page).await;
    let claims = id_token_claims(&tokens);
    assert_eq!(claims["iss"], bridge.issuer);
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["name"], "Alice Liddell");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["groups"], json!(["dev", "ops"]));
    assert_ne!(claims["sub"], "alice-0001", "our subject is our own");
    let stored = users(&bridge).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].upstream_id, "alice-0001");
    assert_eq!(upstream.grants("authorization_code").await, 1);

    // Our refresh refreshes the upstream grant.
    let rt = tokens["refresh_token"].as_str().expect("refresh_token");
    let (status, body) = refresh(&bridge, rt).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        upstream.grants("refresh_token").await,
        1,
        "our refresh must refresh the upstream grant (the core must keep the login's Identity.connector_data for the first refresh token)"
    );
    assert_eq!(id_token_claims(&body)["groups"], json!(["dev", "ops"]));

    // The account goes away upstream: the upstream refuses the refresh and we revoke ours.
    upstream.control("POST", "disable?user=alice").await;
    let rt = body["refresh_token"].as_str().expect("refresh_token");
    let (status, body) = refresh(&bridge, rt).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

/// Drives the connector itself (no provider around it): login URL, the upstream's login,
/// the callback, and refreshes with the upstream refresh token it keeps.
#[tokio::test]
async fn oidc_connector_keeps_and_uses_the_upstream_refresh_token() {
    if !node_available("oidc_connector_keeps_and_uses_the_upstream_refresh_token") {
        return;
    }
    let callback = "http://127.0.0.1:9/callback";
    let upstream = start_upstream(callback, 0).await;
    let yaml = format!(
        "issuer: http://127.0.0.1:9\nstorage:\n  type: sqlite\n  config:\n    file: /tmp/unused.db\nconnectors:\n  - type: oidc\n    id: upstream\n    name: Upstream\n    config:\n{}",
        oidc_config(&upstream.issuer)
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    let connectors = idbridge::connectors::build(&Config::from_yaml_str(&yaml).expect("config"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let connector = connectors.get("upstream").expect("connector");
    let Kind::Callback(cb) = &connector.kind else {
        panic!("not a callback connector")
    };
    let refresher = connector.refresher.clone().expect("a refresh connector");

    upstream.control("POST", "login-as?user=bob").await;
    let mut attempt = 0;
    let redirect = loop {
        match cb.login_url(callback, "state-1").await {
            Ok(r) => break r,
            Err(ConnectorError::Unavailable(_)) if attempt < 100 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("login_url: {e}"),
        }
    };
    let sent = Url::parse(&redirect.url).expect("login URL");
    let q: HashMap<_, _> = sent.query_pairs().into_owned().collect();
    assert_eq!(q["scope"], "openid profile email groups offline_access");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("nonce"));

    let end = run(&browser(), &redirect.url, Some(callback)).await;
    let back = end.location.expect("the upstream redirects back");
    let params: HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(params["state"], "state-1");
    assert_eq!(params["iss"], upstream.issuer, "RFC 9207 issuer");

    // The login state is bound to this login: another login's data is refused.
    let other = cb.login_url(callback, "state-2").await.expect("login_url");
    let err = cb
        .handle_callback(callback, &params, other.data.as_deref())
        .await
        .expect_err("a foreign verifier and nonce must fail");
    assert!(
        matches!(err, ConnectorError::Upstream { ref code, .. } if code == "invalid_grant"),
        "{err:?}"
    );

    // The code was spent by the failed attempt (single use): log in again.
    let redirect = cb.login_url(callback, "state-3").await.expect("login_url");
    let end = run(&browser(), &redirect.url, Some(callback)).await;
    let params: HashMap<String, String> = end
        .location
        .expect("redirect back")
        .query_pairs()
        .into_owned()
        .collect();
    let identity: Identity = cb
        .handle_callback(callback, &params, redirect.data.as_deref())
        .await
        .expect("callback");
    assert_eq!(identity.upstream_id, "bob-0002");
    assert_eq!(identity.username.as_deref(), Some("bob"));
    assert_eq!(identity.display_name.as_deref(), Some("鲍勃"));
    // "true" as a string counts as verified.
    assert!(identity.email_verified);
    assert_eq!(identity.groups, ["研发部"]);
    let data = identity
        .connector_data
        .clone()
        .expect("upstream refresh token kept");
    assert!(data.contains("refreshToken"));

    let fresh = refresher.refresh(identity.clone()).await.expect("refresh");
    assert_eq!(fresh.upstream_id, "bob-0002");
    assert_eq!(fresh.groups, ["研发部"]);
    // Whether the upstream rotates its refresh token is its choice; one is kept either way.
    assert!(
        fresh
            .connector_data
            .as_deref()
            .is_some_and(|d| d.contains("refreshToken"))
    );
    assert_eq!(upstream.grants("refresh_token").await, 1);

    // Without an upstream refresh token there is nothing to ask: the identity is kept.
    let bare = Identity {
        connector_data: None,
        ..identity.clone()
    };
    assert_eq!(refresher.refresh(bare.clone()).await.expect("kept"), bare);

    upstream.control("POST", "disable?user=bob").await;
    let err = refresher
        .refresh(fresh)
        .await
        .expect_err("disabled upstream");
    assert!(matches!(err, ConnectorError::Denied(_)), "{err:?}");
}

#[tokio::test]
async fn oidc_upstream_down_at_start_recovers_without_a_restart() {
    if !node_available("oidc_upstream_down_at_start_recovers_without_a_restart") {
        return;
    }
    // A port with nothing behind it (yet).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().unwrap().port()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let callback = format!("http://{}/callback", listener.local_addr().unwrap());
    let issuer = format!("http://127.0.0.1:{port}");
    // Starting must not need the upstream.
    let bridge = spawn_bridge(listener, "oidc", &oidc_config(&issuer)).await;
    let page = login(&bridge).await;
    page.assert_status(502);

    let upstream = start_upstream(&callback, port).await;
    assert_eq!(upstream.issuer, issuer);
    // The failed login queued another discovery; the next ones succeed once it is done.
    let mut last = None;
    for _ in 0..50 {
        let page = login(&bridge).await;
        if page.status.is_redirection()
            && page
                .location
                .as_ref()
                .is_some_and(|l| l.as_str().starts_with(APP_REDIRECT))
        {
            let tokens = exchange(&bridge, &page).await;
            assert_eq!(id_token_claims(&tokens)["preferred_username"], "alice");
            return;
        }
        last = Some(page);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("logins never recovered: {last:?}");
}

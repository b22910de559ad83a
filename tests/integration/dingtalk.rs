//! Sign-in through DingTalk, end to end: the real provider on 127.0.0.1, the DingTalk
//! simulator as upstream, and a cookie-keeping browser that follows each redirect by hand.
//!
//! Upstream failures are answered with 502 error pages on purpose, so these tests read
//! responses themselves rather than through the harness's "never 5xx" reader.

use std::time::Duration;

use idbridge::app::Server;
use idbridge::clock::Clock;
use idbridge::config::Config;
use idbridge::connectors::{CallbackConnector, ConnectorError, Identity, Kind, RefreshConnector};
use idbridge::storage::User;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, LOCATION};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use url::Url;

use crate::dingtalk_sim::{APP_KEY, APP_SECRET, CORP_ID, DingTalkSim, Fault, SimUser};
use crate::harness::{basic, connector_config_block, decode_jwt, http_client, start_provider};

const KS_ID: &str = "kubesphere";
const KS_SECRET: &str = "ks+secret/with=special==";
const KS_REDIRECT: &str = "https://kubesphere.example.com/oauth/redirect/dingtalk";
/// KubeSphere's console sends the provider name as a constant state.
const KS_STATE: &str = "dingtalk";

const ZHANG: &str = "union-zhangsan-0001";
const LI: &str = "union-lisi-0002";
const OUTSIDER: &str = "union-outsider-0003";

/// The provider with one DingTalk connector pointed at the simulator.
struct App {
    issuer: String,
    server: Server,
    http: reqwest::Client,
    _dir: TempDir,
}

/// A response, read completely, whatever its status.
#[derive(Debug)]
struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Page {
    async fn read(resp: reqwest::Response) -> Page {
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.expect("read body");
        Page {
            status,
            location,
            body,
        }
    }
}

/// Starts the provider; `connector` holds extra keys of the connector's `config:` block, one
/// per line, unindented.
async fn spawn(sim: &DingTalkSim, connector: &str) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let issuer = format!("http://{addr}");
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = connector_config_block(connector);
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
  - type: dingtalk
    id: dingtalk
    name: DingTalk
    config:
      clientID: {APP_KEY}
      clientSecret: "{APP_SECRET}"
      loginURL: {sim}
      apiURL: {sim}
      oapiURL: {sim}
{extra}staticClients:
  - id: {KS_ID}
    name: KubeSphere
    secret: "{KS_SECRET}"
    redirectURIs: [{KS_REDIRECT}]
"#,
        db = dir.path().join("idbridge.db").display(),
        sim = sim.url,
    );
    let server = start_provider(&yaml, listener, Clock::system()).await;
    App {
        issuer,
        server,
        http: http_client(false),
        _dir: dir,
    }
}

fn browser() -> reqwest::Client {
    http_client(true)
}

async fn get(client: &reqwest::Client, url: &str) -> Page {
    Page::read(
        client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}")),
    )
    .await
}

/// Where a browser run went and where it ended.
struct Run {
    hops: Vec<String>,
    end: Page,
}

impl Run {
    /// The callback URL the simulator sent the browser to.
    fn callback(&self, app: &App) -> String {
        self.hops
            .iter()
            .find(|h| h.starts_with(&format!("{}/callback", app.issuer)))
            .cloned()
            .expect("the run went through /callback")
    }

    /// The authorization code sent to KubeSphere.
    fn code(&self) -> String {
        let loc = self.end.location.as_deref().unwrap_or_else(|| {
            panic!(
                "expected a redirect to the client, got {}: {}",
                self.end.status, self.end.body
            )
        });
        assert!(loc.starts_with(KS_REDIRECT), "redirected to {loc}");
        let url = Url::parse(loc).expect("client redirect URL");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q.get("state").map(String::as_str), Some(KS_STATE));
        q.get("code")
            .cloned()
            .unwrap_or_else(|| panic!("no code in {loc}"))
    }

    fn assert_page(&self, status: u16, needles: &[&str]) {
        assert_eq!(
            self.end.status.as_u16(),
            status,
            "expected {status}, got {} (hops {:?}): {}",
            self.end.status,
            self.hops,
            self.end.body
        );
        for n in needles {
            assert!(
                self.end.body.contains(n),
                "page lacks {n:?}: {}",
                self.end.body
            );
        }
    }
}

/// Follows redirects between the provider and the simulator from `url`.
async fn run(app: &App, sim: &DingTalkSim, browser: &reqwest::Client, url: &str) -> Run {
    let mut hops = vec![url.to_string()];
    let mut page = get(browser, url).await;
    for _ in 0..10 {
        let Some(next) = page
            .location
            .clone()
            .filter(|_| page.status.is_redirection())
        else {
            break;
        };
        let next = if next.starts_with('/') {
            format!("{}{next}", app.issuer)
        } else {
            next
        };
        if !(next.starts_with(&app.issuer) || next.starts_with(&sim.url)) {
            break;
        }
        hops.push(next.clone());
        page = get(browser, &next).await;
    }
    Run { hops, end: page }
}

fn auth_url(app: &App, scope: &str) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("scope", scope),
        ("state", KS_STATE),
    ] {
        ser.append_pair(k, v);
    }
    format!("{}/auth?{}", app.issuer, ser.finish())
}

const KS_SCOPES: &str = "openid profile email groups";

/// A KubeSphere login in a fresh browser, from /auth to the client redirect.
async fn login(app: &App, sim: &DingTalkSim, scope: &str) -> Run {
    run(app, sim, &browser(), &auth_url(app, scope)).await
}

async fn token(app: &App, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        ser.append_pair(k, v);
    }
    let resp = app
        .http
        .post(format!("{}/token", app.issuer))
        .header(AUTHORIZATION, basic(KS_ID, KS_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(ser.finish())
        .send()
        .await
        .expect("POST /token");
    let status = resp.status();
    let body = resp.text().await.expect("token body");
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("token answer ({e}): {body}")),
    )
}

async fn exchange(app: &App, code: &str) -> Value {
    let (status, body) = token(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", KS_REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "token: {body}");
    body
}

fn id_claims(tokens: &Value) -> Value {
    decode_jwt(tokens["id_token"].as_str().expect("id_token")).1
}

async fn users(app: &App) -> Vec<User> {
    app.server
        .provider
        .storage
        .list_users()
        .await
        .expect("list users")
}

fn is_label_safe_subject(sub: &str) -> bool {
    (1..=63).contains(&sub.len())
        && sub
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn is_rfc1123(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Zhang San: an employee in 研发部 and 平台组 with an organisation mailbox.
fn zhang() -> SimUser {
    let mut u = SimUser::employee(ZHANG, "Zhang San", "0138001", &[2, 3]);
    if let Some(m) = u.member.as_mut() {
        m.org_email = Some("zhangsan@corp.example.com".into());
    }
    u
}

/// Li Si: a member in 研发部 whose profile only has a nickname in Chinese.
fn li() -> SimUser {
    SimUser::employee(LI, "李四😎", "0138002", &[2])
}

async fn sim_with_users() -> DingTalkSim {
    let sim = DingTalkSim::start().await;
    sim.add_user(zhang());
    sim.add_user(li());
    sim.add_user(SimUser::outsider(OUTSIDER, "Wang Wu"));
    sim.login_as(ZHANG);
    sim
}

#[tokio::test]
async fn kubesphere_login_through_dingtalk_yields_label_safe_claims_and_department_groups() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "requireMembership: true\ngroups: names").await;
    let r = login(&app, &sim, KS_SCOPES).await;

    // The hops: our /auth, our /login/dingtalk, DingTalk's login page, our /callback.
    assert!(
        r.hops
            .iter()
            .any(|h| h.starts_with(&format!("{}/oauth2/auth?", sim.url)))
    );
    let upstream =
        Url::parse(r.hops.iter().find(|h| h.contains("/oauth2/auth?")).unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = upstream.query_pairs().into_owned().collect();
    assert_eq!(q["redirect_uri"], format!("{}/callback", app.issuer));
    assert_eq!(q["client_id"], APP_KEY);
    assert_eq!(q["scope"], "openid");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["response_type"], "code");
    assert!(r.callback(&app).contains("authCode="));

    let tokens = exchange(&app, &r.code()).await;
    assert!(tokens["access_token"].is_string());
    let claims = id_claims(&tokens);
    let sub = claims["sub"].as_str().unwrap();
    assert!(is_label_safe_subject(sub), "sub {sub:?}");
    assert!(claims.get("nonce").is_none());
    let username = claims["preferred_username"].as_str().unwrap();
    assert!(is_rfc1123(username), "preferred_username {username:?}");
    assert_eq!(username, username.to_lowercase());
    assert_eq!(username, "zhang-san");
    assert_eq!(claims["email"], "zhangsan@corp.example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Zhang San");
    assert_eq!(claims["groups"], serde_json::json!(["研发部", "平台组"]));

    // The code was exchanged with a JSON body, and the directory read with the app token.
    let exchanged = sim
        .requests()
        .into_iter()
        .find(|l| l.path == "/v1.0/oauth2/userAccessToken")
        .expect("code exchanged");
    assert_eq!(exchanged.method, "POST");
    assert!(exchanged.content_type.starts_with("application/json"));
    assert_eq!(sim.count("/v1.0/contact/users/me"), 1);
    assert_eq!(sim.count("/topapi/user/getbyunionid"), 1);
    assert_eq!(sim.count("/topapi/v2/user/get"), 1);
    assert_eq!(sim.count("/topapi/v2/department/get"), 2);

    let stored = users(&app).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].upstream_id, ZHANG);
    assert_eq!(stored[0].phone.as_deref(), Some("+86 18900000000"));
    assert_eq!(
        stored[0].picture.as_deref(),
        Some("https://static.dingtalk.example/union-zhangsan-0001.png")
    );
}

#[tokio::test]
async fn both_callback_spellings_are_accepted() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "groups: ids").await;
    let r = login(&app, &sim, KS_SCOPES).await;
    assert!(r.callback(&app).contains("authCode="));
    let claims = id_claims(&exchange(&app, &r.code()).await);
    assert_eq!(claims["groups"], serde_json::json!(["2", "3"]));

    sim.callback_param("code");
    sim.login_as(LI);
    let r = login(&app, &sim, KS_SCOPES).await;
    let callback = r.callback(&app);
    assert!(
        callback.contains("?code=") && !callback.contains("authCode"),
        "{callback}"
    );
    let claims = id_claims(&exchange(&app, &r.code()).await);
    // A nickname with no Latin letters still gives a valid username.
    let username = claims["preferred_username"].as_str().unwrap();
    assert!(is_rfc1123(username), "{username:?}");
    assert_eq!(claims["name"], "李四😎");
    assert_eq!(users(&app).await.len(), 2);
}

#[tokio::test]
async fn an_organisation_outside_corp_ids_is_refused() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "corpIDs: [dingsomeotherorg]").await;
    let r = login(&app, &sim, KS_SCOPES).await;
    let upstream = r.hops.iter().find(|h| h.contains("/oauth2/auth?")).unwrap();
    assert!(upstream.contains("scope=openid%20corpid"), "{upstream}");
    r.assert_page(403, &[CORP_ID]);
    assert!(users(&app).await.is_empty());

    // The allowed organisation gets in.
    let app = spawn(&sim, &format!("corpIDs: [dingsomeotherorg, {CORP_ID}]")).await;
    let r = login(&app, &sim, KS_SCOPES).await;
    exchange(&app, &r.code()).await;
}

#[tokio::test]
async fn a_non_member_is_refused_and_gets_no_user_or_session() {
    let sim = sim_with_users().await;
    sim.login_as(OUTSIDER);
    let app = spawn(&sim, "requireMembership: true").await;
    let b = browser();
    let r = run(&app, &sim, &b, &auth_url(&app, KS_SCOPES)).await;
    r.assert_page(403, &["60121", "SIMREQ"]);
    assert!(users(&app).await.is_empty());

    // No session was started: the next authorization goes to the login again.
    let again = get(&b, &auth_url(&app, KS_SCOPES)).await;
    assert!(again.status.is_redirection());
    let loc = again.location.unwrap();
    assert!(loc.contains("/login/dingtalk?req="), "{loc}");
}

#[tokio::test]
async fn without_require_membership_an_outsider_signs_in_without_groups() {
    let sim = sim_with_users().await;
    sim.login_as(OUTSIDER);
    sim.update_user(OUTSIDER, |u| u.email = Some("wangwu@example.com".into()));
    let app = spawn(&sim, "groups: names").await;
    let r = login(&app, &sim, KS_SCOPES).await;
    let claims = id_claims(&exchange(&app, &r.code()).await);
    assert_eq!(claims["groups"], serde_json::json!([]));
    assert_eq!(claims["email"], "wangwu@example.com");
    assert_eq!(claims["email_verified"], false);
}

#[tokio::test]
async fn external_contacts_and_inactive_members_are_refused() {
    let sim = sim_with_users().await;
    sim.update_user(ZHANG, |u| {
        if let Some(m) = u.member.as_mut() {
            m.contact_type = 1;
        }
    });
    let app = spawn(&sim, "requireMembership: true").await;
    login(&app, &sim, KS_SCOPES)
        .await
        .assert_page(403, &["外部联系人"]);

    sim.update_user(ZHANG, |u| {
        if let Some(m) = u.member.as_mut() {
            m.contact_type = 0;
            m.active = false;
        }
    });
    login(&app, &sim, KS_SCOPES)
        .await
        .assert_page(403, &["activated"]);
    assert!(users(&app).await.is_empty());
}

#[tokio::test]
async fn the_app_token_is_cached_and_renewed_once_when_refused() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "requireMembership: true\ngroups: names").await;
    exchange(&app, &login(&app, &sim, KS_SCOPES).await.code()).await;
    sim.login_as(LI);
    exchange(&app, &login(&app, &sim, KS_SCOPES).await.code()).await;
    assert_eq!(
        sim.count("/v1.0/oauth2/accessToken"),
        1,
        "two logins, one app token"
    );
    // 研发部 was looked up once, for the first login.
    assert_eq!(sim.count("/topapi/v2/department/get"), 2);

    // DingTalk drops the token early: the next lookup fails with 88/40014, a new token is
    // fetched once, and the login goes through.
    sim.invalidate_app_tokens();
    sim.login_as(ZHANG);
    exchange(&app, &login(&app, &sim, KS_SCOPES).await.code()).await;
    assert_eq!(sim.count("/v1.0/oauth2/accessToken"), 2);
    assert_eq!(sim.count("/topapi/user/getbyunionid"), 4);
}

#[tokio::test]
async fn refresh_rechecks_membership_upstream() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "requireMembership: true\ngroups: names").await;
    let scope = "openid profile email groups offline_access";
    let tokens = exchange(&app, &login(&app, &sim, scope).await.code()).await;
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();

    // A department rename shows up at the next refresh.
    sim.update_user(ZHANG, |u| {
        if let Some(m) = u.member.as_mut() {
            m.dept_ids = vec![2];
        }
    });
    let (status, body) = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(id_claims(&body)["groups"], serde_json::json!(["研发部"]));
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let lookups = sim.count("/topapi/user/getbyunionid");

    // An upstream outage is temporary: the refresh token survives it.
    sim.fail_next(1, Fault::Status500);
    let (status, body) = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    let (status, body) = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    assert!(sim.count("/topapi/user/getbyunionid") > lookups);

    // The user leaves the organisation: the next refresh fails and revokes.
    sim.remove_member(ZHANG);
    let (status, body) = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn refresh_without_membership_checks_keeps_the_identity() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "").await;
    let tokens = exchange(
        &app,
        &login(&app, &sim, "openid profile email offline_access")
            .await
            .code(),
    )
    .await;
    let refresh = tokens["refresh_token"].as_str().expect("refresh_token");
    let (status, body) = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(id_claims(&body)["preferred_username"], "zhang-san");
    assert_eq!(
        sim.count("/v1.0/oauth2/accessToken"),
        0,
        "no directory use configured"
    );
}

#[tokio::test]
async fn legacy_qr_login_signs_its_request() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "legacy: true\nrequireMembership: true\ngroups: names").await;
    let r = login(&app, &sim, KS_SCOPES).await;
    let qr = r
        .hops
        .iter()
        .find(|h| h.contains("/connect/qrconnect?"))
        .expect("went to the QR login page");
    let q: std::collections::HashMap<_, _> =
        Url::parse(qr).unwrap().query_pairs().into_owned().collect();
    assert_eq!(q["appid"], APP_KEY);
    assert_eq!(q["scope"], "snsapi_login");
    assert_eq!(q["redirect_uri"], format!("{}/callback", app.issuer));
    let claims = id_claims(&exchange(&app, &r.code()).await);
    assert_eq!(claims["groups"], serde_json::json!(["研发部", "平台组"]));
    assert_eq!(claims["email"], "zhangsan@corp.example.com");

    // The simulator checked the signature: the request carried it URL-encoded.
    let signed = sim
        .requests()
        .into_iter()
        .find(|l| l.path == "/sns/getuserinfo_bycode")
        .expect("legacy user info call");
    assert!(signed.query.contains(&format!("accessKey={APP_KEY}")));
    assert!(signed.query.contains("signature="));
    assert_eq!(sim.count("/v1.0/oauth2/userAccessToken"), 0);

    // A non-member is refused in legacy mode too.
    sim.login_as(OUTSIDER);
    login(&app, &sim, KS_SCOPES)
        .await
        .assert_page(403, &["60121"]);
}

#[tokio::test]
async fn upstream_faults_give_an_error_page_and_no_user() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "timeout: 1s").await;

    sim.fail_path("/v1.0/oauth2/userAccessToken", 1, Fault::Status500);
    login(&app, &sim, KS_SCOPES).await.assert_page(502, &[]);

    sim.fail_path(
        "/v1.0/contact/users/me",
        1,
        Fault::Sleep(Duration::from_secs(3)),
    );
    let started = std::time::Instant::now();
    login(&app, &sim, KS_SCOPES).await.assert_page(502, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout was not applied"
    );

    sim.fail_path("/v1.0/oauth2/userAccessToken", 1, Fault::Garbage);
    login(&app, &sim, KS_SCOPES).await.assert_page(502, &[]);

    assert!(users(&app).await.is_empty());

    // Once the upstream recovers, logins work again.
    exchange(&app, &login(&app, &sim, KS_SCOPES).await.code()).await;
}

#[tokio::test]
async fn directory_faults_give_an_error_page() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "requireMembership: true").await;
    // The app token is fetched first (nothing cached yet), then the member looked up.
    sim.fail_path("/v1.0/oauth2/accessToken", 1, Fault::Status500);
    login(&app, &sim, KS_SCOPES).await.assert_page(502, &[]);
    sim.fail_path("/topapi/user/getbyunionid", 1, Fault::Garbage);
    login(&app, &sim, KS_SCOPES).await.assert_page(502, &[]);
    assert!(users(&app).await.is_empty());
}

#[tokio::test]
async fn upstream_error_codes_are_shown() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "").await;
    // The code is used once by the simulator, then replayed by hand: DingTalk's 400 reaches
    // the page with its code and request id.
    let b = browser();
    let first = run(&app, &sim, &b, &auth_url(&app, KS_SCOPES)).await;
    let callback = first.callback(&app);
    first.code();
    let code = Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "authCode")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let b2 = browser();
    let start = get(&b2, &auth_url(&app, KS_SCOPES)).await;
    let to_sim = get(&b2, &absolute(&app, &start.location.unwrap())).await;
    let upstream = Url::parse(&to_sim.location.unwrap()).unwrap();
    let state = upstream
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let replay = format!("{}/callback?authCode={code}&state={state}", app.issuer);
    let page = get(&b2, &replay).await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.body);
    assert!(page.body.contains("InvalidAuthCode"), "{}", page.body);
    assert!(page.body.contains("SIMREQ"), "{}", page.body);
}

fn absolute(app: &App, loc: &str) -> String {
    if loc.starts_with('/') {
        format!("{}{loc}", app.issuer)
    } else {
        loc.to_string()
    }
}

#[tokio::test]
async fn a_replayed_callback_is_refused() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "").await;
    let b = browser();
    let r = run(&app, &sim, &b, &auth_url(&app, KS_SCOPES)).await;
    r.code();
    let again = get(&b, &r.callback(&app)).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    // The replay never reached DingTalk.
    assert_eq!(sim.count("/v1.0/oauth2/userAccessToken"), 1);
}

#[tokio::test]
async fn a_callback_without_state_is_refused() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "").await;
    let b = browser();
    // Start a login so the browser has a pending upstream login, then drop the state.
    let start = get(&b, &auth_url(&app, KS_SCOPES)).await;
    let to_sim = get(&b, &absolute(&app, &start.location.unwrap())).await;
    assert!(to_sim.location.unwrap().starts_with(&sim.url));
    let page = get(&b, &format!("{}/callback?authCode=whatever", app.issuer)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert_eq!(sim.count("/v1.0/oauth2/userAccessToken"), 0);
    assert!(users(&app).await.is_empty());
}

#[tokio::test]
async fn access_denied_upstream_gives_an_access_denied_page() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "").await;
    sim.next_login_error("access_denied");
    let r = login(&app, &sim, KS_SCOPES).await;
    r.assert_page(403, &["access_denied"]);
    assert_eq!(sim.count("/v1.0/oauth2/userAccessToken"), 0);
    assert!(users(&app).await.is_empty());
}

#[tokio::test]
async fn a_nick_of_admin_never_becomes_preferred_username_admin() {
    let sim = sim_with_users().await;
    sim.add_user(SimUser::employee(
        "union-admin-0009",
        "admin",
        "0138009",
        &[2],
    ));
    sim.login_as("union-admin-0009");
    let app = spawn(&sim, "").await;
    let claims = id_claims(&exchange(&app, &login(&app, &sim, KS_SCOPES).await.code()).await);
    let username = claims["preferred_username"].as_str().unwrap();
    assert_ne!(username, "admin");
    assert!(is_rfc1123(username), "{username:?}");
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let yaml = "issuer: https://sso.example.com\nconnectors:\n- type: dingtalk\n  id: dt\n  name: DingTalk\n  config:\n    clientID: a\n    clientSecret: b\n    clientSecretFile: /nonexistent\n    corpIds: [x]\n";
    let config = Config::from_yaml_str(yaml).expect("the YAML itself is fine");
    let errors: Vec<String> = idbridge::connectors::validate(&config)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("connectors[0].config.corpIds: unknown key"),
        "{errors:?}"
    );
    let fixed = yaml.replace("    corpIds: [x]\n", "");
    let config = Config::from_yaml_str(&fixed).unwrap();
    let errors: Vec<String> = idbridge::connectors::validate(&config)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("connectors[0].config.clientSecret: set only one"),
        "{errors:?}"
    );
}

/// A DingTalk code for the simulator's current user, fetched without the provider.
async fn upstream_code(sim: &DingTalkSim, app: &App) -> String {
    let url = format!(
        "{}/oauth2/auth?client_id={APP_KEY}&response_type=code&scope=openid&state=s&prompt=consent&redirect_uri={}",
        sim.url,
        url::form_urlencoded::byte_serialize(format!("{}/callback", app.issuer).as_bytes())
            .collect::<String>()
    );
    let page = get(&browser(), &url).await;
    let loc = Url::parse(&page.location.expect("redirect back")).unwrap();
    loc.query_pairs()
        .find(|(k, _)| k == "authCode")
        .map(|(_, v)| v.into_owned())
        .expect("authCode")
}

fn dingtalk_connector(
    app: &App,
) -> (
    std::sync::Arc<dyn CallbackConnector>,
    std::sync::Arc<dyn RefreshConnector>,
) {
    let c = app
        .server
        .provider
        .connectors
        .get("dingtalk")
        .expect("dingtalk connector")
        .clone();
    let Kind::Callback(cb) = c.kind else {
        panic!("dingtalk is a callback connector")
    };
    (cb, c.refresher.expect("dingtalk refreshes"))
}

#[tokio::test]
async fn connector_refresh_exchanges_the_upstream_refresh_token() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "requireMembership: true\ngroups: names").await;
    let (cb, refresher) = dingtalk_connector(&app);
    let params = [("authCode".to_string(), upstream_code(&sim, &app).await)]
        .into_iter()
        .collect();
    let identity = cb
        .handle_callback(&format!("{}/callback", app.issuer), &params, None)
        .await
        .expect("login");
    let data: Value = serde_json::from_str(identity.connector_data.as_deref().unwrap()).unwrap();
    assert!(data["refreshToken"].is_string(), "{data}");
    assert_eq!(identity.groups, ["研发部", "平台组"]);

    let fresh = refresher.refresh(identity.clone()).await.expect("refresh");
    assert_eq!(sim.count("/v1.0/oauth2/userAccessToken"), 2);
    assert_eq!(sim.count("/v1.0/contact/users/me"), 2);
    assert_eq!(fresh.upstream_id, ZHANG);
    // The simulator rotates refresh tokens: the new one is kept, the old one is dead.
    assert_ne!(fresh.connector_data, identity.connector_data);
    assert!(matches!(
        refresher.refresh(identity.clone()).await,
        Err(ConnectorError::Upstream { code, .. }) if code == "InvalidRefreshToken"
    ));

    // An outage is temporary.
    sim.fail_path("/v1.0/oauth2/userAccessToken", 1, Fault::Status500);
    assert!(matches!(
        refresher.refresh(fresh.clone()).await,
        Err(ConnectorError::Unavailable(_))
    ));
    let fresh = refresher
        .refresh(fresh)
        .await
        .expect("refresh after the outage");

    // Leaving the organisation ends it.
    sim.remove_member(ZHANG);
    assert!(matches!(
        refresher.refresh(fresh.clone()).await,
        Err(ConnectorError::DeniedUpstream { code, .. }) if code == "60121"
    ));

    // So does withdrawing the app's authorisation at DingTalk.
    sim.login_as(LI);
    let params = [("authCode".to_string(), upstream_code(&sim, &app).await)]
        .into_iter()
        .collect();
    let li = cb
        .handle_callback(&format!("{}/callback", app.issuer), &params, None)
        .await
        .expect("login");
    sim.revoke_user_grants(LI);
    assert!(matches!(
        refresher.refresh(li).await,
        Err(ConnectorError::Upstream { code, .. }) if code == "InvalidRefreshToken"
    ));
}

#[tokio::test]
async fn connector_refresh_in_legacy_mode_asks_the_directory() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "legacy: true\nrequireMembership: true").await;
    let (_, refresher) = dingtalk_connector(&app);
    let identity = Identity {
        upstream_id: ZHANG.into(),
        username: Some("zhang-san".into()),
        ..Identity::default()
    };
    let fresh = refresher.refresh(identity.clone()).await.expect("member");
    assert_eq!(fresh.email.as_deref(), Some("zhangsan@corp.example.com"));
    assert!(fresh.email_verified);
    assert_eq!(sim.count("/v1.0/oauth2/userAccessToken"), 0);
    sim.remove_member(ZHANG);
    assert!(matches!(
        refresher.refresh(identity).await,
        Err(ConnectorError::DeniedUpstream { .. })
    ));
}

/// End to end: a refresh of our tokens renews the DingTalk token too, so withdrawing the
/// app's authorisation at DingTalk ends the user's refresh tokens here.
#[tokio::test]
async fn refresh_of_our_tokens_uses_the_upstream_refresh_token() {
    let sim = sim_with_users().await;
    let app = spawn(&sim, "").await;
    let scope = "openid profile email offline_access";
    let tokens = exchange(&app, &login(&app, &sim, scope).await.code()).await;
    let refresh = tokens["refresh_token"].as_str().expect("refresh_token");
    let (status, body) = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sim.count("/v1.0/oauth2/userAccessToken"), 2);
    sim.revoke_user_grants(ZHANG);
    let refresh = body["refresh_token"].as_str().unwrap();
    let (status, body) = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

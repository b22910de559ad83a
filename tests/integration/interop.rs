//! Interoperability with a certified relying-party library, and the refresh, introspection,
//! logout and device-flow rules that such libraries rely on.
//!
//! `openid_client_6_runs_every_flow` runs `tests/js/interop.mjs`: panva's openid-client 6
//! against the real provider (skipped with a SKIP line when Node or `tests/js/node_modules` is
//! missing, a failure under `IDBRIDGE_TEST_REQUIRE_ALL`). The other tests speak HTTP directly.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::browser_e2e::{js_tools_available, run_node, stdout_lines};
use crate::harness::{
    ALICE, Browser, ClientAuth, Consent, GRAFANA_ID, GRAFANA_REDIRECT, GRAFANA_SECRET, KS_ID,
    KS_LOGOUT_REDIRECT, KS_REDIRECT, KS_SECRET, Resp, TestApp, decode_jwt, form_action,
    input_value,
};

const INTEROP_ID: &str = "interop";
const INTEROP_SECRET: &str = "interop-secret+/=";
const INTEROP_REDIRECT: &str = "http://127.0.0.1:9/interop/callback";
const INTEROP_LOGOUT_REDIRECT: &str = "http://127.0.0.1:9/interop/signed-out";
const DEVICE_ID: &str = "interop-device";

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The default test provider plus a confidential client allowed every grant and a public
/// device client; no consent screen.
async fn spawn(extra_yaml: &str) -> TestApp {
    TestApp::builder()
        .client(&format!(
            "- id: {INTEROP_ID}
  name: Interop
  secret: \"{INTEROP_SECRET}\"
  skipApproval: true
  redirectURIs: [{INTEROP_REDIRECT}]
  postLogoutRedirectURIs: [{INTEROP_LOGOUT_REDIRECT}]
  grantTypes: [authorization_code, refresh_token, client_credentials, {DEVICE_GRANT}]"
        ))
        .client(&format!(
            "- id: {DEVICE_ID}
  name: Interop device
  public: true
  grantTypes: [{DEVICE_GRANT}, refresh_token]"
        ))
        .yaml(extra_yaml)
        .spawn()
        .await
}

#[tokio::test]
async fn openid_client_6_runs_every_flow() {
    let test = "interop::openid_client_6_runs_every_flow";
    if !js_tools_available(test, &["openid-client"], false) {
        return;
    }
    let app = spawn("").await;
    let config = json!({
        "client": {
            "id": INTEROP_ID,
            "secret": INTEROP_SECRET,
            "redirectUri": INTEROP_REDIRECT,
            "postLogoutRedirectUri": INTEROP_LOGOUT_REDIRECT,
        },
        "deviceClient": {"id": DEVICE_ID},
        "user": {"login": ALICE.login, "password": ALICE.password, "email": ALICE.email},
    });
    let output = run_node(
        "interop.mjs",
        &[app.issuer.clone(), config.to_string()],
        &[],
    )
    .await;
    let lines = stdout_lines(&output);
    assert!(
        output.status.success(),
        "interop.mjs failed ({}):\n{}\n{}",
        output.status,
        lines.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    for step in [
        "discovery",
        "authorization code grant",
        "userinfo",
        "refresh token grant rotates the refresh token",
        "token introspection",
        "a rotated refresh token is refused and revokes its family",
        "token revocation",
        "client credentials grant",
        "device authorization grant",
        "RP-initiated logout",
    ] {
        let line = format!("PASS {step}");
        assert!(lines.contains(&line), "no {line:?} in {lines:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Refresh token families.

async fn refresh(app: &TestApp, token: &str, auth: ClientAuth<'_>) -> Resp {
    app.token(
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
        auth,
    )
    .await
}

const GRAFANA: ClientAuth<'static> = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);
const KUBESPHERE: ClientAuth<'static> = ClientAuth::Basic(KS_ID, KS_SECRET);

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_family() {
    let app = spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let first = text(&tokens, "refresh_token");

    let resp = refresh(&app, first, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let rotated = resp.json();
    let second = text(&rotated, "refresh_token");
    assert_ne!(first, second, "the refresh token was not rotated");

    // The old token comes back: someone holds a copy. Both holders lose the family.
    refresh(&app, first, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
    refresh(&app, second, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // So do the access tokens issued from it.
    let at = app
        .introspect(text(&rotated, "access_token"), GRAFANA)
        .await;
    assert_eq!(at, json!({"active": false}));
    let at = app.introspect(text(&tokens, "access_token"), GRAFANA).await;
    assert_eq!(at, json!({"active": false}));
    let info = app.userinfo(Some(text(&rotated, "access_token"))).await;
    assert_eq!(info.status, StatusCode::UNAUTHORIZED, "{}", info.body);
}

#[tokio::test]
async fn a_revoked_family_refuses_its_refresh_tokens() {
    let app = spawn("").await;
    let browser = app.browser();

    // Revoking the refresh token ends the family.
    let tokens = app.grafana_tokens(&browser, &ALICE).await;
    let rt = text(&tokens, "refresh_token");
    let resp = app.post("/revoke", &[("token", rt)], GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    refresh(&app, rt, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(app.introspect(rt, GRAFANA).await, json!({"active": false}));

    // Revoking an access token ends its grant, refresh tokens included.
    let tokens = app.grafana_tokens(&browser, &ALICE).await;
    let rt = text(&tokens, "refresh_token");
    let resp = refresh(&app, rt, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let rotated = resp.json();
    let resp = app
        .post(
            "/revoke",
            &[
                ("token", text(&rotated, "access_token")),
                ("token_type_hint", "access_token"),
            ],
            GRAFANA,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    refresh(&app, text(&rotated, "refresh_token"), GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");

    // Another client cannot revoke Grafana's family: the request is answered 200 and ignored.
    let tokens = app.grafana_tokens(&browser, &ALICE).await;
    let rt = text(&tokens, "refresh_token");
    let resp = app.post("/revoke", &[("token", rt)], KUBESPHERE).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = refresh(&app, rt, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test]
async fn introspection_shows_access_tokens_to_any_client_but_refresh_tokens_only_to_their_own() {
    let app = spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let at = text(&tokens, "access_token");
    let rt = text(&tokens, "refresh_token");

    // A resource server introspects the access tokens of the clients it serves.
    let seen = app.introspect(at, KUBESPHERE).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["client_id"], GRAFANA_ID);
    assert_eq!(seen["username"], ALICE.login);
    assert!(seen.get("gid").is_none(), "internal claim leaked: {seen}");

    // A refresh token is a credential of its client alone.
    assert_eq!(
        app.introspect(rt, KUBESPHERE).await,
        json!({"active": false})
    );
    let own = app.introspect(rt, GRAFANA).await;
    assert_eq!(own["active"], true, "{own}");
    assert_eq!(own["token_type"], "refresh_token");

    // Public clients may not introspect at all, and nobody may without credentials.
    let resp = app
        .post("/introspect", &[("token", at)], ClientAuth::Public("cli"))
        .await;
    assert!(
        resp.status.is_client_error(),
        "a public client introspected: {}",
        resp.body
    );
    let resp = app
        .post("/introspect", &[("token", at)], ClientAuth::None)
        .await;
    resp.assert_oauth_error(401, "invalid_client");
}

// ---------------------------------------------------------------------------------------------
// RP-initiated logout.

/// Signs `user` in at KubeSphere (consent included) and returns the ID token.
async fn kubesphere_id_token(app: &TestApp, browser: &Browser) -> String {
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid profile email"),
        ("state", "idbridge"),
    ]);
    let code = browser.authorize(&url, Some(&ALICE)).await.code();
    let resp = app.exchange(&code, KS_REDIRECT, None, KUBESPHERE).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    text(&resp.json(), "id_token").to_string()
}

fn logout_url(app: &TestApp, params: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    format!("{}/logout?{}", app.base, ser.finish())
}

#[tokio::test]
async fn logout_refuses_an_unregistered_post_logout_redirect_uri() {
    let app = spawn("").await;
    let browser = app.browser();
    let id_token = kubesphere_id_token(&app, &browser).await;

    for params in [
        vec![
            ("client_id", KS_ID),
            (
                "post_logout_redirect_uri",
                "https://attacker.example.com/login",
            ),
        ],
        vec![
            ("id_token_hint", id_token.as_str()),
            (
                "post_logout_redirect_uri",
                "https://attacker.example.com/login",
            ),
        ],
        // Registered, but for another client.
        vec![
            ("client_id", GRAFANA_ID),
            ("post_logout_redirect_uri", KS_LOGOUT_REDIRECT),
        ],
        // Close is not equal: a trailing slash and a query make other URIs.
        vec![
            ("client_id", KS_ID),
            (
                "post_logout_redirect_uri",
                &format!("{KS_LOGOUT_REDIRECT}/"),
            ),
        ],
        vec![
            ("client_id", KS_ID),
            (
                "post_logout_redirect_uri",
                &format!("{KS_LOGOUT_REDIRECT}?next=x"),
            ),
        ],
        // No client named at all: nothing to check the URI against.
        vec![("post_logout_redirect_uri", KS_LOGOUT_REDIRECT)],
    ] {
        let resp = browser.get(&logout_url(&app, &params)).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{params:?}: {}",
            resp.body
        );
        assert!(resp.location().is_none(), "{params:?} redirected");
        // The language links repeat the request; nothing may point at the refused URI itself.
        assert!(
            !resp.body.contains("href=\"https://attacker.example.com"),
            "{params:?}: the refused URI is offered as a link"
        );
    }

    // The registered URI works, and the session really ends.
    let resp = browser
        .get(&logout_url(
            &app,
            &[
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", KS_LOGOUT_REDIRECT),
                ("state", "s1"),
            ],
        ))
        .await;
    assert!(resp.status.is_redirection(), "{}", resp.body);
    assert_eq!(
        resp.location().expect("Location").as_str(),
        format!("{KS_LOGOUT_REDIRECT}?state=s1")
    );
    let url = app.auth_url(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "after-logout"),
    ]);
    let flow = browser.authorize(&url, None).await;
    assert_eq!(flow.login_forms, 1, "still signed in after logout");
}

// ---------------------------------------------------------------------------------------------
// The device authorization grant (RFC 8628).

struct DeviceStart {
    device_code: String,
    user_code: String,
    interval: i64,
}

async fn start_device(app: &TestApp) -> DeviceStart {
    let resp = app
        .post(
            "/device/code",
            &[("scope", "openid profile offline_access")],
            ClientAuth::Public(DEVICE_ID),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let v = resp.json();
    DeviceStart {
        device_code: text(&v, "device_code").to_string(),
        user_code: text(&v, "user_code").to_string(),
        interval: v["interval"].as_i64().expect("interval"),
    }
}

async fn poll(app: &TestApp, device_code: &str) -> Resp {
    app.token(
        &[("grant_type", DEVICE_GRANT), ("device_code", device_code)],
        ClientAuth::Public(DEVICE_ID),
    )
    .await
}

/// The seconds named in a `slow_down` description ("poll at most every N seconds").
fn interval_in(resp: &Resp) -> i64 {
    let desc = resp.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    desc.split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no interval in {desc:?}"))
}

#[tokio::test]
async fn an_expired_device_code_gives_expired_token() {
    let app = spawn("expiry:\n  deviceRequests: 2m").await;
    let device = start_device(&app).await;
    poll(&app, &device.device_code)
        .await
        .assert_oauth_error(400, "authorization_pending");
    app.clock.advance(121);
    poll(&app, &device.device_code)
        .await
        .assert_oauth_error(400, "expired_token");

    // The user can no longer approve it either.
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    let page = browser.get(&app.url("/device")).await;
    let action = form_action(&page.body, "name=\"user_code\"").expect("device form");
    let csrf = input_value(&page.body, "csrf").expect("csrf");
    let resp = browser
        .post_form(
            &action,
            &[("csrf", &csrf), ("user_code", &device.user_code)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.body);
    assert!(resp.body.contains("aria-invalid=\"true\""), "{}", resp.body);
}

#[tokio::test]
async fn polling_too_fast_gives_slow_down_and_a_longer_interval() {
    let app = spawn("").await;
    let device = start_device(&app).await;
    assert_eq!(device.interval, 5);
    poll(&app, &device.device_code)
        .await
        .assert_oauth_error(400, "authorization_pending");

    // At once again: slow down, and the interval grows by 5 seconds (RFC 8628 3.5).
    let resp = poll(&app, &device.device_code).await;
    resp.assert_oauth_error(400, "slow_down");
    assert_eq!(interval_in(&resp), 10);

    // The old interval is now too fast as well, and earns another 5 seconds.
    app.clock.advance(5);
    let resp = poll(&app, &device.device_code).await;
    resp.assert_oauth_error(400, "slow_down");
    assert_eq!(interval_in(&resp), 15);

    // Waiting the new interval is fine.
    app.clock.advance(15);
    poll(&app, &device.device_code)
        .await
        .assert_oauth_error(400, "authorization_pending");
}

/// Signs `user` in, enters the user code on the device page and answers the consent screen.
async fn decide_device(app: &TestApp, user_code: &str, consent: Consent) -> Resp {
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    let page = browser
        .get(&format!("{}?user_code={user_code}", app.url("/device")))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let action = form_action(&page.body, "name=\"user_code\"").expect("device form");
    let csrf = input_value(&page.body, "csrf").expect("csrf");
    let resp = browser
        .post_form(&action, &[("csrf", &csrf), ("user_code", user_code)])
        .await;
    assert!(resp.status.is_redirection(), "{}", resp.body);
    let consent_page = browser
        .get(resp.location().expect("Location").as_str())
        .await;
    assert!(
        consent_page.body.contains("name=\"approval\""),
        "no consent screen for a device: {}",
        consent_page.body
    );
    let action = form_action(&consent_page.body, "name=\"approval\"").expect("consent form");
    let csrf = input_value(&consent_page.body, "csrf").expect("csrf");
    let req = input_value(&consent_page.body, "req").expect("req");
    let choice = match consent {
        Consent::Approve => "approve",
        Consent::Deny => "deny",
    };
    browser
        .post_form(
            &action,
            &[("csrf", &csrf), ("req", &req), ("approval", choice)],
        )
        .await
}

#[tokio::test]
async fn a_denied_device_request_gives_access_denied() {
    let app = spawn("").await;
    let device = start_device(&app).await;
    let done = decide_device(&app, &device.user_code, Consent::Deny).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Device access denied"), "{}", done.body);
    poll(&app, &device.device_code)
        .await
        .assert_oauth_error(400, "access_denied");
    // The answer stays the same: a denied request never turns into tokens.
    app.clock.advance(10);
    poll(&app, &device.device_code)
        .await
        .assert_oauth_error(400, "access_denied");
}

#[tokio::test]
async fn an_approved_device_request_gives_tokens_once() {
    let app = spawn("").await;
    let device = start_device(&app).await;
    let done = decide_device(&app, &device.user_code, Consent::Approve).await;
    assert!(done.body.contains("Device connected"), "{}", done.body);
    let resp = poll(&app, &device.device_code).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let tokens = resp.json();
    let (_, claims) = decode_jwt(text(&tokens, "id_token"));
    assert_eq!(claims["aud"], DEVICE_ID);
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    poll(&app, &device.device_code)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Another client cannot redeem a device code that is not its own.
    let other = start_device(&app).await;
    let resp = app
        .token(
            &[
                ("grant_type", DEVICE_GRANT),
                ("device_code", &other.device_code),
            ],
            ClientAuth::Basic(INTEROP_ID, INTEROP_SECRET),
        )
        .await;
    resp.assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_device_login_always_asks_for_confirmation() {
    // Even for a client that skips approval, and a user who signs in during the device
    // login: RFC 8628 5.4 (remote phishing) wants the user to confirm the device.
    let app = TestApp::builder()
        .client(&format!(
            "- id: trusted-device
  name: Trusted device
  public: true
  skipApproval: true
  grantTypes: [{DEVICE_GRANT}]"
        ))
        .spawn()
        .await;
    let resp = app
        .post(
            "/device/code",
            &[("scope", "openid")],
            ClientAuth::Public("trusted-device"),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let user_code = resp.json()["user_code"]
        .as_str()
        .expect("user_code")
        .to_string();

    let browser = app.browser();
    let page = browser
        .get(&format!("{}?user_code={user_code}", app.url("/device")))
        .await;
    let action = form_action(&page.body, "name=\"user_code\"").expect("device form");
    let csrf = input_value(&page.body, "csrf").expect("csrf");
    let resp = browser
        .post_form(&action, &[("csrf", &csrf), ("user_code", &user_code)])
        .await;
    let login = browser
        .get(resp.location().expect("to the login form").as_str())
        .await;
    let action = form_action(&login.body, "name=\"password\"").expect("login form");
    let csrf = input_value(&login.body, "csrf").expect("csrf");
    let resp = browser
        .submit_login(&action, ALICE.login, ALICE.password, &csrf)
        .await;
    let next = resp.location().expect("a redirect after the login");
    assert!(
        next.path().ends_with("/approval"),
        "went to {next} instead of the confirmation"
    );
}

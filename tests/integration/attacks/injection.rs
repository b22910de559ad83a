//! Injection strings in every parameter (RFC 6819 5.1.4.1.4, RFC 9700 4.16, OWASP): SQL, HTML,
//! CRLF (header and log splitting), NUL bytes and very long UTF-8 in each parameter of /auth,
//! /token, /userinfo, /introspect, /revoke, /device/code, /device, /logout and the sign-in form.
//! Each gets the right 4xx (never a 5xx), no header is injected, pages escape what they echo,
//! nothing reaches the audit trail unescaped, and the provider still signs people in after.

use reqwest::StatusCode;
use serde_json::json;

use super::{GRAFANA, assert_error_page, grafana_url, query_of};
use crate::harness::{
    ALICE, ClientAuth, GRAFANA_ID, GRAFANA_REDIRECT, KS_ID, KS_LOGOUT_REDIRECT, Resp, SERVICE_ID,
    SERVICE_SECRET, TestApp, encode_form, form_action, input_value,
};

/// Strings an attacker sends. The last two are long UTF-8: one within the 4096-byte limit
/// on a parameter, one past it.
fn payloads() -> Vec<String> {
    let mut p: Vec<String> = [
        "' OR 1=1--",
        "'; DROP TABLE users; --",
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "\r\nX-Injected: 1",
        "%0d%0aSet-Cookie: injected=1",
        "\r\nSet-Cookie: injected=1\r\n\r\n<html>",
        "a\0b\0",
        "../../../../etc/passwd",
        "{{7*7}}${7*7}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    p.push("é".repeat(1500));
    p.push("字".repeat(1500));
    p
}

fn is_oversized(payload: &str) -> bool {
    payload.len() > 4096
}

/// No header was injected, no cookie planted, and an HTML page escapes what it echoes.
fn assert_clean(resp: &Resp, what: &str) {
    assert!(
        resp.header("x-injected").is_none(),
        "{what}: X-Injected header"
    );
    for cookie in resp.header_all("set-cookie") {
        assert!(
            cookie.starts_with("idbridge_session="),
            "{what}: unexpected cookie {cookie:?}"
        );
    }
    for (name, value) in &resp.headers {
        let v = value.as_bytes();
        assert!(
            !v.contains(&b'\r') && !v.contains(&b'\n') && !v.contains(&0),
            "{what}: control character in header {name}"
        );
        assert!(
            !String::from_utf8_lossy(v).contains("injected=1"),
            "{what}: payload in header {name}: {value:?}"
        );
    }
    if resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html"))
    {
        for raw in ["<script>alert(1)</script>", "<img src=x onerror"] {
            assert!(
                !resp.body.contains(raw),
                "{what}: unescaped {raw:?} in the page"
            );
        }
    }
}

/// A normal login and code exchange still work.
async fn still_works(app: &TestApp) {
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(Some(access)).await.status, StatusCode::OK);
}

/// Every audit event written so far has a single-line detail.
async fn audit_is_single_line(app: &TestApp) {
    // The audit trail is written in the background; give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = app
        .storage()
        .list_audit_events(0, None, 10_000)
        .await
        .expect("audit events");
    for e in &events {
        for field in [&e.detail, &e.user_id, &e.client_id, &e.connector_id]
            .into_iter()
            .flatten()
        {
            assert!(
                !field.contains('\r') && !field.contains('\n') && !field.contains('\0'),
                "audit event {} holds a control character: {field:?}",
                e.kind
            );
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// An error page, no redirect.
    Page,
    /// An error redirected to Grafana with this code.
    Error(&'static str),
    /// Accepted: on to the sign-in page.
    Proceeds,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_into_every_authorization_parameter() {
    let app = TestApp::spawn("").await;
    let params: [(&'static str, Outcome); 16] = [
        ("client_id", Outcome::Page),
        ("redirect_uri", Outcome::Page),
        ("response_type", Outcome::Error("unsupported_response_type")),
        ("scope", Outcome::Error("invalid_scope")),
        ("state", Outcome::Proceeds),
        ("nonce", Outcome::Proceeds),
        ("code_challenge", Outcome::Error("invalid_request")),
        ("code_challenge_method", Outcome::Error("invalid_request")),
        ("prompt", Outcome::Error("invalid_request")),
        ("max_age", Outcome::Error("invalid_request")),
        ("response_mode", Outcome::Error("invalid_request")),
        ("connector_id", Outcome::Error("invalid_request")),
        ("login_hint", Outcome::Proceeds),
        ("ui_locales", Outcome::Proceeds),
        ("display", Outcome::Proceeds),
        ("lang", Outcome::Proceeds),
    ];
    for payload in payloads() {
        for (name, expected) in params {
            let what = format!("/auth {name}={payload:.40?}");
            let browser = app.browser();
            let url = grafana_url(&app, &[(name, Some(&payload))]);
            let resp = browser.get(&url).await;
            assert_clean(&resp, &what);
            let expected = if is_oversized(&payload) {
                Outcome::Page
            } else {
                expected
            };
            match expected {
                Outcome::Page => assert_error_page(&resp, &what),
                Outcome::Error(code) => {
                    super::assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, code);
                    assert_eq!(query_of(&resp)["state"], "neg-state", "{what}");
                }
                Outcome::Proceeds => {
                    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{what}: {}", resp.body);
                    let next = resp.location().unwrap();
                    assert!(next.as_str().starts_with(&app.base), "{what}: {next}");
                    let page = browser.get(next.as_str()).await;
                    assert_eq!(page.status, StatusCode::OK, "{what}");
                    assert_clean(&page, &what);
                }
            }
        }
        // The payload as a parameter name is ignored like any unknown parameter.
        if !is_oversized(&payload) {
            let url = format!(
                "{}&{}=1",
                grafana_url(&app, &[]),
                encode_form(&[(&payload, "")]).trim_end_matches('=')
            );
            let resp = app.browser().get(&url).await;
            assert_clean(&resp, "parameter name");
            assert_eq!(
                resp.status,
                StatusCode::SEE_OTHER,
                "{payload:.40?} as a name"
            );
        }
    }
    // A state full of awkward text comes back exactly at the end of a real login.
    let browser = app.browser();
    for payload in payloads().iter().filter(|p| !is_oversized(p)) {
        let flow = browser
            .authorize(
                &grafana_url(&app, &[("state", Some(payload))]),
                Some(&ALICE),
            )
            .await;
        assert_clean(&flow.end, "state round trip");
        assert_eq!(&flow.params()["state"], payload);
    }
    still_works(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_into_every_token_parameter() {
    let app = TestApp::builder()
        .client(&format!(
            "- id: {DEVICE_ID}\n  name: Device\n  public: true\n  grantTypes: [{DEVICE_GRANT}]"
        ))
        .spawn()
        .await;
    let browser = app.browser();
    for payload in payloads() {
        let p = payload.as_str();
        let big = is_oversized(p);
        let check = |resp: Resp, status: u16, code: &str, what: &str| {
            assert_clean(&resp, what);
            if big {
                resp.assert_oauth_error(400, "invalid_request");
            } else {
                resp.assert_oauth_error(status, code);
            }
        };
        check(
            app.token(&[("grant_type", p)], GRAFANA).await,
            400,
            "unsupported_grant_type",
            "grant_type",
        );
        check(
            app.exchange(p, GRAFANA_REDIRECT, None, GRAFANA).await,
            400,
            "invalid_grant",
            "code",
        );
        let code = app.grafana_code(&browser, &ALICE).await;
        check(
            app.exchange(&code, p, None, GRAFANA).await,
            400,
            "invalid_grant",
            "redirect_uri",
        );
        check(
            app.exchange(&code, GRAFANA_REDIRECT, Some(p), GRAFANA)
                .await,
            400,
            "invalid_grant",
            "code_verifier",
        );
        check(
            app.token(
                &[("grant_type", "refresh_token"), ("refresh_token", p)],
                GRAFANA,
            )
            .await,
            400,
            "invalid_grant",
            "refresh_token",
        );
        check(
            app.token(
                &[("grant_type", "client_credentials"), ("scope", p)],
                ClientAuth::Basic(SERVICE_ID, SERVICE_SECRET),
            )
            .await,
            400,
            "invalid_scope",
            "scope",
        );
        check(
            app.token(
                &[("grant_type", DEVICE_GRANT), ("device_code", p)],
                ClientAuth::Public(DEVICE_ID),
            )
            .await,
            400,
            "invalid_grant",
            "device_code",
        );
        check(
            app.token(
                &[("grant_type", "refresh_token"), ("refresh_token", "x.y")],
                ClientAuth::Post(p, "secret"),
            )
            .await,
            401,
            "invalid_client",
            "client_id",
        );
        check(
            app.token(
                &[("grant_type", "refresh_token"), ("refresh_token", "x.y")],
                ClientAuth::Post(GRAFANA_ID, p),
            )
            .await,
            401,
            "invalid_client",
            "client_secret",
        );
        if !big {
            // In Basic the credentials sit in a header, which has no size limit of its own.
            let resp = app
                .token(
                    &[("grant_type", "refresh_token"), ("refresh_token", "x.y")],
                    ClientAuth::Basic(p, p),
                )
                .await;
            assert_clean(&resp, "Basic");
            resp.assert_oauth_error(401, "invalid_client");
        }
        // The code survived all of it.
        let resp = app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    }
    still_works(&app).await;
}

const DEVICE_ID: &str = "injection-device";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_into_userinfo_introspection_revocation_and_device_endpoints() {
    let app = TestApp::builder()
        .client(&format!(
            "- id: {DEVICE_ID}\n  name: Device\n  public: true\n  grantTypes: [{DEVICE_GRANT}]"
        ))
        .spawn()
        .await;
    let (access, _) = super::alice_tokens(&app).await;
    for payload in payloads() {
        let p = payload.as_str();
        let big = is_oversized(p);
        // userinfo with the token in the form body.
        let resp = app
            .post("/userinfo", &[("access_token", p)], ClientAuth::None)
            .await;
        assert_clean(&resp, "userinfo");
        if big {
            assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.body);
            assert_eq!(resp.json()["error"], "invalid_request");
        } else {
            super::assert_invalid_token(&resp, "userinfo");
        }
        for (path, form) in [
            ("/introspect", vec![("token", p)]),
            ("/introspect", vec![("token", "x"), ("token_type_hint", p)]),
            ("/revoke", vec![("token", p)]),
            ("/revoke", vec![("token", "x"), ("token_type_hint", p)]),
        ] {
            let resp = app.post(path, &form, GRAFANA).await;
            assert_clean(&resp, path);
            if big {
                resp.assert_oauth_error(400, "invalid_request");
            } else if path == "/introspect" {
                assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
                assert_eq!(resp.json(), json!({"active": false}));
            } else {
                assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
            }
        }
        let resp = app
            .post(
                "/device/code",
                &[("scope", p)],
                ClientAuth::Public(DEVICE_ID),
            )
            .await;
        assert_clean(&resp, "device scope");
        resp.assert_oauth_error(
            400,
            if big {
                "invalid_request"
            } else {
                "invalid_scope"
            },
        );
        let resp = app
            .post(
                "/device/code",
                &[("scope", "openid")],
                ClientAuth::Public(p),
            )
            .await;
        assert_clean(&resp, "device client_id");
        if big {
            resp.assert_oauth_error(400, "invalid_request");
        } else {
            resp.assert_oauth_error(401, "invalid_client");
        }
    }
    // The device page echoes a typed user code: escaped, at most 16 characters.
    let browser = app.browser();
    for payload in payloads() {
        let query = encode_form(&[("user_code", &payload)]);
        let page = browser.get(&app.url(&format!("/device?{query}"))).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_clean(&page, "device page");
        let action = form_action(&page.body, "name=\"user_code\"").expect("device form");
        let csrf = input_value(&page.body, "csrf").expect("csrf");
        let resp = browser
            .post_form(&action, &[("csrf", &csrf), ("user_code", &payload)])
            .await;
        assert_clean(&resp, "device form");
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.body);
        assert!(resp.body.contains("aria-invalid=\"true\""));
    }
    // Nothing above touched Alice's token.
    assert_eq!(app.userinfo(Some(&access)).await.status, StatusCode::OK);
    still_works(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_into_every_logout_parameter() {
    let app = TestApp::spawn("").await;
    for payload in payloads() {
        let p = payload.as_str();
        let browser = app.browser();
        let logout = |pairs: &[(&str, &str)]| app.url(&format!("/logout?{}", encode_form(pairs)));
        for pairs in [
            vec![("post_logout_redirect_uri", p), ("client_id", KS_ID)],
            vec![
                ("post_logout_redirect_uri", KS_LOGOUT_REDIRECT),
                ("client_id", p),
            ],
            vec![("id_token_hint", p)],
        ] {
            let resp = browser.get(&logout(&pairs)).await;
            assert_clean(&resp, "logout");
            assert_error_page(&resp, &format!("logout {pairs:.60?}"));
        }
        // A state is echoed to the registered URI exactly, inside the query.
        let resp = browser
            .get(&logout(&[
                ("post_logout_redirect_uri", KS_LOGOUT_REDIRECT),
                ("client_id", KS_ID),
                ("state", p),
            ]))
            .await;
        assert_clean(&resp, "logout state");
        if is_oversized(p) {
            assert_error_page(&resp, "oversized logout state");
        } else {
            assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
            let loc = resp.location().unwrap();
            assert!(loc.as_str().starts_with(&format!("{KS_LOGOUT_REDIRECT}?")));
            assert_eq!(query_of(&resp)["state"], payload);
        }
        // The page language parameter is only ever matched, never echoed raw.
        let resp = browser.get(&logout(&[("lang", p)])).await;
        assert_clean(&resp, "logout lang");
        if !is_oversized(p) {
            assert_eq!(resp.status, StatusCode::OK);
        }
    }
    still_works(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_into_the_sign_in_form() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let (action, csrf) = browser.open_login_form(&grafana_url(&app, &[])).await;
    for (i, payload) in payloads().iter().enumerate() {
        let p = payload.as_str();
        // As the login: refused like any unknown user; the echo in the form is escaped.
        let resp = browser.submit_login(&action, p, "wrong", &csrf).await;
        assert_clean(&resp, "login");
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.body);
        assert!(resp.body.contains("Incorrect username or password"));
        // As the password of a throwaway account (wrong passwords delay an account).
        let login = format!("mallory-{i}");
        let resp = browser.submit_login(&action, &login, p, &csrf).await;
        assert_clean(&resp, "password");
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
        // As the CSRF token.
        let resp = browser
            .submit_login(&action, ALICE.login, ALICE.password, p)
            .await;
        assert_clean(&resp, "csrf");
        assert_eq!(resp.status, StatusCode::FORBIDDEN);
        // As the request id.
        let query = encode_form(&[("req", p)]);
        let resp = browser
            .post_form(
                &app.url(&format!("/login/local?{query}")),
                &[
                    ("login", ALICE.login),
                    ("password", ALICE.password),
                    ("csrf", &csrf),
                ],
            )
            .await;
        assert_clean(&resp, "req");
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert!(resp.body.contains("Sign-in expired"));
        // As the connector in the path.
        let connector: String = url::form_urlencoded::byte_serialize(p.as_bytes()).collect();
        let resp = browser
            .get(&app.url(&format!("/login/{connector}?req=x")))
            .await;
        assert_clean(&resp, "connector");
        assert!(resp.status.is_client_error(), "{}", resp.status);
    }
    // After all of it the same form signs Alice in.
    let resp = browser
        .submit_login(&action, ALICE.login, ALICE.password, &csrf)
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert!(
        resp.location()
            .unwrap()
            .as_str()
            .starts_with(GRAFANA_REDIRECT)
    );
    audit_is_single_line(&app).await;
    still_works(&app).await;
}

//! Requests that must be refused, each with the exact OAuth error (and status) the RFCs call
//! for. The harness fails any test whose request gets a 5xx.

use std::collections::HashMap;

use aws_lc_rs::hmac;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{
    ALICE, BOB, CLI_ID, CLI_REDIRECT, ClientAuth, GRAFANA_ID, GRAFANA_REDIRECT, GRAFANA_SECRET,
    KS_ID, KS_REDIRECT, KS_SECRET, Resp, TestApp, b64url, decode_jwt, pkce_pair,
};

const GRAFANA: ClientAuth<'static> = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);

fn grafana_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "neg-state"),
    ]
}

/// Replaces (or adds, or with `None` removes) parameters of the Grafana request.
fn grafana_url(app: &TestApp, changes: &[(&'static str, Option<&str>)]) -> String {
    let mut params: Vec<(String, String)> = grafana_params()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in changes {
        params.retain(|(name, _)| name != k);
        if let Some(v) = v {
            params.push((k.to_string(), v.to_string()));
        }
    }
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    app.auth_url(&pairs)
}

/// An error page: 400, no redirect anywhere.
fn assert_error_page(resp: &Resp, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::BAD_REQUEST,
        "{what}: expected an error page, got {}: {}",
        resp.status,
        resp.body
    );
    assert!(
        resp.header("location").is_none(),
        "{what}: an error page must not redirect"
    );
    assert!(
        resp.header("content-type")
            .unwrap_or("")
            .starts_with("text/html")
    );
}

/// An error sent back to the (trusted) redirect URI with state and iss.
fn assert_error_redirect(app: &TestApp, resp: &Resp, redirect: &str, code: &str) {
    assert_eq!(
        resp.status,
        StatusCode::SEE_OTHER,
        "expected a redirect with {code}, got {}: {}",
        resp.status,
        resp.body
    );
    let loc = resp.location().unwrap();
    assert!(
        loc.as_str().starts_with(&format!("{redirect}?")),
        "{loc} does not go to {redirect}"
    );
    let q: HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(q.get("error").map(String::as_str), Some(code), "{loc}");
    assert_eq!(q.get("iss").map(String::as_str), Some(app.issuer.as_str()));
    assert!(!q.contains_key("code"));
}

async fn auth(app: &TestApp, url: &str) -> Resp {
    app.browser().get(url).await
}

// ------------------------------------------------------------------------------------------
// /auth before the client and redirect URI are trusted: error pages, never redirects.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_client_id_shows_an_error_page() {
    let app = TestApp::spawn("").await;
    let resp = auth(&app, &grafana_url(&app, &[("client_id", None)])).await;
    assert_error_page(&resp, "no client_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_a_duplicated_client_id_shows_an_error_page() {
    let app = TestApp::spawn("").await;
    let url = format!("{}&client_id={GRAFANA_ID}", grafana_url(&app, &[]));
    assert_error_page(&auth(&app, &url).await, "client_id twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_an_oversized_parameter_shows_an_error_page() {
    let app = TestApp::spawn("").await;
    let long = "s".repeat(5000);
    let resp = auth(&app, &grafana_url(&app, &[("state", Some(&long))])).await;
    assert_error_page(&resp, "5000-byte state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_an_unknown_client_shows_an_error_page() {
    let app = TestApp::spawn("").await;
    let resp = auth(&app, &grafana_url(&app, &[("client_id", Some("nobody"))])).await;
    assert_error_page(&resp, "unknown client");
    assert!(resp.body.contains("Unknown application"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_redirect_uri_shows_an_error_page() {
    let app = TestApp::spawn("").await;
    let resp = auth(&app, &grafana_url(&app, &[("redirect_uri", None)])).await;
    assert_error_page(&resp, "no redirect_uri");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_an_unregistered_redirect_uri_shows_an_error_page() {
    let app = TestApp::spawn("").await;
    for bad in [
        "https://evil.example.com/login/generic_oauth",
        "https://grafana.example.com/login/generic_oauth/",
        "https://grafana.example.com/login/Generic_OAuth",
        "HTTPS://GRAFANA.EXAMPLE.COM/login/generic_oauth",
        "https://grafana.example.com/login/generic_oauth?next=/admin",
        "https://grafana.example.com/login/generic_oauth#frag",
        "https://grafana.example.com:8443/login/generic_oauth",
        "http://grafana.example.com/login/generic_oauth",
        "https://grafana.example.com/login/generic_oauth/../generic_oauth",
        "https://grafana.example.com.evil.example/login/generic_oauth",
        // Another client's URI.
        KS_REDIRECT,
    ] {
        let resp = auth(&app, &grafana_url(&app, &[("redirect_uri", Some(bad))])).await;
        assert_error_page(&resp, bad);
        assert!(resp.body.contains("Invalid redirect address"), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_client_loopback_exception_is_narrow() {
    let app = TestApp::spawn("").await;
    let (_, challenge) = pkce_pair();
    for bad in [
        "http://127.0.0.1:8000/other",
        "http://localhost:8000/callback",
        "http://127.0.0.2:8000/callback",
        "http://127.0.0.1:8000/callback?x=1",
        "http://user@127.0.0.1:8000/callback",
        "https://127.0.0.1:8000/callback",
    ] {
        let url = app.auth_url(&[
            ("client_id", CLI_ID),
            ("redirect_uri", bad),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        assert_error_page(&auth(&app, &url).await, bad);
    }
    // A confidential client gets no port leniency at all, not even the default port.
    let url = grafana_url(
        &app,
        &[(
            "redirect_uri",
            Some("https://grafana.example.com:443/login/generic_oauth"),
        )],
    );
    assert_error_page(&auth(&app, &url).await, "explicit default port");
}

// ------------------------------------------------------------------------------------------
// /auth once the redirect URI is trusted: errors go back to the client.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_an_unsupported_response_type_redirects_the_error() {
    let app = TestApp::spawn("").await;
    for rt in ["token", "id_token", "code token", "code id_token"] {
        let resp = auth(&app, &grafana_url(&app, &[("response_type", Some(rt))])).await;
        assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "unsupported_response_type");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_response_type_is_invalid_request() {
    let app = TestApp::spawn("").await;
    let resp = auth(&app, &grafana_url(&app, &[("response_type", None)])).await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_a_duplicated_scope_is_invalid_request() {
    let app = TestApp::spawn("").await;
    let url = format!("{}&scope=email", grafana_url(&app, &[]));
    let resp = auth(&app, &url).await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
    let q: HashMap<String, String> = resp
        .location()
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["state"], "neg-state", "state is echoed in errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_scope_and_without_default_scopes_is_invalid_scope() {
    let app = TestApp::spawn("").await;
    let resp = auth(&app, &grafana_url(&app, &[("scope", None)])).await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_plain_pkce_is_refused() {
    let app = TestApp::spawn("").await;
    let (verifier, _) = pkce_pair();
    let resp = auth(
        &app,
        &grafana_url(
            &app,
            &[
                ("code_challenge", Some(&verifier)),
                ("code_challenge_method", Some("plain")),
            ],
        ),
    )
    .await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
    // A challenge without a method means plain (RFC 7636 4.3).
    let resp = auth(
        &app,
        &grafana_url(&app, &[("code_challenge", Some(&verifier))]),
    )
    .await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_client_without_pkce_is_refused() {
    let app = TestApp::spawn("").await;
    let url = app.auth_url(&[
        ("client_id", CLI_ID),
        ("redirect_uri", CLI_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
    ]);
    let resp = auth(&app, &url).await;
    assert_error_redirect(&app, &resp, CLI_REDIRECT, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_none_combined_with_login_is_invalid_request() {
    let app = TestApp::spawn("").await;
    let resp = auth(&app, &grafana_url(&app, &[("prompt", Some("none login"))])).await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
    let resp = auth(&app, &grafana_url(&app, &[("prompt", Some("sometimes"))])).await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_or_malformed_max_age_is_invalid_request() {
    let app = TestApp::spawn("").await;
    for bad in ["-1", "abc", "1.5", "99999999999999999999999"] {
        let resp = auth(&app, &grafana_url(&app, &[("max_age", Some(bad))])).await;
        assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_objects_and_registration_are_not_supported() {
    let app = TestApp::spawn("").await;
    let resp = auth(
        &app,
        &grafana_url(&app, &[("request", Some("eyJhbGciOiJub25lIn0.e30."))]),
    )
    .await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "request_not_supported");
    let resp = auth(
        &app,
        &grafana_url(
            &app,
            &[("request_uri", Some("https://evil.example.com/req"))],
        ),
    )
    .await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "request_uri_not_supported");
    let resp = auth(&app, &grafana_url(&app, &[("registration", Some("{}"))])).await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "registration_not_supported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_response_mode_is_invalid_request() {
    let app = TestApp::spawn("").await;
    let resp = auth(
        &app,
        &grafana_url(&app, &[("response_mode", Some("fragment"))]),
    )
    .await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_connector_id_is_invalid_request() {
    let app = TestApp::spawn("").await;
    let resp = auth(&app, &grafana_url(&app, &[("connector_id", Some("ldap"))])).await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
}

// ------------------------------------------------------------------------------------------
// /token: request shape.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_grant_type_is_invalid_request() {
    let app = TestApp::spawn("").await;
    app.token(&[("code", "x")], GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_a_duplicated_parameter_is_invalid_request() {
    let app = TestApp::spawn("").await;
    let code = app.grafana_code(&app.browser(), &ALICE).await;
    app.token(
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code", &code),
            ("redirect_uri", GRAFANA_REDIRECT),
        ],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "invalid_request");
    // The refused request did not consume the code.
    let resp = app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_an_oversized_parameter_is_invalid_request() {
    let app = TestApp::spawn("").await;
    let long = "c".repeat(5000);
    app.token(
        &[("grant_type", "authorization_code"), ("code", &long)],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "invalid_request");
    // A body past the size limit is refused before it is read.
    let huge = format!("grant_type=authorization_code&code={}", "c".repeat(70_000));
    let resp = app
        .post_raw(
            "/token",
            "application/x-www-form-urlencoded",
            &huge,
            GRAFANA,
        )
        .await;
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_an_unsupported_grant_type() {
    let app = TestApp::spawn("").await;
    for grant in ["password", "implicit", "urn:example:custom"] {
        app.token(
            &[
                ("grant_type", grant),
                ("username", "alice"),
                ("password", "x"),
            ],
            GRAFANA,
        )
        .await
        .assert_oauth_error(400, "unsupported_grant_type");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_a_json_body_is_invalid_request() {
    let app = TestApp::spawn("").await;
    let body = json!({"grant_type": "client_credentials"}).to_string();
    app.post_raw("/token", "application/json", &body, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_request");
    app.post_raw(
        "/token",
        "text/plain",
        "grant_type=client_credentials",
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_an_unknown_client_or_no_credentials_is_invalid_client() {
    let app = TestApp::spawn("").await;
    for auth in [
        ClientAuth::Basic("nobody", "secret"),
        ClientAuth::Post("nobody", "secret"),
        ClientAuth::None,
        // A confidential client cannot pass as public.
        ClientAuth::Public(GRAFANA_ID),
        ClientAuth::Basic(GRAFANA_ID, ""),
    ] {
        let resp = app
            .token(&[("grant_type", "authorization_code"), ("code", "x")], auth)
            .await;
        resp.assert_oauth_error(401, "invalid_client");
        assert!(
            resp.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Basic")),
            "{auth:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_with_two_authentication_methods_is_refused() {
    let app = TestApp::spawn("").await;
    let resp = app
        .post_raw(
            "/token",
            "application/x-www-form-urlencoded",
            &format!(
                "grant_type=authorization_code&code=x&client_id={GRAFANA_ID}&client_secret={GRAFANA_SECRET}"
            ),
            GRAFANA,
        )
        .await;
    resp.assert_oauth_error(400, "invalid_request");
}

// ------------------------------------------------------------------------------------------
// /token: the authorization code grant.

/// A Grafana code with an S256 challenge; returns (code, verifier).
async fn grafana_pkce_code(app: &TestApp) -> (String, String) {
    let (verifier, challenge) = pkce_pair();
    let url = grafana_url(
        app,
        &[
            ("code_challenge", Some(&challenge)),
            ("code_challenge_method", Some("S256")),
        ],
    );
    let code = app.browser().authorize(&url, Some(&ALICE)).await.code();
    (code, verifier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkce_verifier_mismatch_is_invalid_grant() {
    let app = TestApp::spawn("").await;
    let (code, verifier) = grafana_pkce_code(&app).await;
    let (other, _) = pkce_pair();
    app.exchange(&code, GRAFANA_REDIRECT, Some(&other), GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // The plain verifier as "challenge" is no good either.
    app.exchange(&code, GRAFANA_REDIRECT, Some("short"), GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // The rightful holder still succeeds.
    let resp = app
        .exchange(&code, GRAFANA_REDIRECT, Some(&verifier), GRAFANA)
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkce_missing_verifier_is_invalid_grant() {
    let app = TestApp::spawn("").await;
    let (code, _) = grafana_pkce_code(&app).await;
    app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkce_verifier_without_a_challenge_is_a_downgrade() {
    let app = TestApp::spawn("").await;
    let code = app.grafana_code(&app.browser(), &ALICE).await;
    let (verifier, _) = pkce_pair();
    app.exchange(&code, GRAFANA_REDIRECT, Some(&verifier), GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_replay_fails_and_revokes_the_first_tokens() {
    let app = TestApp::spawn("").await;
    let code = app.grafana_code(&app.browser(), &ALICE).await;
    let first = app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let first = first.json();
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(Some(access)).await.status, StatusCode::OK);

    app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");

    let resp = app.userinfo(Some(access)).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.body);
    assert_eq!(resp.json()["error"], "invalid_token");
    assert_eq!(app.introspect(access, GRAFANA).await["active"], false);
    // The refresh token of the first exchange dies too.
    app.token(
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_code_is_invalid_grant() {
    let app = TestApp::spawn("").await;
    let code = app.grafana_code(&app.browser(), &ALICE).await;
    app.clock.advance(121);
    app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_presented_by_another_client_is_invalid_grant() {
    let app = TestApp::spawn("").await;
    let code = app.grafana_code(&app.browser(), &ALICE).await;
    app.exchange(
        &code,
        GRAFANA_REDIRECT,
        None,
        ClientAuth::Basic(KS_ID, KS_SECRET),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    app.exchange(
        &code,
        KS_REDIRECT,
        None,
        ClientAuth::Basic(KS_ID, KS_SECRET),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    // The code still belongs to Grafana.
    let resp = app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_uri_mismatch_at_the_token_endpoint_is_invalid_grant() {
    let app = TestApp::spawn("").await;
    let code = app.grafana_code(&app.browser(), &ALICE).await;
    app.exchange(&code, "https://grafana.example.com/other", None, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
    app.token(
        &[("grant_type", "authorization_code"), ("code", &code)],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_client_authentication_does_not_consume_the_code() {
    // Go's oauth2 (KubeSphere) retries the same code with the other authentication style.
    let app = TestApp::spawn("").await;
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("state", "ks"),
    ]);
    let code = app.browser().authorize(&url, Some(&ALICE)).await.code();
    app.exchange(
        &code,
        KS_REDIRECT,
        None,
        ClientAuth::Basic(KS_ID, "wrong-secret"),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    // Unencoded secret in Basic (a client that forgets RFC 6749 2.3.1): '+' decodes to ' '.
    let raw = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{KS_ID}:{KS_SECRET}")
        )
    );
    let resp = app
        .http
        .post(app.url("/token"))
        .header("authorization", raw)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", KS_REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .exchange(&code, KS_REDIRECT, None, ClientAuth::Post(KS_ID, KS_SECRET))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(resp.json()["id_token"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_of_another_client_is_invalid_grant() {
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    app.token(
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        ClientAuth::Basic(KS_ID, KS_SECRET),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    for garbage in ["nonsense", "a.b", "a.b.c", ""] {
        let resp = app
            .token(
                &[("grant_type", "refresh_token"), ("refresh_token", garbage)],
                GRAFANA,
            )
            .await;
        let expected = if garbage.is_empty() {
            "invalid_request"
        } else {
            "invalid_grant"
        };
        resp.assert_oauth_error(400, expected);
    }
    // Asking for more than was granted.
    app.token(
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", "openid phone"),
        ],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "invalid_scope");
    // The refused attempts left the token usable.
    let resp = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            GRAFANA,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

// ------------------------------------------------------------------------------------------
// /userinfo: bearer tokens that must be refused.

fn assert_invalid_token(resp: &Resp, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        resp.body
    );
    assert_eq!(resp.json()["error"], "invalid_token", "{what}");
    let challenge = resp.header("www-authenticate").unwrap_or("");
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
}

/// A valid access token and ID token for Alice at Grafana.
async fn alice_tokens(app: &TestApp) -> (String, String) {
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    (
        tokens["access_token"].as_str().unwrap().to_string(),
        tokens["id_token"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_without_a_token_challenges_for_bearer() {
    let app = TestApp::spawn("").await;
    let resp = app.userinfo(None).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(
        resp.header("www-authenticate")
            .unwrap_or("")
            .starts_with("Bearer")
    );
    // A non-bearer scheme is a malformed request.
    let resp = app
        .http
        .get(app.url("/userinfo"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_a_garbage_token() {
    let app = TestApp::spawn("").await;
    for garbage in ["garbage", "a.b.c", "eyJ9.eyJ9.eyJ9", "....", "x.y"] {
        assert_invalid_token(&app.userinfo(Some(garbage)).await, garbage);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_an_id_token_instead_of_an_access_token() {
    let app = TestApp::spawn("").await;
    let (_, id_token) = alice_tokens(&app).await;
    assert_invalid_token(&app.userinfo(Some(&id_token)).await, "ID token");
}

/// Re-signs `token`'s claims with a new header and signature.
fn forge(token: &str, header: serde_json::Value, signature: &[u8]) -> String {
    let claims_part = token.split('.').nth(1).unwrap();
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        claims_part,
        b64url(signature)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_an_alg_none_token() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (header, _) = decode_jwt(&access);
    let forged = forge(
        &access,
        json!({"alg": "none", "kid": header["kid"], "typ": "at+jwt"}),
        b"",
    );
    assert_invalid_token(&app.userinfo(Some(&forged)).await, "alg none");
    let forged = forge(&access, json!({"alg": "none", "typ": "at+jwt"}), b"");
    assert_invalid_token(&app.userinfo(Some(&forged)).await, "alg none, no kid");
    // Without the signature part at all.
    let unsigned = forged.rsplit_once('.').unwrap().0.to_string();
    assert_invalid_token(&app.userinfo(Some(&unsigned)).await, "two parts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_an_hs256_token_keyed_with_the_public_key() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (header, _) = decode_jwt(&access);
    let jwks = app.get("/keys").await;
    let jwk = &jwks.json()["keys"][0];
    let forged_header = json!({"alg": "HS256", "kid": header["kid"], "typ": "at+jwt"});
    let header_part = b64url(forged_header.to_string().as_bytes());
    let claims_part = access.split('.').nth(1).unwrap();
    let signing_input = format!("{header_part}.{claims_part}");
    // Try the key material an alg-confusion attacker would: the JWKS body, the JWK, and the
    // raw modulus.
    let modulus = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        jwk["n"].as_str().unwrap_or(""),
    )
    .unwrap_or_default();
    for key_bytes in [jwks.body.as_bytes(), jwk.to_string().as_bytes(), &modulus] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key_bytes);
        let sig = hmac::sign(&key, signing_input.as_bytes());
        let forged = format!("{signing_input}.{}", b64url(sig.as_ref()));
        assert_invalid_token(&app.userinfo(Some(&forged)).await, "HS256 confusion");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_an_unknown_kid() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (header, _) = decode_jwt(&access);
    let sig = access.rsplit('.').next().unwrap();
    let sig =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    let forged = forge(
        &access,
        json!({"alg": header["alg"], "kid": "not-a-kid", "typ": "at+jwt"}),
        &sig,
    );
    assert_invalid_token(&app.userinfo(Some(&forged)).await, "unknown kid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_an_expired_token() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    assert_eq!(app.userinfo(Some(&access)).await.status, StatusCode::OK);
    app.clock.advance(3601);
    assert_invalid_token(&app.userinfo(Some(&access)).await, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_a_tampered_token() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    // Truncated signature.
    let truncated = &access[..access.len() - 4];
    assert_invalid_token(&app.userinfo(Some(truncated)).await, "truncated signature");
    // Claims changed under a valid signature.
    let (header, mut claims) = decode_jwt(&access);
    claims["sub"] = json!(BOB.user_id);
    let parts: Vec<&str> = access.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        parts[2]
    );
    assert_invalid_token(&app.userinfo(Some(&forged)).await, "changed claims");
    // The token in two places at once.
    let resp = app
        .http
        .post(app.url("/userinfo"))
        .header("authorization", format!("Bearer {access}"))
        .form(&[("access_token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

// ------------------------------------------------------------------------------------------
// The browser forms.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_wrong_csrf_token_is_forbidden() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let (action, csrf) = browser.open_login_form(&grafana_url(&app, &[])).await;
    for bad in ["", "wrong", &csrf[..csrf.len() - 1]] {
        let resp = browser
            .post_form(
                &action,
                &[
                    ("login", ALICE.login),
                    ("password", ALICE.password),
                    ("csrf", bad),
                ],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "csrf {bad:?}");
        assert!(resp.header("location").is_none());
    }
    let resp = browser
        .post_form(
            &action,
            &[("login", ALICE.login), ("password", ALICE.password)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "no csrf at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_for_a_request_started_in_another_browser_is_refused() {
    let app = TestApp::spawn("").await;
    let victim = app.browser();
    let (victim_action, _) = victim.open_login_form(&grafana_url(&app, &[])).await;
    let attacker = app.browser();
    let (_, attacker_csrf) = attacker.open_login_form(&grafana_url(&app, &[])).await;
    let resp = attacker
        .post_form(
            &victim_action,
            &[
                ("login", BOB.login),
                ("password", BOB.password),
                ("csrf", &attacker_csrf),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.body);
    assert!(resp.header("location").is_none());
    assert!(resp.body.contains("Sign-in expired"));
    // Opening the victim's request is refused too.
    let resp = attacker.get(&victim_action).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let (action, csrf) = browser.open_login_form(&grafana_url(&app, &[])).await;
    let unknown_user = browser
        .post_form(
            &action,
            &[("login", "mallory"), ("password", "wrong"), ("csrf", &csrf)],
        )
        .await;
    let wrong_password = browser
        .post_form(
            &action,
            &[
                ("login", ALICE.login),
                ("password", "wrong"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_user.status, wrong_password.status);
    assert!(
        wrong_password
            .body
            .contains("Incorrect username or password")
    );
    // The only difference is the login echoed back into the form.
    assert_eq!(
        unknown_user.body.replace("mallory", "LOGIN"),
        wrong_password.body.replace(ALICE.login, "LOGIN")
    );
    // After failures, the right password still works on the same request.
    let resp = browser
        .post_form(
            &action,
            &[
                ("login", ALICE.login),
                ("password", ALICE.password),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert!(
        resp.location()
            .unwrap()
            .as_str()
            .starts_with(GRAFANA_REDIRECT)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_with_a_wrong_csrf_token_is_forbidden() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("state", "ks"),
    ]);
    let (action, csrf) = browser.open_login_form(&url).await;
    let resp = browser
        .post_form(
            &action,
            &[
                ("login", ALICE.login),
                ("password", ALICE.password),
                ("csrf", &csrf),
            ],
        )
        .await;
    let approval = resp.location().expect("to the consent screen");
    let page = browser.get(approval.as_str()).await;
    let req = crate::harness::input_value(&page.body, "req").unwrap();
    let resp = browser
        .post_form(
            &app.url("/approval"),
            &[("csrf", "forged"), ("req", &req), ("approval", "approve")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.header("location").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_pages_for_unknown_requests_are_refused() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    for path in [
        "/login?req=nope",
        "/login/local?req=nope",
        "/login/local",
        "/approval?req=nope",
        "/callback?state=nope&code=x",
    ] {
        let resp = browser.get(&app.url(path)).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            resp.body
        );
        assert!(resp.header("location").is_none());
    }
    let resp = browser.get(&app.url("/no-such-page")).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_after_the_authorization_request_expired_is_refused() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let (action, csrf) = browser.open_login_form(&grafana_url(&app, &[])).await;
    app.clock.advance(601);
    let resp = browser
        .post_form(
            &action,
            &[
                ("login", ALICE.login),
                ("password", ALICE.password),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.body);
    assert!(resp.header("location").is_none());
    assert!(resp.body.contains("Sign-in expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_login_and_approval_forms_cannot_be_replayed() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("state", "ks"),
    ]);
    let (action, csrf) = browser.open_login_form(&url).await;
    let login = [
        ("login", ALICE.login),
        ("password", ALICE.password),
        ("csrf", csrf.as_str()),
    ];
    let resp = browser.post_form(&action, &login).await;
    let approval = resp.location().expect("consent");
    let page = browser.get(approval.as_str()).await;
    let csrf = crate::harness::input_value(&page.body, "csrf").unwrap();
    let req = crate::harness::input_value(&page.body, "req").unwrap();
    let approve = [
        ("csrf", csrf.as_str()),
        ("req", req.as_str()),
        ("approval", "approve"),
    ];
    let resp = browser.post_form(&app.url("/approval"), &approve).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert!(resp.location().unwrap().as_str().starts_with(KS_REDIRECT));
    // The same approval again: the request is finished, no second code.
    let again = browser.post_form(&app.url("/approval"), &approve).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    assert!(again.header("location").is_none());
    // The old login form: its CSRF token was replaced at login.
    let again = browser.post_form(&action, &login).await;
    assert!(
        again.status == StatusCode::FORBIDDEN || again.status == StatusCode::BAD_REQUEST,
        "{}",
        again.status
    );
    assert!(again.header("location").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_a_bad_id_token_hint_is_refused() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    for hint in ["garbage", "a.b.c"] {
        let resp = browser
            .get(&app.url(&format!("/logout?id_token_hint={hint}")))
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{hint}");
        assert!(resp.header("location").is_none());
    }
    // A hint for one client with client_id of another.
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let query = crate::harness::encode_form(&[
        ("id_token_hint", tokens["id_token"].as_str().unwrap()),
        ("client_id", KS_ID),
    ]);
    let resp = browser.get(&app.url(&format!("/logout?{query}"))).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    // An expired ID token is still a fine hint.
    app.clock.advance(7200);
    let query =
        crate::harness::encode_form(&[("id_token_hint", tokens["id_token"].as_str().unwrap())]);
    let resp = browser.get(&app.url(&format!("/logout?{query}"))).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_and_content_types_are_client_errors() {
    let app = TestApp::spawn("").await;
    let resp = app.get("/token").await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    let resp = app.get("/introspect").await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    let resp = app
        .post_raw("/auth", "application/json", "{}", ClientAuth::None)
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    let resp = app
        .post_raw("/introspect", "application/json", "{}", GRAFANA)
        .await;
    resp.assert_oauth_error(400, "invalid_request");
    let resp = app
        .post_raw(
            "/token",
            "application/x-www-form-urlencoded",
            "%ff%fe=%c3",
            GRAFANA,
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redemptions_of_one_code_yield_one_token_response() {
    let app = TestApp::spawn("").await;
    let code = app.grafana_code(&app.browser(), &ALICE).await;
    let attempts = (0..6).map(|_| app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA));
    let results = futures_join_all(attempts).await;
    let ok = results
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "exactly one exchange wins");
    for r in results.iter().filter(|r| r.status != StatusCode::OK) {
        r.assert_oauth_error(400, "invalid_grant");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_yield_one_new_token() {
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", rt)];
    let attempts = (0..6).map(|_| app.token(&form, GRAFANA));
    let results = futures_join_all(attempts).await;
    let ok = results
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert!(ok <= 1, "{ok} refreshes of one token succeeded");
    for r in results.iter().filter(|r| r.status != StatusCode::OK) {
        r.assert_oauth_error(400, "invalid_grant");
    }
}

/// Runs the futures concurrently on the test's runtime and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future,
{
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("finished")).collect()
}

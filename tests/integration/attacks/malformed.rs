//! Requests that break the protocol's shape rules (RFC 6749 3.1, 3.2, 4.1.2.1, 5.2): missing,
//! duplicated or oversized parameters, unsupported grants and modes, wrong methods and
//! content types. Each is refused with the exact error, never a 5xx.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::json;

use super::{GRAFANA, assert_error_page, assert_error_redirect, auth, grafana_url};
use crate::harness::{ALICE, ClientAuth, GRAFANA_ID, GRAFANA_REDIRECT, TestApp};

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
async fn introspection_and_revocation_without_a_token_are_invalid_request() {
    let app = TestApp::spawn("").await;
    for path in ["/introspect", "/revoke"] {
        app.post(path, &[], GRAFANA)
            .await
            .assert_oauth_error(400, "invalid_request");
        app.post(path, &[("token", "")], GRAFANA)
            .await
            .assert_oauth_error(400, "invalid_request");
        app.post(path, &[("token", "a"), ("token", "b")], GRAFANA)
            .await
            .assert_oauth_error(400, "invalid_request");
    }
    // A code exchange without the code.
    app.token(
        &[
            ("grant_type", "authorization_code"),
            ("redirect_uri", GRAFANA_REDIRECT),
        ],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "invalid_request");
    // The provider still serves a normal login afterwards.
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    assert!(tokens["access_token"].is_string());
}

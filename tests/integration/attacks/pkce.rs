//! PKCE downgrade and bypass (RFC 7636, RFC 9700 2.1.1 and 4.8): S256 only, required for
//! public clients, verified whenever a challenge was sent, and a verifier without a challenge
//! is a downgrade.

use reqwest::StatusCode;

use super::{GRAFANA, assert_error_redirect, auth, grafana_url};
use crate::harness::{
    ALICE, CLI_ID, CLI_REDIRECT, ClientAuth, GRAFANA_REDIRECT, TestApp, pkce_pair,
};

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
async fn only_s256_spelled_exactly_is_accepted() {
    let app = TestApp::spawn("").await;
    let (_, challenge) = pkce_pair();
    for method in ["s256", "S-256", "SHA256", "S512", "plain ", "none"] {
        let resp = auth(
            &app,
            &grafana_url(
                &app,
                &[
                    ("code_challenge", Some(&challenge)),
                    ("code_challenge_method", Some(method)),
                ],
            ),
        )
        .await;
        assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
    }
    // A method without a challenge is no PKCE at all, not a silent downgrade.
    let resp = auth(
        &app,
        &grafana_url(&app, &[("code_challenge_method", Some("S256"))]),
    )
    .await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_that_is_not_a_sha256_value_is_refused() {
    let app = TestApp::spawn("").await;
    let (_, good) = pkce_pair();
    let padded = format!("{good}=");
    let standard_alphabet = format!("+/{}", &good[2..]);
    for bad in [
        &good[..42],
        &padded,
        &standard_alphabet,
        &"a".repeat(128),
        "short",
    ] {
        let resp = auth(
            &app,
            &grafana_url(
                &app,
                &[
                    ("code_challenge", Some(bad)),
                    ("code_challenge_method", Some("S256")),
                ],
            ),
        )
        .await;
        assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_clients_code_needs_its_own_verifier() {
    let app = TestApp::spawn("").await;
    let (verifier, challenge) = pkce_pair();
    let redirect = "http://127.0.0.1:8123/callback";
    let url = app.auth_url(&[
        ("client_id", CLI_ID),
        ("redirect_uri", redirect),
        ("response_type", "code"),
        ("scope", "openid"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let code = app.browser().authorize(&url, Some(&ALICE)).await.code();
    let public = ClientAuth::Public(CLI_ID);
    // No verifier; the challenge itself replayed as a verifier (a plain downgrade); another
    // verifier of the right shape.
    app.exchange(&code, redirect, None, public)
        .await
        .assert_oauth_error(400, "invalid_grant");
    app.exchange(&code, redirect, Some(&challenge), public)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let (other, _) = pkce_pair();
    app.exchange(&code, redirect, Some(&other), public)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // The failed attempts did not burn the code.
    let resp = app.exchange(&code, redirect, Some(&verifier), public).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_of_the_wrong_shape_is_refused_even_if_it_hashes_right() {
    // RFC 7636 4.1: 43 to 128 characters of [A-Za-z0-9-._~]. A short or exotic verifier
    // whose hash was sent as the challenge is still refused.
    let app = TestApp::spawn("").await;
    for verifier in [
        "short-verifier",
        "verifier with spaces and ünïcode and enough length!!",
    ] {
        let challenge = idbridge::oidc::random::sha256_b64(verifier.as_bytes());
        let url = grafana_url(
            &app,
            &[
                ("code_challenge", Some(&challenge)),
                ("code_challenge_method", Some("S256")),
            ],
        );
        let code = app.browser().authorize(&url, Some(&ALICE)).await.code();
        app.exchange(&code, GRAFANA_REDIRECT, Some(verifier), GRAFANA)
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
}

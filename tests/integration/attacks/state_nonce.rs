//! State and nonce handling (RFC 6749 4.1.2 and 10.12, RFC 9700 2.1 and 4.7, OpenID Connect
//! Core 3.1.2.1 and 3.1.3.7): both are the client's values, echoed byte for byte and never
//! altered, invented, or replaceable at the token endpoint.

use reqwest::StatusCode;

use super::{GRAFANA, assert_error_redirect, auth, grafana_url, query_of};
use crate::harness::{
    ALICE, ClientAuth, GRAFANA_REDIRECT, KS_ID, KS_REDIRECT, KS_SECRET, TestApp, decode_jwt,
};

/// Values a client might use as state or nonce: reserved URL characters, spaces, unicode,
/// percent signs that must not be decoded twice, HTML.
const AWKWARD: &[&str] = &[
    "a&b=c",
    "x y+z",
    "%41%2B%26",
    "日本語 ☃ 😀",
    "<b>'\"</b>",
    "?#/;:@",
    "eyJhbGciOiJub25lIn0.e30.",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_echoed_byte_for_byte_in_success_and_error() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    for state in AWKWARD {
        // Success by redirect.
        let flow = browser
            .authorize(&grafana_url(&app, &[("state", Some(state))]), None)
            .await;
        let params = flow.params();
        assert!(params.contains_key("code"), "{state:?}: {params:?}");
        assert_eq!(params["state"], *state, "success");
        // Success by form_post.
        let flow = browser
            .authorize(
                &grafana_url(
                    &app,
                    &[("state", Some(state)), ("response_mode", Some("form_post"))],
                ),
                None,
            )
            .await;
        assert_eq!(flow.params()["state"], *state, "form_post");
        // An error.
        let resp = auth(
            &app,
            &grafana_url(
                &app,
                &[("state", Some(state)), ("response_type", Some("token"))],
            ),
        )
        .await;
        assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "unsupported_response_type");
        assert_eq!(query_of(&resp)["state"], *state, "error");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_state_is_invented_when_none_was_sent() {
    let app = TestApp::spawn("").await;
    let flow = app
        .browser()
        .authorize(&grafana_url(&app, &[("state", None)]), Some(&ALICE))
        .await;
    assert!(!flow.params().contains_key("state"), "{:?}", flow.params());
    let resp = auth(
        &app,
        &grafana_url(&app, &[("state", None), ("response_type", Some("token"))]),
    )
    .await;
    assert!(!query_of(&resp).contains_key("state"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_is_in_the_id_token_exactly_and_absent_when_not_sent() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    for nonce in AWKWARD {
        let code = browser
            .authorize(&grafana_url(&app, &[("nonce", Some(nonce))]), None)
            .await
            .code();
        // A nonce sent at the token endpoint is no way to replace the request's.
        let resp = app
            .token(
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", GRAFANA_REDIRECT),
                    ("nonce", "attacker-nonce"),
                ],
                GRAFANA,
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        let (_, claims) = decode_jwt(resp.json()["id_token"].as_str().unwrap());
        assert_eq!(claims["nonce"], *nonce);
    }
    // KubeSphere sends no nonce: the ID token has none.
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
    ]);
    let code = browser.authorize(&url, None).await.code();
    let resp = app
        .exchange(
            &code,
            KS_REDIRECT,
            None,
            ClientAuth::Basic(KS_ID, KS_SECRET),
        )
        .await;
    let (_, claims) = decode_jwt(resp.json()["id_token"].as_str().unwrap());
    assert!(claims.get("nonce").is_none(), "{claims}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_state_or_nonce_is_invalid_request() {
    let app = TestApp::spawn("").await;
    let url = format!("{}&nonce=one&nonce=two", grafana_url(&app, &[]));
    let resp = auth(&app, &url).await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
    assert_eq!(query_of(&resp)["state"], "neg-state");
    // Two states: neither is echoed, since the server cannot know which is the client's.
    let url = format!("{}&state=other", grafana_url(&app, &[]));
    let resp = auth(&app, &url).await;
    assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "invalid_request");
    assert!(!query_of(&resp).contains_key("state"));
}

//! Redirect URIs that look registered but are not (RFC 9700 2.1 and 4.1, RFC 6749 3.1.2,
//! RFC 8252 7.3): matching is byte for byte; the only leniency is the port of a loopback
//! redirect of a public client.

use reqwest::StatusCode;

use super::{GRAFANA, assert_error_page, auth, grafana_url};
use crate::harness::{
    ALICE, CLI_ID, ClientAuth, GRAFANA_REDIRECT, KS_REDIRECT, TestApp, pkce_pair,
};

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
async fn userinfo_encoded_traversal_and_other_look_alikes_are_refused() {
    let app = TestApp::spawn("").await;
    for bad in [
        // Userinfo: browsers go to the host after the '@'.
        "https://evil.example.com@grafana.example.com/login/generic_oauth",
        "https://grafana.example.com@evil.example.com/login/generic_oauth",
        "https://grafana.example.com:443@evil.example.com/login/generic_oauth",
        // Encoded traversal and separators.
        "https://grafana.example.com/login/%2e%2e/login/generic_oauth",
        "https://grafana.example.com/login/generic_oauth/%2e%2e/generic_oauth",
        "https://grafana.example.com/login/generic_oauth/%2E%2E/generic_oauth",
        "https://grafana.example.com/login%2fgeneric_oauth",
        "https://grafana.example.com/login/generic_oauth%2f..%2f..%2fevil",
        "https://grafana.example.com/login/generic_oauth%23.evil.example.com",
        "https://grafana.example.com/login/generic_oauth%00",
        "https://grafana.example.com/login/generic_oauth\\@evil.example.com",
        // Empty query or fragment, trailing dot, whitespace.
        "https://grafana.example.com/login/generic_oauth?",
        "https://grafana.example.com/login/generic_oauth#",
        "https://grafana.example.com./login/generic_oauth",
        " https://grafana.example.com/login/generic_oauth",
        "https://grafana.example.com/login/generic_oauth ",
        "https://grafana.example.com/login/generic_oauth%20",
        // Punycode and IDN look-alikes of the host.
        "https://xn--grafna-4ve.example.com/login/generic_oauth",
        "https://grafаna.example.com/login/generic_oauth",
    ] {
        let resp = auth(&app, &grafana_url(&app, &[("redirect_uri", Some(bad))])).await;
        assert_error_page(&resp, bad);
        assert!(resp.body.contains("Invalid redirect address"), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_client_loopback_redirect_varies_only_in_its_port() {
    let app = TestApp::spawn("").await;
    let (_, challenge) = pkce_pair();
    let url = |redirect: &str| {
        app.auth_url(&[
            ("client_id", CLI_ID),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
    };
    for bad in [
        "http://127.0.0.1:8000/callback/",
        "http://127.0.0.1:8000/Callback",
        "http://127.0.0.1:8000//callback",
        "http://127.0.0.1:8000/callback#",
        "http://127.0.0.1:8000/callback#frag",
        "http://127.0.0.1:8000/callback?",
        "http://[::1]:8000/callback",
        "http://127.0.0.1:8000@evil.example.com/callback",
        "http://evil.example.com:8000/callback",
    ] {
        assert_error_page(&auth(&app, &url(bad)).await, bad);
    }
    // Any port of the registered loopback redirect is fine (RFC 8252 7.3).
    for good in [
        "http://127.0.0.1:8000/callback",
        "http://127.0.0.1:54321/callback",
    ] {
        let resp = auth(&app, &url(good)).await;
        assert_eq!(resp.status, StatusCode::SEE_OTHER, "{good}: {}", resp.body);
        assert!(
            resp.location().unwrap().as_str().starts_with(&app.base),
            "{good}: on to the login page"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_client_loopback_redirect_is_compared_as_written() {
    let app = TestApp::spawn("").await;
    let (_, challenge) = pkce_pair();
    let mut accepted = Vec::new();
    for bad in [
        "http://127.0.0.1:8000/x/../callback",
        "http://127.0.0.1:8000/x/%2e%2e/callback",
        "http://127.1:8000/callback",
        "http://0x7f.0.0.1:8000/callback",
        "HTTP://127.0.0.1:8000/callback",
    ] {
        let url = app.auth_url(&[
            ("client_id", CLI_ID),
            ("redirect_uri", bad),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        if auth(&app, &url).await.status != StatusCode::BAD_REQUEST {
            accepted.push(bad);
        }
    }
    assert!(
        accepted.is_empty(),
        "accepted as the registered loopback redirect: {accepted:?}"
    );
}

/// A confidential client whose registered redirect is on the loopback interface.
const LOOPBACK_ID: &str = "loopback-confidential";
const LOOPBACK_SECRET: &str = "loopback-secret";
const LOOPBACK_REDIRECT: &str = "http://127.0.0.1:7000/cb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confidential_client_gets_no_loopback_port_leniency() {
    let app = TestApp::builder()
        .client(&format!(
            "- id: {LOOPBACK_ID}\n  name: Loopback\n  secret: {LOOPBACK_SECRET}\n  skipApproval: true\n  redirectURIs: [{LOOPBACK_REDIRECT}]"
        ))
        .spawn()
        .await;
    let url = |redirect: &str| {
        app.auth_url(&[
            ("client_id", LOOPBACK_ID),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", "openid"),
        ])
    };
    for bad in [
        "http://127.0.0.1:7001/cb",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:80/cb",
        "http://localhost:7000/cb",
    ] {
        assert_error_page(&auth(&app, &url(bad)).await, bad);
    }
    // The exact URI works end to end.
    let code = app
        .browser()
        .authorize(&url(LOOPBACK_REDIRECT), Some(&ALICE))
        .await
        .code();
    let resp = app
        .exchange(
            &code,
            LOOPBACK_REDIRECT,
            None,
            ClientAuth::Basic(LOOPBACK_ID, LOOPBACK_SECRET),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_redirect_uri_must_be_the_one_of_the_request() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    for other in [
        "https://grafana.example.com/login/generic_oauth/",
        "https://grafana.example.com/login/Generic_OAuth",
        "https://GRAFANA.example.com/login/generic_oauth",
        "https://grafana.example.com:443/login/generic_oauth",
        "https://grafana.example.com/login/generic_oauth?x=1",
        "https://grafana.example.com/login/%67eneric_oauth",
    ] {
        let code = app.grafana_code(&browser, &ALICE).await;
        app.exchange(&code, other, None, GRAFANA)
            .await
            .assert_oauth_error(400, "invalid_grant");
        // The mismatch did not burn the code: its owner still redeems it.
        let resp = app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA).await;
        assert_eq!(resp.status, StatusCode::OK, "{other}: {}", resp.body);
    }
}

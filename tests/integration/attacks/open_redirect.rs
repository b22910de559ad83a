//! Using the provider as an open redirector (RFC 9700 4.11, RFC 6749 4.1.2.1, OpenID Connect
//! RP-Initiated Logout 1.0 section 3): until the client and its redirect URI are established
//! every error is a page, and logout returns only to a URI registered for the client.

use reqwest::StatusCode;

use super::{assert_error_page, assert_error_redirect, auth, grafana_url};
use crate::harness::{
    ALICE, ClientAuth, GRAFANA_REDIRECT, KS_ID, KS_LOGOUT_REDIRECT, KS_REDIRECT, KS_SECRET,
    TestApp, encode_form,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_client_id_shows_an_error_page() {
    let app = TestApp::spawn("").await;
    let resp = auth(&app, &grafana_url(&app, &[("client_id", None)])).await;
    assert_error_page(&resp, "no client_id");
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
async fn auth_with_an_unsupported_response_type_redirects_the_error() {
    let app = TestApp::spawn("").await;
    for rt in ["token", "id_token", "code token", "code id_token"] {
        let resp = auth(&app, &grafana_url(&app, &[("response_type", Some(rt))])).await;
        assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, "unsupported_response_type");
    }
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
async fn a_bad_request_with_an_unregistered_redirect_uri_is_a_page_not_a_redirect() {
    let app = TestApp::spawn("").await;
    let evil = "https://evil.example.com/callback";
    for changes in [
        // Two errors at once: the redirect URI is checked first, so nothing goes to evil.
        vec![
            ("response_type", Some("token")),
            ("redirect_uri", Some(evil)),
        ],
        vec![
            ("scope", Some("nothing-known")),
            ("redirect_uri", Some(evil)),
        ],
        vec![("prompt", Some("none")), ("redirect_uri", Some(evil))],
        vec![("request", Some("x")), ("redirect_uri", Some(evil))],
        vec![("client_id", Some("nobody")), ("redirect_uri", Some(evil))],
        // Schemes a browser would run rather than visit.
        vec![("redirect_uri", Some("javascript:alert(document.domain)//"))],
        vec![(
            "redirect_uri",
            Some("data:text/html,<script>alert(1)</script>"),
        )],
        vec![(
            "redirect_uri",
            Some("//evil.example.com/login/generic_oauth"),
        )],
        vec![("redirect_uri", Some("/login/generic_oauth"))],
    ] {
        let resp = auth(&app, &grafana_url(&app, &changes)).await;
        assert_error_page(&resp, &format!("{changes:?}"));
        // The page may quote the request in its own same-origin links, never link away.
        assert!(!resp.body.contains("href=\"https://evil"), "{changes:?}");
        assert!(!resp.body.contains("href=\"javascript:"), "{changes:?}");
        assert!(!resp.body.contains("http-equiv=\"refresh\""), "{changes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_none_for_an_unknown_redirect_never_reveals_the_session() {
    // A signed-in browser: prompt=none must not answer login_required or a code to a URI
    // that is not registered (it would tell an attacker whether the user is signed in).
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    let url = grafana_url(
        &app,
        &[
            ("prompt", Some("none")),
            ("redirect_uri", Some("https://evil.example.com/cb")),
        ],
    );
    assert_error_page(&browser.get(&url).await, "prompt=none, evil redirect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_a_valid_hint_never_returns_to_another_clients_or_hosts_uri() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    // Alice signs in at KubeSphere: a genuine ID token for the client that registered
    // KS_LOGOUT_REDIRECT, and one for Grafana, which registered no logout URI.
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("state", "s"),
    ]);
    let code = browser.authorize(&url, Some(&ALICE)).await.code();
    let ks = app
        .exchange(
            &code,
            KS_REDIRECT,
            None,
            ClientAuth::Basic(KS_ID, KS_SECRET),
        )
        .await
        .json();
    let grafana = app.grafana_tokens(&browser, &ALICE).await;
    let ks_hint = ks["id_token"].as_str().unwrap();
    let grafana_hint = grafana["id_token"].as_str().unwrap();
    for (hint, target) in [
        (ks_hint, "https://evil.example.com/"),
        (ks_hint, "https://kubesphere.example.com.evil.example/login"),
        (
            ks_hint,
            "https://kubesphere.example.com/login?next=https://evil.example.com",
        ),
        (
            ks_hint,
            "https://evil.example.com@kubesphere.example.com/login",
        ),
        (ks_hint, "https://kubesphere.example.com/Login"),
        // Registered, but for another client than the hint's.
        (grafana_hint, KS_LOGOUT_REDIRECT),
    ] {
        let query = encode_form(&[
            ("id_token_hint", hint),
            ("post_logout_redirect_uri", target),
        ]);
        let resp = browser.get(&app.url(&format!("/logout?{query}"))).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{target}: {}",
            resp.body
        );
        assert!(
            resp.header("location").is_none(),
            "{target}: no open redirect"
        );
        assert!(resp.body.contains("Invalid redirect address"), "{target}");
    }
    // The refused logouts ended nothing: the session still signs Alice in without a form.
    let flow = browser.authorize(&url, None).await;
    assert_eq!(flow.login_forms, 0, "a refused logout keeps the session");
    // With the right pair the logout returns to the registered URI.
    let query = encode_form(&[
        ("id_token_hint", ks_hint),
        ("post_logout_redirect_uri", KS_LOGOUT_REDIRECT),
    ]);
    let resp = browser.get(&app.url(&format!("/logout?{query}"))).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert_eq!(resp.header("location"), Some(KS_LOGOUT_REDIRECT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_after_the_redirect_is_trusted_go_only_to_that_exact_uri() {
    let app = TestApp::spawn("").await;
    for (changes, code) in [
        (
            vec![("response_type", Some("token"))],
            "unsupported_response_type",
        ),
        (vec![("scope", Some("nothing-known"))], "invalid_scope"),
        (vec![("max_age", Some("-5"))], "invalid_request"),
    ] {
        let resp = auth(&app, &grafana_url(&app, &changes)).await;
        assert_error_redirect(&app, &resp, GRAFANA_REDIRECT, code);
        let loc = resp.location().unwrap();
        assert_eq!(loc.host_str(), Some("grafana.example.com"));
        assert_eq!(loc.path(), "/login/generic_oauth");
        assert_eq!(loc.fragment(), None);
    }
}

//! Guessing and confusing credentials (RFC 6749 2.3.1 and 5.2, RFC 6819 4.3.2 and 5.1.4.2.3):
//! unknown clients, wrong or near-miss secrets, two methods at once, public clients posing as
//! confidential ones, and wrong passwords at the sign-in form.

use reqwest::StatusCode;

use super::{GRAFANA, grafana_url};
use crate::harness::{ALICE, ClientAuth, GRAFANA_ID, GRAFANA_REDIRECT, GRAFANA_SECRET, TestApp};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let (action, csrf) = browser.open_login_form(&grafana_url(&app, &[])).await;
    let unknown_user = browser
        .submit_login(&action, "mallory", "wrong", &csrf)
        .await;
    let wrong_password = browser
        .submit_login(&action, ALICE.login, "wrong", &csrf)
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
        .submit_login(&action, ALICE.login, ALICE.password, &csrf)
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert!(
        resp.location()
            .unwrap()
            .as_str()
            .starts_with(GRAFANA_REDIRECT)
    );
}

/// A token request whose client authentication is the only thing that can fail first.
async fn with_secret(app: &TestApp, secret: &str) -> crate::harness::Resp {
    app.token(
        &[("grant_type", "refresh_token"), ("refresh_token", "x.y")],
        ClientAuth::Basic(GRAFANA_ID, secret),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_miss_secrets_are_invalid_client() {
    let app = TestApp::spawn("").await;
    let upper = GRAFANA_SECRET.to_uppercase();
    let longer = format!("{GRAFANA_SECRET}x");
    let spaced = format!("{GRAFANA_SECRET} ");
    let nul = format!("{GRAFANA_SECRET}\0");
    for secret in [
        upper.as_str(),
        &GRAFANA_SECRET[..GRAFANA_SECRET.len() - 1],
        &longer,
        &spaced,
        &nul,
        crate::harness::KS_SECRET,
        "' OR '1'='1",
    ] {
        let resp = with_secret(&app, secret).await;
        resp.assert_oauth_error(401, "invalid_client");
        assert!(
            resp.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Basic")),
            "{secret:?}"
        );
    }
    // The same in the body (client_secret_post).
    app.token(
        &[("grant_type", "refresh_token"), ("refresh_token", "x.y")],
        ClientAuth::Post(GRAFANA_ID, &upper),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    // The right secret is still accepted: the grant, not the client, is what fails now.
    with_secret(&app, GRAFANA_SECRET)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_guessing_is_refused_every_time_then_rate_limited() {
    let app = TestApp::spawn("rateLimits:\n  tokenPerMinute: 20\n").await;
    let mut refused = 0;
    let mut limited = None;
    for i in 0..40 {
        let resp = with_secret(&app, &format!("guess-{i}")).await;
        if resp.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(resp);
            break;
        }
        resp.assert_oauth_error(401, "invalid_client");
        refused += 1;
    }
    let limited = limited.expect("secret guessing is never rate limited");
    assert!(
        refused >= 1,
        "limited before the first guess was even answered"
    );
    assert_eq!(limited.json()["error"], "temporarily_unavailable");
    let wait: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    // While limited even the right secret waits: the limit is per address, not per guess.
    assert_eq!(
        with_secret(&app, GRAFANA_SECRET).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_limits_configured_every_guess_is_still_a_plain_401() {
    let app = TestApp::spawn("").await;
    for i in 0..25 {
        with_secret(&app, &format!("guess-{i}"))
            .await
            .assert_oauth_error(401, "invalid_client");
    }
    // Guessing locks nobody out: the client itself carries on.
    with_secret(&app, GRAFANA_SECRET)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_mismatched_client_credentials_are_refused() {
    let app = TestApp::spawn("").await;
    let send = |authorization: Vec<String>, body: &str| {
        let mut req = app
            .http
            .post(app.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string());
        for a in authorization {
            req = req.header("authorization", a);
        }
        async move {
            let resp = req.send().await.expect("POST /token");
            let status = resp.status();
            let body = resp.text().await.unwrap();
            let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
            (status, json["error"].as_str().unwrap_or("").to_string())
        }
    };
    let body = "grant_type=refresh_token&refresh_token=x.y";
    for header in [
        "Basic !!!not-base64!!!",
        "Basic Z3JhZmFuYQ==",         // "grafana" without a colon
        "Basic OmdyYWZhbmEtc2VjcmV0", // ":grafana-secret", empty id
        "Digest username=grafana",
        "Bearer grafana-secret",
    ] {
        let (status, error) = send(vec![header.to_string()], body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header}");
        assert_eq!(error, "invalid_client", "{header}");
    }
    // Two Authorization headers.
    let good = crate::harness::basic(GRAFANA_ID, GRAFANA_SECRET);
    let (status, error) = send(vec![good.clone(), good.clone()], body).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    // Basic for Grafana with another client's id in the body.
    let (status, error) = send(
        vec![good],
        "grant_type=refresh_token&refresh_token=x.y&client_id=kubesphere",
    )
    .await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_clients_cannot_pose_as_confidential_or_introspect() {
    let app = TestApp::spawn("").await;
    // A public client has no secret to check: one sent anyway is ignored, and the request
    // is judged as the public client's (its refresh token here is bogus).
    app.token(
        &[("grant_type", "refresh_token"), ("refresh_token", "x.y")],
        ClientAuth::Post(crate::harness::CLI_ID, "made-up"),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    // A confidential client cannot pass as public anywhere.
    for path in ["/introspect", "/revoke"] {
        app.post(path, &[("token", "x")], ClientAuth::Public(GRAFANA_ID))
            .await
            .assert_oauth_error(401, "invalid_client");
        app.post(path, &[("token", "x")], ClientAuth::None)
            .await
            .assert_oauth_error(401, "invalid_client");
    }
    app.post(
        "/introspect",
        &[("token", "x")],
        ClientAuth::Public(crate::harness::CLI_ID),
    )
    .await
    .assert_oauth_error(400, "unauthorized_client");
}

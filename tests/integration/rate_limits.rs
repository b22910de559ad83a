//! Request limits and the password backoff, over HTTP.

use reqwest::StatusCode;

use crate::harness::{ALICE, ClientAuth, GRAFANA_ID, GRAFANA_REDIRECT, GRAFANA_SECRET, TestApp};

const LIMITS: &str = "rateLimits:
  loginPerMinute: 20
  tokenPerMinute: 20
  failuresBeforeDelay: 3
  maxDelay: 1m
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_answers_429_with_retry_after() {
    let app = TestApp::spawn(LIMITS).await;
    let auth = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let resp = app
            .token(
                &[("grant_type", "refresh_token"), ("refresh_token", "x.y")],
                auth,
            )
            .await;
        statuses.push(resp.status);
        if resp.status == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = resp
                .header("retry-after")
                .expect("Retry-After")
                .parse()
                .expect("seconds");
            assert!((1..=60).contains(&wait), "{wait}");
            assert_eq!(resp.json()["error"], "temporarily_unavailable");
            break;
        }
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.body);
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "never limited: {statuses:?}"
    );
    // Discovery and JWKS are never limited.
    for _ in 0..30 {
        assert_eq!(app.get("/keys").await.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_delay_the_account_then_it_recovers() {
    let app = TestApp::spawn(LIMITS).await;
    let browser = app.browser();
    let url = app.auth_url(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
    ]);
    let (action, csrf) = browser.open_login_form(&url).await;
    let attempt = |password: &'static str| {
        let (browser, action, csrf) = (&browser, action.clone(), csrf.clone());
        async move {
            browser
                .submit_login(&action, ALICE.login, password, &csrf)
                .await
        }
    };
    for _ in 0..3 {
        assert_eq!(attempt("wrong").await.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password must wait: the answer says for how long.
    let delayed = attempt(ALICE.password).await;
    assert_eq!(
        delayed.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        delayed.body
    );
    assert!(delayed.header("retry-after").is_some());
    // Another account is not affected.
    let other = app.browser();
    let (action2, csrf2) = other.open_login_form(&url).await;
    let resp = other.submit_login(&action2, "bob", "wrong", &csrf2).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    // The delay is short after three failures (one second): then the right password works.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ok = attempt(ALICE.password).await;
    assert!(ok.status.is_redirection(), "{} {}", ok.status, ok.body);
}

//! Metrics and the audit trail, observed from outside after real traffic.

use reqwest::StatusCode;

use crate::harness::{ALICE, ClientAuth, GRAFANA_ID, GRAFANA_SECRET, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_every_family_after_a_login() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let tokens = app.grafana_tokens(&browser, &ALICE).await;
    // A refresh, then the reuse of the rotated token: both are counted.
    let refresh = tokens["refresh_token"].as_str().expect("refresh token");
    let auth = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);
    let first = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            auth,
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let reused = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            auth,
        )
        .await;
    reused.assert_oauth_error(400, "invalid_grant");

    let resp = app.get("/metrics").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        resp.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{:?}",
        resp.header("content-type")
    );
    let text = resp.body;
    for needle in [
        "idbridge_logins_total{connector=\"local\",outcome=\"success\"}",
        "idbridge_tokens_issued_total{grant_type=\"authorization_code\",client=\"grafana\"}",
        "idbridge_tokens_issued_total{grant_type=\"refresh_token\",client=\"grafana\"}",
        "idbridge_refresh_reuse_detected_total",
        "idbridge_http_request_duration_seconds_bucket{route=\"/token\",method=\"POST\",status=\"200\"",
        "idbridge_active_sessions",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    // Route templates, not raw paths: the label set stays bounded.
    assert!(text.contains("route=\"/login/{connector}\""), "{text}");
    assert!(!text.contains("route=\"/login/local\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_records_logins_tokens_and_reuse() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let tokens = app.grafana_tokens(&browser, &ALICE).await;
    let refresh = tokens["refresh_token"].as_str().expect("refresh token");
    let auth = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);
    for _ in 0..2 {
        let _ = app
            .token(
                &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
                auth,
            )
            .await;
    }
    // A failed password attempt too.
    let failed = app.browser();
    let (action, csrf) = failed
        .open_login_form(&app.auth_url(&[
            ("client_id", GRAFANA_ID),
            ("redirect_uri", crate::harness::GRAFANA_REDIRECT),
            ("response_type", "code"),
            ("scope", "openid"),
        ]))
        .await;
    let resp = failed
        .post_form(
            &action,
            &[("login", "alice"), ("password", "wrong"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);

    // Events are written in the background, in batches: poll briefly.
    let storage = app.storage();
    let mut kinds = Vec::new();
    for _ in 0..50 {
        let events = storage
            .list_audit_events(0, None, 100)
            .await
            .expect("audit");
        kinds = events.iter().map(|e| e.kind.clone()).collect();
        if kinds.iter().any(|k| k == "refresh_reuse_detected")
            && kinds.iter().any(|k| k == "login_failed")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for kind in [
        "login_succeeded",
        "token_issued",
        "refresh_reuse_detected",
        "login_failed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    let events = storage
        .list_audit_events(0, None, 100)
        .await
        .expect("audit");
    let failure = events
        .iter()
        .find(|e| e.kind == "login_failed")
        .expect("failure");
    // The login name is kept; the password never is.
    let detail = failure.detail.clone().unwrap_or_default();
    assert!(detail.contains("alice"), "{detail}");
    assert!(!detail.contains("wrong"), "{detail}");
}

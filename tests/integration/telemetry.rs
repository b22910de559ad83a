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
    let resp = failed.submit_login(&action, "alice", "wrong", &csrf).await;
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

/// Log lines captured from every thread of this test process.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_secret_or_token_reaches_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Everything, at debug level, as JSON (fields included), on this thread: the server runs on
    // the same current-thread runtime, so its request handling is captured too.
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let code = app.grafana_code(&browser, &ALICE).await;
    let tokens = app
        .exchange(
            &code,
            crate::harness::GRAFANA_REDIRECT,
            None,
            ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
        )
        .await
        .json();
    let auth = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);
    let access = tokens["access_token"].as_str().expect("access").to_string();
    let id_token = tokens["id_token"].as_str().expect("id").to_string();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let refreshed = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            auth,
        )
        .await
        .json();
    let new_refresh = refreshed["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_string();
    // Failures log too: a wrong secret, a reused token, a garbage bearer token.
    let wrong_secret = "wrong-secret-7f3a9c";
    let _ = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &new_refresh),
            ],
            ClientAuth::Basic(GRAFANA_ID, wrong_secret),
        )
        .await;
    let _ = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            auth,
        )
        .await;
    let _ = app.userinfo(Some(&access)).await;
    let _ = app.userinfo(Some("not.a.token")).await;
    let _ = app.introspect(&access, auth).await;
    let _ = app.post("/revoke", &[("token", &new_refresh)], auth).await;
    let wrong_password = "wrong-password-5d1e";
    let other = app.browser();
    let (action, csrf) = other
        .open_login_form(&app.auth_url(&[
            ("client_id", GRAFANA_ID),
            ("redirect_uri", crate::harness::GRAFANA_REDIRECT),
            ("response_type", "code"),
            ("scope", "openid"),
        ]))
        .await;
    let _ = other
        .submit_login(&action, "alice", wrong_password, &csrf)
        .await;
    let _ = browser.get(&app.url("/logout")).await;

    let logs = String::from_utf8_lossy(&captured.0.lock().expect("logs")).to_string();
    assert!(logs.contains("tokens issued"), "the capture works: {logs}");
    let secrets = [
        ("client secret", GRAFANA_SECRET.to_string()),
        ("wrong client secret", wrong_secret.to_string()),
        ("password", ALICE.password.to_string()),
        ("wrong password", wrong_password.to_string()),
        ("authorization code", code),
        ("access token", access),
        ("ID token", id_token),
        ("refresh token", refresh.clone()),
        // The secret half of a refresh token is what matters; its id alone is harmless.
        (
            "refresh token secret",
            refresh.split_once('.').expect("id.secret").1.to_string(),
        ),
        ("rotated refresh token", new_refresh),
    ];
    for (what, value) in &secrets {
        assert!(
            !logs.contains(value.as_str()),
            "the logs contain the {what}"
        );
    }
}

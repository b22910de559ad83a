//! Authorization code injection, replay and theft (RFC 6749 4.1.2 and 10.5, RFC 6819 4.4.1,
//! RFC 9700 4.5): a code is redeemed once, by its own client, with its own redirect URI and
//! verifier, before it expires; a replay revokes what the first exchange issued.

use reqwest::StatusCode;

use super::{GRAFANA, futures_join_all};
use crate::harness::{ALICE, ClientAuth, GRAFANA_REDIRECT, KS_ID, KS_REDIRECT, KS_SECRET, TestApp};

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
async fn a_stolen_code_injected_into_the_attackers_session_fails_pkce() {
    // RFC 9700 4.5: the attacker steals Alice's code and injects it into his own session
    // with the same client; his session holds his own verifier, so the exchange fails.
    let app = TestApp::spawn("").await;
    let (_alice_verifier, alice_challenge) = crate::harness::pkce_pair();
    let (attacker_verifier, _) = crate::harness::pkce_pair();
    let url = super::grafana_url(
        &app,
        &[
            ("code_challenge", Some(&alice_challenge)),
            ("code_challenge_method", Some("S256")),
        ],
    );
    let stolen = app.browser().authorize(&url, Some(&ALICE)).await.code();
    app.exchange(&stolen, GRAFANA_REDIRECT, Some(&attacker_verifier), GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Without a verifier (an attacker's client that never used PKCE) it fails too.
    app.exchange(&stolen, GRAFANA_REDIRECT, None, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessed_altered_and_foreign_codes_are_invalid_grant() {
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let code = app.grafana_code(&app.browser(), &ALICE).await;
    let longer = format!("{code}x");
    let upper = code.to_uppercase();
    for bad in [
        "x",
        "0000000000000000000000000000000000000000",
        &code[..code.len() - 1],
        &longer,
        &upper,
        tokens["access_token"].as_str().unwrap(),
        tokens["refresh_token"].as_str().unwrap(),
        tokens["id_token"].as_str().unwrap(),
    ] {
        if bad == code {
            continue;
        }
        app.exchange(bad, GRAFANA_REDIRECT, None, GRAFANA)
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    // An empty code is a malformed request, not a wrong grant.
    app.exchange("", GRAFANA_REDIRECT, None, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_request");
    // None of this touched the real code.
    let resp = app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_not_a_refresh_token_or_a_device_code() {
    let app = TestApp::spawn("").await;
    let code = app.grafana_code(&app.browser(), &ALICE).await;
    app.token(
        &[("grant_type", "refresh_token"), ("refresh_token", &code)],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    // Nor a device code. Grafana may not use the device grant at all, so the refusal comes
    // first as unauthorized_client (RFC 6749 5.2); either way the code is not consumed.
    app.token(
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", &code),
        ],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "unauthorized_client");
    let resp = app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_replayed_by_another_client_revokes_nothing() {
    // Only the owner's replay revokes the grant: a foreign client presenting a redeemed code
    // must not be able to end the owner's tokens.
    let app = TestApp::spawn("").await;
    let code = app.grafana_code(&app.browser(), &ALICE).await;
    let first = app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let access = first.json()["access_token"].as_str().unwrap().to_string();
    app.exchange(
        &code,
        GRAFANA_REDIRECT,
        None,
        ClientAuth::Basic(KS_ID, KS_SECRET),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    assert_eq!(app.userinfo(Some(&access)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_device_grant_is_unauthorized_client() {
    let app = TestApp::spawn("").await;
    app.token(
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", "anything"),
        ],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "unauthorized_client");
}

//! Refresh token reuse and transfer (RFC 6749 6 and 10.4, RFC 6819 5.2.2.3, RFC 9700 4.14):
//! a refresh token is bound to its client, rotates on use, and a refused attempt by anyone
//! else leaves it working for its owner.

use reqwest::StatusCode;

use super::{GRAFANA, futures_join_all};
use crate::harness::{ALICE, ClientAuth, KS_ID, KS_SECRET, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_of_another_client_is_invalid_grant() {
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    app.token(
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        ClientAuth::Basic(KS_ID, KS_SECRET),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    for garbage in ["nonsense", "a.b", "a.b.c", ""] {
        let resp = app
            .token(
                &[("grant_type", "refresh_token"), ("refresh_token", garbage)],
                GRAFANA,
            )
            .await;
        let expected = if garbage.is_empty() {
            "invalid_request"
        } else {
            "invalid_grant"
        };
        resp.assert_oauth_error(400, expected);
    }
    // Asking for more than was granted.
    app.token(
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", "openid phone"),
        ],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "invalid_scope");
    // The refused attempts left the token usable.
    let resp = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            GRAFANA,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_yield_one_new_token() {
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", rt)];
    let attempts = (0..6).map(|_| app.token(&form, GRAFANA));
    let results = futures_join_all(attempts).await;
    let ok = results
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert!(ok <= 1, "{ok} refreshes of one token succeeded");
    for r in results.iter().filter(|r| r.status != StatusCode::OK) {
        r.assert_oauth_error(400, "invalid_grant");
    }
}

const REFRESH: &str = "refresh_token";

async fn refresh(app: &TestApp, token: &str, auth: ClientAuth<'_>) -> crate::harness::Resp {
    app.token(&[("grant_type", REFRESH), ("refresh_token", token)], auth)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_client_can_neither_use_nor_inspect_nor_revoke_a_refresh_token() {
    // What the server does with client A's refresh token in client B's hands: refuses it
    // (invalid_grant), says nothing about it (inactive), ignores a revocation (RFC 7009 2.2),
    // and leaves it working for A. It does not revoke it: B's mistake must not log A out.
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let ks = ClientAuth::Basic(KS_ID, KS_SECRET);
    refresh(&app, rt, ks)
        .await
        .assert_oauth_error(400, "invalid_grant");
    refresh(&app, rt, ClientAuth::Post(KS_ID, KS_SECRET))
        .await
        .assert_oauth_error(400, "invalid_grant");
    refresh(&app, rt, ClientAuth::Public(crate::harness::CLI_ID))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(app.introspect(rt, ks).await["active"], false);
    let resp = app.post("/revoke", &[("token", rt)], ks).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    // A still has it: introspection says active and the refresh works.
    assert_eq!(app.introspect(rt, GRAFANA).await["active"], true);
    let resp = refresh(&app, rt, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_refresh_grant_cannot_refresh() {
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    refresh(
        &app,
        rt,
        ClientAuth::Basic(crate::harness::SERVICE_ID, crate::harness::SERVICE_SECRET),
    )
    .await
    .assert_oauth_error(400, "unauthorized_client");
    assert_eq!(refresh(&app, rt, GRAFANA).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_half_is_invalid_grant_and_revokes_nothing() {
    // The id half of a refresh token alone must not let a guesser revoke the family (a
    // guess is not reuse).
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let (id, secret) = rt.split_once('.').expect("id.secret");
    for guess in [
        format!("{id}.wrong"),
        format!("{id}."),
        format!("{id}.{secret}x"),
        format!("{id}.{}", secret.to_uppercase()),
        format!("{id}.{secret}.{secret}"),
    ] {
        refresh(&app, &guess, GRAFANA)
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    let resp = refresh(&app, rt, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_and_id_tokens_are_not_refresh_tokens() {
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    for key in ["access_token", "id_token"] {
        refresh(&app, tokens[key].as_str().unwrap(), GRAFANA)
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_refresh_tokens_are_invalid_grant() {
    let app = TestApp::spawn("").await;
    let first = app.grafana_tokens(&app.browser(), &ALICE).await;
    let rt = first["refresh_token"].as_str().unwrap();
    let resp = app.post("/revoke", &[("token", rt)], GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK);
    refresh(&app, rt, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Its access token went with it.
    let access = first["access_token"].as_str().unwrap();
    super::assert_invalid_token(&app.userinfo(Some(access)).await, "revoked family");

    let second = app.grafana_tokens(&app.browser(), &ALICE).await;
    app.clock.advance(400 * 86_400);
    refresh(&app, second["refresh_token"].as_str().unwrap(), GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

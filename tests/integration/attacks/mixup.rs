//! Mix-up (RFC 9207, RFC 9700 4.4, OpenID Connect Core 3.1.3.7): every authorization response
//! names this issuer exactly, and codes and tokens of another issuer, even another instance
//! of this software with the same clients, are worthless here.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::json;

use super::{GRAFANA, assert_invalid_token, grafana_url};
use crate::harness::{
    ALICE, Consent, GRAFANA_REDIRECT, KS_ID, KS_REDIRECT, TestApp, decode_jwt, encode_form,
};

fn assert_iss(app: &TestApp, params: &HashMap<String, String>, what: &str) {
    assert_eq!(
        params.get("iss").map(String::as_str),
        Some(app.issuer.as_str()),
        "{what}: {params:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iss_is_the_issuer_exactly_in_every_success_and_error_response() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    // Success, by redirect and by form_post.
    let flow = browser
        .authorize(&grafana_url(&app, &[]), Some(&ALICE))
        .await;
    let params = flow.params();
    assert!(params.contains_key("code"));
    assert_iss(&app, &params, "success");
    let flow = browser
        .authorize(
            &grafana_url(&app, &[("response_mode", Some("form_post"))]),
            None,
        )
        .await;
    assert_eq!(flow.end.status, StatusCode::OK);
    let params = flow.params();
    assert!(params.contains_key("code"));
    assert_iss(&app, &params, "form_post success");
    // Errors of every origin: validation, consent, session.
    for (changes, code) in [
        (
            vec![("response_type", Some("token"))],
            "unsupported_response_type",
        ),
        (vec![("scope", Some("nothing-known"))], "invalid_scope"),
        (vec![("prompt", Some("none login"))], "invalid_request"),
        (vec![("request", Some("x"))], "request_not_supported"),
        (
            vec![
                ("response_type", Some("token")),
                ("response_mode", Some("form_post")),
            ],
            "unsupported_response_type",
        ),
    ] {
        let flow = browser.authorize(&grafana_url(&app, &changes), None).await;
        let params = flow.params();
        assert_eq!(
            params.get("error").map(String::as_str),
            Some(code),
            "{changes:?}"
        );
        assert_iss(&app, &params, code);
    }
    let ks = |prompt: Option<&str>| {
        let mut p = vec![
            ("client_id", KS_ID),
            ("redirect_uri", KS_REDIRECT),
            ("response_type", "code"),
            ("state", "ks"),
        ];
        if let Some(prompt) = prompt {
            p.push(("prompt", prompt));
        }
        app.auth_url(&p)
    };
    // Signed in, but KubeSphere's consent is still needed.
    let flow = browser.authorize(&ks(Some("none")), None).await;
    assert_eq!(flow.params()["error"], "consent_required");
    assert_iss(&app, &flow.params(), "consent_required");
    let flow = browser.authorize_with(&ks(None), None, Consent::Deny).await;
    assert_eq!(flow.params()["error"], "access_denied");
    assert_iss(&app, &flow.params(), "access_denied");
    let flow = app.browser().authorize(&ks(Some("none")), None).await;
    assert_eq!(flow.params()["error"], "login_required");
    assert_iss(&app, &flow.params(), "login_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_with_a_path_and_slash_is_named_exactly_everywhere() {
    let app = TestApp::builder().issuer_path("/dex/").spawn().await;
    assert!(app.issuer.ends_with("/dex/"));
    let flow = app
        .browser()
        .authorize(&grafana_url(&app, &[]), Some(&ALICE))
        .await;
    let params = flow.params();
    assert_iss(&app, &params, "success under a path");
    let tokens = app
        .exchange(&params["code"], GRAFANA_REDIRECT, None, GRAFANA)
        .await
        .json();
    for key in ["id_token", "access_token"] {
        let (_, claims) = decode_jwt(tokens[key].as_str().unwrap());
        assert_eq!(claims["iss"], json!(app.issuer), "{key}");
    }
    let discovery = app.get("/.well-known/openid-configuration").await.json();
    assert_eq!(discovery["issuer"], json!(app.issuer));
    let flow = app
        .browser()
        .authorize(
            &grafana_url(&app, &[("response_type", Some("token"))]),
            None,
        )
        .await;
    assert_iss(&app, &flow.params(), "error under a path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_and_tokens_of_another_issuer_are_worthless_here() {
    // Two instances with the same clients and users: the mix-up attacker relays what one
    // issued to the other.
    let app = TestApp::spawn("").await;
    let other = TestApp::spawn("").await;
    let code = other.grafana_code(&other.browser(), &ALICE).await;
    app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // The code was not burnt at its own issuer.
    let resp = other.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let tokens = resp.json();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();

    assert_invalid_token(&app.userinfo(Some(access)).await, "foreign access token");
    assert_eq!(
        app.introspect(access, GRAFANA).await,
        json!({"active": false})
    );
    assert_eq!(
        app.introspect(refresh, GRAFANA).await,
        json!({"active": false})
    );
    app.token(
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        GRAFANA,
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    // Revoking it here is a no-op (RFC 7009 2.2) that does not reach the real issuer.
    let resp = app.post("/revoke", &[("token", access)], GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(other.userinfo(Some(access)).await.status, StatusCode::OK);
    // A foreign ID token is no logout hint here.
    let query = encode_form(&[("id_token_hint", id_token)]);
    let resp = app
        .browser()
        .get(&app.url(&format!("/logout?{query}")))
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(resp.header("location").is_none());
}

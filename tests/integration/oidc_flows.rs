//! End-to-end OpenID Connect flows, driven where possible by a real relying-party library
//! (`openidconnect`), with the browser steps done through the harness.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    ALICE, BOB, CLI_ID, ClientAuth, Consent, GRAFANA_ID, GRAFANA_REDIRECT, GRAFANA_SECRET, KS_ID,
    KS_LOGOUT_REDIRECT, KS_REDIRECT, KS_SECRET, SERVICE_ID, SERVICE_SECRET, TestApp, decode_jwt,
    form_action, hidden_inputs,
};

type RelyingParty = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The HTTP client a relying party uses: never follows redirects (openidconnect's advice).
fn rp_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// A relying party configured from discovery, as a real client would be.
async fn relying_party(
    app: &TestApp,
    http: &reqwest::Client,
    client_id: &str,
    secret: Option<&str>,
    redirect_uri: &str,
) -> RelyingParty {
    let issuer = IssuerUrl::new(app.issuer.clone()).expect("issuer URL");
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .expect("discovery and JWKS");
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.to_string()),
        secret.map(|s| ClientSecret::new(s.to_string())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect_uri.to_string()).expect("redirect URL"))
}

fn is_kubernetes_label_safe_subject(sub: &str) -> bool {
    (1..=63).contains(&sub.len())
        && sub
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relying_party_runs_the_code_flow_with_pkce_nonce_and_basic_auth() {
    let app = TestApp::spawn("").await;
    let http = rp_http();
    // KubeSphere's secret holds + / =: openidconnect form-encodes it inside Basic like Go does.
    let client = relying_party(&app, &http, KS_ID, Some(KS_SECRET), KS_REDIRECT).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("groups".into()))
        .set_pkce_challenge(challenge)
        .url();

    let browser = app.browser();
    let flow = browser.authorize(url.as_str(), Some(&ALICE)).await;
    assert_eq!(flow.login_forms, 1);
    assert_eq!(
        flow.consents, 1,
        "KubeSphere is not configured to skip consent"
    );
    assert!(flow.redirect().as_str().starts_with(KS_REDIRECT));
    let params = flow.params();
    assert_eq!(params["state"], *state.secret());
    assert_eq!(params["iss"], app.issuer, "RFC 9207 iss in the response");

    let token = client
        .exchange_code(AuthorizationCode::new(flow.code()))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = token.id_token().expect("an ID token");
    let id_verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .expect("the ID token verifies against the JWKS");
    assert_eq!(claims.issuer().as_str(), app.issuer);
    assert!(is_kubernetes_label_safe_subject(claims.subject().as_str()));
    assert_eq!(claims.email().map(|e| e.as_str()), Some(ALICE.email));
    assert_eq!(claims.email_verified(), Some(true));
    let expected_hash = AccessTokenHash::from_token(
        token.access_token(),
        id_token.signing_alg().expect("alg"),
        id_token.signing_key(&id_verifier).expect("key"),
    )
    .expect("at_hash");
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));

    let userinfo: CoreUserInfoClaims = client
        .user_info(token.access_token().clone(), Some(claims.subject().clone()))
        .expect("userinfo endpoint")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(userinfo.email().map(|e| e.as_str()), Some(ALICE.email));
    assert_eq!(
        userinfo
            .preferred_username()
            .map(|u| u.as_str().to_string()),
        Some(ALICE.login.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_have_the_shape_kubesphere_and_kubernetes_expect() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let tokens = app.grafana_tokens(&browser, &ALICE).await;
    assert_eq!(tokens["token_type"], "Bearer");
    let kids = app.jwks_kids().await;

    let (header, claims) = decode_jwt(tokens["id_token"].as_str().expect("id_token"));
    assert_eq!(header["alg"], "RS256", "the default must suit go-oidc v2");
    let kid = header["kid"].as_str().expect("kid in the ID token header");
    assert!(
        kids.iter().any(|k| k == kid),
        "kid {kid} not in JWKS {kids:?}"
    );
    let sub = claims["sub"].as_str().expect("sub");
    assert!(is_kubernetes_label_safe_subject(sub), "sub {sub:?}");
    assert_eq!(claims["email_verified"], Value::Bool(true));
    assert_eq!(claims["groups"], json!(["developers", "platform"]));
    assert_eq!(claims["aud"], GRAFANA_ID);
    assert_eq!(claims["azp"], GRAFANA_ID);
    assert!(claims["at_hash"].is_string());
    assert!(claims["auth_time"].is_i64());
    assert_eq!(claims["iss"], app.issuer);
    assert_eq!(claims["preferred_username"], ALICE.login);

    let (at_header, at_claims) = decode_jwt(tokens["access_token"].as_str().expect("at"));
    assert_eq!(at_header["typ"], "at+jwt", "RFC 9068 access token");
    assert!(
        kids.iter()
            .any(|k| Some(k.as_str()) == at_header["kid"].as_str())
    );
    assert_eq!(at_claims["sub"], sub);
    assert_eq!(at_claims["client_id"], GRAFANA_ID);
    assert!(
        tokens["refresh_token"].is_string(),
        "offline_access was asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_gets_a_code_from_the_session_without_a_login_form() {
    let app = TestApp::spawn("").await;
    let http = rp_http();
    let browser = app.browser();

    let ks = relying_party(&app, &http, KS_ID, Some(KS_SECRET), KS_REDIRECT).await;
    let (url, _, ks_nonce) = ks
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .url();
    let flow = browser.authorize(url.as_str(), Some(&ALICE)).await;
    assert_eq!(flow.login_forms, 1);
    let ks_tokens = ks
        .exchange_code(AuthorizationCode::new(flow.code()))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let ks_sub = ks_tokens
        .id_token()
        .unwrap()
        .claims(&ks.id_token_verifier(), &ks_nonce)
        .unwrap()
        .subject()
        .clone();

    let grafana = relying_party(
        &app,
        &http,
        GRAFANA_ID,
        Some(GRAFANA_SECRET),
        GRAFANA_REDIRECT,
    )
    .await
    .set_auth_type(AuthType::RequestBody);
    let (url, _, nonce) = grafana
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .url();
    let flow = browser.authorize(url.as_str(), None).await;
    assert_eq!(flow.login_forms, 0, "single sign-on must not show a form");
    assert_eq!(flow.consents, 0, "grafana skips approval");
    let tokens = grafana
        .exchange_code(AuthorizationCode::new(flow.code()))
        .unwrap()
        .request_async(&http)
        .await
        .expect("client_secret_post exchange");
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&grafana.id_token_verifier(), &nonce)
        .unwrap();
    assert_eq!(claims.subject(), &ks_sub, "same user, same subject");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_post_exchanges_a_code() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let code = app.grafana_code(&browser, &BOB).await;
    let resp = app
        .exchange(
            &code,
            GRAFANA_REDIRECT,
            None,
            ClientAuth::Post(GRAFANA_ID, GRAFANA_SECRET),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let (_, claims) = decode_jwt(resp.json()["id_token"].as_str().unwrap());
    assert_eq!(claims["email"], BOB.email);
    assert_eq!(claims["groups"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_client_uses_pkce_and_a_loopback_redirect_on_any_port() {
    let app = TestApp::spawn("").await;
    let http = rp_http();
    let redirect = "http://127.0.0.1:43123/callback";
    let client = relying_party(&app, &http, CLI_ID, None, redirect).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let browser = app.browser();
    let flow = browser.authorize(url.as_str(), Some(&ALICE)).await;
    assert!(flow.redirect().as_str().starts_with(redirect));
    assert_eq!(flow.params()["state"], *state.secret());
    let tokens = client
        .exchange_code(AuthorizationCode::new(flow.code()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("public client exchange");
    tokens
        .id_token()
        .unwrap()
        .claims(&client.id_token_verifier(), &nonce)
        .expect("valid ID token");
    let refresh = tokens
        .refresh_token()
        .expect("a refresh token for offline_access");
    let refreshed = client
        .exchange_refresh_token(refresh)
        .unwrap()
        .request_async(&http)
        .await
        .expect("a public client refreshes with its id alone");
    assert!(refreshed.refresh_token().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_post_response_mode_returns_a_self_posting_form() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let url = app.auth_url(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "fp-state"),
        ("response_mode", "form_post"),
    ]);
    let flow = browser.authorize(&url, Some(&ALICE)).await;
    assert_eq!(flow.end.status, StatusCode::OK);
    assert!(flow.end.header("location").is_none());
    let body = &flow.end.body;
    assert_eq!(
        form_action(body, "id=\"form-post\"").as_deref(),
        Some(GRAFANA_REDIRECT)
    );
    assert!(body.contains("method=\"post\""));
    let fields = hidden_inputs(body);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["code", "state", "iss"]);
    let params = flow.params();
    assert_eq!(params["state"], "fp-state");
    assert_eq!(params["iss"], app.issuer);
    let resp = app
        .exchange(
            &params["code"],
            GRAFANA_REDIRECT,
            None,
            ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);

    // Errors travel the same way.
    let url = app.auth_url(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "fp-2"),
        ("response_mode", "form_post"),
        ("prompt", "none"),
    ]);
    let flow = app.browser().authorize(&url, None).await;
    let params = flow.params();
    assert_eq!(params["error"], "login_required");
    assert_eq!(params["state"], "fp-2");
    assert_eq!(params["iss"], app.issuer);
}

async fn refresh(app: &TestApp, token: &str) -> crate::harness::Resp {
    app.token(
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
        ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let tokens = app.grafana_tokens(&browser, &ALICE).await;
    let first = tokens["refresh_token"].as_str().expect("refresh token");

    let resp = refresh(&app, first).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let rotated = resp.json();
    let second = rotated["refresh_token"]
        .as_str()
        .expect("a new refresh token");
    assert_ne!(second, first, "refresh tokens rotate");
    let access = rotated["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(Some(access)).await.status, StatusCode::OK);

    // The rotated-out token comes back: one of its holders is an attacker.
    refresh(&app, first)
        .await
        .assert_oauth_error(400, "invalid_grant");
    refresh(&app, second)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let resp = app.userinfo(Some(access)).await;
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "access tokens of a revoked family are refused: {}",
        resp.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_reuse_a_second_later_revokes_the_family() {
    let app = TestApp::spawn("").await;
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let first = tokens["refresh_token"].as_str().unwrap();
    let resp = refresh(&app, first).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let second = resp.json()["refresh_token"].as_str().unwrap().to_string();
    app.clock.advance(1);
    refresh(&app, first)
        .await
        .assert_oauth_error(400, "invalid_grant");
    refresh(&app, &second)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_tells_active_from_inactive_tokens() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let tokens = app.grafana_tokens(&browser, &ALICE).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let rs = ClientAuth::Basic(KS_ID, KS_SECRET);

    let info = app.introspect(access, rs).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], GRAFANA_ID);
    assert_eq!(info["username"], ALICE.login);
    assert_eq!(info["token_type"], "Bearer");
    assert!(info.get("gid").is_none(), "internal claims stay internal");

    let info = app
        .introspect(refresh_token, ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET))
        .await;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "refresh_token");

    for inactive in [
        "garbage",
        tokens["id_token"].as_str().unwrap(),
        "abc.def",
        "a.b.c",
    ] {
        let info = app.introspect(inactive, rs).await;
        assert_eq!(info, json!({"active": false}), "{inactive}");
    }
    // Another client's refresh token is not vouched for.
    let info = app.introspect(refresh_token, rs).await;
    assert_eq!(info["active"], false);

    app.post(
        "/introspect",
        &[("token", access)],
        ClientAuth::Public(CLI_ID),
    )
    .await
    .assert_oauth_error(400, "unauthorized_client");
    app.post("/introspect", &[("token", access)], ClientAuth::None)
        .await
        .assert_oauth_error(401, "invalid_client");

    app.clock.advance(3601);
    let info = app.introspect(access, rs).await;
    assert_eq!(info["active"], false, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_ends_access_and_refresh_tokens() {
    let app = TestApp::spawn("").await;
    let grafana = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);

    // Revoking an access token ends its grant, refresh tokens included.
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    let access = tokens["access_token"].as_str().unwrap();
    let resp = app.post("/revoke", &[("token", access)], grafana).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(
        app.userinfo(Some(access)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.introspect(access, grafana).await["active"], false);
    refresh(&app, tokens["refresh_token"].as_str().unwrap())
        .await
        .assert_oauth_error(400, "invalid_grant");

    // Revoking a refresh token ends it and the access tokens of its grant.
    let tokens = app.grafana_tokens(&app.browser(), &BOB).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    // A client cannot revoke another client's token.
    let resp = app
        .post(
            "/revoke",
            &[("token", refresh_token)],
            ClientAuth::Basic(KS_ID, KS_SECRET),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(app.userinfo(Some(access)).await.status, StatusCode::OK);

    let resp = app
        .post("/revoke", &[("token", refresh_token)], grafana)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    refresh(&app, refresh_token)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        app.userinfo(Some(access)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Unknown tokens are not an error (RFC 7009 2.2).
    let resp = app.post("/revoke", &[("token", "nothing")], grafana).await;
    assert_eq!(resp.status, StatusCode::OK);
    app.post("/revoke", &[("token", "nothing")], ClientAuth::None)
        .await
        .assert_oauth_error(401, "invalid_client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_grant_for_a_machine_client() {
    let app = TestApp::spawn("").await;
    let service = ClientAuth::Basic(SERVICE_ID, SERVICE_SECRET);
    let resp = app
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "inventory.read"),
            ],
            service,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("id_token").is_none());
    assert!(body.get("refresh_token").is_none());
    let access = body["access_token"].as_str().unwrap();
    let (header, claims) = decode_jwt(access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["sub"], SERVICE_ID);
    assert_eq!(claims["client_id"], SERVICE_ID);
    assert_eq!(claims["scope"], "inventory.read");
    assert_eq!(claims["aud"], "https://inventory.example.com");

    // Only the configured scopes; all of them when none is named.
    app.token(
        &[
            ("grant_type", "client_credentials"),
            ("scope", "inventory.read admin"),
        ],
        service,
    )
    .await
    .assert_oauth_error(400, "invalid_scope");
    let all = app
        .token(&[("grant_type", "client_credentials")], service)
        .await;
    assert_eq!(all.json()["scope"], "inventory.read inventory.write");

    assert_eq!(app.introspect(access, service).await["active"], true);
    let resp = app.userinfo(Some(access)).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "no user behind it");

    // Not enabled for KubeSphere.
    app.token(
        &[("grant_type", "client_credentials")],
        ClientAuth::Basic(KS_ID, KS_SECRET),
    )
    .await
    .assert_oauth_error(400, "unauthorized_client");
    // Nor usable by a public client.
    app.token(
        &[("grant_type", "client_credentials")],
        ClientAuth::Public(CLI_ID),
    )
    .await
    .assert_oauth_error(400, "unauthorized_client");
    // And the machine client cannot start a browser flow.
    let url = app.auth_url(&[
        ("client_id", SERVICE_ID),
        ("redirect_uri", "https://service.example.com/cb"),
        ("response_type", "code"),
        ("scope", "openid"),
    ]);
    let resp = app.browser().get(&url).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(resp.header("location").is_none());
}

fn grafana_auth(app: &TestApp, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid profile"),
        ("state", "st-1"),
    ];
    for (k, v) in extra {
        params.retain(|(name, _)| name != k);
        params.push((k, v));
    }
    app.auth_url(&params)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_none_without_a_session_returns_login_required() {
    let app = TestApp::spawn("").await;
    let resp = app
        .browser()
        .get(&grafana_auth(&app, &[("prompt", "none")]))
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    let loc = resp.location().unwrap();
    assert!(loc.as_str().starts_with(GRAFANA_REDIRECT));
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], app.issuer);
    assert!(!q.contains_key("code"));

    // With a session, prompt=none answers silently.
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    let flow = browser
        .authorize(&grafana_auth(&app, &[("prompt", "none")]), None)
        .await;
    assert_eq!(flow.login_forms, 0);
    flow.code();
    // But a client needing consent gets consent_required.
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("state", "ks"),
        ("prompt", "none"),
    ]);
    let flow = browser.authorize(&url, None).await;
    assert_eq!(flow.params()["error"], "consent_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_login_forces_the_login_form() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    let flow = browser
        .authorize(&grafana_auth(&app, &[("prompt", "login")]), None)
        .await;
    assert_eq!(flow.login_forms, 1, "prompt=login must show the form");
    let flow = browser
        .authorize(&grafana_auth(&app, &[("prompt", "login")]), Some(&ALICE))
        .await;
    flow.code();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_zero_forces_the_login_form() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    // OpenID Connect Core 3.1.2.1: max_age=0 is equivalent to prompt=login, even when the
    // login happened within the same second.
    let flow = browser
        .authorize(&grafana_auth(&app, &[("max_age", "0")]), None)
        .await;
    assert_eq!(flow.login_forms, 1, "max_age=0 must show the form");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_is_honoured_against_the_login_time() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    let flow = browser
        .authorize(&grafana_auth(&app, &[("max_age", "300")]), None)
        .await;
    assert_eq!(flow.login_forms, 0, "a recent login satisfies max_age=300");
    app.clock.advance(301);
    let flow = browser
        .authorize(&grafana_auth(&app, &[("max_age", "300")]), None)
        .await;
    assert_eq!(
        flow.login_forms, 1,
        "a login older than max_age needs a new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubesphere_constant_state_without_scope_nonce_or_pkce_gets_an_id_token() {
    let app = TestApp::spawn("").await;
    for user in [&ALICE, &BOB] {
        // The console builds this URL itself: the provider name as state, nothing else.
        let url = app.auth_url(&[
            ("client_id", KS_ID),
            ("redirect_uri", KS_REDIRECT),
            ("response_type", "code"),
            ("state", "idbridge"),
        ]);
        let flow = app.browser().authorize(&url, Some(user)).await;
        assert_eq!(flow.consents, 1);
        let params = flow.params();
        assert_eq!(params["state"], "idbridge");
        assert_eq!(params["iss"], app.issuer);
        let resp = app
            .exchange(
                &params["code"],
                KS_REDIRECT,
                None,
                ClientAuth::Basic(KS_ID, KS_SECRET),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        let body = resp.json();
        assert_eq!(body["scope"], "openid profile email");
        let (_, claims) = decode_jwt(body["id_token"].as_str().expect("an ID token"));
        assert!(claims.get("nonce").is_none());
        assert_eq!(claims["email"], user.email);
        assert_eq!(claims["email_verified"], true);
        assert_eq!(claims["preferred_username"], user.login);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authorization_response_carries_iss() {
    let app = TestApp::spawn("").await;
    let check = |params: &std::collections::HashMap<String, String>, what: &str| {
        assert_eq!(
            params.get("iss").map(String::as_str),
            Some(app.issuer.as_str()),
            "{what}: {params:?}"
        );
    };
    // Success.
    let browser = app.browser();
    let flow = browser
        .authorize(&grafana_auth(&app, &[]), Some(&ALICE))
        .await;
    check(&flow.params(), "success");
    // Protocol error after the redirect URI is trusted.
    let flow = browser
        .authorize(
            &app.auth_url(&[
                ("client_id", GRAFANA_ID),
                ("redirect_uri", GRAFANA_REDIRECT),
                ("response_type", "token"),
                ("state", "x"),
            ]),
            None,
        )
        .await;
    assert_eq!(flow.params()["error"], "unsupported_response_type");
    check(&flow.params(), "unsupported_response_type");
    // The user denies consent.
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("state", "deny-me"),
    ]);
    let flow = browser.authorize_with(&url, None, Consent::Deny).await;
    let params = flow.params();
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "deny-me");
    check(&params, "access_denied");
    // prompt=none without a session.
    let flow = app
        .browser()
        .authorize(&grafana_auth(&app, &[("prompt", "none")]), None)
        .await;
    check(&flow.params(), "login_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_signing_key_sessions_and_users() {
    let mut app = TestApp::spawn("").await;
    let kids_before = app.jwks_kids().await;
    let browser = app.browser();
    let before = app.grafana_tokens(&browser, &ALICE).await;
    let (_, claims_before) = decode_jwt(before["id_token"].as_str().unwrap());

    app.restart().await;

    assert_eq!(app.jwks_kids().await, kids_before, "same signing key");
    let old_access = before["access_token"].as_str().unwrap();
    assert_eq!(
        app.userinfo(Some(old_access)).await.status,
        StatusCode::OK,
        "tokens issued before the restart still verify"
    );
    let flow = browser.authorize(&grafana_auth(&app, &[]), None).await;
    assert_eq!(flow.login_forms, 0, "the session survives the restart");
    let resp = app
        .exchange(
            &flow.code(),
            GRAFANA_REDIRECT,
            None,
            ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let (header, claims) = decode_jwt(resp.json()["id_token"].as_str().unwrap());
    assert_eq!(
        claims["sub"], claims_before["sub"],
        "same user, same subject"
    );
    assert!(
        kids_before
            .iter()
            .any(|k| Some(k.as_str()) == header["kid"].as_str())
    );

    // A fresh login after the restart also maps to the same subject.
    let after = app.grafana_tokens(&app.browser(), &ALICE).await;
    let (_, claims_after) = decode_jwt(after["id_token"].as_str().unwrap());
    assert_eq!(claims_after["sub"], claims_before["sub"]);
    // And the refresh token from before the restart still works.
    let resp = refresh(&app, before["refresh_token"].as_str().unwrap()).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

/// Signs Alice in at Grafana in a fresh browser, runs `logout` in it, and checks that the next
/// authorization shows the login form again.
async fn assert_logout_ends_session(app: &TestApp, logout: &str) -> crate::harness::Resp {
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    let before = browser.authorize(&grafana_auth(app, &[]), None).await;
    assert_eq!(before.login_forms, 0, "signed in before the logout");
    let resp = browser.get(&app.url(logout)).await;
    let after = browser.authorize(&grafana_auth(app, &[]), None).await;
    assert_eq!(after.login_forms, 1, "{logout} must end the session");
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_without_parameters_shows_the_signed_out_page() {
    // KubeSphere 3.4 sends the browser to end_session_endpoint as discovered.
    let app = TestApp::spawn("").await;
    let resp = assert_logout_ends_session(&app, "/logout").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.body.contains("You have signed out"), "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_an_empty_redirect_and_a_client_id_shows_the_signed_out_page() {
    // KubeSphere 4.1 with no postLogoutRedirectURI configured.
    let app = TestApp::spawn("").await;
    let resp = assert_logout_ends_session(
        &app,
        &format!("/logout?post_logout_redirect_uri=&client_id={KS_ID}"),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.header("location").is_none());
    assert!(resp.body.contains("You have signed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_a_registered_redirect_returns_there_with_state() {
    let app = TestApp::spawn("").await;
    let query = crate::harness::encode_form(&[
        ("post_logout_redirect_uri", KS_LOGOUT_REDIRECT),
        ("client_id", KS_ID),
        ("state", "bye-123"),
    ]);
    let resp = assert_logout_ends_session(&app, &format!("/logout?{query}")).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert_eq!(
        resp.header("location"),
        Some(format!("{KS_LOGOUT_REDIRECT}?state=bye-123").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_an_id_token_hint_finds_the_client() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("state", "s"),
    ]);
    let code = browser.authorize(&url, Some(&ALICE)).await.code();
    let tokens = app
        .exchange(
            &code,
            KS_REDIRECT,
            None,
            ClientAuth::Basic(KS_ID, KS_SECRET),
        )
        .await
        .json();
    let query = crate::harness::encode_form(&[
        ("id_token_hint", tokens["id_token"].as_str().unwrap()),
        ("post_logout_redirect_uri", KS_LOGOUT_REDIRECT),
    ]);
    let resp = browser.get(&app.url(&format!("/logout?{query}"))).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert_eq!(resp.header("location"), Some(KS_LOGOUT_REDIRECT));
    let flow = browser.authorize(&url, None).await;
    assert_eq!(flow.login_forms, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_refuses_an_unregistered_redirect_without_redirecting() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    for (uri, client) in [
        ("https://evil.example.com/", KS_ID),
        (KS_LOGOUT_REDIRECT, GRAFANA_ID),
        (&format!("{KS_LOGOUT_REDIRECT}/"), KS_ID),
        (KS_LOGOUT_REDIRECT, "no-such-client"),
    ] {
        let query = crate::harness::encode_form(&[
            ("post_logout_redirect_uri", uri),
            ("client_id", client),
        ]);
        let resp = browser.get(&app.url(&format!("/logout?{query}"))).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{uri} for {client}");
        assert!(resp.header("location").is_none(), "no open redirect");
        assert!(resp.body.contains("Invalid redirect address"));
    }
    // Without any client to check it against, a redirect is refused too.
    let query = crate::harness::encode_form(&[("post_logout_redirect_uri", KS_LOGOUT_REDIRECT)]);
    let resp = browser.get(&app.url(&format!("/logout?{query}"))).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(resp.header("location").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_document_matches_the_issuer_and_the_endpoints() {
    let app = TestApp::spawn("").await;
    let resp = app.get("/.well-known/openid-configuration").await;
    assert_eq!(resp.status, StatusCode::OK);
    let doc = resp.json();
    assert_eq!(doc["issuer"], app.issuer);
    for (key, path) in [
        ("authorization_endpoint", "/auth"),
        ("token_endpoint", "/token"),
        ("jwks_uri", "/keys"),
        ("userinfo_endpoint", "/userinfo"),
        ("end_session_endpoint", "/logout"),
        ("introspection_endpoint", "/introspect"),
        ("revocation_endpoint", "/revoke"),
    ] {
        assert_eq!(doc[key], app.url(path), "{key}");
    }
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json(), json!({"storage": true, "keys": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_remembered_in_the_session_and_prompt_consent_asks_again() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("state", "ks"),
    ]);
    let flow = browser.authorize(&url, Some(&ALICE)).await;
    assert_eq!((flow.login_forms, flow.consents), (1, 1));
    let flow = browser.authorize(&url, None).await;
    assert_eq!(
        (flow.login_forms, flow.consents),
        (0, 0),
        "consent is remembered"
    );
    flow.code();
    let flow = browser
        .authorize(&format!("{url}&prompt=consent"), None)
        .await;
    assert_eq!(flow.consents, 1, "prompt=consent asks again");
    // Even a client that skips approval is asked when it says prompt=consent.
    let flow = browser
        .authorize(&grafana_auth(&app, &[("prompt", "consent")]), None)
        .await;
    assert_eq!(flow.consents, 1);
    flow.code();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_as_someone_else_forgets_the_previous_users_consents() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let ks = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("state", "ks"),
    ]);
    let flow = browser.authorize(&ks, Some(&ALICE)).await;
    assert_eq!(flow.consents, 1);
    let flow = browser
        .authorize(&grafana_auth(&app, &[("prompt", "login")]), Some(&BOB))
        .await;
    let tokens = app
        .exchange(
            &flow.code(),
            GRAFANA_REDIRECT,
            None,
            ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
        )
        .await
        .json();
    let (_, claims) = decode_jwt(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["preferred_username"], BOB.login);
    let flow = browser.authorize(&ks, None).await;
    assert_eq!(flow.login_forms, 0, "Bob is signed in now");
    assert_eq!(flow.consents, 1, "Alice's consent is not Bob's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_login_with_prompt_login_moves_auth_time() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let first = app.grafana_tokens(&browser, &ALICE).await;
    let (_, first_claims) = decode_jwt(first["id_token"].as_str().unwrap());
    app.clock.advance(100);
    let code = browser
        .authorize(&grafana_auth(&app, &[("prompt", "login")]), Some(&ALICE))
        .await
        .code();
    let second = app
        .exchange(
            &code,
            GRAFANA_REDIRECT,
            None,
            ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
        )
        .await
        .json();
    let (_, claims) = decode_jwt(second["id_token"].as_str().unwrap());
    let before = first_claims["auth_time"].as_i64().unwrap();
    let after = claims["auth_time"].as_i64().unwrap();
    assert!(after >= before + 100, "auth_time {before} -> {after}");
    assert_eq!(claims["sub"], first_claims["sub"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_ends_after_its_configured_lifetime() {
    let app = TestApp::spawn("expiry:\n  sessions: 1h\n").await;
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    app.clock.advance(1800);
    let flow = browser.authorize(&grafana_auth(&app, &[]), None).await;
    assert_eq!(flow.login_forms, 0, "still inside the session lifetime");
    app.clock.advance(1801);
    let flow = browser.authorize(&grafana_auth(&app, &[]), None).await;
    assert_eq!(flow.login_forms, 1, "the session is over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_works_with_post_and_userinfo_with_a_form_token() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    app.grafana_code(&browser, &ALICE).await;
    let body = crate::harness::encode_form(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "posted"),
    ]);
    let resp = browser
        .http
        .post(app.url("/auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let loc = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "posted");
    let tokens = app
        .exchange(
            &q["code"],
            GRAFANA_REDIRECT,
            None,
            ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
        )
        .await
        .json();
    let resp = app
        .http
        .post(app.url("/userinfo"))
        .form(&[("access_token", tokens["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["email"], ALICE.email);
    assert!(info.get("name").is_none(), "profile was not asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_needs_the_openid_scope() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let url = grafana_auth(&app, &[("scope", "profile")]);
    let flow = browser.authorize(&url, Some(&ALICE)).await;
    let resp = app
        .exchange(
            &flow.code(),
            GRAFANA_REDIRECT,
            None,
            ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let tokens = resp.json();
    assert!(tokens.get("id_token").is_none(), "no openid, no ID token");
    let resp = app.userinfo(tokens["access_token"].as_str()).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert_eq!(resp.json()["error"], "insufficient_scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_with_a_path_serves_every_endpoint_under_it() {
    // Dex-style deployments put the provider under /dex behind an ingress.
    let app = TestApp::builder().issuer_path("/dex").spawn().await;
    let http = rp_http();
    let client = relying_party(
        &app,
        &http,
        GRAFANA_ID,
        Some(GRAFANA_SECRET),
        GRAFANA_REDIRECT,
    )
    .await;
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .url();
    assert!(url.as_str().starts_with(&format!("{}/auth?", app.issuer)));
    let browser = app.browser();
    let flow = browser.authorize(url.as_str(), Some(&ALICE)).await;
    assert_eq!(flow.login_forms, 1, "{}", flow.end.body);
    let params = flow.params();
    assert_eq!(params["state"], *state.secret());
    assert_eq!(params["iss"], app.issuer);
    let tokens = client
        .exchange_code(AuthorizationCode::new(flow.code()))
        .unwrap()
        .request_async(&http)
        .await
        .expect("exchange under /dex");
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&client.id_token_verifier(), &nonce)
        .expect("valid ID token");
    assert_eq!(claims.issuer().as_str(), app.issuer);
    // Single sign-on works, so the session cookie is sent back under the path.
    let flow = browser.authorize(&grafana_auth(&app, &[]), None).await;
    assert_eq!(flow.login_forms, 0);
    // Nothing is served outside the path.
    let outside = app
        .http
        .get(format!(
            "http://{}/.well-known/openid-configuration",
            app.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), StatusCode::NOT_FOUND);
    let css = app.get("/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    // Pages link their assets and language switch under the path too.
    let form = app
        .browser()
        .authorize(&grafana_auth(&app, &[]), None)
        .await;
    assert_eq!(form.login_forms, 1);
    let body = &form.end.body;
    assert!(body.contains("href=\"/dex/static/style.css\""), "{body}");
    assert!(!body.contains("href=\"/static/"), "{body}");
    assert!(!body.contains("href=\"/login"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_with_a_trailing_slash_is_echoed_exactly() {
    // KubeSphere compares iss with its configured issuer byte for byte.
    let app = TestApp::builder().issuer_path("/dex/").spawn().await;
    assert!(app.issuer.ends_with("/dex/"));
    let doc = app.get("/.well-known/openid-configuration").await.json();
    assert_eq!(doc["issuer"], app.issuer);
    assert_eq!(doc["token_endpoint"], app.url("/token"));
    let browser = app.browser();
    let flow = browser
        .authorize(&grafana_auth(&app, &[]), Some(&ALICE))
        .await;
    assert_eq!(flow.params()["iss"], app.issuer);
    let tokens = app
        .exchange(
            &flow.code(),
            GRAFANA_REDIRECT,
            None,
            ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
        )
        .await
        .json();
    let (_, claims) = decode_jwt(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], app.issuer);
    assert_eq!(
        app.userinfo(tokens["access_token"].as_str()).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_app_with_a_private_use_scheme_gets_its_code() {
    let app = TestApp::builder()
        .client(
            "- id: mobile\n  name: Mobile\n  public: true\n  redirectURIs: [\"com.example.app:/oauth/callback\"]",
        )
        .spawn()
        .await;
    let (verifier, challenge) = crate::harness::pkce_pair();
    let url = app.auth_url(&[
        ("client_id", "mobile"),
        ("redirect_uri", "com.example.app:/oauth/callback"),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "m"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let flow = app.browser().authorize(&url, Some(&ALICE)).await;
    assert!(
        flow.redirect()
            .as_str()
            .starts_with("com.example.app:/oauth/callback?")
    );
    let resp = app
        .exchange(
            &flow.code(),
            "com.example.app:/oauth/callback",
            Some(&verifier),
            ClientAuth::Public("mobile"),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_sends_a_back_channel_logout_token_to_the_client() {
    // A relying party that records what it receives on its back-channel logout endpoint.
    let received: std::sync::Arc<tokio::sync::Mutex<Vec<String>>> = Default::default();
    let sink = received.clone();
    let rp = axum::Router::new().route(
        "/backchannel",
        axum::routing::post(move |body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().await.push(body);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rp_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, rp).await });

    let app = TestApp::builder()
        .client(&format!(
            "- id: portal
  secret: portal-secret
  skipApproval: true
  redirectURIs: [https://portal.example.com/cb]
  backchannelLogoutURI: http://{rp_addr}/backchannel"
        ))
        .spawn()
        .await;
    let browser = app.browser();
    let url = app.auth_url(&[
        ("client_id", "portal"),
        ("redirect_uri", "https://portal.example.com/cb"),
        ("response_type", "code"),
        ("scope", "openid"),
    ]);
    let code = browser.authorize(&url, Some(&ALICE)).await.code();
    let tokens = app
        .exchange(
            &code,
            "https://portal.example.com/cb",
            None,
            ClientAuth::Basic("portal", "portal-secret"),
        )
        .await
        .json();
    let (_, id_claims) = decode_jwt(tokens["id_token"].as_str().unwrap());

    let signed_out = browser.get(&app.url("/logout")).await;
    assert_eq!(signed_out.status, StatusCode::OK);
    // Delivery happens in the background: wait for it, briefly.
    let mut body = None;
    for _ in 0..100 {
        if let Some(b) = received.lock().await.first() {
            body = Some(b.clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let body = body.expect("no back-channel logout was delivered");
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("logout_token form field");
    let (header, claims) = decode_jwt(&token);
    // OpenID Connect Back-Channel Logout 1.0, 2.4.
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(claims["iss"], app.issuer);
    assert_eq!(claims["aud"], "portal");
    assert_eq!(claims["sub"], id_claims["sub"]);
    assert_eq!(claims["sid"], id_claims["sid"]);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());
    assert!(claims["jti"].is_string() && claims["iat"].is_i64());
}

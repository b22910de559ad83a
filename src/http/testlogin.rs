//! The test-login page: a built-in relying party that runs a real login through the normal
//! endpoints and shows what a client would receive, so an administrator can check a connector
//! before wiring KubeSphere to it.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use tower_sessions::Session;

use super::authorize::{connector_links, query_map, see_other};
use super::pages::{self, ErrorKind};
use super::session::{BrowserSession, TestLogin};
use super::{AppState, page_error};
use crate::oidc::authorize::append_query;
use crate::oidc::params::Params;
use crate::oidc::random;

/// The client id the test-login page uses; registered automatically when it is enabled.
pub const TEST_LOGIN_CLIENT_ID: &str = "idbridge-test-login";

fn enabled(state: &AppState) -> bool {
    state.provider.config.test_login.enabled
}

fn not_found(state: &AppState, headers: &HeaderMap, path: &str) -> Response {
    page_error(
        state,
        headers,
        path,
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound,
        None,
    )
}

pub async fn start_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !enabled(&state) {
        return not_found(&state, &headers, "/test-login");
    }
    let ctx = state.page(&headers, "/test-login");
    pages::test_login_start(&ctx, &connector_links(&state, None))
}

pub async fn start(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let path = "/test-login/start";
    if !enabled(&state) {
        return not_found(&state, &headers, path);
    }
    let q = query_map(&query);
    let Some(connector) = q
        .get("connector")
        .filter(|c| state.provider.connectors.get(c).is_some())
    else {
        return not_found(&state, &headers, path);
    };
    let Ok(mut bs) = BrowserSession::load(&session).await else {
        return page_error(
            &state,
            &headers,
            path,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::ServiceUnavailable,
            None,
        );
    };
    let run = TestLogin {
        state: random::token(16),
        nonce: random::token(16),
        verifier: random::token(32),
    };
    let challenge = random::sha256_b64(run.verifier.as_bytes());
    let url = append_query(
        &state.url("/auth"),
        &[
            ("client_id", TEST_LOGIN_CLIENT_ID),
            ("redirect_uri", &state.url("/test-login/callback")),
            ("response_type", "code"),
            ("scope", "openid profile email phone groups offline_access"),
            ("state", &run.state),
            ("nonce", &run.nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("connector_id", connector),
            ("prompt", "login"),
        ],
    );
    bs.test_login = Some(run);
    if bs.store(&session).await.is_err() {
        return page_error(
            &state,
            &headers,
            path,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::ServiceUnavailable,
            None,
        );
    }
    see_other(&url)
}

pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let path = "/test-login/callback";
    if !enabled(&state) {
        return not_found(&state, &headers, path);
    }
    let fail = |kind: ErrorKind, detail: &str| {
        page_error(
            &state,
            &headers,
            path,
            StatusCode::BAD_REQUEST,
            kind,
            Some(detail),
        )
    };
    let q = query_map(&query);
    let Ok(mut bs) = BrowserSession::load(&session).await else {
        return fail(ErrorKind::ServiceUnavailable, "session unavailable");
    };
    let Some(run) = bs.test_login.take() else {
        return fail(
            ErrorKind::LoginExpired,
            "no test login is in progress in this browser",
        );
    };
    let _ = bs.store(&session).await;
    if q.get("state") != Some(&run.state) {
        return fail(ErrorKind::CsrfFailed, "state does not match");
    }
    if let Some(err) = q.get("error") {
        let desc = q.get("error_description").cloned().unwrap_or_default();
        return fail(ErrorKind::AccessDenied, &format!("{err}: {desc}"));
    }
    // RFC 9207: the response must come from this issuer.
    if q.get("iss").map(String::as_str) != Some(state.provider.issuer()) {
        return fail(
            ErrorKind::BadRequest,
            "the authorization response has the wrong iss",
        );
    }
    let Some(code) = q.get("code") else {
        return fail(ErrorKind::BadRequest, "no code in the response");
    };
    let provider = &state.provider;
    let now = state.now();
    let client = match provider
        .clients
        .get(provider.storage.as_ref(), TEST_LOGIN_CLIENT_ID)
        .await
    {
        Ok(Some(c)) => c,
        _ => {
            return fail(
                ErrorKind::Internal,
                "the test-login client is not registered",
            );
        }
    };
    let redirect_uri = state.url("/test-login/callback");
    let params = match Params::from_pairs(vec![
        ("grant_type".into(), "authorization_code".into()),
        ("code".into(), code.clone()),
        ("redirect_uri".into(), redirect_uri),
        ("code_verifier".into(), run.verifier.clone()),
    ]) {
        Ok(p) => p,
        Err(e) => return fail(ErrorKind::BadRequest, &e.to_string()),
    };
    let tokens = match provider.token(&client, &params, now).await {
        Ok(t) => t,
        Err(e) => return fail(ErrorKind::BadRequest, &e.to_string()),
    };
    let Some(id_token) = tokens.id_token.clone() else {
        return fail(ErrorKind::Internal, "no ID token was issued");
    };
    let claims = match provider.keys.verify(&id_token) {
        Ok((_, c)) => c,
        Err(e) => return fail(ErrorKind::Internal, &e.to_string()),
    };
    let checks = [
        (
            claims.get("iss").and_then(Value::as_str) == Some(provider.issuer()),
            "iss",
        ),
        (
            claims.get("aud").and_then(Value::as_str) == Some(TEST_LOGIN_CLIENT_ID),
            "aud",
        ),
        (
            claims.get("nonce").and_then(Value::as_str) == Some(run.nonce.as_str()),
            "nonce",
        ),
        (
            claims
                .get("exp")
                .and_then(Value::as_i64)
                .is_some_and(|e| e > now),
            "exp",
        ),
    ];
    if let Some((_, name)) = checks.iter().find(|(ok, _)| !ok) {
        return fail(
            ErrorKind::Internal,
            &format!("the ID token failed the {name} check"),
        );
    }
    let userinfo = match provider.userinfo(&tokens.access_token, now).await {
        Ok(v) => v,
        Err(e) => serde_json::json!({"error": e.to_string()}),
    };
    let access_claims = provider
        .keys
        .verify(&tokens.access_token)
        .map(|(_, c)| c)
        .unwrap_or(Value::Null);
    // The test client keeps nothing: drop the refresh token at once.
    if let Some(rt) = &tokens.refresh_token {
        let _ = provider.revoke(&client, rt, now).await;
    }
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let ctx = state.page(&headers, "/test-login");
    pages::test_login_result(
        &ctx,
        &pretty(&claims),
        &pretty(&userinfo),
        &pretty(&access_claims),
        &id_token,
    )
}

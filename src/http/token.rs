//! JSON endpoints: discovery, JWKS, token, userinfo, introspection, revocation, readiness.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::authorize::is_form;
use super::{ApiError, AppState, BearerError};
use crate::oidc::clients::{RegisteredClient, extract_credentials};
use crate::oidc::params::Params;
use crate::oidc::{ErrorCode, OAuthError};

fn json_bytes(body: Bytes, cache: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    resp
}

pub async fn discovery(State(state): State<AppState>) -> Response {
    json_bytes(state.provider.discovery_json(), "public, max-age=3600")
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    // Short cache: relying parties must see a new key well before it signs anything.
    json_bytes(state.provider.keys.jwks(), "public, max-age=60")
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let storage_ok = state.provider.storage.ping().await.is_ok();
    let keys_ok = state
        .provider
        .keys
        .has_key(state.provider.config.signer.algorithm);
    let status = if storage_ok && keys_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"storage": storage_ok, "keys": keys_ok})),
    )
        .into_response()
}

/// Parses a form body strictly: right content type, UTF-8, no duplicated parameter.
fn form_params(headers: &HeaderMap, body: &Bytes) -> Result<Params, OAuthError> {
    if !is_form(headers) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    let params = Params::parse(text)?;
    params.refuse_duplicates()?;
    Ok(params)
}

async fn authenticated_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<std::sync::Arc<RegisteredClient>, OAuthError> {
    if headers.get_all(AUTHORIZATION).iter().count() > 1 {
        return Err(OAuthError::invalid_request(
            "more than one Authorization header",
        ));
    }
    let authorization = headers
        .get(AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))
        })
        .transpose()?;
    let creds = extract_credentials(
        authorization,
        params.get("client_id")?,
        params.get("client_secret")?,
    )?;
    state.provider.authenticate_client(&creds).await
}

pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result: Result<Response, OAuthError> = async {
        let params = form_params(&headers, &body)?;
        let client = authenticated_client(&state, &headers, &params).await?;
        let resp = state.provider.token(&client, &params, state.now()).await?;
        let grant_type = params.get("grant_type").ok().flatten().unwrap_or("");
        tracing::info!(client_id = %client.id, grant_type, "tokens issued");
        crate::telemetry::token_issued(grant_type, &client.id);
        state.provider.audit.record(
            "token_issued",
            state.now(),
            crate::oidc::audit::Audit {
                user_id: Some(&resp.subject),
                client_id: Some(&client.id),
                detail: Some(grant_type),
                ..Default::default()
            },
        );
        let mut r = Json(resp).into_response();
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r.headers_mut()
            .insert(PRAGMA, HeaderValue::from_static("no-cache"));
        Ok(r)
    }
    .await;
    result.unwrap_or_else(|e| ApiError::from(e).into_response())
}

fn bearer(headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OAuthError::invalid_request(
            "more than one Authorization header",
        ));
    }
    let v = v
        .to_str()
        .map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
    match v.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_string()))
        }
        _ => Err(OAuthError::invalid_request(
            "the Authorization header is not a Bearer token",
        )),
    }
}

async fn userinfo_for(state: &AppState, token: Option<String>) -> Response {
    let Some(token) = token else {
        return BearerError(None).into_response();
    };
    match state.provider.userinfo(&token, state.now()).await {
        Ok(claims) => {
            let mut r = Json(claims).into_response();
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => BearerError(Some(e)).into_response(),
    }
}

pub async fn userinfo_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match bearer(&headers) {
        Ok(t) => userinfo_for(&state, t).await,
        Err(e) => BearerError(Some(e)).into_response(),
    }
}

/// RFC 6750 2.2 also allows the token in a form body, but never in two places at once.
pub async fn userinfo_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_token = match bearer(&headers) {
        Ok(t) => t,
        Err(e) => return BearerError(Some(e)).into_response(),
    };
    let body_token = if body.is_empty() {
        None
    } else {
        match form_params(&headers, &body)
            .and_then(|p| p.get("access_token").map(|t| t.map(str::to_string)))
        {
            Ok(t) => t,
            Err(e) => return BearerError(Some(e)).into_response(),
        }
    };
    match (header_token, body_token) {
        (Some(_), Some(_)) => BearerError(Some(OAuthError::invalid_request(
            "the access token was sent in more than one way",
        )))
        .into_response(),
        (h, b) => userinfo_for(&state, h.or(b)).await,
    }
}

pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result: Result<Response, OAuthError> = async {
        let params = form_params(&headers, &body)?;
        let client = authenticated_client(&state, &headers, &params).await?;
        if client.public {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "public clients may not introspect tokens",
            ));
        }
        let token = params.require("token")?;
        let out = state
            .provider
            .introspect(&client, token, state.now())
            .await?;
        let mut r = Json(out).into_response();
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    }
    .await;
    result.unwrap_or_else(|e| ApiError::from(e).into_response())
}

pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result: Result<Response, OAuthError> = async {
        let params = form_params(&headers, &body)?;
        let client = authenticated_client(&state, &headers, &params).await?;
        let token = params.require("token")?;
        state.provider.revoke(&client, token, state.now()).await?;
        Ok(StatusCode::OK.into_response())
    }
    .await;
    result.unwrap_or_else(|e| ApiError::from(e).into_response())
}

/// The device authorization endpoint (RFC 8628 3.1): public clients identify themselves with
/// `client_id`, confidential ones authenticate as at the token endpoint.
pub async fn device_authorization(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result: Result<Response, OAuthError> = async {
        let params = form_params(&headers, &body)?;
        let client = authenticated_client(&state, &headers, &params).await?;
        let out = state
            .provider
            .device_authorization(&client, &params, state.now())
            .await?;
        let mut r = Json(out).into_response();
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    }
    .await;
    result.unwrap_or_else(|e| ApiError::from(e).into_response())
}

//! Error responses: RFC 6749 5.2 JSON for APIs, RFC 6750 3 for protected resources.

use axum::Json;
use axum::http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::oidc::{ErrorCode, OAuthError};

/// An OAuth error as a JSON response (token, revocation, introspection endpoints).
#[derive(Debug)]
pub struct ApiError {
    pub error: OAuthError,
}

impl From<OAuthError> for ApiError {
    fn from(error: OAuthError) -> Self {
        Self { error }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        if status.is_server_error() {
            tracing::warn!(error = %self.error, "request failed");
        } else {
            tracing::info!(error = %self.error, "request refused");
        }
        let mut body = json!({"error": self.error.code.as_str()});
        if let Some(d) = &self.error.description {
            body["error_description"] = json!(d);
        }
        let mut resp = (status, Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        // RFC 6749 5.2: a 401 says how the client may authenticate.
        if status == StatusCode::UNAUTHORIZED {
            h.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"idbridge\""),
            );
        }
        resp
    }
}

/// An error of a bearer-protected resource (userinfo), per RFC 6750 3.
#[derive(Debug)]
pub struct BearerError(pub Option<OAuthError>);

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let Some(err) = self.0 else {
            // No credentials at all: a bare challenge without an error code (RFC 6750 3.1).
            let mut resp = (
                StatusCode::UNAUTHORIZED,
                Json(
                    json!({"error": "invalid_token", "error_description": "missing bearer token"}),
                ),
            )
                .into_response();
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"idbridge\""),
            );
            return resp;
        };
        tracing::info!(error = %err, "bearer token refused");
        let status = match err.code {
            ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // RFC 6750 3: error_description is limited to %x20-21 / %x23-5B / %x5D-7E, so the
        // header can always be built whatever the description holds.
        let description: String = err
            .description
            .clone()
            .unwrap_or_default()
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                ' '..='~' => c,
                _ => '?',
            })
            .collect();
        let challenge = format!(
            "Bearer realm=\"idbridge\", error=\"{}\", error_description=\"{}\"",
            err.code.as_str(),
            description
        );
        let mut body = json!({"error": err.code.as_str()});
        if let Some(d) = &err.description {
            body["error_description"] = json!(d);
        }
        let mut resp = (status, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        resp.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
//!
//! KubeSphere 3.4 sends the browser here with no parameters at all, 4.1 with
//! `post_logout_redirect_uri` (possibly empty) and `client_id`; other clients add
//! `id_token_hint` and `state`. All of them end the session. We redirect only to a URI
//! registered for that client, compared exactly; otherwise we show the signed-out page.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use tower_sessions::Session;

use super::authorize::{is_form, see_other};
use super::pages::{self, ErrorKind};
use super::session::BrowserSession;
use super::{AppState, page_error};
use crate::oidc::authorize::append_query;
use crate::oidc::params::Params;

pub async fn logout_get(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query.unwrap_or_default();
    let path = if q.is_empty() {
        "/logout".to_string()
    } else {
        format!("/logout?{q}")
    };
    match Params::parse(&q) {
        Ok(p) => logout(&state, &session, &headers, &p, &path).await,
        Err(e) => page_error(
            &state,
            &headers,
            &path,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
            e.description.as_deref(),
        ),
    }
}

pub async fn logout_post(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = "/logout";
    let parsed = if body.is_empty() {
        Ok(Params::default())
    } else if !is_form(&headers) {
        Err(crate::oidc::OAuthError::invalid_request(
            "the body must be a form",
        ))
    } else {
        std::str::from_utf8(&body)
            .map_err(|_| crate::oidc::OAuthError::invalid_request("the body is not UTF-8"))
            .and_then(Params::parse)
    };
    match parsed {
        Ok(p) => logout(&state, &session, &headers, &p, path).await,
        Err(e) => page_error(
            &state,
            &headers,
            path,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
            e.description.as_deref(),
        ),
    }
}

async fn logout(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    params: &Params,
    path: &str,
) -> Response {
    let bad = |detail: &str| {
        page_error(
            state,
            headers,
            path,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
            Some(detail),
        )
    };
    let (hint, client_id, redirect, logout_state) = match (
        params.get("id_token_hint"),
        params.get("client_id"),
        params.get("post_logout_redirect_uri"),
        params.get("state"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        _ => return bad("a parameter was given more than once"),
    };
    // The hint identifies the client; an expired ID token is still a fine hint.
    let hinted_client = match hint {
        None => None,
        Some(token) => match state.provider.keys.verify(token) {
            Ok((_, claims))
                if claims.get("iss").and_then(Value::as_str) == Some(state.provider.issuer()) =>
            {
                match claims.get("aud") {
                    Some(Value::String(a)) => Some(a.clone()),
                    Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_string),
                    _ => None,
                }
            }
            _ => return bad("id_token_hint is not an ID token issued here"),
        },
    };
    if let (Some(h), Some(c)) = (&hinted_client, client_id)
        && h != c
    {
        return bad("client_id does not match id_token_hint");
    }
    let client_id = client_id.map(str::to_string).or(hinted_client);

    let target = match redirect {
        None => None,
        Some(uri) => {
            let client = match &client_id {
                // A storage failure here just means no redirect.
                Some(id) => state
                    .provider
                    .clients
                    .get(state.provider.storage.as_ref(), id)
                    .await
                    .unwrap_or_default(),
                None => None,
            };
            match client {
                Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => {
                    Some(uri.to_string())
                }
                _ => {
                    tracing::info!(
                        client_id = client_id.as_deref().unwrap_or("-"),
                        "logout refused an unregistered post_logout_redirect_uri"
                    );
                    return page_error(
                        state,
                        headers,
                        path,
                        StatusCode::BAD_REQUEST,
                        ErrorKind::BadRedirectUri,
                        None,
                    );
                }
            }
        }
    };

    // Back-channel logout for every client that received a code in this session.
    if let Ok(bs) = BrowserSession::load(session).await
        && let Some(user) = &bs.user
    {
        notify_clients(state, &bs.clients, &user.user_id, &user.sid).await;
        state.provider.audit.record(
            "logout",
            state.now(),
            crate::oidc::audit::Audit {
                user_id: Some(&user.user_id),
                client_id: client_id.as_deref(),
                connector_id: Some(&user.connector_id),
                ..Default::default()
            },
        );
    }
    if let Err(e) = session.flush().await {
        tracing::error!(error = %e, "could not end the session");
        return page_error(
            state,
            headers,
            path,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::ServiceUnavailable,
            None,
        );
    }
    tracing::info!(
        client_id = client_id.as_deref().unwrap_or("-"),
        "signed out"
    );
    match target {
        Some(uri) => {
            let pairs: Vec<(&str, &str)> =
                logout_state.map(|s| vec![("state", s)]).unwrap_or_default();
            see_other(&append_query(&uri, &pairs))
        }
        None => {
            let ctx = state.page(headers, path);
            pages::signed_out(&ctx, None)
        }
    }
}

/// POSTs a logout token to each client's registered back-channel logout URI, in the
/// background: a slow or failing client must not hold up the user's sign-out.
async fn notify_clients(state: &AppState, client_ids: &[String], subject: &str, sid: &str) {
    let provider = &state.provider;
    let now = state.now();
    for id in client_ids {
        let Ok(Some(client)) = provider.clients.get(provider.storage.as_ref(), id).await else {
            continue;
        };
        let Some(uri) = client.backchannel_logout_uri.clone() else {
            continue;
        };
        let Ok(token) = provider.logout_token(&client.id, subject, sid, now) else {
            continue;
        };
        let http = state.http.clone();
        let client_id = client.id.clone();
        tokio::spawn(async move {
            let sent = http
                .post(&uri)
                .form(&[("logout_token", token.as_str())])
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(client_id = %client_id, "back-channel logout delivered")
                }
                Ok(r) => {
                    tracing::warn!(client_id = %client_id, status = %r.status(), "back-channel logout refused")
                }
                Err(e) => {
                    tracing::warn!(client_id = %client_id, error = %e, "back-channel logout failed")
                }
            }
        });
    }
}

//! The browser side of authorization: `/auth`, the connector chooser, password and upstream
//! logins, consent, and the response to the client.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::pages::{self, ConnectorLink, ErrorKind};
use super::session::{BrowserSession, SignedIn, UpstreamLogin};
use super::{AppState, page_error};
use crate::connectors::{ConnectorError, Identity, Kind};
use crate::oidc::audit::Audit;
use crate::oidc::authorize::{AuthorizeError, PageError, validate};
use crate::oidc::clients::RegisteredClient;
use crate::oidc::params::Params;
use crate::oidc::provider::{AuthResponse, normalize_user_code};
use crate::oidc::{OAuthError, random, subject};
use crate::storage::{AuthRequest, DeviceDecision, DeviceStatus, StorageError, User};

/// What went wrong in the browser flow, answered as a page.
pub(crate) struct BrowserError {
    status: StatusCode,
    kind: ErrorKind,
    detail: Option<String>,
    upstream: Option<(String, String)>,
}

impl BrowserError {
    fn new(status: StatusCode, kind: ErrorKind, detail: impl Into<Option<String>>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            upstream: None,
        }
    }
    fn expired() -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::LoginExpired, None)
    }
    fn render(self, state: &AppState, headers: &HeaderMap, path: &str) -> Response {
        let ctx = state.page(headers, path);
        let upstream = self
            .upstream
            .as_ref()
            .map(|(c, r)| (c.as_str(), r.as_str()));
        pages::error_page(
            &ctx,
            self.status,
            self.kind,
            self.detail.as_deref(),
            upstream,
        )
    }
}

impl From<OAuthError> for BrowserError {
    fn from(e: OAuthError) -> Self {
        match e.code {
            crate::oidc::ErrorCode::TemporarilyUnavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::ServiceUnavailable,
                None,
            ),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Internal, None),
        }
    }
}

impl From<StorageError> for BrowserError {
    fn from(e: StorageError) -> Self {
        OAuthError::from(e).into()
    }
}

impl From<tower_sessions::session_store::Error> for BrowserError {
    fn from(e: tower_sessions::session_store::Error) -> Self {
        tracing::error!(error = %e, "session store failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::ServiceUnavailable,
            None,
        )
    }
}

fn path_with_query(path: &str, query: &Option<String>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

pub async fn authorize_get(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let path = path_with_query("/auth", &query);
    let params = match Params::parse(query.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return bad_request_page(&state, &headers, &path, e),
    };
    authorize(state, session, headers, params, path).await
}

pub async fn authorize_post(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = "/auth".to_string();
    if !is_form(&headers) {
        return bad_request_page(
            &state,
            &headers,
            &path,
            OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"),
        );
    }
    let params = match std::str::from_utf8(&body)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))
        .and_then(Params::parse)
    {
        Ok(p) => p,
        Err(e) => return bad_request_page(&state, &headers, &path, e),
    };
    authorize(state, session, headers, params, path).await
}

pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn bad_request_page(state: &AppState, headers: &HeaderMap, path: &str, e: OAuthError) -> Response {
    tracing::info!(error = %e, "authorization request refused");
    page_error(
        state,
        headers,
        path,
        StatusCode::BAD_REQUEST,
        ErrorKind::BadRequest,
        e.description.as_deref(),
    )
}

async fn authorize(
    state: AppState,
    session: Session,
    headers: HeaderMap,
    params: Params,
    path: String,
) -> Response {
    match authorize_inner(&state, &session, &headers, &params).await {
        Ok(resp) => resp,
        Err(e) => e.render(&state, &headers, &path),
    }
}

async fn authorize_inner(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, BrowserError> {
    let provider = &state.provider;
    let now = state.now();
    let client = match params.get("client_id") {
        Ok(Some(id)) => provider.clients.get(provider.storage.as_ref(), id).await?,
        _ => None,
    };
    let lifetime = provider.config.expiry.auth_requests.as_secs() as i64;
    let exists = |id: &str| provider.connectors.get(id).is_some();
    let req = match validate(params, client.as_ref(), &exists, now, lifetime) {
        Ok(r) => r,
        Err(AuthorizeError::Page(e)) => {
            let (kind, detail) = match e {
                PageError::BadRequest(d) => (ErrorKind::BadRequest, Some(d)),
                PageError::UnknownClient => (ErrorKind::UnknownClient, None),
                PageError::BadRedirectUri => (ErrorKind::BadRedirectUri, None),
            };
            tracing::info!(
                ?kind,
                "authorization request refused before the redirect URI was trusted"
            );
            return Err(BrowserError::new(StatusCode::BAD_REQUEST, kind, detail));
        }
        Err(AuthorizeError::Redirect(r)) => {
            tracing::info!(error = %r.error, "authorization request refused");
            let resp = provider.error_response(
                &r.redirect_uri,
                &r.response_mode,
                r.state.as_deref(),
                &r.error,
            );
            return Ok(respond(state, headers, &resp));
        }
    };
    let Some(client) = client else {
        return Err(BrowserError::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::UnknownClient,
            None,
        ));
    };
    let mut bs = BrowserSession::load(session).await?;

    // Single sign-on: reuse the session unless the request asks for a fresh login.
    let reusable = match &bs.user {
        Some(u) => session_satisfies(state, &req, &client, u, now).await?,
        None => None,
    };
    if let Some(stored_user) = reusable
        && let Some(u) = bs.user.clone()
    {
        let needs_consent = needs_consent(state, &client, &bs, &req);
        if needs_consent && req.prompt.iter().any(|p| p == "none") {
            return Ok(error_redirect(
                state,
                headers,
                &req,
                OAuthError::bare(crate::oidc::ErrorCode::ConsentRequired),
            ));
        }
        if !needs_consent {
            return finish_with_code(
                state,
                session,
                headers,
                &mut bs,
                &req,
                &u,
                &stored_user,
                false,
            )
            .await;
        }
        provider.storage.create_auth_request(&req).await?;
        bs.add_pending(&req.id);
        bs.store(session).await?;
        return Ok(see_other(&state.url(&format!("/approval?req={}", req.id))));
    }
    if req.prompt.iter().any(|p| p == "none") {
        return Ok(error_redirect(
            state,
            headers,
            &req,
            OAuthError::bare(crate::oidc::ErrorCode::LoginRequired),
        ));
    }

    provider.storage.create_auth_request(&req).await?;
    bs.add_pending(&req.id);
    bs.store(session).await?;

    Ok(see_other(&state.url(&login_target(state, &client, &req))))
}

/// Where a browser goes to sign in for `req`: the named connector, the only one, or the chooser.
fn login_target(state: &AppState, client: &RegisteredClient, req: &AuthRequest) -> String {
    let provider = &state.provider;
    let available: Vec<_> = provider
        .connectors
        .iter()
        .filter(|c| client.allows_connector(&c.id))
        .collect();
    match (&req.connector_id, available.as_slice()) {
        (Some(id), _) => format!("/login/{id}?req={}", req.id),
        (None, [only]) if !provider.config.oauth2.always_show_login_screen => {
            format!("/login/{}?req={}", only.id, req.id)
        }
        _ => format!("/login?req={}", req.id),
    }
}

/// The signed-in user, when the session may answer this request without a new login.
async fn session_satisfies(
    state: &AppState,
    req: &AuthRequest,
    client: &RegisteredClient,
    user: &SignedIn,
    now: i64,
) -> Result<Option<User>, BrowserError> {
    if req
        .prompt
        .iter()
        .any(|p| p == "login" || p == "select_account")
    {
        return Ok(None);
    }
    // max_age=0 is prompt=login (OpenID Connect Core 3.1.2.1), even within the same second.
    if let Some(max_age) = req.max_age
        && (max_age == 0 || now - user.auth_time > max_age)
    {
        return Ok(None);
    }
    if user.auth_time + state.provider.config.expiry.sessions.as_secs() as i64 <= now {
        return Ok(None);
    }
    if !client.allows_connector(&user.connector_id) {
        return Ok(None);
    }
    if let Some(c) = &req.connector_id
        && c != &user.connector_id
    {
        return Ok(None);
    }
    match state.provider.storage.get_user(&user.user_id).await {
        Ok(u) => Ok(Some(u)),
        Err(StorageError::NotFound) => Ok(None),
        Err(e) => Err(OAuthError::from(e).into()),
    }
}

fn needs_consent(
    state: &AppState,
    client: &RegisteredClient,
    bs: &BrowserSession,
    req: &AuthRequest,
) -> bool {
    // A device login always asks: the user must confirm that the device is theirs (RFC 8628
    // 5.4, remote phishing), whatever the approval settings say.
    if req.prompt.iter().any(|p| p == "consent") || req.device_request_id.is_some() {
        return true;
    }
    !(state.provider.config.oauth2.skip_approval_screen
        || client.skip_approval
        || bs.consents.iter().any(|c| c == &client.id))
}

fn error_redirect(
    state: &AppState,
    headers: &HeaderMap,
    req: &AuthRequest,
    err: OAuthError,
) -> Response {
    let resp = state.provider.error_response(
        &req.redirect_uri,
        &req.response_mode,
        req.state.as_deref(),
        &err,
    );
    respond(state, headers, &resp)
}

pub(crate) fn see_other(url: &str) -> Response {
    Redirect::to(url).into_response()
}

/// Sends an authorization response (success or error) to the client's redirect URI.
fn respond(state: &AppState, headers: &HeaderMap, resp: &AuthResponse) -> Response {
    if resp.response_mode == "form_post" {
        let ctx = state.page(headers, "/auth");
        pages::form_post(&ctx, &resp.redirect_uri, &resp.params)
    } else {
        see_other(&resp.query_url())
    }
}

/// Issues the code and answers the client.
// The arguments are the request's whole context; bundling them would only move the list.
#[allow(clippy::too_many_arguments)]
async fn finish_with_code(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    bs: &mut BrowserSession,
    req: &AuthRequest,
    user: &SignedIn,
    stored_user: &User,
    request_stored: bool,
) -> Result<Response, BrowserError> {
    let provider = &state.provider;
    if let Some(device_id) = &req.device_request_id {
        let decision = DeviceDecision::Approve {
            user_id: stored_user.id.clone(),
            connector_id: user.connector_id.clone(),
            auth_time: user.auth_time,
            session_id: Some(user.sid.clone()),
        };
        return finish_device(state, session, headers, bs, req, device_id, &decision).await;
    }
    let resp = provider
        .issue_code(
            req,
            stored_user,
            Some(&user.sid),
            user.auth_time,
            state.now(),
        )
        .await?;
    if request_stored {
        // The request is finished; failing to delete it only leaves a row for collection.
        if let Err(e) = provider.storage.delete_auth_request(&req.id).await {
            tracing::debug!(error = %e, "could not delete a finished authorization request");
        }
    }
    // Single sign-on usually changes nothing in the session: write it only when it did.
    let before = (bs.pending.len(), bs.upstream.len(), bs.clients.len());
    bs.finish(&req.id);
    if !bs.clients.contains(&req.client_id) {
        bs.clients.push(req.client_id.clone());
    }
    if (bs.pending.len(), bs.upstream.len(), bs.clients.len()) != before {
        bs.store(session).await?;
    }
    tracing::info!(client_id = %req.client_id, user_id = %stored_user.id, "authorization code issued");
    Ok(respond(state, headers, &resp))
}

/// Records the user's decision on a device request and tells them to return to the device.
async fn finish_device(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    bs: &mut BrowserSession,
    req: &AuthRequest,
    device_id: &str,
    decision: &DeviceDecision,
) -> Result<Response, BrowserError> {
    let approved = matches!(decision, DeviceDecision::Approve { .. });
    match state
        .provider
        .storage
        .decide_device_request(device_id, decision)
        .await
    {
        Ok(()) => {}
        Err(StorageError::Conflict) | Err(StorageError::NotFound) => {
            return Err(BrowserError::expired());
        }
        Err(e) => return Err(e.into()),
    }
    let _ = state.provider.storage.delete_auth_request(&req.id).await;
    bs.finish(&req.id);
    bs.store(session).await?;
    tracing::info!(client_id = %req.client_id, approved, "device request decided");
    let ctx = state.page(headers, "/device");
    Ok(pages::device_done(&ctx, approved))
}

pub async fn device_get(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let path = path_with_query("/device", &query);
    let q = query_map(&query);
    let result: Result<Response, BrowserError> = async {
        let bs = BrowserSession::load(&session).await?;
        bs.store(&session).await?;
        let ctx = state.page(&headers, &path);
        let code = q.get("user_code").map(String::as_str).unwrap_or("");
        let code: String = code.chars().take(16).collect();
        Ok(pages::device_enter(
            &ctx,
            &state.url("/device"),
            &bs.csrf,
            &code,
            false,
        ))
    }
    .await;
    result.unwrap_or_else(|e| e.render(&state, &headers, &path))
}

pub async fn device_post(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = "/device".to_string();
    let form = form_fields(&body);
    let result: Result<Response, BrowserError> = async {
        let mut bs = form_session(&session, &headers, &form).await?;
        let provider = &state.provider;
        let now = state.now();
        let typed = form.get("user_code").map(String::as_str).unwrap_or("");
        let found = match normalize_user_code(typed) {
            None => None,
            Some(code) => match provider
                .storage
                .get_device_request_by_user_code(&code)
                .await
            {
                Ok(r) if r.status == DeviceStatus::Pending && r.expires_at > now => Some(r),
                Ok(_) | Err(StorageError::NotFound) => None,
                Err(e) => return Err(e.into()),
            },
        };
        let Some(device) = found else {
            tracing::info!("device login with an unknown or expired user code");
            let ctx = state.page(&headers, "/device");
            let shown: String = typed.chars().take(16).collect();
            return Ok(pages::device_enter(
                &ctx,
                &state.url("/device"),
                &bs.csrf,
                &shown,
                true,
            ));
        };
        let client = provider
            .clients
            .get(provider.storage.as_ref(), &device.client_id)
            .await?
            .ok_or_else(BrowserError::expired)?;
        let req = AuthRequest {
            id: random::token(24),
            client_id: client.id.clone(),
            redirect_uri: String::new(),
            response_mode: "device".into(),
            scopes: device.scopes.clone(),
            state: None,
            nonce: None,
            code_challenge: None,
            prompt: Vec::new(),
            max_age: None,
            login_hint: None,
            connector_id: None,
            device_request_id: Some(device.id.clone()),
            created_at: now,
            expires_at: now + provider.config.expiry.auth_requests.as_secs() as i64,
        };
        provider.storage.create_auth_request(&req).await?;
        bs.add_pending(&req.id);
        bs.store(&session).await?;
        let signed_in = match &bs.user {
            Some(u) => session_satisfies(&state, &req, &client, u, now)
                .await?
                .is_some(),
            None => false,
        };
        let target = if signed_in {
            format!("/approval?req={}", req.id)
        } else {
            login_target(&state, &client, &req)
        };
        Ok(see_other(&state.url(&target)))
    }
    .await;
    result.unwrap_or_else(|e| e.render(&state, &headers, &path))
}

/// Loads a pending request by id, checking it belongs to this browser and has not expired.
async fn pending_request(
    state: &AppState,
    bs: &BrowserSession,
    id: Option<&str>,
) -> Result<AuthRequest, BrowserError> {
    let id = id.ok_or_else(BrowserError::expired)?;
    if !bs.owns(id) {
        return Err(BrowserError::expired());
    }
    match state.provider.storage.get_auth_request(id).await {
        Ok(r) if r.expires_at > state.now() => Ok(r),
        Ok(_) | Err(StorageError::NotFound) => Err(BrowserError::expired()),
        Err(e) => Err(OAuthError::from(e).into()),
    }
}

fn form_fields(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The browser session behind a form submission, once the form proved it came from our page
/// (right content type, the session's CSRF token).
async fn form_session(
    session: &Session,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<BrowserSession, BrowserError> {
    let bs = BrowserSession::load(session).await?;
    if !is_form(headers) || !bs.check_csrf(form.get("csrf").map(String::as_str)) {
        return Err(BrowserError::new(
            StatusCode::FORBIDDEN,
            ErrorKind::CsrfFailed,
            None,
        ));
    }
    Ok(bs)
}

pub(crate) fn query_map(query: &Option<String>) -> HashMap<String, String> {
    form_fields(query.as_deref().unwrap_or("").as_bytes())
}

pub async fn chooser(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let path = path_with_query("/login", &query);
    let q = query_map(&query);
    let result: Result<Response, BrowserError> = async {
        let bs = BrowserSession::load(&session).await?;
        let req = pending_request(&state, &bs, q.get("req").map(String::as_str)).await?;
        let client = state
            .provider
            .clients
            .get(state.provider.storage.as_ref(), &req.client_id)
            .await?
            .ok_or_else(BrowserError::expired)?;
        let links: Vec<ConnectorLink> = state
            .provider
            .connectors
            .iter()
            .filter(|c| client.allows_connector(&c.id))
            .map(|c| ConnectorLink {
                id: c.id.clone(),
                name: c.name.clone(),
                kind: c.kind_name.clone(),
                url: state.url(&format!("/login/{}?req={}", c.id, req.id)),
            })
            .collect();
        let ctx = state.page(&headers, &path);
        Ok(pages::chooser(&ctx, &client.name, &links))
    }
    .await;
    result.unwrap_or_else(|e| e.render(&state, &headers, &path))
}

pub async fn login_get(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(connector_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let path = path_with_query(&format!("/login/{connector_id}"), &query);
    let q = query_map(&query);
    let result: Result<Response, BrowserError> = async {
        let mut bs = BrowserSession::load(&session).await?;
        let req = pending_request(&state, &bs, q.get("req").map(String::as_str)).await?;
        let connector = usable_connector(&state, &req, &connector_id).await?;
        match &connector.kind {
            Kind::Password(_) => {
                bs.store(&session).await?;
                let ctx = state.page(&headers, &path);
                let action = state.url(&format!("/login/{connector_id}?req={}", req.id));
                Ok(pages::password_form(
                    &ctx,
                    &connector.name,
                    &action,
                    &bs.csrf,
                    req.login_hint.as_deref().unwrap_or(""),
                    false,
                    StatusCode::OK,
                ))
            }
            Kind::Callback(cb) => {
                let callback_url = state.url("/callback");
                let redirect = cb
                    .login_url(&callback_url, &req.id)
                    .await
                    .map_err(|e| connector_failure(&state, &connector_id, e))?;
                bs.upstream.retain(|u| u.request_id != req.id);
                bs.upstream.push(UpstreamLogin {
                    request_id: req.id.clone(),
                    connector_id: connector_id.clone(),
                    data: redirect.data,
                });
                bs.store(&session).await?;
                Ok(see_other(&redirect.url))
            }
        }
    }
    .await;
    result.unwrap_or_else(|e| e.render(&state, &headers, &path))
}

async fn usable_connector(
    state: &AppState,
    req: &AuthRequest,
    connector_id: &str,
) -> Result<crate::connectors::Connector, BrowserError> {
    let not_found = || BrowserError::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, None);
    let connector = state
        .provider
        .connectors
        .get(connector_id)
        .ok_or_else(not_found)?;
    let client = state
        .provider
        .clients
        .get(state.provider.storage.as_ref(), &req.client_id)
        .await?
        .ok_or_else(BrowserError::expired)?;
    if !client.allows_connector(connector_id)
        || req
            .connector_id
            .as_deref()
            .is_some_and(|c| c != connector_id)
    {
        return Err(not_found());
    }
    Ok(connector.clone())
}

fn connector_failure(state: &AppState, connector_id: &str, e: ConnectorError) -> BrowserError {
    let outcome = match &e {
        ConnectorError::Denied(_) | ConnectorError::DeniedUpstream { .. } => "denied",
        ConnectorError::BadCallback(_) => "bad_callback",
        _ => "upstream_error",
    };
    crate::telemetry::login(connector_id, outcome);
    let reason = format!("{outcome}: {e}");
    state.provider.audit.record(
        "login_failed",
        state.now(),
        Audit {
            connector_id: Some(connector_id),
            detail: Some(&reason),
            ..Audit::default()
        },
    );
    match e {
        ConnectorError::Upstream {
            code,
            message,
            request_id,
        } => {
            tracing::warn!(connector = connector_id, upstream_code = %code, upstream_request_id = request_id.as_deref().unwrap_or("-"), message = %message, "upstream refused the login");
            let mut err = BrowserError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::UpstreamFailed,
                Some(message),
            );
            err.upstream = Some((code, request_id.unwrap_or_else(|| "-".into())));
            err
        }
        ConnectorError::DeniedUpstream {
            code,
            message,
            request_id,
        } => {
            tracing::info!(connector = connector_id, upstream_code = %code, upstream_request_id = request_id.as_deref().unwrap_or("-"), reason = %message, "upstream login denied");
            let mut err = BrowserError::new(
                StatusCode::FORBIDDEN,
                ErrorKind::AccessDenied,
                Some(message),
            );
            err.upstream = Some((code, request_id.unwrap_or_else(|| "-".into())));
            err
        }
        ConnectorError::Denied(msg) => {
            tracing::info!(connector = connector_id, reason = %msg, "upstream login denied");
            BrowserError::new(StatusCode::FORBIDDEN, ErrorKind::AccessDenied, Some(msg))
        }
        ConnectorError::Unavailable(msg) => {
            tracing::warn!(connector = connector_id, error = %msg, "upstream unavailable");
            BrowserError::new(StatusCode::BAD_GATEWAY, ErrorKind::UpstreamFailed, None)
        }
        ConnectorError::BadResponse(msg) => {
            tracing::warn!(connector = connector_id, error = %msg, "unexpected upstream response");
            BrowserError::new(StatusCode::BAD_GATEWAY, ErrorKind::UpstreamFailed, None)
        }
        ConnectorError::BadCallback(msg) => {
            tracing::info!(connector = connector_id, error = %msg, "invalid upstream callback");
            BrowserError::new(StatusCode::BAD_REQUEST, ErrorKind::BadRequest, Some(msg))
        }
    }
}

pub async fn login_post(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(connector_id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let path = path_with_query(&format!("/login/{connector_id}"), &query);
    let q = query_map(&query);
    let form = form_fields(&body);
    let result: Result<Response, BrowserError> = async {
        let mut bs = form_session(&session, &headers, &form).await?;
        let req = pending_request(&state, &bs, q.get("req").map(String::as_str)).await?;
        let connector = usable_connector(&state, &req, &connector_id).await?;
        let Kind::Password(pw) = &connector.kind else {
            return Err(BrowserError::new(
                StatusCode::NOT_FOUND,
                ErrorKind::NotFound,
                None,
            ));
        };
        let login = form.get("login").map(String::as_str).unwrap_or("");
        let password = form.get("password").map(String::as_str).unwrap_or("");
        if let Err(wait) = state.limits.check_account(login) {
            tracing::warn!(connector = %connector_id, "password attempts delayed after repeated failures");
            return Ok(super::too_many_page(&state, &headers, &path, wait));
        }
        let identity = if login.is_empty()
            || password.is_empty()
            || login.len() > 256
            || password.len() > 1024
        {
            None
        } else {
            pw.login(login, password)
                .await
                .map_err(|e| connector_failure(&state, &connector_id, e))?
        };
        match &identity {
            Some(_) => state.limits.record_success(login),
            None => state.limits.record_failure(login),
        }
        let Some(identity) = identity else {
            tracing::info!(connector = %connector_id, "login failed: invalid credentials");
            crate::telemetry::login(&connector_id, "invalid_credentials");
            // The login name is recorded (it is what an investigator searches for); the
            // password never is.
            let detail = format!(
                "invalid credentials for {:?}",
                login.chars().take(64).collect::<String>()
            );
            state.provider.audit.record(
                "login_failed",
                state.now(),
                Audit {
                    connector_id: Some(&connector_id),
                    detail: Some(&detail),
                    ..Audit::default()
                },
            );
            let ctx = state.page(&headers, &path);
            let action = state.url(&format!("/login/{connector_id}?req={}", req.id));
            return Ok(pages::password_form(
                &ctx,
                &connector.name,
                &action,
                &bs.csrf,
                login,
                true,
                StatusCode::UNAUTHORIZED,
            ));
        };
        signed_in(
            &state,
            &session,
            &headers,
            &mut bs,
            &req,
            &connector_id,
            identity,
        )
        .await
    }
    .await;
    result.unwrap_or_else(|e| e.render(&state, &headers, &path))
}

/// Upstream callback: `state` is our authorization request id.
pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let path = path_with_query("/callback", &query);
    let q = query_map(&query);
    let result: Result<Response, BrowserError> = async {
        let mut bs = BrowserSession::load(&session).await?;
        let req = pending_request(&state, &bs, q.get("state").map(String::as_str)).await?;
        let upstream = bs
            .upstream
            .iter()
            .find(|u| u.request_id == req.id)
            .cloned()
            .ok_or_else(BrowserError::expired)?;
        let connector = usable_connector(&state, &req, &upstream.connector_id).await?;
        let Kind::Callback(cb) = &connector.kind else {
            return Err(BrowserError::expired());
        };
        // The upstream login is single-use whatever its outcome.
        bs.upstream.retain(|u| u.request_id != req.id);
        bs.store(&session).await?;
        if let Some(err) = q.get("error") {
            tracing::info!(connector = %upstream.connector_id, upstream_error = %err, "upstream returned an error");
            let mut e = BrowserError::new(
                StatusCode::FORBIDDEN,
                ErrorKind::AccessDenied,
                q.get("error_description").cloned(),
            );
            e.upstream = Some((err.clone(), "-".into()));
            return Err(e);
        }
        let identity = cb
            .handle_callback(&state.url("/callback"), &q, upstream.data.as_deref())
            .await
            .map_err(|e| connector_failure(&state, &upstream.connector_id, e))?;
        signed_in(&state, &session, &headers, &mut bs, &req, &upstream.connector_id, identity).await
    }
    .await;
    result.unwrap_or_else(|e| e.render(&state, &headers, &path))
}

/// A connector vouched for the user: store them, start the session, and continue.
async fn signed_in(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    bs: &mut BrowserSession,
    req: &AuthRequest,
    connector_id: &str,
    identity: Identity,
) -> Result<Response, BrowserError> {
    let provider = &state.provider;
    let now = state.now();
    let user = subject::upsert_user(
        provider.storage.as_ref(),
        &provider.subject_key,
        connector_id,
        &identity,
        &provider.config.identity,
        &provider.config.oauth2.reserved_usernames,
        now,
    )
    .await?;
    tracing::info!(connector = connector_id, user_id = %user.id, username = %user.username, "login succeeded");
    crate::telemetry::login(connector_id, "success");
    provider.audit.record(
        "login_succeeded",
        now,
        Audit {
            user_id: Some(&user.id),
            client_id: Some(&req.client_id),
            connector_id: Some(connector_id),
            detail: Some(&user.username),
        },
    );
    // A new login gets a new session id (no session fixation) and a new CSRF token.
    session.cycle_id().await.map_err(|e| {
        tracing::error!(error = %e, "could not renew the session id");
        BrowserError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::ServiceUnavailable,
            None,
        )
    })?;
    let same_user = bs.user.as_ref().is_some_and(|u| u.user_id == user.id);
    if !same_user {
        bs.consents.clear();
        bs.clients.clear();
    }
    bs.csrf = random::token(24);
    let signed = SignedIn {
        user_id: user.id.clone(),
        connector_id: connector_id.to_string(),
        auth_time: now,
        sid: random::token(16),
    };
    bs.user = Some(signed.clone());
    let client = provider
        .clients
        .get(provider.storage.as_ref(), &req.client_id)
        .await?
        .ok_or_else(BrowserError::expired)?;
    if needs_consent(state, &client, bs, req) {
        bs.store(session).await?;
        return Ok(see_other(&state.url(&format!("/approval?req={}", req.id))));
    }
    finish_with_code(state, session, headers, bs, req, &signed, &user, true).await
}

pub async fn approval_get(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let path = path_with_query("/approval", &query);
    let q = query_map(&query);
    let result: Result<Response, BrowserError> = async {
        let bs = BrowserSession::load(&session).await?;
        let req = pending_request(&state, &bs, q.get("req").map(String::as_str)).await?;
        let Some(user) = &bs.user else {
            return Err(BrowserError::expired());
        };
        let client = state
            .provider
            .clients
            .get(state.provider.storage.as_ref(), &req.client_id)
            .await?
            .ok_or_else(BrowserError::expired)?;
        let username = match state.provider.storage.get_user(&user.user_id).await {
            Ok(u) => u.username,
            Err(_) => return Err(BrowserError::expired()),
        };
        bs.store(&session).await?;
        let ctx = state.page(&headers, &path);
        Ok(pages::consent(
            &ctx,
            &client.name,
            &req.scopes,
            &state.url("/approval"),
            &bs.csrf,
            &req.id,
            &username,
        ))
    }
    .await;
    result.unwrap_or_else(|e| e.render(&state, &headers, &path))
}

pub async fn approval_post(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = "/approval".to_string();
    let form = form_fields(&body);
    let result: Result<Response, BrowserError> = async {
        let mut bs = form_session(&session, &headers, &form).await?;
        let req = pending_request(&state, &bs, form.get("req").map(String::as_str)).await?;
        let Some(user) = bs.user.clone() else {
            return Err(BrowserError::expired());
        };
        if form.get("approval").map(String::as_str) != Some("approve") {
            if let Some(device_id) = &req.device_request_id {
                return finish_device(
                    &state,
                    &session,
                    &headers,
                    &mut bs,
                    &req,
                    device_id,
                    &DeviceDecision::Deny,
                )
                .await;
            }
            bs.finish(&req.id);
            bs.store(&session).await?;
            let _ = state.provider.storage.delete_auth_request(&req.id).await;
            tracing::info!(client_id = %req.client_id, "user denied consent");
            return Ok(error_redirect(
                &state,
                &headers,
                &req,
                OAuthError::new(
                    crate::oidc::ErrorCode::AccessDenied,
                    "the user denied the request",
                ),
            ));
        }
        if !bs.consents.contains(&req.client_id) {
            bs.consents.push(req.client_id.clone());
        }
        let stored_user = match state.provider.storage.get_user(&user.user_id).await {
            Ok(u) => u,
            Err(StorageError::NotFound) => return Err(BrowserError::expired()),
            Err(e) => return Err(e.into()),
        };
        finish_with_code(
            &state,
            &session,
            &headers,
            &mut bs,
            &req,
            &user,
            &stored_user,
            true,
        )
        .await
    }
    .await;
    result.unwrap_or_else(|e| e.render(&state, &headers, &path))
}

/// Used by the test-login page to know the chosen connector exists.
pub(crate) fn connector_links(
    state: &AppState,
    client: Option<&Arc<RegisteredClient>>,
) -> Vec<ConnectorLink> {
    state
        .provider
        .connectors
        .iter()
        .filter(|c| client.is_none_or(|cl| cl.allows_connector(&c.id)))
        .map(|c| ConnectorLink {
            id: c.id.clone(),
            name: c.name.clone(),
            kind: c.kind_name.clone(),
            url: state.url(&format!("/test-login/start?connector={}", c.id)),
        })
        .collect()
}

//! A simulator of legacy Alibaba Cloud IDaaS (plain OAuth 2.0 with a userinfo envelope), run
//! in-process on 127.0.0.1, for the `oauth2` connector.
//!
//! - `GET /oauth/authorize` signs the configured user in at once and redirects back with
//!   `code` and `state`;
//! - `POST /oauth/token` takes the client credentials in HTTP Basic (form-encoded first, RFC
//!   6749 2.3.1) or in the form body, answers the authorization code grant (single-use codes,
//!   redirect URI and PKCE checked) and the refresh token grant (rotating);
//! - `GET /api/bff/v1.2/oauth2/userinfo` answers the envelope
//!   `{"success":true,"code":"","message":"","data":{...}}`.
//!
//! Switches: an envelope failure (`success:false` with HTTP 200), and per-endpoint faults
//! (HTTP 500, a body that is not JSON, an answer slower than any sane timeout).

// The tests use different subsets of the switches.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The client registered at the simulator. The secret holds characters that HTTP Basic must
/// carry form-encoded.
pub const CLIENT_ID: &str = "idaas-app-7f3a";
pub const CLIENT_SECRET: &str = "idaas+secret/with=";

pub const USERINFO_PATH: &str = "/api/bff/v1.2/oauth2/userinfo";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// HTTP 500 with an HTML body.
    ServerError,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// Answers after 5 seconds.
    Slow,
}

/// How the token endpoint accepts client credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
    Either,
}

struct CodeGrant {
    redirect_uri: String,
    code_challenge: Option<String>,
    user: Value,
}

pub struct SimState {
    /// The `data` of the user who signs in next.
    pub user: Mutex<Value>,
    pub token_fault: Mutex<Fault>,
    pub userinfo_fault: Mutex<Fault>,
    /// When set, userinfo answers `success:false` with this code and message (HTTP 200).
    pub envelope_failure: Mutex<Option<(String, String)>>,
    pub accept: Mutex<ClientAuth>,
    /// Query of the last authorization request.
    pub last_authorize: Mutex<HashMap<String, String>>,
    /// How the client authenticated at the last token request (`basic` or `post`).
    pub last_client_auth: Mutex<Option<&'static str>>,
    pub code_grants: AtomicUsize,
    pub refresh_grants: AtomicUsize,
    codes: Mutex<HashMap<String, CodeGrant>>,
    access_tokens: Mutex<HashMap<String, Value>>,
    refresh_tokens: Mutex<HashMap<String, Value>>,
}

pub struct IdaasSim {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub state: Arc<SimState>,
    task: JoinHandle<()>,
}

impl Drop for IdaasSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A user as legacy IDaaS describes one in the envelope's `data`.
pub fn zhang_san() -> Value {
    json!({
        "sub": "idaas-user-10001",
        "ou_id": "ou-rd-01",
        "ou_name": "研发部",
        "nickname": "张三",
        "username": "zhangsan",
        "email": "zhangsan@example.com",
        "phone_number": "13800000000",
        "groups": ["developers", "研发部"],
    })
}

impl IdaasSim {
    pub async fn start() -> IdaasSim {
        let state = Arc::new(SimState {
            user: Mutex::new(zhang_san()),
            token_fault: Mutex::new(Fault::None),
            userinfo_fault: Mutex::new(Fault::None),
            envelope_failure: Mutex::new(None),
            accept: Mutex::new(ClientAuth::Either),
            last_authorize: Mutex::new(HashMap::new()),
            last_client_auth: Mutex::new(None),
            code_grants: AtomicUsize::new(0),
            refresh_grants: AtomicUsize::new(0),
            codes: Mutex::new(HashMap::new()),
            access_tokens: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/oauth/authorize", get(authorize))
            .route("/oauth/token", post(token))
            .route(USERINFO_PATH, get(userinfo))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sim");
        let addr: SocketAddr = listener.local_addr().expect("sim addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        IdaasSim {
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn set_token_fault(&self, fault: Fault) {
        *self.state.token_fault.lock().unwrap() = fault;
    }

    pub fn set_userinfo_fault(&self, fault: Fault) {
        *self.state.userinfo_fault.lock().unwrap() = fault;
    }

    pub fn fail_envelope(&self, code: &str, message: &str) {
        *self.state.envelope_failure.lock().unwrap() = Some((code.into(), message.into()));
    }

    pub fn set_user(&self, user: Value) {
        *self.state.user.lock().unwrap() = user;
    }

    pub fn accept(&self, auth: ClientAuth) {
        *self.state.accept.lock().unwrap() = auth;
    }

    /// Forgets every refresh token, as when an administrator signs the user out everywhere.
    pub fn revoke_refresh_tokens(&self) {
        self.state.refresh_tokens.lock().unwrap().clear();
    }

    pub fn last_authorize(&self) -> HashMap<String, String> {
        self.state.last_authorize.lock().unwrap().clone()
    }

    pub fn last_client_auth(&self) -> Option<&'static str> {
        *self.state.last_client_auth.lock().unwrap()
    }
}

fn token_value() -> String {
    idbridge::oidc::random::token(24)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

/// Applies a fault switch; `Some` is the faulty answer to send instead.
async fn fault(f: Fault) -> Option<Response> {
    match f {
        Fault::None => None,
        Fault::ServerError => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>500 Internal Server Error</body></html>",
            )
                .into_response(),
        ),
        Fault::Garbage => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "<html>not json at all",
            )
                .into_response(),
        ),
        Fault::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            None
        }
    }
}

async fn authorize(
    State(state): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    *state.last_authorize.lock().unwrap() = q.clone();
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return (StatusCode::BAD_REQUEST, "unsupported response_type").into_response();
    }
    let Some(redirect_uri) = q.get("redirect_uri").cloned() else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is required").into_response();
    };
    let code = token_value();
    state.codes.lock().unwrap().insert(
        code.clone(),
        CodeGrant {
            redirect_uri: redirect_uri.clone(),
            code_challenge: q.get("code_challenge").cloned(),
            user: state.user.lock().unwrap().clone(),
        },
    );
    let mut target = url::Url::parse(&redirect_uri).expect("redirect_uri is a URL");
    target.query_pairs_mut().append_pair("code", &code);
    if let Some(s) = q.get("state") {
        target.query_pairs_mut().append_pair("state", s);
    }
    Redirect::to(target.as_str()).into_response()
}

/// The client id and secret, from HTTP Basic (form-decoded) or the form body.
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<(&'static str, String, String)> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = String::from_utf8(STANDARD.decode(value).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unescape = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some(("basic", unescape(id)?, unescape(secret)?));
    }
    Some((
        "post",
        form.get("client_id")?.clone(),
        form.get("client_secret")?.clone(),
    ))
}

fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn issue_tokens(state: &SimState, user: Value) -> Response {
    let access = token_value();
    let refresh = token_value();
    state
        .access_tokens
        .lock()
        .unwrap()
        .insert(access.clone(), user.clone());
    state
        .refresh_tokens
        .lock()
        .unwrap()
        .insert(refresh.clone(), user);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": 1799,
            "refresh_token": refresh,
            "scope": "read",
        })
        .to_string(),
    )
        .into_response()
}

async fn token(State(state): State<Arc<SimState>>, headers: HeaderMap, body: String) -> Response {
    let f = *state.token_fault.lock().unwrap();
    if let Some(resp) = fault(f).await {
        return resp;
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let Some((style, id, secret)) = client_credentials(&headers, &form) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "no client credentials",
        );
    };
    let accepted = match *state.accept.lock().unwrap() {
        ClientAuth::Either => true,
        ClientAuth::Basic => style == "basic",
        ClientAuth::Post => style == "post",
    };
    if !accepted || id != CLIENT_ID || secret != CLIENT_SECRET {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    *state.last_client_auth.lock().unwrap() = Some(style);
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            // Single use: the code is gone whatever happens next.
            let Some(grant) = state.codes.lock().unwrap().remove(&code) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the code is invalid or was already used",
                );
            };
            if form.get("redirect_uri") != Some(&grant.redirect_uri) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri mismatch",
                );
            }
            if let Some(challenge) = &grant.code_challenge {
                let ok = form
                    .get("code_verifier")
                    .is_some_and(|v| &s256(v) == challenge);
                if !ok {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "PKCE verification failed",
                    );
                }
            }
            state.code_grants.fetch_add(1, Ordering::SeqCst);
            issue_tokens(&state, grant.user)
        }
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            // Rotating: the presented refresh token is spent.
            let Some(user) = state.refresh_tokens.lock().unwrap().remove(&presented) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the refresh token is invalid or expired",
                );
            };
            state.refresh_grants.fetch_add(1, Ordering::SeqCst);
            // Profile changes show up at the next refresh.
            let current = state.user.lock().unwrap().clone();
            let user = if current["sub"] == user["sub"] {
                current
            } else {
                user
            };
            issue_tokens(&state, user)
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported grant_type",
        ),
    }
}

async fn userinfo(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let f = *state.userinfo_fault.lock().unwrap();
    if let Some(resp) = fault(f).await {
        return resp;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(user) = state.access_tokens.lock().unwrap().get(token).cloned() else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is invalid",
        );
    };
    let failure = state.envelope_failure.lock().unwrap().clone();
    let body = match failure {
        // IDaaS reports business errors with HTTP 200 and success=false.
        Some((code, message)) => json!({
            "success": false, "code": code, "message": message, "requestId": "sim-req-1", "data": null,
        }),
        None => json!({"success": true, "code": "", "message": "", "data": user}),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

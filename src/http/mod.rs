//! The HTTP edge: the only layer that knows axum, cookies and pages. Handlers are thin:
//! they extract input, call the protocol, and map the result.

pub mod pages;

mod authorize;
mod errors;
mod logout;
pub mod ratelimit;
mod session;
mod testlogin;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{HeaderMap, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

pub use errors::{ApiError, BearerError};
pub use session::DbSessionStore;
pub use testlogin::TEST_LOGIN_CLIENT_ID;

use crate::clock::Clock;
use crate::oidc::Provider;

/// Largest request body accepted anywhere: every legitimate request is a small form.
const BODY_LIMIT: usize = 64 * 1024;

/// Shared by every handler. Every request clones it, so it is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub provider: Arc<Provider>,
    pub clock: Clock,
    /// For calls the provider makes itself (back-channel logout).
    pub http: reqwest::Client,
    pub limits: Arc<ratelimit::Limits>,
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Page context for a request.
    pub fn page(&self, headers: &HeaderMap, path_and_query: &str) -> pages::PageContext {
        let query_lang = path_and_query.split_once('?').and_then(|(_, q)| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "lang")
                .map(|(_, v)| v.into_owned())
        });
        let prefix = self.provider.config.path_prefix().to_string();
        pages::PageContext {
            lang: pages::Lang::negotiate(query_lang.as_deref(), headers),
            path_and_query: format!("{prefix}{path_and_query}"),
            prefix,
            title: self.provider.config.frontend.title.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.provider.config.endpoint(path)
    }
}

/// Builds the router for the whole provider, mounted under the issuer's path.
pub fn router(state: AppState) -> Router {
    let config = state.provider.config.clone();
    let secure = config.issuer_url.scheme() == "https";
    let cookie_path = if config.path_prefix().is_empty() {
        "/".to_string()
    } else {
        config.path_prefix().to_string()
    };
    let sessions = SessionManagerLayer::new(DbSessionStore::new(state.provider.storage.clone()))
        .with_name("idbridge_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_path(cookie_path)
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            config.expiry.sessions.as_secs() as i64,
        )));

    // Form submissions that check passwords or user codes are limited per client address.
    let forms = Router::new()
        .route(
            "/login/{connector}",
            get(authorize::login_get).post(authorize::login_post),
        )
        .route(
            "/device",
            get(authorize::device_get).post(authorize::device_post),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_forms));
    let browser = Router::new()
        .merge(forms)
        .route(
            "/auth",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/login", get(authorize::chooser))
        .route("/callback", get(authorize::callback))
        .route(
            "/approval",
            get(authorize::approval_get).post(authorize::approval_post),
        )
        .route("/logout", get(logout::logout_get).post(logout::logout_post))
        .route("/test-login", get(testlogin::start_page))
        .route("/test-login/start", get(testlogin::start))
        .route("/test-login/callback", get(testlogin::callback))
        .layer(sessions);

    // Endpoints that authenticate clients are limited per client address.
    let limited = Router::new()
        .route("/token", axum::routing::post(token::token))
        .route("/introspect", axum::routing::post(token::introspect))
        .route("/revoke", axum::routing::post(token::revoke))
        .route(
            "/device/code",
            axum::routing::post(token::device_authorization),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_api));
    let api = Router::new()
        .merge(limited)
        .route("/.well-known/openid-configuration", get(token::discovery))
        .route("/keys", get(token::jwks))
        .route(
            "/userinfo",
            get(token::userinfo_get).post(token::userinfo_post),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(token::readyz))
        .route("/static/{*path}", get(static_file));
    // Metrics live on the main listener unless a separate telemetry listener is configured.
    let api = if config.telemetry.http.is_none() {
        api.route("/metrics", get(metrics))
    } else {
        api
    };

    let inner = browser
        .merge(api)
        .fallback(not_found)
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(state, edge))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
            |req: &Request<axum::body::Body>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            },
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(RequestIds::new()));

    let prefix = config.path_prefix();
    if prefix.is_empty() {
        inner
    } else {
        Router::new().nest(prefix, inner)
    }
}

/// Request ids for requests that arrive without one: a random prefix per process and a
/// counter. Unique across replicas and restarts, and cheaper than a random UUID per request
/// (a `getrandom` system call each). A request id only correlates log lines; it guards
/// nothing, so it need not be unpredictable.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        RequestIds {
            prefix: crate::oidc::random::lower_alnum(10).into(),
            next: Arc::default(),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// The router of the separate telemetry listener (`telemetry.http`): metrics and probes.
pub fn telemetry_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(token::readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = crate::telemetry::handle() else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "metrics are not available",
        )
            .into_response();
    };
    // The session gauge is read from storage at scrape time, not kept up to date per request.
    match state.provider.storage.count_sessions(state.now()).await {
        Ok(n) => crate::telemetry::active_sessions(n),
        Err(e) => tracing::warn!(error = %e, "could not count sessions for metrics"),
    }
    let mut resp = handle.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Per-IP limit of the token-style endpoints: 429 with `Retry-After` and an OAuth error body.
async fn limit_api(
    State(state): State<AppState>,
    req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let ip = state.limits.client_ip(&req);
    if let Err(wait) = state.limits.check_token(ip) {
        tracing::warn!(client_ip = ?ip, path = %req.uri().path(), "rate limit reached");
        return too_many_json(wait);
    }
    next.run(req).await
}

/// Per-IP limit of the sign-in and device-code form submissions.
async fn limit_forms(
    State(state): State<AppState>,
    req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let ip = state.limits.client_ip(&req);
    if let Err(wait) = state.limits.check_login(ip) {
        tracing::warn!(client_ip = ?ip, path = %req.uri().path(), "sign-in rate limit reached");
        let headers = req.headers().clone();
        return too_many_page(&state, &headers, req.uri().path(), wait);
    }
    next.run(req).await
}

fn with_retry_after(mut resp: Response, wait: std::time::Duration) -> Response {
    if let Ok(v) = HeaderValue::from_str(&ratelimit::retry_after_secs(wait).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

pub(crate) fn too_many_json(wait: std::time::Duration) -> Response {
    let body = axum::Json(serde_json::json!({
        "error": "temporarily_unavailable",
        "error_description": format!("too many requests; retry after {} seconds", ratelimit::retry_after_secs(wait)),
    }));
    with_retry_after(
        (axum::http::StatusCode::TOO_MANY_REQUESTS, body).into_response(),
        wait,
    )
}

pub(crate) fn too_many_page(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    wait: std::time::Duration,
) -> Response {
    let resp = page_error(
        state,
        headers,
        path,
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        pages::ErrorKind::TooManyRequests,
        None,
    );
    with_retry_after(resp, wait)
}

/// What every request goes through (one middleware rather than two, which would each box
/// and clone the inner service per request): the latency metric by route template (not raw
/// path, which would explode the label set), then the headers every response carries.
async fn edge(
    State(state): State<AppState>,
    req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let start = std::time::Instant::now();
    let resp = security_headers(&state, req, next).await;
    crate::telemetry::http_request(&route, &method, resp.status().as_u16(), start.elapsed());
    resp
}

async fn static_file(Path(path): Path<String>) -> Response {
    pages::static_file(&path)
}

async fn not_found(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let ctx = state.page(&headers, path);
    pages::error_page(
        &ctx,
        axum::http::StatusCode::NOT_FOUND,
        pages::ErrorKind::NotFound,
        None,
        None,
    )
}

/// Headers every response carries (RFC 9700 4.11 and 4.16), and the language cookie when the
/// user picked a language.
async fn security_headers(
    state: &AppState,
    req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let lang_choice = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "lang")
            .and_then(|(_, v)| pages::Lang::parse(&v))
    });
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
             form-action *; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if state.provider.config.issuer_url.scheme() == "https" {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(lang) = lang_choice {
        let secure = if state.provider.config.issuer_url.scheme() == "https" {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "idbridge_lang={}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly{secure}",
            lang.query_value()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// The `IntoResponse` of a page built by `pages`.
pub(crate) fn page_error(
    state: &AppState,
    headers: &HeaderMap,
    path_and_query: &str,
    status: axum::http::StatusCode,
    kind: pages::ErrorKind,
    detail: Option<&str>,
) -> Response {
    let ctx = state.page(headers, path_and_query);
    pages::error_page(&ctx, status, kind, detail, None).into_response()
}

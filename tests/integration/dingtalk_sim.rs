//! A DingTalk simulator: the login page, api.dingtalk.com and oapi.dingtalk.com on one local
//! port, with a user directory the test changes at run time, fault injection and a log of the
//! requests it received.
//!
//! It follows the wire formats of the reference notes: api.dingtalk.com errors are non-2xx with
//! a string `code`, `requestid` and `message`; oapi.dingtalk.com answers HTTP 200 with an
//! integer `errcode`. Where the notes give no error body (a used code, a bad signature) the
//! simulator answers in the same family's shape with a code of its own choosing.

// Each test uses a different subset of the controls.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The simulated application's AppKey (also the legacy appid) and AppSecret. The secret holds
/// characters that must be escaped in a query string.
pub const APP_KEY: &str = "dingsimappkey0001";
pub const APP_SECRET: &str = "sim+App/Secret=with-specials";
/// The organisation that owns the simulated application.
pub const CORP_ID: &str = "dingcorp0000000001";

/// How long codes given by the login pages stay valid, as on DingTalk (minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(300);
/// Legacy signatures older or newer than this are refused.
const SIGNATURE_WINDOW_MS: i128 = 60_000;

/// A DingTalk account.
#[derive(Clone, Debug)]
pub struct SimUser {
    pub union_id: String,
    pub open_id: String,
    pub nick: String,
    pub avatar_url: Option<String>,
    pub mobile: Option<String>,
    pub state_code: Option<String>,
    pub email: Option<String>,
    pub login_email: Option<String>,
    /// The organisation the user picks on the login page (sent back as `corpId`).
    pub corp_id: String,
    /// Their record in the application's organisation, if any.
    pub member: Option<SimMember>,
}

/// A user's record in the organisation's directory.
#[derive(Clone, Debug)]
pub struct SimMember {
    pub userid: String,
    pub name: String,
    pub org_email: Option<String>,
    pub email: Option<String>,
    pub title: String,
    pub job_number: String,
    pub active: bool,
    /// 0 = employee, 1 = external contact.
    pub contact_type: i64,
    pub dept_ids: Vec<i64>,
}

impl SimUser {
    /// An account that is not in the organisation.
    pub fn outsider(union_id: &str, nick: &str) -> SimUser {
        SimUser {
            union_id: union_id.to_string(),
            open_id: format!("open-{union_id}"),
            nick: nick.to_string(),
            avatar_url: Some(format!("https://static.dingtalk.example/{union_id}.png")),
            mobile: Some("18900000000".into()),
            state_code: Some("86".into()),
            email: None,
            login_email: None,
            corp_id: CORP_ID.into(),
            member: None,
        }
    }

    /// An employee of the organisation in the given departments.
    pub fn employee(union_id: &str, nick: &str, userid: &str, dept_ids: &[i64]) -> SimUser {
        let mut u = SimUser::outsider(union_id, nick);
        u.member = Some(SimMember {
            userid: userid.to_string(),
            name: nick.to_string(),
            org_email: None,
            email: None,
            title: "工程师".into(),
            job_number: format!("E{userid}"),
            active: true,
            contact_type: 0,
            dept_ids: dept_ids.to_vec(),
        });
        u
    }
}

/// A failure the next matching requests suffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 with a plain-text body.
    Status500,
    /// Waits this long before answering normally.
    Sleep(Duration),
    /// HTTP 200 with a body that is not JSON.
    Garbage,
}

struct PendingFault {
    /// Only requests to this path; `None`: every API request (not the login pages).
    path: Option<String>,
    fault: Fault,
    remaining: usize,
}

/// One request the simulator received.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
}

#[derive(Clone)]
struct Grant {
    union_id: String,
    corp_id: Option<String>,
    expires: Instant,
    legacy: bool,
}

#[derive(Default)]
struct SimState {
    users: HashMap<String, SimUser>,
    departments: HashMap<i64, (String, i64)>,
    current: Option<String>,
    login_error: Option<String>,
    callback_param: String,
    codes: HashMap<String, Grant>,
    user_tokens: HashMap<String, String>,
    refresh_tokens: HashMap<String, (String, Option<String>)>,
    app_tokens: HashSet<String>,
    app_token_lifetime: u64,
    faults: Vec<PendingFault>,
    log: Vec<Logged>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<SimState>>,
    counter: Arc<AtomicU64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn id(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{n}{}", idbridge::oidc::random::token(12))
    }

    fn request_id(&self) -> String {
        format!("SIMREQ{:06}", self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

/// A running simulator; stops when dropped.
pub struct DingTalkSim {
    /// `http://127.0.0.1:PORT`: the login, api and oapi base URL at once.
    pub url: String,
    shared: Shared,
    task: JoinHandle<()>,
}

impl Drop for DingTalkSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DingTalkSim {
    /// Starts with departments 1 (the organisation), 2 研发部 and 3 平台组, and no users.
    pub async fn start() -> DingTalkSim {
        let mut state = SimState {
            callback_param: "authCode".into(),
            app_token_lifetime: 7200,
            ..SimState::default()
        };
        state.departments.insert(1, ("模拟科技有限公司".into(), 0));
        state.departments.insert(2, ("研发部".into(), 1));
        state.departments.insert(3, ("平台组".into(), 2));
        let shared = Shared {
            state: Arc::new(Mutex::new(state)),
            counter: Arc::new(AtomicU64::new(1)),
        };
        let router = Router::new()
            .route("/oauth2/auth", get(login_page))
            .route("/connect/qrconnect", get(qr_login_page))
            .route("/v1.0/oauth2/userAccessToken", post(user_access_token))
            .route("/v1.0/contact/users/me", get(users_me))
            .route("/v1.0/oauth2/accessToken", post(app_access_token))
            .route("/gettoken", get(legacy_app_token))
            .route("/topapi/user/getbyunionid", post(get_by_union_id))
            .route("/topapi/v2/user/get", post(user_get))
            .route("/topapi/v2/department/get", post(department_get))
            .route("/sns/getuserinfo_bycode", post(sns_user_info))
            .layer(middleware::from_fn_with_state(
                shared.clone(),
                log_and_faults,
            ))
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind simulator");
        let addr: SocketAddr = listener.local_addr().expect("simulator address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        DingTalkSim {
            url: format!("http://{addr}"),
            shared,
            task,
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.shared.lock()
    }

    /// Adds or replaces an account.
    pub fn add_user(&self, user: SimUser) {
        self.lock().users.insert(user.union_id.clone(), user);
    }

    /// Who signs in at the next login pages.
    pub fn login_as(&self, union_id: &str) {
        self.lock().current = Some(union_id.to_string());
    }

    /// The next login page sends the browser back with `?error=ERROR` instead of a code.
    pub fn next_login_error(&self, error: &str) {
        self.lock().login_error = Some(error.to_string());
    }

    /// The query parameter the current login page uses for the code (`authCode` or `code`).
    pub fn callback_param(&self, name: &str) {
        self.lock().callback_param = name.to_string();
    }

    /// Changes an account in place.
    pub fn update_user(&self, union_id: &str, change: impl FnOnce(&mut SimUser)) {
        let mut s = self.lock();
        let user = s.users.get_mut(union_id).expect("known simulated user");
        change(user);
    }

    /// The user leaves the organisation.
    pub fn remove_member(&self, union_id: &str) {
        self.update_user(union_id, |u| u.member = None);
    }

    pub fn add_department(&self, id: i64, name: &str, parent: i64) {
        self.lock()
            .departments
            .insert(id, (name.to_string(), parent));
    }

    pub fn remove_department(&self, id: i64) {
        self.lock().departments.remove(&id);
    }

    /// Every app token issued so far stops working (DingTalk revoked or expired them early).
    pub fn invalidate_app_tokens(&self) {
        self.lock().app_tokens.clear();
    }

    /// The user withdraws the application's authorisation: their refresh tokens die.
    pub fn revoke_user_grants(&self, union_id: &str) {
        let mut s = self.lock();
        s.refresh_tokens.retain(|_, (u, _)| u != union_id);
        s.user_tokens.retain(|_, u| u != union_id);
    }

    /// The next `n` API requests (any path but the login pages) suffer `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.lock().faults.push(PendingFault {
            path: None,
            fault,
            remaining: n,
        });
    }

    /// The next `n` requests to `path` suffer `fault`.
    pub fn fail_path(&self, path: &str, n: usize, fault: Fault) {
        self.lock().faults.push(PendingFault {
            path: Some(path.to_string()),
            fault,
            remaining: n,
        });
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// How many requests went to `path`.
    pub fn count(&self, path: &str) -> usize {
        self.lock().log.iter().filter(|l| l.path == path).count()
    }
}

fn is_login_page(path: &str) -> bool {
    path == "/oauth2/auth" || path == "/connect/qrconnect"
}

async fn log_and_faults(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let fault = {
        let mut s = shared.lock();
        s.log.push(Logged {
            method: req.method().to_string(),
            path: path.clone(),
            query: req.uri().query().unwrap_or("").to_string(),
            content_type: req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        });
        let found = s.faults.iter_mut().find(|f| {
            f.remaining > 0
                && match &f.path {
                    Some(p) => *p == path,
                    None => !is_login_page(&path),
                }
        });
        let fault = found.map(|f| {
            f.remaining -= 1;
            f.fault
        });
        s.faults.retain(|f| f.remaining > 0);
        fault
    };
    match fault {
        Some(Fault::Status500) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
        Some(Fault::Garbage) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                "<html><body>502 Bad Gateway</body></html>{\"errcode\":",
            ))
            .unwrap_or_else(|_| StatusCode::OK.into_response()),
        Some(Fault::Sleep(d)) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        None => next.run(req).await,
    }
}

/// An api.dingtalk.com error.
fn api_error(shared: &Shared, status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "requestid": shared.request_id(), "message": message})),
    )
        .into_response()
}

/// An oapi.dingtalk.com error: HTTP 200 whatever happened.
fn oapi_error(shared: &Shared, errcode: i64, errmsg: &str) -> Response {
    axum::Json(json!({"errcode": errcode, "errmsg": errmsg, "request_id": shared.request_id()}))
        .into_response()
}

fn oapi_ok(shared: &Shared, field: &str, payload: Value) -> Response {
    let mut body = json!({"errcode": 0, "errmsg": "ok", "request_id": shared.request_id()});
    body[field] = payload;
    axum::Json(body).into_response()
}

fn redirect(to: &str, params: &[(&str, &str)]) -> Response {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let sep = if to.contains('?') { '&' } else { '?' };
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, format!("{to}{sep}{}", ser.finish()))
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn bad_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("<html><body>{message}</body></html>"),
    )
        .into_response()
}

/// The current login page: signs the configured user in at once.
async fn login_page(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != APP_KEY {
        return bad_page("unknown client_id");
    }
    if get("response_type") != "code" {
        return bad_page("response_type must be code");
    }
    let redirect_uri = get("redirect_uri");
    if redirect_uri.is_empty() {
        return bad_page("redirect_uri is required");
    }
    let scopes: Vec<&str> = get("scope").split(' ').collect();
    if !scopes.contains(&"openid") {
        return bad_page("scope must contain openid");
    }
    let state = get("state");
    let mut s = shared.lock();
    if let Some(error) = s.login_error.take() {
        return redirect(redirect_uri, &[("error", &error), ("state", state)]);
    }
    let Some(user) = s.current.clone().and_then(|u| s.users.get(&u).cloned()) else {
        return bad_page("nobody is signed in at the simulator");
    };
    let code = shared.id("authcode");
    s.codes.insert(
        code.clone(),
        Grant {
            union_id: user.union_id.clone(),
            corp_id: scopes.contains(&"corpid").then(|| user.corp_id.clone()),
            expires: Instant::now() + CODE_LIFETIME,
            legacy: false,
        },
    );
    let param = s.callback_param.clone();
    redirect(redirect_uri, &[(&param, &code), ("state", state)])
}

/// The legacy QR login page.
async fn qr_login_page(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("appid") != APP_KEY || get("response_type") != "code" || get("scope") != "snsapi_login" {
        return bad_page("bad qrconnect parameters");
    }
    let redirect_uri = get("redirect_uri");
    if redirect_uri.is_empty() {
        return bad_page("redirect_uri is required");
    }
    let state = get("state");
    let mut s = shared.lock();
    if let Some(error) = s.login_error.take() {
        return redirect(redirect_uri, &[("error", &error), ("state", state)]);
    }
    let Some(union_id) = s.current.clone() else {
        return bad_page("nobody is signed in at the simulator");
    };
    let code = shared.id("tmpcode");
    s.codes.insert(
        code.clone(),
        Grant {
            union_id,
            corp_id: None,
            expires: Instant::now() + CODE_LIFETIME,
            legacy: true,
        },
    );
    redirect(redirect_uri, &[("code", &code), ("state", state)])
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// The JSON body of an api.dingtalk.com request, or the error to answer.
fn api_json(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Result<Value, Box<Response>> {
    if !is_json(headers) {
        return Err(Box::new(api_error(
            shared,
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "请求体必须是 JSON (Content-Type: application/json)",
        )));
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            Box::new(api_error(
                shared,
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "请求体不是合法的 JSON",
            ))
        })
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

async fn user_access_token(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match api_json(&shared, &headers, &body) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    if text(&req, "clientId") != APP_KEY || text(&req, "clientSecret") != APP_SECRET {
        return api_error(
            &shared,
            StatusCode::BAD_REQUEST,
            "InvalidClientIdOrSecret",
            "无效的clientId或clientSecret",
        );
    }
    let mut s = shared.lock();
    let (union_id, corp_id) = match text(&req, "grantType") {
        "authorization_code" => {
            let grant = s.codes.remove(text(&req, "code"));
            match grant {
                Some(g) if !g.legacy && g.expires > Instant::now() => (g.union_id, g.corp_id),
                _ => {
                    drop(s);
                    return api_error(
                        &shared,
                        StatusCode::BAD_REQUEST,
                        "InvalidAuthCode",
                        "不合法的临时授权码",
                    );
                }
            }
        }
        "refresh_token" => match s.refresh_tokens.remove(text(&req, "refreshToken")) {
            Some(found) => found,
            None => {
                drop(s);
                return api_error(
                    &shared,
                    StatusCode::BAD_REQUEST,
                    "InvalidRefreshToken",
                    "不合法的refresh_token",
                );
            }
        },
        _ => {
            drop(s);
            return api_error(
                &shared,
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "grantType 不合法",
            );
        }
    };
    let access = shared.id("usertoken");
    let refresh = shared.id("userrefresh");
    s.user_tokens.insert(access.clone(), union_id.clone());
    s.refresh_tokens
        .insert(refresh.clone(), (union_id, corp_id.clone()));
    let mut body = json!({"accessToken": access, "refreshToken": refresh, "expireIn": 7200});
    if let Some(c) = corp_id {
        body["corpId"] = json!(c);
    }
    axum::Json(body).into_response()
}

async fn users_me(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let token = headers
        .get("x-acs-dingtalk-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let user = {
        let s = shared.lock();
        s.user_tokens
            .get(token)
            .and_then(|u| s.users.get(u).cloned())
    };
    let Some(u) = user else {
        return api_error(
            &shared,
            StatusCode::BAD_REQUEST,
            "InvalidAuthentication",
            "不合法的access_token",
        );
    };
    let mut body =
        json!({"nick": u.nick, "unionId": u.union_id, "openId": u.open_id, "visitor": false});
    for (key, value) in [
        ("avatarUrl", &u.avatar_url),
        ("mobile", &u.mobile),
        ("stateCode", &u.state_code),
        ("email", &u.email),
        ("loginEmail", &u.login_email),
    ] {
        if let Some(v) = value {
            body[key] = json!(v);
        }
    }
    axum::Json(body).into_response()
}

async fn app_access_token(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match api_json(&shared, &headers, &body) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    if text(&req, "appKey") != APP_KEY || text(&req, "appSecret") != APP_SECRET {
        return api_error(
            &shared,
            StatusCode::BAD_REQUEST,
            "InvalidAppKeyOrSecret",
            "无效的appKey或appSecret",
        );
    }
    let token = shared.id("apptoken");
    let mut s = shared.lock();
    s.app_tokens.insert(token.clone());
    axum::Json(json!({"accessToken": token, "expireIn": s.app_token_lifetime})).into_response()
}

async fn legacy_app_token(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("appkey") != APP_KEY || get("appsecret") != APP_SECRET {
        return oapi_error(&shared, 40089, "不合法的corpid或corpsecret");
    }
    let token = shared.id("apptoken");
    let mut s = shared.lock();
    s.app_tokens.insert(token.clone());
    axum::Json(json!({
        "errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": s.app_token_lifetime
    }))
    .into_response()
}

/// The JSON body of an oapi request made with a valid app token, or the error to answer.
fn oapi_request(
    shared: &Shared,
    q: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Value, Box<Response>> {
    let token = q.get("access_token").map(String::as_str).unwrap_or("");
    if !shared.lock().app_tokens.contains(token) {
        return Err(Box::new(
            axum::Json(json!({
                "errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token",
                "errmsg": "不合法的access_token", "request_id": shared.request_id()
            }))
            .into_response(),
        ));
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| Box::new(oapi_error(shared, 40035, "不合法的参数")))
}

async fn get_by_union_id(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let req = match oapi_request(&shared, &q, &body) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let member = shared
        .lock()
        .users
        .get(text(&req, "unionid"))
        .and_then(|u| u.member.clone());
    match member {
        Some(m) => oapi_ok(
            &shared,
            "result",
            json!({"contact_type": m.contact_type, "userid": m.userid}),
        ),
        None => oapi_error(&shared, 60121, "找不到该用户"),
    }
}

async fn user_get(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let req = match oapi_request(&shared, &q, &body) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let userid = text(&req, "userid");
    let found = shared.lock().users.values().find_map(|u| {
        u.member
            .clone()
            .filter(|m| m.userid == userid)
            .map(|m| (u.clone(), m))
    });
    let Some((u, m)) = found else {
        return oapi_error(&shared, 60121, "找不到该用户");
    };
    let mut result = json!({
        "userid": m.userid, "unionid": u.union_id, "name": m.name, "avatar": u.avatar_url,
        "state_code": u.state_code, "mobile": u.mobile, "title": m.title,
        "job_number": m.job_number, "dept_id_list": m.dept_ids, "active": m.active,
        "admin": false, "boss": false, "senior": false, "real_authed": true
    });
    if let Some(e) = &m.org_email {
        result["org_email"] = json!(e);
    }
    if let Some(e) = &m.email {
        result["email"] = json!(e);
    }
    oapi_ok(&shared, "result", result)
}

async fn department_get(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let req = match oapi_request(&shared, &q, &body) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let id = req.get("dept_id").and_then(Value::as_i64).unwrap_or(-1);
    let dept = shared.lock().departments.get(&id).cloned();
    match dept {
        Some((name, parent)) => oapi_ok(
            &shared,
            "result",
            json!({"dept_id": id, "name": name, "parent_id": parent}),
        ),
        None => oapi_error(&shared, 60003, "部门不存在"),
    }
}

/// The legacy signature the simulator expects, computed independently of the connector.
fn expected_signature(timestamp: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, APP_SECRET.as_bytes());
    STANDARD.encode(hmac::sign(&key, timestamp.as_bytes()).as_ref())
}

async fn sns_user_info(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("accessKey") != APP_KEY {
        return oapi_error(&shared, 40089, "不合法的accessKey");
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i128)
        .unwrap_or(0);
    match get("timestamp").parse::<i128>() {
        Ok(t) if (now_ms - t).abs() <= SIGNATURE_WINDOW_MS => {}
        _ => return oapi_error(&shared, 853003, "时间戳过期或不合法"),
    }
    // The query is already percent-decoded here: a signature sent without URL-encoding has
    // lost its `+` signs and no longer matches.
    if get("signature") != expected_signature(get("timestamp")) {
        return oapi_error(&shared, 853002, "签名校验失败");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return oapi_error(&shared, 40035, "不合法的参数");
    };
    let mut s = shared.lock();
    let grant = s.codes.remove(text(&req, "tmp_auth_code"));
    let user = match grant {
        Some(g) if g.legacy && g.expires > Instant::now() => s.users.get(&g.union_id).cloned(),
        _ => None,
    };
    drop(s);
    let Some(u) = user else {
        return oapi_error(&shared, 40078, "不存在的临时授权码");
    };
    oapi_ok(
        &shared,
        "user_info",
        json!({
            "nick": u.nick, "unionid": u.union_id, "openid": u.open_id,
            "dingId": format!("$:LWCP_v1:${}", u.union_id), "main_org_auth_high_level": false
        }),
    )
}

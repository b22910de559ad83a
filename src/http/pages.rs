//! Browser pages: typed builders that render the askama templates under `templates/` in English or
//! Simplified Chinese, plus the embedded files under `static/`.
//!
//! Every builder returns a complete [`Response`] with its status code and `Cache-Control: no-store`
//! (the pages carry CSRF tokens, authorization codes or tokens). All visible text comes from the two
//! [`Strings`] tables below, so a missing translation fails to compile.

use askama::Template;
use axum::http::header::{
    ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_LANGUAGE, CONTENT_TYPE, COOKIE, HeaderValue,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// Name of the cookie that remembers the chosen language.
pub const LANG_COOKIE: &str = "idbridge_lang";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// `lang` query value if given ("en", "zh", "zh-CN"...), then the `idbridge_lang` cookie, then
    /// Accept-Language (q-values honoured, any zh* -> Zh), else En.
    pub fn negotiate(query_lang: Option<&str>, headers: &HeaderMap) -> Lang {
        if let Some(lang) = query_lang.and_then(Lang::parse) {
            return lang;
        }
        if let Some(lang) = cookie_lang(headers) {
            return lang;
        }
        headers
            .get_all(ACCEPT_LANGUAGE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(accept_language)
            .unwrap_or(Lang::En)
    }

    /// Parses a language tag such as "en", "en-US", "zh", "zh-CN" or "zh-Hans"; other languages
    /// are not supported and give `None`.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("zh") {
            Some(Lang::Zh)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The BCP 47 tag for `<html lang>` and `Content-Language`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The short value used in `?lang=` links and in the language cookie.
    pub fn query_value(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    fn strings(self) -> &'static Strings {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }
}

fn cookie_lang(headers: &HeaderMap) -> Option<Lang> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LANG_COOKIE)
        .and_then(|(_, value)| Lang::parse(value.trim_matches('"')))
}

/// Picks the supported language with the highest q-value; on a tie the earlier entry wins. `None`
/// when the header names no supported language.
fn accept_language(header: &str) -> Option<Lang> {
    let mut best: Option<(Lang, f32)> = None;
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let Some(lang) = parts.next().and_then(Lang::parse) else {
            continue;
        };
        let mut quality = 1.0_f32;
        for param in parts {
            if let Some((name, value)) = param.trim().split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                quality = value.trim().parse().unwrap_or(0.0);
            }
        }
        if quality <= 0.0 {
            continue;
        }
        if best.is_none_or(|(_, best_q)| quality > best_q) {
            best = Some((lang, quality));
        }
    }
    best.map(|(lang, _)| lang)
}

/// Per-request context every page needs.
pub struct PageContext {
    pub lang: Lang,
    /// Path of the issuer URL ("" or "/dex"); static files are linked under `{prefix}/static/`.
    pub prefix: String,
    /// The externally visible path and query of the current request; the language switcher links
    /// back to it.
    pub path_and_query: String,
    /// Product title, e.g. "idbridge".
    pub title: String,
}

pub struct ConnectorLink {
    pub id: String,
    pub name: String,
    /// "local", "dingtalk", "oidc", "oauth2"
    pub kind: String,
    pub url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or missing parameters.
    BadRequest,
    /// client_id not registered.
    UnknownClient,
    /// redirect_uri not registered for the client.
    BadRedirectUri,
    /// Auth request expired or unknown.
    LoginExpired,
    /// Form token missing or wrong.
    CsrfFailed,
    /// User refused / not allowed.
    AccessDenied,
    /// Upstream identity provider returned an error.
    UpstreamFailed,
    NotFound,
    /// Storage down etc.
    ServiceUnavailable,
    /// Too many attempts from this address or for this account.
    TooManyRequests,
    Internal,
}

// ---------------------------------------------------------------------------------------------
// Localisation tables
// ---------------------------------------------------------------------------------------------

struct ErrorText {
    title: &'static str,
    message: &'static str,
}

struct ErrorTexts {
    bad_request: ErrorText,
    unknown_client: ErrorText,
    bad_redirect_uri: ErrorText,
    login_expired: ErrorText,
    csrf_failed: ErrorText,
    access_denied: ErrorText,
    upstream_failed: ErrorText,
    not_found: ErrorText,
    service_unavailable: ErrorText,
    too_many_requests: ErrorText,
    internal: ErrorText,
}

struct ScopeTexts {
    openid: &'static str,
    profile: &'static str,
    email: &'static str,
    phone: &'static str,
    groups: &'static str,
    offline_access: &'static str,
    address: &'static str,
}

struct Strings {
    language: &'static str,
    sign_in: &'static str,
    // Chooser.
    sign_in_to: fn(&str) -> String,
    choose_method: &'static str,
    no_connectors: &'static str,
    sign_in_with: fn(&str) -> String,
    sign_in_with_dingtalk: &'static str,
    // Password form.
    with_account: fn(&str) -> String,
    username: &'static str,
    password: &'static str,
    login_failed: &'static str,
    // Consent.
    consent_title: &'static str,
    wants_access: fn(&str) -> String,
    signed_in_as: &'static str,
    will_be_able_to: &'static str,
    scopes: ScopeTexts,
    consent_note: &'static str,
    approve: &'static str,
    deny: &'static str,
    // Errors.
    errors: ErrorTexts,
    error_details: &'static str,
    support_info: &'static str,
    http_status: &'static str,
    error_code: &'static str,
    request_id: &'static str,
    support_hint: &'static str,
    // Sign-out.
    signed_out_title: &'static str,
    signed_out_message: &'static str,
    continue_label: &'static str,
    // Form post.
    form_post_title: &'static str,
    form_post_message: &'static str,
    // Test sign-in.
    test_login_title: &'static str,
    test_login_intro: &'static str,
    test_login_result_title: &'static str,
    test_login_result_intro: &'static str,
    id_token_claims: &'static str,
    userinfo_response: &'static str,
    access_token_claims: &'static str,
    raw_id_token: &'static str,
    // Device flow.
    device_title: &'static str,
    device_intro: &'static str,
    device_code_label: &'static str,
    device_failed: &'static str,
    device_approved_title: &'static str,
    device_approved_message: &'static str,
    device_denied_title: &'static str,
    device_denied_message: &'static str,
}

static EN: Strings = Strings {
    language: "Language",
    sign_in: "Sign in",
    sign_in_to: |client| format!("Sign in to continue to {client}"),
    choose_method: "Choose how you want to sign in.",
    no_connectors: "No sign-in methods are configured. Please contact your administrator.",
    sign_in_with: |name| format!("Sign in with {name}"),
    sign_in_with_dingtalk: "Sign in with DingTalk",
    with_account: |name| {
        let lower = name.to_lowercase();
        if lower.ends_with("account") || lower.ends_with("accounts") {
            format!("Use your {name}")
        } else {
            format!("Use your {name} account")
        }
    },
    username: "Username",
    password: "Password",
    login_failed: "Incorrect username or password. Please try again.",
    consent_title: "Authorize access",
    wants_access: |client| format!("{client} wants to access your account"),
    signed_in_as: "Signed in as",
    will_be_able_to: "If you allow, the application will be able to:",
    scopes: ScopeTexts {
        openid: "Confirm your identity",
        profile: "See your name and basic profile",
        email: "See your email address",
        phone: "See your phone number",
        groups: "See the groups you belong to",
        offline_access: "Keep access while you are away",
        address: "See your postal address",
    },
    consent_note: "Only allow applications you trust.",
    approve: "Allow",
    deny: "Deny",
    errors: ErrorTexts {
        bad_request: ErrorText {
            title: "Invalid request",
            message: "The request is missing a required parameter or has a malformed one.",
        },
        unknown_client: ErrorText {
            title: "Unknown application",
            message: "The application that sent you here is not registered with this sign-in service.",
        },
        bad_redirect_uri: ErrorText {
            title: "Invalid redirect address",
            message: "The application asked to return you to an address that is not registered for it. \
                      To protect your account, sign-in has been stopped.",
        },
        login_expired: ErrorText {
            title: "Sign-in expired",
            message: "This sign-in request has expired or is no longer valid. \
                      Go back to the application and sign in again.",
        },
        csrf_failed: ErrorText {
            title: "Form expired",
            message: "The form has expired or could not be verified. \
                      Go back, reload the page and try again.",
        },
        access_denied: ErrorText {
            title: "Access denied",
            message: "Access was declined, or your account is not allowed to use this application.",
        },
        upstream_failed: ErrorText {
            title: "Identity provider error",
            message: "The identity provider returned an error, so sign-in could not be completed. \
                      Please try again later; if it keeps happening, send the details below to your administrator.",
        },
        not_found: ErrorText {
            title: "Page not found",
            message: "The page you requested does not exist.",
        },
        service_unavailable: ErrorText {
            title: "Service unavailable",
            message: "The sign-in service cannot handle requests right now. Please try again in a moment.",
        },
        too_many_requests: ErrorText {
            title: "Too many attempts",
            message: "There were too many attempts in a short time. Please wait a moment and try again.",
        },
        internal: ErrorText {
            title: "Something went wrong",
            message: "An unexpected error occurred while handling your request. Please try again later.",
        },
    },
    error_details: "Details",
    support_info: "Support information",
    http_status: "HTTP status",
    error_code: "Error code",
    request_id: "Request ID",
    support_hint: "Include this information when you contact support.",
    signed_out_title: "You have signed out",
    signed_out_message: "You have been signed out successfully. \
                         On a shared computer, close the browser to finish.",
    continue_label: "Continue",
    form_post_title: "Returning to the application…",
    form_post_message: "If nothing happens, press the button below.",
    test_login_title: "Test sign-in",
    test_login_intro: "Choose a sign-in method to run a real sign-in, then inspect the tokens and the \
                       user information that are issued.",
    test_login_result_title: "Test sign-in succeeded",
    test_login_result_intro: "The ID token signature was verified. These are the tokens and claims \
                              a client would receive.",
    id_token_claims: "ID token claims",
    userinfo_response: "UserInfo response",
    access_token_claims: "Access token claims",
    raw_id_token: "Raw ID token",
    device_title: "Connect a device",
    device_intro: "Enter the code shown on your device.",
    device_code_label: "Code",
    device_failed: "That code is invalid or has expired. Check it and try again.",
    device_approved_title: "Device connected",
    device_approved_message: "You can close this page and return to your device.",
    device_denied_title: "Device access denied",
    device_denied_message: "The device was not given access to your account. You can close this page.",
};

static ZH: Strings = Strings {
    language: "语言",
    sign_in: "登录",
    sign_in_to: |client| format!("登录以继续使用{}", zh_spaced(client)),
    choose_method: "请选择登录方式。",
    no_connectors: "尚未配置任何登录方式，请联系管理员。",
    sign_in_with: |name| format!("使用{}登录", zh_spaced(name)),
    sign_in_with_dingtalk: "使用钉钉登录",
    with_account: |name| {
        if ["账号", "帐号", "账户"].iter().any(|w| name.ends_with(w)) {
            format!("使用您的{}", zh_spaced(name).trim_end())
        } else {
            format!("使用您的{}账号", zh_spaced(name))
        }
    },
    username: "用户名",
    password: "密码",
    login_failed: "用户名或密码错误，请重试。",
    consent_title: "授权访问",
    wants_access: |client| format!("{}请求访问您的账号", zh_spaced_end(client)),
    signed_in_as: "当前账号",
    will_be_able_to: "授权后，该应用将可以：",
    scopes: ScopeTexts {
        openid: "确认您的身份",
        profile: "查看您的姓名和基本资料",
        email: "查看您的邮箱地址",
        phone: "查看您的手机号码",
        groups: "查看您所属的用户组",
        offline_access: "在您离开后继续保持访问",
        address: "查看您的通讯地址",
    },
    consent_note: "请仅授权您信任的应用。",
    approve: "授权",
    deny: "拒绝",
    errors: ErrorTexts {
        bad_request: ErrorText {
            title: "请求无效",
            message: "请求缺少必需的参数，或参数格式不正确。",
        },
        unknown_client: ErrorText {
            title: "未知的应用",
            message: "将您引导至此处的应用尚未在本登录服务中注册。",
        },
        bad_redirect_uri: ErrorText {
            title: "回调地址无效",
            message: "该应用请求跳转的地址未经登记。为保护您的账号安全，登录已中止。",
        },
        login_expired: ErrorText {
            title: "登录已过期",
            message: "此登录请求已过期或已失效，请返回应用重新登录。",
        },
        csrf_failed: ErrorText {
            title: "页面已失效",
            message: "表单已过期或校验失败，请返回上一页，刷新后重试。",
        },
        access_denied: ErrorText {
            title: "访问被拒绝",
            message: "授权已被拒绝，或您的账号无权使用该应用。",
        },
        upstream_failed: ErrorText {
            title: "身份提供方出错",
            message: "身份提供方返回了错误，登录未能完成。请稍后重试；如果问题持续出现，请将下方信息提供给管理员。",
        },
        not_found: ErrorText {
            title: "页面不存在",
            message: "您访问的页面不存在。",
        },
        service_unavailable: ErrorText {
            title: "服务暂时不可用",
            message: "登录服务暂时无法处理请求，请稍后重试。",
        },
        too_many_requests: ErrorText {
            title: "尝试次数过多",
            message: "短时间内尝试次数过多，请稍候再试。",
        },
        internal: ErrorText {
            title: "出错了",
            message: "处理请求时发生意外错误，请稍后重试。",
        },
    },
    error_details: "详细信息",
    support_info: "支持信息",
    http_status: "HTTP 状态码",
    error_code: "错误代码",
    request_id: "请求 ID",
    support_hint: "联系技术支持时，请提供以上信息。",
    signed_out_title: "已退出登录",
    signed_out_message: "您已成功退出登录。如果使用的是公用电脑，请关闭浏览器。",
    continue_label: "继续",
    form_post_title: "正在返回应用…",
    form_post_message: "如果页面没有自动跳转，请点击下方按钮。",
    test_login_title: "测试登录",
    test_login_intro: "选择一种登录方式完成一次真实登录，然后查看签发的令牌和用户信息。",
    test_login_result_title: "测试登录成功",
    test_login_result_intro: "ID 令牌的签名已通过验证。以下是客户端将收到的令牌和声明。",
    id_token_claims: "ID 令牌声明",
    userinfo_response: "UserInfo 响应",
    access_token_claims: "访问令牌声明",
    raw_id_token: "原始 ID 令牌",
    device_title: "连接设备",
    device_intro: "请输入设备上显示的验证码。",
    device_code_label: "验证码",
    device_failed: "验证码无效或已过期，请检查后重试。",
    device_approved_title: "设备已连接",
    device_approved_message: "您可以关闭此页面，返回设备继续操作。",
    device_denied_title: "已拒绝设备访问",
    device_denied_message: "该设备未获得访问您账号的权限。您可以关闭此页面。",
};

/// Chinese text puts no spaces around CJK words but does around Latin ones ("使用 Okta 登录",
/// "使用企业微信登录").
fn zh_spaced(name: &str) -> String {
    let lead = if name.chars().next().is_some_and(|c| !is_cjk(c)) {
        " "
    } else {
        ""
    };
    let trail = if name.chars().last().is_some_and(|c| !is_cjk(c)) {
        " "
    } else {
        ""
    };
    format!("{lead}{name}{trail}")
}

/// Like [`zh_spaced`] for a name that starts the sentence.
fn zh_spaced_end(name: &str) -> String {
    let trail = if name.chars().last().is_some_and(|c| !is_cjk(c)) {
        " "
    } else {
        ""
    };
    format!("{name}{trail}")
}

fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{2E80}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7AF}' | '\u{F900}'..='\u{FAFF}'
        | '\u{FF00}'..='\u{FFEF}' | '\u{20000}'..='\u{2FA1F}')
}

// ---------------------------------------------------------------------------------------------
// Shared page chrome
// ---------------------------------------------------------------------------------------------

/// What the layout (`templates/base.html`) needs on every page.
struct Chrome<'a> {
    t: &'static Strings,
    lang_code: &'static str,
    is_en: bool,
    product: &'a str,
    page_title: String,
    static_base: String,
    switch_en: String,
    switch_zh: String,
}

impl<'a> Chrome<'a> {
    fn new(ctx: &'a PageContext, page: &str) -> Chrome<'a> {
        let prefix = ctx.prefix.trim_end_matches('/');
        Chrome {
            t: ctx.lang.strings(),
            lang_code: ctx.lang.code(),
            is_en: ctx.lang == Lang::En,
            product: &ctx.title,
            page_title: if page.is_empty() {
                ctx.title.clone()
            } else {
                format!("{page} · {}", ctx.title)
            },
            static_base: format!("{prefix}/static"),
            switch_en: switch_link(&ctx.path_and_query, Lang::En),
            switch_zh: switch_link(&ctx.path_and_query, Lang::Zh),
        }
    }
}

/// The current path and query with `lang` replaced. The other parameters keep their original
/// encoding byte for byte.
fn switch_link(path_and_query: &str, lang: Lang) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let path = path.split('#').next().unwrap_or_default();
    // A path such as "//host/x" would render as a link to another site; only a plain absolute
    // path is linked, anything else becomes a query-only link to the current document.
    let path = if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') {
        path
    } else {
        ""
    };
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            !name.eq_ignore_ascii_case("lang")
        })
        .collect();
    let lang_pair = format!("lang={}", lang.query_value());
    pairs.push(&lang_pair);
    format!("{path}?{}", pairs.join("&"))
}

fn render(template: &impl Template, status: StatusCode, lang: Lang) -> Response {
    match template.render() {
        Ok(body) => {
            let mut response = (status, Html(body)).into_response();
            let headers = response.headers_mut();
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connector buttons
// ---------------------------------------------------------------------------------------------

struct ConnectorButton {
    url: String,
    /// CSS modifier and icon choice: "dingtalk", "local" or "oidc".
    style: &'static str,
    label: String,
    /// The configured name, shown under the label when the label does not already contain it.
    note: Option<String>,
}

fn connector_buttons(t: &Strings, connectors: &[ConnectorLink]) -> Vec<ConnectorButton> {
    connectors
        .iter()
        .map(|link| {
            let name = link.name.trim();
            let name = if name.is_empty() {
                link.id.as_str()
            } else {
                name
            };
            if link.kind.eq_ignore_ascii_case("dingtalk") {
                let generic = ["dingtalk", "钉钉"]
                    .iter()
                    .any(|n| name.eq_ignore_ascii_case(n));
                ConnectorButton {
                    url: link.url.clone(),
                    style: "dingtalk",
                    label: t.sign_in_with_dingtalk.to_owned(),
                    note: (!generic).then(|| name.to_owned()),
                }
            } else {
                ConnectorButton {
                    url: link.url.clone(),
                    style: if link.kind.eq_ignore_ascii_case("local") {
                        "local"
                    } else {
                        "oidc"
                    },
                    label: (t.sign_in_with)(name),
                    note: None,
                }
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "chooser.html")]
struct ChooserPage<'a> {
    c: Chrome<'a>,
    heading: String,
    buttons: Vec<ConnectorButton>,
}

pub fn chooser(ctx: &PageContext, client_name: &str, connectors: &[ConnectorLink]) -> Response {
    let t = ctx.lang.strings();
    let page = ChooserPage {
        c: Chrome::new(ctx, t.sign_in),
        heading: (t.sign_in_to)(client_name),
        buttons: connector_buttons(t, connectors),
    };
    render(&page, StatusCode::OK, ctx.lang)
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage<'a> {
    c: Chrome<'a>,
    subtitle: String,
    action_url: &'a str,
    csrf: &'a str,
    login: &'a str,
    failed: bool,
}

/// The form POSTs fields `login`, `password`, `csrf` to `action_url`.
pub fn password_form(
    ctx: &PageContext,
    connector_name: &str,
    action_url: &str,
    csrf: &str,
    login: &str,
    failed: bool,
    status: StatusCode,
) -> Response {
    let t = ctx.lang.strings();
    let page = PasswordPage {
        c: Chrome::new(ctx, t.sign_in),
        subtitle: (t.with_account)(connector_name),
        action_url,
        csrf,
        login,
        failed,
    };
    render(&page, status, ctx.lang)
}

struct ScopeRow {
    scope: String,
    description: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    c: Chrome<'a>,
    heading: String,
    scopes: Vec<ScopeRow>,
    action_url: &'a str,
    csrf: &'a str,
    request_id: &'a str,
    username: &'a str,
}

fn scope_description(t: &ScopeTexts, scope: &str) -> Option<&'static str> {
    Some(match scope {
        "openid" => t.openid,
        "profile" => t.profile,
        "email" => t.email,
        "phone" => t.phone,
        "groups" => t.groups,
        "offline_access" => t.offline_access,
        "address" => t.address,
        _ => return None,
    })
}

/// POSTs fields `csrf`, `req`, and a submit button named `approval` with value "approve" or "deny".
pub fn consent(
    ctx: &PageContext,
    client_name: &str,
    scopes: &[String],
    action_url: &str,
    csrf: &str,
    request_id: &str,
    username: &str,
) -> Response {
    let t = ctx.lang.strings();
    let page = ConsentPage {
        c: Chrome::new(ctx, t.consent_title),
        heading: (t.wants_access)(client_name),
        scopes: scopes
            .iter()
            .map(|scope| ScopeRow {
                scope: scope.clone(),
                description: scope_description(&t.scopes, scope),
            })
            .collect(),
        action_url,
        csrf,
        request_id,
        username,
    };
    render(&page, StatusCode::OK, ctx.lang)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    c: Chrome<'a>,
    status_code: u16,
    heading: &'static str,
    message: &'static str,
    detail: Option<&'a str>,
    upstream_code: Option<&'a str>,
    upstream_request_id: Option<&'a str>,
}

fn error_text(t: &'static Strings, kind: ErrorKind) -> &'static ErrorText {
    let e = &t.errors;
    match kind {
        ErrorKind::BadRequest => &e.bad_request,
        ErrorKind::UnknownClient => &e.unknown_client,
        ErrorKind::BadRedirectUri => &e.bad_redirect_uri,
        ErrorKind::LoginExpired => &e.login_expired,
        ErrorKind::CsrfFailed => &e.csrf_failed,
        ErrorKind::AccessDenied => &e.access_denied,
        ErrorKind::UpstreamFailed => &e.upstream_failed,
        ErrorKind::NotFound => &e.not_found,
        ErrorKind::ServiceUnavailable => &e.service_unavailable,
        ErrorKind::TooManyRequests => &e.too_many_requests,
        ErrorKind::Internal => &e.internal,
    }
}

/// `detail` is shown to the user as is (escaped): never pass internal error text here.
/// `upstream` is the upstream provider's error code and request id, shown for support tickets.
pub fn error_page(
    ctx: &PageContext,
    status: StatusCode,
    kind: ErrorKind,
    detail: Option<&str>,
    upstream: Option<(&str, &str)>,
) -> Response {
    let t = ctx.lang.strings();
    let text = error_text(t, kind);
    let filled = |s: &str| !s.trim().is_empty();
    let page = ErrorPage {
        c: Chrome::new(ctx, text.title),
        status_code: status.as_u16(),
        heading: text.title,
        message: text.message,
        detail: detail.filter(|d| filled(d)),
        upstream_code: upstream.map(|(code, _)| code).filter(|s| filled(s)),
        upstream_request_id: upstream.map(|(_, id)| id).filter(|s| filled(s)),
    };
    render(&page, status, ctx.lang)
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage<'a> {
    c: Chrome<'a>,
    continue_url: Option<&'a str>,
}

pub fn signed_out(ctx: &PageContext, continue_url: Option<&str>) -> Response {
    let t = ctx.lang.strings();
    let page = SignedOutPage {
        c: Chrome::new(ctx, t.signed_out_title),
        continue_url,
    };
    render(&page, StatusCode::OK, ctx.lang)
}

#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPostPage<'a> {
    c: Chrome<'a>,
    action: &'a str,
    fields: &'a [(String, String)],
}

/// A self-submitting form for response_mode=form_post. The submission is started by
/// `static/form_post.js`; without scripts the visible button does it.
pub fn form_post(ctx: &PageContext, action: &str, fields: &[(String, String)]) -> Response {
    let t = ctx.lang.strings();
    let page = FormPostPage {
        c: Chrome::new(ctx, t.form_post_title),
        action,
        fields,
    };
    render(&page, StatusCode::OK, ctx.lang)
}

#[derive(Template)]
#[template(path = "test_login_start.html")]
struct TestLoginStartPage<'a> {
    c: Chrome<'a>,
    buttons: Vec<ConnectorButton>,
}

/// Test-login page: choose a connector (list of links) to run a real login and then see the result.
pub fn test_login_start(ctx: &PageContext, connectors: &[ConnectorLink]) -> Response {
    let t = ctx.lang.strings();
    let page = TestLoginStartPage {
        c: Chrome::new(ctx, t.test_login_title),
        buttons: connector_buttons(t, connectors),
    };
    render(&page, StatusCode::OK, ctx.lang)
}

struct TokenPart {
    class: &'static str,
    text: String,
}

#[derive(Template)]
#[template(path = "test_login_result.html")]
struct TestLoginResultPage<'a> {
    c: Chrome<'a>,
    id_token_claims: String,
    userinfo: String,
    access_token_claims: String,
    raw_id_token: Vec<TokenPart>,
}

/// Re-indents JSON so the page is readable whatever the caller passes; text that is not JSON is
/// shown unchanged.
fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// Splits a compact JWS into header, payload and signature so each can be coloured; the dots are
/// kept as separate parts.
fn token_parts(token: &str) -> Vec<TokenPart> {
    const CLASSES: [&str; 3] = ["jwt-header", "jwt-payload", "jwt-signature"];
    let mut parts = Vec::new();
    for (index, segment) in token.trim().split('.').enumerate() {
        if index > 0 {
            parts.push(TokenPart {
                class: "jwt-dot",
                text: ".".to_owned(),
            });
        }
        parts.push(TokenPart {
            class: CLASSES.get(index).copied().unwrap_or("jwt-signature"),
            text: segment.to_owned(),
        });
    }
    parts
}

/// Test-login result: verified ID token claims, the userinfo response, the access token's claims
/// (each pretty-printed JSON) and the raw ID token.
pub fn test_login_result(
    ctx: &PageContext,
    id_token_claims: &str,
    userinfo: &str,
    access_token_claims: &str,
    raw_id_token: &str,
) -> Response {
    let t = ctx.lang.strings();
    let page = TestLoginResultPage {
        c: Chrome::new(ctx, t.test_login_result_title),
        id_token_claims: pretty_json(id_token_claims),
        userinfo: pretty_json(userinfo),
        access_token_claims: pretty_json(access_token_claims),
        raw_id_token: token_parts(raw_id_token),
    };
    render(&page, StatusCode::OK, ctx.lang)
}

#[derive(Template)]
#[template(path = "device_enter.html")]
struct DeviceEnterPage<'a> {
    c: Chrome<'a>,
    action_url: &'a str,
    csrf: &'a str,
    user_code: &'a str,
    failed: bool,
}

/// Device flow: the user enters the code. POSTs fields `user_code` and `csrf` to `action_url`.
/// Answers 400 when `failed` so a wrong code is visible to tests and logs.
pub fn device_enter(
    ctx: &PageContext,
    action_url: &str,
    csrf: &str,
    user_code: &str,
    failed: bool,
) -> Response {
    let t = ctx.lang.strings();
    let page = DeviceEnterPage {
        c: Chrome::new(ctx, t.device_title),
        action_url,
        csrf,
        user_code,
        failed,
    };
    let status = if failed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render(&page, status, ctx.lang)
}

#[derive(Template)]
#[template(path = "device_done.html")]
struct DeviceDonePage<'a> {
    c: Chrome<'a>,
    approved: bool,
    heading: &'static str,
    message: &'static str,
}

pub fn device_done(ctx: &PageContext, approved: bool) -> Response {
    let t = ctx.lang.strings();
    let (heading, message) = if approved {
        (t.device_approved_title, t.device_approved_message)
    } else {
        (t.device_denied_title, t.device_denied_message)
    };
    let page = DeviceDonePage {
        c: Chrome::new(ctx, heading),
        approved,
        heading,
        message,
    };
    render(&page, StatusCode::OK, ctx.lang)
}

// ---------------------------------------------------------------------------------------------
// Static files, embedded so the binary needs no files at run time
// ---------------------------------------------------------------------------------------------

struct StaticFile {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

static STATIC_FILES: &[StaticFile] = &[
    StaticFile {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../static/style.css"),
    },
    StaticFile {
        name: "form_post.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/form_post.js"),
    },
    StaticFile {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../static/favicon.svg"),
    },
];

/// Answers `GET {prefix}/static/{path}` from the files embedded at build time: 200 with a
/// content type and a one-hour cache lifetime, or 404.
pub fn static_file(path: &str) -> Response {
    let Some(file) = STATIC_FILES.iter().find(|file| file.name == path) else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let mut response = (StatusCode::OK, file.body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(lang: Lang) -> PageContext {
        PageContext {
            lang,
            prefix: "/dex".to_owned(),
            path_and_query: "/dex/auth?client_id=grafana&state=a%20b&lang=zh".to_owned(),
            title: "idbridge".to_owned(),
        }
    }

    fn links() -> Vec<ConnectorLink> {
        vec![
            ConnectorLink {
                id: "ding".to_owned(),
                name: "DingTalk".to_owned(),
                kind: "dingtalk".to_owned(),
                url: "/dex/auth/ding?req=r1".to_owned(),
            },
            ConnectorLink {
                id: "local".to_owned(),
                name: "Email".to_owned(),
                kind: "local".to_owned(),
                url: "/dex/auth/local?req=r1&x=1".to_owned(),
            },
            ConnectorLink {
                id: "okta".to_owned(),
                name: "Okta".to_owned(),
                kind: "oidc".to_owned(),
                url: "/dex/auth/okta?req=r1".to_owned(),
            },
        ]
    }

    async fn body(response: Response) -> (StatusCode, HeaderMap, String) {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            headers,
            String::from_utf8(bytes.to_vec()).expect("utf-8"),
        )
    }

    /// The site's CSP forbids inline scripts, inline styles and inline event handlers.
    fn assert_csp_clean(html: &str) {
        assert!(!html.contains(" style="), "inline style in {html}");
        for (index, _) in html.match_indices("<script") {
            let tag_end = html[index..].find('>').expect("closed tag") + index;
            assert!(html[index..tag_end].contains(" src="), "inline script");
            assert!(
                html[tag_end + 1..].starts_with("</script>"),
                "script with inline code"
            );
        }
        let lower = html.to_ascii_lowercase();
        for handler in [
            " onclick=",
            " onload=",
            " onsubmit=",
            " onerror=",
            " onfocus=",
        ] {
            assert!(!lower.contains(handler), "event handler {handler}");
        }
        assert!(!lower.contains("http://") && !lower.contains("https://"));
    }

    async fn page(response: Response, status: StatusCode) -> String {
        let (got, headers, html) = body(response).await;
        assert_eq!(got, status, "{html}");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert!(
            headers[CONTENT_TYPE]
                .to_str()
                .expect("ascii")
                .starts_with("text/html")
        );
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains(r#"<link rel="stylesheet" href="/dex/static/style.css">"#));
        assert_csp_clean(&html);
        html
    }

    #[tokio::test]
    async fn chooser_shows_a_button_per_connector() {
        let html = page(chooser(&ctx(Lang::En), "Grafana", &links()), StatusCode::OK).await;
        assert!(html.contains(r#"<html lang="en">"#));
        assert!(html.contains("Sign in to continue to Grafana"));
        assert!(html.contains("Sign in with DingTalk"));
        assert!(html.contains("btn-dingtalk"));
        assert!(html.contains("Sign in with Okta"));
        assert!(html.contains(r#"href="/dex/auth/local?req=r1&#38;x=1""#));
        assert!(html.contains("<title>Sign in · idbridge</title>"));
        // Language switcher keeps the other parameters and replaces `lang`.
        assert!(html.contains(r#"href="/dex/auth?client_id=grafana&#38;state=a%20b&#38;lang=en""#));
        assert!(html.contains(r#"href="/dex/auth?client_id=grafana&#38;state=a%20b&#38;lang=zh""#));

        let html = page(chooser(&ctx(Lang::Zh), "Grafana", &links()), StatusCode::OK).await;
        assert!(html.contains(r#"<html lang="zh-CN">"#));
        assert!(html.contains("登录以继续使用 Grafana"));
        assert!(html.contains("使用钉钉登录"));
        assert!(html.contains("使用 Okta 登录"));
        assert!(html.contains("<title>登录 · idbridge</title>"));
    }

    #[tokio::test]
    async fn chooser_without_connectors_says_so() {
        let html = page(chooser(&ctx(Lang::En), "Grafana", &[]), StatusCode::OK).await;
        assert!(html.contains("No sign-in methods are configured"));
        let html = page(chooser(&ctx(Lang::Zh), "Grafana", &[]), StatusCode::OK).await;
        assert!(html.contains("尚未配置任何登录方式"));
    }

    #[tokio::test]
    async fn chooser_escapes_client_and_connector_names() {
        let evil = vec![ConnectorLink {
            id: "x".to_owned(),
            name: "<b>corp</b>".to_owned(),
            kind: "dingtalk".to_owned(),
            url: "/a?\"onmouseover=x".to_owned(),
        }];
        let html = page(
            chooser(&ctx(Lang::En), "<script>x</script>", &evil),
            StatusCode::OK,
        )
        .await;
        assert!(html.contains("&#60;script&#62;x&#60;/script&#62;"));
        assert!(html.contains("&#60;b&#62;corp&#60;/b&#62;"));
        assert!(!html.contains("\"onmouseover"));
    }

    #[tokio::test]
    async fn password_form_fields_and_failure() {
        let response = password_form(
            &ctx(Lang::En),
            "Email",
            "/dex/auth/local/login?req=r1",
            "tok\"en",
            "alice",
            true,
            StatusCode::UNAUTHORIZED,
        );
        let html = page(response, StatusCode::UNAUTHORIZED).await;
        assert!(html.contains(r#"action="/dex/auth/local/login?req=r1""#));
        assert!(html.contains(r#"name="login" value="alice""#));
        assert!(html.contains(r#"name="password""#));
        assert!(html.contains(r#"name="csrf" value="tok&#34;en""#));
        assert!(html.contains("Incorrect username or password"));
        assert!(html.contains("Use your Email account"));

        let response = password_form(
            &ctx(Lang::Zh),
            "企业账号",
            "/login",
            "t",
            "",
            false,
            StatusCode::OK,
        );
        let html = page(response, StatusCode::OK).await;
        assert!(html.contains("使用您的企业账号<"));
        assert!(html.contains("用户名"));
        assert!(html.contains("密码"));
        assert!(!html.contains("用户名或密码错误"));
    }

    #[tokio::test]
    async fn consent_posts_the_expected_fields() {
        let scopes = vec![
            "openid".to_owned(),
            "email".to_owned(),
            "groups".to_owned(),
            "custom:<x>".to_owned(),
        ];
        let response = consent(
            &ctx(Lang::En),
            "Harbor",
            &scopes,
            "/dex/approval",
            "c1",
            "req-1",
            "alice@example.com",
        );
        let html = page(response, StatusCode::OK).await;
        assert!(html.contains("Harbor wants to access your account"));
        assert!(html.contains("alice@example.com"));
        assert!(html.contains("See your email address"));
        assert!(html.contains("custom:&#60;x&#62;"));
        assert!(html.contains(r#"name="csrf" value="c1""#));
        assert!(html.contains(r#"name="req" value="req-1""#));
        assert!(html.contains(r#"name="approval" value="approve""#));
        assert!(html.contains(r#"name="approval" value="deny""#));
        assert!(html.contains(">Allow<"));

        let response = consent(&ctx(Lang::Zh), "Harbor", &scopes, "/a", "c", "r", "alice");
        let html = page(response, StatusCode::OK).await;
        assert!(html.contains("Harbor 请求访问您的账号"));
        assert!(html.contains(">授权<"));
        assert!(html.contains(">拒绝<"));
        assert!(html.contains("查看您的邮箱地址"));
    }

    #[tokio::test]
    async fn error_page_escapes_detail_and_shows_upstream_ids() {
        let response = error_page(
            &ctx(Lang::En),
            StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamFailed,
            Some("<script>alert(1)</script>"),
            Some(("invalid_authcode", "req-<42>")),
        );
        let html = page(response, StatusCode::BAD_GATEWAY).await;
        assert!(html.contains("Identity provider error"));
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("invalid_authcode"));
        assert!(html.contains("req-&#60;42&#62;"));
        assert!(html.contains("Request ID"));
        assert!(html.contains("502"));

        let response = error_page(
            &ctx(Lang::Zh),
            StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamFailed,
            None,
            Some(("60020", "abc")),
        );
        let html = page(response, StatusCode::BAD_GATEWAY).await;
        assert!(html.contains("身份提供方出错"));
        assert!(html.contains("错误代码"));
        assert!(html.contains("请求 ID"));
        assert!(!html.contains("详细信息"));
    }

    #[tokio::test]
    async fn every_error_kind_has_a_message_in_both_languages() {
        let kinds = [
            (
                ErrorKind::BadRequest,
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "请求无效",
            ),
            (
                ErrorKind::UnknownClient,
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "未知的应用",
            ),
            (
                ErrorKind::BadRedirectUri,
                StatusCode::BAD_REQUEST,
                "Invalid redirect address",
                "回调地址无效",
            ),
            (
                ErrorKind::LoginExpired,
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                "登录已过期",
            ),
            (
                ErrorKind::CsrfFailed,
                StatusCode::FORBIDDEN,
                "Form expired",
                "页面已失效",
            ),
            (
                ErrorKind::AccessDenied,
                StatusCode::FORBIDDEN,
                "Access denied",
                "访问被拒绝",
            ),
            (
                ErrorKind::UpstreamFailed,
                StatusCode::BAD_GATEWAY,
                "Identity provider error",
                "身份提供方出错",
            ),
            (
                ErrorKind::NotFound,
                StatusCode::NOT_FOUND,
                "Page not found",
                "页面不存在",
            ),
            (
                ErrorKind::ServiceUnavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
                "服务暂时不可用",
            ),
            (
                ErrorKind::TooManyRequests,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "尝试次数过多",
            ),
            (
                ErrorKind::Internal,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "出错了",
            ),
        ];
        for (kind, status, en, zh) in kinds {
            let html = page(error_page(&ctx(Lang::En), status, kind, None, None), status).await;
            assert!(html.contains(en), "{en}");
            assert!(!html.contains("Request ID"));
            let html = page(error_page(&ctx(Lang::Zh), status, kind, None, None), status).await;
            assert!(html.contains(zh), "{zh}");
        }
    }

    #[tokio::test]
    async fn signed_out_with_and_without_continue() {
        let html = page(
            signed_out(&ctx(Lang::En), Some("/after?a=1&b=2")),
            StatusCode::OK,
        )
        .await;
        assert!(html.contains("You have signed out"));
        assert!(html.contains(r#"href="/after?a=1&#38;b=2""#));
        let html = page(signed_out(&ctx(Lang::Zh), None), StatusCode::OK).await;
        assert!(html.contains("已退出登录"));
        assert!(!html.contains("btn-primary"));
    }

    #[tokio::test]
    async fn form_post_uses_a_script_file_and_escapes_values() {
        let fields = vec![
            ("code".to_owned(), "abc".to_owned()),
            ("state".to_owned(), "x\"><script>y</script>".to_owned()),
        ];
        let (status, _, html) = body(form_post(
            &ctx(Lang::En),
            "https://rp.example/cb?x=1&y=2",
            &fields,
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(r#"<script src="/dex/static/form_post.js" defer></script>"#));
        assert!(html.contains(r#"<form id="form-post" class="form" method="post" action="https://rp.example/cb?x=1&#38;y=2">"#));
        assert!(html.contains(r#"name="code" value="abc""#));
        assert!(html.contains(r#"value="x&#34;&#62;&#60;script&#62;y&#60;/script&#62;""#));
        assert!(html.contains(r#"type="submit">Continue</button>"#));
        assert_csp_clean(&html.replace("https://rp.example", ""));

        let (_, _, html) = body(form_post(&ctx(Lang::Zh), "/cb", &fields)).await;
        assert!(html.contains("正在返回应用"));
        assert!(html.contains(">继续</button>"));
    }

    #[tokio::test]
    async fn test_login_pages() {
        let html = page(test_login_start(&ctx(Lang::En), &links()), StatusCode::OK).await;
        assert!(html.contains("Test sign-in"));
        assert!(html.contains("Sign in with DingTalk"));
        let html = page(test_login_start(&ctx(Lang::Zh), &links()), StatusCode::OK).await;
        assert!(html.contains("测试登录"));

        let response = test_login_result(
            &ctx(Lang::En),
            r#"{"sub":"u1","name":"<b>"}"#,
            r#"{"email":"a@b.c"}"#,
            "not json <x>",
            "aaa.bbb.ccc",
        );
        let html = page(response, StatusCode::OK).await;
        assert!(html.contains("ID token claims"));
        assert!(html.contains("UserInfo response"));
        assert!(html.contains("Access token claims"));
        assert!(html.contains("Raw ID token"));
        // Re-indented JSON, escaped.
        assert!(html.contains(
            "{\n  &#34;name&#34;: &#34;&#60;b&#62;&#34;,\n  &#34;sub&#34;: &#34;u1&#34;\n}"
        ));
        assert!(html.contains("&#60;b&#62;"));
        assert!(html.contains("not json &#60;x&#62;"));
        assert!(html.contains(r#"<span class="jwt-header">aaa</span><span class="jwt-dot">.</span><span class="jwt-payload">bbb</span>"#));
        let response = test_login_result(&ctx(Lang::Zh), "{}", "{}", "{}", "a.b.c");
        let html = page(response, StatusCode::OK).await;
        assert!(html.contains("ID 令牌声明"));
        assert!(html.contains("访问令牌声明"));
    }

    #[tokio::test]
    async fn device_pages() {
        let html = page(
            device_enter(&ctx(Lang::En), "/dex/device", "c1", "ABCD-EFGH", false),
            StatusCode::OK,
        )
        .await;
        assert!(html.contains("Connect a device"));
        assert!(html.contains(r#"name="user_code" value="ABCD-EFGH""#));
        assert!(html.contains(r#"name="csrf" value="c1""#));
        assert!(!html.contains("invalid or has expired"));
        let html = page(
            device_enter(&ctx(Lang::Zh), "/dex/device", "c1", "", true),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(html.contains("验证码无效或已过期"));

        let html = page(device_done(&ctx(Lang::En), true), StatusCode::OK).await;
        assert!(html.contains("Device connected"));
        let html = page(device_done(&ctx(Lang::En), false), StatusCode::OK).await;
        assert!(html.contains("Device access denied"));
        let html = page(device_done(&ctx(Lang::Zh), true), StatusCode::OK).await;
        assert!(html.contains("设备已连接"));
        let html = page(device_done(&ctx(Lang::Zh), false), StatusCode::OK).await;
        assert!(html.contains("已拒绝设备访问"));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn negotiate_prefers_query_then_cookie_then_accept_language() {
        let none = HeaderMap::new();
        assert_eq!(Lang::negotiate(None, &none), Lang::En);
        assert_eq!(Lang::negotiate(Some("zh"), &none), Lang::Zh);
        assert_eq!(Lang::negotiate(Some("zh-CN"), &none), Lang::Zh);
        assert_eq!(Lang::negotiate(Some("ZH_hans"), &none), Lang::Zh);
        assert_eq!(Lang::negotiate(Some("en-GB"), &none), Lang::En);

        let cookie = headers(&[
            ("cookie", "a=1; idbridge_lang=zh; b=2"),
            ("accept-language", "en"),
        ]);
        assert_eq!(Lang::negotiate(None, &cookie), Lang::Zh);
        assert_eq!(Lang::negotiate(Some("en"), &cookie), Lang::En);
        // An unsupported query value falls through to the cookie.
        assert_eq!(Lang::negotiate(Some("fr"), &cookie), Lang::Zh);

        let bad_cookie = headers(&[("cookie", "idbridge_lang=xx"), ("accept-language", "zh")]);
        assert_eq!(Lang::negotiate(None, &bad_cookie), Lang::Zh);
    }

    #[test]
    fn accept_language_honours_q_values() {
        let cases = [
            ("zh-CN,zh;q=0.9,en;q=0.8", Lang::Zh),
            ("en-US,en;q=0.9,zh-CN;q=0.8", Lang::En),
            ("en;q=0.5, zh-TW;q=0.9", Lang::Zh),
            ("fr-FR, de;q=0.9, zh-HK;q=0.3", Lang::Zh),
            ("zh;q=0, en", Lang::En),
            ("fr, de", Lang::En),
            ("*", Lang::En),
            ("", Lang::En),
            ("zh;q=abc, en;q=0.1", Lang::En),
        ];
        for (header, expected) in cases {
            let map = headers(&[("accept-language", header)]);
            assert_eq!(Lang::negotiate(None, &map), expected, "{header}");
        }
    }

    #[test]
    fn switch_links() {
        assert_eq!(
            switch_link("/dex/auth?a=1&lang=zh&b=2", Lang::En),
            "/dex/auth?a=1&b=2&lang=en"
        );
        assert_eq!(switch_link("/dex/auth", Lang::Zh), "/dex/auth?lang=zh");
        assert_eq!(switch_link("/x?LANG=en&", Lang::Zh), "/x?lang=zh");
        assert_eq!(switch_link("", Lang::Zh), "?lang=zh");
        assert_eq!(
            switch_link("//evil.example/x?a=1", Lang::En),
            "?a=1&lang=en"
        );
        assert_eq!(switch_link("/\\evil.example", Lang::En), "?lang=en");
    }

    #[test]
    fn chinese_spacing_around_latin_names() {
        assert_eq!((ZH.sign_in_with)("Okta"), "使用 Okta 登录");
        assert_eq!((ZH.sign_in_with)("企业微信"), "使用企业微信登录");
        assert_eq!((ZH.wants_access)("Grafana"), "Grafana 请求访问您的账号");
        assert_eq!((ZH.wants_access)("监控平台"), "监控平台请求访问您的账号");
        assert_eq!((ZH.with_account)("LDAP"), "使用您的 LDAP 账号");
        assert_eq!((ZH.with_account)("企业账号"), "使用您的企业账号");
        assert_eq!((EN.with_account)("LDAP"), "Use your LDAP account");
        assert_eq!(
            (EN.with_account)("Local accounts"),
            "Use your Local accounts"
        );
    }

    #[tokio::test]
    async fn static_files_are_embedded() {
        let (status, headers, css) = body(static_file("style.css")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "text/css; charset=utf-8");
        assert!(css.contains("PingFang SC"));
        let (status, headers, js) = body(static_file("form_post.js")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers[CONTENT_TYPE]
                .to_str()
                .expect("ascii")
                .starts_with("text/javascript")
        );
        assert!(js.contains("form-post"));
        let (status, _, _) = body(static_file("../Cargo.toml")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

//! The pages a person sees: language negotiation, security headers, cookie flags, and the
//! test-login page.

use reqwest::StatusCode;

use crate::harness::{
    ALICE, GRAFANA_ID, GRAFANA_REDIRECT, KS_ID, KS_REDIRECT, Resp, TestApp, html_unescape,
};

const ZH: (&str, &str) = ("accept-language", "zh-CN,zh;q=0.9,en;q=0.8");

fn grafana_auth(app: &TestApp) -> String {
    app.auth_url(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "pages"),
    ])
}

fn assert_english(resp: &Resp, marker: &str) {
    assert!(resp.body.contains(r#"<html lang="en">"#), "{}", resp.body);
    assert!(
        resp.body.contains(marker),
        "missing {marker:?}: {}",
        resp.body
    );
    assert_eq!(resp.header("content-language"), Some("en"));
}

fn assert_chinese(resp: &Resp, marker: &str) {
    assert!(
        resp.body.contains(r#"<html lang="zh-CN">"#),
        "{}",
        resp.body
    );
    assert!(
        resp.body.contains(marker),
        "missing {marker:?}: {}",
        resp.body
    );
    assert_eq!(resp.header("content-language"), Some("zh-CN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chooser_login_and_error_pages_follow_accept_language() {
    let app = TestApp::builder()
        .oauth2("alwaysShowLoginScreen: true")
        .spawn()
        .await;
    let browser = app.browser();
    let resp = browser.get(&grafana_auth(&app)).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    let chooser = resp.location().unwrap();
    assert_eq!(
        chooser.path(),
        "/login",
        "alwaysShowLoginScreen shows the chooser"
    );

    let page = browser.get(chooser.as_str()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_english(&page, "Choose how you want to sign in.");
    let page = browser.get_with(chooser.as_str(), &[ZH]).await;
    assert_chinese(&page, "请选择登录方式。");
    assert!(
        page.body.contains("/login/local?req="),
        "a link to the connector"
    );

    let req = chooser
        .query_pairs()
        .find(|(k, _)| k == "req")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let form = app.url(&format!("/login/local?req={req}"));
    let page = browser.get(&form).await;
    assert_english(&page, "Password");
    let page = browser.get_with(&form, &[ZH]).await;
    assert_chinese(&page, "密码");

    let unknown = app.auth_url(&[("client_id", "nobody"), ("redirect_uri", GRAFANA_REDIRECT)]);
    let page = browser.get(&unknown).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_english(&page, "Unknown application");
    let page = browser.get_with(&unknown, &[ZH]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_chinese(&page, "未知的应用");
    // English wins when the browser prefers it.
    let page = browser
        .get_with(&unknown, &[("accept-language", "en-US,zh-CN;q=0.5")])
        .await;
    assert_english(&page, "Unknown application");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_page_is_translated() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let url = app.auth_url(&[
        ("client_id", KS_ID),
        ("redirect_uri", KS_REDIRECT),
        ("response_type", "code"),
        ("state", "x"),
    ]);
    let (action, csrf) = browser.open_login_form(&url).await;
    let resp = browser
        .submit_login(&action, ALICE.login, ALICE.password, &csrf)
        .await;
    let approval = resp.location().expect("consent redirect");
    assert_eq!(approval.path(), "/approval");
    let page = browser.get(approval.as_str()).await;
    assert_english(&page, "KubeSphere wants to access your account");
    let page = browser.get_with(approval.as_str(), &[ZH]).await;
    assert_chinese(&page, "请求访问您的账号");
    assert!(page.body.contains("授权"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lang_query_sets_a_cookie_that_sticks() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let resp = browser.get(&grafana_auth(&app)).await;
    let form = resp.location().expect("to the login form");
    let page = browser.get(&format!("{form}&lang=zh")).await;
    assert_chinese(&page, "密码");
    let cookie = page
        .header_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("idbridge_lang="))
        .expect("the language cookie");
    assert!(cookie.starts_with("idbridge_lang=zh;"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"));
    assert!(!cookie.contains("Secure"), "no Secure on an http issuer");

    // Later pages, without the parameter or Accept-Language, stay in Chinese.
    let page = browser.get(form.as_str()).await;
    assert_chinese(&page, "密码");
    let page = browser.get(&app.url("/no-such-page")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_chinese(&page, "页面不存在");
    // And ?lang=en switches back, overriding Accept-Language.
    let page = browser.get_with(&format!("{form}&lang=en"), &[ZH]).await;
    assert_english(&page, "Password");
    let page = browser.get(&app.url("/no-such-page")).await;
    assert_english(&page, "Page not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_page_honours_the_lang_query() {
    let app = TestApp::spawn("").await;
    let resp = app.browser().get(&app.url("/no-such-page?lang=zh")).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_chinese(&resp, "页面不存在");
}

fn assert_security_headers(resp: &Resp, what: &str) {
    let csp = resp
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"));
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert_eq!(
        resp.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert!(resp.header("referrer-policy").is_some(), "{what}");
    assert_eq!(resp.header("x-frame-options"), Some("DENY"), "{what}");
    assert!(
        resp.header("strict-transport-security").is_none(),
        "{what}: no HSTS on an http issuer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_security_headers() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let resp = browser.get(&grafana_auth(&app)).await;
    assert_security_headers(&resp, "auth redirect");
    let form = browser.get(resp.location().unwrap().as_str()).await;
    assert_security_headers(&form, "login form");
    assert!(
        form.header("cache-control")
            .is_some_and(|c| c.contains("no-store")),
        "the login form is not cached"
    );
    assert!(!form.body.contains("<script>"), "no inline script");
    assert!(!form.body.contains("style=\""), "no inline style");
    let error = browser.get(&app.url("/auth")).await;
    assert_security_headers(&error, "error page");
    assert_security_headers(
        &app.get("/.well-known/openid-configuration").await,
        "discovery",
    );
    assert_security_headers(&app.get("/keys").await, "jwks");
    let token = app
        .token(&[("grant_type", "nope")], crate::harness::ClientAuth::None)
        .await;
    assert_security_headers(&token, "token error");
    let css = app.get("/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.header("content-type")
            .unwrap_or("")
            .starts_with("text/css")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_is_http_only_and_same_site_lax() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let resp = browser.get(&grafana_auth(&app)).await;
    let cookie = resp
        .header_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("idbridge_session="))
        .expect("a session cookie once a request is pending");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");

    // The session id changes at login (no fixation).
    let page = browser.get(resp.location().unwrap().as_str()).await;
    let action = crate::harness::form_action(&page.body, "name=\"password\"").unwrap();
    let csrf = crate::harness::input_value(&page.body, "csrf").unwrap();
    let login = browser
        .submit_login(&action, ALICE.login, ALICE.password, &csrf)
        .await;
    let renewed = login
        .header_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("idbridge_session="))
        .expect("a new session cookie at login");
    let id = |c: &str| c.split(';').next().unwrap().to_string();
    assert_ne!(
        id(&renewed),
        id(&cookie),
        "the session id is renewed at login"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_login_page_runs_a_full_login_and_shows_the_claims() {
    let app = TestApp::spawn("testLogin:\n  enabled: true\n").await;
    let browser = app.browser();
    let start = browser.get(&app.url("/test-login")).await;
    assert_eq!(start.status, StatusCode::OK);
    assert!(
        start.body.contains("/test-login/start?connector=local"),
        "{}",
        start.body
    );

    let flow = browser
        .authorize(&app.url("/test-login/start?connector=local"), Some(&ALICE))
        .await;
    assert_eq!(
        flow.login_forms, 1,
        "the test login always asks for credentials"
    );
    assert_eq!(flow.end.status, StatusCode::OK, "{}", flow.end.body);
    let body = html_unescape(&flow.end.body);
    assert!(body.contains("Test sign-in succeeded"), "{body}");
    assert!(
        body.contains(&format!("\"email\": \"{}\"", ALICE.email)),
        "{body}"
    );
    assert!(
        body.contains(&format!("\"iss\": \"{}\"", app.issuer)),
        "{body}"
    );
    assert!(body.contains("\"groups\": ["), "{body}");

    // The result page in Chinese too.
    let flow = browser
        .authorize(
            &app.url("/test-login/start?connector=local&lang=zh"),
            Some(&ALICE),
        )
        .await;
    assert!(flow.end.body.contains("测试登录成功"), "{}", flow.end.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_login_is_absent_unless_enabled() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    for path in [
        "/test-login",
        "/test-login/start?connector=local",
        "/test-login/callback",
    ] {
        let resp = browser.get(&app.url(path)).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}");
    }
    let url = app.auth_url(&[
        ("client_id", "idbridge-test-login"),
        ("redirect_uri", &app.url("/test-login/callback")),
        ("response_type", "code"),
        ("scope", "openid"),
    ]);
    let resp = browser.get(&url).await;
    assert_eq!(
        resp.status,
        StatusCode::BAD_REQUEST,
        "its client is not registered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_hint_prefills_the_form_and_is_escaped() {
    let app = TestApp::spawn("").await;
    let browser = app.browser();
    let url = app.auth_url(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("login_hint", "alice@example.com"),
    ]);
    let flow = browser.authorize(&url, None).await;
    assert_eq!(
        crate::harness::input_value(&flow.end.body, "login").as_deref(),
        Some("alice@example.com")
    );
    let url = app.auth_url(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("login_hint", "\"><script>alert(1)</script>"),
    ]);
    let flow = browser.authorize(&url, None).await;
    assert!(
        !flow.end.body.contains("<script>alert(1)"),
        "{}",
        flow.end.body
    );
    assert_eq!(
        crate::harness::input_value(&flow.end.body, "login").as_deref(),
        Some("\"><script>alert(1)</script>")
    );
}

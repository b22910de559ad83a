//! The test-login page in a real browser: Debian's Chromium, driven by `tests/js/e2e.mjs`
//! through playwright-core, signs in through the DingTalk simulator in English and in
//! Chinese, and is refused as a non-member. Screenshots of every page land in
//! `tests/artifacts/browser-e2e/`.
//!
//! Without Chromium, Node or `tests/js/node_modules` the test prints a SKIP line, unless
//! `IDBRIDGE_TEST_REQUIRE_ALL` is set (the test command sets it): then it fails.
//!
//! Also home of the helpers that run the Node scripts of `tests/js`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use idbridge::app::{self, Server};
use idbridge::clock::Clock;
use idbridge::config::Config;
use serde_json::json;
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::dingtalk_sim::{APP_KEY, APP_SECRET, DingTalkSim, SimUser};

const CHROMIUM: &str = "/usr/bin/chromium";

const MEMBER: &str = "union-e2e-zhangsan-0001";
const OUTSIDER: &str = "union-e2e-outsider-0002";

pub(crate) fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

fn require_all() -> bool {
    std::env::var_os("IDBRIDGE_TEST_REQUIRE_ALL").is_some()
}

/// Whether Node, the npm `packages` of `tests/js` and (when asked) Chromium are there. When
/// one is missing: a SKIP line and `false`, or a panic under `IDBRIDGE_TEST_REQUIRE_ALL`.
pub(crate) fn js_tools_available(test: &str, packages: &[&str], chromium: bool) -> bool {
    let mut missing = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        missing.push("`node` is not installed".to_string());
    }
    for p in packages {
        if !js_dir().join("node_modules").join(p).is_dir() {
            missing.push(format!(
                "tests/js/node_modules/{p} is missing (run `cd tests/js && npm ci`)"
            ));
        }
    }
    if chromium && !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    assert!(
        !require_all(),
        "{test} cannot run and IDBRIDGE_TEST_REQUIRE_ALL is set: {why}"
    );
    eprintln!("SKIP {test}: {why}");
    false
}

/// Runs `node SCRIPT ARGS...` in `tests/js` without blocking the runtime the servers under test
/// live on, and returns its output. Every line it printed is echoed to the test's output.
pub(crate) async fn run_node(script: &str, args: &[String], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .args(args)
        .current_dir(js_dir())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let script = script.to_string();
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the node runner")
        .unwrap_or_else(|e| panic!("start node {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("--- node {script}: {}\n{stdout}{stderr}---", output.status);
    output
}

/// Lines of the script's standard output.
pub(crate) fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The provider: test-login page, a `dingtalk` connector on the simulator (members only) and a
/// `local` connector, so the test-login page offers a choice.
struct App {
    issuer: String,
    server: Server,
    _dir: TempDir,
}

async fn spawn(sim: &DingTalkSim) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let issuer = format!("http://{addr}");
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = format!(
        r#"issuer: {issuer}
storage:
  type: sqlite
  config:
    file: "{db}"
web:
  http: {addr}
logger:
  level: warn
testLogin:
  enabled: true
connectors:
  - type: dingtalk
    id: dingtalk
    name: DingTalk
    config:
      clientID: {APP_KEY}
      clientSecret: "{APP_SECRET}"
      loginURL: {sim}
      apiURL: {sim}
      oapiURL: {sim}
      requireMembership: true
      groups: names
  - type: local
    id: local
    name: Email
"#,
        db = dir.path().join("idbridge.db").display(),
        sim = sim.url,
    );
    let config = Config::from_yaml_str(&yaml)
        .unwrap_or_else(|e| panic!("test config does not load:\n{e}\n---\n{yaml}"));
    let server = app::spawn(config, listener, Clock::system())
        .await
        .expect("start the provider");
    App {
        issuer,
        server,
        _dir: dir,
    }
}

/// A small HTTP front for the simulator's controls, so the browser script can pick who signs
/// in upstream between its steps.
async fn control_server(sim: Arc<DingTalkSim>) -> (String, tokio::task::JoinHandle<()>) {
    let router = Router::new()
        .route(
            "/users",
            get(|| async { axum::Json(json!({"member": MEMBER, "outsider": OUTSIDER})) }),
        )
        .route(
            "/login-as/{union_id}",
            post(
                |State(sim): State<Arc<DingTalkSim>>, UrlPath(union_id): UrlPath<String>| async move {
                    sim.login_as(&union_id);
                    axum::Json(json!({"loginAs": union_id}))
                },
            ),
        )
        .with_state(sim);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind control");
    let addr = listener.local_addr().expect("control addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), task)
}

const SCREENSHOTS: [&str; 6] = [
    "chooser-en.png",
    "chooser-zh.png",
    "result-en.png",
    "result-zh.png",
    "error-en.png",
    "error-zh.png",
];

#[tokio::test]
async fn test_login_in_chromium_signs_in_through_dingtalk_in_both_languages() {
    let test = "browser_e2e::test_login_in_chromium_signs_in_through_dingtalk_in_both_languages";
    if !js_tools_available(test, &["playwright-core"], true) {
        return;
    }
    let sim = Arc::new(DingTalkSim::start().await);
    let mut zhang = SimUser::employee(MEMBER, "Zhang San", "0139001", &[2, 3]);
    if let Some(m) = zhang.member.as_mut() {
        m.org_email = Some("zhangsan@corp.example.com".into());
    }
    sim.add_user(zhang);
    sim.add_user(SimUser::outsider(OUTSIDER, "Wang Wu"));
    sim.login_as(MEMBER);
    let app = spawn(&sim).await;
    let (control, control_task) = control_server(sim.clone()).await;

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts/browser-e2e");
    std::fs::create_dir_all(&artifacts).expect("create the artifact directory");
    for name in SCREENSHOTS {
        let _ = std::fs::remove_file(artifacts.join(name));
    }

    let output = tokio::time::timeout(
        Duration::from_secs(180),
        run_node(
            "e2e.mjs",
            &[app.issuer.clone(), artifacts.display().to_string()],
            &[("E2E_CONTROL_URL", control.clone())],
        ),
    )
    .await
    .expect("the browser run finishes within 3 minutes");
    control_task.abort();
    let lines = stdout_lines(&output);
    assert!(
        output.status.success(),
        "e2e.mjs failed ({}):\n{}\n{}",
        output.status,
        lines.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    for step in [
        "PASS signed in through DingTalk (English)",
        "PASS signed in through DingTalk (Chinese)",
        "PASS non-member refused with the upstream code (English)",
        "PASS non-member refused with the upstream code (Chinese)",
    ] {
        assert!(lines.iter().any(|l| l == step), "no {step:?} in {lines:?}");
    }
    for name in SCREENSHOTS {
        let path = artifacts.join(name);
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()))
            .len();
        assert!(size > 0, "{} is empty", path.display());
    }

    // The subject the browser saw is the one stored for the DingTalk member, and the outsider
    // left no user behind.
    let users = app
        .server
        .provider
        .storage
        .list_users()
        .await
        .expect("list users");
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0].upstream_id, MEMBER);
    let subs: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("SUB "))
        .collect();
    assert_eq!(subs, [users[0].id.as_str(), users[0].id.as_str()]);
}

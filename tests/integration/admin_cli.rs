//! The admin commands run as an operator runs them: the real `idbridge` binary against the
//! configuration file and SQLite database of a running provider.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use tempfile::TempDir;

use crate::harness::{
    ALICE, ClientAuth, GRAFANA_ID, GRAFANA_REDIRECT, GRAFANA_SECRET, KS_ID, SERVICE_ID,
    SERVICE_SECRET, TestApp, decode_jwt,
};

/// What one run of the binary printed.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    fn failed(&self) -> &Self {
        assert_eq!(self.code, 1, "expected exit status 1: {self:#?}");
        self
    }
}

/// The provider's configuration written to a file, as the commands read it.
struct Admin {
    config: PathBuf,
    _dir: TempDir,
}

impl Admin {
    fn for_app(app: &TestApp) -> Admin {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("idbridge.yaml");
        std::fs::write(&config, &app.yaml).expect("write config");
        Admin { config, _dir: dir }
    }

    /// Runs `idbridge ARGS --config FILE`.
    async fn run(&self, args: &[&str]) -> Run {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push("--config".into());
        all.push(self.config.display().to_string());
        idbridge(all).await
    }
}

/// Runs the binary off the async runtime: `token inspect` calls back into the server that
/// runs on this runtime.
async fn idbridge(args: Vec<String>) -> Run {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_idbridge"))
            .args(&args)
            .env_remove("IDBRIDGE_CONFIG")
            .output()
    })
    .await
    .expect("join")
    .expect("run idbridge");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn secret_from(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap_or_else(|| panic!("no client_secret line in:\n{stdout}"))
        .trim()
        .to_string()
}

const BILLING_REDIRECT: &str = "https://billing.example.com/oauth/callback";

fn billing_auth_url(app: &TestApp) -> String {
    app.auth_url(&[
        ("client_id", "billing"),
        ("redirect_uri", BILLING_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid profile offline_access"),
        ("state", "billing-state"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_clients_add_prints_the_secret_once_and_the_client_signs_users_in() {
    let app = TestApp::spawn("").await;
    let admin = Admin::for_app(&app);

    let added = admin
        .run(&[
            "clients",
            "add",
            "--id",
            "billing",
            "--name",
            "Billing",
            "--redirect-uri",
            BILLING_REDIRECT,
            "--default-scope",
            "openid",
            "--skip-approval",
            "--allowed-connector",
            "local",
        ])
        .await;
    added.ok();
    let secret = secret_from(&added.stdout);
    assert!(secret.len() >= 43, "a high-entropy secret: {secret}");
    assert!(
        added.stdout.contains("cannot be shown again"),
        "{}",
        added.stdout
    );

    let listed = admin.run(&["clients", "list"]).await;
    listed.ok();
    assert!(!listed.stdout.contains(&secret), "{}", listed.stdout);
    let line = |id: &str| {
        listed
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{id} not listed:\n{}", listed.stdout))
            .to_string()
    };
    let billing = line("billing");
    assert!(billing.contains("database"), "{billing}");
    assert!(billing.contains("confidential"), "{billing}");
    assert!(billing.contains(BILLING_REDIRECT), "{billing}");
    assert!(line(KS_ID).contains("static"), "{}", line(KS_ID));
    assert!(!listed.stdout.contains(GRAFANA_SECRET), "{}", listed.stdout);

    // The running server sees the new client at once and accepts the printed secret.
    let browser = app.browser();
    let flow = browser
        .authorize(&billing_auth_url(&app), Some(&ALICE))
        .await;
    assert_eq!(flow.login_forms, 1);
    assert_eq!(flow.consents, 0, "--skip-approval");
    let code = flow.code();
    app.exchange(
        &code,
        BILLING_REDIRECT,
        None,
        ClientAuth::Basic("billing", "not-the-secret"),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    let code = browser
        .authorize(&billing_auth_url(&app), Some(&ALICE))
        .await
        .code();
    let resp = app
        .exchange(
            &code,
            BILLING_REDIRECT,
            None,
            ClientAuth::Basic("billing", &secret),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let tokens = resp.json();
    let (_, claims) = decode_jwt(tokens["access_token"].as_str().expect("access token"));
    assert_eq!(claims["client_id"], "billing");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let refreshed = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
            ClientAuth::Post("billing", &secret),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_clients_are_validated_removed_and_static_ones_refused() {
    let app = TestApp::spawn("").await;
    let admin = Admin::for_app(&app);

    let public = admin
        .run(&[
            "clients",
            "add",
            "--id",
            "desktop",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--redirect-uri",
            "com.example.desktop:/callback",
        ])
        .await;
    public.ok();
    assert!(
        !public.stdout.contains("client_secret"),
        "{}",
        public.stdout
    );

    let again = admin
        .run(&[
            "clients",
            "add",
            "--id",
            "desktop",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1/cb",
        ])
        .await;
    again.failed();
    assert!(again.stderr.contains("already exists"), "{again:#?}");

    let shadow = admin
        .run(&[
            "clients",
            "add",
            "--id",
            KS_ID,
            "--redirect-uri",
            "https://x.example.com/cb",
        ])
        .await;
    shadow.failed();
    assert!(shadow.stderr.contains("configuration file"), "{shadow:#?}");

    let bad = admin
        .run(&[
            "clients",
            "add",
            "--id",
            "bad",
            "--redirect-uri",
            "com.example.app:/cb",
            "--redirect-uri",
            "https://x.example.com/cb#fragment",
            "--allowed-connector",
            "nope",
        ])
        .await;
    bad.failed();
    for expected in ["public (native)", "fragment", "\"nope\""] {
        assert!(bad.stderr.contains(expected), "{expected}: {bad:#?}");
    }
    let none = admin.run(&["clients", "add", "--id", "bad"]).await;
    none.failed();
    assert!(none.stderr.contains("--redirect-uri"), "{none:#?}");

    let refused = admin.run(&["clients", "remove", "--id", KS_ID]).await;
    refused.failed();
    assert!(refused.stderr.contains("staticClients"), "{refused:#?}");

    admin
        .run(&["clients", "remove", "--id", "desktop"])
        .await
        .ok();
    let listed = admin.run(&["clients", "list"]).await;
    listed.ok();
    assert!(!listed.stdout.contains("desktop"), "{}", listed.stdout);
    assert!(!listed.stdout.contains("bad "), "{}", listed.stdout);
    let gone = admin.run(&["clients", "remove", "--id", "desktop"]).await;
    gone.failed();
    assert!(gone.stderr.contains("no client"), "{gone:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sessions_revoke_ends_single_sign_on_and_refresh_tokens() {
    let app = TestApp::spawn("").await;
    let admin = Admin::for_app(&app);

    let empty = admin.run(&["users", "list"]).await;
    empty.ok();
    assert!(empty.stdout.contains("no users"), "{}", empty.stdout);

    let browser = app.browser();
    let tokens = app.grafana_tokens(&browser, &ALICE).await;
    let refresh_token = tokens["refresh_token"].as_str().expect("refresh token");
    let access_token = tokens["access_token"].as_str().expect("access token");
    let (_, claims) = decode_jwt(access_token);
    let subject = claims["sub"].as_str().unwrap().to_string();

    let users = admin.run(&["users", "list"]).await;
    users.ok();
    let row = users
        .stdout
        .lines()
        .find(|l| l.starts_with(&subject))
        .unwrap_or_else(|| panic!("{subject} not listed:\n{}", users.stdout));
    for expected in [ALICE.login, ALICE.email, "local", " UTC"] {
        assert!(row.contains(expected), "{expected} in {row}");
    }

    // Single sign-on works before the revocation: no login form the second time.
    let grafana_auth = app.auth_url(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "s"),
    ]);
    let sso = browser.authorize(&grafana_auth, None).await;
    assert_eq!(sso.login_forms, 0, "{:?}", sso.end);
    sso.code();

    let revoked = admin
        .run(&["sessions", "revoke", "--user", ALICE.login])
        .await;
    revoked.ok();
    for expected in [
        "ended 1 browser session",
        "revoked 1 refresh token",
        "stay valid until they expire",
    ] {
        assert!(
            revoked.stdout.contains(expected),
            "{expected}: {revoked:#?}"
        );
    }
    // The running server learns of revocations by other processes at its next read of the
    // revocation counter (every `SYNC_INTERVAL`); allow for two reads.
    tokio::time::sleep(
        2 * idbridge::storage::memo::SYNC_INTERVAL + std::time::Duration::from_millis(50),
    )
    .await;

    let after = browser.authorize(&grafana_auth, None).await;
    assert_eq!(
        after.login_forms, 1,
        "the login form again: {:?}",
        after.end
    );
    app.token(
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
        ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    let introspected = app
        .introspect(access_token, ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET))
        .await;
    assert_eq!(introspected["active"], false, "{introspected}");

    // By subject, with nothing left to end.
    let by_sub = admin.run(&["sessions", "revoke", "--user", &subject]).await;
    by_sub.ok();
    assert!(
        by_sub.stdout.contains("ended 0 browser sessions"),
        "{by_sub:#?}"
    );
    let unknown = admin.run(&["sessions", "revoke", "--user", "nobody"]).await;
    unknown.failed();
    assert!(unknown.stderr.contains("nobody"), "{unknown:#?}");
}

async fn service_token(app: &TestApp) -> String {
    let resp = app
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "inventory.read"),
            ],
            ClientAuth::Basic(SERVICE_ID, SERVICE_SECRET),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    resp.json()["access_token"].as_str().unwrap().to_string()
}

async fn inspect(args: &[&str]) -> Run {
    let mut all = vec!["token".to_string(), "inspect".to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    idbridge(all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_inspect_explains_what_is_wrong() {
    let app = TestApp::spawn("expiry:\n  accessTokens: 1h\n  idTokens: 1h\n").await;
    let admin = Admin::for_app(&app);

    let valid = service_token(&app).await;
    let run = inspect(&[&valid, "--issuer", &app.issuer]).await;
    run.ok();
    assert!(
        run.stdout.contains("verdict: VALID access token"),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("\"client_id\": \"service\""),
        "{run:#?}"
    );
    assert!(run.stdout.contains("exp        "), "{run:#?}");
    // The issuer can come from the configuration file instead.
    admin.run(&["token", "inspect", &valid]).await.ok();

    // Issued three hours ago with a one-hour lifetime.
    app.clock.advance(-3 * 3600);
    let expired = service_token(&app).await;
    app.clock.advance(3 * 3600);
    let run = inspect(&[&expired, "--issuer", &app.issuer]).await;
    run.failed();
    assert!(
        run.stdout.contains("verdict: INVALID (1 problem)"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("expired 2h 0m"), "{run:#?}");

    let parts: Vec<&str> = valid.split('.').collect();
    let (_, mut claims) = decode_jwt(&valid);
    claims["scope"] = "billing.read billing.write".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    let run = inspect(&[&tampered, "--issuer", &app.issuer]).await;
    run.failed();
    assert!(run.stdout.contains("bad signature"), "{run:#?}");

    let other = TestApp::spawn("").await;
    let foreign = service_token(&other).await;
    let run = inspect(&[&foreign, "--issuer", &app.issuer]).await;
    run.failed();
    assert!(run.stdout.contains("unknown key"), "{run:#?}");
    assert!(run.stdout.contains("another issuer"), "{run:#?}");
    assert!(run.stdout.contains("wrong issuer"), "{run:#?}");

    let browser = app.browser();
    let tokens = app.grafana_tokens(&browser, &ALICE).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let run = inspect(&[id_token, "--issuer", &app.issuer]).await;
    run.failed();
    assert!(run.stdout.contains("this is an ID token"), "{run:#?}");
    inspect(&[
        id_token,
        "--issuer",
        &app.issuer,
        "--expect",
        "id",
        "--audience",
        GRAFANA_ID,
    ])
    .await
    .ok();

    let run = inspect(&["not-a-jwt", "--issuer", &app.issuer]).await;
    run.failed();
    assert!(run.stdout.contains("malformed"), "{run:#?}");

    // Nothing listens on port 1: the token is still decoded, but not vouched for.
    let run = inspect(&[&valid, "--issuer", "http://127.0.0.1:1"]).await;
    run.failed();
    assert!(run.stdout.contains("cannot fetch"), "{run:#?}");
    assert!(
        run.stdout.contains("\"client_id\": \"service\""),
        "{run:#?}"
    );
}

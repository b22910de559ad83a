//! Failures around the provider: the database restarting under traffic, a replica dying, and a
//! SQLite file that cannot be used at start.
//!
//! What users must see: JSON endpoints that need the database answer 503
//! `temporarily_unavailable` within a few seconds (never 500, never a hang), endpoints served
//! from memory (discovery, JWKS) keep answering, and the service recovers by itself, with
//! everything committed before the outage intact.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idbridge::clock::Clock;
use idbridge::config::Config;
use reqwest::StatusCode;
use tokio::net::TcpListener;

use super::replicas::{
    Browser, Replica, Resp, TestDatabase, api_client, free_port, get, postgres_server_url, redeem,
    refresh, replica_yaml, skip, userinfo,
};

/// The longest a request may take while the database is down before it is answered.
const FAIL_FAST: Duration = Duration::from_secs(6);

/// A refresh token of the right shape that no database holds: asking for it needs the database
/// and changes nothing in it, so it can be sent any number of times.
const UNKNOWN_REFRESH_TOKEN: &str = "unknownrefreshtokenid.unknownrefreshtokensecret";

// ---------------------------------------------------------------------------------------------
// A PostgreSQL server of the test's own, which it can stop and start again on the same port.

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn postgres_bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect("a PostgreSQL version with pg_ctl")
}

struct OwnPostgres {
    dir: PathBuf,
    url: String,
    port: u16,
    pg_ctl: PathBuf,
}

impl OwnPostgres {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-test-server")
    }

    fn start() -> OwnPostgres {
        // The server runs as the postgres user when the tests run as root: its directory must
        // not sit inside a private temporary directory of ours.
        let dir = std::env::temp_dir().join(format!(
            "idbridge-faults-pg-{}-{}",
            std::process::id(),
            Clock::system().now()
        ));
        let out = Command::new(Self::script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("run scripts/pg-test-server");
        assert!(
            out.status.success(),
            "scripts/pg-test-server start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let port = url::Url::parse(&url).unwrap().port().expect("port in URL");
        OwnPostgres {
            dir,
            url,
            port,
            pg_ctl: postgres_bindir().join("pg_ctl"),
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&self.pg_ctl);
            c
        } else {
            Command::new(&self.pg_ctl)
        };
        let out = cmd
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(args)
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fast shutdown: open sessions are ended, as in a restart or a fail-over.
    fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "-w", "stop"]);
    }

    fn start_again(&self) {
        let log = self.dir.join("server.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=400",
            self.port,
            self.dir.display()
        );
        self.pg_ctl(&[
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "30",
            "start",
            "-o",
            &options,
        ]);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// Traffic

/// One request of a traffic loop.
#[derive(Debug, Clone)]
struct Sample {
    target: &'static str,
    what: &'static str,
    at: Duration,
    elapsed: Duration,
    /// The status and the OAuth `error`, or the transport error.
    outcome: Result<(u16, Option<String>), String>,
}

type Samples = Arc<Mutex<Vec<Sample>>>;

#[derive(Clone, Copy, Debug)]
enum Probe {
    Discovery,
    Jwks,
    Userinfo,
    UnknownRefresh,
}

impl Probe {
    fn name(self) -> &'static str {
        match self {
            Probe::Discovery => "discovery",
            Probe::Jwks => "jwks",
            Probe::Userinfo => "userinfo",
            Probe::UnknownRefresh => "token",
        }
    }

    /// The answers allowed whether or not the database is up.
    fn acceptable(self, status: u16, error: Option<&str>) -> bool {
        match self {
            Probe::Discovery | Probe::Jwks => status == 200,
            Probe::Userinfo => {
                status == 200 || (status == 503 && error == Some("temporarily_unavailable"))
            }
            Probe::UnknownRefresh => {
                (status == 400 && error == Some("invalid_grant"))
                    || (status == 503 && error == Some("temporarily_unavailable"))
            }
        }
    }

    fn needs_database(self) -> bool {
        matches!(self, Probe::Userinfo | Probe::UnknownRefresh)
    }
}

/// Sends `probe` to `base` in a loop until `stop`, one request at a time.
fn spawn_probe(
    target: &'static str,
    base: String,
    probe: Probe,
    access_token: String,
    t0: Instant,
    stop: Arc<AtomicBool>,
    samples: Samples,
) -> tokio::task::JoinHandle<()> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let at = t0.elapsed();
            let started = Instant::now();
            let request = match probe {
                Probe::Discovery => http.get(format!("{base}/.well-known/openid-configuration")),
                Probe::Jwks => http.get(format!("{base}/keys")),
                Probe::Userinfo => http
                    .get(format!("{base}/userinfo"))
                    .bearer_auth(&access_token),
                Probe::UnknownRefresh => http
                    .post(format!("{base}/token"))
                    .basic_auth(
                        super::replicas::CLIENT_ID,
                        Some(super::replicas::CLIENT_SECRET),
                    )
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", UNKNOWN_REFRESH_TOKEN),
                    ]),
            };
            let outcome = match request.send().await {
                Ok(resp) => {
                    let r = Resp::read(resp).await;
                    let error = serde_json::from_str::<serde_json::Value>(&r.body)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_string));
                    Ok((r.status.as_u16(), error))
                }
                Err(e) => Err(e.to_string()),
            };
            samples.lock().unwrap().push(Sample {
                target,
                what: probe.name(),
                at,
                elapsed: started.elapsed(),
                outcome,
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn summarize(samples: &[Sample]) -> String {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<(&str, &str, String), (usize, Duration)> = BTreeMap::new();
    for s in samples {
        let outcome = match &s.outcome {
            Ok((status, Some(e))) => format!("{status} {e}"),
            Ok((status, None)) => status.to_string(),
            Err(_) => "transport error".to_string(),
        };
        let entry = by
            .entry((s.target, s.what, outcome))
            .or_insert((0, Duration::ZERO));
        entry.0 += 1;
        entry.1 = entry.1.max(s.elapsed);
    }
    by.iter()
        .map(|((t, w, o), (n, max))| format!("  {t} {w}: {o} x{n} (slowest {max:?})"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// (a) PostgreSQL restarted under traffic

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_under_traffic() {
    if postgres_server_url().is_none() {
        skip("faults::postgres_restart_under_traffic");
        return;
    }
    let pg = Arc::new(blocking(OwnPostgres::start).await);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}");
    let yaml = replica_yaml(&issuer, &addr.to_string(), &pg.url);
    let config = Config::from_yaml_str(&yaml).unwrap();
    let server = idbridge::app::spawn(config, listener, Clock::system())
        .await
        .expect("start the provider");
    let http = api_client();

    // State committed before the outage: a browser session, an unredeemed code, an unused
    // refresh token, an access token.
    let browser = Browser::new(&issuer);
    let first = browser.authorize(&issuer, "first", true).await;
    let tokens = redeem(&http, &issuer, &first.code()).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let tokens = tokens.json();
    let access_token = tokens["access_token"].as_str().unwrap().to_string();
    let spare_refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let pending = browser.authorize(&issuer, "pending", false).await;
    assert_eq!(pending.login_forms, 0, "SSO before the outage");
    let pending_code = pending.code();

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Samples = Arc::default();
    let probes: Vec<_> = [
        Probe::Discovery,
        Probe::Jwks,
        Probe::Userinfo,
        Probe::UnknownRefresh,
    ]
    .into_iter()
    .map(|p| {
        spawn_probe(
            "server",
            issuer.clone(),
            p,
            access_token.clone(),
            t0,
            stop.clone(),
            samples.clone(),
        )
    })
    .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopping = t0.elapsed();
    blocking({
        let pg = pg.clone();
        move || pg.stop()
    })
    .await;
    let down = t0.elapsed();
    println!("PostgreSQL stopped at {stopping:?} (down at {down:?})");

    // While it is down: single requests, each answered quickly and without side effects.
    let timed = Instant::now();
    let auth_down = super::replicas::auth_path("down");
    let readyz = format!("{issuer}/readyz");
    let (ready, redeem_down, refresh_down, page) = tokio::join!(
        get(&http, &readyz),
        redeem(&http, &issuer, &pending_code),
        refresh(&http, &issuer, &spare_refresh),
        browser.get(&issuer, &auth_down),
    );
    println!(
        "readyz, code, refresh and login page while down answered within {:?}",
        timed.elapsed()
    );
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    for (what, resp) in [("code", &redeem_down), ("refresh", &refresh_down)] {
        assert_eq!(
            resp.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what} while down: {}",
            resp.body
        );
        assert_eq!(resp.json()["error"], "temporarily_unavailable");
    }
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the login page while the database is down: {}",
        page.body
    );
    assert!(
        page.body.contains("<html"),
        "an HTML error page: {}",
        page.body
    );
    assert!(timed.elapsed() < FAIL_FAST, "{:?}", timed.elapsed());
    let remaining = Duration::from_secs(11).saturating_sub(t0.elapsed() - down);
    tokio::time::sleep(remaining).await;

    let starting = t0.elapsed();
    blocking({
        let pg = pg.clone();
        move || pg.start_again()
    })
    .await;
    let up = t0.elapsed();
    println!("PostgreSQL back at {up:?} (start began at {starting:?})");

    // Recovery without a restart: the probes see the database answer again.
    let recovered = loop {
        let done = {
            let all = samples.lock().unwrap();
            let ok = |what: &str, status: u16| {
                all.iter().any(|s| {
                    s.at > up && s.what == what && matches!(s.outcome, Ok((st, _)) if st == status)
                })
            };
            ok("userinfo", 200) && ok("token", 400)
        };
        if done {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() - up < Duration::from_secs(30),
            "no recovery 30 s after PostgreSQL came back:\n{}",
            summarize(&samples.lock().unwrap())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for p in probes {
        p.await.unwrap();
    }
    let samples = samples.lock().unwrap().clone();
    println!(
        "recovered {:?} after PostgreSQL came back; traffic:\n{}",
        recovered - up,
        summarize(&samples)
    );

    for s in &samples {
        let probe = match s.what {
            "discovery" => Probe::Discovery,
            "jwks" => Probe::Jwks,
            "userinfo" => Probe::Userinfo,
            _ => Probe::UnknownRefresh,
        };
        match &s.outcome {
            Ok((status, error)) => assert!(
                probe.acceptable(*status, error.as_deref()),
                "{} at {:?} answered {status} {error:?}",
                s.what,
                s.at
            ),
            Err(e) => panic!("{} at {:?} failed: {e}", s.what, s.at),
        }
        assert!(
            s.elapsed < FAIL_FAST,
            "{} at {:?} took {:?}",
            s.what,
            s.at,
            s.elapsed
        );
        // A request that started after the server had stopped and finished before it was
        // back can only have been refused. Userinfo may still be answered from memory for
        // up to half a second after the bridge's last read of the revocation counter
        // (`storage::memo::SYNC_VALID`), so that grace is left out.
        let from_memory = matches!(probe, Probe::Userinfo)
            && s.at < down + idbridge::storage::memo::SYNC_VALID + Duration::from_millis(500);
        if probe.needs_database() && s.at > down && s.at + s.elapsed < starting && !from_memory {
            assert!(
                matches!(s.outcome, Ok((503, _))),
                "{} during the outage: {:?}",
                s.what,
                s.outcome
            );
        }
    }
    let during = |what: &str| {
        samples
            .iter()
            .filter(|s| s.what == what && s.at > down && s.at < starting)
            .count()
    };
    for what in ["discovery", "jwks", "userinfo", "token"] {
        assert!(
            during(what) >= 3,
            "too few {what} requests during the outage:\n{}",
            summarize(&samples)
        );
    }

    // Everything committed before the outage still works.
    let ready = get(&http, &format!("{issuer}/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let redeemed = redeem(&http, &issuer, &pending_code).await;
    assert_eq!(
        redeemed.status,
        StatusCode::OK,
        "the code issued before the outage: {}",
        redeemed.body
    );
    let refreshed = refresh(&http, &issuer, &spare_refresh).await;
    assert_eq!(
        refreshed.status,
        StatusCode::OK,
        "the refresh token issued before the outage: {}",
        refreshed.body
    );
    let sso = browser.authorize(&issuer, "after", false).await;
    assert_eq!(sso.login_forms, 0, "the session made before the outage");
    let after = redeem(&http, &issuer, &sso.code()).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
    let info = userinfo(&http, &issuer, &access_token).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);

    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// (b) One replica killed mid-traffic

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_replica_leaves_the_other_serving() {
    let Some(server_url) = postgres_server_url() else {
        skip("faults::killed_replica_leaves_the_other_serving");
        return;
    };
    let db = TestDatabase::create(&server_url).await;
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{port_a}");
    let http = api_client();
    let mut a = Replica::start(
        "a",
        dir.path(),
        port_a,
        &replica_yaml(&issuer, &format!("127.0.0.1:{port_a}"), &db.url),
    );
    let mut b = Replica::start(
        "b",
        dir.path(),
        port_b,
        &replica_yaml(&issuer, &format!("127.0.0.1:{port_b}"), &db.url),
    );
    a.wait_ready(&http, Duration::from_secs(60)).await;
    b.wait_ready(&http, Duration::from_secs(60)).await;
    let (a_url, b_url) = (a.base.clone(), b.base.clone());

    // Everything the user has was made on B.
    let browser = Browser::new(&issuer);
    let login = browser.authorize(&b_url, "on-b", true).await;
    let tokens = redeem(&http, &b_url, &login.code()).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let tokens = tokens.json();
    let access_token = tokens["access_token"].as_str().unwrap().to_string();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Samples = Arc::default();
    let mut probes = Vec::new();
    for (target, base) in [("a", &a_url), ("b", &b_url)] {
        for p in [Probe::Discovery, Probe::Userinfo, Probe::UnknownRefresh] {
            probes.push(spawn_probe(
                target,
                base.clone(),
                p,
                access_token.clone(),
                t0,
                stop.clone(),
                samples.clone(),
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed = t0.elapsed();
    blocking(move || b.kill()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    for p in probes {
        p.await.unwrap();
    }
    let samples = samples.lock().unwrap().clone();
    println!("B killed at {killed:?}; traffic:\n{}", summarize(&samples));

    for s in samples.iter().filter(|s| s.target == "a") {
        let probe = match s.what {
            "discovery" => Probe::Discovery,
            "userinfo" => Probe::Userinfo,
            _ => Probe::UnknownRefresh,
        };
        match &s.outcome {
            // The database is up: nothing may be refused for it.
            Ok((status, error)) => assert!(
                probe.acceptable(*status, error.as_deref()) && *status != 503,
                "A's {} at {:?} answered {status} {error:?}",
                s.what,
                s.at
            ),
            Err(e) => panic!("A's {} at {:?} failed: {e}", s.what, s.at),
        }
    }
    let a_after = samples
        .iter()
        .filter(|s| s.target == "a" && s.at > killed)
        .count();
    assert!(a_after >= 10, "A kept serving after B died: {a_after}");
    let b_after_failed = samples
        .iter()
        .filter(|s| s.target == "b" && s.at > killed + Duration::from_millis(200))
        .all(|s| s.outcome.is_err());
    assert!(b_after_failed, "B is gone");

    // A takes over B's users without anything being lost.
    let refreshed = refresh(&http, &a_url, &refresh_token).await;
    assert_eq!(
        refreshed.status,
        StatusCode::OK,
        "B's refresh token at A: {}",
        refreshed.body
    );
    let sso = browser.authorize(&a_url, "on-a", false).await;
    assert_eq!(sso.login_forms, 0, "B's session at A");
    let tokens = redeem(&http, &a_url, &sso.code()).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);

    drop(a);
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// (c) A SQLite database that cannot be used at start

/// A directory everyone may enter, so the binary can also run as an unprivileged user.
fn open_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn sqlite_yaml(db: &Path) -> String {
    format!(
        r#"issuer: http://127.0.0.1:5556
storage:
  type: sqlite
  config:
    file: "{}"
web:
  http: 127.0.0.1:{}
logger:
  level: info
connectors:
  - type: local
    id: local
    name: Email
staticClients:
  - id: portal
    secret: portal-secret
    redirectURIs: [https://portal.example.com/cb]
"#,
        db.display(),
        free_port()
    )
}

struct Failed {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
}

/// Runs `idbridge serve` on a SQLite file and expects it to give up. `unprivileged` runs it as
/// `nobody` when the tests run as root, whom file permissions do not stop.
fn serve_sqlite(dir: &Path, db: &Path, unprivileged: bool) -> Option<Failed> {
    let config = dir.join("idbridge.yaml");
    std::fs::write(&config, sqlite_yaml(db)).unwrap();
    let bin = env!("CARGO_BIN_EXE_idbridge");
    let mut cmd = if unprivileged && is_root() {
        // The binary may sit where `nobody` cannot reach it; then this case cannot be shown.
        let probe = Command::new("runuser")
            .args(["-u", "nobody", "--", bin, "--version"])
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            println!("SKIP: cannot run {bin} as nobody, so file permissions cannot be tested");
            return None;
        }
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", bin]);
        c
    } else {
        Command::new(bin)
    };
    let started = Instant::now();
    let mut child = cmd
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A server that did start would run forever.
    let limit = Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "idbridge serve did not stop within {limit:?} on {}:\n{}",
                db.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    Some(Failed {
        code: out.status.code(),
        stderr: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        elapsed: started.elapsed(),
    })
}

fn assert_clear_failure(failed: &Failed, db: &Path, reason: &str) {
    println!(
        "exit {:?} after {:?}:\n{}",
        failed.code, failed.elapsed, failed.stderr
    );
    assert_eq!(failed.code, Some(1), "exit status: {}", failed.stderr);
    let line = failed
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line on stderr:\n{}", failed.stderr));
    assert!(
        line.contains(&db.display().to_string()),
        "the message names the file {}: {line}",
        db.display()
    );
    assert!(line.contains(reason), "the message says {reason:?}: {line}");
}

#[tokio::test]
async fn sqlite_file_locked_by_another_process() {
    let dir = open_dir();
    let db = dir.path().join("idbridge.db");
    // Another program holds an exclusive lock on the file (rollback journal, so readers are
    // shut out too) for as long as the server tries to open it.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true);
    let mut holder = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    use sqlx::Connection;
    sqlx::query("CREATE TABLE held (x INTEGER)")
        .execute(&mut holder)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    let failed = blocking({
        let (d, f) = (dir.path().to_path_buf(), db.clone());
        move || serve_sqlite(&d, &f, false)
    })
    .await
    .unwrap();
    assert_clear_failure(&failed, &db, "locked");
    assert!(
        failed.elapsed < Duration::from_secs(20),
        "{:?}",
        failed.elapsed
    );
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
}

#[tokio::test]
async fn sqlite_file_unreadable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = open_dir();
    let db = dir.path().join("idbridge.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o000)).unwrap();
    let Some(failed) = blocking({
        let (d, f) = (dir.path().to_path_buf(), db.clone());
        move || serve_sqlite(&d, &f, true)
    })
    .await
    else {
        return;
    };
    assert_clear_failure(&failed, &db, "cannot open the file");
}

#[tokio::test]
async fn sqlite_directory_not_writable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = open_dir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    let db = data.join("idbridge.db");
    let Some(failed) = blocking({
        let (d, f) = (dir.path().to_path_buf(), db.clone());
        move || serve_sqlite(&d, &f, true)
    })
    .await
    else {
        return;
    };
    assert_clear_failure(&failed, &db, "cannot open the file");
}

#[tokio::test]
async fn sqlite_file_not_a_database() {
    let dir = open_dir();
    let db = dir.path().join("idbridge.db");
    std::fs::write(
        &db,
        "issuer: this is a YAML file, not a database\n".repeat(200),
    )
    .unwrap();
    let failed = blocking({
        let (d, f) = (dir.path().to_path_buf(), db.clone());
        move || serve_sqlite(&d, &f, false)
    })
    .await
    .unwrap();
    assert_clear_failure(&failed, &db, "not a SQLite database");
}

#[tokio::test]
async fn postgres_unreachable_at_start() {
    let dir = open_dir();
    let config = dir.path().join("idbridge.yaml");
    // Nothing listens on this port: connections are refused, as while a database restarts.
    let url = format!(
        "postgres://idbridge:do-not-print-me@127.0.0.1:{}/idbridge",
        free_port()
    );
    std::fs::write(
        &config,
        replica_yaml(
            "http://127.0.0.1:5556",
            &format!("127.0.0.1:{}", free_port()),
            &url,
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_idbridge"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await;
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    println!("exit {:?} after {elapsed:?}:\n{stderr}", out.status.code());
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line:\n{stderr}"));
    assert!(line.contains("127.0.0.1"), "names the database: {line}");
    assert!(
        !stderr.contains("do-not-print-me"),
        "the password leaked: {stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "gave up after {elapsed:?}"
    );
}

//! The `idbridge` binary as an operator runs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_idbridge");

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("IDBRIDGE_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run idbridge")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_is_printed() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("idbridge {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_accepts_the_shipped_configurations_and_prints_endpoints() {
    for (file, issuer) in [
        ("config/dev.yaml", "http://127.0.0.1:5556"),
        ("config/example.yaml", "https://sso.example.com"),
    ] {
        let path = repo_file(file);
        let out = run(&["check-config", "--config", path.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: exit {:?}\n{stdout}\n{}",
            out.status.code(),
            text(&out.stderr)
        );
        assert!(stdout.contains("configuration is valid"), "{stdout}");
        for endpoint in [
            "/.well-known/openid-configuration",
            "/auth",
            "/token",
            "/keys",
            "/userinfo",
            "/logout",
        ] {
            assert!(
                stdout.contains(&format!("{issuer}{endpoint}")),
                "{file}: {endpoint} missing from\n{stdout}"
            );
        }
    }
}

#[test]
fn check_config_prints_the_callback_each_connector_registers_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors.yaml");
    std::fs::write(
        &path,
        format!(
            "issuer: https://sso.example.com/dex\n\
             storage: {{type: sqlite3, config: {{file: {}}}}}\n\
             connectors:\n\
             \x20 - {{type: dingtalk, id: plain, name: Plain, config: {{clientID: a, clientSecret: b}}}}\n\
             \x20 - {{type: dingtalk, id: proxied, name: Proxied, config: {{clientID: a, clientSecret: b, \
             redirectURI: 'https://edge.example.com/sso/callback'}}}}\n",
            dir.path().join("db.sqlite3").display()
        ),
    )
    .unwrap();
    let out = run(&["check-config", "--config", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let callback_of = |id: &str| {
        let at = stdout.find(&format!("  {id} (type dingtalk")).expect(id);
        stdout[at..]
            .lines()
            .find_map(|l| l.trim().strip_prefix("callback URL to register upstream: "))
            .map(str::to_string)
    };
    assert_eq!(
        callback_of("plain").as_deref(),
        Some("https://sso.example.com/dex/callback")
    );
    assert_eq!(
        callback_of("proxied").as_deref(),
        Some("https://edge.example.com/sso/callback")
    );
}

#[test]
fn check_config_names_an_unknown_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "issuer: http://127.0.0.1:5556\n\
         staticClients:\n\
         \x20 - id: app\n\
         \x20   secret: s\n\
         \x20   redirectUris: [http://127.0.0.1:5555/cb]\n",
    )
    .unwrap();
    let out = run(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("staticClients[0].redirectUris"),
        "the key path is named: {stderr}"
    );

    // A file that does not exist is a configuration error too.
    let out = run(&["check-config", "--config", "/nonexistent/idbridge.yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn hash_password_reads_stdin_and_prints_a_verifiable_argon2id_hash() {
    let password = "p@ss w0rd$with spaces";
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let hash = text(&out.stdout).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "only the hash on stdout"
    );
    assert!(idbridge::connectors::local::verify_password(
        password, &hash
    ));
    assert!(!idbridge::connectors::local::verify_password(
        "p@ss w0rd",
        &hash
    ));

    // An empty password is refused.
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_a_real_process_that_answers_discovery() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("idbridge.yaml");
    let issuer = format!("http://127.0.0.1:{port}");
    std::fs::write(
        &config,
        format!(
            "issuer: {issuer}\n\
             storage:\n  type: sqlite\n  config:\n    file: \"{db}\"\n\
             web:\n  http: 127.0.0.1:{port}\n\
             logger:\n  level: warn\n\
             staticClients:\n\
             \x20 - id: app\n    secret: app-secret\n    redirectURIs: [http://127.0.0.1:5555/cb]\n",
            db = dir.path().join("db.sqlite").display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn idbridge serve");
    let mut server = Running(child);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = http.get(format!("{issuer}/readyz")).send().await
            && resp.status().is_success()
        {
            break;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            let mut stderr = String::new();
            if let Some(mut e) = server.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            panic!("idbridge serve exited early with {status}: {stderr}");
        }
        assert!(
            Instant::now() < deadline,
            "idbridge serve never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let doc: serde_json::Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["token_endpoint"], format!("{issuer}/token"));
    let jwks: serde_json::Value = http
        .get(format!("{issuer}/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!jwks["keys"].as_array().unwrap().is_empty());
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_https_with_the_configured_certificate() {
    let free_port = || {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let (port, plain_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        // webpki refuses a CA certificate as a server certificate.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success(), "openssl could not make a test certificate");
    let issuer = format!("https://127.0.0.1:{port}");
    let config = dir.path().join("idbridge.yaml");
    std::fs::write(
        &config,
        format!(
            "issuer: {issuer}\n\
             storage:\n  type: sqlite\n  config:\n    file: \"{db}\"\n\
             web:\n  https: 127.0.0.1:{port}\n  http: 127.0.0.1:{plain_port}\n  tlsCert: \"{cert}\"\n  tlsKey: \"{key}\"\n\
             logger:\n  level: warn\n",
            db = dir.path().join("db.sqlite").display(),
            cert = cert.display(),
            key = key.display(),
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn idbridge serve");
    let mut server = Running(child);
    let pem = std::fs::read(&cert).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let doc: serde_json::Value = loop {
        if let Ok(resp) = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            && resp.status().is_success()
        {
            break resp.json().await.unwrap();
        }
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "idbridge serve exited"
        );
        if Instant::now() >= deadline {
            let err = http
                .get(format!("{issuer}/healthz"))
                .send()
                .await
                .err()
                .map(|e| format!("{e:?}"));
            panic!("https never answered: {err:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(doc["issuer"], issuer);
    // HSTS on an https issuer; the session cookie is Secure.
    let resp = http.get(format!("{issuer}/keys")).send().await.unwrap();
    assert!(resp.headers().contains_key("strict-transport-security"));
    // The plain listener beside it serves the same provider (for probes behind a proxy).
    let plain = reqwest::get(format!("http://127.0.0.1:{plain_port}/healthz"))
        .await
        .unwrap();
    assert!(plain.status().is_success());
    drop(server);
}

//! The attack suite: requests an attacker would send, grouped by family, each refused with the
//! exact error (and status) that RFC 6749, RFC 6750, RFC 7636, RFC 9207, RFC 9700, RFC 6819
//! and OpenID Connect Core call for. The harness fails any test whose request gets a 5xx.
//!
//! | family          | what the attacker tries                                             |
//! | --------------- | ------------------------------------------------------------------- |
//! | `client_auth`   | guessing or confusing client credentials                            |
//! | `code`          | injecting, replaying or stealing authorization codes                |
//! | `csrf`          | forging the login, consent, device and logout forms                 |
//! | `impersonation` | upstream names built to pass for a privileged account               |
//! | `injection`     | SQL, HTML, CRLF, NUL and oversized text in every parameter          |
//! | `malformed`     | requests that break the protocol's shape rules                      |
//! | `mixup`         | confusing one issuer with another (RFC 9207)                        |
//! | `open_redirect` | using the provider to send a browser somewhere unregistered         |
//! | `pkce`          | downgrading or bypassing PKCE                                       |
//! | `redirect_uri`  | redirect URIs that look registered but are not                      |
//! | `refresh`       | reusing or transferring refresh tokens                              |
//! | `state_nonce`   | tampering with the values a client uses to bind its request         |
//! | `tokens`        | forged, altered, expired or foreign tokens at userinfo/introspection|

mod client_auth;
mod code;
mod csrf;
mod impersonation;
mod injection;
mod malformed;
mod mixup;
mod open_redirect;
mod pkce;
mod redirect_uri;
mod refresh;
mod state_nonce;
mod tokens;

use std::collections::HashMap;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair};
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{
    ALICE, ClientAuth, GRAFANA_ID, GRAFANA_REDIRECT, GRAFANA_SECRET, Resp, TestApp, b64url,
    decode_jwt,
};

pub const GRAFANA: ClientAuth<'static> = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);

pub fn grafana_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "neg-state"),
    ]
}

/// Replaces (or adds, or with `None` removes) parameters of the Grafana request.
pub fn grafana_url(app: &TestApp, changes: &[(&'static str, Option<&str>)]) -> String {
    let mut params: Vec<(String, String)> = grafana_params()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in changes {
        params.retain(|(name, _)| name != k);
        if let Some(v) = v {
            params.push((k.to_string(), v.to_string()));
        }
    }
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    app.auth_url(&pairs)
}

/// An error page: 400, no redirect anywhere.
pub fn assert_error_page(resp: &Resp, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::BAD_REQUEST,
        "{what}: expected an error page, got {}: {}",
        resp.status,
        resp.body
    );
    assert!(
        resp.header("location").is_none(),
        "{what}: an error page must not redirect"
    );
    assert!(
        resp.header("content-type")
            .unwrap_or("")
            .starts_with("text/html")
    );
}

/// An error sent back to the (trusted) redirect URI with state and iss.
pub fn assert_error_redirect(app: &TestApp, resp: &Resp, redirect: &str, code: &str) {
    assert_eq!(
        resp.status,
        StatusCode::SEE_OTHER,
        "expected a redirect with {code}, got {}: {}",
        resp.status,
        resp.body
    );
    let loc = resp.location().unwrap();
    assert!(
        loc.as_str().starts_with(&format!("{redirect}?")),
        "{loc} does not go to {redirect}"
    );
    let q = query_of(resp);
    assert_eq!(q.get("error").map(String::as_str), Some(code), "{loc}");
    assert_eq!(q.get("iss").map(String::as_str), Some(app.issuer.as_str()));
    assert!(!q.contains_key("code"));
}

/// The query parameters of a redirect.
pub fn query_of(resp: &Resp) -> HashMap<String, String> {
    resp.location()
        .expect("a Location header")
        .query_pairs()
        .into_owned()
        .collect()
}

/// The first hop of an authorization request in a fresh browser.
pub async fn auth(app: &TestApp, url: &str) -> Resp {
    app.browser().get(url).await
}

/// RFC 6750 3.1: 401, `invalid_token` in the body and in the Bearer challenge.
pub fn assert_invalid_token(resp: &Resp, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        resp.body
    );
    assert_eq!(resp.json()["error"], "invalid_token", "{what}");
    let challenge = resp.header("www-authenticate").unwrap_or("");
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
}

/// A valid access token and ID token for Alice at Grafana.
pub async fn alice_tokens(app: &TestApp) -> (String, String) {
    let tokens = app.grafana_tokens(&app.browser(), &ALICE).await;
    (
        tokens["access_token"].as_str().unwrap().to_string(),
        tokens["id_token"].as_str().unwrap().to_string(),
    )
}

/// Re-signs `token`'s claims with a new header and signature.
pub fn forge(token: &str, header: Value, signature: &[u8]) -> String {
    let claims_part = token.split('.').nth(1).unwrap();
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        claims_part,
        b64url(signature)
    )
}

/// Signs raw header and claims JSON text (kept byte for byte, so duplicate keys survive) with
/// the server's own stored private key `kid`, read from its database. This is what only the
/// provider can do: it shows which checks hold even for a correctly signed token.
pub async fn sign_as_server(
    app: &TestApp,
    kid: &str,
    header_json: &str,
    claims_json: &str,
) -> String {
    let keys = app
        .storage()
        .list_signing_keys()
        .await
        .expect("signing keys");
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .unwrap_or_else(|| panic!("no stored key {kid}"));
    let input = format!(
        "{}.{}",
        b64url(header_json.as_bytes()),
        b64url(claims_json.as_bytes())
    );
    let rng = SystemRandom::new();
    let sig = match key.alg.as_str() {
        "RS256" => {
            let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(&key.private_der).expect("RSA key");
            let mut sig = vec![0u8; kp.public_modulus_len()];
            kp.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                input.as_bytes(),
                &mut sig,
            )
            .expect("sign");
            sig
        }
        "ES256" => EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.private_der,
        )
        .expect("P-256 key")
        .sign(&rng, input.as_bytes())
        .expect("sign")
        .as_ref()
        .to_vec(),
        "EdDSA" => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&key.private_der)
            .expect("Ed25519 key")
            .sign(input.as_bytes())
            .as_ref()
            .to_vec(),
        other => panic!("unknown algorithm {other}"),
    };
    format!("{input}.{}", b64url(&sig))
}

/// The `kid` and `alg` a token was signed with.
pub fn kid_and_alg(token: &str) -> (String, String) {
    let (header, _) = decode_jwt(token);
    (
        header["kid"].as_str().expect("kid").to_string(),
        header["alg"].as_str().expect("alg").to_string(),
    )
}

/// Runs the futures concurrently on the test's runtime and collects their outputs in order.
pub async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future,
{
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("finished")).collect()
}

/// The end of a sign-in through an upstream: the redirect back to Grafana, or the page the
/// browser stopped at.
pub enum UpstreamEnd {
    Code(String),
    Page(StatusCode, String),
}

/// Drives a fresh browser from a Grafana authorization request through `connector` and the
/// upstream at `upstream_url` (both on 127.0.0.1). With `pause`, calls it once before the
/// browser comes back to the provider's `/callback`, so a test can change things mid-login.
pub async fn upstream_run(
    app: &TestApp,
    upstream_url: &str,
    connector: &str,
    scope: &str,
    pause: Option<&(dyn Fn() + Sync)>,
) -> UpstreamEnd {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let mut url = url::Url::parse(&app.auth_url(&[
        ("client_id", GRAFANA_ID),
        ("redirect_uri", GRAFANA_REDIRECT),
        ("response_type", "code"),
        ("scope", scope),
        ("state", "upstream-state"),
        ("connector_id", connector),
    ]))
    .unwrap();
    let mut paused = false;
    for _ in 0..12 {
        let resp = browser.get(url.clone()).send().await.expect("GET");
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| url.join(l).expect("Location"));
        let body = resp.text().await.unwrap();
        let Some(next) = location.filter(|_| status.is_redirection()) else {
            return UpstreamEnd::Page(status, body);
        };
        if next.as_str().starts_with(GRAFANA_REDIRECT) {
            let q: HashMap<String, String> = next.query_pairs().into_owned().collect();
            assert_eq!(q.get("state").map(String::as_str), Some("upstream-state"));
            return match q.get("code") {
                Some(code) => UpstreamEnd::Code(code.clone()),
                None => UpstreamEnd::Page(status, next.to_string()),
            };
        }
        assert!(
            next.as_str().starts_with(&app.base) || next.as_str().starts_with(upstream_url),
            "sent away to {next}"
        );
        if let Some(pause) = pause
            && !paused
            && next.as_str().starts_with(&format!("{}/callback", app.base))
        {
            paused = true;
            pause();
        }
        url = next;
    }
    panic!("too many redirects");
}

/// A whole Grafana sign-in through an upstream and the code exchange: the token response.
pub async fn upstream_login(
    app: &TestApp,
    upstream_url: &str,
    connector: &str,
    scope: &str,
) -> Value {
    let code = match upstream_run(app, upstream_url, connector, scope, None).await {
        UpstreamEnd::Code(code) => code,
        UpstreamEnd::Page(status, body) => panic!("the sign-in stopped with {status}: {body}"),
    };
    let resp = app.exchange(&code, GRAFANA_REDIRECT, None, GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    resp.json()
}

/// Restarts `app` with its configuration changed by `edit` (same port, issuer and database).
pub async fn reconfigure(app: &mut TestApp, edit: impl Fn(&str) -> String) {
    let edited = edit(&app.yaml);
    assert_ne!(edited, app.yaml, "the edit changed nothing");
    app.yaml = edited;
    app.restart().await;
}

/// Where the default test configuration declares its one (local) connector: replace this to
/// put other connectors in front of it.
pub const LOCAL_CONNECTOR: &str = "connectors:\n  - type: local\n";

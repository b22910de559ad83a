//! Upstream names built to impersonate a privileged account (RFC 6819 5.1.4.2, OpenID Connect
//! Core 5.7): KubeSphere signs a user whose `preferred_username` equals an existing account in
//! as that account, so `admin` and everything that renders like it must never be emitted.

use std::collections::HashSet;

use idbridge::connectors::Identity;
use idbridge::oidc::subject::{is_reserved, username_candidates};

use super::{LOCAL_CONNECTOR, reconfigure};
use crate::dingtalk_sim::{APP_KEY, APP_SECRET, DingTalkSim, SimUser};
use crate::harness::{BOB, TestApp, TestUser, decode_jwt};

/// Names that are, or render like, reserved accounts.
const IMPOSTORS: &[&str] = &[
    "admin",
    "Admin",
    "ADMIN",
    "аdmin",         // Cyrillic а
    "аdmіn",         // Cyrillic а and і
    "admin\u{200b}", // zero-width space
    "ad\u{00ad}min", // soft hyphen
    "\u{202e}nimda", // right-to-left override
    "admin\u{2028}", // line separator
    "a\u{0000}dmin", // NUL
    "ａｄｍｉｎ",    // fullwidth
    "𝐚𝐝𝐦𝐢𝐧",         // mathematical bold
    "admın",         // dotless i
    "_admin_",
    "admin.",
    "-admin-",
    " admin ",
    "Root",
    "ʀoot",
    "system:masters",
    "System-Admin",
    "kubesphere",
    "KubeSphere-Admin",
];

fn reserved() -> Vec<String> {
    ["admin", "root", "system*", "kubesphere*"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn is_rfc1123(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[test]
fn look_alike_names_never_become_a_reserved_username() {
    let reserved = reserved();
    let templates = idbridge::config::default_username_templates();
    for name in IMPOSTORS {
        // The name as username, display name and email local part at once.
        let identity = Identity {
            upstream_id: format!("upstream-{name}"),
            username: Some(name.to_string()),
            display_name: Some(name.to_string()),
            email: Some(format!("{name}@corp.example.com")),
            ..Identity::default()
        };
        let candidates = username_candidates(&identity, &templates, "abcdefghijklmnop", &reserved);
        assert!(!candidates.is_empty(), "{name:?}: no fallback username");
        for c in &candidates {
            assert!(!is_reserved(c, &reserved), "{name:?} -> {c:?}");
            assert!(is_rfc1123(c), "{name:?} -> {c:?}");
            assert!(
                !c.contains("admin") || c.starts_with("user-"),
                "{name:?} -> {c:?}"
            );
        }
        assert!(
            !candidates.iter().any(|c| c == "admin" || c == "root"),
            "{name:?}"
        );
    }
    // Similar but distinct names stay usable.
    for fine in ["administrator", "badmin", "rooted", "sys"] {
        assert!(!is_reserved(fine, &reserved), "{fine}");
    }
}

/// The test provider with a DingTalk connector (pointed at `sim`) next to the local one.
async fn dingtalk_app(sim: &DingTalkSim) -> TestApp {
    // Grafana skips the consent screen.
    let mut app = TestApp::builder().spawn().await;
    let block = format!(
        "connectors:\n  - type: dingtalk\n    id: dingtalk\n    name: DingTalk\n    config:\n      clientID: {APP_KEY}\n      clientSecret: \"{APP_SECRET}\"\n      loginURL: {url}\n      apiURL: {url}\n      oapiURL: {url}\n  - type: local\n",
        url = sim.url
    );
    reconfigure(&mut app, |y| y.replacen(LOCAL_CONNECTOR, &block, 1)).await;
    app
}

/// A Grafana login through DingTalk as the simulator's current user: the ID token claims.
async fn dingtalk_login(app: &TestApp, sim: &DingTalkSim) -> serde_json::Value {
    let tokens = super::upstream_login(app, &sim.url, "dingtalk", "openid profile email").await;
    decode_jwt(tokens["id_token"].as_str().unwrap()).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalk_nicks_built_to_impersonate_never_become_admin() {
    let sim = DingTalkSim::start().await;
    let app = dingtalk_app(&sim).await;
    let nicks = [
        "admin",
        "Admin",
        "аdmin",
        "admin\u{200b}",
        "ａｄｍｉｎ",
        "root",
    ];
    let mut seen = HashSet::new();
    for (i, nick) in nicks.iter().enumerate() {
        let union_id = format!("union-impostor-{i:04}");
        sim.add_user(SimUser::employee(
            &union_id,
            nick,
            &format!("01390{i:02}"),
            &[2],
        ));
        sim.login_as(&union_id);
        let claims = dingtalk_login(&app, &sim).await;
        let username = claims["preferred_username"].as_str().unwrap().to_string();
        assert!(
            !is_reserved(&username, &reserved()),
            "{nick:?} -> {username:?}"
        );
        assert!(is_rfc1123(&username), "{nick:?} -> {username:?}");
        assert!(
            seen.insert(username.clone()),
            "{nick:?} -> {username:?} twice"
        );
        // The display name is shown as it is: it is not an identifier.
        assert_eq!(claims["name"].as_str(), Some(*nick), "{nick:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_static_usernames_are_refused_by_the_configuration() {
    let app = TestApp::spawn("").await;
    for name in [
        "admin",
        "Admin",
        "ROOT",
        "system:masters",
        "kubesphere-admin",
    ] {
        let yaml = app
            .yaml
            .replacen("username: bob", &format!("username: \"{name}\""), 1);
        let err = idbridge::config::Config::from_yaml_str(&yaml)
            .err()
            .unwrap_or_else(|| panic!("{name:?} was accepted as a static username"))
            .to_string();
        assert!(
            err.contains("staticPasswords[1].username"),
            "{name:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_look_alike_of_admin_signs_in_under_another_name() {
    // The configuration is trusted, but a look-alike that slips through it (the check there
    // compares lowercase text only) still never reaches a relying party as `admin`.
    let mut app = TestApp::spawn("").await;
    const CYRILLIC: TestUser = TestUser {
        login: "аdmin",
        ..BOB
    };
    reconfigure(&mut app, |y| {
        y.replacen("username: bob", "username: \"аdmin\"", 1)
    })
    .await;
    let tokens = app.grafana_tokens(&app.browser(), &CYRILLIC).await;
    let (_, claims) = decode_jwt(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        claims["preferred_username"], "bob",
        "the email's local part is next in line"
    );
}

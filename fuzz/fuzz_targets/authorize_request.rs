//! An authorization request as a browser sends it: any query string, validated for one of a
//! confidential client, a public client, or no known client.
//!
//! Properties: validation never panics; a request it accepts or redirects with an error names
//! a registered redirect URI (no open redirect); a public client never gets past validation
//! without an S256 challenge; only supported scopes are granted.

#![no_main]

use std::sync::{Arc, OnceLock};

use idbridge::oidc::authorize::{AuthorizeError, SUPPORTED_SCOPES, is_pkce_value, validate};
use idbridge::oidc::clients::{GRANT_AUTHORIZATION_CODE, RegisteredClient};
use idbridge::oidc::params::Params;
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_700_000_000;

fn client(id: &str, public: bool, redirect_uris: &[&str]) -> Arc<RegisteredClient> {
    Arc::new(RegisteredClient {
        id: id.into(),
        name: id.into(),
        secret_hash: (!public).then(|| "hash".to_string()),
        redirect_uris: redirect_uris.iter().map(|s| s.to_string()).collect(),
        post_logout_redirect_uris: vec![],
        public,
        default_scopes: if public {
            vec![]
        } else {
            vec!["openid".into(), "profile".into()]
        },
        skip_approval: false,
        allowed_connectors: if public { vec!["local".into()] } else { vec![] },
        backchannel_logout_uri: None,
        grant_types: vec![GRANT_AUTHORIZATION_CODE.into()],
        allowed_scopes: vec![],
        audience: vec![],
    })
}

fn clients() -> &'static [Arc<RegisteredClient>; 2] {
    static CLIENTS: OnceLock<[Arc<RegisteredClient>; 2]> = OnceLock::new();
    CLIENTS.get_or_init(|| {
        [
            client("app", false, &["https://app.example.com/cb"]),
            client(
                "cli",
                true,
                &["http://127.0.0.1/callback", "http://localhost:8000"],
            ),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let Ok(params) = Params::parse(&text) else {
        return;
    };
    let client = match selector % 3 {
        0 => Some(&clients()[0]),
        1 => Some(&clients()[1]),
        _ => None,
    };
    let connectors = |id: &str| id == "local" || id == "dingtalk";
    match validate(&params, client, &connectors, NOW, 600) {
        Ok(req) => {
            let client = client.expect("a request without a known client was accepted");
            assert_eq!(req.client_id, client.id);
            assert!(
                idbridge::oidc::clients::redirect_uri_allowed(client, &req.redirect_uri),
                "accepted an unregistered redirect URI {:?}",
                req.redirect_uri
            );
            assert!(!req.scopes.is_empty());
            assert!(
                req.scopes
                    .iter()
                    .all(|s| SUPPORTED_SCOPES.contains(&s.as_str()))
            );
            if let Some(c) = &req.code_challenge {
                assert!(is_pkce_value(c) && c.len() == 43, "bad challenge {c:?}");
            }
            assert!(!client.public || req.code_challenge.is_some());
            assert!(req.response_mode == "query" || req.response_mode == "form_post");
            assert_eq!(req.expires_at, NOW + 600);
        }
        Err(AuthorizeError::Redirect(e)) => {
            let client = client.expect("an error was redirected for an unknown client");
            assert!(
                idbridge::oidc::clients::redirect_uri_allowed(client, &e.redirect_uri),
                "an error was sent to an unregistered redirect URI {:?}",
                e.redirect_uri
            );
        }
        Err(AuthorizeError::Page(_)) => {}
    }
});

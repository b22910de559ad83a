//! Registered clients: lookup, authentication and redirect URI matching.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};

use super::error::OAuthError;
use super::random::constant_time_eq;
use crate::config::StaticClient;
use crate::storage::{Storage, StorageError};

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A client as the protocol sees it, whether it came from the config or the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredClient {
    pub id: String,
    pub name: String,
    /// Keyed hash of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    pub default_scopes: Vec<String>,
    pub skip_approval: bool,
    pub allowed_connectors: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub grant_types: Vec<String>,
    /// Scopes grantable with client credentials.
    pub allowed_scopes: Vec<String>,
    /// `aud` of client-credentials tokens; the client id when empty.
    pub audience: Vec<String>,
}

impl RegisteredClient {
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    pub fn allows_connector(&self, id: &str) -> bool {
        self.allowed_connectors.is_empty() || self.allowed_connectors.iter().any(|c| c == id)
    }
}

/// Client secrets are high-entropy, so a keyed hash (HMAC-SHA256 with an instance key kept in
/// storage) protects them at rest without the cost of a password hash on every token request.
#[derive(Clone)]
pub struct SecretHasher {
    key: hmac::Key,
}

impl SecretHasher {
    pub fn new(key_material: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key_material),
        }
    }

    pub fn hash(&self, secret: &str) -> String {
        B64.encode(hmac::sign(&self.key, secret.as_bytes()))
    }

    pub fn verify(&self, secret: &str, stored_hash: &str) -> bool {
        constant_time_eq(self.hash(secret).as_bytes(), stored_hash.as_bytes())
    }
}

/// Static clients in memory, database clients looked up on demand.
pub struct ClientRegistry {
    statics: HashMap<String, Arc<RegisteredClient>>,
    hasher: SecretHasher,
}

impl ClientRegistry {
    pub fn new(statics: &[StaticClient], hasher: SecretHasher) -> Self {
        let statics = statics
            .iter()
            .map(|c| {
                let rc = RegisteredClient {
                    id: c.id.clone(),
                    name: if c.name.is_empty() {
                        c.id.clone()
                    } else {
                        c.name.clone()
                    },
                    secret_hash: c.secret.as_deref().map(|s| hasher.hash(s)),
                    redirect_uris: c.redirect_uris.clone(),
                    post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
                    public: c.public,
                    default_scopes: c.default_scopes.clone(),
                    skip_approval: c.skip_approval,
                    allowed_connectors: c.allowed_connectors.clone(),
                    backchannel_logout_uri: c.backchannel_logout_uri.clone(),
                    grant_types: c.grant_types.clone(),
                    allowed_scopes: c.allowed_scopes.clone(),
                    audience: c.audience.clone(),
                };
                (c.id.clone(), Arc::new(rc))
            })
            .collect();
        Self { statics, hasher }
    }

    pub fn hasher(&self) -> &SecretHasher {
        &self.hasher
    }

    /// Finds a client by id: static clients first, then the database.
    pub async fn get(
        &self,
        storage: &dyn Storage,
        id: &str,
    ) -> Result<Option<Arc<RegisteredClient>>, OAuthError> {
        if let Some(c) = self.statics.get(id) {
            return Ok(Some(c.clone()));
        }
        match storage.get_client(id).await {
            Ok(c) => Ok(Some(Arc::new(RegisteredClient {
                id: c.id,
                name: c.name,
                secret_hash: c.secret_hash,
                redirect_uris: c.redirect_uris,
                post_logout_redirect_uris: c.post_logout_redirect_uris,
                public: c.public,
                default_scopes: c.default_scopes,
                skip_approval: c.skip_approval,
                allowed_connectors: c.allowed_connectors,
                backchannel_logout_uri: None,
                grant_types: vec![
                    GRANT_AUTHORIZATION_CODE.to_string(),
                    GRANT_REFRESH_TOKEN.to_string(),
                ],
                allowed_scopes: Vec::new(),
                audience: Vec::new(),
            }))),
            Err(StorageError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Authenticates the client of a token-endpoint style request (RFC 6749 2.3). Only the
    /// credentials are checked here: nothing else of the request is touched, so a failed
    /// attempt consumes nothing (Go's oauth2 library retries with the other auth style).
    pub async fn authenticate(
        &self,
        storage: &dyn Storage,
        creds: &ClientCredentials,
    ) -> Result<Arc<RegisteredClient>, OAuthError> {
        let unknown = || OAuthError::invalid_client("client authentication failed");
        let client = self.get(storage, &creds.id).await?.ok_or_else(unknown)?;
        match (&client.secret_hash, &creds.secret) {
            (Some(hash), Some(secret)) => {
                if self.hasher.verify(secret, hash) {
                    Ok(client)
                } else {
                    Err(unknown())
                }
            }
            (Some(_), None) => Err(unknown()),
            // A public client authenticates with its id alone; PKCE protects its codes.
            (None, _) if client.public => Ok(client),
            (None, _) => Err(unknown()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    Post,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: Option<String>,
    pub method: AuthMethod,
}

/// Extracts client credentials from an `Authorization` header and/or form fields.
/// RFC 6749 2.3.1: id and secret in Basic are form-urlencoded before base64, so decode them;
/// a client must not use more than one authentication method in one request.
pub fn extract_credentials(
    authorization: Option<&str>,
    form_client_id: Option<&str>,
    form_client_secret: Option<&str>,
) -> Result<ClientCredentials, OAuthError> {
    let form_client_id = form_client_id.filter(|s| !s.is_empty());
    let form_client_secret = form_client_secret.filter(|s| !s.is_empty());
    if let Some(header) = authorization {
        let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(OAuthError::invalid_client(
                "unsupported authorization scheme for client authentication",
            ));
        }
        let decoded = STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
        let id = form_decode(id);
        let secret = form_decode(secret);
        if form_client_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "more than one client authentication method was used",
            ));
        }
        if let Some(fid) = form_client_id
            && fid != id
        {
            return Err(OAuthError::invalid_client(
                "client_id does not match the authenticated client",
            ));
        }
        if id.is_empty() {
            return Err(OAuthError::invalid_client("empty client id"));
        }
        return Ok(ClientCredentials {
            id,
            secret: Some(secret),
            method: AuthMethod::Basic,
        });
    }
    let id = form_client_id
        .ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
    Ok(ClientCredentials {
        id: id.to_string(),
        secret: form_client_secret.map(str::to_string),
        method: if form_client_secret.is_some() {
            AuthMethod::Post
        } else {
            AuthMethod::None
        },
    })
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Exact redirect URI matching, with one exception: a public (native) client registered with
/// a loopback IP or `localhost` redirect may use any port (RFC 8252 7.3), since the port is
/// picked at run time. Everything else must match byte for byte (RFC 9700 2.1).
pub fn redirect_uri_allowed(client: &RegisteredClient, requested: &str) -> bool {
    if client.redirect_uris.iter().any(|r| r == requested) {
        return true;
    }
    if !client.public {
        return false;
    }
    // The loopback exception is still a string comparison: only the port may differ, so
    // `/x/../callback`, `127.1` or `HTTP://` do not pass for the registered URI.
    let Some(requested) = loopback_without_port(requested) else {
        return false;
    };
    client
        .redirect_uris
        .iter()
        .filter_map(|r| loopback_without_port(r))
        .any(|r| r == requested)
}

/// `http://127.0.0.1:8000/cb` as `http://127.0.0.1/cb`, for loopback redirect URIs written
/// exactly with `127.0.0.1`, `[::1]` or `localhost`; `None` for anything else.
fn loopback_without_port(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rsplit_once(':') {
        // An IPv6 literal holds colons of its own: a port follows only its closing bracket.
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            host
        }
        _ => authority,
    };
    if !matches!(host, "127.0.0.1" | "[::1]" | "localhost") || tail.contains('#') {
        return None;
    }
    Some(format!("http://{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(public: bool, uris: &[&str]) -> RegisteredClient {
        RegisteredClient {
            id: "c".into(),
            name: "c".into(),
            secret_hash: None,
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            post_logout_redirect_uris: vec![],
            public,
            default_scopes: vec![],
            skip_approval: false,
            allowed_connectors: vec![],
            backchannel_logout_uri: None,
            grant_types: vec![],
            allowed_scopes: vec![],
            audience: vec![],
        }
    }

    #[test]
    fn exact_match_only_for_confidential_clients() {
        let c = client(
            false,
            &["https://app.example.com/cb", "http://127.0.0.1:8000/cb"],
        );
        assert!(redirect_uri_allowed(&c, "https://app.example.com/cb"));
        for bad in [
            "https://app.example.com/cb/",
            "https://APP.example.com/cb",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#f",
            "https://app.example.com/other",
            "https://user@app.example.com/cb",
            "https://app.example.com/cb/../cb",
            "http://127.0.0.1:9000/cb",
        ] {
            assert!(!redirect_uri_allowed(&c, bad), "{bad}");
        }
    }

    #[test]
    fn loopback_any_port_for_public_clients() {
        let c = client(
            true,
            &["http://127.0.0.1/callback", "http://localhost:8000"],
        );
        assert!(redirect_uri_allowed(&c, "http://127.0.0.1:53211/callback"));
        assert!(redirect_uri_allowed(&c, "http://localhost:18000"));
        // Compared as written: a trailing slash is another URI.
        assert!(!redirect_uri_allowed(&c, "http://localhost:18000/"));
        assert!(!redirect_uri_allowed(
            &c,
            "http://127.0.0.1:1/x/../callback"
        ));
        assert!(!redirect_uri_allowed(&c, "http://127.1:1/callback"));
        assert!(!redirect_uri_allowed(&c, "HTTP://127.0.0.1:1/callback"));
        assert!(!redirect_uri_allowed(&c, "http://127.0.0.1:53211/other"));
        assert!(!redirect_uri_allowed(&c, "http://127.0.0.2:53211/callback"));
        assert!(!redirect_uri_allowed(
            &c,
            "http://evil@127.0.0.1:1/callback"
        ));
        assert!(!redirect_uri_allowed(&c, "https://127.0.0.1:1/callback"));
        assert!(!redirect_uri_allowed(&c, "http://localhost.evil.com:8000"));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // Go's oauth2 library url.QueryEscapes id and secret before base64.
        let header = format!("Basic {}", STANDARD.encode("my%20app:a%2Bb%2Fc%3D+d"));
        let c = extract_credentials(Some(&header), None, None).unwrap();
        assert_eq!(c.id, "my app");
        assert_eq!(c.secret.as_deref(), Some("a+b/c= d"));
        assert_eq!(c.method, AuthMethod::Basic);
    }

    #[test]
    fn two_methods_at_once_are_refused() {
        let header = format!("Basic {}", STANDARD.encode("a:b"));
        let e = extract_credentials(Some(&header), Some("a"), Some("b")).unwrap_err();
        assert_eq!(e.code, super::super::error::ErrorCode::InvalidRequest);
    }

    #[test]
    fn secret_hasher_verifies() {
        let h = SecretHasher::new(b"k");
        let stored = h.hash("secret");
        assert!(h.verify("secret", &stored));
        assert!(!h.verify("secret2", &stored));
        assert!(!SecretHasher::new(b"other").verify("secret", &stored));
    }
}

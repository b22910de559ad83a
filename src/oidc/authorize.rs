//! Validation of authorization requests (RFC 6749 4.1.1, OpenID Connect Core 3.1.2.1).
//!
//! Errors come in two kinds (RFC 6749 4.1.2.1): while the client or its redirect URI is not
//! established, the user sees an error page and is never redirected (no open redirect); once
//! both are valid, errors go back to the client's redirect URI.

use std::sync::Arc;

use super::clients::{GRANT_AUTHORIZATION_CODE, RegisteredClient, redirect_uri_allowed};
use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use crate::storage::{AuthRequest, Timestamp};

/// Scopes this provider understands; others are ignored (RFC 6749 3.3 lets the server grant
/// fewer scopes than asked, and rejecting unknown ones breaks clients that ask for extras).
pub const SUPPORTED_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "phone",
    "groups",
    "offline_access",
];

pub const PROMPT_VALUES: &[&str] = &["none", "login", "consent", "select_account"];

/// Why an authorization request cannot proceed.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown to the user; the client is unknown or the redirect URI is not established.
    Page(PageError),
    /// Sent back to the client's (validated) redirect URI.
    Redirect(ErrorRedirect),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    BadRequest(String),
    UnknownClient,
    BadRedirectUri,
}

#[derive(Debug, Clone)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub response_mode: String,
    pub state: Option<String>,
    pub error: OAuthError,
}

/// Steps 1 of validation: the client id and redirect URI. Page errors only.
pub fn client_and_redirect(
    params: &Params,
    client: Option<&Arc<RegisteredClient>>,
) -> Result<String, PageError> {
    let bad = |e: OAuthError| PageError::BadRequest(e.description.unwrap_or_default());
    let _client_id = params.require("client_id").map_err(bad)?;
    let client = client.ok_or(PageError::UnknownClient)?;
    let redirect_uri = params
        .require("redirect_uri")
        .map_err(|_| PageError::BadRedirectUri)?;
    if !redirect_uri_allowed(client, redirect_uri) {
        return Err(PageError::BadRedirectUri);
    }
    Ok(redirect_uri.to_string())
}

/// Validates a whole authorization request for `client` and returns it ready to store.
pub fn validate(
    params: &Params,
    client: Option<&Arc<RegisteredClient>>,
    connector_exists: &dyn Fn(&str) -> bool,
    now: Timestamp,
    lifetime: i64,
) -> Result<AuthRequest, AuthorizeError> {
    let redirect_uri = client_and_redirect(params, client).map_err(AuthorizeError::Page)?;
    let Some(client) = client else {
        return Err(AuthorizeError::Page(PageError::UnknownClient));
    };

    // From here on the redirect URI is trusted; `state` is echoed when readable.
    let state = params.get("state").ok().flatten().map(str::to_string);
    let response_mode_raw = params.get("response_mode").ok().flatten();
    let response_mode = match response_mode_raw {
        Some("form_post") => "form_post",
        _ => "query",
    }
    .to_string();
    let fail = |error: OAuthError| {
        AuthorizeError::Redirect(ErrorRedirect {
            redirect_uri: redirect_uri.clone(),
            response_mode: response_mode.clone(),
            state: state.clone(),
            error,
        })
    };

    params.refuse_duplicates().map_err(&fail)?;
    if params.get("request").map_err(&fail)?.is_some() {
        return Err(fail(OAuthError::bare(ErrorCode::RequestNotSupported)));
    }
    if params.get("request_uri").map_err(&fail)?.is_some() {
        return Err(fail(OAuthError::bare(ErrorCode::RequestUriNotSupported)));
    }
    if params.get("registration").map_err(&fail)?.is_some() {
        return Err(fail(OAuthError::bare(ErrorCode::RegistrationNotSupported)));
    }
    match response_mode_raw {
        None | Some("query") | Some("form_post") => {}
        Some(_) => {
            return Err(fail(OAuthError::invalid_request(
                "unsupported response_mode (use query or form_post)",
            )));
        }
    }
    match params.get("response_type").map_err(&fail)? {
        None => {
            return Err(fail(OAuthError::invalid_request(
                "missing parameter response_type",
            )));
        }
        Some("code") => {}
        Some(_) => {
            return Err(fail(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            )));
        }
    }
    if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
        return Err(fail(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code flow",
        )));
    }

    let scopes: Vec<String> = match params.get("scope").map_err(&fail)? {
        Some(s) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None if !client.default_scopes.is_empty() => client.default_scopes.clone(),
        None => {
            return Err(fail(OAuthError::new(
                ErrorCode::InvalidScope,
                "the request has no scope; send scope=openid (plus profile, email, ...) \
                 or configure defaultScopes for this client",
            )));
        }
    };
    let mut granted: Vec<String> = Vec::new();
    for s in scopes {
        if SUPPORTED_SCOPES.contains(&s.as_str()) && !granted.contains(&s) {
            granted.push(s);
        }
    }
    if granted.is_empty() {
        return Err(fail(OAuthError::new(
            ErrorCode::InvalidScope,
            "none of the requested scopes is supported; include openid",
        )));
    }

    let nonce = params.get("nonce").map_err(&fail)?.map(str::to_string);
    let challenge = params.get("code_challenge").map_err(&fail)?;
    let method = params.get("code_challenge_method").map_err(&fail)?;
    let code_challenge = match (challenge, method) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(fail(OAuthError::invalid_request(
                "code_challenge_method without code_challenge",
            )));
        }
        // RFC 7636 4.3: a missing method means "plain", which is not allowed here.
        (Some(_), None) | (Some(_), Some("plain")) => {
            return Err(fail(OAuthError::invalid_request(
                "only code_challenge_method=S256 is supported",
            )));
        }
        (Some(c), Some("S256")) => {
            if !is_pkce_value(c) || c.len() != 43 {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge is not a base64url SHA-256 value",
                )));
            }
            Some(c.to_string())
        }
        (Some(_), Some(_)) => {
            return Err(fail(OAuthError::invalid_request(
                "unsupported code_challenge_method (use S256)",
            )));
        }
    };
    if client.public && code_challenge.is_none() {
        return Err(fail(OAuthError::invalid_request(
            "PKCE with code_challenge_method=S256 is required for public clients",
        )));
    }

    let prompt: Vec<String> = match params.get("prompt").map_err(&fail)? {
        None => Vec::new(),
        Some(p) => p
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    };
    if let Some(bad) = prompt.iter().find(|p| !PROMPT_VALUES.contains(&p.as_str())) {
        return Err(fail(OAuthError::invalid_request(format!(
            "unsupported prompt value {:?}",
            bad.chars().take(32).collect::<String>()
        ))));
    }
    if prompt.iter().any(|p| p == "none") && prompt.len() > 1 {
        return Err(fail(OAuthError::invalid_request(
            "prompt=none cannot be combined with other values",
        )));
    }
    let max_age = match params.get("max_age").map_err(&fail)? {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return Err(fail(OAuthError::invalid_request(
                    "max_age must be a non-negative integer",
                )));
            }
        },
    };
    let login_hint = params.get("login_hint").map_err(&fail)?.map(str::to_string);
    let connector_id = params
        .get("connector_id")
        .map_err(&fail)?
        .map(str::to_string);
    if let Some(id) = &connector_id
        && (!connector_exists(id) || !client.allows_connector(id))
    {
        return Err(fail(OAuthError::invalid_request(
            "connector_id names no connector available to this client",
        )));
    }

    Ok(AuthRequest {
        id: super::random::token(24),
        client_id: client.id.clone(),
        redirect_uri,
        response_mode,
        scopes: granted,
        state,
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint,
        connector_id,
        device_request_id: None,
        created_at: now,
        expires_at: now + lifetime,
    })
}

/// RFC 7636 4.1: `[A-Za-z0-9-._~]`, 43 to 128 characters.
pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Appends response parameters to a redirect URI that may already carry a query.
pub fn append_query(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::from(redirect_uri);
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    let encoded = ser.finish();
    if encoded.is_empty() {
        return out;
    }
    out.push(if redirect_uri.contains('?') { '&' } else { '?' });
    out.push_str(&encoded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(public: bool) -> Arc<RegisteredClient> {
        Arc::new(RegisteredClient {
            id: "app".into(),
            name: "App".into(),
            secret_hash: None,
            redirect_uris: vec!["https://app.example.com/cb".into()],
            post_logout_redirect_uris: vec![],
            public,
            default_scopes: vec![],
            skip_approval: false,
            allowed_connectors: vec![],
            backchannel_logout_uri: None,
            grant_types: vec![GRANT_AUTHORIZATION_CODE.into()],
            allowed_scopes: vec![],
            audience: vec![],
        })
    }

    fn run(q: &str, public: bool) -> Result<AuthRequest, AuthorizeError> {
        let p = Params::parse(q).unwrap();
        validate(&p, Some(&client(public)), &|id| id == "local", 1000, 600)
    }

    fn redirect_code(r: Result<AuthRequest, AuthorizeError>) -> ErrorCode {
        match r {
            Err(AuthorizeError::Redirect(e)) => e.error.code,
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    const BASE: &str =
        "client_id=app&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code";

    #[test]
    fn a_minimal_request_is_accepted() {
        let r = run(
            &format!("{BASE}&scope=openid%20email%20unknown&state=ks"),
            false,
        )
        .unwrap();
        assert_eq!(r.scopes, vec!["openid", "email"]);
        assert_eq!(r.state.as_deref(), Some("ks"));
        assert_eq!(r.response_mode, "query");
    }

    #[test]
    fn bad_redirect_uri_is_a_page_error() {
        let p = Params::parse("client_id=app&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=code&scope=openid").unwrap();
        assert!(matches!(
            validate(&p, Some(&client(false)), &|_| true, 0, 1),
            Err(AuthorizeError::Page(PageError::BadRedirectUri))
        ));
        assert!(matches!(
            validate(&p, None, &|_| true, 0, 1),
            Err(AuthorizeError::Page(PageError::UnknownClient))
        ));
    }

    #[test]
    fn protocol_errors_redirect() {
        assert_eq!(
            redirect_code(run(&format!("{BASE}&scope=openid&scope=email"), false)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(&BASE.replace("code", "token"), false)),
            ErrorCode::UnsupportedResponseType
        );
        assert_eq!(redirect_code(run(BASE, false)), ErrorCode::InvalidScope);
        assert_eq!(
            redirect_code(run(&format!("{BASE}&scope=openid"), true)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(
                &format!(
                    "{BASE}&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=plain"
                ),
                true
            )),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(
                &format!("{BASE}&scope=openid&prompt=none%20login"),
                false
            )),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(&format!("{BASE}&scope=openid&max_age=-1"), false)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(&format!("{BASE}&scope=openid&request=x"), false)),
            ErrorCode::RequestNotSupported
        );
        assert_eq!(
            redirect_code(run(
                &format!("{BASE}&scope=openid&connector_id=nope"),
                false
            )),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn append_query_keeps_existing_query() {
        assert_eq!(
            append_query("https://a/cb?x=1", &[("code", "a b")]),
            "https://a/cb?x=1&code=a+b"
        );
        assert_eq!(
            append_query("https://a/cb", &[("state", "s&t")]),
            "https://a/cb?state=s%26t"
        );
    }
}

//! The provider: everything the protocol needs, and the grant logic. No HTTP types here;
//! every function takes the time as a parameter.

use std::sync::Arc;

use aws_lc_rs::hmac;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::audit::{Audit, AuditLog};
use super::authorize::{append_query, is_pkce_value};
use super::claims::user_claims;
use super::clients::{
    ClientCredentials, ClientRegistry, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH_TOKEN, RegisteredClient,
};
use super::error::{ErrorCode, OAuthError};
use super::keys::{KeyManager, Verified};
use super::params::Params;
use super::random;
use crate::config::{Config, SigningAlgorithm};
use crate::connectors::{ConnectorError, Connectors, Identity};
use crate::storage::{
    AuthCode, AuthRequest, CodePresentation, DeviceRequest, DeviceStatus, RefreshToken, Storage,
    StorageError, Timestamp, User,
};
use bytes::Bytes;

pub struct Provider {
    pub config: Arc<Config>,
    pub storage: Arc<dyn Storage>,
    pub keys: KeyManager,
    pub clients: ClientRegistry,
    pub connectors: Connectors,
    /// Key for deriving subjects from upstream ids.
    pub subject_key: hmac::Key,
    pub audit: AuditLog,
    discovery: Bytes,
}

/// The successful token response (RFC 6749 5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    /// Whom the tokens are about (for the audit trail; not part of the response).
    #[serde(skip)]
    pub subject: String,
}

/// The device authorization response (RFC 8628 3.2).
#[derive(Debug, Serialize)]
pub struct DeviceAuthorizationResponse {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// Seconds a device waits between polls unless told to slow down (RFC 8628 3.2).
pub const DEVICE_POLL_INTERVAL: i64 = 5;
/// Letters that cannot be confused with each other or spell words (RFC 8628 6.1).
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const USER_CODE_LEN: usize = 8;

/// A user code as typed: case, spaces and dashes do not matter.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// `BCDFGHJK` shown as `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    let (a, b) = code.split_at(code.len() / 2);
    format!("{a}-{b}")
}

fn new_user_code() -> String {
    let mut out = String::with_capacity(USER_CODE_LEN);
    let mut buf = [0u8; 32];
    while out.len() < USER_CODE_LEN {
        if aws_lc_rs::rand::fill(&mut buf).is_err() {
            continue;
        }
        for b in buf {
            // 240 is the largest multiple of 20 below 256: uniform letters.
            if b < 240 && out.len() < USER_CODE_LEN {
                out.push(USER_CODE_ALPHABET[(b % 20) as usize] as char);
            }
        }
    }
    out
}

/// Where to send the browser with a successful authorization response.
#[derive(Debug, Clone)]
pub struct AuthResponse {
    pub redirect_uri: String,
    pub response_mode: String,
    pub params: Vec<(String, String)>,
}

impl AuthResponse {
    /// The URL for `response_mode=query`.
    pub fn query_url(&self) -> String {
        let pairs: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        append_query(&self.redirect_uri, &pairs)
    }
}

/// What a verified access token says.
#[derive(Debug, Clone)]
pub struct AccessTokenInfo {
    verified: Arc<Verified>,
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
}

impl AccessTokenInfo {
    pub fn claims(&self) -> &Value {
        &self.verified.claims
    }
}

impl Provider {
    pub fn new(
        config: Arc<Config>,
        storage: Arc<dyn Storage>,
        keys: KeyManager,
        clients: ClientRegistry,
        connectors: Connectors,
        subject_key: hmac::Key,
    ) -> Self {
        let discovery =
            Bytes::from(serde_json::to_vec(&discovery_document(&config)).unwrap_or_default());
        let audit = AuditLog::start(storage.clone());
        Self {
            config,
            audit,
            storage,
            keys,
            clients,
            connectors,
            subject_key,
            discovery,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The serialized discovery document: cloning it shares the bytes.
    pub fn discovery_json(&self) -> Bytes {
        self.discovery.clone()
    }

    fn id_token_alg(&self) -> SigningAlgorithm {
        self.config.signer.algorithm
    }

    fn access_token_alg(&self) -> SigningAlgorithm {
        self.config
            .signer
            .access_token_algorithm
            .unwrap_or(self.config.signer.algorithm)
    }

    /// Every algorithm a key must exist for.
    pub fn signing_algorithms(config: &Config) -> Vec<SigningAlgorithm> {
        let mut algs = vec![config.signer.algorithm];
        if let Some(a) = config.signer.access_token_algorithm
            && a != config.signer.algorithm
        {
            algs.push(a);
        }
        algs
    }

    /// Finishes a successful authorization: stores a single-use code and returns where to
    /// send the browser (with `iss`, RFC 9207).
    pub async fn issue_code(
        &self,
        req: &AuthRequest,
        user: &User,
        session_id: Option<&str>,
        auth_time: Timestamp,
        now: Timestamp,
    ) -> Result<AuthResponse, OAuthError> {
        let code = random::token(32);
        let record = AuthCode {
            id: random::sha256_b64(code.as_bytes()),
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            scopes: req.scopes.clone(),
            nonce: req.nonce.clone(),
            code_challenge: req.code_challenge.clone(),
            user_id: user.id.clone(),
            connector_id: user.connector_id.clone(),
            session_id: session_id.map(str::to_string),
            auth_time,
            created_at: now,
            expires_at: now + self.config.expiry.auth_codes.as_secs() as i64,
            redeemed_at: None,
        };
        self.storage.create_auth_code(&record).await?;
        let mut params = vec![("code".to_string(), code)];
        if let Some(s) = &req.state {
            params.push(("state".into(), s.clone()));
        }
        params.push(("iss".into(), self.config.issuer.clone()));
        Ok(AuthResponse {
            redirect_uri: req.redirect_uri.clone(),
            response_mode: req.response_mode.clone(),
            params,
        })
    }

    /// An error response to a validated redirect URI (RFC 6749 4.1.2.1, RFC 9207).
    pub fn error_response(
        &self,
        redirect_uri: &str,
        response_mode: &str,
        state: Option<&str>,
        error: &OAuthError,
    ) -> AuthResponse {
        let mut params = vec![("error".to_string(), error.code.as_str().to_string())];
        if let Some(d) = &error.description {
            params.push(("error_description".into(), d.clone()));
        }
        if let Some(s) = state {
            params.push(("state".into(), s.to_string()));
        }
        params.push(("iss".into(), self.config.issuer.clone()));
        AuthResponse {
            redirect_uri: redirect_uri.to_string(),
            response_mode: response_mode.to_string(),
            params,
        }
    }

    /// The token endpoint after client authentication succeeded.
    pub async fn token(
        &self,
        client: &RegisteredClient,
        params: &Params,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = params.require("grant_type")?;
        match grant_type {
            GRANT_AUTHORIZATION_CODE => self.exchange_code(client, params, now).await,
            GRANT_REFRESH_TOKEN => self.refresh(client, params, now).await,
            GRANT_CLIENT_CREDENTIALS => self.client_credentials(client, params, now),
            super::clients::GRANT_DEVICE_CODE => self.device_token(client, params, now).await,
            _ => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "unsupported grant_type",
            )),
        }
    }

    /// Authenticates a client from extracted credentials.
    pub async fn authenticate_client(
        &self,
        creds: &ClientCredentials,
    ) -> Result<Arc<RegisteredClient>, OAuthError> {
        self.clients
            .authenticate(self.storage.as_ref(), creds)
            .await
    }

    async fn exchange_code(
        &self,
        client: &RegisteredClient,
        params: &Params,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use the authorization code grant",
            ));
        }
        let code = params.require("code")?;
        let redirect_uri = params.get("redirect_uri")?;
        let verifier = params.get("code_verifier")?;
        let id = random::sha256_b64(code.as_bytes());
        let invalid = || {
            OAuthError::invalid_grant(
                "the authorization code is invalid, expired or was already used",
            )
        };
        // The common case in one statement: the code is redeemed only if it was issued to
        // exactly this client, redirect URI and PKCE challenge, and is unexpired and unused.
        // Anything else falls through to the checks below, which say what is wrong, leave the
        // code to its rightful owner, and treat a redeemed code as replayed.
        if let Some(redirect) = redirect_uri
            && verifier.is_none_or(is_pkce_value)
        {
            let challenge = verifier.map(|v| random::sha256_b64(v.as_bytes()));
            let presented = CodePresentation {
                client_id: &client.id,
                redirect_uri: redirect,
                code_challenge: challenge.as_deref(),
            };
            if let Some(code) = self
                .storage
                .redeem_auth_code_matching(&id, now, &presented)
                .await?
            {
                return self.issue_for_code(client, code, now).await;
            }
        }
        let stored = match self.storage.get_auth_code(&id).await {
            Ok(c) => c,
            Err(StorageError::NotFound) => return Err(invalid()),
            Err(e) => return Err(e.into()),
        };
        // Checks that do not burn the code: a different client presenting it, or a mismatch,
        // leaves it for its rightful owner.
        if stored.client_id != client.id {
            return Err(invalid());
        }
        if stored.expires_at <= now {
            return Err(invalid());
        }
        if stored.redeemed_at.is_some() {
            self.revoke_code_grant(&stored).await;
            return Err(invalid());
        }
        if redirect_uri != Some(stored.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        match (&stored.code_challenge, verifier) {
            (Some(challenge), Some(v)) => {
                if !is_pkce_value(v)
                    || !random::constant_time_eq(
                        random::sha256_b64(v.as_bytes()).as_bytes(),
                        challenge.as_bytes(),
                    )
                {
                    return Err(OAuthError::invalid_grant("PKCE verification failed"));
                }
            }
            (Some(_), None) => {
                return Err(OAuthError::invalid_grant("code_verifier is required"));
            }
            // RFC 9700 2.1.1: a verifier without a challenge is a downgrade attempt.
            (None, Some(_)) => {
                return Err(OAuthError::invalid_grant(
                    "code_verifier sent but the authorization request had no code_challenge",
                ));
            }
            (None, None) => {}
        }
        let code = match self.storage.redeem_auth_code(&id, now).await {
            Ok(c) => c,
            Err(StorageError::Conflict) => {
                self.revoke_code_grant(&stored).await;
                return Err(invalid());
            }
            Err(StorageError::NotFound) => return Err(invalid()),
            Err(e) => return Err(e.into()),
        };
        self.issue_for_code(client, code, now).await
    }

    /// The tokens for a code that was just redeemed.
    async fn issue_for_code(
        &self,
        client: &RegisteredClient,
        code: AuthCode,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        let user = self.load_user(&code.user_id).await?;
        let grant_id = code.id.clone();
        let refresh = self
            .first_refresh_token(
                &grant_id,
                client,
                &user,
                &code.scopes,
                code.nonce.clone(),
                code.session_id.clone(),
                code.auth_time,
                now,
            )
            .await?;
        self.mint(
            client,
            &user,
            &code.scopes,
            code.nonce.as_deref(),
            code.auth_time,
            code.session_id.as_deref(),
            &grant_id,
            refresh,
            now,
        )
    }

    /// A replayed code revokes what was issued from it (RFC 6749 4.1.2, RFC 9700 4.5).
    async fn revoke_code_grant(&self, code: &AuthCode) {
        tracing::warn!(client_id = %code.client_id, "authorization code replayed; revoking its tokens");
        self.audit.record(
            "code_replayed",
            code.redeemed_at.unwrap_or(code.created_at),
            Audit {
                user_id: Some(&code.user_id),
                client_id: Some(&code.client_id),
                connector_id: Some(&code.connector_id),
                ..Audit::default()
            },
        );
        let until = code.created_at
            + self.config.expiry.access_tokens.as_secs() as i64
            + self.config.expiry.auth_codes.as_secs() as i64;
        if let Err(e) = self.storage.revoke_grant(&code.id, until).await {
            tracing::error!(error = %e, "could not revoke grant of a replayed code");
        }
        if let Err(e) = self.storage.revoke_refresh_family(&code.id).await {
            tracing::error!(error = %e, "could not revoke refresh tokens of a replayed code");
        }
    }

    async fn load_user(&self, id: &str) -> Result<User, OAuthError> {
        match self.storage.get_user(id).await {
            Ok(u) => Ok(u),
            Err(StorageError::NotFound) => {
                Err(OAuthError::invalid_grant("the user no longer exists"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The first refresh token of a new grant, stored, when the client asked for
    /// `offline_access` and may refresh; `None` otherwise.
    #[allow(clippy::too_many_arguments)]
    async fn first_refresh_token(
        &self,
        grant_id: &str,
        client: &RegisteredClient,
        user: &User,
        scopes: &[String],
        nonce: Option<String>,
        session_id: Option<String>,
        auth_time: Timestamp,
        now: Timestamp,
    ) -> Result<Option<(String, RefreshToken)>, OAuthError> {
        if !scopes.iter().any(|s| s == "offline_access")
            || !client.allows_grant(GRANT_REFRESH_TOKEN)
        {
            return Ok(None);
        }
        let absolute = now
            + self
                .config
                .expiry
                .refresh_tokens
                .absolute_lifetime
                .as_secs() as i64;
        let (token, record) = self
            .new_refresh_token(
                grant_id, client, user, scopes, nonce, session_id, auth_time, now, absolute,
            )
            .await?;
        self.storage.create_refresh_token(&record).await?;
        Ok(Some((token, record)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn new_refresh_token(
        &self,
        family_id: &str,
        client: &RegisteredClient,
        user: &User,
        scopes: &[String],
        nonce: Option<String>,
        session_id: Option<String>,
        auth_time: Timestamp,
        now: Timestamp,
        absolute_expires_at: Timestamp,
    ) -> Result<(String, RefreshToken), OAuthError> {
        let id = random::token(16);
        let secret = random::token(32);
        let sliding = now
            + self
                .config
                .expiry
                .refresh_tokens
                .valid_if_not_used_for
                .as_secs() as i64;
        let token = RefreshToken {
            id: id.clone(),
            secret_hash: random::sha256_b64(secret.as_bytes()),
            family_id: family_id.to_string(),
            client_id: client.id.clone(),
            user_id: user.id.clone(),
            connector_id: user.connector_id.clone(),
            scopes: scopes.to_vec(),
            nonce,
            session_id,
            auth_time,
            created_at: now,
            last_used_at: now,
            expires_at: sliding.min(absolute_expires_at),
            absolute_expires_at,
            rotated_at: None,
            revoked: false,
        };
        Ok((format!("{id}.{secret}"), token))
    }

    async fn refresh(
        &self,
        client: &RegisteredClient,
        params: &Params,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows_grant(GRANT_REFRESH_TOKEN) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use refresh tokens",
            ));
        }
        let presented = params.require("refresh_token")?;
        let invalid =
            || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
        let (id, secret) = presented.split_once('.').ok_or_else(invalid)?;
        let old = match self.storage.get_refresh_token(id).await {
            Ok(t) => t,
            Err(StorageError::NotFound) => return Err(invalid()),
            Err(e) => return Err(e.into()),
        };
        if !random::constant_time_eq(
            random::sha256_b64(secret.as_bytes()).as_bytes(),
            old.secret_hash.as_bytes(),
        ) {
            return Err(invalid());
        }
        if old.client_id != client.id {
            return Err(invalid());
        }
        if old.revoked || old.expires_at <= now || old.absolute_expires_at <= now {
            return Err(invalid());
        }
        let grace = self.config.expiry.refresh_tokens.reuse_interval.as_secs() as i64;
        // Without a grace period any use of a rotated token is reuse, even in the same second.
        if let Some(rotated_at) = old.rotated_at
            && (grace == 0 || now - rotated_at > grace)
        {
            // RFC 9700 4.14.2: a rotated token used again means one of the two holders is
            // an attacker; revoke the whole family.
            tracing::warn!(client_id = %client.id, user_id = %old.user_id, "refresh token reuse detected; revoking its family");
            crate::telemetry::refresh_reuse();
            self.audit.record(
                "refresh_reuse_detected",
                now,
                Audit {
                    user_id: Some(&old.user_id),
                    client_id: Some(&client.id),
                    connector_id: Some(&old.connector_id),
                    detail: Some("family revoked"),
                },
            );
            self.revoke_family(&old, now).await;
            return Err(invalid());
        }
        let scopes = match params.get("scope")? {
            None => old.scopes.clone(),
            Some(s) => {
                let asked: Vec<String> = s
                    .split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect();
                if asked.iter().any(|a| !old.scopes.contains(a)) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        "a refresh cannot widen the granted scopes",
                    ));
                }
                asked
            }
        };
        let mut user = self.load_user(&old.user_id).await?;
        if let Some(refresher) = self
            .connectors
            .get(&old.connector_id)
            .and_then(|c| c.refresher.clone())
        {
            let identity = Identity {
                upstream_id: user.upstream_id.clone(),
                username: Some(user.username.clone()),
                display_name: user.display_name.clone(),
                email: user.email.clone(),
                email_verified: user.email_verified,
                phone: user.phone.clone(),
                picture: user.picture.clone(),
                groups: user.groups.clone(),
                connector_data: user.connector_data.clone(),
            };
            match refresher.refresh(identity).await {
                Ok(fresh) => {
                    user.connector_data = fresh.connector_data;
                    user.display_name = fresh.display_name;
                    user.email = fresh.email;
                    user.email_verified = fresh.email_verified;
                    user.phone = fresh.phone;
                    user.picture = fresh.picture;
                    user.groups = fresh.groups;
                    self.storage.update_user(&user).await?;
                }
                Err(ConnectorError::Unavailable(e)) => {
                    tracing::warn!(connector = %old.connector_id, error = %e, "upstream unavailable during refresh");
                    return Err(OAuthError::unavailable());
                }
                Err(e) => {
                    tracing::warn!(connector = %old.connector_id, user_id = %user.id, error = %e, "upstream refused refresh; revoking");
                    let reason = e.to_string();
                    self.audit.record(
                        "refresh_denied_upstream",
                        now,
                        Audit {
                            user_id: Some(&user.id),
                            client_id: Some(&client.id),
                            connector_id: Some(&old.connector_id),
                            detail: Some(&reason),
                        },
                    );
                    self.revoke_family(&old, now).await;
                    return Err(OAuthError::invalid_grant(
                        "the upstream identity provider no longer accepts this user",
                    ));
                }
            }
        }
        let refresh = if self.config.expiry.refresh_tokens.disable_rotation {
            // Without rotation the client keeps using the token it has.
            (presented.to_string(), old.clone())
        } else {
            let (token, record) = self
                .new_refresh_token(
                    &old.family_id,
                    client,
                    &user,
                    &old.scopes,
                    old.nonce.clone(),
                    old.session_id.clone(),
                    old.auth_time,
                    now,
                    old.absolute_expires_at,
                )
                .await?;
            let stored = if old.rotated_at.is_some() {
                // Inside the reuse grace: the new token joins the family without retiring
                // the old one a second time.
                self.storage.create_refresh_token(&record).await
            } else {
                self.storage
                    .rotate_refresh_token(&old.id, now, &record)
                    .await
            };
            match stored {
                Ok(()) => {}
                Err(StorageError::Conflict) => {
                    // Lost a race with another use of the same token: that is reuse too.
                    if grace == 0 {
                        self.revoke_family(&old, now).await;
                    }
                    return Err(invalid());
                }
                Err(e) => return Err(e.into()),
            }
            (token, record)
        };
        self.mint(
            client,
            &user,
            &scopes,
            None,
            old.auth_time,
            old.session_id.as_deref(),
            &old.family_id,
            Some(refresh),
            now,
        )
    }

    /// The device authorization endpoint (RFC 8628 3.1-3.2).
    pub async fn device_authorization(
        &self,
        client: &RegisteredClient,
        params: &Params,
        now: Timestamp,
    ) -> Result<DeviceAuthorizationResponse, OAuthError> {
        if !client.allows_grant(super::clients::GRANT_DEVICE_CODE) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use the device authorization grant",
            ));
        }
        let requested: Vec<String> = match params.get("scope")? {
            Some(s) => s
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
            None if !client.default_scopes.is_empty() => client.default_scopes.clone(),
            None => vec!["openid".to_string()],
        };
        let mut scopes: Vec<String> = Vec::new();
        for s in requested {
            if super::authorize::SUPPORTED_SCOPES.contains(&s.as_str()) && !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        if scopes.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "none of the requested scopes is supported; include openid",
            ));
        }
        let lifetime = self.config.expiry.device_requests.as_secs() as i64;
        // A user-code collision is astronomically rare but possible: try again.
        for _ in 0..5 {
            let device_code = random::token(32);
            let user_code = new_user_code();
            let req = DeviceRequest {
                id: random::sha256_b64(device_code.as_bytes()),
                user_code: user_code.clone(),
                client_id: client.id.clone(),
                scopes: scopes.clone(),
                created_at: now,
                expires_at: now + lifetime,
                interval: DEVICE_POLL_INTERVAL,
                last_polled_at: None,
                status: DeviceStatus::Pending,
                user_id: None,
                connector_id: None,
                auth_time: None,
                session_id: None,
            };
            match self.storage.create_device_request(&req).await {
                Ok(()) => {
                    let verification_uri = self.config.endpoint("/device");
                    let shown = display_user_code(&user_code);
                    return Ok(DeviceAuthorizationResponse {
                        device_code,
                        verification_uri_complete: super::authorize::append_query(
                            &verification_uri,
                            &[("user_code", &shown)],
                        ),
                        verification_uri,
                        user_code: shown,
                        expires_in: lifetime,
                        interval: DEVICE_POLL_INTERVAL,
                    });
                }
                Err(StorageError::AlreadyExists) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(OAuthError::server_error())
    }

    /// The device-code grant at the token endpoint (RFC 8628 3.4-3.5).
    async fn device_token(
        &self,
        client: &RegisteredClient,
        params: &Params,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows_grant(super::clients::GRANT_DEVICE_CODE) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use the device authorization grant",
            ));
        }
        let device_code = params.require("device_code")?;
        let id = random::sha256_b64(device_code.as_bytes());
        let invalid = || OAuthError::invalid_grant("the device code is invalid");
        let req = match self.storage.get_device_request(&id).await {
            Ok(r) => r,
            Err(StorageError::NotFound) => return Err(invalid()),
            Err(e) => return Err(e.into()),
        };
        if req.client_id != client.id {
            return Err(invalid());
        }
        if req.expires_at <= now {
            return Err(OAuthError::new(
                ErrorCode::ExpiredToken,
                "the device code has expired; start again",
            ));
        }
        match req.status {
            DeviceStatus::Pending => {
                // RFC 8628 3.5: polling faster than the interval earns slow_down and a
                // longer interval (by 5 seconds) for every later poll.
                let too_fast = req
                    .last_polled_at
                    .is_some_and(|last| now - last < req.interval);
                let interval = if too_fast {
                    req.interval + DEVICE_POLL_INTERVAL
                } else {
                    req.interval
                };
                self.storage.record_device_poll(&id, now, interval).await?;
                Err(if too_fast {
                    OAuthError::new(
                        ErrorCode::SlowDown,
                        format!("poll at most every {interval} seconds"),
                    )
                } else {
                    OAuthError::bare(ErrorCode::AuthorizationPending)
                })
            }
            DeviceStatus::Denied => Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "the user denied the request",
            )),
            DeviceStatus::Consumed => Err(invalid()),
            DeviceStatus::Approved => {
                let req = match self.storage.consume_device_request(&id).await {
                    Ok(r) => r,
                    Err(StorageError::Conflict) | Err(StorageError::NotFound) => {
                        return Err(invalid());
                    }
                    Err(e) => return Err(e.into()),
                };
                let (Some(user_id), Some(auth_time)) = (req.user_id.clone(), req.auth_time) else {
                    return Err(invalid());
                };
                let user = self.load_user(&user_id).await?;
                let refresh = self
                    .first_refresh_token(
                        &req.id,
                        client,
                        &user,
                        &req.scopes,
                        None,
                        req.session_id.clone(),
                        auth_time,
                        now,
                    )
                    .await?;
                self.mint(
                    client,
                    &user,
                    &req.scopes,
                    None,
                    auth_time,
                    req.session_id.as_deref(),
                    &req.id,
                    refresh,
                    now,
                )
            }
        }
    }

    async fn revoke_family(&self, token: &RefreshToken, now: Timestamp) {
        if let Err(e) = self.storage.revoke_refresh_family(&token.family_id).await {
            tracing::error!(error = %e, "could not revoke refresh family");
        }
        let until = now + self.config.expiry.access_tokens.as_secs() as i64;
        if let Err(e) = self.storage.revoke_grant(&token.family_id, until).await {
            tracing::error!(error = %e, "could not revoke grant");
        }
    }

    fn client_credentials(
        &self,
        client: &RegisteredClient,
        params: &Params,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        if client.public || !client.allows_grant(GRANT_CLIENT_CREDENTIALS) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use the client credentials grant",
            ));
        }
        // RFC 6749 3.3 and 4.4.2: a machine client gets only the scopes configured for it,
        // all of them when it names none.
        let scopes: Vec<String> = match params.get("scope")? {
            None => client.allowed_scopes.clone(),
            Some(s) => {
                let asked: Vec<String> = s
                    .split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect();
                if let Some(bad) = asked.iter().find(|a| !client.allowed_scopes.contains(a)) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!(
                            "scope {:?} is not allowed for this client (allowedScopes)",
                            bad.chars().take(64).collect::<String>()
                        ),
                    ));
                }
                asked
            }
        };
        let audience = match client.audience.as_slice() {
            [] => json!(client.id),
            [one] => json!(one),
            many => json!(many),
        };
        let lifetime = self.config.expiry.access_tokens.as_secs() as i64;
        let jti = random::token(16);
        // The token is its own grant: revoking it revokes exactly this token.
        let claims = json!({
            "iss": self.config.issuer,
            "sub": client.id,
            "aud": audience,
            "client_id": client.id,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti,
            "gid": jti,
            "scope": scopes.join(" "),
        });
        let access_token = self
            .keys
            .sign(self.access_token_alg(), "at+jwt", &claims, now)
            .map_err(|e| {
                tracing::error!(error = %e, "signing failed");
                OAuthError::server_error()
            })?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime,
            id_token: None,
            refresh_token: None,
            scope: scopes.join(" "),
            subject: client.id.clone(),
        })
    }

    /// Signs the access token and (for `openid`) the ID token.
    #[allow(clippy::too_many_arguments)]
    fn mint(
        &self,
        client: &RegisteredClient,
        user: &User,
        scopes: &[String],
        nonce: Option<&str>,
        auth_time: Timestamp,
        session_id: Option<&str>,
        grant_id: &str,
        refresh: Option<(String, RefreshToken)>,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        let sign_err = |e: super::keys::KeyError| {
            tracing::error!(error = %e, "signing failed");
            OAuthError::server_error()
        };
        let at_lifetime = self.config.expiry.access_tokens.as_secs() as i64;
        let scope = scopes.join(" ");
        let mut at = Map::new();
        at.insert("iss".into(), json!(self.config.issuer));
        at.insert("sub".into(), json!(user.id));
        at.insert("aud".into(), json!(client.id));
        at.insert("client_id".into(), json!(client.id));
        at.insert("iat".into(), json!(now));
        at.insert("exp".into(), json!(now + at_lifetime));
        at.insert("auth_time".into(), json!(auth_time));
        at.insert("jti".into(), json!(random::token(16)));
        at.insert("scope".into(), json!(scope));
        at.insert("gid".into(), json!(grant_id));
        if let Some(sid) = session_id {
            at.insert("sid".into(), json!(sid));
        }
        let access_token = self
            .keys
            .sign(self.access_token_alg(), "at+jwt", &Value::Object(at), now)
            .map_err(sign_err)?;

        let id_token = if scopes.iter().any(|s| s == "openid") {
            let alg = self.id_token_alg();
            let at_hash = match alg {
                SigningAlgorithm::EdDSA => random::half_sha512_b64(access_token.as_bytes()),
                _ => random::half_sha256_b64(access_token.as_bytes()),
            };
            let mut id = user_claims(user, scopes);
            id.insert("iss".into(), json!(self.config.issuer));
            id.insert("sub".into(), json!(user.id));
            id.insert("aud".into(), json!(client.id));
            id.insert("azp".into(), json!(client.id));
            id.insert("iat".into(), json!(now));
            id.insert(
                "exp".into(),
                json!(now + self.config.expiry.id_tokens.as_secs() as i64),
            );
            id.insert("auth_time".into(), json!(auth_time));
            id.insert("at_hash".into(), json!(at_hash));
            if let Some(n) = nonce {
                id.insert("nonce".into(), json!(n));
            }
            if let Some(sid) = session_id {
                id.insert("sid".into(), json!(sid));
            }
            Some(
                self.keys
                    .sign(alg, "JWT", &Value::Object(id), now)
                    .map_err(sign_err)?,
            )
        } else {
            None
        };
        let refresh_token = refresh.map(|(token, _)| token);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: at_lifetime,
            id_token,
            refresh_token,
            scope,
            subject: user.id.clone(),
        })
    }

    /// Verifies an access token we issued: signature by one of our keys, `typ: at+jwt`
    /// (an ID token is not an access token), issuer, expiry and revocation.
    pub async fn verify_access_token(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<AccessTokenInfo, OAuthError> {
        let info = self.verify_access_token_offline(token, now)?;
        if let Some(gid) = info.claims().get("gid").and_then(Value::as_str)
            && self.storage.is_grant_revoked(gid).await?
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidToken,
                "the token has been revoked",
            ));
        }
        Ok(info)
    }

    /// Everything [`verify_access_token`](Self::verify_access_token) checks except revocation,
    /// which needs storage.
    fn verify_access_token_offline(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<AccessTokenInfo, OAuthError> {
        let bad = |d: &str| OAuthError::new(ErrorCode::InvalidToken, d);
        let verified = self
            .keys
            .verify_remembered(token)
            .map_err(|e| bad(&e.to_string()))?;
        let (header, claims) = (&verified.header, &verified.claims);
        if header.get("typ").and_then(Value::as_str) != Some("at+jwt") {
            return Err(bad("not an access token"));
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(bad("the token was issued by another issuer"));
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("no expiry"))?;
        if exp <= now {
            return Err(bad("the token has expired"));
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no subject"))?
            .to_string();
        let client_id = claims
            .get("client_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let scopes = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(AccessTokenInfo {
            verified: verified.clone(),
            subject,
            client_id,
            scopes,
        })
    }

    /// The userinfo response for a verified access token (OpenID Connect Core 5.3).
    pub async fn userinfo(&self, token: &str, now: Timestamp) -> Result<Value, OAuthError> {
        let info = self.verify_access_token_offline(token, now)?;
        if info.claims().get("auth_time").is_none() {
            return Err(OAuthError::new(
                ErrorCode::InvalidToken,
                "the token does not represent a user",
            ));
        }
        if !info.scopes.iter().any(|s| s == "openid") {
            return Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                "the openid scope is required",
            ));
        }
        // The user and the revocation state of the token's grant in one storage round trip.
        let grant = info
            .claims()
            .get("gid")
            .and_then(Value::as_str)
            .unwrap_or("");
        let user = match self.storage.get_user_for_grant(&info.subject, grant).await {
            Ok((_, true)) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the token has been revoked",
                ));
            }
            Ok((u, false)) => u,
            Err(StorageError::NotFound) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the user no longer exists",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let mut claims = user_claims(&user, &info.scopes);
        claims.insert("sub".into(), json!(user.id));
        Ok(Value::Object(claims))
    }
}

impl Provider {
    /// Token introspection (RFC 7662) for an authenticated client. Anything we cannot vouch
    /// for is simply inactive.
    pub async fn introspect(
        &self,
        client: &RegisteredClient,
        token: &str,
        now: Timestamp,
    ) -> Result<Value, OAuthError> {
        let inactive = json!({"active": false});
        if let Some((id, secret)) = token
            .split_once('.')
            .filter(|_| token.matches('.').count() == 1)
        {
            let stored = match self.storage.get_refresh_token(id).await {
                Ok(t) => t,
                Err(StorageError::NotFound) => return Ok(inactive),
                Err(e) => return Err(e.into()),
            };
            let live = random::constant_time_eq(
                random::sha256_b64(secret.as_bytes()).as_bytes(),
                stored.secret_hash.as_bytes(),
            ) && stored.client_id == client.id
                && !stored.revoked
                && stored.rotated_at.is_none()
                && stored.expires_at > now
                && stored.absolute_expires_at > now;
            if !live {
                return Ok(inactive);
            }
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": stored.scopes.join(" "),
                "client_id": stored.client_id,
                "sub": stored.user_id,
                "iss": self.config.issuer,
                "iat": stored.created_at,
                "exp": stored.expires_at,
            }));
        }
        let info = match self.verify_access_token_offline(token, now) {
            Ok(info) => info,
            Err(e) if e.code == ErrorCode::InvalidToken => return Ok(inactive),
            Err(e) => return Err(e),
        };
        let grant = info
            .claims()
            .get("gid")
            .and_then(Value::as_str)
            .unwrap_or("");
        // A user's token: the user (for `username`) and the grant's state in one statement;
        // a machine client's token: only the grant's state.
        let username = if info.claims().get("auth_time").is_some() {
            match self.storage.get_user_for_grant(&info.subject, grant).await {
                Ok((user, false)) => Some(user.username),
                Ok((_, true)) | Err(StorageError::NotFound) => return Ok(inactive),
                Err(e) => return Err(e.into()),
            }
        } else {
            if self.storage.is_grant_revoked(grant).await? {
                return Ok(inactive);
            }
            None
        };
        let mut out = match info.claims().clone() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        out.remove("gid");
        out.insert("active".into(), Value::Bool(true));
        out.insert("token_type".into(), json!("Bearer"));
        if let Some(name) = username {
            out.insert("username".into(), json!(name));
        }
        Ok(Value::Object(out))
    }

    /// Token revocation (RFC 7009). Revoking a refresh token revokes its family and the
    /// access tokens issued from it; unknown or foreign tokens are ignored (2.2).
    pub async fn revoke(
        &self,
        client: &RegisteredClient,
        token: &str,
        now: Timestamp,
    ) -> Result<(), OAuthError> {
        if let Some((id, secret)) = token
            .split_once('.')
            .filter(|_| token.matches('.').count() == 1)
        {
            let stored = match self.storage.get_refresh_token(id).await {
                Ok(t) => t,
                Err(StorageError::NotFound) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if stored.client_id == client.id
                && random::constant_time_eq(
                    random::sha256_b64(secret.as_bytes()).as_bytes(),
                    stored.secret_hash.as_bytes(),
                )
            {
                tracing::info!(client_id = %client.id, user_id = %stored.user_id, "refresh token revoked");
                self.audit.record(
                    "token_revoked",
                    now,
                    Audit {
                        user_id: Some(&stored.user_id),
                        client_id: Some(&client.id),
                        detail: Some("refresh_token"),
                        ..Audit::default()
                    },
                );
                self.revoke_family(&stored, now).await;
            }
            return Ok(());
        }
        if let Ok(info) = self.verify_access_token(token, now).await
            && info.client_id == client.id
            && let Some(gid) = info.claims().get("gid").and_then(Value::as_str)
        {
            let exp = info
                .claims()
                .get("exp")
                .and_then(Value::as_i64)
                .unwrap_or(now);
            self.storage.revoke_grant(gid, exp).await?;
            // Refresh tokens of the same grant go too: the client wants the grant ended.
            self.storage.revoke_refresh_family(gid).await?;
            tracing::info!(client_id = %client.id, "access token revoked");
            self.audit.record(
                "token_revoked",
                now,
                Audit {
                    user_id: Some(&info.subject),
                    client_id: Some(&client.id),
                    detail: Some("access_token"),
                    ..Audit::default()
                },
            );
        }
        Ok(())
    }
}

impl Provider {
    /// A logout token for back-channel logout (OpenID Connect Back-Channel Logout 1.0, 2.4).
    pub fn logout_token(
        &self,
        client_id: &str,
        subject: &str,
        session_id: &str,
        now: Timestamp,
    ) -> Result<String, OAuthError> {
        let claims = json!({
            "iss": self.config.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + 120,
            "jti": random::token(16),
            "sub": subject,
            "sid": session_id,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        self.keys
            .sign(self.id_token_alg(), "logout+jwt", &claims, now)
            .map_err(|e| {
                tracing::error!(error = %e, "signing failed");
                OAuthError::server_error()
            })
    }
}

/// The discovery document (OpenID Connect Discovery 1.0 section 3, RFC 8414).
pub fn discovery_document(config: &Config) -> Value {
    let e = |p: &str| config.endpoint(p);
    let mut algs = vec![config.signer.algorithm.as_str()];
    if let Some(a) = config.signer.access_token_algorithm
        && a != config.signer.algorithm
    {
        algs.push(a.as_str());
    }
    json!({
        "issuer": config.issuer,
        "authorization_endpoint": e("/auth"),
        "token_endpoint": e("/token"),
        "jwks_uri": e("/keys"),
        "userinfo_endpoint": e("/userinfo"),
        "end_session_endpoint": e("/logout"),
        "revocation_endpoint": e("/revoke"),
        "introspection_endpoint": e("/introspect"),
        "device_authorization_endpoint": e("/device/code"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": [
            GRANT_AUTHORIZATION_CODE,
            GRANT_REFRESH_TOKEN,
            GRANT_CLIENT_CREDENTIALS,
            super::clients::GRANT_DEVICE_CODE,
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [config.signer.algorithm.as_str()],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": super::authorize::SUPPORTED_SCOPES,
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "sid",
            "name", "preferred_username", "picture", "email", "email_verified",
            "phone_number", "groups"
        ],
        "prompt_values_supported": super::authorize::PROMPT_VALUES,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "authorization_response_iss_parameter_supported": true,
        "frontchannel_logout_supported": false,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "ui_locales_supported": ["en", "zh-CN"],
        "access_token_signing_alg_values_supported": algs,
    })
}

//! `type: oidc`: any standard OpenID Connect provider (Alibaba Cloud IDaaS EIAM 2.0, Keycloak,
//! Authing, another Dex).
//!
//! The provider is found through discovery, lazily: an upstream that is down when we start
//! must not stop us from starting, so discovery is first tried in the background and then on
//! use, with the last good answer cached. Logins use the authorization code flow with PKCE
//! (S256) and a nonce; the ID token is verified against the provider's published keys, and
//! the JWKS is fetched again when a token names a key we do not know (key rotation).
//!
//! ID token claims are checked here on the raw JSON rather than through typed claims, because
//! some providers send standard claims in non-standard shapes (`"email_verified":"true"`, an
//! empty `picture`), and a typed parser would reject the whole token for that.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use openidconnect::core::{
    CoreClientAuthMethod, CoreJsonWebKey, CoreJsonWebKeySet, CoreJsonWebKeyUse,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{IssuerUrl, JsonWebKey, JwsSigningAlgorithm, Nonce};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::mapping::{self, ClaimMapping, RawClaimMapping};
use super::oauth2::{
    AuthStyle, Checker, LoginData, OneOrMany, RefreshData, UpstreamClient, callback_code,
    parse_settings, pkce_pair, refresh_failure,
};
use super::{
    CallbackConnector, Connector, ConnectorError, FactoryContext, Identity, Kind, LoginRedirect,
    RefreshConnector,
};
use crate::config::{ConfigError, ConnectorConfig};

/// How long discovered metadata and keys are used before they are fetched again in the
/// background.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// An ID token naming an unknown key triggers a JWKS refetch at most this often, so that
/// forged tokens with random key ids cannot make us hammer the upstream.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Clock difference tolerated between us and the upstream.
const LEEWAY_SECS: i64 = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSettings {
    issuer: Option<String>,
    #[serde(rename = "clientID")]
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    #[serde(rename = "redirectURI")]
    redirect_uri: Option<String>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    get_user_info: bool,
    #[serde(default)]
    claim_mapping: RawClaimMapping,
    #[serde(default)]
    insecure_skip_email_verified: bool,
    #[serde(default)]
    offline_access: bool,
    prompt: Option<String>,
    token_auth_style: Option<AuthStyle>,
    timeout: Option<String>,
    #[serde(rename = "rootCAs")]
    root_cas: Option<OneOrMany>,
}

/// What discovery found, reduced to what we use.
struct Upstream {
    authorization_endpoint: Url,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    jwks: CoreJsonWebKeySet,
    algorithms: Vec<CoreJwsSigningAlgorithm>,
    auth_style: AuthStyle,
    fetched_at: Instant,
}

struct Shared {
    id: String,
    issuer: String,
    client: UpstreamClient,
    /// `tokenAuthStyle` when set; otherwise chosen from the discovered metadata.
    auth_style: Option<AuthStyle>,
    redirect_uri: String,
    scopes: Vec<String>,
    prompt: Option<String>,
    get_user_info: bool,
    mapping: ClaimMapping,
    current: RwLock<Option<Arc<Upstream>>>,
    /// One discovery at a time; others wait for its result.
    discovering: tokio::sync::Mutex<()>,
    /// Whether a background discovery is already queued.
    queued: AtomicBool,
}

struct OidcConnector {
    shared: Arc<Shared>,
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Endpoints the upstream tells us to use must be as safe as the issuer itself.
fn safe_endpoint(what: &str, url: &Url) -> Result<(), String> {
    let loopback = url.host_str().is_some_and(crate::config::is_loopback_host);
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("the discovered {what} {url} does not use https")),
    }
}

impl Shared {
    fn cached(&self) -> Option<Arc<Upstream>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    async fn discover(&self) -> Result<Upstream, String> {
        let issuer = IssuerUrl::new(self.issuer.clone()).map_err(|e| e.to_string())?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.client.http)
            .await
            .map_err(|e| error_chain(&e))?;
        let authorization_endpoint = metadata.authorization_endpoint().url().clone();
        safe_endpoint("authorization endpoint", &authorization_endpoint)?;
        let token_endpoint = metadata
            .token_endpoint()
            .ok_or("the discovery document names no token endpoint")?
            .url()
            .clone();
        safe_endpoint("token endpoint", &token_endpoint)?;
        let userinfo_endpoint = match metadata.userinfo_endpoint() {
            Some(u) => {
                safe_endpoint("userinfo endpoint", u.url())?;
                Some(u.url().to_string())
            }
            None => None,
        };
        let auth_style = self.auth_style.unwrap_or_else(|| {
            match metadata.token_endpoint_auth_methods_supported() {
                Some(methods)
                    if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                        && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
                {
                    AuthStyle::Post
                }
                _ => AuthStyle::Basic,
            }
        });
        Ok(Upstream {
            authorization_endpoint,
            token_endpoint: token_endpoint.to_string(),
            userinfo_endpoint,
            jwks: metadata.jwks().clone(),
            algorithms: metadata.id_token_signing_alg_values_supported().clone(),
            auth_style,
            fetched_at: Instant::now(),
        })
    }

    /// The discovered upstream: the cached one while fresh, otherwise fetched now. With
    /// `refetch`, fetched again unless it was fetched very recently. A failed refetch falls
    /// back to what is cached, so a brief upstream hiccup does not break logins.
    async fn upstream(&self, refetch: bool) -> Result<Arc<Upstream>, ConnectorError> {
        let seen = self.cached();
        let usable = |u: &Arc<Upstream>| {
            let age = u.fetched_at.elapsed();
            if refetch {
                age < MIN_REFETCH_INTERVAL
            } else {
                age < METADATA_TTL
            }
        };
        if let Some(u) = seen.as_ref().filter(|u| usable(u)) {
            return Ok(u.clone());
        }
        let _one_at_a_time = self.discovering.lock().await;
        let now_cached = self.cached();
        // Someone else fetched while we waited for the lock.
        if let Some(u) = &now_cached
            && seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, u))
        {
            return Ok(u.clone());
        }
        match self.discover().await {
            Ok(u) => {
                let u = Arc::new(u);
                tracing::info!(connector = %self.id, issuer = %self.issuer, keys = u.jwks.keys().len(), "upstream OpenID configuration loaded");
                if let Ok(mut slot) = self.current.write() {
                    *slot = Some(u.clone());
                }
                Ok(u)
            }
            Err(e) => {
                tracing::warn!(connector = %self.id, issuer = %self.issuer, error = %e, "upstream OpenID discovery failed; logins through this connector fail until it succeeds (retried on the next use)");
                match now_cached {
                    Some(u) => Ok(u),
                    None => Err(ConnectorError::Unavailable(format!(
                        "OpenID discovery of {} failed: {e}",
                        self.issuer
                    ))),
                }
            }
        }
    }

    /// Starts a discovery in the background, if none is queued and a runtime is running.
    fn queue_discovery(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.queued.store(false, Ordering::Release);
            return;
        };
        // A weak reference, so a connector that is dropped (a stopped server) is not kept
        // alive by its own discovery.
        let weak: Weak<Shared> = Arc::downgrade(self);
        handle.spawn(async move {
            if let Some(shared) = weak.upgrade() {
                let _ = shared.upstream(false).await;
                shared.queued.store(false, Ordering::Release);
            }
        });
    }

    fn upstream_client(&self, upstream: &Upstream) -> UpstreamClient {
        UpstreamClient {
            auth_style: upstream.auth_style,
            ..self.client.clone()
        }
    }

    /// Verifies an ID token and returns its claims. `nonce` is checked when given (a login);
    /// a refreshed ID token carries no new nonce.
    async fn verify_id_token(
        &self,
        upstream: Arc<Upstream>,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<Value, ConnectorError> {
        let claims = match verify_jwt(token, &upstream, &self.client.client_secret) {
            Err(JwtError::UnknownKey) => {
                // The upstream may have rotated its keys since we fetched them.
                let fresh = self.upstream(true).await?;
                verify_jwt(token, &fresh, &self.client.client_secret)
            }
            other => other,
        }
        .map_err(|e| ConnectorError::BadResponse(format!("the ID token is not valid: {e}")))?;
        check_claims(
            &claims,
            &self.issuer,
            &self.client.client_id,
            nonce,
            now_unix(),
        )
        .map_err(|e| ConnectorError::BadResponse(format!("the ID token is not valid: {e}")))?;
        Ok(claims)
    }

    /// The claims of a token response: the ID token's (when there is one), with userinfo laid
    /// over them when `getUserInfo` is set.
    async fn claims(
        &self,
        upstream: Arc<Upstream>,
        id_token: Option<&str>,
        access_token: &str,
        nonce: Option<&str>,
    ) -> Result<Option<Value>, ConnectorError> {
        let mut claims = match id_token {
            Some(t) => Some(self.verify_id_token(upstream.clone(), t, nonce).await?),
            None => None,
        };
        if self.get_user_info {
            let Some(endpoint) = &upstream.userinfo_endpoint else {
                return Err(ConnectorError::BadResponse(
                    "getUserInfo is set but the upstream publishes no userinfo endpoint".into(),
                ));
            };
            let info = self
                .upstream_client(&upstream)
                .userinfo(endpoint, access_token)
                .await?;
            // OpenID Connect Core 5.3.2: userinfo about anyone else must be ignored.
            let expected = claims.as_ref().and_then(|c| c.get("sub"));
            match (info.get("sub"), expected) {
                (Some(got), Some(want)) if got == want => {}
                (Some(_), None) => {}
                (Some(_), Some(_)) => {
                    return Err(ConnectorError::BadResponse(
                        "the userinfo response is about a different user than the ID token".into(),
                    ));
                }
                (None, _) => {
                    return Err(ConnectorError::BadResponse(
                        "the userinfo response has no sub".into(),
                    ));
                }
            }
            match &mut claims {
                Some(c) => mapping::merge(c, &info),
                None => claims = Some(info),
            }
        }
        Ok(claims)
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Debug, PartialEq, Eq)]
enum JwtError {
    Malformed(String),
    Algorithm(String),
    UnknownKey,
    BadSignature,
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::Malformed(m) => write!(f, "malformed: {m}"),
            JwtError::Algorithm(m) => f.write_str(m),
            JwtError::UnknownKey => f.write_str("no published key matches the token"),
            JwtError::BadSignature => f.write_str("the signature does not verify"),
        }
    }
}

/// Checks a compact JWS against the upstream's keys (or the client secret for HMAC) and
/// returns its payload. Only algorithms the upstream advertises are accepted, never `none`.
fn verify_jwt(token: &str, upstream: &Upstream, client_secret: &str) -> Result<Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed(
            "not a signed JWT (encrypted ID tokens are not supported)".into(),
        ));
    };
    let decode = |part: &str, what: &str| {
        B64URL
            .decode(part)
            .map_err(|_| JwtError::Malformed(format!("the {what} is not base64url")))
    };
    let header_json: Value = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|_| JwtError::Malformed("the header is not JSON".into()))?;
    let alg_name = header_json
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| JwtError::Malformed("the header has no alg".into()))?;
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(Value::String(alg_name.into()))
        .map_err(|_| JwtError::Algorithm(format!("unsupported algorithm {alg_name}")))?;
    let allowed = if upstream.algorithms.is_empty() {
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
    } else {
        upstream.algorithms.clone()
    };
    if alg == CoreJwsSigningAlgorithm::None || !allowed.contains(&alg) {
        return Err(JwtError::Algorithm(format!(
            "algorithm {alg_name} is not one the upstream advertises"
        )));
    }
    let signature = decode(signature, "signature")?;
    let message = &token.as_bytes()[..header.len() + 1 + payload.len()];
    let verified = if alg.uses_shared_secret() {
        CoreJsonWebKey::new_symmetric(client_secret.as_bytes().to_vec())
            .verify_signature(&alg, message, &signature)
            .is_ok()
    } else {
        let kid = header_json.get("kid").and_then(Value::as_str);
        let candidates: Vec<&CoreJsonWebKey> = upstream
            .jwks
            .keys()
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.key_id().is_some_and(|id| id.as_str() == kid)))
            .filter(|k| {
                k.key_use()
                    .is_none_or(|u| *u == CoreJsonWebKeyUse::Signature)
            })
            .collect();
        if candidates.is_empty() {
            return Err(JwtError::UnknownKey);
        }
        candidates
            .iter()
            .any(|k| k.verify_signature(&alg, message, &signature).is_ok())
    };
    if !verified {
        return Err(JwtError::BadSignature);
    }
    let claims: Value = serde_json::from_slice(&decode(payload, "payload")?)
        .map_err(|_| JwtError::Malformed("the payload is not JSON".into()))?;
    if !claims.is_object() {
        return Err(JwtError::Malformed(
            "the payload is not a JSON object".into(),
        ));
    }
    Ok(claims)
}

/// OpenID Connect Core 3.1.3.7, on the verified payload.
fn check_claims(
    claims: &Value,
    issuer: &str,
    client_id: &str,
    nonce: Option<&str>,
    now: i64,
) -> Result<(), String> {
    let string = |k: &str| claims.get(k).and_then(Value::as_str);
    let number = |k: &str| claims.get(k).and_then(Value::as_f64).map(|f| f as i64);
    if string("iss") != Some(issuer) {
        return Err(format!(
            "iss is {:?}, expected {issuer:?}",
            string("iss").unwrap_or("")
        ));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !audience_ok {
        return Err("aud does not contain our client id".into());
    }
    if let Some(azp) = claims.get("azp")
        && azp.as_str() != Some(client_id)
    {
        return Err("azp is not our client id".into());
    }
    match number("exp") {
        Some(exp) if exp + LEEWAY_SECS > now => {}
        Some(_) => return Err("the token has expired".into()),
        None => return Err("exp is missing".into()),
    }
    if let Some(nbf) = number("nbf")
        && nbf - LEEWAY_SECS > now
    {
        return Err("the token is not valid yet (nbf)".into());
    }
    if string("sub").is_none_or(str::is_empty) {
        return Err("sub is missing".into());
    }
    if let Some(expected) = nonce
        && string("nonce") != Some(expected)
    {
        return Err("the nonce does not match this login".into());
    }
    Ok(())
}

#[async_trait]
impl CallbackConnector for OidcConnector {
    async fn login_url(
        &self,
        _callback_url: &str,
        state: &str,
    ) -> Result<LoginRedirect, ConnectorError> {
        let s = &self.shared;
        // Discovery runs in the background from start-up; a login that arrives before it
        // finished (or while the upstream was down) waits for it, bounded by the timeout.
        let upstream = s.upstream(false).await?;
        let (verifier, challenge) = pkce_pair();
        let nonce = Nonce::new_random().secret().clone();
        let mut url = upstream.authorization_endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &s.client.client_id)
                .append_pair("redirect_uri", &s.redirect_uri)
                .append_pair("scope", &s.scopes.join(" "))
                .append_pair("state", state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(p) = &s.prompt {
                q.append_pair("prompt", p);
            }
        }
        let data = LoginData {
            pkce_verifier: Some(verifier),
            nonce: Some(nonce),
        };
        Ok(LoginRedirect {
            url: url.into(),
            data: data.encode(),
        })
    }

    async fn handle_callback(
        &self,
        _callback_url: &str,
        params: &HashMap<String, String>,
        data: Option<&str>,
    ) -> Result<Identity, ConnectorError> {
        let s = &self.shared;
        // RFC 9207: when the upstream names itself, it must be the upstream we sent the user to.
        if let Some(iss) = params.get("iss")
            && iss != &s.issuer
        {
            return Err(ConnectorError::BadCallback(
                "the authorization response comes from a different issuer".into(),
            ));
        }
        let code = callback_code(params)?;
        let data = LoginData::decode(data)?;
        let (Some(verifier), Some(nonce)) = (data.pkce_verifier, data.nonce) else {
            return Err(ConnectorError::BadCallback(
                "the login state for this upstream is missing".into(),
            ));
        };
        let upstream = s.upstream(false).await?;
        let form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", s.redirect_uri.as_str()),
            ("code_verifier", verifier.as_str()),
        ];
        let tokens = s
            .upstream_client(&upstream)
            .token(&upstream.token_endpoint, form)
            .await?;
        let Some(id_token) = tokens.id_token.as_deref() else {
            return Err(ConnectorError::BadResponse(
                "the token response has no id_token (is the openid scope allowed?)".into(),
            ));
        };
        let claims = s
            .claims(upstream, Some(id_token), &tokens.access_token, Some(&nonce))
            .await?
            .unwrap_or_default();
        let mut identity = s
            .mapping
            .apply(&claims)
            .map_err(ConnectorError::BadResponse)?;
        identity.connector_data = RefreshData::encode(tokens.refresh_token);
        Ok(identity)
    }
}

#[async_trait]
impl RefreshConnector for OidcConnector {
    async fn refresh(&self, identity: Identity) -> Result<Identity, ConnectorError> {
        let s = &self.shared;
        let Some(refresh_token) = RefreshData::refresh_token(identity.connector_data.as_deref())
        else {
            return Ok(identity);
        };
        let upstream = s.upstream(false).await?;
        let form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        let tokens = s
            .upstream_client(&upstream)
            .token(&upstream.token_endpoint, form)
            .await
            .map_err(|e| refresh_failure(&s.id, e))?;
        let connector_data =
            RefreshData::encode(tokens.refresh_token.clone().or(Some(refresh_token)));
        let claims = s
            .claims(
                upstream,
                tokens.id_token.as_deref(),
                &tokens.access_token,
                None,
            )
            .await
            .map_err(|e| refresh_failure(&s.id, e))?;
        let Some(claims) = claims else {
            // Nothing new to learn about the user: the refresh only proves the grant is alive.
            return Ok(Identity {
                connector_data,
                ..identity
            });
        };
        let mut fresh = s
            .mapping
            .apply(&claims)
            .map_err(ConnectorError::BadResponse)?;
        if fresh.upstream_id != identity.upstream_id {
            return Err(ConnectorError::Denied(
                "the upstream answered the refresh with a different user".into(),
            ));
        }
        fresh.connector_data = connector_data;
        Ok(fresh)
    }
}

pub(super) fn build(
    cc: &ConnectorConfig,
    ctx: &FactoryContext<'_>,
) -> Result<Connector, Vec<ConfigError>> {
    let raw: RawSettings = parse_settings(&cc.config, &ctx.path).map_err(|e| vec![e])?;
    let mut c = Checker::new(&ctx.path);
    let issuer_url = c.upstream_url("issuer", raw.issuer.as_deref());
    if let Some(u) = &issuer_url
        && (u.query().is_some() || u.fragment().is_some())
    {
        c.error("issuer", "must not have a query or fragment");
    }
    let client_id = c.required("clientID", raw.client_id.filter(|s| !s.is_empty()));
    let client_secret = c.client_secret(
        raw.client_secret,
        raw.client_secret_env,
        raw.client_secret_file,
    );
    let redirect_uri = c.redirect_uri(raw.redirect_uri, ctx);
    let mut scopes = c.scopes(raw.scopes, &["openid", "profile", "email"]);
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    if raw.offline_access && !scopes.iter().any(|s| s == "offline_access") {
        scopes.push("offline_access".into());
    }
    // Most providers only issue a refresh token for offline_access after explicit consent
    // (OpenID Connect Core 11); an empty `prompt` sends none.
    let prompt = match raw.prompt {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(p),
        None if raw.offline_access => Some("consent".to_string()),
        None => None,
    };
    let timeout = c.timeout(raw.timeout.as_deref());
    let http = c.http_client(timeout, raw.root_cas);
    let (Some(issuer_url), Some(client_id), Some(client_secret), Some(http), true) = (
        issuer_url,
        client_id,
        client_secret,
        http,
        c.errors.is_empty(),
    ) else {
        return Err(c.errors);
    };
    // The issuer is compared as written (discovery and `iss` both require an exact match),
    // so keep the operator's spelling rather than the URL parser's normalised form.
    let issuer = raw.issuer.unwrap_or_else(|| issuer_url.to_string());
    let shared = Arc::new(Shared {
        id: cc.id.clone(),
        issuer,
        client: UpstreamClient {
            http,
            connector: cc.id.clone(),
            client_id,
            client_secret,
            auth_style: AuthStyle::Basic,
        },
        auth_style: raw.token_auth_style,
        redirect_uri,
        scopes,
        prompt,
        get_user_info: raw.get_user_info,
        mapping: ClaimMapping::new(raw.claim_mapping, raw.insecure_skip_email_verified),
        current: RwLock::new(None),
        discovering: tokio::sync::Mutex::new(()),
        queued: AtomicBool::new(false),
    });
    // Warm the cache while the server starts; a failure here is only logged.
    shared.queue_discovery();
    let connector = Arc::new(OidcConnector { shared });
    Ok(Connector {
        id: cc.id.clone(),
        name: cc.name.clone(),
        kind_name: "oidc".into(),
        kind: Kind::Callback(connector.clone()),
        refresher: Some(connector),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    const BASE: &str = "issuer: http://127.0.0.1:5556\nstorage:\n  type: sqlite\n  config:\n    file: /tmp/unused.db\n";
    const GOOD: &str = "      issuer: https://eiam-api-cn-hangzhou.aliyuncs.com/v2/idaas_x/app_y/oidc\n      clientID: app_y\n      clientSecret: s3cret\n";

    fn errors(block: &str) -> Vec<ConfigError> {
        let text = format!(
            "{BASE}connectors:\n  - type: oidc\n    id: eiam\n    name: EIAM\n    config:\n{block}"
        );
        match crate::connectors::build(&Config::from_yaml_str(&text).unwrap()) {
            Ok(_) => Vec::new(),
            Err(e) => e,
        }
    }

    #[test]
    fn a_complete_block_builds_without_reaching_the_upstream() {
        assert_eq!(errors(GOOD), vec![]);
        let all = format!(
            "{GOOD}      scopes: [openid, profile, email, phone]\n      getUserInfo: true\n      offlineAccess: true\n      insecureSkipEmailVerified: true\n      prompt: login\n      tokenAuthStyle: post\n      timeout: 3s\n      redirectURI: https://sso.example.com/callback\n      claimMapping:\n        userID: sub\n        groups: '[\"https://example.com/groups\"]'\n"
        );
        assert_eq!(errors(&all), vec![]);
    }

    #[test]
    fn config_errors_carry_their_paths() {
        let e = errors("      issuer: http://idaas.example.com\n      clientID: x\n");
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"connectors[0].config.issuer"), "{paths:?}");
        assert!(
            paths.contains(&"connectors[0].config.clientSecret"),
            "{paths:?}"
        );
        let e = errors(&format!("{GOOD}      getUserinfo: true\n"));
        assert_eq!(e[0].path, "connectors[0].config.getUserinfo");
        assert!(e[0].message.contains("getUserInfo"), "{}", e[0].message);
        let e = errors(&format!("{GOOD}      redirectURI: \"::\"\n"));
        assert_eq!(e[0].path, "connectors[0].config.redirectURI");
        let e = errors("      clientSecret: x\n");
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "connectors[0].config.issuer",
                "connectors[0].config.clientID"
            ]
        );
        let e = errors(&format!("{GOOD}      claimMapping:\n        groups: 7\n"));
        assert_eq!(e[0].path, "connectors[0].config.claimMapping.groups");
    }

    fn sample_claims() -> Value {
        json!({"iss": "https://up.example.com", "aud": ["bridge", "other"], "azp": "bridge",
               "sub": "u1", "exp": 2000, "nonce": "n1"})
    }

    #[test]
    fn id_token_claims_are_checked() {
        let ok = |c: &Value, nonce: Option<&str>| {
            check_claims(c, "https://up.example.com", "bridge", nonce, 1000)
        };
        assert_eq!(ok(&sample_claims(), Some("n1")), Ok(()));
        assert_eq!(ok(&sample_claims(), None), Ok(()));
        assert!(
            ok(&sample_claims(), Some("n2"))
                .unwrap_err()
                .contains("nonce")
        );
        let mut c = sample_claims();
        c["iss"] = json!("https://up.example.com/");
        assert!(ok(&c, None).unwrap_err().contains("iss"));
        let mut c = sample_claims();
        c["aud"] = json!("someone-else");
        assert!(ok(&c, None).unwrap_err().contains("aud"));
        let mut c = sample_claims();
        c["azp"] = json!("other");
        assert!(ok(&c, None).unwrap_err().contains("azp"));
        let mut c = sample_claims();
        c["exp"] = json!(900);
        assert!(ok(&c, None).unwrap_err().contains("expired"));
        // Within the leeway is fine.
        c["exp"] = json!(990);
        assert_eq!(ok(&c, None), Ok(()));
        let mut c = sample_claims();
        c.as_object_mut().unwrap().remove("sub");
        assert!(ok(&c, None).unwrap_err().contains("sub"));
    }

    fn upstream_with(algorithms: Vec<CoreJwsSigningAlgorithm>) -> Upstream {
        Upstream {
            authorization_endpoint: Url::parse("https://up.example.com/auth").unwrap(),
            token_endpoint: "https://up.example.com/token".into(),
            userinfo_endpoint: None,
            jwks: CoreJsonWebKeySet::new(vec![]),
            algorithms,
            auth_style: AuthStyle::Basic,
            fetched_at: Instant::now(),
        }
    }

    fn hs256_token(secret: &str, header: Value, claims: &Value) -> String {
        let h = B64URL.encode(header.to_string());
        let p = B64URL.encode(claims.to_string());
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        let sig = aws_lc_rs::hmac::sign(&key, format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", B64URL.encode(sig.as_ref()))
    }

    #[test]
    fn jwt_signatures_and_algorithms_are_enforced() {
        let claims = sample_claims();
        let hs = upstream_with(vec![CoreJwsSigningAlgorithm::HmacSha256]);
        let token = hs256_token("s3cret", json!({"alg": "HS256"}), &claims);
        assert_eq!(verify_jwt(&token, &hs, "s3cret").unwrap(), claims);
        assert_eq!(
            verify_jwt(&token, &hs, "other"),
            Err(JwtError::BadSignature)
        );
        // HS256 is refused when the upstream does not advertise it (RS256 by default).
        let rs = upstream_with(vec![]);
        assert!(matches!(
            verify_jwt(&token, &rs, "s3cret"),
            Err(JwtError::Algorithm(_))
        ));
        // alg none never passes.
        let none = format!(
            "{}.{}.",
            B64URL.encode(json!({"alg": "none"}).to_string()),
            B64URL.encode(claims.to_string())
        );
        let anything = upstream_with(vec![CoreJwsSigningAlgorithm::None]);
        assert!(matches!(
            verify_jwt(&none, &anything, "s3cret"),
            Err(JwtError::Algorithm(_))
        ));
        // An RS256 token naming a key we do not have asks for a JWKS refetch.
        let rs_token = format!(
            "{}.{}.AAAA",
            B64URL.encode(json!({"alg": "RS256", "kid": "k9"}).to_string()),
            B64URL.encode(claims.to_string())
        );
        assert_eq!(
            verify_jwt(&rs_token, &rs, "s3cret"),
            Err(JwtError::UnknownKey)
        );
        assert!(matches!(
            verify_jwt("a.b", &rs, "s"),
            Err(JwtError::Malformed(_))
        ));
        assert!(matches!(
            verify_jwt("a.b.c.d.e", &rs, "s"),
            Err(JwtError::Malformed(_))
        ));
    }
}

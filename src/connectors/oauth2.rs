//! `type: oauth2`: a plain OAuth 2.0 upstream with a userinfo endpoint and no discovery, such as
//! legacy Alibaba Cloud IDaaS. The userinfo body may be wrapped in an envelope
//! (`{"success":true,"code":"","message":"","data":{...}}`): `successPath` says where the success
//! flag is, and `claimMapping` reads the user out of `data`.
//!
//! The plumbing both OAuth-based connectors share (settings, client authentication, token and
//! userinfo calls, and how upstream failures map onto [`ConnectorError`]) lives here too.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::mapping::{ClaimMapping, JsonPath, RawClaimMapping};
use super::{
    CallbackConnector, Connector, ConnectorError, FactoryContext, Identity, Kind, LoginRedirect,
    RefreshConnector,
};
use crate::config::{ConfigError, ConnectorConfig};

/// Token and userinfo bodies larger than this are refused rather than buffered.
const MAX_BODY: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Settings shared by the OAuth-based connectors.

/// A secret given in at most one of three ways, or (in YAML) a single string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

/// Deserialises a connector's `config` block, reporting an unknown or malformed key with its
/// full path (`connectors[1].config.claimMapping.userId`).
pub(super) fn parse_settings<T: DeserializeOwned>(
    value: &Value,
    path: &str,
) -> Result<T, ConfigError> {
    let value = if value.is_null() {
        Value::Object(Default::default())
    } else {
        value.clone()
    };
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let mut key = match err.path().to_string().as_str() {
            "." => path.to_string(),
            p => format!("{path}.{p}"),
        };
        let mut message = err.inner().to_string();
        if let Some(field) = between_backticks(&message, "unknown field `") {
            if !key.ends_with(&field) {
                key = format!("{key}.{field}");
            }
            message = match message.split_once(", expected ") {
                Some((_, expected)) => {
                    format!("unknown field; expected {}", expected.replace('`', ""))
                }
                None => "unknown field".to_string(),
            };
        } else if let Some(field) = between_backticks(&message, "missing field `") {
            key = format!("{key}.{field}");
            message = "required key is missing".to_string();
        }
        ConfigError::new(key, message)
    })
}

fn between_backticks(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('`')?].to_string())
}

/// Collects the problems of one connector's settings, each with its full key path.
pub(super) struct Checker {
    path: String,
    pub errors: Vec<ConfigError>,
}

impl Checker {
    pub fn new(path: &str) -> Checker {
        Checker {
            path: path.to_string(),
            errors: Vec::new(),
        }
    }

    pub fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(self.key(key), message));
    }

    pub fn required<T>(&mut self, key: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.error(key, "required key is missing");
        }
        value
    }

    /// The client secret from exactly one of `clientSecret`, `clientSecretEnv`,
    /// `clientSecretFile`.
    pub fn client_secret(
        &mut self,
        inline: Option<String>,
        env: Option<String>,
        file: Option<PathBuf>,
    ) -> Option<String> {
        let given = usize::from(inline.is_some())
            + usize::from(env.is_some())
            + usize::from(file.is_some());
        if given == 0 {
            self.error(
                "clientSecret",
                "required: set one of clientSecret, clientSecretEnv, clientSecretFile",
            );
            return None;
        }
        if given > 1 {
            self.error(
                "clientSecret",
                "set only one of clientSecret, clientSecretEnv, clientSecretFile",
            );
            return None;
        }
        let (key, value) = if let Some(v) = inline {
            ("clientSecret", v)
        } else if let Some(name) = env {
            match std::env::var(&name) {
                Ok(v) => ("clientSecretEnv", v),
                Err(_) => {
                    self.error(
                        "clientSecretEnv",
                        format!("environment variable {name} is not set"),
                    );
                    return None;
                }
            }
        } else if let Some(file) = file {
            match std::fs::read_to_string(&file) {
                // Mounted secrets and `echo` usually end with a newline that is not part of it.
                Ok(text) => (
                    "clientSecretFile",
                    text.trim_end_matches(['\n', '\r']).into(),
                ),
                Err(e) => {
                    self.error(
                        "clientSecretFile",
                        format!("cannot read {}: {e}", file.display()),
                    );
                    return None;
                }
            }
        } else {
            return None;
        };
        if value.is_empty() {
            self.error(key, "the value is empty");
            return None;
        }
        Some(value)
    }

    /// An upstream URL: https, or plain http only to this machine (tests, sidecars).
    pub fn upstream_url(&mut self, key: &str, value: Option<&str>) -> Option<Url> {
        let text = self.required(key, value)?;
        match Url::parse(text) {
            Ok(url) => {
                let loopback = url.host_str().is_some_and(crate::config::is_loopback_host);
                match url.scheme() {
                    "https" => Some(url),
                    "http" if loopback => Some(url),
                    "http" => {
                        self.error(
                            key,
                            "must use https (plain http is allowed only for localhost and loopback addresses)",
                        );
                        None
                    }
                    other => {
                        self.error(key, format!("unsupported URL scheme {other:?}"));
                        None
                    }
                }
            }
            Err(e) => {
                self.error(key, format!("not a valid URL: {e}"));
                None
            }
        }
    }

    /// Our callback as registered upstream; by default the issuer's `/callback`.
    pub fn redirect_uri(&mut self, value: Option<String>, ctx: &FactoryContext<'_>) -> String {
        let Some(text) = value else {
            return ctx.config.endpoint("/callback");
        };
        match Url::parse(&text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.fragment().is_none() => {}
            Ok(_) => self.error("redirectURI", "must be an http(s) URL without a fragment"),
            Err(e) => self.error("redirectURI", format!("not a valid URL: {e}")),
        }
        text
    }

    pub fn timeout(&mut self, value: Option<&str>) -> Duration {
        match value {
            None => super::http::DEFAULT_TIMEOUT,
            Some(text) => match crate::config::parse_duration(text) {
                Some(d) if !d.is_zero() => d,
                _ => {
                    self.error("timeout", "must be a positive duration such as \"10s\"");
                    super::http::DEFAULT_TIMEOUT
                }
            },
        }
    }

    pub fn http_client(
        &mut self,
        timeout: Duration,
        root_cas: Option<OneOrMany>,
    ) -> Option<reqwest::Client> {
        let root_cas = match root_cas {
            None => None,
            Some(OneOrMany::One(p)) => Some(p),
            Some(OneOrMany::Many(mut list)) if list.len() == 1 => list.pop(),
            Some(OneOrMany::Many(list)) if list.is_empty() => None,
            Some(OneOrMany::Many(_)) => {
                self.error(
                    "rootCAs",
                    "give one PEM file (concatenate several certificates into one bundle)",
                );
                return None;
            }
        };
        match super::http::client(timeout, root_cas.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => {
                self.error("rootCAs", e);
                None
            }
        }
    }

    pub fn scopes(&mut self, value: Option<Vec<String>>, default: &[&str]) -> Vec<String> {
        let scopes = value.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
        if scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            self.error("scopes", "each scope must be one non-empty word");
        }
        scopes
    }
}

/// How the client authenticates to the token endpoint (RFC 6749 2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum AuthStyle {
    /// HTTP Basic with the form-urlencoded id and secret (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

// ---------------------------------------------------------------------------------------------
// Per-login and per-refresh data.

/// What the core keeps in the browser session between `login_url` and the callback.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct LoginData {
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub pkce_verifier: Option<String>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl LoginData {
    pub fn encode(&self) -> Option<String> {
        if self.pkce_verifier.is_none() && self.nonce.is_none() {
            return None;
        }
        serde_json::to_string(self).ok()
    }

    pub fn decode(data: Option<&str>) -> Result<LoginData, ConnectorError> {
        match data {
            None => Ok(LoginData::default()),
            Some(text) => serde_json::from_str(text).map_err(|_| {
                ConnectorError::BadCallback(
                    "the login state kept for this upstream is unreadable".into(),
                )
            }),
        }
    }
}

/// What the core keeps with our refresh tokens so that the upstream grant can be refreshed.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RefreshData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl RefreshData {
    pub fn encode(refresh_token: Option<String>) -> Option<String> {
        let refresh_token = refresh_token?;
        serde_json::to_string(&RefreshData {
            refresh_token: Some(refresh_token),
        })
        .ok()
    }

    /// The stored upstream refresh token, if any. Data this connector cannot read (written
    /// by an older version, say) counts as none: the identity is then kept as it is.
    pub fn refresh_token(data: Option<&str>) -> Option<String> {
        data.and_then(|t| serde_json::from_str::<RefreshData>(t).ok())
            .and_then(|d| d.refresh_token)
            .filter(|t| !t.is_empty())
    }
}

// ---------------------------------------------------------------------------------------------
// Calls to the upstream.

/// A successful token response (RFC 6749 5.1), with the raw body for extra fields.
#[derive(Debug)]
pub(super) struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
}

/// A client registered upstream, with the HTTP client used to reach it.
#[derive(Clone)]
pub(super) struct UpstreamClient {
    pub http: reqwest::Client,
    /// The connector id, for the upstream latency metric.
    pub connector: String,
    pub client_id: String,
    pub client_secret: String,
    pub auth_style: AuthStyle,
}

fn unavailable(what: &str, e: &reqwest::Error) -> ConnectorError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // The reqwest error text carries the URL and cause; the user only ever sees a generic page.
    ConnectorError::Unavailable(format!("{what} {kind}: {e}"))
}

async fn read_body(what: &str, mut resp: reqwest::Response) -> Result<Vec<u8>, ConnectorError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(what, &e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ConnectorError::BadResponse(format!(
                "{what} answered more than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An error object in either shape upstreams use: RFC 6749 (`error`, `error_description`) or
/// the API style (`code`, `message`, `requestId`).
fn upstream_error(body: &Value) -> Option<ConnectorError> {
    let obj = body.as_object()?;
    let code = text_of(obj.get("error")).or_else(|| text_of(obj.get("code")))?;
    let message = text_of(obj.get("error_description"))
        .or_else(|| text_of(obj.get("message")))
        .or_else(|| text_of(obj.get("msg")))
        .unwrap_or_default();
    let request_id = text_of(obj.get("requestId"))
        .or_else(|| text_of(obj.get("request_id")))
        .or_else(|| text_of(obj.get("requestid")));
    Some(ConnectorError::Upstream {
        code,
        message,
        request_id,
    })
}

/// Classifies a non-success answer: upstream overload and outages are "unavailable" (the
/// user may retry; refresh tokens are kept), anything else is the upstream's own refusal.
fn failure(what: &str, status: StatusCode, body: &[u8]) -> ConnectorError {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return ConnectorError::Unavailable(format!("{what} answered HTTP {status}"));
    }
    if status.is_redirection() {
        return ConnectorError::BadResponse(format!(
            "{what} answered a redirect (HTTP {status}); check the configured URL"
        ));
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| upstream_error(&v))
        .unwrap_or_else(|| ConnectorError::BadResponse(format!("{what} answered HTTP {status}")))
}

impl UpstreamClient {
    /// Posts a token request and returns the tokens, or the upstream's error.
    pub async fn token(
        &self,
        url: &str,
        mut form: Vec<(&str, &str)>,
    ) -> Result<Tokens, ConnectorError> {
        const WHAT: &str = "the token endpoint";
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json");
        match self.auth_style {
            AuthStyle::Basic => {
                // RFC 6749 2.3.1: id and secret are form-urlencoded before being joined.
                let user: String =
                    url::form_urlencoded::byte_serialize(self.client_id.as_bytes()).collect();
                let pass: String =
                    url::form_urlencoded::byte_serialize(self.client_secret.as_bytes()).collect();
                let credentials = B64.encode(format!("{user}:{pass}"));
                req = req.header(
                    reqwest::header::AUTHORIZATION,
                    format!("Basic {credentials}"),
                );
            }
            AuthStyle::Post => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", &self.client_secret));
            }
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let resp = req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        let started = std::time::Instant::now();
        let resp = resp.send().await.map_err(|e| unavailable(WHAT, &e));
        crate::telemetry::upstream(&self.connector, "token", started.elapsed());
        let resp = resp?;
        let status = resp.status();
        let body = read_body(WHAT, resp).await?;
        if !status.is_success() {
            return Err(failure(WHAT, status, &body));
        }
        let json: Value = serde_json::from_slice(&body)
            .map_err(|_| ConnectorError::BadResponse(format!("{WHAT} did not answer JSON")))?;
        // Some upstreams answer errors with 200.
        if json.get("error").is_some()
            && let Some(e) = upstream_error(&json)
        {
            return Err(e);
        }
        let string = |k: &str| {
            json.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let access_token = string("access_token").ok_or_else(|| {
            ConnectorError::BadResponse(format!("{WHAT} answered without an access_token"))
        })?;
        Ok(Tokens {
            access_token,
            refresh_token: string("refresh_token"),
            id_token: string("id_token"),
        })
    }

    /// Fetches a JSON document with the access token as a Bearer credential.
    pub async fn userinfo(&self, url: &str, access_token: &str) -> Result<Value, ConnectorError> {
        const WHAT: &str = "the userinfo endpoint";
        let resp = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json");
        let started = std::time::Instant::now();
        let resp = resp.send().await.map_err(|e| unavailable(WHAT, &e));
        crate::telemetry::upstream(&self.connector, "userinfo", started.elapsed());
        let resp = resp?;
        let status = resp.status();
        let is_jwt = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/jwt"));
        let body = read_body(WHAT, resp).await?;
        if !status.is_success() {
            return Err(failure(WHAT, status, &body));
        }
        if is_jwt {
            return Err(ConnectorError::BadResponse(format!(
                "{WHAT} answered a signed JWT; configure the upstream client to return plain JSON userinfo"
            )));
        }
        let json: Value = serde_json::from_slice(&body)
            .map_err(|_| ConnectorError::BadResponse(format!("{WHAT} did not answer JSON")))?;
        if !json.is_object() {
            return Err(ConnectorError::BadResponse(format!(
                "{WHAT} did not answer a JSON object"
            )));
        }
        Ok(json)
    }
}

/// Maps a failed refresh onto what the core does next: `Denied` revokes our tokens,
/// `Unavailable` keeps them for a later try. Our own misconfiguration (a rejected client)
/// must not cost every user their session, so it counts as unavailable and is logged loudly.
pub(super) fn refresh_failure(connector_id: &str, e: ConnectorError) -> ConnectorError {
    match e {
        ConnectorError::Upstream { code, message, .. } if code == "invalid_grant" => {
            ConnectorError::Denied(format!("upstream refused the refresh token: {message}"))
        }
        ConnectorError::Upstream { code, message, .. }
            if matches!(
                code.as_str(),
                "invalid_client"
                    | "unauthorized_client"
                    | "server_error"
                    | "temporarily_unavailable"
            ) =>
        {
            tracing::error!(connector = connector_id, upstream_code = %code, message = %message, "upstream refused our client during a refresh; check the connector's client credentials");
            ConnectorError::Unavailable(format!("upstream error {code} during refresh"))
        }
        other => other,
    }
}

/// RFC 7636 S256: a random verifier and its challenge.
pub(super) fn pkce_pair() -> (String, String) {
    let (challenge, verifier) = openidconnect::PkceCodeChallenge::new_random_sha256();
    (verifier.secret().clone(), challenge.as_str().to_string())
}

pub(super) fn callback_code(params: &HashMap<String, String>) -> Result<&str, ConnectorError> {
    params
        .get("code")
        .map(String::as_str)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ConnectorError::BadCallback("the upstream sent no authorization code".into())
        })
}

// ---------------------------------------------------------------------------------------------
// The `oauth2` connector.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSettings {
    #[serde(rename = "authorizationURL")]
    authorization_url: Option<String>,
    #[serde(rename = "tokenURL")]
    token_url: Option<String>,
    #[serde(rename = "userInfoURL")]
    user_info_url: Option<String>,
    #[serde(rename = "clientID")]
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    #[serde(rename = "redirectURI")]
    redirect_uri: Option<String>,
    scopes: Option<Vec<String>>,
    token_auth_style: Option<AuthStyle>,
    #[serde(default)]
    claim_mapping: RawClaimMapping,
    success_path: Option<JsonPath>,
    #[serde(default)]
    insecure_skip_email_verified: bool,
    pkce: Option<bool>,
    timeout: Option<String>,
    #[serde(rename = "rootCAs")]
    root_cas: Option<OneOrMany>,
}

struct OAuth2Connector {
    id: String,
    client: UpstreamClient,
    authorization_url: Url,
    token_url: String,
    user_info_url: String,
    redirect_uri: String,
    scopes: Vec<String>,
    pkce: bool,
    mapping: ClaimMapping,
    success_path: Option<JsonPath>,
}

impl OAuth2Connector {
    /// Userinfo, checked against the envelope's success flag, mapped to an identity.
    async fn identity(&self, access_token: &str) -> Result<Identity, ConnectorError> {
        let body = self
            .client
            .userinfo(&self.user_info_url, access_token)
            .await?;
        check_envelope(self.success_path.as_ref(), &body)?;
        self.mapping
            .apply(&body)
            .map_err(ConnectorError::BadResponse)
    }
}

/// An envelope whose success flag is anything but JSON `true` is an upstream error, whatever
/// the HTTP status; its `code` and `message` sit next to the flag.
fn check_envelope(success_path: Option<&JsonPath>, body: &Value) -> Result<(), ConnectorError> {
    let Some(path) = success_path else {
        return Ok(());
    };
    if path.get(body) == Some(&Value::Bool(true)) {
        return Ok(());
    }
    let holder = match path.parent() {
        Some(parent) => parent.get(body).cloned().unwrap_or(Value::Null),
        None => body.clone(),
    };
    let obj = holder.as_object();
    let field = |k: &str| obj.and_then(|o| text_of(o.get(k)));
    Err(ConnectorError::Upstream {
        code: field("code")
            .or_else(|| field("errorCode"))
            .unwrap_or_else(|| format!("{path} is not true")),
        message: field("message")
            .or_else(|| field("msg"))
            .or_else(|| field("errorMessage"))
            .unwrap_or_default(),
        request_id: field("requestId").or_else(|| field("request_id")),
    })
}

#[async_trait]
impl CallbackConnector for OAuth2Connector {
    async fn login_url(
        &self,
        _callback_url: &str,
        state: &str,
    ) -> Result<LoginRedirect, ConnectorError> {
        let mut url = self.authorization_url.clone();
        let mut data = LoginData::default();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("state", state);
            if !self.scopes.is_empty() {
                q.append_pair("scope", &self.scopes.join(" "));
            }
            if self.pkce {
                let (verifier, challenge) = pkce_pair();
                q.append_pair("code_challenge", &challenge)
                    .append_pair("code_challenge_method", "S256");
                data.pkce_verifier = Some(verifier);
            }
        }
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
        let code = callback_code(params)?;
        let data = LoginData::decode(data)?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
        ];
        if let Some(v) = &data.pkce_verifier {
            form.push(("code_verifier", v));
        }
        let tokens = self.client.token(&self.token_url, form).await?;
        let mut identity = self.identity(&tokens.access_token).await?;
        identity.connector_data = RefreshData::encode(tokens.refresh_token);
        Ok(identity)
    }
}

#[async_trait]
impl RefreshConnector for OAuth2Connector {
    async fn refresh(&self, identity: Identity) -> Result<Identity, ConnectorError> {
        let Some(refresh_token) = RefreshData::refresh_token(identity.connector_data.as_deref())
        else {
            return Ok(identity);
        };
        let form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        let tokens = self
            .client
            .token(&self.token_url, form)
            .await
            .map_err(|e| refresh_failure(&self.id, e))?;
        let mut fresh = self
            .identity(&tokens.access_token)
            .await
            .map_err(|e| refresh_failure(&self.id, e))?;
        if fresh.upstream_id != identity.upstream_id {
            return Err(ConnectorError::Denied(
                "the upstream answered the refresh with a different user".into(),
            ));
        }
        fresh.connector_data = RefreshData::encode(tokens.refresh_token.or(Some(refresh_token)));
        Ok(fresh)
    }
}

pub(super) fn build(
    cc: &ConnectorConfig,
    ctx: &FactoryContext<'_>,
) -> Result<Connector, Vec<ConfigError>> {
    let raw: RawSettings = parse_settings(&cc.config, &ctx.path).map_err(|e| vec![e])?;
    let mut c = Checker::new(&ctx.path);
    let authorization_url = c.upstream_url("authorizationURL", raw.authorization_url.as_deref());
    let token_url = c.upstream_url("tokenURL", raw.token_url.as_deref());
    let user_info_url = c.upstream_url("userInfoURL", raw.user_info_url.as_deref());
    let client_id = c.required("clientID", raw.client_id.filter(|s| !s.is_empty()));
    let client_secret = c.client_secret(
        raw.client_secret,
        raw.client_secret_env,
        raw.client_secret_file,
    );
    let redirect_uri = c.redirect_uri(raw.redirect_uri, ctx);
    let scopes = c.scopes(raw.scopes, &[]);
    let timeout = c.timeout(raw.timeout.as_deref());
    let http = c.http_client(timeout, raw.root_cas);
    let (
        Some(authorization_url),
        Some(token_url),
        Some(user_info_url),
        Some(client_id),
        Some(client_secret),
        Some(http),
        true,
    ) = (
        authorization_url,
        token_url,
        user_info_url,
        client_id,
        client_secret,
        http,
        c.errors.is_empty(),
    )
    else {
        return Err(c.errors);
    };
    let connector = Arc::new(OAuth2Connector {
        id: cc.id.clone(),
        client: UpstreamClient {
            http,
            connector: cc.id.clone(),
            client_id,
            client_secret,
            auth_style: raw.token_auth_style.unwrap_or(AuthStyle::Basic),
        },
        authorization_url,
        token_url: token_url.into(),
        user_info_url: user_info_url.into(),
        redirect_uri,
        scopes,
        pkce: raw.pkce.unwrap_or(true),
        mapping: ClaimMapping::new(raw.claim_mapping, raw.insecure_skip_email_verified),
        success_path: raw.success_path,
    });
    Ok(Connector {
        id: cc.id.clone(),
        name: cc.name.clone(),
        kind_name: "oauth2".into(),
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

    fn config_with(block: &str) -> Config {
        let text = format!(
            "{BASE}connectors:\n  - type: oauth2\n    id: idaas\n    name: IDaaS\n    config:\n{block}"
        );
        Config::from_yaml_str(&text).unwrap()
    }

    fn errors(block: &str) -> Vec<ConfigError> {
        match crate::connectors::build(&config_with(block)) {
            Ok(_) => Vec::new(),
            Err(e) => e,
        }
    }

    const GOOD: &str = "      authorizationURL: https://x.login.aliyunidaas.com/oauth/authorize\n      tokenURL: https://x.login.aliyunidaas.com/oauth/token\n      userInfoURL: https://x.login.aliyunidaas.com/api/bff/v1.2/oauth2/userinfo\n      clientID: abc\n      clientSecret: s3cret\n";

    #[test]
    fn a_complete_block_builds() {
        assert_eq!(errors(GOOD), vec![]);
        let with_all = format!(
            "{GOOD}      scopes: [read]\n      tokenAuthStyle: post\n      successPath: success\n      pkce: false\n      timeout: 5s\n      claimMapping:\n        userID: data.sub\n        username: data.username\n"
        );
        assert_eq!(errors(&with_all), vec![]);
    }

    #[test]
    fn unknown_keys_are_reported_with_their_full_path() {
        let e = errors(&format!("{GOOD}      tokenUrl: https://x/\n"));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "connectors[0].config.tokenUrl");
        assert!(
            e[0].message.starts_with("unknown field"),
            "{}",
            e[0].message
        );
        let e = errors(&format!("{GOOD}      claimMapping:\n        userId: sub\n"));
        assert_eq!(e[0].path, "connectors[0].config.claimMapping.userId");
    }

    #[test]
    fn missing_secret_and_urls_are_reported() {
        let e = errors("      clientID: abc\n");
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert!(
            paths.contains(&"connectors[0].config.authorizationURL"),
            "{paths:?}"
        );
        assert!(paths.contains(&"connectors[0].config.tokenURL"));
        assert!(paths.contains(&"connectors[0].config.userInfoURL"));
        assert!(paths.contains(&"connectors[0].config.clientSecret"));
    }

    #[test]
    fn bad_urls_and_plain_http_are_refused() {
        let block = GOOD
            .replace(
                "https://x.login.aliyunidaas.com/oauth/token",
                "http://idaas.example.com/oauth/token",
            )
            .replace(
                "https://x.login.aliyunidaas.com/oauth/authorize",
                "not a url",
            );
        let e = errors(&block);
        assert!(
            e.iter()
                .any(|e| e.path.ends_with("tokenURL") && e.message.contains("https")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.path.ends_with("authorizationURL") && e.message.contains("valid URL")),
            "{e:?}"
        );
        // Loopback http is fine (simulators, sidecars).
        let block = GOOD.replace(
            "https://x.login.aliyunidaas.com/oauth/token",
            "http://127.0.0.1:9/oauth/token",
        );
        assert_eq!(errors(&block), vec![]);
    }

    #[test]
    fn secret_sources_are_exclusive_and_checked() {
        let e = errors(&format!(
            "{GOOD}      clientSecretEnv: IDBRIDGE_TEST_UNSET_SECRET_VAR\n"
        ));
        assert!(e[0].message.contains("only one"), "{e:?}");
        let block = GOOD.replace(
            "clientSecret: s3cret",
            "clientSecretEnv: IDBRIDGE_TEST_UNSET_SECRET_VAR",
        );
        let e = errors(&block);
        assert_eq!(e[0].path, "connectors[0].config.clientSecretEnv");
        let block = GOOD.replace(
            "clientSecret: s3cret",
            "clientSecretFile: /nonexistent/secret",
        );
        let e = errors(&block);
        assert_eq!(e[0].path, "connectors[0].config.clientSecretFile");
    }

    #[test]
    fn bad_values_are_reported() {
        let e = errors(&format!("{GOOD}      tokenAuthStyle: header\n"));
        assert_eq!(e[0].path, "connectors[0].config.tokenAuthStyle");
        let e = errors(&format!("{GOOD}      timeout: soon\n"));
        assert_eq!(e[0].path, "connectors[0].config.timeout");
        let e = errors(&format!("{GOOD}      successPath: \"a..b\"\n"));
        assert_eq!(e[0].path, "connectors[0].config.successPath");
        let e = errors(&format!("{GOOD}      scopes: [\"read write\"]\n"));
        assert_eq!(e[0].path, "connectors[0].config.scopes");
        let e = errors(&format!("{GOOD}      rootCAs: /nonexistent/ca.pem\n"));
        assert_eq!(e[0].path, "connectors[0].config.rootCAs");
    }

    #[test]
    fn envelope_success_flag_must_be_true() {
        let path = JsonPath::parse("success").unwrap();
        assert!(check_envelope(Some(&path), &json!({"success": true, "data": {}})).is_ok());
        assert!(check_envelope(None, &json!({"success": false})).is_ok());
        match check_envelope(
            Some(&path),
            &json!({"success": false, "code": "user.disabled", "message": "the user is disabled", "requestId": "R1"}),
        ) {
            Err(ConnectorError::Upstream {
                code,
                message,
                request_id,
            }) => {
                assert_eq!(code, "user.disabled");
                assert_eq!(message, "the user is disabled");
                assert_eq!(request_id.as_deref(), Some("R1"));
            }
            other => panic!("{other:?}"),
        }
        // The string "true" is not success, and a missing flag is not success either.
        assert!(check_envelope(Some(&path), &json!({"success": "true"})).is_err());
        match check_envelope(Some(&path), &json!({"data": {}})) {
            Err(ConnectorError::Upstream { code, .. }) => assert_eq!(code, "success is not true"),
            other => panic!("{other:?}"),
        }
        let nested = JsonPath::parse("result.ok").unwrap();
        match check_envelope(
            Some(&nested),
            &json!({"result": {"ok": false, "code": 40001}}),
        ) {
            Err(ConnectorError::Upstream { code, .. }) => assert_eq!(code, "40001"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_bodies_in_both_shapes_are_understood() {
        let e = failure(
            "t",
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant","error_description":"code used"}"#,
        );
        assert!(matches!(e, ConnectorError::Upstream { ref code, .. } if code == "invalid_grant"));
        let e = failure(
            "t",
            StatusCode::UNAUTHORIZED,
            br#"{"code":"InvalidAuthentication","message":"bad token","requestid":"R"}"#,
        );
        assert!(
            matches!(e, ConnectorError::Upstream { ref request_id, .. } if request_id.as_deref() == Some("R"))
        );
        assert!(matches!(
            failure("t", StatusCode::BAD_GATEWAY, b"<html>"),
            ConnectorError::Unavailable(_)
        ));
        assert!(matches!(
            failure("t", StatusCode::BAD_REQUEST, b"<html>"),
            ConnectorError::BadResponse(_)
        ));
        assert!(matches!(
            failure("t", StatusCode::FOUND, b""),
            ConnectorError::BadResponse(_)
        ));
    }

    #[test]
    fn refresh_failures_map_to_what_the_core_expects() {
        let up = |code: &str| ConnectorError::Upstream {
            code: code.into(),
            message: "m".into(),
            request_id: None,
        };
        assert!(matches!(
            refresh_failure("c", up("invalid_grant")),
            ConnectorError::Denied(_)
        ));
        assert!(matches!(
            refresh_failure("c", up("invalid_client")),
            ConnectorError::Unavailable(_)
        ));
        assert!(matches!(
            refresh_failure("c", up("invalid_scope")),
            ConnectorError::Upstream { .. }
        ));
    }

    #[tokio::test]
    async fn login_url_keeps_existing_query_and_sends_pkce() {
        let config = config_with(&format!(
            "{}      scopes: [read]\n",
            GOOD.replace("/oauth/authorize", "/oauth/authorize?tenant=t1")
        ));
        let connectors = crate::connectors::build(&config).unwrap();
        let Kind::Callback(cb) = &connectors.get("idaas").unwrap().kind else {
            panic!()
        };
        let r = cb
            .login_url("http://127.0.0.1:5556/callback", "req123")
            .await
            .unwrap();
        let url = Url::parse(&r.url).unwrap();
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["tenant"], "t1");
        assert_eq!(q["state"], "req123");
        assert_eq!(q["scope"], "read");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:5556/callback");
        assert_eq!(q["code_challenge_method"], "S256");
        let data = LoginData::decode(r.data.as_deref()).unwrap();
        assert!(data.pkce_verifier.is_some());
    }

    #[test]
    fn refresh_data_round_trips_and_tolerates_garbage() {
        let d = RefreshData::encode(Some("rt".into()));
        assert_eq!(
            RefreshData::refresh_token(d.as_deref()).as_deref(),
            Some("rt")
        );
        assert_eq!(RefreshData::encode(None), None);
        assert_eq!(RefreshData::refresh_token(Some("not json")), None);
        assert_eq!(RefreshData::refresh_token(None), None);
    }
}

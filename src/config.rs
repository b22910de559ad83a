//! Typed configuration, read once from Dex-shaped YAML and handed down as plain structs.
//!
//! Loading happens in two passes. The first deserialises the raw YAML with every struct
//! rejecting unknown keys, so a misspelt key is reported with its full path instead of being
//! silently ignored. The second validates the meaning of the values and collects every problem
//! it finds, so an operator can fix a file in one go.
//!
//! Secrets are read only through explicit fields (`secret`, `secretEnv`, `secretFile`). The text
//! of the file is never run through `$VAR` expansion: password hashes and secrets routinely
//! contain `$`, and expanding them silently corrupts them.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// One problem found in the configuration, located by its key path (`staticClients[1].secretEnv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Errors about the file as a whole (unreadable, not YAML) have no key to point at.
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone)]
pub struct Config {
    /// Exactly as written, trailing slash included: relying parties such as KubeSphere compare
    /// the `iss` claim and the discovery `issuer` with their configuration byte for byte.
    pub issuer: String,
    pub issuer_url: Url,
    pub storage: StorageConfig,
    pub web: WebConfig,
    pub logger: LoggerConfig,
    pub expiry: ExpiryConfig,
    pub signer: SignerConfig,
    pub oauth2: OAuth2Config,
    pub connectors: Vec<ConnectorConfig>,
    pub static_clients: Vec<StaticClient>,
    pub static_passwords: Vec<StaticPassword>,
    pub test_login: TestLoginConfig,
    pub frontend: FrontendConfig,
    pub identity: IdentityConfig,
    pub telemetry: TelemetryConfig,
    pub rate_limits: RateLimitConfig,
    /// Findings that do not stop the server but that an operator should see.
    pub warnings: Vec<ConfigError>,
}

#[derive(Clone, PartialEq, Eq)]
pub enum StorageConfig {
    Sqlite { file: PathBuf },
    Postgres { url: String, max_connections: u32 },
}

impl fmt::Debug for StorageConfig {
    // The PostgreSQL URL usually carries a password; keep it out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageConfig::Sqlite { file } => f.debug_struct("Sqlite").field("file", file).finish(),
            StorageConfig::Postgres {
                url,
                max_connections,
            } => f
                .debug_struct("Postgres")
                .field("url", &redact_url_password(url))
                .field("max_connections", max_connections)
                .finish(),
        }
    }
}

impl StorageConfig {
    /// A description safe to print: the PostgreSQL password is masked.
    pub fn describe(&self) -> String {
        match self {
            StorageConfig::Sqlite { file } => format!("sqlite ({})", file.display()),
            StorageConfig::Postgres {
                url,
                max_connections,
            } => format!(
                "postgres ({}, max {max_connections} connections)",
                redact_url_password(url)
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    pub http: Option<String>,
    pub https: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryConfig {
    pub id_tokens: Duration,
    pub access_tokens: Duration,
    pub auth_requests: Duration,
    pub auth_codes: Duration,
    pub sessions: Duration,
    pub device_requests: Duration,
    pub refresh_tokens: RefreshTokenExpiry,
    /// How long audit events are kept.
    pub audit_events: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenExpiry {
    pub valid_if_not_used_for: Duration,
    pub absolute_lifetime: Duration,
    /// How long a just-rotated refresh token is still accepted, for clients that retry a
    /// refresh whose answer they lost. Zero disables the grace period.
    pub reuse_interval: Duration,
    pub disable_rotation: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerConfig {
    pub algorithm: SigningAlgorithm,
    pub access_token_algorithm: Option<SigningAlgorithm>,
    pub keys_rotation_period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum SigningAlgorithm {
    RS256,
    ES256,
    EdDSA,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(&self) -> &'static str {
        match self {
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Config {
    pub skip_approval_screen: bool,
    pub always_show_login_screen: bool,
    /// Names never emitted as `preferred_username`; a trailing `*` matches a prefix.
    pub reserved_usernames: Vec<String>,
}

impl OAuth2Config {
    /// Whether `username` matches the deny list (case-insensitively; `system*` matches
    /// `system:admin` and `systemd`).
    pub fn is_reserved_username(&self, username: &str) -> bool {
        let username = username.to_lowercase();
        self.reserved_usernames.iter().any(|pattern| {
            let pattern = pattern.to_lowercase();
            match pattern.strip_suffix('*') {
                Some(prefix) => username.starts_with(prefix),
                None => username == pattern,
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorConfig {
    /// The connector type (`local`, `dingtalk`, ...), written `type` in YAML.
    pub kind: String,
    pub id: String,
    pub name: String,
    /// Left raw: each connector type validates its own settings.
    pub config: serde_json::Value,
}

#[derive(Clone, PartialEq, Eq)]
pub struct StaticClient {
    pub id: String,
    pub name: String,
    /// The resolved secret of a confidential client; `None` for a public client.
    pub secret: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    pub default_scopes: Vec<String>,
    pub skip_approval: bool,
    pub allowed_connectors: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub grant_types: Vec<String>,
    /// Scopes the client may ask for with the client-credentials grant (also the default
    /// when it asks for none).
    pub allowed_scopes: Vec<String>,
    /// `aud` of client-credentials access tokens (default: the client id).
    pub audience: Vec<String>,
}

impl fmt::Debug for StaticClient {
    // Keeps the client secret out of logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticClient")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("redirect_uris", &self.redirect_uris)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .field("public", &self.public)
            .field("default_scopes", &self.default_scopes)
            .field("skip_approval", &self.skip_approval)
            .field("allowed_connectors", &self.allowed_connectors)
            .field("backchannel_logout_uri", &self.backchannel_logout_uri)
            .field("grant_types", &self.grant_types)
            .field("allowed_scopes", &self.allowed_scopes)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPassword {
    pub email: String,
    pub username: String,
    /// An argon2id PHC string or a bcrypt hash; the shape is checked at load time.
    pub hash: String,
    pub user_id: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestLoginConfig {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendConfig {
    pub title: String,
}

/// Request limits (per process: each replica counts on its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Sign-in and device-code form submissions per client IP.
    pub login_per_minute: u32,
    /// Token, introspection, revocation and device-authorization requests per client IP.
    pub token_per_minute: u32,
    /// Failed password attempts for one account before each further attempt must wait.
    pub failures_before_delay: u32,
    /// The longest wait a run of failures can impose (the delay doubles up to it).
    pub max_delay: Duration,
    /// Take the client address from the first `X-Forwarded-For` entry (only behind a proxy
    /// that sets it).
    pub trust_forwarded_for: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            login_per_minute: 300,
            token_per_minute: 12000,
            failures_before_delay: 5,
            max_delay: Duration::from_secs(15 * 60),
            trust_forwarded_for: false,
        }
    }
}

/// A separate listener for metrics and probes, so they need not be public.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TelemetryConfig {
    /// host:port; `None` serves `/metrics` on the main listener.
    pub http: Option<String>,
}

/// How upstream identities become our users' names and emails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Username templates tried in order; the first that yields a valid, free, unreserved
    /// name wins. Placeholders: see [`USERNAME_PLACEHOLDERS`].
    pub username_templates: Vec<String>,
    /// Email template for users the upstream gives no email (KubeSphere requires one).
    pub email_fallback: Option<String>,
}

/// Placeholders a username or email template may use.
pub const USERNAME_PLACEHOLDERS: &[&str] = &[
    "username",
    "email_local",
    "name",
    "name_pinyin",
    "upstream_id",
    "short_id",
];

pub fn default_username_templates() -> Vec<String> {
    [
        "{username}",
        "{email_local}",
        "{name_pinyin}",
        "user-{short_id}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The placeholders used by a template, or the first malformed part.
pub fn template_placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed placeholder in {template:?}"))?;
        let name = &after[..end];
        if !USERNAME_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (known: {})",
                USERNAME_PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out.push(name);
        rest = &after[end + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched '}}' in {template:?}"));
    }
    Ok(out)
}

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const KNOWN_GRANT_TYPES: [&str; 4] = [
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
];

const DEFAULT_SQLITE_FILE: &str = "data/idbridge.db";
const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:5556";
const DEFAULT_RESERVED_USERNAMES: [&str; 4] = ["admin", "root", "system*", "kubesphere*"];

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigErrors(vec![ConfigError::new(
                "",
                format!("cannot read configuration file {}: {err}", path.display()),
            )])
        })?;
        Config::from_yaml_str(&text)
    }

    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigErrors> {
        parse(text, &|name| std::env::var(name).ok())
    }

    /// The URL of an endpoint under the issuer: `endpoint("/token")` ->
    /// `https://sso.example.com/dex/token`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer.trim_end_matches('/'), path)
    }

    /// The path prefix of the issuer (`""` or `"/dex"`), where the router is mounted.
    pub fn path_prefix(&self) -> &str {
        self.issuer_url.path().trim_end_matches('/')
    }
}

/// Parses a Go-style duration as Dex writes them: `90s`, `10m`, `1h30m`, `2160h`, `1.5h`,
/// `500ms`. A bare `0` is zero. Returns `None` for anything else (negative values included).
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = after_number
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after_number.len(), |(i, _)| i);
        let (unit, after_unit) = after_number.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return None,
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        total_nanos = total_nanos.checked_add(whole.checked_mul(unit_nanos)?)?;
        if !frac_part.is_empty() {
            // Digits beyond nanosecond precision cannot change the result for any unit here.
            let digits = &frac_part[..frac_part.len().min(18)];
            let numerator: u128 = digits.parse().ok()?;
            let denominator = 10u128.pow(u32::try_from(digits.len()).ok()?);
            total_nanos = total_nanos.checked_add(numerator * unit_nanos / denominator)?;
        }
        rest = after_unit;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).ok()?;
    let nanos = u32::try_from(total_nanos % 1_000_000_000).ok()?;
    Some(Duration::new(secs, nanos))
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `90s` -> `1m30s`).
pub fn format_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    if total == 0 && duration.subsec_nanos() == 0 {
        return "0s".to_string();
    }
    let (hours, minutes, seconds) = (total / 3600, (total % 3600) / 60, total % 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    let millis = duration.subsec_millis();
    if seconds > 0 || millis > 0 || out.is_empty() {
        if millis > 0 {
            out.push_str(&format!("{seconds}.{millis:03}s"));
        } else {
            out.push_str(&format!("{seconds}s"));
        }
    }
    out
}

/// Whether `host` (as found in a URL) is the local machine, where plain http is acceptable.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

// ---------------------------------------------------------------------------------------------
// Raw YAML shape. Everything optional here, so defaults live in one place (the conversion)
// and a missing section and an empty section (`web:`) behave the same.

/// A duration written as a Go-style string.
#[derive(Debug, Clone, Copy)]
struct YamlDuration(Duration);

impl<'de> Deserialize<'de> for YamlDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = YamlDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"10m\", \"1h30m\" or \"90s\"")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<YamlDuration, E> {
                parse_duration(value).map(YamlDuration).ok_or_else(|| {
                    E::custom(format!(
                        "invalid duration {value:?}; write it like \"10m\", \"1h30m\" or \"90s\""
                    ))
                })
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    issuer: String,
    storage: Option<RawStorage>,
    web: Option<RawWeb>,
    logger: Option<RawLogger>,
    expiry: Option<RawExpiry>,
    signer: Option<RawSigner>,
    oauth2: Option<RawOAuth2>,
    connectors: Option<Vec<RawConnector>>,
    static_clients: Option<Vec<RawStaticClient>>,
    static_passwords: Option<Vec<RawStaticPassword>>,
    test_login: Option<RawTestLogin>,
    frontend: Option<RawFrontend>,
    identity: Option<RawIdentity>,
    telemetry: Option<RawTelemetry>,
    rate_limits: Option<RawRateLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRateLimits {
    enabled: Option<bool>,
    login_per_minute: Option<u32>,
    token_per_minute: Option<u32>,
    failures_before_delay: Option<u32>,
    max_delay: Option<YamlDuration>,
    trust_forwarded_for: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTelemetry {
    http: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStorage {
    #[serde(rename = "type")]
    kind: String,
    /// Kept raw until `type` is known, so the keys are checked against the right backend.
    config: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSqlite {
    file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPostgres {
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    max_connections: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawWeb {
    http: Option<String>,
    https: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLogger {
    level: Option<String>,
    format: Option<LogFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawExpiry {
    id_tokens: Option<YamlDuration>,
    access_tokens: Option<YamlDuration>,
    auth_requests: Option<YamlDuration>,
    auth_codes: Option<YamlDuration>,
    sessions: Option<YamlDuration>,
    device_requests: Option<YamlDuration>,
    refresh_tokens: Option<RawRefreshTokens>,
    audit_events: Option<YamlDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRefreshTokens {
    valid_if_not_used_for: Option<YamlDuration>,
    absolute_lifetime: Option<YamlDuration>,
    reuse_interval: Option<YamlDuration>,
    disable_rotation: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSigner {
    algorithm: Option<SigningAlgorithm>,
    access_token_algorithm: Option<SigningAlgorithm>,
    keys_rotation_period: Option<YamlDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOAuth2 {
    skip_approval_screen: Option<bool>,
    always_show_login_screen: Option<bool>,
    reserved_usernames: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConnector {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    name: String,
    config: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStaticClient {
    id: String,
    name: Option<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(rename = "redirectURIs")]
    redirect_uris: Option<Vec<String>>,
    #[serde(rename = "postLogoutRedirectURIs")]
    post_logout_redirect_uris: Option<Vec<String>>,
    public: Option<bool>,
    default_scopes: Option<Vec<String>>,
    skip_approval: Option<bool>,
    allowed_connectors: Option<Vec<String>>,
    #[serde(rename = "backchannelLogoutURI")]
    backchannel_logout_uri: Option<String>,
    grant_types: Option<Vec<String>>,
    allowed_scopes: Option<Vec<String>>,
    audience: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStaticPassword {
    email: String,
    username: String,
    hash: String,
    #[serde(rename = "userID")]
    user_id: String,
    groups: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTestLogin {
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFrontend {
    title: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawIdentity {
    username_templates: Option<Vec<String>>,
    email_fallback: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Loading

type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Collects findings during validation so every problem is reported at once.
struct Checker<'a> {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    env: EnvLookup<'a>,
}

impl Checker<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigError::new(path, message));
    }

    /// Resolves a value given in at most one of three ways: inline, through an environment
    /// variable, or from a file (for mounted Kubernetes secrets; the trailing newline most
    /// editors and `echo` add is dropped).
    fn resolve_secret(
        &mut self,
        path: &str,
        field_names: [&str; 3],
        inline: Option<String>,
        env_name: Option<String>,
        file: Option<PathBuf>,
    ) -> Option<String> {
        let given = [inline.is_some(), env_name.is_some(), file.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            let [a, b, c] = field_names;
            self.error(path, format!("set only one of {a}, {b}, {c}"));
            return None;
        }
        let [inline_key, env_key, file_key] = field_names.map(|name| join_path(path, name));
        let (key, value) = if let Some(value) = inline {
            (inline_key, value)
        } else if let Some(name) = env_name {
            if name.is_empty() {
                self.error(env_key, "environment variable name is empty");
                return None;
            }
            match (self.env)(&name) {
                Some(value) => (env_key, value),
                None => {
                    self.error(env_key, format!("environment variable {name} is not set"));
                    return None;
                }
            }
        } else if let Some(file) = file {
            match std::fs::read_to_string(&file) {
                Ok(text) => (file_key, text.trim_end_matches(['\n', '\r']).to_string()),
                Err(err) => {
                    self.error(file_key, format!("cannot read {}: {err}", file.display()));
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

    fn positive(&mut self, path: &str, value: Option<YamlDuration>, default: Duration) -> Duration {
        match value {
            Some(YamlDuration(d)) if d.is_zero() => {
                self.error(path, "must be greater than zero");
                default
            }
            Some(YamlDuration(d)) => d,
            None => default,
        }
    }
}

fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn parse(text: &str, env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let raw: RawConfig = serde_path_to_error::deserialize(deserializer)
        .map_err(|err| ConfigErrors(vec![deserialize_error("", err)]))?;
    let mut checker = Checker {
        errors: Vec::new(),
        warnings: Vec::new(),
        env,
    };
    let config = convert(raw, &mut checker);
    if checker.errors.is_empty()
        && let Some(mut config) = config
    {
        config.warnings = checker.warnings;
        Ok(config)
    } else {
        Err(ConfigErrors(checker.errors))
    }
}

/// Turns a serde error into a path and a message meant for people: the key the problem is
/// about, without serde_yaml's own copy of the path, and the line in the file when known.
fn deserialize_error(
    prefix: &str,
    err: serde_path_to_error::Error<serde_yaml_ng::Error>,
) -> ConfigError {
    let mut path = match err.path().to_string().as_str() {
        "." => String::new(),
        p => p.to_string(),
    };
    if !prefix.is_empty() {
        path = if path.is_empty() {
            prefix.to_string()
        } else if path.starts_with('[') {
            format!("{prefix}{path}")
        } else {
            format!("{prefix}.{path}")
        };
    }
    let inner = err.into_inner();
    let location = inner.location();
    let mut message = inner.to_string();
    if let Some(loc) = &location {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    // serde_yaml prefixes messages with its own rendering of the path; ours is in `path`.
    if let Some((head, tail)) = message.split_once(": ")
        && !head.is_empty()
        && head
            .chars()
            .all(|c| c.is_alphanumeric() || "._-[]?".contains(c))
    {
        message = tail.to_string();
    }
    if let Some(field) = between_backticks(&message, "missing field `") {
        path = join_path(&path, &field);
        message = "required key is missing".to_string();
    } else if let Some(field) = between_backticks(&message, "unknown field `") {
        if !path.ends_with(field.as_str()) {
            path = join_path(&path, &field);
        }
        message = match message.split_once(", expected ") {
            Some((_, expected)) => format!("unknown field; expected {}", expected.replace('`', "")),
            None => "unknown field".to_string(),
        };
    }
    if let Some(loc) = location {
        message = format!("{message} (line {}, column {})", loc.line(), loc.column());
    }
    ConfigError::new(path, message)
}

fn between_backticks(message: &str, opening: &str) -> Option<String> {
    let rest = message.strip_prefix(opening)?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

/// Validates the raw values and builds the typed configuration. Returns `None` only when an
/// error was recorded that leaves nothing sensible to build; the caller discards the result
/// whenever any error was recorded.
fn convert(raw: RawConfig, c: &mut Checker<'_>) -> Option<Config> {
    let issuer_url = check_issuer(&raw.issuer, c);
    let storage = convert_storage(raw.storage, c);
    let web = convert_web(raw.web, c);
    let logger = convert_logger(raw.logger, c);
    let expiry = convert_expiry(raw.expiry, c);
    let signer = convert_signer(raw.signer, c);
    let oauth2 = convert_oauth2(raw.oauth2, c);
    let connectors = convert_connectors(raw.connectors.unwrap_or_default(), c);
    let connector_ids: HashSet<&str> = connectors.iter().map(|k| k.id.as_str()).collect();
    let static_clients = convert_clients(raw.static_clients.unwrap_or_default(), &connector_ids, c);
    let static_passwords = convert_passwords(raw.static_passwords.unwrap_or_default(), &oauth2, c);
    if !static_passwords.is_empty() && !connectors.iter().any(|k| k.kind == "local") {
        c.warn(
            "staticPasswords",
            "no connector of type local is configured, so these users cannot sign in",
        );
    }
    let test_login = TestLoginConfig {
        enabled: raw.test_login.and_then(|t| t.enabled).unwrap_or(false),
    };
    if test_login.enabled {
        c.warn(
            "testLogin.enabled",
            "the test-login page is enabled: it shows tokens and claims of whoever signs in there; turn it off in production",
        );
    }
    let title = raw
        .frontend
        .and_then(|f| f.title)
        .unwrap_or_else(|| "idbridge".to_string());
    if title.trim().is_empty() {
        c.error("frontend.title", "must not be empty");
    }
    let rate_limits = convert_rate_limits(raw.rate_limits, c);
    let telemetry_http = raw.telemetry.and_then(|t| t.http);
    if let Some(addr) = &telemetry_http
        && addr.parse::<std::net::SocketAddr>().is_err()
    {
        c.error(
            "telemetry.http",
            "must be host:port with an IP address, like 0.0.0.0:9090",
        );
    }
    let raw_identity = raw.identity.unwrap_or(RawIdentity {
        username_templates: None,
        email_fallback: None,
    });
    let username_templates = raw_identity
        .username_templates
        .unwrap_or_else(default_username_templates);
    if username_templates.is_empty() {
        c.error(
            "identity.usernameTemplates",
            "must list at least one template",
        );
    }
    for (i, t) in username_templates.iter().enumerate() {
        if let Err(e) = template_placeholders(t) {
            c.error(format!("identity.usernameTemplates[{i}]"), &e);
        }
    }
    if let Some(t) = &raw_identity.email_fallback {
        match template_placeholders(t) {
            Err(e) => c.error("identity.emailFallback", &e),
            Ok(_) if !t.contains('@') => c.error(
                "identity.emailFallback",
                "must produce an email address (contain '@')",
            ),
            Ok(_) => {}
        }
    }
    Some(Config {
        issuer: raw.issuer,
        issuer_url: issuer_url?,
        storage,
        web,
        logger,
        expiry,
        signer,
        oauth2,
        connectors,
        static_clients,
        static_passwords,
        test_login,
        frontend: FrontendConfig { title },
        identity: IdentityConfig {
            username_templates,
            email_fallback: raw_identity.email_fallback,
        },
        telemetry: TelemetryConfig {
            http: telemetry_http,
        },
        rate_limits,
        warnings: Vec::new(),
    })
}

fn check_issuer(issuer: &str, c: &mut Checker<'_>) -> Option<Url> {
    let url = match Url::parse(issuer) {
        Ok(url) => url,
        Err(err) => {
            c.error("issuer", format!("invalid URL {issuer:?}: {err}"));
            return None;
        }
    };
    let mut ok = true;
    if url.scheme() != "https" && url.scheme() != "http" {
        c.error(
            "issuer",
            format!("must be an http or https URL, not {}:", url.scheme()),
        );
        ok = false;
    }
    if url.host_str().is_none_or(str::is_empty) {
        c.error("issuer", "must name a host");
        ok = false;
    }
    if url.query().is_some() || url.fragment().is_some() {
        c.error("issuer", "must not have a query or a fragment");
        ok = false;
    }
    if !url.username().is_empty() || url.password().is_some() {
        c.error("issuer", "must not contain credentials");
        ok = false;
    }
    if ok && url.scheme() == "http" && !url.host_str().is_some_and(is_loopback_host) {
        c.warn(
            "issuer",
            "plain http on a non-loopback host: tokens and cookies travel unencrypted, and most \
             relying parties require https outside development",
        );
    }
    ok.then_some(url)
}

fn convert_storage(raw: Option<RawStorage>, c: &mut Checker<'_>) -> StorageConfig {
    let default = StorageConfig::Sqlite {
        file: PathBuf::from(DEFAULT_SQLITE_FILE),
    };
    let Some(raw) = raw else {
        return default;
    };
    let config = raw.config.unwrap_or(serde_yaml_ng::Value::Null);
    // An absent or empty `config:` means "all defaults".
    let config = match config {
        serde_yaml_ng::Value::Null => serde_yaml_ng::Value::Mapping(Default::default()),
        other => other,
    };
    match raw.kind.as_str() {
        // `sqlite3` is what Dex calls it.
        "sqlite" | "sqlite3" => match serde_path_to_error::deserialize::<_, RawSqlite>(config) {
            Ok(sqlite) => {
                let file = sqlite
                    .file
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_SQLITE_FILE));
                if file.as_os_str().is_empty() {
                    c.error("storage.config.file", "must not be empty");
                }
                StorageConfig::Sqlite { file }
            }
            Err(err) => {
                c.errors.push(deserialize_error("storage.config", err));
                default
            }
        },
        "postgres" => match serde_path_to_error::deserialize::<_, RawPostgres>(config) {
            Ok(pg) => {
                let url = c.resolve_secret(
                    "storage.config",
                    ["url", "urlEnv", "urlFile"],
                    pg.url,
                    pg.url_env,
                    pg.url_file,
                );
                let url = match url {
                    Some(url) => {
                        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                            c.error(
                                "storage.config.url",
                                "must be a postgres:// or postgresql:// URL",
                            );
                        }
                        url
                    }
                    None => {
                        if c.errors.iter().all(|e| !e.path.starts_with("storage.")) {
                            c.error("storage.config", "set one of url, urlEnv, urlFile");
                        }
                        String::new()
                    }
                };
                let max_connections = pg.max_connections.unwrap_or(10);
                if max_connections == 0 {
                    c.error("storage.config.maxConnections", "must be greater than zero");
                }
                StorageConfig::Postgres {
                    url,
                    max_connections,
                }
            }
            Err(err) => {
                c.errors.push(deserialize_error("storage.config", err));
                default
            }
        },
        other => {
            c.error(
                "storage.type",
                format!("unknown storage type {other:?}; expected sqlite or postgres"),
            );
            default
        }
    }
}

fn valid_listen_address(addr: &str) -> bool {
    if addr.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '-')
                && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

fn convert_web(raw: Option<RawWeb>, c: &mut Checker<'_>) -> WebConfig {
    let Some(raw) = raw else {
        return WebConfig {
            http: Some(DEFAULT_HTTP_ADDR.to_string()),
            https: None,
            tls_cert: None,
            tls_key: None,
        };
    };
    let mut web = WebConfig {
        http: raw.http,
        https: raw.https,
        tls_cert: raw.tls_cert,
        tls_key: raw.tls_key,
    };
    if web.http.is_none() && web.https.is_none() {
        web.http = Some(DEFAULT_HTTP_ADDR.to_string());
    }
    for (key, addr) in [("web.http", &web.http), ("web.https", &web.https)] {
        if let Some(addr) = addr
            && !valid_listen_address(addr)
        {
            c.error(
                key,
                format!("invalid listen address {addr:?}; expected host:port, like 0.0.0.0:5556"),
            );
        }
    }
    if web.https.is_some() {
        if web.tls_cert.is_none() {
            c.error("web.tlsCert", "required when web.https is set");
        }
        if web.tls_key.is_none() {
            c.error("web.tlsKey", "required when web.https is set");
        }
    } else if web.tls_cert.is_some() || web.tls_key.is_some() {
        c.warn(
            "web",
            "tlsCert and tlsKey are ignored because web.https is not set",
        );
    }
    web
}

/// A level, or a comma-separated list of `level` and `target=level` directives as RUST_LOG
/// takes them. A bare word that is not a level is refused: the log filter would read it as a
/// module name and silently log everything from that module only.
fn is_log_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    !filter.trim().is_empty()
        && filter.split(',').all(|directive| {
            let directive = directive.trim();
            let (target, level) = match directive.rsplit_once('=') {
                Some((target, level)) => (Some(target), level),
                None => (None, directive),
            };
            target.is_none_or(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
            }) && LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level))
        })
}

fn convert_logger(raw: Option<RawLogger>, c: &mut Checker<'_>) -> LoggerConfig {
    let (level, format) = match raw {
        Some(raw) => (raw.level, raw.format),
        None => (None, None),
    };
    let level = level.unwrap_or_else(|| "info".to_string());
    if !is_log_filter(&level) {
        c.error(
            "logger.level",
            format!(
                "invalid level {level:?}; expected trace, debug, info, warn or error, \
                 optionally with per-module overrides such as \"info,sqlx=warn\""
            ),
        );
    }
    LoggerConfig {
        level,
        format: format.unwrap_or(LogFormat::Text),
    }
}

fn convert_rate_limits(raw: Option<RawRateLimits>, c: &mut Checker<'_>) -> RateLimitConfig {
    let d = RateLimitConfig::default();
    let Some(raw) = raw else {
        return d;
    };
    let mut per_minute = |path: &str, v: Option<u32>, default: u32| match v {
        Some(0) => {
            c.error(
                path,
                "must be greater than zero (set rateLimits.enabled: false to turn limits off)",
            );
            default
        }
        Some(n) => n,
        None => default,
    };
    let login_per_minute = per_minute(
        "rateLimits.loginPerMinute",
        raw.login_per_minute,
        d.login_per_minute,
    );
    let token_per_minute = per_minute(
        "rateLimits.tokenPerMinute",
        raw.token_per_minute,
        d.token_per_minute,
    );
    let failures_before_delay = per_minute(
        "rateLimits.failuresBeforeDelay",
        raw.failures_before_delay,
        d.failures_before_delay,
    );
    RateLimitConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        login_per_minute,
        token_per_minute,
        failures_before_delay,
        max_delay: c.positive("rateLimits.maxDelay", raw.max_delay, d.max_delay),
        trust_forwarded_for: raw.trust_forwarded_for.unwrap_or(d.trust_forwarded_for),
    }
}

fn convert_expiry(raw: Option<RawExpiry>, c: &mut Checker<'_>) -> ExpiryConfig {
    const HOUR: u64 = 3600;
    let raw = raw.unwrap_or(RawExpiry {
        id_tokens: None,
        access_tokens: None,
        auth_requests: None,
        auth_codes: None,
        sessions: None,
        device_requests: None,
        refresh_tokens: None,
        audit_events: None,
    });
    let refresh = raw.refresh_tokens.unwrap_or(RawRefreshTokens {
        valid_if_not_used_for: None,
        absolute_lifetime: None,
        reuse_interval: None,
        disable_rotation: None,
    });
    let secs = Duration::from_secs;
    let refresh_tokens = RefreshTokenExpiry {
        valid_if_not_used_for: c.positive(
            "expiry.refreshTokens.validIfNotUsedFor",
            refresh.valid_if_not_used_for,
            secs(720 * HOUR),
        ),
        absolute_lifetime: c.positive(
            "expiry.refreshTokens.absoluteLifetime",
            refresh.absolute_lifetime,
            secs(2160 * HOUR),
        ),
        reuse_interval: refresh.reuse_interval.map_or(Duration::ZERO, |d| d.0),
        disable_rotation: refresh.disable_rotation.unwrap_or(false),
    };
    if refresh_tokens.valid_if_not_used_for > refresh_tokens.absolute_lifetime {
        c.warn(
            "expiry.refreshTokens.validIfNotUsedFor",
            "longer than absoluteLifetime, which therefore always applies first",
        );
    }
    ExpiryConfig {
        id_tokens: c.positive("expiry.idTokens", raw.id_tokens, secs(HOUR)),
        access_tokens: c.positive("expiry.accessTokens", raw.access_tokens, secs(HOUR)),
        auth_requests: c.positive("expiry.authRequests", raw.auth_requests, secs(600)),
        auth_codes: c.positive("expiry.authCodes", raw.auth_codes, secs(120)),
        sessions: c.positive("expiry.sessions", raw.sessions, secs(12 * HOUR)),
        device_requests: c.positive("expiry.deviceRequests", raw.device_requests, secs(300)),
        refresh_tokens,
        audit_events: c.positive("expiry.auditEvents", raw.audit_events, secs(2160 * HOUR)),
    }
}

fn convert_signer(raw: Option<RawSigner>, c: &mut Checker<'_>) -> SignerConfig {
    let (algorithm, access_token_algorithm, period) = match raw {
        Some(raw) => (
            raw.algorithm,
            raw.access_token_algorithm,
            raw.keys_rotation_period,
        ),
        None => (None, None, None),
    };
    let algorithm = algorithm.unwrap_or(SigningAlgorithm::RS256);
    if algorithm != SigningAlgorithm::RS256 {
        c.warn(
            "signer.algorithm",
            "KubeSphere 3.x and the Kubernetes API server (by default) verify RS256 ID tokens only",
        );
    }
    SignerConfig {
        algorithm,
        access_token_algorithm,
        keys_rotation_period: c.positive(
            "signer.keysRotationPeriod",
            period,
            Duration::from_secs(6 * 3600),
        ),
    }
}

fn convert_oauth2(raw: Option<RawOAuth2>, c: &mut Checker<'_>) -> OAuth2Config {
    let (skip, always, reserved) = match raw {
        Some(raw) => (
            raw.skip_approval_screen,
            raw.always_show_login_screen,
            raw.reserved_usernames,
        ),
        None => (None, None, None),
    };
    let reserved_usernames =
        reserved.unwrap_or_else(|| DEFAULT_RESERVED_USERNAMES.map(String::from).to_vec());
    for (i, name) in reserved_usernames.iter().enumerate() {
        if name.trim().is_empty() || name == "*" {
            c.error(
                format!("oauth2.reservedUsernames[{i}]"),
                "must be a name or a prefix followed by *",
            );
        } else if name.strip_suffix('*').unwrap_or(name).contains('*') {
            c.error(
                format!("oauth2.reservedUsernames[{i}]"),
                "* is only allowed at the end (prefix match)",
            );
        }
    }
    OAuth2Config {
        skip_approval_screen: skip.unwrap_or(false),
        always_show_login_screen: always.unwrap_or(false),
        reserved_usernames,
    }
}

fn is_url_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}

fn convert_connectors(raw: Vec<RawConnector>, c: &mut Checker<'_>) -> Vec<ConnectorConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, connector) in raw.into_iter().enumerate() {
        let path = format!("connectors[{i}]");
        if !is_url_safe_id(&connector.id) {
            c.error(
                format!("{path}.id"),
                format!(
                    "invalid id {:?}: use letters, digits, _ and - only (it appears in URLs)",
                    connector.id
                ),
            );
        } else if !seen.insert(connector.id.clone()) {
            c.error(
                format!("{path}.id"),
                format!("duplicate connector id {:?}", connector.id),
            );
        }
        if connector.kind.trim().is_empty() {
            c.error(format!("{path}.type"), "must not be empty");
        }
        if connector.name.trim().is_empty() {
            c.error(format!("{path}.name"), "must not be empty");
        }
        out.push(ConnectorConfig {
            kind: connector.kind,
            id: connector.id,
            name: connector.name,
            config: connector.config.unwrap_or(serde_json::Value::Null),
        });
    }
    out
}

/// How strictly a URI registered for a client is checked.
#[derive(Clone, Copy)]
enum UriRule {
    /// Browser redirects: http(s), or a private-use scheme for public (native) clients.
    Redirect { public: bool },
    /// Server-to-server calls: http(s) only.
    Backchannel,
}

fn check_client_uri(path: &str, uri: &str, rule: UriRule, c: &mut Checker<'_>) {
    let url = match Url::parse(uri) {
        Ok(url) => url,
        Err(err) => {
            c.error(path, format!("invalid absolute URL {uri:?}: {err}"));
            return;
        }
    };
    if url.fragment().is_some() {
        c.error(path, "must not contain a fragment (#...)");
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            if !url.host_str().is_some_and(is_loopback_host) {
                c.warn(
                    path,
                    format!("{uri} uses plain http on a non-loopback host"),
                );
            }
        }
        "javascript" | "data" | "file" | "vbscript" | "blob" => {
            c.error(path, format!("scheme {:?} is not allowed", url.scheme()));
        }
        scheme => match rule {
            UriRule::Redirect { public: true } => {}
            UriRule::Redirect { public: false } => c.error(
                path,
                format!("scheme {scheme:?} is only allowed for public (native) clients; use https"),
            ),
            UriRule::Backchannel => c.error(path, "must be an http or https URL"),
        },
    }
}

fn convert_clients(
    raw: Vec<RawStaticClient>,
    connector_ids: &HashSet<&str>,
    c: &mut Checker<'_>,
) -> Vec<StaticClient> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, client) in raw.into_iter().enumerate() {
        let path = format!("staticClients[{i}]");
        let key = |name: &str| format!("{path}.{name}");
        if client.id.is_empty() {
            c.error(key("id"), "must not be empty");
        } else if client
            .id
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
        {
            c.error(key("id"), "must not contain spaces or control characters");
        } else if !seen.insert(client.id.clone()) {
            c.error(key("id"), format!("duplicate client id {:?}", client.id));
        }
        let public = client.public.unwrap_or(false);
        let secret = if public {
            if client.secret.is_some()
                || client.secret_env.is_some()
                || client.secret_file.is_some()
            {
                c.error(
                    path.clone(),
                    "a public client has no secret: remove secret, secretEnv and secretFile",
                );
            }
            None
        } else {
            let count = usize::from(client.secret.is_some())
                + usize::from(client.secret_env.is_some())
                + usize::from(client.secret_file.is_some());
            if count == 0 {
                c.error(
                    path.clone(),
                    "a confidential client needs one of secret, secretEnv, secretFile \
                     (or public: true)",
                );
            }
            c.resolve_secret(
                &path,
                ["secret", "secretEnv", "secretFile"],
                client.secret,
                client.secret_env,
                client.secret_file,
            )
        };

        let grant_types = client.grant_types.unwrap_or_else(|| {
            vec![
                GRANT_AUTHORIZATION_CODE.to_string(),
                GRANT_REFRESH_TOKEN.to_string(),
            ]
        });
        let mut seen_grants = HashSet::new();
        for (g, grant) in grant_types.iter().enumerate() {
            let gpath = format!("{path}.grantTypes[{g}]");
            if !KNOWN_GRANT_TYPES.contains(&grant.as_str()) {
                c.error(
                    gpath,
                    format!(
                        "unknown grant type {grant:?}; expected one of {}",
                        KNOWN_GRANT_TYPES.join(", ")
                    ),
                );
            } else if !seen_grants.insert(grant.as_str()) {
                c.error(gpath, format!("{grant} is listed twice"));
            } else if public && grant == GRANT_CLIENT_CREDENTIALS {
                c.error(gpath, "a public client cannot use client_credentials");
            }
        }
        if grant_types.is_empty() {
            c.error(key("grantTypes"), "must list at least one grant type");
        }

        let redirect_uris = client.redirect_uris.unwrap_or_default();
        if redirect_uris.is_empty() && grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) {
            c.error(
                key("redirectURIs"),
                "at least one redirect URI is needed for the authorization_code grant",
            );
        }
        for (u, uri) in redirect_uris.iter().enumerate() {
            check_client_uri(
                &format!("{path}.redirectURIs[{u}]"),
                uri,
                UriRule::Redirect { public },
                c,
            );
        }
        let post_logout_redirect_uris = client.post_logout_redirect_uris.unwrap_or_default();
        for (u, uri) in post_logout_redirect_uris.iter().enumerate() {
            check_client_uri(
                &format!("{path}.postLogoutRedirectURIs[{u}]"),
                uri,
                UriRule::Redirect { public },
                c,
            );
        }
        if let Some(uri) = &client.backchannel_logout_uri {
            check_client_uri(&key("backchannelLogoutURI"), uri, UriRule::Backchannel, c);
        }

        let default_scopes = client.default_scopes.unwrap_or_default();
        for (s, scope) in default_scopes.iter().enumerate() {
            if scope.is_empty() || scope.chars().any(|ch| ch.is_whitespace() || ch == '"') {
                c.error(
                    format!("{path}.defaultScopes[{s}]"),
                    format!("invalid scope {scope:?}: one scope per list entry, no spaces"),
                );
            }
        }
        if !default_scopes.is_empty() && !default_scopes.iter().any(|s| s == "openid") {
            c.warn(
                key("defaultScopes"),
                "does not contain openid, so a request without scope gets no ID token",
            );
        }

        let allowed_connectors = client.allowed_connectors.unwrap_or_default();
        for (a, id) in allowed_connectors.iter().enumerate() {
            if !connector_ids.contains(id.as_str()) {
                c.error(
                    format!("{path}.allowedConnectors[{a}]"),
                    format!("no connector has the id {id:?}"),
                );
            }
        }

        let name = client.name.unwrap_or_else(|| client.id.clone());
        out.push(StaticClient {
            id: client.id,
            name,
            secret,
            redirect_uris,
            post_logout_redirect_uris,
            public,
            default_scopes,
            skip_approval: client.skip_approval.unwrap_or(false),
            allowed_connectors,
            backchannel_logout_uri: client.backchannel_logout_uri,
            grant_types,
            allowed_scopes: client.allowed_scopes.unwrap_or_default(),
            audience: client.audience.unwrap_or_default(),
        });
    }
    out
}

/// The shape of a stored password hash, so a truncated or mangled hash (a `$` eaten by a
/// shell, say) is caught at start-up rather than at the first failed login.
fn check_password_hash(hash: &str) -> Result<(), String> {
    if hash.starts_with("$argon2") {
        if !hash.starts_with("$argon2id$") {
            return Err("only the argon2id variant of argon2 is accepted".to_string());
        }
        let parsed = argon2::PasswordHash::new(hash)
            .map_err(|err| format!("not a valid argon2id PHC string: {err}"))?;
        if parsed.hash.is_none() || parsed.salt.is_none() {
            return Err("the argon2 PHC string lacks its salt or hash".to_string());
        }
        return Ok(());
    }
    let is_bcrypt = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix))
        && hash.len() == 60
        && hash.as_bytes()[4..6].iter().all(u8::is_ascii_digit)
        && hash.as_bytes()[6] == b'$'
        && hash[7..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
    if is_bcrypt {
        Ok(())
    } else {
        Err(
            "expected an argon2id PHC string ($argon2id$...) or a bcrypt hash ($2b$...); \
             generate one with `idbridge hash-password`"
                .to_string(),
        )
    }
}

/// KubeSphere turns usernames into Kubernetes object names: a lowercase RFC 1123 name.
fn is_kubesphere_username(name: &str) -> bool {
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

/// KubeSphere 3.x stores the subject as a Kubernetes label value.
fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

fn convert_passwords(
    raw: Vec<RawStaticPassword>,
    oauth2: &OAuth2Config,
    c: &mut Checker<'_>,
) -> Vec<StaticPassword> {
    let mut emails = HashSet::new();
    let mut usernames = HashSet::new();
    let mut user_ids = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, user) in raw.into_iter().enumerate() {
        let key = |name: &str| format!("staticPasswords[{i}].{name}");
        let email_ok = user
            .email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !user.email.chars().any(char::is_whitespace);
        if !email_ok {
            c.error(key("email"), format!("invalid email {:?}", user.email));
        } else if !emails.insert(user.email.to_lowercase()) {
            c.error(key("email"), format!("duplicate email {:?}", user.email));
        }
        if user.username.trim().is_empty() {
            c.error(key("username"), "must not be empty");
        } else if !usernames.insert(user.username.to_lowercase()) {
            c.error(
                key("username"),
                format!("duplicate username {:?}", user.username),
            );
        } else if oauth2.is_reserved_username(&user.username) {
            c.error(
                key("username"),
                format!(
                    "{:?} matches oauth2.reservedUsernames; relying parties could map it to a \
                     privileged account",
                    user.username
                ),
            );
        } else if !is_kubesphere_username(&user.username) {
            c.warn(
                key("username"),
                "KubeSphere accepts only lowercase letters, digits, - and . (at most 32 characters)",
            );
        }
        if let Err(message) = check_password_hash(&user.hash) {
            c.error(key("hash"), message);
        }
        if user.user_id.is_empty() {
            c.error(key("userID"), "must not be empty");
        } else if !user_ids.insert(user.user_id.clone()) {
            c.error(
                key("userID"),
                format!("duplicate userID {:?}", user.user_id),
            );
        } else if !is_label_value(&user.user_id) {
            c.warn(
                key("userID"),
                "KubeSphere 3.x needs a subject of at most 63 letters, digits, -, _ or .",
            );
        }
        let groups = user.groups.unwrap_or_default();
        for (g, group) in groups.iter().enumerate() {
            if group.trim().is_empty() {
                c.error(
                    format!("staticPasswords[{i}].groups[{g}]"),
                    "must not be empty",
                );
            }
        }
        out.push(StaticPassword {
            email: user.email,
            username: user.username,
            hash: user.hash,
            user_id: user.user_id,
            groups,
        });
    }
    out
}

fn redact_url_password(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have credentials, which this one evidently has.
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable URL>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
issuer: https://sso.example.com/dex
connectors:
  - type: local
    id: local
    name: Email
staticClients:
  - id: kubesphere
    secret: s3cret
    redirectURIs: [https://ks.example.com/oauth/redirect/idbridge]
";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        parse(text, &no_env)
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match load(text) {
            Ok(config) => panic!("expected errors, got {config:?}"),
            Err(errors) => errors.0,
        }
    }

    fn has_error(errors: &[ConfigError], path: &str, fragment: &str) -> bool {
        errors
            .iter()
            .any(|e| e.path == path && e.message.contains(fragment))
    }

    #[track_caller]
    fn assert_error(text: &str, path: &str, fragment: &str) {
        let errors = errors(text);
        assert!(
            has_error(&errors, path, fragment),
            "no error at {path:?} containing {fragment:?} in {errors:#?}"
        );
    }

    #[test]
    fn minimal_config_gets_all_defaults() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(config.issuer, "https://sso.example.com/dex");
        assert_eq!(config.path_prefix(), "/dex");
        assert_eq!(
            config.endpoint("/token"),
            "https://sso.example.com/dex/token"
        );
        assert_eq!(
            config.storage,
            StorageConfig::Sqlite {
                file: PathBuf::from("data/idbridge.db")
            }
        );
        assert_eq!(config.web.http.as_deref(), Some("127.0.0.1:5556"));
        assert_eq!(config.web.https, None);
        assert_eq!(config.logger.level, "info");
        assert_eq!(config.logger.format, LogFormat::Text);
        let h = |n: u64| Duration::from_secs(n * 3600);
        let e = &config.expiry;
        assert_eq!(e.id_tokens, h(1));
        assert_eq!(e.access_tokens, h(1));
        assert_eq!(e.auth_requests, Duration::from_secs(600));
        assert_eq!(e.auth_codes, Duration::from_secs(120));
        assert_eq!(e.sessions, h(12));
        assert_eq!(e.device_requests, Duration::from_secs(300));
        assert_eq!(e.refresh_tokens.valid_if_not_used_for, h(720));
        assert_eq!(e.refresh_tokens.absolute_lifetime, h(2160));
        assert_eq!(e.refresh_tokens.reuse_interval, Duration::ZERO);
        assert!(!e.refresh_tokens.disable_rotation);
        assert_eq!(config.signer.algorithm, SigningAlgorithm::RS256);
        assert_eq!(config.signer.access_token_algorithm, None);
        assert_eq!(config.signer.keys_rotation_period, h(6));
        assert!(!config.oauth2.skip_approval_screen);
        assert!(!config.oauth2.always_show_login_screen);
        assert_eq!(
            config.oauth2.reserved_usernames,
            ["admin", "root", "system*", "kubesphere*"]
        );
        assert_eq!(config.connectors.len(), 1);
        assert_eq!(config.connectors[0].kind, "local");
        assert_eq!(config.connectors[0].config, serde_json::Value::Null);
        let client = &config.static_clients[0];
        assert_eq!(client.name, "kubesphere");
        assert_eq!(client.secret.as_deref(), Some("s3cret"));
        assert!(!client.public);
        assert_eq!(client.grant_types, ["authorization_code", "refresh_token"]);
        assert!(client.default_scopes.is_empty());
        assert!(client.post_logout_redirect_uris.is_empty());
        assert!(config.static_passwords.is_empty());
        assert!(!config.test_login.enabled);
        assert_eq!(config.frontend.title, "idbridge");
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn issuer_without_path_has_empty_prefix_and_keeps_trailing_slash() {
        let text = MINIMAL.replace("https://sso.example.com/dex", "https://sso.example.com/");
        let config = load(&text).unwrap();
        assert_eq!(config.issuer, "https://sso.example.com/");
        assert_eq!(config.path_prefix(), "");
        assert_eq!(config.endpoint("/keys"), "https://sso.example.com/keys");

        let text = MINIMAL.replace(
            "https://sso.example.com/dex",
            "https://sso.example.com/dex/",
        );
        let config = load(&text).unwrap();
        assert_eq!(config.issuer, "https://sso.example.com/dex/");
        assert_eq!(config.path_prefix(), "/dex");
        assert_eq!(
            config.endpoint("/.well-known/openid-configuration"),
            "https://sso.example.com/dex/.well-known/openid-configuration"
        );
    }

    #[test]
    fn invalid_issuers_are_rejected() {
        for issuer in [
            "sso.example.com",
            "ftp://sso.example.com",
            "https://sso.example.com/?tenant=a",
            "https://sso.example.com/#x",
            "https://user:pw@sso.example.com",
        ] {
            let text = MINIMAL.replace("https://sso.example.com/dex", issuer);
            let errors = errors(&text);
            assert!(
                errors.iter().any(|e| e.path == "issuer"),
                "{issuer}: {errors:?}"
            );
        }
        assert_error("connectors: []\n", "issuer", "required key is missing");
    }

    #[test]
    fn http_issuer_warns_only_off_loopback() {
        let text = MINIMAL.replace("https://sso.example.com/dex", "http://127.0.0.1:5556");
        assert!(load(&text).unwrap().warnings.is_empty());
        let text = MINIMAL.replace("https://sso.example.com/dex", "http://localhost:5556");
        assert!(load(&text).unwrap().warnings.is_empty());
        let text = MINIMAL.replace("https://sso.example.com/dex", "http://sso.example.com");
        let config = load(&text).unwrap();
        assert!(config.warnings.iter().any(|w| w.path == "issuer"));
    }

    #[test]
    fn unknown_keys_are_reported_with_their_path() {
        assert_error(
            &format!("{MINIMAL}enablePasswordDB: true\n"),
            "enablePasswordDB",
            "unknown field",
        );
        assert_error(
            &format!("{MINIMAL}expiry:\n  refreshTokens:\n    reuseIntervall: 3s\n"),
            "expiry.refreshTokens.reuseIntervall",
            "unknown field; expected one of validIfNotUsedFor",
        );
        let text = format!(
            "{MINIMAL}  - id: second\n    public: true\n    redirectURls: [http://127.0.0.1/cb]\n"
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "staticClients[1].redirectURls");
        assert!(errors[0].message.starts_with("unknown field"), "{errors:?}");
        assert!(errors[0].message.contains("line 12"), "{errors:?}");
        assert_error(
            &format!("{MINIMAL}storage:\n  type: sqlite\n  config:\n    path: x.db\n"),
            "storage.config.path",
            "unknown field",
        );
    }

    #[test]
    fn bad_durations_are_reported_with_their_path() {
        assert_error(
            &format!("{MINIMAL}expiry:\n  idTokens: 10 mins\n"),
            "expiry.idTokens",
            "invalid duration \"10 mins\"",
        );
        assert_error(
            &format!("{MINIMAL}expiry:\n  authCodes: 0s\n"),
            "expiry.authCodes",
            "greater than zero",
        );
        assert_error(
            &format!("{MINIMAL}signer:\n  keysRotationPeriod: -6h\n"),
            "signer.keysRotationPeriod",
            "invalid duration",
        );
        let config = load(&format!(
            "{MINIMAL}expiry:\n  refreshTokens:\n    reuseInterval: 0s\n"
        ))
        .unwrap();
        assert_eq!(config.expiry.refresh_tokens.reuse_interval, Duration::ZERO);
    }

    #[test]
    fn durations_parse_like_go() {
        let d = |s| parse_duration(s);
        assert_eq!(d("90s"), Some(Duration::from_secs(90)));
        assert_eq!(d("10m"), Some(Duration::from_secs(600)));
        assert_eq!(d("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(d("2160h"), Some(Duration::from_secs(2160 * 3600)));
        assert_eq!(d("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(d("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        for bad in ["", "10", "10 mins", "1d", "h", "-1s", "1h 30m", ".s"] {
            assert_eq!(d(bad), None, "{bad}");
        }
        assert_eq!(
            format_duration(Duration::from_secs(5400)),
            "1h30m0s".replace("0s", "")
        );
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn semantic_errors_are_all_collected() {
        let text = "\
issuer: https://sso.example.com
connectors:
  - {type: local, id: local, name: Email}
  - {type: local, id: local, name: Again}
  - {type: dingtalk, id: 'ding talk', name: DingTalk}
staticClients:
  - id: app
    secret: a
    redirectURIs: [https://app.example.com/cb]
  - id: app
    public: true
    redirectURIs: ['https://app.example.com/cb#frag', /relative]
    allowedConnectors: [nope]
    grantTypes: [authorization_code, implicit, client_credentials]
";
        let errors = errors(text);
        for (path, fragment) in [
            ("connectors[1].id", "duplicate connector id"),
            ("connectors[2].id", "invalid id"),
            ("staticClients[1].id", "duplicate client id"),
            ("staticClients[1].redirectURIs[0]", "fragment"),
            ("staticClients[1].redirectURIs[1]", "invalid absolute URL"),
            ("staticClients[1].allowedConnectors[0]", "no connector"),
            ("staticClients[1].grantTypes[1]", "unknown grant type"),
            ("staticClients[1].grantTypes[2]", "public client"),
        ] {
            assert!(
                has_error(&errors, path, fragment),
                "missing {path}: {fragment} in {errors:#?}"
            );
        }
    }

    #[test]
    fn duplicate_client_ids_are_rejected() {
        let text = format!(
            "{MINIMAL}  - id: kubesphere\n    public: true\n    redirectURIs: [http://127.0.0.1/cb]\n"
        );
        assert_error(
            &text,
            "staticClients[1].id",
            "duplicate client id \"kubesphere\"",
        );
    }

    #[test]
    fn secrets_come_from_env_or_file() {
        let text = MINIMAL.replace("secret: s3cret", "secretEnv: KS_SECRET");
        let env = |name: &str| (name == "KS_SECRET").then(|| "from-env$HOME".to_string());
        let config = parse(&text, &env).unwrap();
        assert_eq!(
            config.static_clients[0].secret.as_deref(),
            Some("from-env$HOME")
        );
        assert_error(&text, "staticClients[0].secretEnv", "KS_SECRET is not set");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let text = MINIMAL.replace("secret: s3cret", &format!("secretFile: {}", file.display()));
        let config = load(&text).unwrap();
        assert_eq!(
            config.static_clients[0].secret.as_deref(),
            Some("from-file")
        );

        let text = MINIMAL.replace("secret: s3cret", "secretFile: /nonexistent/secret");
        assert_error(&text, "staticClients[0].secretFile", "cannot read");
    }

    #[test]
    fn secret_sources_are_exclusive_and_required() {
        let text = MINIMAL.replace("secret: s3cret", "redirectURIs: []\n    name: x");
        let text = text.replace("    redirectURIs: []\n", "");
        assert_error(&text, "staticClients[0]", "needs one of secret");
        let text = MINIMAL.replace("secret: s3cret", "secret: a\n    secretEnv: B");
        assert_error(&text, "staticClients[0]", "only one of");
        let text = MINIMAL.replace("secret: s3cret", "secret: a\n    public: true");
        assert_error(&text, "staticClients[0]", "public client has no secret");
        let text = MINIMAL.replace("secret: s3cret", "secret: ''");
        assert_error(&text, "staticClients[0].secret", "empty");
    }

    #[test]
    fn dollar_text_is_kept_literally() {
        let text = MINIMAL.replace("secret: s3cret", "secret: \"pa$$word-$HOME-${USER}\"");
        let config = Config::from_yaml_str(&text).unwrap();
        assert_eq!(
            config.static_clients[0].secret.as_deref(),
            Some("pa$$word-$HOME-${USER}")
        );
    }

    #[test]
    fn postgres_url_from_env() {
        let text = format!(
            "{MINIMAL}storage:\n  type: postgres\n  config:\n    urlEnv: DB_URL\n    maxConnections: 4\n"
        );
        let env = |name: &str| {
            (name == "DB_URL").then(|| "postgres://idb:p%40ss@db:5432/idbridge".to_string())
        };
        let config = parse(&text, &env).unwrap();
        assert_eq!(
            config.storage,
            StorageConfig::Postgres {
                url: "postgres://idb:p%40ss@db:5432/idbridge".to_string(),
                max_connections: 4
            }
        );
        let shown = format!("{:?} {}", config.storage, config.storage.describe());
        assert!(!shown.contains("p%40ss"), "{shown}");
        assert_error(&text, "storage.config.urlEnv", "DB_URL is not set");

        let text = format!("{MINIMAL}storage:\n  type: postgres\n");
        assert_error(&text, "storage.config", "set one of url, urlEnv, urlFile");
        let text = format!("{MINIMAL}storage:\n  type: mysql\n");
        assert_error(&text, "storage.type", "unknown storage type");
    }

    #[test]
    fn redirect_uri_rules() {
        let text = MINIMAL.replace(
            "https://ks.example.com/oauth/redirect/idbridge",
            "http://ks.example.com/cb",
        );
        let config = load(&text).unwrap();
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.path == "staticClients[0].redirectURIs[0]"),
            "{:?}",
            config.warnings
        );
        let text = MINIMAL.replace(
            "https://ks.example.com/oauth/redirect/idbridge",
            "com.example.app:/cb",
        );
        assert_error(&text, "staticClients[0].redirectURIs[0]", "public (native)");
        let text = format!(
            "{MINIMAL}  - id: cli\n    public: true\n    redirectURIs: ['com.example.app:/cb', 'http://[::1]/cb']\n"
        );
        assert!(load(&text).unwrap().warnings.is_empty());
        let text = MINIMAL.replace(
            "https://ks.example.com/oauth/redirect/idbridge",
            "javascript:alert(1)",
        );
        assert_error(&text, "staticClients[0].redirectURIs[0]", "not allowed");
    }

    #[test]
    fn static_passwords_are_checked() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$6+ZKYyf7vFEkiikOEIlChA$FyegNxq8Q3MBynrwsTKN3BpTb6r8hsYveCXsBRIqTiw";
        let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        let text = format!(
            "{MINIMAL}staticPasswords:
  - {{email: a@example.com, username: alice, hash: '{hash}', userID: u1}}
  - {{email: A@example.com, username: Alice, hash: '{bcrypt}', userID: u1}}
  - {{email: nope, username: admin, hash: '$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA', userID: u3}}
  - {{email: c@example.com, username: systemd, hash: 'plain', userID: u4}}
"
        );
        let errors = errors(&text);
        for (path, fragment) in [
            ("staticPasswords[1].email", "duplicate email"),
            ("staticPasswords[1].username", "duplicate username"),
            ("staticPasswords[1].userID", "duplicate userID"),
            ("staticPasswords[2].email", "invalid email"),
            ("staticPasswords[2].username", "reservedUsernames"),
            ("staticPasswords[2].hash", "argon2id"),
            ("staticPasswords[3].username", "reservedUsernames"),
            ("staticPasswords[3].hash", "hash-password"),
        ] {
            assert!(
                has_error(&errors, path, fragment),
                "missing {path}: {fragment} in {errors:#?}"
            );
        }
        assert!(!errors.iter().any(|e| e.path == "staticPasswords[0].hash"));
        assert!(!errors.iter().any(|e| e.path == "staticPasswords[1].hash"));
    }

    #[test]
    fn reserved_usernames_match_names_and_prefixes() {
        let oauth2 = load(MINIMAL).unwrap().oauth2;
        assert!(oauth2.is_reserved_username("admin"));
        assert!(oauth2.is_reserved_username("ADMIN"));
        assert!(oauth2.is_reserved_username("system:serviceaccount"));
        assert!(oauth2.is_reserved_username("kubesphere-admin"));
        assert!(!oauth2.is_reserved_username("administrator"));
        assert!(!oauth2.is_reserved_username("alice"));
    }

    #[test]
    fn web_and_logger_are_checked() {
        assert_error(
            &format!("{MINIMAL}web:\n  https: 0.0.0.0:5554\n"),
            "web.tlsCert",
            "required",
        );
        assert_error(
            &format!("{MINIMAL}web:\n  http: 5556\n"),
            "web.http",
            "invalid listen address",
        );
        assert_error(
            &format!("{MINIMAL}logger:\n  level: loud\n"),
            "logger.level",
            "invalid level",
        );
        assert_error(
            &format!("{MINIMAL}logger:\n  format: xml\n"),
            "logger.format",
            "unknown variant",
        );
        let config = load(&format!(
            "{MINIMAL}web:\n  http: 0.0.0.0:8080\nlogger:\n  level: info,sqlx=warn\n  format: json\n"
        ))
        .unwrap();
        assert_eq!(config.web.http.as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(config.logger.format, LogFormat::Json);
    }

    #[test]
    fn yaml_syntax_and_file_errors_have_no_key_path() {
        let errors = errors("issuer: x\n  bad: indentation\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("line 2"), "{errors:?}");
        let err = Config::load(Path::new("/nonexistent/idbridge.yaml")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/idbridge.yaml"),
            "{err}"
        );
    }

    #[test]
    fn errors_display_one_per_line_with_path() {
        let errors = ConfigErrors(vec![
            ConfigError::new("expiry.idTokens", "invalid duration \"10 mins\""),
            ConfigError::new("issuer", "required key is missing"),
        ]);
        assert_eq!(
            errors.to_string(),
            "expiry.idTokens: invalid duration \"10 mins\"\nissuer: required key is missing"
        );
    }

    #[test]
    fn client_debug_output_hides_the_secret() {
        let config = load(MINIMAL).unwrap();
        let shown = format!("{:?}", config.static_clients[0]);
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn shipped_config_files_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for name in ["config/dev.yaml", "config/example.yaml"] {
            let config =
                Config::load(&root.join(name)).unwrap_or_else(|errors| panic!("{name}:\n{errors}"));
            assert!(!config.connectors.is_empty(), "{name}");
        }
        let dev = Config::load(&root.join("config/dev.yaml")).unwrap();
        assert_eq!(dev.issuer, "http://127.0.0.1:5556");
        assert!(dev.test_login.enabled);
        let demo = &dev.static_passwords[0];
        assert_eq!(demo.username, "demo");
        // The comment in dev.yaml gives this password; keep them in step.
        use argon2::PasswordVerifier;
        let parsed = argon2::PasswordHash::new(&demo.hash).unwrap();
        argon2::Argon2::default()
            .verify_password(b"demo-password", &parsed)
            .unwrap();
        let app = dev
            .static_clients
            .iter()
            .find(|c| c.id == "demo-app")
            .unwrap();
        assert_eq!(app.secret.as_deref(), Some("demo-secret"));
        let cli = dev
            .static_clients
            .iter()
            .find(|c| c.id == "demo-cli")
            .unwrap();
        assert!(cli.public);
    }
}

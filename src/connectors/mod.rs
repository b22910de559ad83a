//! Upstream identity connectors.
//!
//! The core never names a concrete connector: [`build`] looks each configured `type:` up in a
//! registry of factories. A connector is either a password connector (the user types a
//! password into our form) or a callback connector (the user is sent upstream and comes back
//! to `/callback`); either may also refresh an identity later.

pub mod dingtalk;
pub mod http;
pub mod local;
pub mod mapping;
pub mod oauth2;
pub mod oidc;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, ConnectorConfig};

/// Who the upstream says the user is. Every connector returns this one shape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable upstream user id (DingTalk `unionId`, OIDC `sub`, ...).
    pub upstream_id: String,
    /// A username suggested by the upstream, before our own rules are applied.
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone: Option<String>,
    pub picture: Option<String>,
    pub groups: Vec<String>,
    /// Opaque data the connector needs to refresh this identity later.
    pub connector_data: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The upstream answered with an error of its own.
    #[error("upstream error {code}: {message}")]
    Upstream {
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// The upstream said the user may not sign in (not a member, disabled, denied consent).
    #[error("access denied: {0}")]
    Denied(String),
    /// Like `Denied`, with the upstream's own error code and request id, which the error
    /// page shows for support.
    #[error("access denied ({code}): {message}")]
    DeniedUpstream {
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// The upstream could not be reached in time.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// The upstream answered something we cannot use.
    #[error("unexpected upstream response: {0}")]
    BadResponse(String),
    /// The browser came back without what a callback needs.
    #[error("invalid callback: {0}")]
    BadCallback(String),
}

/// A connector that checks a login and password itself.
#[async_trait]
pub trait PasswordConnector: Send + Sync {
    /// `Ok(None)` for wrong credentials, whether the user is unknown or the password wrong.
    async fn login(&self, login: &str, password: &str) -> Result<Option<Identity>, ConnectorError>;
}

/// Where to send the browser, and data to keep until the callback (PKCE verifier, nonce).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRedirect {
    pub url: String,
    pub data: Option<String>,
}

/// A connector that sends the browser upstream and handles its return.
#[async_trait]
pub trait CallbackConnector: Send + Sync {
    /// May wait briefly (an OIDC upstream's discovery), never longer than the connector's timeout.
    async fn login_url(
        &self,
        callback_url: &str,
        state: &str,
    ) -> Result<LoginRedirect, ConnectorError>;
    async fn handle_callback(
        &self,
        callback_url: &str,
        params: &HashMap<String, String>,
        data: Option<&str>,
    ) -> Result<Identity, ConnectorError>;
}

/// A connector that can re-check an identity when our refresh token is used.
#[async_trait]
pub trait RefreshConnector: Send + Sync {
    async fn refresh(&self, identity: Identity) -> Result<Identity, ConnectorError>;
}

#[derive(Clone)]
pub enum Kind {
    Password(Arc<dyn PasswordConnector>),
    Callback(Arc<dyn CallbackConnector>),
}

/// A configured connector instance.
#[derive(Clone)]
pub struct Connector {
    pub id: String,
    pub name: String,
    /// The configured `type:`.
    pub kind_name: String,
    pub kind: Kind,
    pub refresher: Option<Arc<dyn RefreshConnector>>,
}

/// Everything a factory may need besides its own config block.
pub struct FactoryContext<'a> {
    pub config: &'a Config,
    /// The key path of this connector's `config` block, for error messages.
    pub path: String,
}

type Factory = fn(&ConnectorConfig, &FactoryContext<'_>) -> Result<Connector, Vec<ConfigError>>;

fn factory(kind: &str) -> Option<Factory> {
    match kind {
        "local" => Some(local::build),
        "dingtalk" => Some(dingtalk::build),
        "oidc" => Some(oidc::build),
        "oauth2" => Some(oauth2::build),
        _ => None,
    }
}

/// Every connector type this build knows.
pub const KNOWN_TYPES: &[&str] = &["local", "dingtalk", "oidc", "oauth2"];

/// The configured connectors, in configuration order.
#[derive(Clone, Default)]
pub struct Connectors {
    list: Vec<Connector>,
}

impl Connectors {
    pub fn get(&self, id: &str) -> Option<&Connector> {
        self.list.iter().find(|c| c.id == id)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Connector> {
        self.list.iter()
    }
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Builds every configured connector, collecting all configuration errors with their paths.
pub fn build(config: &Config) -> Result<Connectors, Vec<ConfigError>> {
    let mut list = Vec::new();
    let mut errors = Vec::new();
    for (i, cc) in config.connectors.iter().enumerate() {
        let ctx = FactoryContext {
            config,
            path: format!("connectors[{i}].config"),
        };
        match factory(&cc.kind) {
            None => errors.push(ConfigError {
                path: format!("connectors[{i}].type"),
                message: format!(
                    "unknown connector type {:?} (known: {})",
                    cc.kind,
                    KNOWN_TYPES.join(", ")
                ),
            }),
            Some(f) => match f(cc, &ctx) {
                Ok(c) => list.push(c),
                Err(mut e) => errors.append(&mut e),
            },
        }
    }
    if errors.is_empty() {
        Ok(Connectors { list })
    } else {
        Err(errors)
    }
}

/// Validates the connector blocks of a configuration without keeping the result.
pub fn validate(config: &Config) -> Vec<ConfigError> {
    build(config).err().unwrap_or_default()
}

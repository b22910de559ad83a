//! The `config:` block of a DingTalk connector.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::config::{ConfigError, is_loopback_host, parse_duration};
use crate::connectors::FactoryContext;
use crate::connectors::http::DEFAULT_TIMEOUT;

const DEFAULT_LOGIN_URL: &str = "https://login.dingtalk.com";
const DEFAULT_API_URL: &str = "https://api.dingtalk.com";
const DEFAULT_OAPI_URL: &str = "https://oapi.dingtalk.com";

/// Which department attribute becomes the `groups` claim.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupsMode {
    /// No groups from DingTalk.
    #[default]
    None,
    /// Department names (研发部).
    Names,
    /// Department ids as decimal text ("2"), stable across renames.
    Ids,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    #[serde(rename = "clientID")]
    client_id: String,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    #[serde(rename = "redirectURI")]
    redirect_uri: Option<String>,
    #[serde(rename = "loginURL")]
    login_url: Option<String>,
    #[serde(rename = "apiURL")]
    api_url: Option<String>,
    #[serde(rename = "oapiURL")]
    oapi_url: Option<String>,
    #[serde(rename = "corpIDs", default)]
    corp_ids: Vec<String>,
    #[serde(default)]
    require_membership: bool,
    #[serde(default)]
    groups: GroupsMode,
    #[serde(default)]
    legacy: bool,
    timeout: Option<String>,
    prompt: Option<String>,
    #[serde(rename = "rootCAs")]
    root_cas: Option<PathBuf>,
}

/// Validated settings.
pub(super) struct Settings {
    pub client_id: String,
    pub client_secret: String,
    /// `None`: the callback URL the core passes (`{issuer}/callback`).
    pub redirect_uri: Option<String>,
    pub login_url: String,
    pub api_url: String,
    pub oapi_url: String,
    pub corp_ids: Vec<String>,
    pub require_membership: bool,
    pub groups: GroupsMode,
    pub legacy: bool,
    pub timeout: Duration,
    pub prompt: String,
    pub root_cas: Option<PathBuf>,
}

pub(super) fn parse(
    value: &serde_json::Value,
    ctx: &FactoryContext<'_>,
) -> Result<Settings, Vec<ConfigError>> {
    let value = if value.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        value.clone()
    };
    let raw: Raw = serde_path_to_error::deserialize(value)
        .map_err(|e| vec![deserialize_error(&ctx.path, e)])?;
    let mut errors = Vec::new();
    let key = |k: &str| format!("{}.{k}", ctx.path);
    let mut error = |k: &str, m: String| errors.push(ConfigError::new(key(k), m));

    let client_id = raw.client_id.trim().to_string();
    if client_id.is_empty() {
        error("clientID", "the value is empty".into());
    }
    let client_secret = resolve_secret(&raw, &mut error);
    let mut base_url = |k: &str, given: Option<String>, default: &str| -> String {
        match given {
            None => default.to_string(),
            Some(text) => match check_url(&text) {
                Ok(u) => u,
                Err(m) => {
                    error(k, m);
                    String::new()
                }
            },
        }
    };
    let login_url = base_url("loginURL", raw.login_url, DEFAULT_LOGIN_URL);
    let api_url = base_url("apiURL", raw.api_url, DEFAULT_API_URL);
    let oapi_url = base_url("oapiURL", raw.oapi_url, DEFAULT_OAPI_URL);
    let redirect_uri = raw.redirect_uri.and_then(|u| match check_url(&u) {
        Ok(_) => Some(u),
        Err(m) => {
            error("redirectURI", m);
            None
        }
    });
    let timeout = match raw.timeout.as_deref() {
        None => DEFAULT_TIMEOUT,
        Some(t) => match parse_duration(t) {
            Some(d) if !d.is_zero() => d,
            Some(_) => {
                error("timeout", "must be greater than zero".into());
                DEFAULT_TIMEOUT
            }
            None => {
                error(
                    "timeout",
                    format!("invalid duration {t:?}; write it like \"10s\" or \"1m\""),
                );
                DEFAULT_TIMEOUT
            }
        },
    };
    let prompt = raw.prompt.unwrap_or_else(|| "consent".into());
    if prompt.trim().is_empty() {
        error("prompt", "the value is empty".into());
    }
    for (i, c) in raw.corp_ids.iter().enumerate() {
        if c.trim().is_empty() {
            error(&format!("corpIDs[{i}]"), "the value is empty".into());
        }
    }
    if raw.legacy && !raw.corp_ids.is_empty() {
        error(
            "corpIDs",
            "the legacy QR login does not say which organisation the user chose; \
             use requireMembership to admit only your organisation"
                .into(),
        );
    }
    if errors.is_empty() {
        Ok(Settings {
            client_id,
            client_secret: client_secret.unwrap_or_default(),
            redirect_uri,
            login_url,
            api_url,
            oapi_url,
            corp_ids: raw.corp_ids.iter().map(|c| c.trim().to_string()).collect(),
            require_membership: raw.require_membership,
            groups: raw.groups,
            legacy: raw.legacy,
            timeout,
            prompt,
            root_cas: raw.root_cas,
        })
    } else {
        Err(errors)
    }
}

/// Exactly one of `clientSecret`, `clientSecretEnv`, `clientSecretFile`.
fn resolve_secret(raw: &Raw, error: &mut impl FnMut(&str, String)) -> Option<String> {
    let given = [
        raw.client_secret.is_some(),
        raw.client_secret_env.is_some(),
        raw.client_secret_file.is_some(),
    ];
    match given.iter().filter(|g| **g).count() {
        0 => {
            error(
                "clientSecret",
                "required: set one of clientSecret, clientSecretEnv, clientSecretFile".into(),
            );
            return None;
        }
        1 => {}
        _ => {
            error(
                "clientSecret",
                "set only one of clientSecret, clientSecretEnv, clientSecretFile".into(),
            );
            return None;
        }
    }
    let (key, value) = if let Some(v) = &raw.client_secret {
        ("clientSecret", v.clone())
    } else if let Some(name) = &raw.client_secret_env {
        match std::env::var(name) {
            Ok(v) => ("clientSecretEnv", v),
            Err(_) => {
                error(
                    "clientSecretEnv",
                    format!("environment variable {name} is not set"),
                );
                return None;
            }
        }
    } else if let Some(path) = &raw.client_secret_file {
        match std::fs::read_to_string(path) {
            // Editors and `echo` add a trailing newline that is not part of the secret.
            Ok(text) => (
                "clientSecretFile",
                text.trim_end_matches(['\n', '\r']).to_string(),
            ),
            Err(e) => {
                error(
                    "clientSecretFile",
                    format!("cannot read {}: {e}", path.display()),
                );
                return None;
            }
        }
    } else {
        return None;
    };
    if value.is_empty() {
        error(key, "the value is empty".into());
        return None;
    }
    Some(value)
}

/// A base URL without trailing slash. Plain http only to the local machine: the client secret
/// travels in these requests.
fn check_url(text: &str) -> Result<String, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if url.host_str().is_some_and(is_loopback_host) => {}
        "http" => return Err("must use https (plain http only for localhost)".into()),
        other => return Err(format!("must be an https URL, not {other}:")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(text.trim_end_matches('/').to_string())
}

fn deserialize_error(
    prefix: &str,
    err: serde_path_to_error::Error<serde_json::Error>,
) -> ConfigError {
    let mut path = match err.path().to_string().as_str() {
        "." => prefix.to_string(),
        p if p.starts_with('[') => format!("{prefix}{p}"),
        p => format!("{prefix}.{p}"),
    };
    let mut message = err.into_inner().to_string();
    if let Some(field) = between_backticks(&message, "missing field `") {
        path = format!("{path}.{field}");
        message = "required key is missing".into();
    } else if let Some(field) = between_backticks(&message, "unknown field `") {
        if !path.ends_with(field.as_str()) {
            path = format!("{path}.{field}");
        }
        message = match message.split_once(", expected ") {
            Some((_, expected)) => format!("unknown key; expected {}", expected.replace('`', "")),
            None => "unknown key".into(),
        };
    }
    ConfigError::new(path, message)
}

fn between_backticks(message: &str, opening: &str) -> Option<String> {
    let rest = message.strip_prefix(opening)?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse_yaml(block: &str) -> Result<Settings, Vec<ConfigError>> {
        let yaml = format!(
            "issuer: https://sso.example.com\nconnectors:\n- type: dingtalk\n  id: dt\n  name: DingTalk\n  config:\n{block}"
        );
        let config = Config::from_yaml_str(&yaml).unwrap();
        let ctx = FactoryContext {
            config: &config,
            path: "connectors[0].config".into(),
        };
        parse(&config.connectors[0].config, &ctx)
    }

    fn errors(block: &str) -> Vec<String> {
        match parse_yaml(block) {
            Ok(_) => panic!("accepted: {block}"),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn defaults() {
        let s = parse_yaml("    clientID: dingabc\n    clientSecret: x\n").unwrap();
        assert_eq!(s.login_url, "https://login.dingtalk.com");
        assert_eq!(s.api_url, "https://api.dingtalk.com");
        assert_eq!(s.oapi_url, "https://oapi.dingtalk.com");
        assert_eq!(s.redirect_uri, None);
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.prompt, "consent");
        assert_eq!(s.groups, GroupsMode::None);
        assert!(!s.legacy && !s.require_membership && s.corp_ids.is_empty());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let e = errors("    clientID: a\n    clientSecret: x\n    clientId: b\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("connectors[0].config.clientId: unknown key"),
            "{e:?}"
        );
    }

    #[test]
    fn missing_client_id_names_the_key() {
        let e = errors("    clientSecret: x\n");
        assert_eq!(
            e,
            ["connectors[0].config.clientID: required key is missing"]
        );
    }

    #[test]
    fn exactly_one_secret() {
        let e = errors("    clientID: a\n");
        assert!(
            e[0].starts_with("connectors[0].config.clientSecret: required"),
            "{e:?}"
        );
        let e = errors("    clientID: a\n    clientSecret: x\n    clientSecretEnv: Y\n");
        assert!(e[0].contains("only one"), "{e:?}");
        let e = errors("    clientID: a\n    clientSecretEnv: IDBRIDGE_SURELY_UNSET_VAR\n");
        assert!(
            e[0].starts_with("connectors[0].config.clientSecretEnv:"),
            "{e:?}"
        );
    }

    #[test]
    fn secret_from_file_drops_the_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "abc+/=\n").unwrap();
        let s = parse_yaml(&format!(
            "    clientID: a\n    clientSecretFile: {}\n",
            path.display()
        ))
        .unwrap();
        assert_eq!(s.client_secret, "abc+/=");
    }

    #[test]
    fn bad_values_are_all_reported() {
        let e = errors(
            "    clientID: a\n    clientSecret: x\n    apiURL: http://api.example.com\n    oapiURL: ftp://x\n    timeout: soon\n    legacy: true\n    corpIDs: [ding1]\n",
        );
        let joined = e.join("\n");
        for key in ["apiURL", "oapiURL", "timeout", "corpIDs"] {
            assert!(
                joined.contains(&format!("connectors[0].config.{key}:")),
                "{joined}"
            );
        }
    }

    #[test]
    fn loopback_http_and_trailing_slash() {
        let s = parse_yaml(
            "    clientID: a\n    clientSecret: x\n    apiURL: http://127.0.0.1:8080/\n    timeout: 1s\n    groups: names\n",
        )
        .unwrap();
        assert_eq!(s.api_url, "http://127.0.0.1:8080");
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(s.groups, GroupsMode::Names);
    }

    #[test]
    fn unknown_group_mode_is_refused() {
        let e = errors("    clientID: a\n    clientSecret: x\n    groups: departments\n");
        assert!(e[0].starts_with("connectors[0].config.groups:"), "{e:?}");
    }
}

//! KubeSphere as a relying party: the identity-provider configuration an operator pastes into
//! KubeSphere, and the configuration mistakes that make a KubeSphere login fail.
//!
//! KubeSphere reads its OIDC provider once, when ks-apiserver starts, and a mistake there shows
//! up much later as a failed login with a vague message. Generating the block from the same
//! configuration the bridge serves keeps the issuer, client id, secret and redirect URL in step.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use url::Url;

use crate::config::{Config, SigningAlgorithm, StaticClient};

/// The KubeSphere release line: 3.x keeps identity providers in the `ks-installer`
/// ClusterConfiguration, 4.x in Secrets of a dedicated type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KsVersion {
    /// KubeSphere 3.x (`kubectl -n kubesphere-system edit cc ks-installer`).
    #[value(name = "3", alias = "v3")]
    V3,
    /// KubeSphere 4.x (a Secret in `kubesphere-system`).
    #[value(name = "4", alias = "v4")]
    V4,
}

impl fmt::Display for KsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KsVersion::V3 => "3",
            KsVersion::V4 => "4",
        })
    }
}

/// Arguments of `idbridge kubesphere-config`.
#[derive(Debug, Clone, clap::Args)]
pub struct KubesphereConfigArgs {
    /// Path of the YAML configuration file.
    #[arg(short, long, env = "IDBRIDGE_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// The id of the static client KubeSphere uses.
    #[arg(long, value_name = "ID")]
    pub client: String,
    /// The public URL of the KubeSphere console, such as https://ks.example.com.
    #[arg(long, value_name = "URL")]
    pub console_url: String,
    /// The KubeSphere release line. (Not `--version`, which prints idbridge's version.)
    #[arg(long = "ks-version", value_name = "3|4", value_enum)]
    pub ks_version: KsVersion,
    /// The identity provider's name in KubeSphere: the last segment of its redirect URL.
    /// Default: taken from the client's registered `.../oauth/redirect/<name>` URI.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// The provider name used when none is given and no registered redirect URI names one.
pub const DEFAULT_PROVIDER_NAME: &str = "idbridge";

/// Runs `idbridge kubesphere-config` on an already loaded configuration: the YAML to paste,
/// or a message saying what to fix.
pub fn kubesphere_config_command(
    config: &Config,
    args: &KubesphereConfigArgs,
) -> Result<String, String> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_provider_name(config, &args.client, &args.console_url),
    };
    identity_provider_yaml(
        config,
        &args.client,
        &args.console_url,
        args.ks_version,
        &name,
    )
}

/// The provider name implied by the client's registration: `<name>` of the first redirect URI
/// of the form `{console_url}/oauth/redirect/<name>`, else [`DEFAULT_PROVIDER_NAME`].
pub fn default_provider_name(config: &Config, client_id: &str, console_url: &str) -> String {
    let prefix = format!("{}/oauth/redirect/", console_url.trim_end_matches('/'));
    config
        .static_clients
        .iter()
        .find(|c| c.id == client_id)
        .and_then(|client| {
            client.redirect_uris.iter().find_map(|uri| {
                uri.strip_prefix(&prefix)
                    .filter(|name| is_provider_name(name))
                    .map(str::to_string)
            })
        })
        .unwrap_or_else(|| DEFAULT_PROVIDER_NAME.to_string())
}

const PLACEHOLDER_SECRET: &str = "REPLACE-WITH-THE-CLIENT-SECRET";

/// The YAML an operator pastes into KubeSphere to add this bridge as an `OIDCIdentityProvider`
/// named `name` for the static client `client_id`.
///
/// - 3.x: the `spec.authentication.oauthOptions.identityProviders` block of the `ks-installer`
///   ClusterConfiguration, nested from `spec:` so its place is unambiguous.
/// - 4.x: a complete Secret for `kubectl apply -f -`.
///
/// Refuses a client that does not exist, a public client (KubeSphere authenticates with a
/// secret), a name that cannot be a label value and URL segment, a console URL that is not an
/// absolute http(s) URL, and a redirect URL the client has not registered (the login would
/// fail with `invalid redirect_uri` at the bridge).
pub fn identity_provider_yaml(
    config: &Config,
    client_id: &str,
    console_url: &str,
    version: KsVersion,
    name: &str,
) -> Result<String, String> {
    let client = find_client(config, client_id)?;
    if client.public {
        return Err(format!(
            "client {client_id:?} is public; KubeSphere authenticates to the token endpoint with a \
             client secret, so give it a confidential client (remove `public: true` and set \
             secretEnv or secretFile)"
        ));
    }
    if !is_provider_name(name) {
        return Err(format!(
            "invalid provider name {name:?}: KubeSphere uses it as a URL segment and a Kubernetes \
             label value; use 1 to 63 lowercase letters, digits and '-', starting and ending with \
             a letter or digit"
        ));
    }
    let console = parse_console_url(console_url)?;
    let redirect_url = format!("{console}/oauth/redirect/{name}");
    if !client.redirect_uris.contains(&redirect_url) {
        let registered = if client.redirect_uris.is_empty() {
            "none".to_string()
        } else {
            client.redirect_uris.join(", ")
        };
        return Err(format!(
            "client {client_id:?} does not register the redirect URI {redirect_url}; add it to \
             its redirectURIs (registered: {registered}), or pass the --name that matches one of \
             them"
        ));
    }

    let (client_secret, secret_is_placeholder) = match &client.secret {
        Some(secret) => (secret.clone(), false),
        None => (PLACEHOLDER_SECRET.to_string(), true),
    };
    let provider = ProviderOptions {
        issuer: config.issuer.clone(),
        client_id: client.id.clone(),
        client_secret,
        redirect_url,
        scopes: ["openid", "profile", "email"].map(String::from).to_vec(),
        get_user_info: false,
        insecure_skip_verify: false,
        post_logout_redirect_uri: match version {
            // 3.x neither reads nor sends a post-logout URI.
            KsVersion::V3 => None,
            KsVersion::V4 => post_logout_uri(client, &console),
        },
    };

    let mut out = String::new();
    out.push_str(&format!(
        "# idbridge as an OpenID Connect identity provider of KubeSphere {version}.x, \
         named {name:?} (client {client_id:?}).\n"
    ));
    match version {
        KsVersion::V3 => {
            out.push_str(
                "# Where it goes: run `kubectl -n kubesphere-system edit cc ks-installer` and merge\n\
                 # this under spec.authentication, keeping the keys already there (jwtSecret...).\n\
                 # If spec.authentication.oauthOptions.identityProviders already lists providers,\n\
                 # add this entry to that list. ks-installer then restarts ks-apiserver.\n",
            );
        }
        KsVersion::V4 => {
            out.push_str(
                "# Apply it with `kubectl apply -f FILE`; ks-apiserver reloads identity providers\n\
                 # when such a Secret changes.\n",
            );
        }
    }
    if version == KsVersion::V3 {
        // 4.x carries the same note inside configuration.yaml, where the setting is.
        out.push_str(GET_USER_INFO_NOTE);
    }
    if secret_is_placeholder {
        out.push_str(
            "# The client secret is not known to this configuration: replace the placeholder\n\
             # in clientSecret with the secret idbridge has for this client.\n",
        );
    } else {
        out.push_str(
            "# clientSecret is the client's real secret: keep this output out of version control.\n",
        );
    }

    let body = match version {
        KsVersion::V3 => {
            let document = V3Document {
                spec: V3Spec {
                    authentication: V3Authentication {
                        oauth_options: V3OAuthOptions {
                            identity_providers: vec![V3IdentityProvider {
                                name: name.to_string(),
                                kind: OIDC_PROVIDER_TYPE,
                                mapping_method: "auto",
                                disable_login_confirmation: false,
                                provider,
                            }],
                        },
                    },
                },
            };
            to_yaml(&document)?
        }
        KsVersion::V4 => {
            let configuration = V4Configuration {
                name: name.to_string(),
                kind: OIDC_PROVIDER_TYPE,
                mapping_method: "auto",
                display_name: display_name(config, client),
                hidden: false,
                disabled: false,
                provider,
            };
            let configuration_yaml = format!("{GET_USER_INFO_NOTE}{}", to_yaml(&configuration)?);
            let secret = V4Secret {
                api_version: "v1",
                kind: "Secret",
                metadata: V4Metadata {
                    // The name KubeSphere's own 3.x-to-4.x migration gives these Secrets.
                    name: format!("kubesphere-identityprovider.{name}"),
                    namespace: "kubesphere-system",
                    labels: V4Labels {
                        kind: "identityprovider",
                        // Some 4.x releases look providers up by this label instead.
                        provider_name: name.to_string(),
                    },
                },
                secret_type: "config.kubesphere.io/identityprovider",
                string_data: V4StringData { configuration_yaml },
            };
            to_yaml(&secret)?
        }
    };
    out.push_str(&body);
    Ok(out)
}

/// Why the generated provider sets `getUserInfo: false`, carried in the output itself.
const GET_USER_INFO_NOTE: &str = "\
# getUserInfo is false on purpose: with scopes openid, profile and email the ID token already
# carries sub, email, email_verified, preferred_username and name, so a userinfo call per login
# would only add a request that can fail.
";

const OIDC_PROVIDER_TYPE: &str = "OIDCIdentityProvider";

/// Configuration mistakes that break KubeSphere logins, for clients that look like KubeSphere:
/// an id or name containing `kubesphere` or the word `ks`, or a redirect URI containing
/// `/oauth/redirect/`. One line per finding, starting with the client's key path.
pub fn kubesphere_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let kubesphere_clients: Vec<(usize, &StaticClient)> = config
        .static_clients
        .iter()
        .enumerate()
        .filter(|(_, client)| looks_like_kubesphere(client))
        .collect();
    if kubesphere_clients.is_empty() {
        return warnings;
    }
    if config.signer.algorithm != SigningAlgorithm::RS256 {
        let ids: Vec<&str> = kubesphere_clients
            .iter()
            .map(|(_, c)| c.id.as_str())
            .collect();
        warnings.push(format!(
            "signer.algorithm: {} ID tokens cannot be verified by KubeSphere 3.x, which accepts \
             only RS256 (clients: {}); use RS256 (set signer.accessTokenAlgorithm to keep {} for \
             access tokens)",
            config.signer.algorithm,
            ids.join(", "),
            config.signer.algorithm
        ));
    }
    for (index, client) in &kubesphere_clients {
        let path = format!("staticClients[{index}] ({})", client.id);
        if client.default_scopes.is_empty() {
            warnings.push(format!(
                "{path}: no defaultScopes; when the KubeSphere provider's `scopes` is mis-indented \
                 KubeSphere sends no scope at all and the login fails; set defaultScopes: [openid, \
                 profile, email]"
            ));
        }
        for (i, uri) in client.redirect_uris.iter().enumerate() {
            match redirect_provider_name(uri) {
                None => warnings.push(format!(
                    "{path}.redirectURIs[{i}]: {uri} is not of the form \
                     https://CONSOLE/oauth/redirect/<name>, the only callback KubeSphere uses"
                )),
                Some(name) if !is_provider_name(name) => warnings.push(format!(
                    "{path}.redirectURIs[{i}]: the provider name {name:?} is not a lowercase \
                     RFC 1123 label (1 to 63 of a-z, 0-9, '-'); KubeSphere uses it as a URL \
                     segment and a label value"
                )),
                Some(_) => {}
            }
        }
    }
    if !config.oauth2.is_reserved_username("admin") {
        warnings.push(
            "oauth2.reservedUsernames: `admin` is not reserved; KubeSphere 4 with mappingMethod \
             auto signs a user whose preferred_username is `admin` in as its own administrator; \
             add admin to the list"
                .to_string(),
        );
    }
    warnings
}

fn find_client<'a>(config: &'a Config, client_id: &str) -> Result<&'a StaticClient, String> {
    config
        .static_clients
        .iter()
        .find(|c| c.id == client_id)
        .ok_or_else(|| {
            let known: Vec<&str> = config
                .static_clients
                .iter()
                .map(|c| c.id.as_str())
                .collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            format!("no static client with id {client_id:?} (static clients: {known})")
        })
}

/// The console URL without a trailing slash, as KubeSphere builds its redirect URL from it.
fn parse_console_url(console_url: &str) -> Result<String, String> {
    let url = Url::parse(console_url)
        .map_err(|err| format!("invalid console URL {console_url:?}: {err}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(format!(
            "invalid console URL {console_url:?}: use an absolute http(s) URL such as \
             https://ks.example.com"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "invalid console URL {console_url:?}: it must not have a query or a fragment"
        ));
    }
    Ok(console_url.trim_end_matches('/').to_string())
}

/// A post-logout URI registered for the client on the console's own origin, which is where
/// KubeSphere 4.1 wants the browser back.
fn post_logout_uri(client: &StaticClient, console: &str) -> Option<String> {
    client
        .post_logout_redirect_uris
        .iter()
        .find(|uri| {
            uri.strip_prefix(console)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .cloned()
}

/// The text of KubeSphere's login button: the connector's name when the client can reach only
/// one connector (users recognise "DingTalk"), else the title of the bridge's pages.
fn display_name(config: &Config, client: &StaticClient) -> String {
    let reachable: Vec<_> = config
        .connectors
        .iter()
        .filter(|c| {
            client.allowed_connectors.is_empty() || client.allowed_connectors.contains(&c.id)
        })
        .collect();
    match reachable.as_slice() {
        [only] => only.name.clone(),
        _ => config.frontend.title.clone(),
    }
}

/// A lowercase RFC 1123 label: valid as a URL segment, a label value and part of a Secret name.
fn is_provider_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// `<name>` of `scheme://host[:port][/prefix]/oauth/redirect/<name>`, the only shape of
/// callback KubeSphere uses; `None` for any other URI.
fn redirect_provider_name(uri: &str) -> Option<&str> {
    let url = Url::parse(uri).ok()?;
    if url.query().is_some() || url.fragment().is_some() {
        return None;
    }
    let (_, name) = uri.rsplit_once("/oauth/redirect/")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// `kubesphere` anywhere in the id or name, or `ks` as a word of its own (`ks`, `ks-prod`,
/// `prod_ks3`): a bare substring test for `ks` would also catch `tasks` and `webhooks`.
fn looks_like_kubesphere(client: &StaticClient) -> bool {
    let mentions = |text: &str| {
        let text = text.to_lowercase();
        text.contains("kubesphere")
            || text
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| {
                    word.strip_prefix("ks")
                        .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()))
                })
    };
    mentions(&client.id)
        || mentions(&client.name)
        || client
            .redirect_uris
            .iter()
            .any(|uri| uri.contains("/oauth/redirect/"))
}

fn to_yaml<T: Serialize>(value: &T) -> Result<String, String> {
    serde_yaml_ng::to_string(value).map_err(|err| format!("cannot write YAML: {err}"))
}

// The shapes KubeSphere reads. Field order is the order an operator expects to read them in.

#[derive(Serialize)]
struct ProviderOptions {
    issuer: String,
    #[serde(rename = "clientID")]
    client_id: String,
    #[serde(rename = "clientSecret")]
    client_secret: String,
    #[serde(rename = "redirectURL")]
    redirect_url: String,
    scopes: Vec<String>,
    #[serde(rename = "getUserInfo")]
    get_user_info: bool,
    #[serde(rename = "insecureSkipVerify")]
    insecure_skip_verify: bool,
    #[serde(
        rename = "postLogoutRedirectURI",
        skip_serializing_if = "Option::is_none"
    )]
    post_logout_redirect_uri: Option<String>,
}

#[derive(Serialize)]
struct V3Document {
    spec: V3Spec,
}

#[derive(Serialize)]
struct V3Spec {
    authentication: V3Authentication,
}

#[derive(Serialize)]
struct V3Authentication {
    #[serde(rename = "oauthOptions")]
    oauth_options: V3OAuthOptions,
}

#[derive(Serialize)]
struct V3OAuthOptions {
    #[serde(rename = "identityProviders")]
    identity_providers: Vec<V3IdentityProvider>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V3IdentityProvider {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    mapping_method: &'static str,
    disable_login_confirmation: bool,
    provider: ProviderOptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V4Configuration {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    mapping_method: &'static str,
    display_name: String,
    hidden: bool,
    disabled: bool,
    provider: ProviderOptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V4Secret {
    api_version: &'static str,
    kind: &'static str,
    metadata: V4Metadata,
    #[serde(rename = "type")]
    secret_type: &'static str,
    string_data: V4StringData,
}

#[derive(Serialize)]
struct V4Metadata {
    name: String,
    namespace: &'static str,
    labels: V4Labels,
}

#[derive(Serialize)]
struct V4Labels {
    #[serde(rename = "config.kubesphere.io/type")]
    kind: &'static str,
    #[serde(rename = "config.kubesphere.io/identityprovider-name")]
    provider_name: String,
}

#[derive(Serialize)]
struct V4StringData {
    #[serde(rename = "configuration.yaml")]
    configuration_yaml: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml_ng::Value;

    const BASE: &str = "\
issuer: https://sso.example.com/
storage: {type: sqlite, config: {file: /tmp/unused.db}}
connectors:
  - {type: local, id: local, name: Email}
staticClients:
  - id: kubesphere
    name: KubeSphere
    secret: 's3cret+/=: #yes'
    redirectURIs: [https://ks.example.com/oauth/redirect/dingtalk]
    postLogoutRedirectURIs: [https://other.example.com/, https://ks.example.com/login]
    defaultScopes: [openid, profile, email]
  - id: cli
    public: true
    redirectURIs: [http://localhost:8000]
";

    fn config(text: &str) -> Config {
        Config::from_yaml_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn get<'a>(value: &'a Value, path: &str) -> &'a Value {
        path.split('.')
            .fold(value, |v, key| match key.parse::<usize>() {
                Ok(i) => &v[i],
                Err(_) => &v[key],
            })
    }

    fn str_at<'a>(value: &'a Value, path: &str) -> &'a str {
        get(value, path)
            .as_str()
            .unwrap_or_else(|| panic!("{path} is not a string in {value:?}"))
    }

    #[test]
    fn v3_block_parses_back_with_the_expected_fields() {
        let config = config(BASE);
        let text = identity_provider_yaml(
            &config,
            "kubesphere",
            "https://ks.example.com/",
            KsVersion::V3,
            "dingtalk",
        )
        .unwrap();
        assert!(text.contains("edit cc ks-installer"), "{text}");
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        let idp = get(&doc, "spec.authentication.oauthOptions.identityProviders.0");
        assert_eq!(str_at(idp, "name"), "dingtalk");
        assert_eq!(str_at(idp, "type"), "OIDCIdentityProvider");
        assert_eq!(str_at(idp, "mappingMethod"), "auto");
        // Byte for byte, trailing slash included.
        assert_eq!(str_at(idp, "provider.issuer"), "https://sso.example.com/");
        assert_eq!(str_at(idp, "provider.clientID"), "kubesphere");
        assert_eq!(str_at(idp, "provider.clientSecret"), "s3cret+/=: #yes");
        assert_eq!(
            str_at(idp, "provider.redirectURL"),
            "https://ks.example.com/oauth/redirect/dingtalk"
        );
        let scopes: Vec<&str> = get(idp, "provider.scopes")
            .as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(scopes, ["openid", "profile", "email"]);
        assert_eq!(get(idp, "provider.getUserInfo"), &Value::Bool(false));
        assert_eq!(get(idp, "provider.insecureSkipVerify"), &Value::Bool(false));
        assert!(get(idp, "provider.postLogoutRedirectURI").is_null());
    }

    #[test]
    fn v4_secret_parses_back_with_the_expected_fields() {
        let config = config(BASE);
        let text = identity_provider_yaml(
            &config,
            "kubesphere",
            "https://ks.example.com",
            KsVersion::V4,
            "dingtalk",
        )
        .unwrap();
        let secret: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(str_at(&secret, "kind"), "Secret");
        assert_eq!(str_at(&secret, "metadata.namespace"), "kubesphere-system");
        assert_eq!(
            str_at(&secret, "type"),
            "config.kubesphere.io/identityprovider"
        );
        assert_eq!(
            get(&secret, "metadata.labels")["config.kubesphere.io/type"].as_str(),
            Some("identityprovider")
        );
        let inner = get(&secret, "stringData")["configuration.yaml"]
            .as_str()
            .unwrap();
        assert!(inner.contains("getUserInfo is false on purpose"), "{inner}");
        let idp: Value = serde_yaml_ng::from_str(inner).unwrap();
        assert_eq!(str_at(&idp, "name"), "dingtalk");
        assert_eq!(str_at(&idp, "type"), "OIDCIdentityProvider");
        assert_eq!(str_at(&idp, "displayName"), "Email");
        assert_eq!(str_at(&idp, "provider.issuer"), "https://sso.example.com/");
        assert_eq!(str_at(&idp, "provider.clientSecret"), "s3cret+/=: #yes");
        assert_eq!(
            str_at(&idp, "provider.redirectURL"),
            "https://ks.example.com/oauth/redirect/dingtalk"
        );
        assert_eq!(
            str_at(&idp, "provider.postLogoutRedirectURI"),
            "https://ks.example.com/login"
        );
    }

    #[test]
    fn secrets_that_look_like_other_types_stay_strings() {
        for secret in ["yes", "0123", "1e3", "~", "null", "'quoted'", "- a"] {
            let text = BASE.replace("'s3cret+/=: #yes'", &format!("{secret:?}"));
            let config = config(&text);
            for version in [KsVersion::V3, KsVersion::V4] {
                let out = identity_provider_yaml(
                    &config,
                    "kubesphere",
                    "https://ks.example.com",
                    version,
                    "dingtalk",
                )
                .unwrap();
                let doc: Value = serde_yaml_ng::from_str(&out).unwrap();
                let idp = match version {
                    KsVersion::V3 => {
                        get(&doc, "spec.authentication.oauthOptions.identityProviders.0").clone()
                    }
                    KsVersion::V4 => serde_yaml_ng::from_str(
                        get(&doc, "stringData")["configuration.yaml"]
                            .as_str()
                            .unwrap(),
                    )
                    .unwrap(),
                };
                assert_eq!(
                    get(&idp, "provider.clientSecret").as_str(),
                    Some(secret),
                    "{out}"
                );
            }
        }
    }

    #[test]
    fn unusable_requests_are_refused_with_a_reason() {
        let config = config(BASE);
        let run = |client: &str, console: &str, name: &str| {
            identity_provider_yaml(&config, client, console, KsVersion::V4, name).unwrap_err()
        };
        let err = run("nope", "https://ks.example.com", "dingtalk");
        assert!(
            err.contains("no static client") && err.contains("kubesphere"),
            "{err}"
        );
        let err = run("cli", "https://ks.example.com", "dingtalk");
        assert!(err.contains("public"), "{err}");
        let err = run("kubesphere", "https://ks.example.com", "Ding_Talk");
        assert!(err.contains("invalid provider name"), "{err}");
        let err = run("kubesphere", "ks.example.com", "dingtalk");
        assert!(err.contains("console URL"), "{err}");
        let err = run("kubesphere", "https://ks.example.com", "other");
        assert!(
            err.contains("https://ks.example.com/oauth/redirect/other")
                && err.contains("redirectURIs"),
            "{err}"
        );
    }

    #[test]
    fn the_provider_name_defaults_to_the_registered_one() {
        let config = config(BASE);
        assert_eq!(
            default_provider_name(&config, "kubesphere", "https://ks.example.com/"),
            "dingtalk"
        );
        assert_eq!(
            default_provider_name(&config, "kubesphere", "https://elsewhere.example.com"),
            DEFAULT_PROVIDER_NAME
        );
    }

    #[test]
    fn the_shipped_example_generates_both_versions() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
        let config = Config::load(&path).unwrap();
        for version in [KsVersion::V3, KsVersion::V4] {
            let args = KubesphereConfigArgs {
                config: path.clone(),
                client: "kubesphere".into(),
                console_url: "https://ks.example.com".into(),
                ks_version: version,
                name: None,
            };
            let text = kubesphere_config_command(&config, &args).unwrap();
            assert!(text.contains("/oauth/redirect/idbridge"), "{text}");
        }
        assert!(kubesphere_warnings(&config).is_empty());
    }

    #[test]
    fn warnings_name_each_kubesphere_trap() {
        let text = BASE
            .replace("    defaultScopes: [openid, profile, email]\n", "")
            .replace(
                "redirectURIs: [https://ks.example.com/oauth/redirect/dingtalk]",
                "redirectURIs: [https://ks.example.com/oauth/redirect/Ding_Talk, https://ks.example.com/callback]",
            );
        let text =
            format!("{text}signer: {{algorithm: ES256}}\noauth2: {{reservedUsernames: [root]}}\n");
        let warnings = kubesphere_warnings(&config(&text));
        let all = warnings.join("\n");
        for fragment in [
            "signer.algorithm: ES256",
            "staticClients[0] (kubesphere): no defaultScopes",
            "redirectURIs[0]: the provider name \"Ding_Talk\"",
            "redirectURIs[1]: https://ks.example.com/callback is not of the form",
            "oauth2.reservedUsernames",
        ] {
            assert!(all.contains(fragment), "missing {fragment:?} in\n{all}");
        }
        assert_eq!(warnings.len(), 5, "{all}");
        assert!(kubesphere_warnings(&config(BASE)).is_empty());
    }

    #[test]
    fn only_kubesphere_like_clients_are_checked() {
        let client = |id: &str, name: &str, uri: &str| StaticClient {
            id: id.into(),
            name: name.into(),
            secret: None,
            redirect_uris: vec![uri.into()],
            post_logout_redirect_uris: vec![],
            public: false,
            default_scopes: vec![],
            skip_approval: false,
            allowed_connectors: vec![],
            backchannel_logout_uri: None,
            grant_types: vec![],
            allowed_scopes: vec![],
            audience: vec![],
        };
        let cb = "https://app.example.com/cb";
        assert!(looks_like_kubesphere(&client("ks", "x", cb)));
        assert!(looks_like_kubesphere(&client("prod-ks3", "x", cb)));
        assert!(looks_like_kubesphere(&client("x", "My KubeSphere", cb)));
        assert!(looks_like_kubesphere(&client(
            "x",
            "x",
            "https://c.example.com/oauth/redirect/a"
        )));
        assert!(!looks_like_kubesphere(&client("tasks", "Webhooks", cb)));
        assert!(!looks_like_kubesphere(&client("grafana", "Grafana", cb)));
    }

    #[test]
    fn version_flag_does_not_clash_with_the_program_version() {
        use clap::Parser;
        #[derive(Parser)]
        #[command(name = "idbridge", version, propagate_version = true)]
        struct Cli {
            #[command(subcommand)]
            command: Command,
        }
        #[derive(clap::Subcommand)]
        enum Command {
            KubesphereConfig(KubesphereConfigArgs),
        }
        let cli = Cli::try_parse_from([
            "idbridge",
            "kubesphere-config",
            "--config",
            "c.yaml",
            "--client",
            "kubesphere",
            "--console-url",
            "https://ks.example.com",
            "--ks-version",
            "v3",
        ])
        .unwrap();
        let Command::KubesphereConfig(args) = cli.command;
        assert_eq!(args.ks_version, KsVersion::V3);
        assert_eq!(args.name, None);
    }
}

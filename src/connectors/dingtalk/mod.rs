//! `type: dingtalk`: sign in with DingTalk (钉钉).
//!
//! The current OAuth 2.0 login sends the browser to `login.dingtalk.com`, exchanges the code
//! at `api.dingtalk.com` for a user token and reads the user's profile with it. The legacy QR
//! login (`legacy: true`) goes through `oapi.dingtalk.com` with a signed request instead.
//! Optionally the organisation directory is consulted with the application's own token: to
//! admit only members (`requireMembership`) and to turn departments into groups (`groups`).
//!
//! On a refresh of our tokens the upstream refresh token (kept in the connector data) is
//! exchanged again and the profile re-read, so a user whose DingTalk authorisation was
//! withdrawn, or who left the organisation, loses access at their next refresh.

mod api;
mod config;
mod directory;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use api::legacy_signature;
pub use config::GroupsMode;

use self::api::{Api, Me, SnsUser, UserDetail};
use self::config::Settings;
use self::directory::{Directory, Membership};
use super::{
    CallbackConnector, Connector, ConnectorError, FactoryContext, Identity, Kind, LoginRedirect,
    RefreshConnector,
};
use crate::config::{ConfigError, ConnectorConfig};

pub(super) fn build(
    cc: &ConnectorConfig,
    ctx: &FactoryContext<'_>,
) -> Result<Connector, Vec<ConfigError>> {
    let settings = config::parse(&cc.config, ctx)?;
    let connector = Arc::new(DingTalk::new(settings).map_err(|message| {
        vec![ConfigError {
            path: ctx.path.clone(),
            message,
        }]
    })?);
    Ok(Connector {
        id: cc.id.clone(),
        name: cc.name.clone(),
        kind_name: "dingtalk".into(),
        kind: Kind::Callback(connector.clone()),
        refresher: Some(connector),
    })
}

/// What we keep between a login and later refreshes (the refresh token's connector data).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ConnectorData {
    /// DingTalk's refresh token for the user; absent in legacy mode.
    #[serde(
        rename = "refreshToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    refresh_token: Option<String>,
    /// The organisation the user picked at login, re-checked against `corpIDs`.
    #[serde(rename = "corpId", default, skip_serializing_if = "Option::is_none")]
    corp_id: Option<String>,
}

/// The profile fields both login flavours provide, in one shape.
#[derive(Debug, Default)]
struct Profile {
    union_id: String,
    nick: Option<String>,
    avatar_url: Option<String>,
    mobile: Option<String>,
    state_code: Option<String>,
    email: Option<String>,
    login_email: Option<String>,
}

impl Profile {
    fn from_me(me: Me) -> Result<Profile, ConnectorError> {
        let union_id = non_empty(me.union_id).ok_or_else(|| {
            ConnectorError::BadResponse("DingTalk's user profile has no unionId".into())
        })?;
        Ok(Profile {
            union_id,
            nick: non_empty(me.nick),
            avatar_url: non_empty(me.avatar_url),
            mobile: non_empty(me.mobile),
            state_code: non_empty(me.state_code),
            email: non_empty(me.email),
            login_email: non_empty(me.login_email),
        })
    }

    fn from_sns(user: SnsUser) -> Result<Profile, ConnectorError> {
        let union_id = non_empty(user.unionid).ok_or_else(|| {
            ConnectorError::BadResponse("DingTalk's legacy user info has no unionid".into())
        })?;
        Ok(Profile {
            union_id,
            nick: non_empty(user.nick),
            ..Profile::default()
        })
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// What the organisation directory adds to a profile.
#[derive(Debug, Default)]
struct Enterprise {
    detail: UserDetail,
    departments: Vec<(i64, String)>,
}

struct DingTalk {
    settings: Settings,
    api: Api,
    directory: Directory,
}

impl DingTalk {
    fn new(settings: Settings) -> Result<DingTalk, String> {
        let http = super::http::client(settings.timeout, settings.root_cas.as_deref())?;
        let api = Api {
            http,
            api_url: settings.api_url.clone(),
            oapi_url: settings.oapi_url.clone(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
        };
        Ok(DingTalk {
            settings,
            api,
            directory: Directory::default(),
        })
    }

    fn uses_directory(&self) -> bool {
        self.settings.require_membership || self.settings.groups != GroupsMode::None
    }

    fn check_corp(&self, corp_id: Option<&str>) -> Result<(), ConnectorError> {
        let allowed = &self.settings.corp_ids;
        if allowed.is_empty() {
            return Ok(());
        }
        match corp_id {
            Some(c) if allowed.iter().any(|a| a == c) => Ok(()),
            Some(c) => Err(ConnectorError::Denied(format!(
                "the DingTalk organisation {c} is not allowed to sign in here"
            ))),
            None => Err(ConnectorError::Denied(
                "DingTalk did not say which organisation was chosen, and only some are allowed"
                    .into(),
            )),
        }
    }

    /// Consults the directory when configured and applies the membership policy.
    async fn enterprise(&self, union_id: &str) -> Result<Option<Enterprise>, ConnectorError> {
        if !self.uses_directory() {
            return Ok(None);
        }
        let with_departments = self.settings.groups != GroupsMode::None;
        let membership = self
            .directory
            .lookup(&self.api, union_id, with_departments)
            .await?;
        let required = self.settings.require_membership;
        match membership {
            Membership::NotMember { code, request_id } if required => {
                Err(ConnectorError::DeniedUpstream {
                    code,
                    message: "this DingTalk account is not a member of the organisation".into(),
                    request_id,
                })
            }
            Membership::External if required => Err(ConnectorError::Denied(
                "this DingTalk account is an external contact (外部联系人) of the organisation, \
                 not a member"
                    .into(),
            )),
            Membership::Member { detail, .. } if required && detail.active == Some(false) => {
                Err(ConnectorError::Denied(
                    "this DingTalk account has not been activated in the organisation".into(),
                ))
            }
            Membership::Member {
                detail,
                departments,
            } => Ok(Some(Enterprise {
                detail,
                departments,
            })),
            Membership::NotMember { .. } | Membership::External => Ok(None),
        }
    }

    fn groups(&self, enterprise: Option<&Enterprise>) -> Vec<String> {
        let Some(e) = enterprise else {
            return Vec::new();
        };
        match self.settings.groups {
            GroupsMode::None => Vec::new(),
            GroupsMode::Names => e.departments.iter().map(|(_, n)| n.clone()).collect(),
            GroupsMode::Ids => e.departments.iter().map(|(id, _)| id.to_string()).collect(),
        }
    }

    fn identity(
        &self,
        profile: Profile,
        enterprise: Option<Enterprise>,
        data: Option<ConnectorData>,
    ) -> Result<Identity, ConnectorError> {
        let directory = enterprise.as_ref().map(|e| &e.detail);
        let (email, email_verified) = choose_email(&profile, directory);
        let phone = match (&profile.state_code, &profile.mobile) {
            (Some(code), Some(mobile)) => {
                Some(format!("+{} {mobile}", code.trim_start_matches('+')))
            }
            (None, Some(mobile)) => Some(mobile.clone()),
            _ => None,
        };
        let display_name = profile
            .nick
            .clone()
            .or_else(|| directory.and_then(|d| non_empty(d.name.clone())));
        let connector_data = data
            .map(|d| serde_json::to_string(&d))
            .transpose()
            .map_err(|e| ConnectorError::BadResponse(format!("cannot keep connector data: {e}")))?;
        Ok(Identity {
            groups: self.groups(enterprise.as_ref()),
            upstream_id: profile.union_id,
            username: profile.nick,
            display_name,
            email,
            email_verified,
            phone,
            picture: profile.avatar_url,
            connector_data,
        })
    }

    async fn current_callback(&self, code: &str) -> Result<Identity, ConnectorError> {
        let token = self.api.user_token(code).await?;
        self.check_corp(token.corp_id.as_deref())?;
        let profile = Profile::from_me(self.api.me(&token.access_token).await?)?;
        let enterprise = self.enterprise(&profile.union_id).await?;
        let data = ConnectorData {
            refresh_token: token.refresh_token,
            corp_id: token.corp_id,
        };
        self.identity(profile, enterprise, Some(data))
    }

    async fn legacy_callback(&self, code: &str) -> Result<Identity, ConnectorError> {
        let profile = Profile::from_sns(self.api.sns_user(code).await?)?;
        let enterprise = self.enterprise(&profile.union_id).await?;
        self.identity(profile, enterprise, None)
    }

    async fn refresh_inner(&self, identity: Identity) -> Result<Identity, ConnectorError> {
        let data: ConnectorData = match identity.connector_data.as_deref() {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                ConnectorError::BadResponse(format!(
                    "stored DingTalk connector data is unusable: {e}"
                ))
            })?,
            None => ConnectorData::default(),
        };
        if self.uses_directory() {
            // The app credentials are ours, not the user's: a failure to get an app token
            // must not cost the user their session.
            self.directory
                .app_token(&self.api)
                .await
                .map_err(|e| ConnectorError::Unavailable(e.to_string()))?;
        }
        match data.refresh_token.as_deref() {
            Some(refresh_token) if !self.settings.legacy => {
                let token = self.api.refresh_user_token(refresh_token).await?;
                let corp_id = token.corp_id.clone().or(data.corp_id);
                self.check_corp(corp_id.as_deref())?;
                let profile = Profile::from_me(self.api.me(&token.access_token).await?)?;
                if profile.union_id != identity.upstream_id {
                    return Err(ConnectorError::Denied(
                        "the DingTalk refresh token now belongs to another account".into(),
                    ));
                }
                let enterprise = self.enterprise(&profile.union_id).await?;
                let data = ConnectorData {
                    // DingTalk may or may not rotate its refresh token; keep whichever is newest.
                    refresh_token: token.refresh_token.or(Some(refresh_token.to_string())),
                    corp_id,
                };
                self.identity(profile, enterprise, Some(data))
            }
            // Legacy logins (and sessions started before connector data was kept) have no
            // upstream refresh token: only the directory can be asked again.
            _ => {
                self.check_corp_of_stored(&data)?;
                if !self.uses_directory() {
                    return Ok(identity);
                }
                let enterprise = self.enterprise(&identity.upstream_id).await?;
                let mut fresh = identity;
                fresh.groups = self.groups(enterprise.as_ref());
                if let Some(org_email) = enterprise
                    .as_ref()
                    .and_then(|e| non_empty(e.detail.org_email.clone()))
                {
                    fresh.email = Some(org_email);
                    fresh.email_verified = true;
                }
                Ok(fresh)
            }
        }
    }

    /// Without an upstream token only a stored organisation can be re-checked.
    fn check_corp_of_stored(&self, data: &ConnectorData) -> Result<(), ConnectorError> {
        match &data.corp_id {
            Some(c) => self.check_corp(Some(c)),
            None => Ok(()),
        }
    }
}

/// Picks the email to publish and whether it is verified. The organisation's mailbox
/// (`org_email`, assigned by the organisation's administrators) and the account's login email
/// (`loginEmail`, proven by DingTalk when the account signs in with it) are trusted; the
/// profile `email` and the directory `email` are typed in freely and are published unverified.
fn choose_email(profile: &Profile, directory: Option<&UserDetail>) -> (Option<String>, bool) {
    let org_email = directory.and_then(|d| non_empty(d.org_email.clone()));
    let dir_email = directory.and_then(|d| non_empty(d.email.clone()));
    if let Some(e) = org_email {
        return (Some(e), true);
    }
    if let Some(e) = &profile.login_email {
        return (Some(e.clone()), true);
    }
    match profile.email.clone().or(dir_email) {
        Some(e) => (Some(e), false),
        None => (None, false),
    }
}

#[async_trait]
impl CallbackConnector for DingTalk {
    async fn login_url(
        &self,
        callback_url: &str,
        state: &str,
    ) -> Result<LoginRedirect, ConnectorError> {
        let s = &self.settings;
        let redirect_uri = s.redirect_uri.as_deref().unwrap_or(callback_url);
        let url = if s.legacy {
            let mut url = url::Url::parse(&format!("{}/connect/qrconnect", s.oapi_url))
                .map_err(|e| ConnectorError::BadResponse(format!("bad oapiURL: {e}")))?;
            url.query_pairs_mut()
                .append_pair("appid", &s.client_id)
                .append_pair("response_type", "code")
                .append_pair("scope", "snsapi_login")
                .append_pair("state", state)
                .append_pair("redirect_uri", redirect_uri);
            url
        } else {
            let scope = if s.corp_ids.is_empty() {
                "openid"
            } else {
                "openid corpid"
            };
            let mut url = url::Url::parse(&format!("{}/oauth2/auth", s.login_url))
                .map_err(|e| ConnectorError::BadResponse(format!("bad loginURL: {e}")))?;
            url.query_pairs_mut()
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("response_type", "code")
                .append_pair("client_id", &s.client_id)
                .append_pair("scope", scope)
                .append_pair("state", state)
                .append_pair("prompt", &s.prompt);
            url
        };
        Ok(LoginRedirect {
            // DingTalk expects `%20` between scopes, not the `+` of form encoding.
            url: url.as_str().replace('+', "%20"),
            data: None,
        })
    }

    async fn handle_callback(
        &self,
        _callback_url: &str,
        params: &HashMap<String, String>,
        _data: Option<&str>,
    ) -> Result<Identity, ConnectorError> {
        if let Some(error) = params.get("error") {
            return Err(ConnectorError::BadCallback(format!(
                "DingTalk returned the error {error:?}"
            )));
        }
        let code = if self.settings.legacy {
            params.get("code")
        } else {
            // The current login is documented to send `authCode`; some integrations see `code`.
            params.get("authCode").or_else(|| params.get("code"))
        };
        let code = code
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                ConnectorError::BadCallback("DingTalk sent the browser back without a code".into())
            })?;
        if code.len() > 512 {
            return Err(ConnectorError::BadCallback(
                "the DingTalk code is too long".into(),
            ));
        }
        if self.settings.legacy {
            self.legacy_callback(code).await
        } else {
            self.current_callback(code).await
        }
    }
}

#[async_trait]
impl RefreshConnector for DingTalk {
    async fn refresh(&self, identity: Identity) -> Result<Identity, ConnectorError> {
        self.refresh_inner(identity).await.map_err(|e| {
            // Rate limits and "system busy" are no reason to end a user's session.
            if api::is_transient(&e) {
                ConnectorError::Unavailable(e.to_string())
            } else {
                e
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn settings(extra: &str) -> Settings {
        let yaml = format!(
            "issuer: https://sso.example.com/dex\n\
             connectors:\n\
             - type: dingtalk\n  id: dingtalk\n  name: DingTalk\n  config:\n    clientID: dingabc\n    clientSecret: s3cr+t/=\n{extra}"
        );
        let config = Config::from_yaml_str(&yaml).unwrap();
        let ctx = FactoryContext {
            config: &config,
            path: "connectors[0].config".into(),
        };
        config::parse(&config.connectors[0].config, &ctx).unwrap()
    }

    fn connector(extra: &str) -> DingTalk {
        DingTalk::new(settings(extra)).unwrap()
    }

    fn query(url: &str) -> HashMap<String, String> {
        let u = url::Url::parse(url).unwrap();
        u.query_pairs().into_owned().collect()
    }

    #[tokio::test]
    async fn current_login_url_carries_every_parameter() {
        let c = connector("");
        let r = c
            .login_url("https://sso.example.com/dex/callback", "req123")
            .await
            .unwrap();
        assert!(r.url.starts_with("https://login.dingtalk.com/oauth2/auth?"));
        assert!(r.url.contains("scope=openid&"), "{}", r.url);
        let q = query(&r.url);
        assert_eq!(q["redirect_uri"], "https://sso.example.com/dex/callback");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "dingabc");
        assert_eq!(q["state"], "req123");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(r.data, None);
    }

    #[tokio::test]
    async fn corp_ids_ask_for_the_corpid_scope() {
        let c = connector("    corpIDs: [ding1]\n");
        let r = c.login_url("https://x/callback", "s").await.unwrap();
        assert!(r.url.contains("scope=openid%20corpid"), "{}", r.url);
        assert!(c.check_corp(Some("ding1")).is_ok());
        assert!(matches!(
            c.check_corp(Some("ding2")),
            Err(ConnectorError::Denied(_))
        ));
        assert!(matches!(c.check_corp(None), Err(ConnectorError::Denied(_))));
        assert!(connector("").check_corp(None).is_ok());
    }

    #[tokio::test]
    async fn configured_redirect_uri_wins() {
        let c = connector("    redirectURI: https://proxy.example.com/cb\n    prompt: none\n");
        let q = query(&c.login_url("https://x/callback", "s").await.unwrap().url);
        assert_eq!(q["redirect_uri"], "https://proxy.example.com/cb");
        assert_eq!(q["prompt"], "none");
    }

    #[tokio::test]
    async fn legacy_login_url_is_the_qr_connect_page() {
        let c = connector("    legacy: true\n    oapiURL: http://127.0.0.1:9/base/\n");
        let r = c.login_url("https://x/callback", "st").await.unwrap();
        assert!(
            r.url
                .starts_with("http://127.0.0.1:9/base/connect/qrconnect?"),
            "{}",
            r.url
        );
        let q = query(&r.url);
        assert_eq!(q["appid"], "dingabc");
        assert_eq!(q["scope"], "snsapi_login");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["state"], "st");
        assert_eq!(q["redirect_uri"], "https://x/callback");
    }

    #[tokio::test]
    async fn callback_without_code_or_with_error_is_refused() {
        let c = connector("");
        let mut p = HashMap::new();
        p.insert("state".to_string(), "s".to_string());
        assert!(matches!(
            c.handle_callback("", &p, None).await,
            Err(ConnectorError::BadCallback(_))
        ));
        p.insert("error".to_string(), "access_denied".to_string());
        p.insert("authCode".to_string(), "abc".to_string());
        assert!(matches!(
            c.handle_callback("", &p, None).await,
            Err(ConnectorError::BadCallback(_))
        ));
    }

    fn profile() -> Profile {
        Profile {
            union_id: "u1".into(),
            nick: Some("张三".into()),
            avatar_url: Some("https://img/a.png".into()),
            mobile: Some("18900000000".into()),
            state_code: Some("86".into()),
            email: Some("me@example.com".into()),
            login_email: None,
        }
    }

    #[test]
    fn email_prefers_verified_sources() {
        let p = profile();
        assert_eq!(
            choose_email(&p, None),
            (Some("me@example.com".into()), false)
        );
        let mut p2 = profile();
        p2.login_email = Some("login@example.com".into());
        assert_eq!(
            choose_email(&p2, None),
            (Some("login@example.com".into()), true)
        );
        let d = UserDetail {
            org_email: Some("zhangsan@corp.example.com".into()),
            email: Some("free@example.com".into()),
            ..UserDetail::default()
        };
        assert_eq!(
            choose_email(&p2, Some(&d)),
            (Some("zhangsan@corp.example.com".into()), true)
        );
        let d = UserDetail {
            email: Some("free@example.com".into()),
            ..UserDetail::default()
        };
        let bare = Profile {
            union_id: "u".into(),
            ..Profile::default()
        };
        assert_eq!(
            choose_email(&bare, Some(&d)),
            (Some("free@example.com".into()), false)
        );
        assert_eq!(choose_email(&bare, None), (None, false));
    }

    #[test]
    fn identity_maps_profile_fields() {
        let c = connector("    groups: ids\n");
        let enterprise = Enterprise {
            detail: UserDetail::default(),
            departments: vec![(2, "研发部".into()), (7, "平台组".into())],
        };
        let data = ConnectorData {
            refresh_token: Some("rt".into()),
            corp_id: Some("ding1".into()),
        };
        let id = c.identity(profile(), Some(enterprise), Some(data)).unwrap();
        assert_eq!(id.upstream_id, "u1");
        assert_eq!(id.username.as_deref(), Some("张三"));
        assert_eq!(id.display_name.as_deref(), Some("张三"));
        assert_eq!(id.phone.as_deref(), Some("+86 18900000000"));
        assert_eq!(id.picture.as_deref(), Some("https://img/a.png"));
        assert_eq!(id.groups, ["2", "7"]);
        let data: serde_json::Value =
            serde_json::from_str(id.connector_data.as_deref().unwrap()).unwrap();
        assert_eq!(data["refreshToken"], "rt");
        assert_eq!(data["corpId"], "ding1");
    }

    #[test]
    fn profile_without_union_id_is_a_bad_response() {
        let me: Me = serde_json::from_str(r#"{"nick":"x","openId":"o"}"#).unwrap();
        assert!(matches!(
            Profile::from_me(me),
            Err(ConnectorError::BadResponse(_))
        ));
    }
}

//! DingTalk's two HTTP APIs and their wire formats.
//!
//! `api.dingtalk.com/v1.0` answers errors with a non-2xx status and a string `code`;
//! `oapi.dingtalk.com` answers HTTP 200 with an integer `errcode` (0 = success). Both become
//! [`ConnectorError::Upstream`]. Response fields whose spelling is not certain are read under
//! every spelling seen in the wild, and unknown fields are ignored.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::connectors::ConnectorError;

/// Upstream answers are small JSON documents; anything larger is not DingTalk.
const MAX_BODY: usize = 1024 * 1024;

/// The header api.dingtalk.com reads the access token from.
const TOKEN_HEADER: &str = "x-acs-dingtalk-access-token";

/// The credentials and base URLs of one DingTalk application.
pub(super) struct Api {
    pub http: reqwest::Client,
    pub api_url: String,
    pub oapi_url: String,
    pub client_id: String,
    pub client_secret: String,
}

/// The answer of `/v1.0/oauth2/userAccessToken`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserToken {
    #[serde(alias = "access_token")]
    pub access_token: String,
    #[serde(default, alias = "refresh_token")]
    pub refresh_token: Option<String>,
    #[serde(default, alias = "corpid", alias = "corp_id")]
    pub corp_id: Option<String>,
}

/// The answer of `/v1.0/contact/users/me`. Fields the app may not read are absent.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Me {
    #[serde(default)]
    pub nick: Option<String>,
    #[serde(default, alias = "unionid")]
    pub union_id: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub mobile: Option<String>,
    #[serde(default)]
    pub state_code: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub login_email: Option<String>,
}

/// `result` of `/topapi/user/getbyunionid`.
#[derive(Debug, Deserialize)]
pub(super) struct ByUnionId {
    #[serde(alias = "userId")]
    pub userid: String,
    #[serde(default, alias = "contactType", deserialize_with = "lenient_i64")]
    pub contact_type: Option<i64>,
}

/// `result` of `/topapi/v2/user/get`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct UserDetail {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, alias = "orgEmail")]
    pub org_email: Option<String>,
    #[serde(default, alias = "deptIdList")]
    pub dept_id_list: Vec<i64>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// `result` of `/topapi/v2/department/get`.
#[derive(Debug, Deserialize)]
pub(super) struct Department {
    pub name: String,
}

/// `user_info` of the legacy `/sns/getuserinfo_bycode`.
#[derive(Debug, Deserialize)]
pub(super) struct SnsUser {
    #[serde(default)]
    pub nick: Option<String>,
    #[serde(default, alias = "unionId")]
    pub unionid: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserTokenRequest<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    grant_type: &'a str,
}

/// The errcodes of a token oapi no longer accepts (88 comes with the real reason in
/// `sub_code`, which [`oapi_error`] appends to the code).
const INVALID_TOKEN_CODES: &[&str] = &[
    "InvalidAuthentication",
    "40014",
    "42001",
    "88/40014",
    "88/42001",
];

/// Whether an error says the app access token is invalid or expired, so a new one may help.
pub(super) fn is_invalid_token(e: &ConnectorError) -> bool {
    matches!(e, ConnectorError::Upstream { code, .. } if INVALID_TOKEN_CODES.contains(&code.as_str()))
}

/// Codes that say "try again later" (system busy, rate limits, quota), not "this user may not".
const TRANSIENT_CODES: &[&str] = &["-1", "90002", "90018", "90019", "90020"];

pub(super) fn is_transient(e: &ConnectorError) -> bool {
    matches!(e, ConnectorError::Upstream { code, .. }
        if TRANSIENT_CODES.contains(&code.as_str()) || code.starts_with("Throttling"))
}

/// The legacy login signature: base64 of HMAC-SHA256 over the millisecond timestamp, keyed
/// with the app secret. The caller URL-encodes it (as every query value).
pub fn legacy_signature(app_secret: &str, timestamp_ms: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_secret.as_bytes());
    STANDARD.encode(hmac::sign(&key, timestamp_ms.as_bytes()).as_ref())
}

impl Api {
    fn api(&self, path: &str) -> String {
        format!("{}{path}", self.api_url)
    }

    fn oapi(&self, path: &str) -> String {
        format!("{}{path}", self.oapi_url)
    }

    /// Exchanges a login code for a user access token.
    pub async fn user_token(&self, code: &str) -> Result<UserToken, ConnectorError> {
        let body = UserTokenRequest {
            client_id: &self.client_id,
            client_secret: &self.client_secret,
            code: Some(code),
            refresh_token: None,
            grant_type: "authorization_code",
        };
        let req = self
            .http
            .post(self.api("/v1.0/oauth2/userAccessToken"))
            .json(&body);
        api_call(req, "user token").await
    }

    /// Renews a user access token with the refresh token DingTalk gave at login.
    pub async fn refresh_user_token(
        &self,
        refresh_token: &str,
    ) -> Result<UserToken, ConnectorError> {
        let body = UserTokenRequest {
            client_id: &self.client_id,
            client_secret: &self.client_secret,
            code: None,
            refresh_token: Some(refresh_token),
            grant_type: "refresh_token",
        };
        let req = self
            .http
            .post(self.api("/v1.0/oauth2/userAccessToken"))
            .json(&body);
        api_call(req, "user token refresh").await
    }

    /// The profile of the user a user access token belongs to.
    pub async fn me(&self, user_token: &str) -> Result<Me, ConnectorError> {
        let req = self
            .http
            .get(self.api("/v1.0/contact/users/me"))
            .header(TOKEN_HEADER, user_token);
        api_call(req, "user profile").await
    }

    /// A new app access token and its lifetime in seconds.
    pub async fn app_token(&self) -> Result<(String, u64), ConnectorError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct AppToken {
            #[serde(alias = "access_token")]
            access_token: String,
            #[serde(default, alias = "expires_in", deserialize_with = "lenient_i64")]
            expire_in: Option<i64>,
        }
        let req = self
            .http
            .post(self.api("/v1.0/oauth2/accessToken"))
            .json(&json!({"appKey": self.client_id, "appSecret": self.client_secret}));
        let t: AppToken = api_call(req, "app token").await?;
        let lifetime = t
            .expire_in
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(7200);
        Ok((t.access_token, lifetime))
    }

    /// The organisation's user id for a union id.
    pub async fn user_by_union_id(
        &self,
        app_token: String,
        union_id: &str,
    ) -> Result<ByUnionId, ConnectorError> {
        let req = self
            .http
            .post(self.oapi("/topapi/user/getbyunionid"))
            .query(&[("access_token", app_token.as_str())])
            .json(&json!({"unionid": union_id}));
        oapi_call(req, "result", "membership lookup").await
    }

    pub async fn user_detail(
        &self,
        app_token: String,
        userid: &str,
    ) -> Result<UserDetail, ConnectorError> {
        let req = self
            .http
            .post(self.oapi("/topapi/v2/user/get"))
            .query(&[("access_token", app_token.as_str())])
            .json(&json!({"userid": userid, "language": "zh_CN"}));
        oapi_call(req, "result", "user detail").await
    }

    pub async fn department(
        &self,
        app_token: String,
        dept_id: i64,
    ) -> Result<Department, ConnectorError> {
        let req = self
            .http
            .post(self.oapi("/topapi/v2/department/get"))
            .query(&[("access_token", app_token.as_str())])
            .json(&json!({"dept_id": dept_id}));
        oapi_call(req, "result", "department").await
    }

    /// The legacy QR login: the user behind a temporary code, with a signed request.
    pub async fn sns_user(&self, tmp_code: &str) -> Result<SnsUser, ConnectorError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            .to_string();
        let signature = legacy_signature(&self.client_secret, &timestamp);
        let req = self
            .http
            .post(self.oapi("/sns/getuserinfo_bycode"))
            .query(&[
                ("accessKey", self.client_id.as_str()),
                ("timestamp", timestamp.as_str()),
                ("signature", signature.as_str()),
            ])
            .json(&json!({"tmp_auth_code": tmp_code}));
        oapi_call(req, "user_info", "legacy user info").await
    }
}

/// Sends a request and reads a bounded body. Transport failures are `Unavailable`; the
/// error text never carries the URL, whose query may hold an access token.
async fn send(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<(reqwest::StatusCode, Vec<u8>), ConnectorError> {
    let unavailable = |e: reqwest::Error| {
        let kind = if e.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        ConnectorError::Unavailable(format!(
            "DingTalk {what} request {kind}: {}",
            e.without_url()
        ))
    };
    let started = std::time::Instant::now();
    let sent = req.send().await;
    crate::telemetry::upstream("dingtalk", what, started.elapsed());
    let mut resp = sent.map_err(unavailable)?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unavailable)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ConnectorError::BadResponse(format!(
                "DingTalk {what} answer is larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// A call to api.dingtalk.com/v1.0.
async fn api_call<T: DeserializeOwned>(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<T, ConnectorError> {
    let (status, body) = send(req, what).await?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| {
            ConnectorError::BadResponse(format!("DingTalk {what} answer is not usable: {e}"))
        });
    }
    api_error(status, &body, what)
}

fn api_error<T>(status: reqwest::StatusCode, body: &[u8], what: &str) -> Result<T, ConnectorError> {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        code: Option<Value>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default, alias = "requestId", alias = "request_id")]
        requestid: Option<String>,
    }
    let parsed = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.code.as_ref().and_then(value_text).map(|code| (code, b)));
    let server_side = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
    match parsed {
        // A server-side failure is temporary whatever it is called: never a reason to turn a
        // user away for good.
        Some((code, b)) if server_side => Err(ConnectorError::Unavailable(format!(
            "DingTalk {what} failed with HTTP {status}: {code} {} (request id {})",
            b.message.unwrap_or_default(),
            b.requestid.unwrap_or_else(|| "-".into())
        ))),
        Some((code, b)) => Err(ConnectorError::Upstream {
            code,
            message: b.message.unwrap_or_else(|| format!("HTTP {status}")),
            request_id: b.requestid,
        }),
        None if server_side => Err(ConnectorError::Unavailable(format!(
            "DingTalk {what} failed with HTTP {status}"
        ))),
        None => Err(ConnectorError::BadResponse(format!(
            "DingTalk {what} failed with HTTP {status} and an unreadable body"
        ))),
    }
}

/// A call to oapi.dingtalk.com: HTTP 200 with `errcode`; the payload sits under `field`.
async fn oapi_call<T: DeserializeOwned>(
    req: reqwest::RequestBuilder,
    field: &str,
    what: &str,
) -> Result<T, ConnectorError> {
    let (status, body) = send(req, what).await?;
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) if status.is_server_error() => {
            return Err(ConnectorError::Unavailable(format!(
                "DingTalk {what} failed with HTTP {status}"
            )));
        }
        Err(e) => {
            return Err(ConnectorError::BadResponse(format!(
                "DingTalk {what} answer (HTTP {status}) is not JSON: {e}"
            )));
        }
    };
    oapi_result(status, value, field, what)
}

fn oapi_result<T: DeserializeOwned>(
    status: reqwest::StatusCode,
    mut value: Value,
    field: &str,
    what: &str,
) -> Result<T, ConnectorError> {
    let errcode = value.get("errcode").and_then(value_text);
    match errcode.as_deref() {
        Some("0") => {}
        Some(_) => return Err(oapi_error(&value)),
        None if status.is_server_error() => {
            return Err(ConnectorError::Unavailable(format!(
                "DingTalk {what} failed with HTTP {status}"
            )));
        }
        None => {
            return Err(ConnectorError::BadResponse(format!(
                "DingTalk {what} answer (HTTP {status}) has no errcode"
            )));
        }
    }
    let payload = value.get_mut(field).map(Value::take).unwrap_or(Value::Null);
    serde_json::from_value(payload).map_err(|e| {
        ConnectorError::BadResponse(format!("DingTalk {what} answer is not usable: {e}"))
    })
}

fn oapi_error(value: &Value) -> ConnectorError {
    let text = |k: &str| value.get(k).and_then(value_text).filter(|s| !s.is_empty());
    let errcode = text("errcode").unwrap_or_default();
    let code = match text("sub_code") {
        Some(sub) => format!("{errcode}/{sub}"),
        None => errcode,
    };
    let message = text("sub_msg")
        .or_else(|| text("errmsg"))
        .unwrap_or_else(|| "no message".into());
    let request_id = text("request_id")
        .or_else(|| text("requestId"))
        .or_else(|| text("requestid"));
    ConnectorError::Upstream {
        code,
        message,
        request_id,
    }
}

/// A JSON string or number as text (error codes arrive as either).
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer that may arrive as a JSON number or as a numeric string.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn signature_matches_the_reference_vector() {
        assert_eq!(
            legacy_signature("testappsecret", "1546084445901"),
            "OhyFo2qjhl8F+5FaXsW/+lfc5j5UVZghzmaCS8KDrew="
        );
        let encoded: String = url::form_urlencoded::byte_serialize(
            legacy_signature("testappsecret", "1546084445901").as_bytes(),
        )
        .collect();
        assert_eq!(
            encoded,
            "OhyFo2qjhl8F%2B5FaXsW%2F%2Blfc5j5UVZghzmaCS8KDrew%3D"
        );
    }

    #[test]
    fn api_errors_keep_code_message_and_request_id() {
        let body = br#"{"code":"InvalidAuthentication","requestid":"30EE","message":"bad token"}"#;
        match api_error::<()>(StatusCode::BAD_REQUEST, body, "x") {
            Err(ConnectorError::Upstream {
                code,
                message,
                request_id,
            }) => {
                assert_eq!(code, "InvalidAuthentication");
                assert_eq!(message, "bad token");
                assert_eq!(request_id.as_deref(), Some("30EE"));
            }
            other => panic!("{other:?}"),
        }
        let body = br#"{"code":"Forbidden.AccessDenied.AccessTokenPermissionDenied","requestId":"r2","message":"no","accessdenieddetail":{"requiredScopes":["Contact.User.Read"]}}"#;
        assert!(matches!(
            api_error::<()>(StatusCode::FORBIDDEN, body, "x"),
            Err(ConnectorError::Upstream { request_id: Some(r), .. }) if r == "r2"
        ));
    }

    #[test]
    fn server_side_api_errors_are_temporary() {
        assert!(matches!(
            api_error::<()>(StatusCode::INTERNAL_SERVER_ERROR, b"oops", "x"),
            Err(ConnectorError::Unavailable(_))
        ));
        assert!(matches!(
            api_error::<()>(
                StatusCode::SERVICE_UNAVAILABLE,
                br#"{"code":"ServiceUnavailable","message":"busy"}"#,
                "x"
            ),
            Err(ConnectorError::Unavailable(_))
        ));
        assert!(matches!(
            api_error::<()>(StatusCode::BAD_REQUEST, b"<html>", "x"),
            Err(ConnectorError::BadResponse(_))
        ));
    }

    #[test]
    fn oapi_errcodes_become_upstream_errors() {
        let v = json!({"errcode":60121,"errmsg":"找不到该用户","request_id":"abc"});
        match oapi_result::<ByUnionId>(StatusCode::OK, v, "result", "x") {
            Err(ConnectorError::Upstream {
                code,
                message,
                request_id,
            }) => {
                assert_eq!(code, "60121");
                assert_eq!(message, "找不到该用户");
                assert_eq!(request_id.as_deref(), Some("abc"));
            }
            other => panic!("{other:?}"),
        }
        let v = json!({"errcode":88,"sub_code":"40014","sub_msg":"不合法的access_token","errmsg":"x","request_id":"r"});
        let e = oapi_result::<ByUnionId>(StatusCode::OK, v, "result", "x").unwrap_err();
        assert!(is_invalid_token(&e), "{e:?}");
        let v = json!({"errcode":90002,"errmsg":"busy"});
        assert!(is_transient(
            &oapi_result::<ByUnionId>(StatusCode::OK, v, "result", "x").unwrap_err()
        ));
    }

    #[test]
    fn oapi_success_reads_the_payload_field() {
        let v = json!({"errcode":0,"errmsg":"ok","result":{"contact_type":"1","userid":"u1"},"request_id":"r"});
        let r: ByUnionId = oapi_result(StatusCode::OK, v, "result", "x").unwrap();
        assert_eq!(r.userid, "u1");
        assert_eq!(r.contact_type, Some(1));
        let v = json!({"errcode":0,"result":null});
        assert!(matches!(
            oapi_result::<ByUnionId>(StatusCode::OK, v, "result", "x"),
            Err(ConnectorError::BadResponse(_))
        ));
        let v = json!({"result":{"userid":"u1"}});
        assert!(matches!(
            oapi_result::<ByUnionId>(StatusCode::OK, v, "result", "x"),
            Err(ConnectorError::BadResponse(_))
        ));
    }

    #[test]
    fn user_token_accepts_both_spellings() {
        let t: UserToken = serde_json::from_value(
            json!({"accessToken":"a","refreshToken":"r","expireIn":7200,"corpId":"ding1","extra":1}),
        )
        .unwrap();
        assert_eq!(t.corp_id.as_deref(), Some("ding1"));
        let t: UserToken =
            serde_json::from_value(json!({"access_token":"a","refresh_token":"r"})).unwrap();
        assert_eq!(t.refresh_token.as_deref(), Some("r"));
    }
}

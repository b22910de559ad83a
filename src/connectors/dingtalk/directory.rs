//! The organisation directory: membership, enterprise profile and departments, read with the
//! application's own access token.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use super::api::{self, Api, UserDetail};
use crate::connectors::ConnectorError;

/// Department names change rarely; caching them saves one call per department per login.
const DEPARTMENT_TTL: Duration = Duration::from_secs(600);

/// An app token is renewed this long before DingTalk says it expires, so a token is never
/// used in its last moments.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The errcode of "no such user in this organisation".
pub(super) const NOT_A_MEMBER: &str = "60121";
/// The errcode of "no such department" (deleted since the user's profile was read).
const NO_SUCH_DEPARTMENT: &str = "60003";

/// `contact_type` of an external contact (外部联系人), as opposed to 0 for an employee.
const EXTERNAL_CONTACT: i64 = 1;

/// What the directory says about a user.
#[derive(Debug)]
pub(super) enum Membership {
    NotMember {
        code: String,
        request_id: Option<String>,
    },
    External,
    Member {
        detail: UserDetail,
        departments: Vec<(i64, String)>,
    },
}

struct CachedToken {
    token: String,
    renew_at: Instant,
}

#[derive(Default)]
pub(super) struct Directory {
    app_token: tokio::sync::Mutex<Option<CachedToken>>,
    departments: std::sync::Mutex<HashMap<i64, (String, Instant)>>,
}

impl Directory {
    /// The cached app token, fetched when missing or about to expire. The lock is held while
    /// fetching so concurrent logins share one request.
    pub async fn app_token(&self, api: &Api) -> Result<String, ConnectorError> {
        let mut cached = self.app_token.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = api.app_token().await?;
        let lifetime = Duration::from_secs(lifetime);
        let usable = lifetime.checked_sub(TOKEN_MARGIN).unwrap_or(lifetime / 2);
        *cached = Some(CachedToken {
            token: token.clone(),
            renew_at: Instant::now() + usable,
        });
        Ok(token)
    }

    /// Forgets `token` unless another caller already replaced it.
    async fn discard(&self, token: &str) {
        let mut cached = self.app_token.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
    }

    /// Runs `call` with the app token; if DingTalk calls the token invalid (revoked, or expired
    /// earlier than announced), fetches a new one and tries exactly once more.
    async fn with_token<T, F, Fut>(&self, api: &Api, call: F) -> Result<T, ConnectorError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, ConnectorError>>,
    {
        let token = self.app_token(api).await?;
        match call(token.clone()).await {
            Err(e) if api::is_invalid_token(&e) => {
                tracing::info!("DingTalk refused the app access token; fetching a new one");
                self.discard(&token).await;
                let token = self.app_token(api).await?;
                call(token).await
            }
            other => other,
        }
    }

    /// Looks a user up by union id; departments are read only when `with_departments`.
    pub async fn lookup(
        &self,
        api: &Api,
        union_id: &str,
        with_departments: bool,
    ) -> Result<Membership, ConnectorError> {
        let found = self
            .with_token(api, |t| api.user_by_union_id(t, union_id))
            .await;
        let found = match found {
            Ok(f) => f,
            Err(ConnectorError::Upstream {
                code, request_id, ..
            }) if code == NOT_A_MEMBER => return Ok(Membership::NotMember { code, request_id }),
            Err(e) => return Err(e),
        };
        if found.contact_type == Some(EXTERNAL_CONTACT) {
            return Ok(Membership::External);
        }
        let detail = self
            .with_token(api, |t| api.user_detail(t, &found.userid))
            .await;
        let detail = match detail {
            Ok(d) => d,
            // Removed between the two calls.
            Err(ConnectorError::Upstream {
                code, request_id, ..
            }) if code == NOT_A_MEMBER => return Ok(Membership::NotMember { code, request_id }),
            Err(e) => return Err(e),
        };
        let departments = if with_departments {
            self.departments(api, &detail.dept_id_list).await?
        } else {
            Vec::new()
        };
        Ok(Membership::Member {
            detail,
            departments,
        })
    }

    /// Names of departments, from the cache when fresh; departments deleted meanwhile are
    /// left out.
    async fn departments(
        &self,
        api: &Api,
        ids: &[i64],
    ) -> Result<Vec<(i64, String)>, ConnectorError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            if out.iter().any(|(known, _)| *known == id) {
                continue;
            }
            if let Some(name) = self.cached_department(id) {
                out.push((id, name));
                continue;
            }
            match self.with_token(api, |t| api.department(t, id)).await {
                Ok(d) => {
                    if let Ok(mut cache) = self.departments.lock() {
                        cache.insert(id, (d.name.clone(), Instant::now() + DEPARTMENT_TTL));
                    }
                    out.push((id, d.name));
                }
                Err(ConnectorError::Upstream { code, .. }) if code == NO_SUCH_DEPARTMENT => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn cached_department(&self, id: i64) -> Option<String> {
        let cache = self.departments.lock().ok()?;
        cache
            .get(&id)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(name, _)| name.clone())
    }
}

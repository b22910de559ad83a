//! `type: local`: users from `staticPasswords`, checked against argon2id or bcrypt hashes.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use async_trait::async_trait;

use super::{Connector, ConnectorError, FactoryContext, Identity, Kind, PasswordConnector};
use crate::config::{ConfigError, ConnectorConfig, StaticPassword};

/// Hashes a password with argon2id and a random salt, as a PHC string for the config.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

/// Checks a password against an argon2 PHC string or a bcrypt hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

struct LocalConnector {
    users: Vec<StaticPassword>,
}

impl LocalConnector {
    fn find(&self, login: &str) -> Option<&StaticPassword> {
        let login = login.trim();
        self.users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(login) || u.username.eq_ignore_ascii_case(login))
    }
}

#[async_trait]
impl PasswordConnector for LocalConnector {
    async fn login(&self, login: &str, password: &str) -> Result<Option<Identity>, ConnectorError> {
        let user = self.find(login).cloned();
        // An unknown login is checked against a real user's hash and then refused, so that
        // "no such user" and "wrong password" take the same time and give the same answer.
        let Some(hash) = user
            .as_ref()
            .map(|u| u.hash.clone())
            .or_else(|| self.users.first().map(|u| u.hash.clone()))
        else {
            return Ok(None);
        };
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        Ok(match user {
            Some(u) if ok => Some(Identity {
                upstream_id: u.user_id.clone(),
                username: Some(u.username.clone()),
                display_name: Some(u.username.clone()),
                email: Some(u.email.clone()),
                email_verified: true,
                phone: None,
                picture: None,
                groups: u.groups.clone(),
                connector_data: None,
            }),
            _ => None,
        })
    }
}

pub(super) fn build(
    cc: &ConnectorConfig,
    ctx: &FactoryContext<'_>,
) -> Result<Connector, Vec<ConfigError>> {
    let accepts_no_keys =
        cc.config.is_null() || cc.config.as_object().is_some_and(|m| m.is_empty());
    if !accepts_no_keys {
        return Err(vec![ConfigError {
            path: ctx.path.clone(),
            message: "the local connector takes no settings; users come from staticPasswords"
                .into(),
        }]);
    }
    Ok(Connector {
        id: cc.id.clone(),
        name: cc.name.clone(),
        kind_name: "local".into(),
        kind: Kind::Password(Arc::new(LocalConnector {
            users: ctx.config.static_passwords.clone(),
        })),
        refresher: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_hash_round_trips() {
        let h = hash_password("s3cret pass").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret pass", &h));
        assert!(!verify_password("s3cret pas", &h));
    }

    #[test]
    fn bcrypt_hashes_verify() {
        let h = bcrypt::hash("pw", 4).unwrap();
        assert!(verify_password("pw", &h));
        assert!(!verify_password("px", &h));
    }

    #[test]
    fn garbage_hash_never_verifies() {
        assert!(!verify_password("pw", "not-a-hash"));
        assert!(!verify_password("", ""));
    }
}

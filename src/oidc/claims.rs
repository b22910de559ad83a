//! Claims about a user, per scope (OpenID Connect Core 5.4).

use serde_json::{Map, Value, json};

use crate::storage::User;

/// The user claims released for `scopes`.
pub fn user_claims(user: &User, scopes: &[String]) -> Map<String, Value> {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let mut m = Map::new();
    if has("profile") {
        m.insert(
            "name".into(),
            json!(
                user.display_name
                    .clone()
                    .unwrap_or_else(|| user.username.clone())
            ),
        );
        m.insert("preferred_username".into(), json!(user.username));
        if let Some(p) = &user.picture {
            m.insert("picture".into(), json!(p));
        }
    }
    if has("email")
        && let Some(e) = &user.email
    {
        m.insert("email".into(), json!(e));
        // A JSON boolean: go-oidc (KubeSphere) and the Kubernetes API server refuse strings.
        m.insert("email_verified".into(), Value::Bool(user.email_verified));
    }
    if has("phone")
        && let Some(p) = &user.phone
    {
        m.insert("phone_number".into(), json!(p));
    }
    if has("groups") {
        m.insert("groups".into(), json!(user.groups));
    }
    m
}

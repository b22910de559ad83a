//! Subjects and usernames that are safe for KubeSphere and Kubernetes.
//!
//! `sub` is opaque, stable per (connector, upstream user) and at most 63 characters of
//! `[a-z0-9]`, so it is a valid Kubernetes label value. `preferred_username` is a lowercase
//! RFC 1123 name of at most 32 characters, unique across users, stable once assigned, and never
//! a reserved name: KubeSphere 4 logs a user whose preferred_username equals an existing
//! account (say `admin`) in AS that account.

use aws_lc_rs::hmac;
use pinyin::ToPinyin;
use unicode_normalization::UnicodeNormalization;

use super::error::OAuthError;
use crate::config::IdentityConfig;
use crate::connectors::Identity;
use crate::storage::{Storage, StorageError, Timestamp, User};

pub const MAX_USERNAME_LEN: usize = 32;

/// Derives the subject for an upstream user: HMAC-SHA256 under an instance key, in base32
/// with a lowercase alphabet (32 characters). Deterministic, so two first logins of the same
/// person racing each other agree.
pub fn subject_for(key: &hmac::Key, connector_id: &str, upstream_id: &str) -> String {
    let mut msg = Vec::with_capacity(connector_id.len() + upstream_id.len() + 1);
    msg.extend_from_slice(connector_id.as_bytes());
    msg.push(0);
    msg.extend_from_slice(upstream_id.as_bytes());
    let tag = hmac::sign(key, &msg);
    base32_lower(&tag.as_ref()[..20])
}

fn base32_lower(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Folds characters that render like ASCII letters (fullwidth forms, Cyrillic and Greek
/// look-alikes) to ASCII, and drops invisible ones, so `аdmin` (Cyrillic a) or `admin\u{200b}`
/// cannot pass for something other than `admin`.
pub fn fold_confusables(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // NFKC first: fullwidth forms, ligatures and mathematical letters become plain letters.
    for c in s.nfkc() {
        let folded = match c {
            // Invisible and bidirectional formatting characters.
            '\u{00AD}'
            | '\u{034F}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}' => continue,
            // Fullwidth ASCII.
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            // Cyrillic look-alikes.
            'а' | 'А' => 'a',
            'в' | 'В' => 'b',
            'с' | 'С' => 'c',
            'ԁ' => 'd',
            'е' | 'Е' | 'ё' | 'Ё' => 'e',
            'һ' | 'Н' => 'h',
            'і' | 'І' | 'ӏ' | 'Ӏ' => 'i',
            'ј' | 'Ј' => 'j',
            'к' | 'К' => 'k',
            'м' | 'М' => 'm',
            'о' | 'О' => 'o',
            'р' | 'Р' => 'p',
            'ԛ' => 'q',
            'ѕ' | 'Ѕ' => 's',
            'т' | 'Т' => 't',
            'у' | 'У' => 'y',
            'х' | 'Х' => 'x',
            'ԝ' => 'w',
            // Greek look-alikes.
            'α' | 'Α' => 'a',
            'β' | 'Β' => 'b',
            'ε' | 'Ε' => 'e',
            'η' | 'Η' => 'h',
            'ι' | 'Ι' => 'i',
            'κ' | 'Κ' => 'k',
            'μ' | 'Μ' => 'm',
            'ν' | 'Ν' => 'n',
            'ο' | 'Ο' => 'o',
            'ρ' | 'Ρ' => 'p',
            'τ' | 'Τ' => 't',
            'υ' | 'Υ' => 'y',
            'χ' | 'Χ' => 'x',
            'ζ' | 'Ζ' => 'z',
            // Latin letters that look like others.
            'ı' => 'i',
            'ɡ' => 'g',
            'ℓ' => 'l',
            other => other,
        };
        out.push(folded);
    }
    out
}

/// Turns free text into a candidate username: lowercase RFC 1123 (labels of `[a-z0-9-]`
/// separated by dots, each starting and ending alphanumeric), at most 32 characters.
pub fn sanitize_username(raw: &str) -> Option<String> {
    let folded = fold_confusables(raw).to_lowercase();
    let mut mapped = String::with_capacity(folded.len());
    for c in folded.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' => mapped.push(c),
            '-' | '_' | ' ' | '+' | '@' => mapped.push('-'),
            _ => {}
        }
    }
    let clean = |s: &str| -> String {
        s.split('.')
            .map(|label| {
                let mut l = String::new();
                for c in label.chars() {
                    if c == '-' && (l.is_empty() || l.ends_with('-')) {
                        continue;
                    }
                    l.push(c);
                }
                l.trim_end_matches('-').to_string()
            })
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(".")
    };
    let mut name = clean(&mapped);
    if name.len() > MAX_USERNAME_LEN {
        name.truncate(MAX_USERNAME_LEN);
        name = clean(&name);
    }
    (!name.is_empty()).then_some(name)
}

/// Whether `name` is reserved: exact entries, or prefixes for entries ending in `*`.
pub fn is_reserved(name: &str, reserved: &[String]) -> bool {
    let name = fold_confusables(name).to_lowercase();
    reserved.iter().any(|r| {
        let r = r.to_lowercase();
        match r.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == r,
        }
    })
}

/// Hanyu pinyin of the Chinese characters in `s`, without tones or separators
/// (`张三` -> `zhangsan`); other letters and digits are kept, everything else dropped.
pub fn pinyin_of(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if let Some(p) = c.to_pinyin() {
            out.push_str(p.plain());
        } else if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Fills a template's placeholders from an identity. A template whose placeholders are all
/// empty yields `None`, so `{username}` for an upstream without usernames is skipped.
pub fn render_template(
    template: &str,
    identity: &Identity,
    subject: &str,
    username: Option<&str>,
) -> Option<String> {
    let email_local = identity
        .email
        .as_deref()
        .and_then(|e| e.split_once('@').map(|(l, _)| l.to_string()));
    let value = |name: &str| -> Option<String> {
        match name {
            "username" => username
                .map(str::to_string)
                .or_else(|| identity.username.clone()),
            "email_local" => email_local.clone(),
            "name" => identity.display_name.clone(),
            "name_pinyin" => identity.display_name.as_deref().map(pinyin_of),
            "upstream_id" => Some(identity.upstream_id.clone()),
            "short_id" => Some(subject.chars().take(8).collect()),
            _ => None,
        }
        .filter(|v| !v.trim().is_empty())
    };
    let mut out = String::new();
    let mut rest = template;
    let mut filled_any = false;
    let mut had_placeholder = false;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}')?;
        had_placeholder = true;
        if let Some(v) = value(&after[..end]) {
            out.push_str(&v);
            filled_any = true;
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    (filled_any || !had_placeholder).then_some(out)
}

/// Username candidates for a new user, in the order of the configured templates, already
/// sanitized, with reserved names removed.
pub fn username_candidates(
    identity: &Identity,
    templates: &[String],
    subject: &str,
    reserved: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in templates {
        let Some(raw) = render_template(t, identity, subject, None) else {
            continue;
        };
        // Reserved names are checked on the raw text too, so that invisible or look-alike
        // characters cannot smuggle `admin` past the check.
        if is_reserved(&raw, reserved) {
            continue;
        }
        if let Some(c) = sanitize_username(&raw)
            && !is_reserved(&c, reserved)
            && !out.contains(&c)
        {
            out.push(c);
        }
    }
    out
}

/// Finds or creates the user for an upstream identity and refreshes their profile.
pub async fn upsert_user(
    storage: &dyn Storage,
    subject_key: &hmac::Key,
    connector_id: &str,
    identity: &Identity,
    mapping: &IdentityConfig,
    reserved: &[String],
    now: Timestamp,
) -> Result<User, OAuthError> {
    // Two attempts: a concurrent first login of the same person may create the row first.
    for _ in 0..2 {
        match storage
            .get_user_by_upstream(connector_id, &identity.upstream_id)
            .await
        {
            Ok(mut user) => {
                let (email, verified) = email_for(identity, mapping, &user.id, &user.username);
                user.display_name = identity.display_name.clone();
                user.email = email;
                user.email_verified = verified;
                user.phone = identity.phone.clone();
                user.picture = identity.picture.clone();
                user.groups = identity.groups.clone();
                user.connector_data = identity.connector_data.clone();
                user.last_login_at = now;
                storage.update_user(&user).await?;
                return Ok(user);
            }
            Err(StorageError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let id = subject_for(subject_key, connector_id, &identity.upstream_id);
        let username = pick_free_username(storage, &id, identity, mapping, reserved).await?;
        let (email, email_verified) = email_for(identity, mapping, &id, &username);
        let user = User {
            id,
            connector_id: connector_id.to_string(),
            upstream_id: identity.upstream_id.clone(),
            username,
            display_name: identity.display_name.clone(),
            email,
            email_verified,
            phone: identity.phone.clone(),
            picture: identity.picture.clone(),
            groups: identity.groups.clone(),
            connector_data: identity.connector_data.clone(),
            created_at: now,
            last_login_at: now,
        };
        match storage.create_user(&user).await {
            Ok(()) => return Ok(user),
            Err(StorageError::AlreadyExists) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(OAuthError::server_error())
}

/// The upstream email, or the configured fallback (never marked verified).
fn email_for(
    identity: &Identity,
    mapping: &IdentityConfig,
    subject: &str,
    username: &str,
) -> (Option<String>, bool) {
    match (&identity.email, &mapping.email_fallback) {
        (Some(e), _) if !e.trim().is_empty() => (Some(e.clone()), identity.email_verified),
        (_, Some(t)) => (render_template(t, identity, subject, Some(username)), false),
        _ => (None, false),
    }
}

async fn pick_free_username(
    storage: &dyn Storage,
    subject: &str,
    identity: &Identity,
    mapping: &IdentityConfig,
    reserved: &[String],
) -> Result<String, OAuthError> {
    let mut bases = username_candidates(identity, &mapping.username_templates, subject, reserved);
    let last_resort = format!("user-{}", &subject[..8.min(subject.len())]);
    if !bases.contains(&last_resort) {
        bases.push(last_resort);
    }
    for base in &bases {
        if is_free(storage, base).await? {
            return Ok(base.clone());
        }
    }
    // Every candidate is taken: suffix the first one, which stays stable once stored.
    let base = &bases[0];
    for n in 2..1000 {
        let suffix = format!("-{n}");
        let mut stem = base.clone();
        stem.truncate(MAX_USERNAME_LEN - suffix.len());
        let stem = stem.trim_end_matches(['-', '.']);
        let candidate = format!("{stem}{suffix}");
        if is_free(storage, &candidate).await? {
            return Ok(candidate);
        }
    }
    Ok(format!("user-{}", &subject[..20.min(subject.len())]))
}

async fn is_free(storage: &dyn Storage, name: &str) -> Result<bool, OAuthError> {
    match storage.get_user_by_username(name).await {
        Ok(_) => Ok(false),
        Err(StorageError::NotFound) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserved() -> Vec<String> {
        ["admin", "root", "system*", "kubesphere*"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn subjects_are_label_safe_and_stable() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let a = subject_for(&key, "dingtalk", "hTaCSb+/=QiEiE");
        assert_eq!(a, subject_for(&key, "dingtalk", "hTaCSb+/=QiEiE"));
        assert_ne!(a, subject_for(&key, "local", "hTaCSb+/=QiEiE"));
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }

    #[test]
    fn usernames_are_rfc1123() {
        assert_eq!(sanitize_username("Zhang San").as_deref(), Some("zhang-san"));
        assert_eq!(sanitize_username("a_b..c-").as_deref(), Some("a-b.c"));
        assert_eq!(sanitize_username("--x--").as_deref(), Some("x"));
        assert_eq!(sanitize_username("张三"), None);
        assert_eq!(sanitize_username("潘潘😎"), None);
        let long = sanitize_username(&"ab-".repeat(30)).unwrap();
        assert!(long.len() <= 32 && !long.ends_with('-'));
    }

    #[test]
    fn impersonation_attempts_are_reserved() {
        let r = reserved();
        for name in [
            "admin",
            "Admin",
            "аdmin",
            "admin\u{200b}",
            "ａｄｍｉｎ",
            "system:masters",
            "kubesphere-x",
        ] {
            let sanitized = sanitize_username(name).unwrap_or_default();
            assert!(
                is_reserved(&sanitized, &r) || is_reserved(name, &r),
                "{name:?} -> {sanitized:?}"
            );
        }
        assert!(!is_reserved("administrator", &r));
        let id = Identity {
            upstream_id: "u".into(),
            username: Some("Admin".into()),
            email: Some("root@example.com".into()),
            display_name: Some("аdmin".into()),
            ..Identity::default()
        };
        let templates: Vec<String> = ["{username}", "{email_local}", "{name}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(username_candidates(&id, &templates, "abcdefghij", &r).is_empty());
        assert!(is_reserved("𝐚𝐝𝐦𝐢𝐧", &r));
    }

    #[test]
    fn chinese_names_become_pinyin() {
        assert_eq!(pinyin_of("张三"), "zhangsan");
        assert_eq!(pinyin_of("潘潘😎"), "panpan");
        let id = Identity {
            upstream_id: "u1".into(),
            display_name: Some("张三".into()),
            ..Identity::default()
        };
        let templates = crate::config::default_username_templates();
        assert_eq!(
            username_candidates(&id, &templates, "abcdefghij", &reserved()),
            vec!["zhangsan".to_string(), "user-abcdefgh".to_string()]
        );
    }

    #[test]
    fn templates_render_and_skip_empty_values() {
        let id = Identity {
            upstream_id: "u1".into(),
            email: Some("li.si@corp.example".into()),
            ..Identity::default()
        };
        assert_eq!(render_template("{username}", &id, "s", None), None);
        assert_eq!(
            render_template("{email_local}", &id, "s", None).as_deref(),
            Some("li.si")
        );
        assert_eq!(
            render_template("{username}@corp.example", &id, "s", Some("lisi")).as_deref(),
            Some("lisi@corp.example")
        );
    }
}

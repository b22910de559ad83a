//! Claim mapping shared by the `oidc` and `oauth2` connectors: where, in the JSON an upstream
//! returns (ID token claims, a userinfo body, an envelope around it), each part of an
//! [`Identity`] is found.
//!
//! Paths are dotted keys with optional indexes: `sub`, `data.user.id`, `roles[0]`, and
//! `["https://example.com/groups"]` for claim names that themselves contain dots.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::Identity;

/// Upper bounds that keep one odd upstream answer from bloating every token we issue.
const MAX_VALUE_LEN: usize = 1024;
const MAX_GROUPS: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A parsed path into a JSON document.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    segments: Vec<Segment>,
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonPath({})", self.text)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let mut segments = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        // Whether the next character may start a bare key (start of path, or just after a dot).
        let mut expect_key = true;
        while i < chars.len() {
            match chars[i] {
                '[' => {
                    let close = chars[i..]
                        .iter()
                        .position(|c| *c == ']')
                        .map(|p| p + i)
                        .ok_or_else(|| format!("unclosed '[' in path {text:?}"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    let segment = if let Some(quoted) =
                        inner.strip_prefix('"').and_then(|s| s.strip_suffix('"'))
                    {
                        if quoted.is_empty() {
                            return Err(format!("empty quoted key in path {text:?}"));
                        }
                        Segment::Key(quoted.to_string())
                    } else {
                        let index = inner.parse::<usize>().map_err(|_| {
                            format!(
                                "[{inner}] in path {text:?} is neither an index nor a quoted key"
                            )
                        })?;
                        Segment::Index(index)
                    };
                    segments.push(segment);
                    i = close + 1;
                    expect_key = false;
                }
                '.' => {
                    if expect_key {
                        return Err(format!("empty key in path {text:?}"));
                    }
                    i += 1;
                    expect_key = true;
                    if i == chars.len() {
                        return Err(format!("path {text:?} ends with a dot"));
                    }
                }
                _ => {
                    if !expect_key {
                        return Err(format!(
                            "a key must follow a dot in path {text:?} (after position {i})"
                        ));
                    }
                    let start = i;
                    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                        if chars[i] == ']' || chars[i].is_whitespace() {
                            return Err(format!("unexpected {:?} in path {text:?}", chars[i]));
                        }
                        i += 1;
                    }
                    segments.push(Segment::Key(chars[start..i].iter().collect()));
                    expect_key = false;
                }
            }
        }
        if segments.is_empty() {
            return Err("the path is empty".into());
        }
        Ok(JsonPath {
            text: text.to_string(),
            segments,
        })
    }

    /// The value at this path, if every step exists.
    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.segments
            .iter()
            .try_fold(root, |value, segment| match segment {
                Segment::Key(k) => value.as_object()?.get(k),
                Segment::Index(n) => value.as_array()?.get(*n),
            })
    }

    /// The path without its last step (the object holding the value), if there is one.
    pub fn parent(&self) -> Option<JsonPath> {
        if self.segments.len() < 2 {
            return None;
        }
        let segments = self.segments[..self.segments.len() - 1].to_vec();
        Some(JsonPath {
            text: format!("parent of {}", self.text),
            segments,
        })
    }
}

impl<'de> Deserialize<'de> for JsonPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        JsonPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `claimMapping` as written in the configuration: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawClaimMapping {
    #[serde(rename = "userID")]
    pub user_id: Option<JsonPath>,
    pub username: Option<JsonPath>,
    pub preferred_username: Option<JsonPath>,
    pub name: Option<JsonPath>,
    pub email: Option<JsonPath>,
    pub email_verified: Option<JsonPath>,
    pub groups: Option<JsonPath>,
    pub phone: Option<JsonPath>,
    pub picture: Option<JsonPath>,
}

/// Where each identity field is read from. Built from [`RawClaimMapping`] over the standard
/// OpenID Connect claim names, so a configuration only names what differs.
#[derive(Clone, Debug)]
pub struct ClaimMapping {
    pub user_id: JsonPath,
    pub preferred_username: JsonPath,
    pub username: JsonPath,
    pub name: JsonPath,
    pub email: JsonPath,
    pub email_verified: JsonPath,
    pub groups: JsonPath,
    pub phone: JsonPath,
    pub picture: JsonPath,
    /// Treat every email as verified (for upstreams that never send `email_verified`).
    pub insecure_skip_email_verified: bool,
}

fn standard(name: &str) -> JsonPath {
    JsonPath {
        text: name.to_string(),
        segments: vec![Segment::Key(name.to_string())],
    }
}

impl ClaimMapping {
    pub fn new(raw: RawClaimMapping, insecure_skip_email_verified: bool) -> ClaimMapping {
        ClaimMapping {
            user_id: raw.user_id.unwrap_or_else(|| standard("sub")),
            preferred_username: raw
                .preferred_username
                .unwrap_or_else(|| standard("preferred_username")),
            username: raw.username.unwrap_or_else(|| standard("username")),
            name: raw.name.unwrap_or_else(|| standard("name")),
            email: raw.email.unwrap_or_else(|| standard("email")),
            email_verified: raw
                .email_verified
                .unwrap_or_else(|| standard("email_verified")),
            groups: raw.groups.unwrap_or_else(|| standard("groups")),
            phone: raw.phone.unwrap_or_else(|| standard("phone_number")),
            picture: raw.picture.unwrap_or_else(|| standard("picture")),
            insecure_skip_email_verified,
        }
    }

    /// Reads an identity out of `claims`. Fails only when the user id is missing or unusable:
    /// every other field is optional and skipped when absent or of an unexpected shape.
    pub fn apply(&self, claims: &Value) -> Result<Identity, String> {
        let upstream_id = match self.user_id.get(claims) {
            None | Some(Value::Null) => {
                return Err(format!(
                    "the upstream response has no user id at {:?}",
                    self.user_id.text
                ));
            }
            Some(v) => scalar_text(v).ok_or_else(|| {
                format!(
                    "the user id at {:?} is not a non-empty string or number",
                    self.user_id.text
                )
            })?,
        };
        if upstream_id.len() > MAX_VALUE_LEN {
            return Err(format!(
                "the user id at {:?} is longer than {MAX_VALUE_LEN} bytes",
                self.user_id.text
            ));
        }
        let text = |path: &JsonPath| {
            path.get(claims)
                .and_then(scalar_text)
                .filter(|s| s.len() <= MAX_VALUE_LEN)
        };
        let email = text(&self.email);
        let email_verified = email.is_some()
            && (self.insecure_skip_email_verified
                || self.email_verified.get(claims).is_some_and(truthy));
        Ok(Identity {
            upstream_id,
            username: text(&self.preferred_username).or_else(|| text(&self.username)),
            display_name: text(&self.name),
            email,
            email_verified,
            phone: text(&self.phone),
            picture: text(&self.picture),
            groups: self.groups.get(claims).map(group_list).unwrap_or_default(),
            connector_data: None,
        })
    }
}

/// A string (trimmed, non-empty) or a number, as text. Numeric ids are common in older APIs.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_string())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `true`, or the string `"true"` some upstreams send instead of a JSON boolean.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// An array of names (strings or numbers; other entries skipped, duplicates dropped), or a
/// single name.
fn group_list(value: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for item in items {
        if out.len() >= MAX_GROUPS {
            break;
        }
        if let Some(name) = scalar_text(item).filter(|s| s.len() <= MAX_VALUE_LEN)
            && !out.contains(&name)
        {
            out.push(name);
        }
    }
    out
}

/// Lays the top-level members of `over` onto `base` (userinfo claims over ID token claims).
/// `null` members of `over` are skipped so an upstream's empty field cannot erase a value.
pub fn merge(base: &mut Value, over: &Value) {
    let (Some(base), Some(over)) = (base.as_object_mut(), over.as_object()) else {
        return;
    };
    for (k, v) in over {
        if !v.is_null() {
            base.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(s: &str) -> JsonPath {
        JsonPath::parse(s).unwrap()
    }

    #[test]
    fn dotted_paths_walk_objects_and_arrays() {
        let doc = json!({
            "sub": "u1",
            "data": {"user": {"id": 42, "roles": ["a", "b"]}},
            "https://example.com/groups": ["g1"],
            "list": [{"name": "x"}],
        });
        assert_eq!(path("sub").get(&doc), Some(&json!("u1")));
        assert_eq!(path("data.user.id").get(&doc), Some(&json!(42)));
        assert_eq!(path("data.user.roles[1]").get(&doc), Some(&json!("b")));
        assert_eq!(path("list[0].name").get(&doc), Some(&json!("x")));
        assert_eq!(
            path(r#"["https://example.com/groups"]"#).get(&doc),
            Some(&json!(["g1"]))
        );
        assert_eq!(path("data.missing").get(&doc), None);
        assert_eq!(path("sub.deeper").get(&doc), None);
        assert_eq!(path("data.user.roles[9]").get(&doc), None);
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in [
            "", ".sub", "sub.", "a..b", "a[", "a[x]", "a[0]b", "a b", r#"[""]"#,
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            path("a.b").parent().unwrap().get(&json!({"a": {"b": 1}})),
            Some(&json!({"b": 1}))
        );
        assert!(path("a").parent().is_none());
    }

    #[test]
    fn standard_claims_map_by_default() {
        let m = ClaimMapping::new(RawClaimMapping::default(), false);
        let id = m
            .apply(&json!({
                "sub": "abc",
                "preferred_username": "alice",
                "name": "Alice",
                "email": "alice@example.com",
                "email_verified": true,
                "groups": ["dev", "ops", "dev", 7, {"x": 1}],
                "phone_number": "+86 100",
                "picture": "https://example.com/a.png",
            }))
            .unwrap();
        assert_eq!(id.upstream_id, "abc");
        assert_eq!(id.username.as_deref(), Some("alice"));
        assert_eq!(id.display_name.as_deref(), Some("Alice"));
        assert_eq!(id.email.as_deref(), Some("alice@example.com"));
        assert!(id.email_verified);
        assert_eq!(id.groups, ["dev", "ops", "7"]);
        assert_eq!(id.phone.as_deref(), Some("+86 100"));
        assert_eq!(id.picture.as_deref(), Some("https://example.com/a.png"));
    }

    #[test]
    fn envelope_paths_and_fallbacks() {
        let raw: RawClaimMapping = serde_json::from_value(json!({
            "userID": "data.sub",
            "username": "data.username",
            "name": "data.nickname",
            "email": "data.email",
            "phone": "data.phone_number",
            "groups": "data.ou_name",
        }))
        .unwrap();
        let m = ClaimMapping::new(raw, false);
        let id = m
            .apply(&json!({"success": true, "data": {
                "sub": 1234567, "username": "bob", "nickname": "鲍勃 😎",
                "email": "bob@example.com", "phone_number": "13800000000", "ou_name": "研发部"
            }}))
            .unwrap();
        assert_eq!(id.upstream_id, "1234567");
        assert_eq!(id.username.as_deref(), Some("bob"));
        assert_eq!(id.display_name.as_deref(), Some("鲍勃 😎"));
        // No verification claim: not verified.
        assert!(!id.email_verified);
        assert_eq!(id.groups, ["研发部"]);
    }

    #[test]
    fn email_verified_accepts_string_true_and_the_override() {
        let m = ClaimMapping::new(RawClaimMapping::default(), false);
        let with = |v: Value| {
            m.apply(&json!({"sub": "x", "email": "a@b.c", "email_verified": v}))
                .unwrap()
                .email_verified
        };
        assert!(with(json!(true)));
        assert!(with(json!("true")));
        assert!(with(json!("TRUE")));
        assert!(!with(json!(false)));
        assert!(!with(json!("false")));
        assert!(!with(json!(1)));
        let skip = ClaimMapping::new(RawClaimMapping::default(), true);
        assert!(
            skip.apply(&json!({"sub": "x", "email": "a@b.c"}))
                .unwrap()
                .email_verified
        );
        // Nothing to verify without an email.
        assert!(!skip.apply(&json!({"sub": "x"})).unwrap().email_verified);
    }

    #[test]
    fn user_id_must_be_present_and_usable() {
        let m = ClaimMapping::new(RawClaimMapping::default(), false);
        assert!(m.apply(&json!({})).unwrap_err().contains("no user id"));
        assert!(m.apply(&json!({"sub": null})).is_err());
        assert!(m.apply(&json!({"sub": "  "})).is_err());
        assert!(m.apply(&json!({"sub": ["a"]})).is_err());
        assert!(m.apply(&json!({"sub": "x".repeat(2000)})).is_err());
    }

    #[test]
    fn preferred_username_wins_over_username() {
        let m = ClaimMapping::new(RawClaimMapping::default(), false);
        let id = m
            .apply(&json!({"sub": "1", "preferred_username": "p", "username": "u"}))
            .unwrap();
        assert_eq!(id.username.as_deref(), Some("p"));
        let id = m.apply(&json!({"sub": "1", "username": "u"})).unwrap();
        assert_eq!(id.username.as_deref(), Some("u"));
    }

    #[test]
    fn unknown_mapping_keys_and_bad_paths_fail_to_parse() {
        let err = serde_json::from_value::<RawClaimMapping>(json!({"userId": "sub"})).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = serde_json::from_value::<RawClaimMapping>(json!({"email": "a..b"})).unwrap_err();
        assert!(err.to_string().contains("empty key"), "{err}");
    }

    #[test]
    fn merge_lays_userinfo_over_id_token_claims() {
        let mut base = json!({"sub": "1", "name": "old", "email": "a@b.c"});
        merge(
            &mut base,
            &json!({"name": "new", "email": null, "groups": ["g"]}),
        );
        assert_eq!(
            base,
            json!({"sub": "1", "name": "new", "email": "a@b.c", "groups": ["g"]})
        );
    }
}

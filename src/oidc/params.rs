//! Request parameters as pairs, with the checks RFC 6749 3.1 and 3.2 ask of every endpoint:
//! no parameter twice, no absurd sizes.

use super::error::OAuthError;

/// Longest accepted value of any single parameter.
pub const MAX_PARAM_LEN: usize = 4096;
/// Most parameters accepted in one request.
pub const MAX_PARAMS: usize = 64;

#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text (a query string or a form body).
    pub fn parse(encoded: &str) -> Result<Self, OAuthError> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(encoded.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self::from_pairs(pairs)
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, OAuthError> {
        if pairs.len() > MAX_PARAMS {
            return Err(OAuthError::invalid_request("too many parameters"));
        }
        if let Some((k, _)) = pairs.iter().find(|(_, v)| v.len() > MAX_PARAM_LEN) {
            return Err(OAuthError::invalid_request(format!(
                "parameter {} is too long",
                printable(k)
            )));
        }
        Ok(Self { pairs })
    }

    /// The value of `name`; an error if it appears more than once. Empty values count as
    /// absent (RFC 6749 3.1: parameters sent without a value are treated as omitted).
    pub fn get(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut found = None;
        for (k, v) in &self.pairs {
            if k == name {
                if found.is_some() {
                    return Err(OAuthError::invalid_request(format!(
                        "parameter {name} was given more than once"
                    )));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found.filter(|v| !v.is_empty()))
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }

    /// Any parameter given more than once, for endpoints that refuse them all.
    pub fn first_duplicate(&self) -> Option<&str> {
        for (i, (k, _)) in self.pairs.iter().enumerate() {
            if self.pairs[..i].iter().any(|(k2, _)| k2 == k) {
                return Some(k);
            }
        }
        None
    }

    /// `Err(invalid_request)` naming the first parameter given more than once (RFC 6749 3.1).
    /// The name is reduced to safe characters: it is echoed in redirects and headers.
    pub fn refuse_duplicates(&self) -> Result<(), OAuthError> {
        match self.first_duplicate() {
            None => Ok(()),
            Some(dup) => Err(OAuthError::invalid_request(format!(
                "parameter {} was given more than once",
                printable(dup)
            ))),
        }
    }
}

/// A parameter name safe to echo in an error description.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_empty_values() {
        let p = Params::parse("a=1&a=2&b=&c=x").unwrap();
        assert!(p.get("a").is_err());
        assert_eq!(p.get("b").unwrap(), None);
        assert_eq!(p.get("c").unwrap(), Some("x"));
        assert_eq!(p.first_duplicate(), Some("a"));
    }

    #[test]
    fn oversized_values_are_refused() {
        let long = "x".repeat(MAX_PARAM_LEN + 1);
        assert!(Params::parse(&format!("state={long}")).is_err());
    }
}

//! Diagnosis of a token for `idbridge token inspect`: decode it, verify its signature against
//! an issuer's JWKS, check its claims, and say in plain words what is wrong.
//!
//! Nothing here does I/O or reads the clock: the caller fetches the discovery document and
//! the JWKS and passes the time, so every verdict can be tested without a server.

use std::fmt::{self, Write as _};

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::Value;

/// Clock skew tolerated for `iat` and `nbf` in the future. Expiry gets none: idbridge itself
/// refuses a token at `exp`, so reporting it valid a little longer would mislead.
pub const LEEWAY_SECS: i64 = 60;

/// Algorithms idbridge signs with.
const SUPPORTED_ALGS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

/// What the token is meant to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenKind {
    /// An RFC 9068 access token (`typ: at+jwt`), as a resource server receives it.
    #[default]
    Access,
    /// An OpenID Connect ID token (`typ: JWT`), as a relying party receives it.
    Id,
}

impl TokenKind {
    fn describe(self) -> &'static str {
        match self {
            TokenKind::Access => "access token",
            TokenKind::Id => "ID token",
        }
    }
}

/// What the caller expects of the token beyond signature, issuer and lifetime.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectations {
    pub kind: TokenKind,
    /// When set, `aud` must contain it (idbridge puts the client id there).
    pub audience: Option<String>,
}

/// One thing wrong with a token, with enough detail to explain it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not a compact JWS at all.
    Malformed(String),
    /// The discovery document or the JWKS is not usable.
    BadIssuerDocument(String),
    AlgNone,
    SymmetricAlg(String),
    UnsupportedAlg(String),
    MissingKid,
    UnknownKid {
        kid: String,
        published: Vec<String>,
    },
    AlgKeyMismatch {
        alg: String,
        kid: String,
        key: String,
    },
    UnusableKey {
        kid: String,
        reason: String,
    },
    BadSignature {
        kid: String,
        alg: String,
    },
    WrongIssuer {
        expected: String,
        found: Option<String>,
    },
    MissingExp,
    Expired {
        exp: i64,
        ago: i64,
    },
    NotYetValid {
        claim: &'static str,
        at: i64,
        ahead: i64,
    },
    /// An ID token (or any JWT without `typ: at+jwt`) presented as an access token.
    NotAnAccessToken {
        typ: Option<String>,
    },
    /// An access token presented as an ID token.
    NotAnIdToken,
    UnexpectedTyp(String),
    WrongAudience {
        expected: String,
        found: Vec<String>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed(detail) => write!(f, "malformed: {detail}"),
            Problem::BadIssuerDocument(detail) => {
                write!(f, "cannot verify against this issuer: {detail}")
            }
            Problem::AlgNone => f.write_str(
                "unsigned token (alg \"none\"): anyone can write such a token; \
                 idbridge never issues one and no verifier may accept it",
            ),
            Problem::SymmetricAlg(alg) => write!(
                f,
                "alg {alg:?} is a shared-secret MAC: idbridge signs only with asymmetric keys \
                 (RS256, ES256, EdDSA); a verifier that accepts {alg} with a public key as the \
                 secret can be fooled by anyone who has the JWKS"
            ),
            Problem::UnsupportedAlg(alg) => write!(
                f,
                "alg {alg:?} is not one idbridge signs with (RS256, ES256, EdDSA)"
            ),
            Problem::MissingKid => f.write_str(
                "the header has no kid: idbridge names the signing key in every token, so this \
                 token was not issued by idbridge",
            ),
            Problem::UnknownKid { kid, published } => write!(
                f,
                "unknown key: kid {kid:?} is not in the issuer's JWKS (published: {}); the token \
                 was issued by another issuer or another installation, or signed by a key that \
                 has since been retired (keys stay published only as long as tokens they signed \
                 can live)",
                if published.is_empty() {
                    "none".to_string()
                } else {
                    published.join(", ")
                }
            ),
            Problem::AlgKeyMismatch { alg, kid, key } => write!(
                f,
                "algorithm/key mismatch: the header says {alg} but key {kid:?} is {key}; a \
                 verifier must use the algorithm bound to the key, never the header's"
            ),
            Problem::UnusableKey { kid, reason } => {
                write!(f, "the JWKS entry for kid {kid:?} cannot be used: {reason}")
            }
            Problem::BadSignature { kid, alg } => write!(
                f,
                "bad signature: the {alg} signature does not match key {kid:?}; the header or \
                 the claims were changed after signing (or the token was cut or re-encoded)"
            ),
            Problem::WrongIssuer {
                expected,
                found: Some(found),
            } => write!(
                f,
                "wrong issuer: iss is {found:?} but the issuer is {expected:?} (compared byte \
                 for byte, trailing slash included)"
            ),
            Problem::WrongIssuer {
                expected,
                found: None,
            } => write!(f, "no iss claim (expected {expected:?})"),
            Problem::MissingExp => f.write_str("no exp claim: every idbridge token expires"),
            Problem::Expired { exp, ago } => write!(
                f,
                "expired {} ago (exp {})",
                human_duration(*ago),
                utc(*exp)
            ),
            Problem::NotYetValid { claim, at, ahead } => write!(
                f,
                "not yet valid: {claim} is {} ({} in the future, more than the {LEEWAY_SECS}s \
                 allowed for clock skew); check the clocks of the issuer and this machine",
                utc(*at),
                human_duration(*ahead)
            ),
            Problem::NotAnAccessToken { typ: Some(typ) } if typ.eq_ignore_ascii_case("JWT") => f
                .write_str(
                    "this is an ID token (typ \"JWT\"), not an access token (typ \"at+jwt\", RFC \
                     9068): send the access_token from the token response, not the id_token",
                ),
            Problem::NotAnAccessToken { typ: Some(typ) } => write!(
                f,
                "not an access token: typ is {typ:?} where RFC 9068 access tokens have \"at+jwt\""
            ),
            Problem::NotAnAccessToken { typ: None } => f.write_str(
                "not an access token: the header has no typ, where RFC 9068 access tokens have \
                 \"at+jwt\" (ID tokens may omit it)",
            ),
            Problem::NotAnIdToken => f.write_str(
                "this is an access token (typ \"at+jwt\"), not an ID token: use the id_token \
                 from the token response",
            ),
            Problem::UnexpectedTyp(typ) => write!(f, "unexpected typ {typ:?}"),
            Problem::WrongAudience { expected, found } => write!(
                f,
                "wrong audience: aud is [{}], which does not contain {expected:?}",
                found.join(", ")
            ),
        }
    }
}

/// A token split into its parts, not yet verified.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub header: Value,
    pub claims: Value,
    signing_input_len: usize,
    signature: Vec<u8>,
}

/// Splits and decodes a compact JWS. Surrounding whitespace and a `Bearer ` prefix (as
/// copied from an Authorization header) are ignored.
pub fn decode(token: &str) -> Result<Decoded, Problem> {
    let token = clean(token);
    if token.is_empty() {
        return Err(Problem::Malformed("the token is empty".into()));
    }
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => {}
        1 => {
            return Err(Problem::Malformed(
                "no '.' in it: an opaque token, not a JWT (check it with introspection)".into(),
            ));
        }
        2 => {
            return Err(Problem::Malformed(
                "two parts instead of three: this looks like an idbridge refresh token, which is \
                 opaque (check it with introspection), or a JWT that lost its signature"
                    .into(),
            ));
        }
        5 => {
            return Err(Problem::Malformed(
                "five parts: an encrypted JWT (JWE), which idbridge does not issue".into(),
            ));
        }
        n => {
            return Err(Problem::Malformed(format!(
                "{n} parts: a JWT has three base64url parts separated by '.'"
            )));
        }
    }
    let header = decode_part(parts[0], "header (part 1)")?;
    let claims = decode_part(parts[1], "claims (part 2)")?;
    let signature = B64
        .decode(parts[2])
        .map_err(|_| Problem::Malformed("the signature (part 3) is not valid base64url".into()))?;
    Ok(Decoded {
        header,
        claims,
        signing_input_len: parts[0].len() + 1 + parts[1].len(),
        signature,
    })
}

fn clean(token: &str) -> &str {
    let token = token.trim();
    match token.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => token[7..].trim_start(),
        _ => token,
    }
}

fn decode_part(part: &str, name: &str) -> Result<Value, Problem> {
    let bytes = B64.decode(part).map_err(|_| {
        let hint = if part.contains(['=', '+', '/']) {
            " (it has standard base64 characters or padding)"
        } else {
            ""
        };
        Problem::Malformed(format!("the {name} is not valid base64url{hint}"))
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Problem::Malformed(format!(
            "the {name} is JSON but not an object"
        ))),
        Err(_) => Err(Problem::Malformed(format!("the {name} is not JSON"))),
    }
}

/// The outcome of an inspection.
#[derive(Clone, Debug)]
pub struct Report {
    pub header: Option<Value>,
    pub claims: Option<Value>,
    /// The JWKS key that verified the signature, with its algorithm.
    pub verified_by: Option<(String, String)>,
    pub issuer: Option<String>,
    pub kind: TokenKind,
    /// Empty when the token is valid.
    pub problems: Vec<Problem>,
    pub now: i64,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// A report over a token that could not be checked against its issuer (for example
    /// because the issuer could not be reached): what it says, and why it is not vouched for.
    pub fn unverified(token: &str, reason: Problem, now: i64) -> Report {
        let mut report = Report {
            header: None,
            claims: None,
            verified_by: None,
            issuer: None,
            kind: TokenKind::default(),
            problems: vec![],
            now,
        };
        match decode(token) {
            Ok(decoded) => {
                report.header = Some(decoded.header);
                report.claims = Some(decoded.claims);
                report.problems.push(reason);
            }
            Err(problem) => report.problems.push(problem),
        }
        report
    }

    /// The text printed by `idbridge token inspect`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        if let Some(header) = &self.header {
            let _ = writeln!(out, "header:\n{}", indent(&pretty(header)));
        }
        if let Some(claims) = &self.claims {
            let _ = writeln!(out, "claims:\n{}", indent(&pretty(claims)));
            let times: Vec<(&str, i64)> = ["iat", "nbf", "auth_time", "exp"]
                .into_iter()
                .filter_map(|name| numeric_date(claims.get(name)?).map(|t| (name, t)))
                .collect();
            if !times.is_empty() {
                let _ = writeln!(out, "times (UTC):");
                for (name, t) in times {
                    let _ = writeln!(out, "  {name:<10} {}  ({})", utc(t), relative(t, self.now));
                }
            }
            let _ = writeln!(out);
        }
        if self.is_valid() {
            let _ = writeln!(out, "verdict: VALID {}", self.kind.describe());
            if let Some((kid, alg)) = &self.verified_by {
                let _ = writeln!(
                    out,
                    "  signature: {alg}, key {kid:?} from the issuer's JWKS"
                );
            }
            if let Some(issuer) = &self.issuer {
                let _ = writeln!(out, "  issuer:    {issuer}");
            }
            if let Some(exp) = self
                .claims
                .as_ref()
                .and_then(|c| numeric_date(c.get("exp")?))
            {
                let _ = writeln!(out, "  expires:   in {}", human_duration(exp - self.now));
            }
        } else {
            let n = self.problems.len();
            let _ = writeln!(
                out,
                "verdict: INVALID ({n} problem{})",
                if n == 1 { "" } else { "s" }
            );
            for problem in &self.problems {
                let _ = writeln!(out, "  - {problem}");
            }
        }
        out
    }
}

/// Checks `token` as an access token against the issuer described by `discovery` and `jwks`.
pub fn inspect(token: &str, discovery: &Value, jwks: &Value, now: i64) -> Report {
    inspect_with(token, discovery, jwks, now, &Expectations::default())
}

/// Checks `token` against the issuer described by `discovery` and `jwks`, at time `now`
/// (Unix seconds). Every problem found is reported, not only the first.
pub fn inspect_with(
    token: &str,
    discovery: &Value,
    jwks: &Value,
    now: i64,
    expect: &Expectations,
) -> Report {
    let issuer = discovery
        .get("issuer")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut report = Report {
        header: None,
        claims: None,
        verified_by: None,
        issuer: issuer.clone(),
        kind: expect.kind,
        problems: vec![],
        now,
    };
    let decoded = match decode(token) {
        Ok(d) => d,
        Err(problem) => {
            report.problems.push(problem);
            return report;
        }
    };
    let signing_input = &clean(token).as_bytes()[..decoded.signing_input_len];

    match check_signature(&decoded, signing_input, jwks) {
        Ok(verified) => report.verified_by = Some(verified),
        Err(problem) => report.problems.push(problem),
    }
    check_typ(&decoded.header, expect.kind, &mut report.problems);
    check_claims(
        &decoded.claims,
        issuer.as_deref(),
        expect,
        now,
        &mut report.problems,
    );

    report.header = Some(decoded.header);
    report.claims = Some(decoded.claims);
    report
}

fn check_signature(
    decoded: &Decoded,
    signing_input: &[u8],
    jwks: &Value,
) -> Result<(String, String), Problem> {
    let alg = decoded
        .header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::Malformed("the header has no alg".into()))?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(Problem::AlgNone);
    }
    if alg.starts_with("HS") {
        return Err(Problem::SymmetricAlg(alg.to_string()));
    }
    if !SUPPORTED_ALGS.contains(&alg) {
        return Err(Problem::UnsupportedAlg(alg.to_string()));
    }
    let kid = decoded
        .header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(Problem::MissingKid)?;
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| Problem::BadIssuerDocument("the JWKS has no \"keys\" array".into()))?;
    let jwk = keys
        .iter()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .ok_or_else(|| Problem::UnknownKid {
            kid: kid.to_string(),
            published: keys
                .iter()
                .filter_map(|k| k.get("kid").and_then(Value::as_str))
                .map(str::to_string)
                .collect(),
        })?;
    verify_with_jwk(jwk, kid, alg, signing_input, &decoded.signature)?;
    Ok((kid.to_string(), alg.to_string()))
}

fn verify_with_jwk(
    jwk: &Value,
    kid: &str,
    alg: &str,
    message: &[u8],
    sig: &[u8],
) -> Result<(), Problem> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kty = field("kty").unwrap_or("");
    let crv = field("crv");
    let key_description = match (kty, crv) {
        ("RSA", _) => "an RSA key".to_string(),
        (kty, Some(crv)) => format!("a {kty} key on {crv}"),
        (kty, None) => format!("a {kty:?} key"),
    };
    let mismatch = || Problem::AlgKeyMismatch {
        alg: alg.to_string(),
        kid: kid.to_string(),
        key: match field("alg") {
            Some(key_alg) => format!("{key_description} for {key_alg}"),
            None => key_description.clone(),
        },
    };
    if field("alg").is_some_and(|key_alg| key_alg != alg) {
        return Err(mismatch());
    }
    let unusable = |reason: &str| Problem::UnusableKey {
        kid: kid.to_string(),
        reason: reason.to_string(),
    };
    let bytes = |name: &str| -> Result<Vec<u8>, Problem> {
        let text = field(name).ok_or_else(|| unusable(&format!("no \"{name}\"")))?;
        B64.decode(text.trim_end_matches('='))
            .map_err(|_| unusable(&format!("\"{name}\" is not base64url")))
    };
    let bad_signature = |_| Problem::BadSignature {
        kid: kid.to_string(),
        alg: alg.to_string(),
    };
    match (alg, kty, crv) {
        ("RS256", "RSA", _) => {
            let n = bytes("n")?;
            let e = bytes("e")?;
            // Some publishers keep a leading zero byte; the verifier wants minimal integers.
            let strip = |v: &[u8]| -> Vec<u8> {
                let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
                v[start..].to_vec()
            };
            let components = RsaPublicKeyComponents {
                n: strip(&n),
                e: strip(&e),
            };
            components
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .map_err(bad_signature)
        }
        ("ES256", "EC", Some("P-256")) => {
            let x = bytes("x")?;
            let y = bytes("y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err(unusable("P-256 coordinates must be 32 bytes each"));
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, sig)
                .map_err(bad_signature)
        }
        ("EdDSA", "OKP", Some("Ed25519")) => {
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err(unusable("an Ed25519 key is 32 bytes"));
            }
            UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, sig)
                .map_err(bad_signature)
        }
        _ => Err(mismatch()),
    }
}

fn check_typ(header: &Value, kind: TokenKind, problems: &mut Vec<Problem>) {
    let typ = header.get("typ").and_then(Value::as_str);
    // RFC 9068 2.1 allows the media type with or without its "application/" prefix.
    let normalized = typ.map(|t| {
        let lower = t.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map(str::to_string)
            .unwrap_or(lower)
    });
    match (kind, normalized.as_deref()) {
        (TokenKind::Access, Some("at+jwt")) => {}
        (TokenKind::Access, _) => problems.push(Problem::NotAnAccessToken {
            typ: typ.map(str::to_string),
        }),
        (TokenKind::Id, None | Some("jwt")) => {}
        (TokenKind::Id, Some("at+jwt")) => problems.push(Problem::NotAnIdToken),
        (TokenKind::Id, Some(_)) => {
            problems.push(Problem::UnexpectedTyp(typ.unwrap_or_default().to_string()))
        }
    }
}

fn check_claims(
    claims: &Value,
    issuer: Option<&str>,
    expect: &Expectations,
    now: i64,
    problems: &mut Vec<Problem>,
) {
    let iss = claims.get("iss").and_then(Value::as_str);
    match issuer {
        Some(expected) if iss != Some(expected) => problems.push(Problem::WrongIssuer {
            expected: expected.to_string(),
            found: iss.map(str::to_string),
        }),
        Some(_) => {}
        None => problems.push(Problem::BadIssuerDocument(
            "the discovery document has no \"issuer\"".into(),
        )),
    }
    match claims.get("exp").and_then(numeric_date) {
        None => problems.push(Problem::MissingExp),
        Some(exp) if exp <= now => problems.push(Problem::Expired {
            exp,
            ago: now - exp,
        }),
        Some(_) => {}
    }
    for claim in ["nbf", "iat"] {
        if let Some(at) = claims.get(claim).and_then(numeric_date)
            && at > now + LEEWAY_SECS
        {
            problems.push(Problem::NotYetValid {
                claim,
                at,
                ahead: at - now,
            });
        }
    }
    if let Some(expected) = &expect.audience {
        let found: Vec<String> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => vec![],
        };
        if !found.iter().any(|a| a == expected) {
            problems.push(Problem::WrongAudience {
                expected: expected.clone(),
                found,
            });
        }
    }
}

/// A JWT NumericDate: seconds, possibly with a fraction (RFC 7519 2).
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `2026-11-03 10:15:00 UTC`.
pub fn utc(ts: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ts) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ts} (out of range)"),
    }
}

/// `1h 59m 30s`, `3d 4h 0m 0s`, `45s`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.unsigned_abs();
    let (d, h, m, s) = (
        secs / 86_400,
        (secs % 86_400) / 3_600,
        (secs % 3_600) / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h}h {m}m {s}s")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

fn relative(t: i64, now: i64) -> String {
    match t.cmp(&now) {
        std::cmp::Ordering::Less => format!("{} ago", human_duration(now - t)),
        std::cmp::Ordering::Equal => "now".to_string(),
        std::cmp::Ordering::Greater => format!("in {}", human_duration(t - now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    const ISSUER: &str = "https://sso.example.com/dex";
    const NOW: i64 = 1_800_000_000;

    enum Signer {
        Rsa(aws_lc_rs::rsa::KeyPair),
        Ec(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    struct TestKey {
        kid: String,
        alg: &'static str,
        signer: Signer,
    }

    impl TestKey {
        fn rsa(kid: &str) -> Self {
            let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            Self {
                kid: kid.into(),
                alg: "RS256",
                signer: Signer::Rsa(kp),
            }
        }

        fn ec(kid: &str) -> Self {
            let rng = SystemRandom::new();
            let der =
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .unwrap();
            let kp =
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref())
                    .unwrap();
            Self {
                kid: kid.into(),
                alg: "ES256",
                signer: Signer::Ec(kp),
            }
        }

        fn ed(kid: &str) -> Self {
            let rng = SystemRandom::new();
            let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let kp = Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
            Self {
                kid: kid.into(),
                alg: "EdDSA",
                signer: Signer::Ed(kp),
            }
        }

        fn jwk(&self) -> Value {
            let mut jwk = match &self.signer {
                Signer::Rsa(kp) => {
                    let pk = kp.public_key();
                    json!({
                        "kty": "RSA",
                        "n": B64.encode(pk.modulus().big_endian_without_leading_zero()),
                        "e": B64.encode(pk.exponent().big_endian_without_leading_zero()),
                    })
                }
                Signer::Ec(kp) => {
                    let p = kp.public_key().as_ref();
                    json!({"kty": "EC", "crv": "P-256",
                           "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])})
                }
                Signer::Ed(kp) => {
                    json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(kp.public_key().as_ref())})
                }
            };
            jwk["kid"] = json!(self.kid);
            jwk["alg"] = json!(self.alg);
            jwk["use"] = json!("sig");
            jwk
        }

        fn sign_raw(&self, header: &Value, claims: &Value) -> String {
            let mut out = B64.encode(serde_json::to_vec(header).unwrap());
            out.push('.');
            out.push_str(&B64.encode(serde_json::to_vec(claims).unwrap()));
            let rng = SystemRandom::new();
            let sig = match &self.signer {
                Signer::Rsa(kp) => {
                    let mut sig = vec![0; kp.public_modulus_len()];
                    kp.sign(&signature::RSA_PKCS1_SHA256, &rng, out.as_bytes(), &mut sig)
                        .unwrap();
                    sig
                }
                Signer::Ec(kp) => kp.sign(&rng, out.as_bytes()).unwrap().as_ref().to_vec(),
                Signer::Ed(kp) => kp.sign(out.as_bytes()).as_ref().to_vec(),
            };
            out.push('.');
            out.push_str(&B64.encode(sig));
            out
        }

        fn sign(&self, typ: &str, claims: &Value) -> String {
            self.sign_raw(
                &json!({"alg": self.alg, "kid": self.kid, "typ": typ}),
                claims,
            )
        }
    }

    fn access_claims() -> Value {
        json!({
            "iss": ISSUER, "sub": "u1", "aud": "grafana", "client_id": "grafana",
            "iat": NOW - 60, "exp": NOW + 3540, "jti": "j1", "scope": "openid", "gid": "g1",
        })
    }

    fn discovery() -> Value {
        json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}/keys")})
    }

    fn jwks(keys: &[&TestKey]) -> Value {
        json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
    }

    fn problems(token: &str, keys: &[&TestKey]) -> Vec<Problem> {
        inspect(token, &discovery(), &jwks(keys), NOW).problems
    }

    #[test]
    fn valid_access_tokens_for_every_algorithm() {
        let keys = [TestKey::rsa("r1"), TestKey::ec("e1"), TestKey::ed("d1")];
        let all: Vec<&TestKey> = keys.iter().collect();
        for key in &keys {
            let token = key.sign("at+jwt", &access_claims());
            let report = inspect(&token, &discovery(), &jwks(&all), NOW);
            assert!(report.is_valid(), "{}: {:?}", key.alg, report.problems);
            assert_eq!(
                report.verified_by,
                Some((key.kid.clone(), key.alg.to_string()))
            );
            let text = report.render();
            assert!(text.contains("verdict: VALID access token"), "{text}");
            assert!(text.contains("expires:   in 59m 0s"), "{text}");
            assert!(
                text.contains("exp        2027-01-15 08:59:00 UTC  (in 59m 0s)"),
                "{text}"
            );
        }
    }

    #[test]
    fn bearer_prefix_and_whitespace_are_ignored() {
        let key = TestKey::ec("e1");
        let token = format!("Bearer {}\n", key.sign("at+jwt", &access_claims()));
        assert!(problems(&token, &[&key]).is_empty());
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        for key in [TestKey::rsa("r1"), TestKey::ec("e1"), TestKey::ed("d1")] {
            let token = key.sign("at+jwt", &access_claims());
            let parts: Vec<&str> = token.split('.').collect();
            let mut claims = access_claims();
            claims["sub"] = json!("admin");
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                B64.encode(serde_json::to_vec(&claims).unwrap()),
                parts[2]
            );
            let found = problems(&forged, &[&key]);
            assert_eq!(
                found,
                vec![Problem::BadSignature {
                    kid: key.kid.clone(),
                    alg: key.alg.into()
                }]
            );
            assert!(found[0].to_string().starts_with("bad signature"));
        }
    }

    #[test]
    fn malformed_tokens_are_explained() {
        let key = TestKey::ec("e1");
        let good = key.sign("at+jwt", &access_claims());
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            ("", "empty"),
            ("opaque-token", "opaque"),
            ("abc.def", "refresh token"),
            ("a.b.c.d.e", "JWE"),
            ("a.b.c.d", "4 parts"),
            (
                &format!("bm90IGpzb24.{}.{}", parts[1], parts[2]),
                "header (part 1) is not JSON",
            ),
            (
                &format!("{}.WzFd.{}", parts[0], parts[2]),
                "claims (part 2) is JSON but not an object",
            ),
            (
                &format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
                "padding",
            ),
            (
                &format!("{}.{}.!!", parts[0], parts[1]),
                "signature (part 3)",
            ),
        ];
        for (token, expected) in cases {
            let report = inspect(token, &discovery(), &jwks(&[&key]), NOW);
            assert_eq!(report.problems.len(), 1, "{token}");
            let text = report.problems[0].to_string();
            assert!(text.starts_with("malformed: "), "{text}");
            assert!(text.contains(expected), "{token}: {text}");
            assert!(report.render().contains("verdict: INVALID (1 problem)"));
        }
    }

    #[test]
    fn alg_none_and_hmac_are_refused() {
        let key = TestKey::ec("e1");
        let claims = B64.encode(serde_json::to_vec(&access_claims()).unwrap());
        let none = format!(
            "{}.{claims}.",
            B64.encode(br#"{"alg":"none","typ":"at+jwt"}"#)
        );
        assert_eq!(problems(&none, &[&key]), vec![Problem::AlgNone]);
        let hs = format!(
            "{}.{claims}.c2ln",
            B64.encode(br#"{"alg":"HS256","kid":"e1","typ":"at+jwt"}"#)
        );
        let found = problems(&hs, &[&key]);
        assert_eq!(found, vec![Problem::SymmetricAlg("HS256".into())]);
        assert!(found[0].to_string().contains("shared-secret"));
    }

    #[test]
    fn unknown_kid_names_the_published_keys() {
        let ours = TestKey::ec("ours");
        let theirs = TestKey::ec("theirs");
        let token = theirs.sign("at+jwt", &access_claims());
        let found = problems(&token, &[&ours]);
        assert_eq!(
            found,
            vec![Problem::UnknownKid {
                kid: "theirs".into(),
                published: vec!["ours".into()]
            }]
        );
        let text = found[0].to_string();
        assert!(
            text.contains("another issuer") && text.contains("retired"),
            "{text}"
        );
    }

    #[test]
    fn header_algorithm_must_match_the_key() {
        let ec = TestKey::ec("k1");
        let rsa = TestKey::rsa("k1");
        // Signed with RSA but the JWKS binds k1 to an EC key.
        let token = rsa.sign("at+jwt", &access_claims());
        let found = problems(&token, &[&ec]);
        assert!(
            matches!(&found[..], [Problem::AlgKeyMismatch { alg, .. }] if alg == "RS256"),
            "{found:?}"
        );
        assert!(found[0].to_string().contains("EC key on P-256 for ES256"));
        // Header claims ES256 for an RSA key.
        let token = ec.sign_raw(
            &json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
            &access_claims(),
        );
        let found = problems(&token, &[&rsa]);
        assert!(
            matches!(&found[..], [Problem::AlgKeyMismatch { .. }]),
            "{found:?}"
        );
    }

    #[test]
    fn wrong_issuer_is_reported_with_both_values() {
        let key = TestKey::ed("d1");
        let mut claims = access_claims();
        claims["iss"] = json!(format!("{ISSUER}/"));
        let found = problems(&key.sign("at+jwt", &claims), &[&key]);
        assert_eq!(
            found,
            vec![Problem::WrongIssuer {
                expected: ISSUER.into(),
                found: Some(format!("{ISSUER}/"))
            }]
        );
        assert!(found[0].to_string().contains("trailing slash"));
    }

    #[test]
    fn expiry_says_by_how_long() {
        let key = TestKey::ec("e1");
        let mut claims = access_claims();
        claims["iat"] = json!(NOW - 3 * 3600);
        claims["exp"] = json!(NOW - 2 * 3600 - 30);
        let report = inspect(
            &key.sign("at+jwt", &claims),
            &discovery(),
            &jwks(&[&key]),
            NOW,
        );
        assert_eq!(
            report.problems,
            vec![Problem::Expired {
                exp: NOW - 7230,
                ago: 7230
            }]
        );
        let text = report.render();
        assert!(
            text.contains("expired 2h 0m 30s ago (exp 2027-01-15 05:59:30 UTC)"),
            "{text}"
        );
        assert!(text.contains("(2h 0m 30s ago)"), "{text}");
        // Exactly at exp is already expired, as the server decides.
        claims["exp"] = json!(NOW);
        assert!(matches!(
            &problems(&key.sign("at+jwt", &claims), &[&key])[..],
            [Problem::Expired { ago: 0, .. }]
        ));
        claims.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            problems(&key.sign("at+jwt", &claims), &[&key]),
            vec![Problem::MissingExp]
        );
    }

    #[test]
    fn future_tokens_beyond_the_skew_allowance_are_not_yet_valid() {
        let key = TestKey::ec("e1");
        let mut claims = access_claims();
        claims["iat"] = json!(NOW + LEEWAY_SECS);
        assert!(problems(&key.sign("at+jwt", &claims), &[&key]).is_empty());
        claims["iat"] = json!(NOW + 600);
        claims["exp"] = json!(NOW + 4200);
        let found = problems(&key.sign("at+jwt", &claims), &[&key]);
        assert_eq!(
            found,
            vec![Problem::NotYetValid {
                claim: "iat",
                at: NOW + 600,
                ahead: 600
            }]
        );
        assert!(found[0].to_string().contains("10m 0s in the future"));
    }

    #[test]
    fn id_token_is_not_an_access_token_and_back() {
        let key = TestKey::ec("e1");
        let id_token = key.sign("JWT", &access_claims());
        let found = problems(&id_token, &[&key]);
        assert_eq!(
            found,
            vec![Problem::NotAnAccessToken {
                typ: Some("JWT".into())
            }]
        );
        assert!(found[0].to_string().contains("ID token"));
        let expect_id = Expectations {
            kind: TokenKind::Id,
            audience: None,
        };
        let report = inspect_with(&id_token, &discovery(), &jwks(&[&key]), NOW, &expect_id);
        assert!(report.is_valid(), "{:?}", report.problems);
        assert!(report.render().contains("verdict: VALID ID token"));
        let access = key.sign("application/at+jwt", &access_claims());
        assert!(problems(&access, &[&key]).is_empty());
        let report = inspect_with(&access, &discovery(), &jwks(&[&key]), NOW, &expect_id);
        assert_eq!(report.problems, vec![Problem::NotAnIdToken]);
    }

    #[test]
    fn audience_is_checked_when_asked() {
        let key = TestKey::ec("e1");
        let token = key.sign("at+jwt", &access_claims());
        let expect = |aud: &str| Expectations {
            kind: TokenKind::Access,
            audience: Some(aud.into()),
        };
        let jwks = jwks(&[&key]);
        assert!(inspect_with(&token, &discovery(), &jwks, NOW, &expect("grafana")).is_valid());
        let report = inspect_with(&token, &discovery(), &jwks, NOW, &expect("harbor"));
        assert_eq!(
            report.problems,
            vec![Problem::WrongAudience {
                expected: "harbor".into(),
                found: vec!["grafana".into()]
            }]
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let other = TestKey::ec("other");
        let ours = TestKey::ec("ours");
        let mut claims = access_claims();
        claims["iss"] = json!("https://elsewhere.example.com");
        claims["exp"] = json!(NOW - 10);
        let report = inspect(
            &other.sign("JWT", &claims),
            &discovery(),
            &jwks(&[&ours]),
            NOW,
        );
        assert_eq!(report.problems.len(), 4, "{:?}", report.problems);
        assert!(report.render().contains("verdict: INVALID (4 problems)"));
    }

    #[test]
    fn unverified_report_still_shows_the_claims() {
        let key = TestKey::ec("e1");
        let token = key.sign("at+jwt", &access_claims());
        let report = Report::unverified(
            &token,
            Problem::BadIssuerDocument("connection refused".into()),
            NOW,
        );
        assert!(!report.is_valid());
        let text = report.render();
        assert!(text.contains("\"sub\": \"u1\""), "{text}");
        assert!(text.contains("connection refused"), "{text}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(61), "1m 1s");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600), "3d 4h 0m 0s");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    }
}

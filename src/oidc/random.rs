//! Random identifiers and hashing helpers.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

fn bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The system RNG failing is not recoverable; aws-lc aborts the process in that case anyway.
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        panic!("system random number generator failed");
    }
    buf
}

/// `n` random bytes as unpadded base64url: for codes, tokens and CSRF values.
pub fn token(n: usize) -> String {
    B64.encode(bytes(n))
}

/// A random string of `len` characters from `[a-z0-9]`: safe as a label value and in URLs.
pub fn lower_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // 252 is the largest multiple of 36 below 256: rejecting above it keeps the output uniform.
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in bytes(len * 2) {
            if out.len() == len {
                break;
            }
            if b < 252 {
                out.push(ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    out
}

/// SHA-256 as unpadded base64url (the form used by PKCE S256 and `at_hash`).
pub fn sha256_b64(data: &[u8]) -> String {
    B64.encode(digest::digest(&digest::SHA256, data))
}

/// Left half of SHA-256, base64url: `at_hash` for RS256/ES256 (OpenID Connect Core 3.1.3.6).
pub fn half_sha256_b64(data: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, data);
    B64.encode(&d.as_ref()[..16])
}

/// Left half of SHA-512, base64url: `at_hash` for EdDSA with Ed25519.
pub fn half_sha512_b64(data: &[u8]) -> String {
    let d = digest::digest(&digest::SHA512, data);
    B64.encode(&d.as_ref()[..32])
}

/// Constant-time equality of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_alnum_has_the_right_shape() {
        let s = lower_alnum(40);
        assert_eq!(s.len(), 40);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(lower_alnum(40), s);
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            sha256_b64(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

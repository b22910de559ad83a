//! Signing the way idbridge's token endpoint signs: key pairs parsed once, a compact JWS built
//! from a small header and an access-token-sized claim set, the signature made by aws-lc-rs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    RS256,
    ES256,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }
}

enum Pair {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A parsed key pair plus its PKCS#8 form (for the `jsonwebtoken` contrast).
pub struct Signer {
    pub alg: Alg,
    pair: Pair,
    pkcs8: Vec<u8>,
    rng: SystemRandom,
}

impl Signer {
    pub fn generate(alg: Alg) -> Signer {
        let rng = SystemRandom::new();
        let pkcs8: Vec<u8> = match alg {
            Alg::RS256 => {
                let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .expect("RSA key generation");
                AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp)
                    .expect("RSA PKCS#8 export")
                    .as_ref()
                    .to_vec()
            }
            Alg::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .expect("P-256 key generation")
                    .as_ref()
                    .to_vec()
            }
            Alg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .expect("Ed25519 key generation")
                .as_ref()
                .to_vec(),
        };
        let pair = match alg {
            Alg::RS256 => Pair::Rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8).expect("parse")),
            Alg::ES256 => Pair::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .expect("parse"),
            ),
            Alg::EdDSA => Pair::Ed(Ed25519KeyPair::from_pkcs8(&pkcs8).expect("parse")),
        };
        Signer {
            alg,
            pair,
            pkcs8,
            rng,
        }
    }

    /// The raw signature primitive over `input`.
    pub fn sign_raw(&self, input: &[u8]) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &self.rng, input, &mut sig)
                    .expect("RSA signing");
                sig
            }
            Pair::Ec(kp) => kp
                .sign(&self.rng, input)
                .expect("ECDSA signing")
                .as_ref()
                .to_vec(),
            Pair::Ed(kp) => kp.sign(input).as_ref().to_vec(),
        }
    }

    /// A whole compact JWS: header and claims serialised and encoded, then signed.
    pub fn sign_jws(&self, claims: &serde_json::Value) -> String {
        let header =
            serde_json::json!({"alg": self.alg.name(), "kid": "bench-key", "typ": "at+jwt"});
        let mut out = B64.encode(serde_json::to_vec(&header).expect("header"));
        out.push('.');
        out.push_str(&B64.encode(serde_json::to_vec(claims).expect("claims")));
        let sig = self.sign_raw(out.as_bytes());
        out.push('.');
        out.push_str(&B64.encode(sig));
        out
    }

    /// The same token through `jsonwebtoken::encode` (aws-lc backend).
    pub fn jsonwebtoken_key(&self) -> (jsonwebtoken::Header, jsonwebtoken::EncodingKey) {
        let pem = |label: &str| {
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                STANDARD.encode(&self.pkcs8)
            )
        };
        match self.alg {
            Alg::RS256 => (
                jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                jsonwebtoken::EncodingKey::from_rsa_pem(pem("PRIVATE KEY").as_bytes())
                    .expect("RSA PEM"),
            ),
            Alg::ES256 => (
                jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
                jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
            ),
            Alg::EdDSA => (
                jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
                jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8),
            ),
        }
    }
}

/// Claims shaped like a client-credentials access token.
pub fn access_token_claims() -> serde_json::Value {
    serde_json::json!({
        "iss": "http://127.0.0.1:5556",
        "sub": "bench-cc",
        "aud": "bench-cc",
        "client_id": "bench-cc",
        "iat": 1_800_000_000i64,
        "exp": 1_800_003_600i64,
        "jti": "Jk3v0Qm1u7bC2lq8yZpR9w",
        "gid": "Jk3v0Qm1u7bC2lq8yZpR9w",
        "scope": "api",
    })
}

/// Operations per second of `op` run in a tight loop on `threads` threads for `duration`.
pub fn throughput<F>(threads: usize, duration: Duration, op: F) -> f64
where
    F: Fn() + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (op, stop, count, start) = (op.clone(), stop.clone(), count.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op();
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("signing thread");
    }
    count.load(Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signer_and_jsonwebtoken_produce_compact_jws() {
        for alg in Alg::ALL {
            let s = Signer::generate(alg);
            let token = s.sign_jws(&access_token_claims());
            assert_eq!(token.split('.').count(), 3);
            let (header, key) = s.jsonwebtoken_key();
            let other = jsonwebtoken::encode(&header, &access_token_claims(), &key).unwrap();
            assert_eq!(other.split('.').count(), 3, "{}", alg.name());
        }
    }
}

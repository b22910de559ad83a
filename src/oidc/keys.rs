//! Signing keys: generation, rotation, JWKS, and compact JWS signing and verification.
//!
//! Parsed key pairs stay in memory: signing never touches storage and never re-parses a key
//! (re-parsing an RSA key costs more than the signature itself). Keys rotate every
//! `keysRotationPeriod`; a new key is published in the JWKS for [`PUBLISH_AHEAD`] seconds
//! before anyone signs with it, so relying parties and other replicas that cache the JWKS
//! already know it, and a retired key stays published until every token it signed expired.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::config::SigningAlgorithm;
use crate::storage::{SigningKey, Storage, StorageError, Timestamp};

/// Seconds a new key is published before it is used for signing. Replicas reload keys every
/// [`RELOAD_INTERVAL`] seconds, so this is comfortably more than one reload.
pub const PUBLISH_AHEAD: i64 = 120;
/// How often every process re-reads the key set from storage.
pub const RELOAD_INTERVAL: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key storage: {0}")]
    Storage(#[from] StorageError),
    #[error("stored key {kid} cannot be used: {reason}")]
    BadKey { kid: String, reason: String },
    #[error("key generation failed")]
    Generation,
    #[error("no signing key for {0}")]
    NoKey(&'static str),
}

enum PrivateKey {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One parsed key: the private half for signing, the public half for verifying and the JWKS.
struct LoadedKey {
    kid: String,
    alg: SigningAlgorithm,
    private: PrivateKey,
    public: UnparsedPublicKey<Vec<u8>>,
    jwk: Value,
    created_at: Timestamp,
}

impl LoadedKey {
    fn parse(stored: &SigningKey) -> Result<Self, KeyError> {
        let bad = |reason: &str| KeyError::BadKey {
            kid: stored.kid.clone(),
            reason: reason.to_string(),
        };
        let alg = parse_alg(&stored.alg).ok_or_else(|| bad("unknown algorithm"))?;
        let (private, public, jwk) = match alg {
            SigningAlgorithm::RS256 => {
                let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(&stored.private_der)
                    .map_err(|_| bad("not an RSA PKCS#8 key"))?;
                let pk = kp.public_key();
                let jwk = json!({
                    "kty": "RSA",
                    "n": B64.encode(pk.modulus().big_endian_without_leading_zero()),
                    "e": B64.encode(pk.exponent().big_endian_without_leading_zero()),
                });
                let public = UnparsedPublicKey::new(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    pk.as_ref().to_vec(),
                );
                (PrivateKey::Rsa(kp), public, jwk)
            }
            SigningAlgorithm::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &stored.private_der,
                )
                .map_err(|_| bad("not a P-256 PKCS#8 key"))?;
                let point = kp.public_key().as_ref().to_vec();
                // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                if point.len() != 65 {
                    return Err(bad("unexpected P-256 public key encoding"));
                }
                let jwk = json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": B64.encode(&point[1..33]),
                    "y": B64.encode(&point[33..65]),
                });
                let public = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point);
                (PrivateKey::Ec(kp), public, jwk)
            }
            SigningAlgorithm::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&stored.private_der)
                    .map_err(|_| bad("not an Ed25519 PKCS#8 key"))?;
                let raw = kp.public_key().as_ref().to_vec();
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(&raw)});
                let public = UnparsedPublicKey::new(&signature::ED25519, raw);
                (PrivateKey::Ed(kp), public, jwk)
            }
        };
        let mut jwk = jwk;
        if let Value::Object(map) = &mut jwk {
            map.insert("kid".into(), Value::String(stored.kid.clone()));
            map.insert("use".into(), Value::String("sig".into()));
            map.insert("alg".into(), Value::String(alg.as_str().into()));
        }
        Ok(Self {
            kid: stored.kid.clone(),
            alg,
            private,
            public,
            jwk,
            created_at: stored.created_at,
        })
    }

    fn sign(&self, rng: &SystemRandom, input: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.private {
            PrivateKey::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, rng, input, &mut sig)
                    .map_err(|_| KeyError::Generation)?;
                Ok(sig)
            }
            PrivateKey::Ec(kp) => kp
                .sign(rng, input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Generation),
            PrivateKey::Ed(kp) => Ok(kp.sign(input).as_ref().to_vec()),
        }
    }
}

fn parse_alg(s: &str) -> Option<SigningAlgorithm> {
    match s {
        "RS256" => Some(SigningAlgorithm::RS256),
        "ES256" => Some(SigningAlgorithm::ES256),
        "EdDSA" => Some(SigningAlgorithm::EdDSA),
        _ => None,
    }
}

/// Generates a fresh key pair for `alg` as a storable record.
pub fn generate_key(
    alg: SigningAlgorithm,
    now: Timestamp,
    rotation_period: i64,
    max_token_lifetime: i64,
) -> Result<SigningKey, KeyError> {
    let rng = SystemRandom::new();
    let der = match alg {
        SigningAlgorithm::RS256 => {
            let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeyError::Generation)?;
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp)
                .map_err(|_| KeyError::Generation)?
                .as_ref()
                .to_vec()
        }
        SigningAlgorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Generation)?
                .as_ref()
                .to_vec()
        }
        SigningAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyError::Generation)?
            .as_ref()
            .to_vec(),
    };
    let rotate_at = now + PUBLISH_AHEAD + rotation_period;
    Ok(SigningKey {
        kid: crate::oidc::random::token(12),
        alg: alg.as_str().to_string(),
        private_der: der,
        created_at: now,
        rotate_at,
        expires_at: rotate_at + max_token_lifetime,
    })
}

#[derive(Clone, Debug)]
struct Newest {
    kid: String,
    created_at: Timestamp,
    rotate_at: Timestamp,
}

impl Newest {
    /// The creation time of a successor: strictly later, so keys made within one second of
    /// each other still have an order every replica agrees on.
    fn successor_time(newest: Option<&Newest>, now: Timestamp) -> Timestamp {
        newest.map_or(now, |n| now.max(n.created_at + 1))
    }
}

/// An immutable view of the keys at one moment; swapped whole on reload.
struct Snapshot {
    /// The newest stored key of each algorithm, expired or not: what a rotation must name as
    /// the key it replaces.
    newest: BTreeMap<String, Newest>,
    keys: Vec<Arc<LoadedKey>>,
    by_kid: BTreeMap<String, Arc<LoadedKey>>,
    jwks: Bytes,
    /// Tokens that verified against this key set (see [`KeyManager::verify_remembered`]).
    /// It lives and dies with the key set: a reload starts with nothing remembered.
    verified: Mutex<HashMap<String, Arc<Verified>>>,
}

/// How many verified tokens a key set remembers; when full, it starts over.
const VERIFIED_CAPACITY: usize = 1024;

/// The decoded parts of a token whose signature verified.
#[derive(Debug)]
pub struct Verified {
    pub header: Value,
    pub claims: Value,
}

impl Snapshot {
    fn build(stored: &[SigningKey], now: Timestamp) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for k in stored {
            if k.expires_at <= now {
                continue;
            }
            keys.push(Arc::new(LoadedKey::parse(k)?));
        }
        keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        let by_kid = keys.iter().map(|k| (k.kid.clone(), k.clone())).collect();
        let jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        let mut newest: BTreeMap<String, Newest> = BTreeMap::new();
        for k in stored {
            let newer = newest
                .get(&k.alg)
                .is_none_or(|n| (k.created_at, &k.kid) > (n.created_at, &n.kid));
            if newer {
                newest.insert(
                    k.alg.clone(),
                    Newest {
                        kid: k.kid.clone(),
                        created_at: k.created_at,
                        rotate_at: k.rotate_at,
                    },
                );
            }
        }
        Ok(Self {
            newest,
            keys,
            by_kid,
            jwks: Bytes::from(serde_json::to_vec(&jwks).unwrap_or_default()),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The key to sign with: the newest key of `alg` that has been published long enough,
    /// or the oldest key of `alg` when none has (first start).
    fn active(&self, alg: SigningAlgorithm, now: Timestamp) -> Option<&Arc<LoadedKey>> {
        let of_alg = self.keys.iter().filter(|k| k.alg == alg);
        let first = of_alg.clone().next();
        of_alg
            .rev()
            .find(|k| k.created_at + PUBLISH_AHEAD <= now)
            .or(first)
    }
}

/// The process's key set. Cheap to clone.
#[derive(Clone)]
pub struct KeyManager {
    inner: Arc<Inner>,
}

struct Inner {
    algorithms: Vec<SigningAlgorithm>,
    rotation_period: i64,
    max_token_lifetime: i64,
    snapshot: RwLock<Arc<Snapshot>>,
    rng: SystemRandom,
}

impl KeyManager {
    /// Loads the stored keys, creating the first key of each algorithm when there is none.
    pub async fn load(
        storage: &dyn Storage,
        algorithms: Vec<SigningAlgorithm>,
        rotation_period: i64,
        max_token_lifetime: i64,
        now: Timestamp,
    ) -> Result<Self, KeyError> {
        let stored = storage.list_signing_keys().await?;
        let manager = Self {
            inner: Arc::new(Inner {
                algorithms,
                rotation_period,
                max_token_lifetime,
                snapshot: RwLock::new(Arc::new(Snapshot::build(&stored, now)?)),
                rng: SystemRandom::new(),
            }),
        };
        manager.rotate_if_due(storage, now).await?;
        Ok(manager)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        match self.inner.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the stored keys (so keys created by other replicas are published here).
    pub async fn reload(&self, storage: &dyn Storage, now: Timestamp) -> Result<(), KeyError> {
        let stored = storage.list_signing_keys().await?;
        let snap = Arc::new(Snapshot::build(&stored, now)?);
        match self.inner.snapshot.write() {
            Ok(mut s) => *s = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
        Ok(())
    }

    /// Creates the next key of every algorithm whose newest key is due to be replaced. Only
    /// one process wins each rotation (storage compares the newest key); everyone reloads.
    pub async fn rotate_if_due(
        &self,
        storage: &dyn Storage,
        now: Timestamp,
    ) -> Result<(), KeyError> {
        for &alg in &self.inner.algorithms {
            let newest = self.snapshot().newest.get(alg.as_str()).cloned();
            let due = match &newest {
                None => true,
                Some(n) => now + PUBLISH_AHEAD >= n.rotate_at,
            };
            if due {
                let key = generate_key(
                    alg,
                    Newest::successor_time(newest.as_ref(), now),
                    self.inner.rotation_period,
                    self.inner.max_token_lifetime,
                )?;
                let expected = newest.as_ref().map(|n| n.kid.as_str());
                let created = storage.rotate_signing_keys(expected, &key, now).await?;
                if created {
                    tracing::info!(kid = %key.kid, alg = alg.as_str(), "created signing key");
                }
                self.reload(storage, now).await?;
            }
        }
        Ok(())
    }

    /// Forces the creation of a new key for every algorithm now (admin command and tests).
    pub async fn force_rotation(
        &self,
        storage: &dyn Storage,
        now: Timestamp,
    ) -> Result<(), KeyError> {
        for &alg in &self.inner.algorithms {
            let newest = self.snapshot().newest.get(alg.as_str()).cloned();
            let expected = newest.as_ref().map(|n| n.kid.clone());
            let key = generate_key(
                alg,
                Newest::successor_time(newest.as_ref(), now),
                self.inner.rotation_period,
                self.inner.max_token_lifetime,
            )?;
            storage
                .rotate_signing_keys(expected.as_deref(), &key, now)
                .await?;
        }
        self.reload(storage, now).await
    }

    /// The JWKS document (serialized once per reload).
    pub fn jwks(&self) -> Bytes {
        self.snapshot().jwks.clone()
    }

    /// Whether a key of `alg` is loaded (readiness).
    pub fn has_key(&self, alg: SigningAlgorithm) -> bool {
        self.snapshot().keys.iter().any(|k| k.alg == alg)
    }

    /// Signs `claims` as a compact JWS with the active key of `alg`.
    pub fn sign(
        &self,
        alg: SigningAlgorithm,
        typ: &str,
        claims: &Value,
        now: Timestamp,
    ) -> Result<String, KeyError> {
        let snap = self.snapshot();
        let key = snap.active(alg, now).ok_or(KeyError::NoKey(alg.as_str()))?;
        let header = json!({"alg": alg.as_str(), "kid": key.kid, "typ": typ});
        let mut out = B64.encode(serde_json::to_vec(&header).unwrap_or_default());
        out.push('.');
        out.push_str(&B64.encode(serde_json::to_vec(claims).unwrap_or_default()));
        let sig = key.sign(&self.inner.rng, out.as_bytes())?;
        out.push('.');
        out.push_str(&B64.encode(sig));
        Ok(out)
    }

    /// Verifies a compact JWS signed by one of our published keys and returns its header and
    /// claims. Only the algorithm bound to the key is accepted (`alg: none`, HS256 and any
    /// mismatch between header and key are refused). Time-based claims are NOT checked here.
    pub fn verify(&self, token: &str) -> Result<(Value, Value), VerifyError> {
        verify_with(&self.snapshot(), token)
    }
}

impl KeyManager {
    /// Like [`KeyManager::verify`], remembering tokens that verified, so a token presented
    /// again (a resource server calling userinfo or introspection for every request it
    /// serves) is not decoded and verified again. A signature check is a pure function of the
    /// token and the key set, and the memory belongs to the key set, so it can never vouch
    /// for a token the current keys would refuse. Only the signature is remembered: the
    /// caller checks expiry and everything else on every use.
    pub fn verify_remembered(&self, token: &str) -> Result<Arc<Verified>, VerifyError> {
        let snap = self.snapshot();
        let lock = || match snap.verified.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(v) = lock().get(token) {
            return Ok(v.clone());
        }
        let (header, claims) = verify_with(&snap, token)?;
        let verified = Arc::new(Verified { header, claims });
        let mut memory = lock();
        if memory.len() >= VERIFIED_CAPACITY {
            memory.clear();
        }
        memory.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }
}

/// Verifies `token` against the keys of `snap` (see [`KeyManager::verify`]).
fn verify_with(snap: &Snapshot, token: &str) -> Result<(Value, Value), VerifyError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let header: Value = decode_json(h).ok_or(VerifyError::Malformed)?;
    let claims: Value = decode_json(c).ok_or(VerifyError::Malformed)?;
    let sig = B64.decode(s).map_err(|_| VerifyError::Malformed)?;
    // RFC 7515 4.1.11: we understand no critical extension, so any `crit` is refused.
    if header.get("crit").is_some() {
        return Err(VerifyError::Malformed);
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(VerifyError::UnknownKey)?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let key = snap.by_kid.get(kid).ok_or(VerifyError::UnknownKey)?;
    if alg != key.alg.as_str() {
        return Err(VerifyError::WrongAlgorithm);
    }
    let signed_len = h.len() + 1 + c.len();
    key.public
        .verify(&token.as_bytes()[..signed_len], &sig)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok((header, claims))
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = B64.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        v @ Value::Object(_) => Some(v),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a well-formed JWS")]
    Malformed,
    #[error("the token was signed by a key this issuer does not publish")]
    UnknownKey,
    #[error("the token's algorithm does not match its key")]
    WrongAlgorithm,
    #[error("the token's signature is invalid")]
    BadSignature,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_made_in_the_same_second_still_comes_second() {
        let first = generate_key(SigningAlgorithm::ES256, 1000, 3600, 600).unwrap();
        let newest = Newest {
            kid: first.kid.clone(),
            created_at: first.created_at,
            rotate_at: first.rotate_at,
        };
        let at = Newest::successor_time(Some(&newest), 1000);
        assert_eq!(at, 1001);
        let second = generate_key(SigningAlgorithm::ES256, at, 3600, 600).unwrap();
        // Whatever the kids' order, the older key signs until the newer one is published
        // long enough.
        let snap = Snapshot::build(&[second.clone(), first.clone()], 1005).unwrap();
        let active = snap.active(SigningAlgorithm::ES256, 1005).unwrap();
        assert_eq!(active.kid, first.kid);
        let later = Snapshot::build(&[first, second.clone()], 1001 + PUBLISH_AHEAD).unwrap();
        let active = later
            .active(SigningAlgorithm::ES256, 1001 + PUBLISH_AHEAD)
            .unwrap();
        assert_eq!(active.kid, second.kid);
    }

    #[test]
    fn a_remembered_token_goes_with_its_key_set() {
        let alg = SigningAlgorithm::ES256;
        let key = generate_key(alg, 1000, 3600, 600).unwrap();
        let manager = KeyManager {
            inner: Arc::new(Inner {
                algorithms: vec![alg],
                rotation_period: 3600,
                max_token_lifetime: 600,
                snapshot: RwLock::new(Arc::new(Snapshot::build(&[key], 1000).unwrap())),
                rng: SystemRandom::new(),
            }),
        };
        let token = manager
            .sign(alg, "at+jwt", &json!({"sub": "a"}), 1000)
            .unwrap();
        let first = manager.verify_remembered(&token).unwrap();
        let again = manager.verify_remembered(&token).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second check came from memory"
        );
        assert_eq!(first.claims["sub"], "a");

        // Another payload under the remembered signature is checked, and refused.
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!("{head}.{}.{sig}", B64.encode(br#"{"sub":"b"}"#));
        assert_eq!(
            manager.verify_remembered(&forged).unwrap_err(),
            VerifyError::BadSignature
        );

        // Once the key is no longer in the key set, neither is what it verified.
        let other = generate_key(alg, 2000, 3600, 600).unwrap();
        *manager.inner.snapshot.write().unwrap() =
            Arc::new(Snapshot::build(&[other], 2000).unwrap());
        assert_eq!(
            manager.verify_remembered(&token).unwrap_err(),
            VerifyError::UnknownKey
        );
    }

    #[test]
    fn no_key_of_an_algorithm_means_nothing_to_sign_with() {
        let key = generate_key(SigningAlgorithm::EdDSA, 1000, 3600, 600).unwrap();
        let snap = Snapshot::build(&[key], 1000).unwrap();
        assert_eq!(snap.keys.len(), 1);
        assert!(snap.active(SigningAlgorithm::RS256, 1000).is_none());
    }
}

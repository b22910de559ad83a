//! JWS verification with the provider's own key set (one RS256, one ES256 and one EdDSA key,
//! made once per process in a throwaway SQLite database).
//!
//! The first input byte picks a mode:
//! - raw: the rest is a compact JWS as received in a bearer header;
//! - round trip: the rest is a claims set, signed with one of our keys; it must verify to the
//!   same claims, and the token with any one character changed must not verify;
//! - forgery: a header naming one of our keys with a fuzzed `alg`, fuzzed claims and fuzzed
//!   signature bytes; it must never verify.
//!
//! Properties: nothing panics; only tokens we signed verify.

#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use idbridge::config::SigningAlgorithm;
use idbridge::oidc::keys::KeyManager;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const NOW: i64 = 1_700_000_000;
const ALGORITHMS: [SigningAlgorithm; 3] = [
    SigningAlgorithm::RS256,
    SigningAlgorithm::ES256,
    SigningAlgorithm::EdDSA,
];

struct Keys {
    manager: KeyManager,
    /// (kid, alg) of every published key.
    published: Vec<(String, String)>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("idbridge-fuzz-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let manager = runtime.block_on(async {
            let storage = idbridge::storage::open_sqlite(&dir.join("keys.db"))
                .await
                .expect("open SQLite");
            KeyManager::load(storage.as_ref(), ALGORITHMS.to_vec(), 86_400, 3_600, NOW)
                .await
                .expect("load keys")
        });
        drop(runtime);
        // Verification never reads storage again: the parsed keys live in the manager.
        let _ = std::fs::remove_dir_all(&dir);
        let jwks: Value = serde_json::from_slice(&manager.jwks()).expect("JWKS is JSON");
        let published = jwks["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .map(|k| {
                (
                    k["kid"].as_str().expect("kid").to_string(),
                    k["alg"].as_str().expect("alg").to_string(),
                )
            })
            .collect::<Vec<_>>();
        assert_eq!(published.len(), ALGORITHMS.len());
        Keys { manager, published }
    })
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

/// Another base64url character than `c` (and never `.`), so the token keeps its shape.
fn other_char(c: u8, salt: u8) -> u8 {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let pick = ALPHABET[salt as usize % ALPHABET.len()];
    if pick == c {
        ALPHABET[(salt as usize + 1) % ALPHABET.len()]
    } else {
        pick
    }
}

fn raw(keys: &Keys, rest: &[u8]) {
    let token = String::from_utf8_lossy(rest);
    if let Ok((header, _claims)) = keys.manager.verify(&token) {
        // Random input cannot carry a valid signature of ours: only a seed that was signed
        // by an earlier process could, and its key is gone.
        panic!("a token not signed in this process verified: {header}");
    }
}

fn round_trip(keys: &Keys, rest: &[u8]) {
    let Some((&pick, rest)) = rest.split_first() else {
        return;
    };
    let Ok(claims) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    if !claims.is_object() {
        return;
    }
    let alg = ALGORITHMS[pick as usize % ALGORITHMS.len()];
    let token = keys
        .manager
        .sign(alg, "at+jwt", &claims, NOW + 3_600)
        .expect("sign");
    let (header, verified) = keys.manager.verify(&token).expect("our own token verifies");
    assert_eq!(header["alg"], alg.as_str());
    assert_eq!(header["typ"], "at+jwt");
    if !has_float(&claims) {
        assert_eq!(verified, claims);
    }
    let mut tampered = token.into_bytes();
    let at = (pick as usize).wrapping_mul(7919) % tampered.len();
    if tampered[at] == b'.' {
        return;
    }
    tampered[at] = other_char(tampered[at], pick);
    let tampered = String::from_utf8(tampered).expect("still ASCII");
    assert!(
        keys.manager.verify(&tampered).is_err(),
        "a token changed at byte {at} still verified: {tampered}"
    );
}

fn forgery(keys: &Keys, rest: &[u8]) {
    let Some((&pick, rest)) = rest.split_first() else {
        return;
    };
    let (kid, real_alg) = &keys.published[pick as usize % keys.published.len()];
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\u{0}');
    let alg = parts.next().unwrap_or_default();
    let claims = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let header = json!({"alg": if alg.is_empty() { real_alg.as_str() } else { alg }, "kid": kid});
    let token = format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims),
        B64.encode(signature)
    );
    assert!(
        keys.manager.verify(&token).is_err(),
        "a forged token verified: {token}"
    );
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => raw(keys, rest),
        1 => round_trip(keys, rest),
        _ => forgery(keys, rest),
    }
});

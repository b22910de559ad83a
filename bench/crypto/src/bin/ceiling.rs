//! Prints the signing ceilings as one JSON object, for `bench/run`:
//! `{"RS256": {"1": sigs/s, "2": sigs/s}, ...}` with whole-token signing (header and claims
//! encoded, then signed) on one and two threads, plus the raw primitive and `jsonwebtoken`.
//!
//! Usage: ceiling [SECONDS_PER_MEASUREMENT]

use std::sync::Arc;
use std::time::Duration;

use idbridge_bench_crypto::{Alg, Signer, access_token_claims, throughput};

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let duration = Duration::from_secs_f64(secs);
    let mut out = serde_json::Map::new();
    for alg in Alg::ALL {
        let signer = Arc::new(Signer::generate(alg));
        let claims = Arc::new(access_token_claims());
        let mut entry = serde_json::Map::new();
        for threads in [1usize, 2] {
            let (s, c) = (signer.clone(), claims.clone());
            let jws = throughput(threads, duration, move || {
                std::hint::black_box(s.sign_jws(&c));
            });
            let s = signer.clone();
            let raw = throughput(threads, duration, move || {
                std::hint::black_box(s.sign_raw(b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9"));
            });
            let (header, key) = signer.jsonwebtoken_key();
            let c = claims.clone();
            let jwt = throughput(threads, duration, move || {
                std::hint::black_box(jsonwebtoken::encode(&header, &*c, &key).expect("encode"));
            });
            entry.insert(format!("jws_{threads}"), jws.round().into());
            entry.insert(format!("raw_{threads}"), raw.round().into());
            entry.insert(format!("jsonwebtoken_{threads}"), jwt.round().into());
            eprintln!(
                "{:<6} {threads} thread(s): {:>9.0} tokens/s (pre-parsed key), {:>9.0} raw signatures/s, {:>9.0} tokens/s via jsonwebtoken::encode",
                alg.name(),
                jws,
                raw,
                jwt
            );
        }
        out.insert(alg.name().to_string(), entry.into());
    }
    println!("{}", serde_json::Value::Object(out));
}

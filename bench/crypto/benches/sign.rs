//! Criterion benchmarks of one signature (one thread), then a two-thread count.
//!
//! `cargo bench` in bench/crypto. Criterion reports the time per operation; the summary
//! printed at the end converts it to signatures per second and adds the two-thread figure
//! (two threads each signing in a loop for a fixed time, counted together).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use idbridge_bench_crypto::{Alg, Signer, access_token_claims, throughput};

fn signing(c: &mut Criterion) {
    let claims = access_token_claims();
    for alg in Alg::ALL {
        let signer = Signer::generate(alg);
        let mut group = c.benchmark_group(alg.name());
        group.throughput(Throughput::Elements(1));
        group.bench_function("raw signature, pre-parsed key", |b| {
            b.iter(|| signer.sign_raw(black_box(b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9")))
        });
        group.bench_function("access token (JWS), pre-parsed key", |b| {
            b.iter(|| signer.sign_jws(black_box(&claims)))
        });
        let (header, key) = signer.jsonwebtoken_key();
        group.bench_function("access token via jsonwebtoken::encode", |b| {
            b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &key).expect("encode"))
        });
        group.finish();
    }
}

fn two_threads() {
    println!("\nsignatures per second, one and two threads (2 s each):");
    for alg in Alg::ALL {
        let signer = Arc::new(Signer::generate(alg));
        let claims = Arc::new(access_token_claims());
        for threads in [1, 2] {
            let (s, c) = (signer.clone(), claims.clone());
            let rate = throughput(threads, Duration::from_secs(2), move || {
                black_box(s.sign_jws(&c));
            });
            println!(
                "  {:<6} {threads} thread(s): {rate:>9.0} tokens/s",
                alg.name()
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    signing(&mut c);
    c.final_summary();
    two_threads();
}

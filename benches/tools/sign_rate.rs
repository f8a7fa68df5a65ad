//! The reference for the HTTP load bench: raw RS256 signatures per second
//! of the crypto provider (aws-lc-rs), on N threads for D seconds, with no
//! HTTP, JSON or claims around them.
//!
//! `cargo run --release --example sign_rate -- [threads] [seconds] [pkcs8.pem]`

use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).map_or(Ok(2), |s| s.parse())?;
    let seconds: u64 = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let pem_path = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "tests/fixtures/rsa2048.pem".to_owned());
    let pem = std::fs::read_to_string(&pem_path)?;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64)?;
    let message = b"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTEiLCJhdWQiOiJjaGF0Ym90In0";
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let der = der.clone();
                s.spawn(move || {
                    let Ok(key) = RsaKeyPair::from_pkcs8(&der) else {
                        return 0;
                    };
                    let rng = SystemRandom::new();
                    let mut sig = vec![0u8; key.public_modulus_len()];
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        if key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig).is_ok() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    let total: u64 = counts.iter().sum();
    println!(
        "raw aws-lc-rs RS256 sign: {threads} threads, {seconds}s: {:.0}/s",
        total as f64 / seconds as f64
    );
    Ok(())
}

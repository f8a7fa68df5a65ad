//! A fixed-rate (open-loop) load generator for the bench script: sends
//! `POST /v1/verify {"token": T, "consume": C}` at R requests/s for D
//! seconds, each request with the next token of a file (one token a line),
//! and reports achieved rate, p50/p99/max latency and statuses. Latency is
//! measured from each request's scheduled start, so a stalled server cannot
//! hide queueing (no coordinated omission).
//!
//! Requests are paced by a thread of their own (`std::thread::sleep`, which
//! wakes within tens of microseconds), not by tokio's timer: its wheel has a
//! resolution of one millisecond, so every request left up to 1 ms after its
//! scheduled start and that delay, the generator's own, was counted as
//! latency (a p50 of 1.2 ms where the server took ~0.3). How late requests
//! leave is reported (`sent late`), so a generator that falls behind shows.
//!
//! `cargo run --release --example loadgen -- URL API_KEY TOKENS_FILE RATE SECONDS CONSUME(true|false)`
//!
//! With `LOADGEN_INTROSPECT=CLIENT_ID` it drives `POST /oauth2/introspect`
//! instead: a form `token=T`, authenticated as `CLIENT_ID` with `API_KEY`
//! as its secret (`client_secret_basic`); CONSUME is then ignored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        return Err("usage: loadgen URL API_KEY TOKENS_FILE RATE SECONDS CONSUME".into());
    }
    let (url, key, file) = (a[1].clone(), a[2].clone(), a[3].clone());
    let rate: u64 = a[4].parse()?;
    let seconds: u64 = a[5].parse()?;
    let consume: bool = a[6].parse()?;
    let tokens: Vec<String> = std::fs::read_to_string(&file)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let total = (rate * seconds) as usize;
    if tokens.len() < total && consume {
        return Err(format!("{total} requests need as many tokens; {file} has {}", tokens.len()).into());
    }
    let client = tokensmith::client::jwks::http_client(Duration::from_secs(10))?;
    let introspect = std::env::var("LOADGEN_INTROSPECT").ok();
    let (authorization, content_type) = match &introspect {
        None => (format!("Bearer {key}"), "application/json"),
        Some(id) => {
            use base64::Engine as _;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{key}"));
            (format!("Basic {basic}"), "application/x-www-form-urlencoded")
        }
    };
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..total)
            .map(|i| {
                let t = &tokens[i % tokens.len()];
                match introspect {
                    None => format!("{{\"token\":\"{t}\",\"consume\":{consume}}}"),
                    Some(_) => format!("token={t}"),
                }
            })
            .collect(),
    );
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = Instant::now();
    // The pacer: sends each request's index at its scheduled time.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + interval * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send(i).is_err() {
                return;
            }
        }
    });
    let mut handles = Vec::with_capacity(total);
    while let Some(i) = rx.recv().await {
        let due = start + interval * i as u32;
        let (client, url, authorization, bodies) =
            (client.clone(), url.clone(), authorization.clone(), Arc::clone(&bodies));
        handles.push(tokio::spawn(async move {
            let late = due.elapsed();
            let r = client
                .post(&url)
                .header("authorization", authorization)
                .header("content-type", content_type)
                .body(bodies[i].clone())
                .send()
                .await;
            let status = match r {
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    let _ = resp.bytes().await;
                    s
                }
                Err(_) => 0,
            };
            (due.elapsed(), late, status)
        }));
    }
    pacer.join().map_err(|_| "the pacing thread panicked")?;
    let mut lat = Vec::with_capacity(total);
    let mut lates = Vec::with_capacity(total);
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for h in handles {
        let (d, late, s) = h.await?;
        lat.push(d);
        lates.push(late);
        *statuses.entry(s).or_default() += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "rate {:.0}/s over {:.1}s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, statuses {:?}; sent late p50 {:.3} p99 {:.3} ms",
        total as f64 / elapsed,
        elapsed,
        pct(&mut lat, 0.50),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0),
        statuses,
        pct(&mut lates, 0.50),
        pct(&mut lates, 0.99),
    );
    Ok(())
}

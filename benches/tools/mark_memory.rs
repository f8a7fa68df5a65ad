//! Memory per replay mark in the in-memory store, measured as the growth of
//! this process's resident set (`/proc/self/statm`, Linux) while 1,000,000
//! marks are inserted. The target is under 96 bytes per mark.
//!
//! ```text
//! cargo run --example mark_memory [-- <marks>]
//! ```

use std::error::Error;
use std::fmt::Write as _;

use tokensmith::store::memory::MemoryStore;
use tokensmith::store::Store;

/// Resident set size in bytes.
fn rss_bytes() -> Result<u64, Box<dyn Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("statm has no resident field")?
        .parse()?;
    Ok(resident * page_size())
}

/// The kernel's page size (the unit of statm); 4 KiB if `getconf` is missing.
fn page_size() -> u64 {
    std::process::Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let marks: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let store = MemoryStore::new(marks);
    let now = 1_700_000_000;
    // Keys shaped like a jti (22 base64url characters), built in one reused
    // buffer so that the loop itself allocates nothing.
    let mut key = String::with_capacity(32);
    let before = rss_bytes()?;
    for i in 0..marks {
        key.clear();
        write!(key, "jti{i:019}")?;
        if !store.mark_once(&key, now + 300, now).await? {
            return Err(format!("mark {i} was refused").into());
        }
    }
    let after = rss_bytes()?;
    let held = store.stats().marks;
    let growth = after.saturating_sub(before);
    println!("marks held: {held}");
    println!(
        "RSS before: {:.1} MiB, after: {:.1} MiB",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    println!("RSS growth per mark: {:.1} bytes", growth as f64 / held.max(1) as f64);
    Ok(())
}

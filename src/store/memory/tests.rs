//! Unit tests of the mark table's internals: when a shard reclaims expired
//! marks, and when a mark's slot is free again.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::store::Store;

const T: i64 = 1_000_000;

/// The shard `Inner::mark` picks for `key`. Written out here rather than
/// shared: as a function of its own, its `-> 0` and `-> 1` mutants would
/// be equivalent (which shard holds a mark is never observable).
fn shard_of(key: &str) -> usize {
    usize::from(compact(key)[0]) % SHARDS
}

/// `n` mark keys that share one shard.
fn same_shard_keys(n: usize) -> Vec<String> {
    let first = shard_of("k0");
    (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| shard_of(k) == first)
        .take(n)
        .collect()
}

/// A shard reclaims its expired marks when it is about to grow, and only
/// then: a sweep per insert would make each mark cost a scan of its shard.
#[tokio::test]
async fn a_shard_reclaims_expired_marks_only_when_about_to_grow() {
    let s = MemoryStore::new(1000);
    let keys = same_shard_keys(40);
    assert_eq!(s.mark_once(&keys[0], T + 1, T).await, Ok(true));
    let shard = &s.inner.marks[shard_of(&keys[0])];
    let mut expired_held = true;
    for k in &keys[1..] {
        let (len, capacity) = {
            let shard = lock(shard);
            (shard.map.len(), shard.map.capacity())
        };
        let before = s.stats().marks;
        // keys[0] expired long before T+100, and no sweeper runs.
        assert_eq!(s.mark_once(k, T + 1000, T + 100).await, Ok(true));
        let after = s.stats().marks;
        if expired_held && len == capacity {
            assert_eq!(after, before, "{k}: the expired mark makes room for the new one");
            expired_held = false;
        } else {
            assert_eq!(after, before + 1, "{k}: nothing reclaimed at {len} of {capacity}");
        }
    }
    assert!(!expired_held, "the shard never had to grow");
}

/// A mark is held until its expiry and free again at exactly that second,
/// before any sweep has reclaimed it.
#[tokio::test]
async fn a_mark_is_free_again_at_exactly_its_expiry() {
    let s = MemoryStore::new(1000);
    assert_eq!(s.mark_once("m", T + 10, T).await, Ok(true));
    assert_eq!(s.mark_once("m", T + 10, T + 9).await, Ok(false));
    assert_eq!(s.mark_once("m", T + 50, T + 10).await, Ok(true), "expired at T+10");
    assert_eq!(s.mark_once("m", T + 50, T + 49).await, Ok(false), "the new mark holds");
    assert_eq!(s.stats().marks, 1, "its slot was reused");
}

/// A sweep that leaves a shard's table nearly empty shrinks it: here one
/// live mark is left of the 15 or more a table of that size was grown for.
/// (Where exactly it shrinks is not pinned: after a `retain`, a table's
/// `capacity()` depends on which freed slots became tombstones, so "a
/// quarter full" is not a fixed point.)
#[tokio::test]
async fn a_sweep_shrinks_a_nearly_empty_table() {
    let s = MemoryStore::new(1000);
    let keys = same_shard_keys(200);
    let index = shard_of(&keys[0]);
    let size = |s: &MemoryStore| {
        let shard = lock(&s.inner.marks[index]);
        (shard.map.len(), shard.map.capacity())
    };
    assert_eq!(s.mark_once(&keys[0], T + 1000, T).await, Ok(true));
    let mut short = keys[1..].iter();
    while size(&s).1 < 16 {
        assert_eq!(s.mark_once(short.next().unwrap(), T + 1, T).await, Ok(true));
    }
    let (len, grown) = size(&s);
    // Every short mark is past the grace at T+100.
    assert_eq!(s.is_revoked("x", "y", T, T + 100).await, Ok(false));
    s.sweep();
    let (left, capacity) = size(&s);
    assert_eq!(left, 1, "{len} marks swept to the live one");
    assert!(
        capacity < 8,
        "a table grown to {grown} kept {capacity} slots for one mark"
    );
}

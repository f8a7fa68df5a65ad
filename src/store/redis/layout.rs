//! Key names of the Redis store, for one Redis and for a Redis Cluster.
//!
//! Every key starts with `ts:`, then the namespace's *id*: five base64url
//! characters of the SHA-256 of the namespace (usually the issuer), so that
//! keys stay short whatever the issuer. The id is written out once,
//! `ts:ns:<id>` → the namespace, so an operator can read which deployment a
//! key belongs to, and so that two namespaces whose ids collide on one Redis
//! are refused at connect instead of sharing revocations.
//!
//! On one Redis every key but a mark is `ts:<id>:<kind>:<key>` (the table in
//! the parent module). On a cluster every key carries a hash tag, so that
//! each script touches one slot and keys spread over the slots:
//!
//! | keys | name | slot chosen by |
//! |---|---|---|
//! | mark | `ts:{<bucket>}<digest>` | `bucket = FNV-1a(key) mod 1024` |
//! | revocation, rate counter, opaque token, refresh index | `ts:{<bucket>}:<id>:<kind>:<key>` | the same |
//! | the epoch of a bucket's marks | `ts:{<bucket>}:<id>:mark-epoch` | the bucket |
//! | a refresh family's tokens and its revocation | `ts:{f:<family>}:<id>:<kind>:<key>` | the family id |
//!
//! A mark and its bucket's epoch share a slot (the consume script reads
//! both); a refresh family's keys share one (the spend script reads and
//! writes them together). The 1,024 bucket tags land on 1,024 slots spread
//! over the whole range, so marks spread evenly over the masters.
//!
//! # Marks
//!
//! A mark is the one key that exists by the million, so its name is as
//! short as Redis's allocator rewards (see "Memory"): `ts:<id>:<digest>` on
//! one Redis, `ts:{<bucket>}<digest>` on a cluster, where `<digest>` is the
//! first 21 base64url characters (126 bits) of
//! SHA-256(`"tokensmith mark\0"` ‖ the namespace's length, 8 bytes big-endian
//! ‖ the namespace ‖ the mark key). So every mark is at most 30 bytes,
//! whatever its key: a JWT's `jti:<22 characters>`, a DPoP proof's
//! `dpop:<22>`, a client assertion's `assertion:<client>:<jti>`, or any
//! string a caller of `mark_once` passes.
//!
//! - *One name per key.* The digest is a function of the namespace and the
//!   key alone, so every instance names a key's mark alike, and a mark key
//!   presented twice finds its mark: hashing never lets a replay through.
//! - *Distinct keys, distinct marks.* The input is unambiguous (a fixed
//!   tag, then the namespace behind its length, then the key as given:
//!   kinds stay apart because the authority's keys differ in their prefix),
//!   and two different inputs share a digest with probability 2^-126: about
//!   2^-66 for 2^30 live marks. Even then the only effect would be a false
//!   refusal (`token_replayed`), never an accepted replay.
//! - *Namespaces apart.* The namespace is in the digest, so marks of two
//!   namespaces never meet, even where the name shows no id (a cluster).
//! - *Apart from every other key.* After `ts:<id>:` (one Redis) or the
//!   closing `}` (a cluster) a mark has 21 characters and no `:`; every
//!   other key has a `:` right there (a cluster) or within its kind
//!   (`revoked-jti:`, `rate:`, …), or is `mark-epoch` or `epoch`.
//!
//! The digest costs an operator the readable `jti` in the name (the old
//! names showed it); what can be read still is the namespace on one Redis
//! and the bucket on a cluster. Shorter names that keep the `jti` readable
//! do not reach the smaller size class: `ts:`, the id and a 22-character
//! `jti` are 30 bytes before any kind or hash tag.
//!
//! The bucket is the one the layout before gave a mark (FNV-1a of the
//! key, in decimal), so a bucket's new epoch and both earlier ones share a
//! slot, and one script records the one and holds the others shut; the
//! spread over the slots is the same as before.
//!
//! # Memory
//!
//! Redis allocates a key's name as an SDS string in jemalloc size classes
//! (16, 32, 48, 64, … bytes on x86-64: there is no 40): a name of up to 30
//! bytes (a 1-byte header, the name, a NUL) takes a 32-byte block, 31 to 44
//! bytes a 48-byte block, 45 to 60 a 64-byte one. A mark (value `1`) then
//! costs, by `MEMORY USAGE` on Redis 7.0.15 (jemalloc 5.3.0):
//!
//! | name | one Redis | Redis 7.0 cluster (16 bytes more per key) |
//! |---|---|---|
//! | up to 30 bytes: every mark of this layout | **72** | **88** |
//! | 31 to 44 bytes: a JWT's mark in the layout before | 88 | 104 |
//! | 45 to 60 bytes | 104 | 120 |
//!
//! # The layouts before this one
//!
//! Until this layout, a mark was `ts:<id>:m:<key>` (one Redis) or
//! `ts:{<bucket>}:<id>:m:<key>` (a cluster), vouched for by the epoch
//! `ts:<id>:epoch` or `ts:{<bucket>}:<id>:epoch`; before that, keys were
//! `tokensmith:<namespace>:…` and `tokensmith:{<bucket>}:<namespace>:…`.
//! A store of this layout reads none of those marks, so it does not read
//! their epochs either: its epoch is `mark-epoch`, which it finds missing on
//! a live deployment and records anew (every token issued before it is
//! refused, so no token consumed under the old names becomes consumable),
//! and it holds both earlier layouts' epoch keys
//! ([`Layout::previous_epochs`], in the same slot as the new epoch) at
//! 9999-12-31: an instance of an earlier version still sharing the Redis
//! then refuses every consume (`replay_state_lost`) instead of accepting a
//! token whose mark it cannot see. Revocations, rate counters, refresh
//! tokens and opaque tokens kept their names, and so their state.

use base64::Engine;

/// How many buckets (hash tags) marks and revocations are spread over.
pub(super) const BUCKETS: u32 = 1024;

/// The bucket of an identifier: FNV-1a (32 bits), stable across versions
/// and processes, modulo [`BUCKETS`].
pub(super) fn bucket(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % BUCKETS
}

/// The id of `namespace` in key names: the first five base64url characters
/// (30 bits) of its SHA-256.
pub fn namespace_id(namespace: &str) -> String {
    let digest = crate::jose::alg::sha256(namespace.as_bytes());
    let mut id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..4]);
    id.truncate(5);
    id
}

/// Key names for one namespace.
#[derive(Debug)]
pub(super) struct Layout {
    namespace: String,
    /// [`namespace_id`] of `namespace`.
    id: String,
    /// What a mark's digest hashes before the mark key: the tag and the
    /// namespace behind its length (see "Marks").
    mark_prefix: Vec<u8>,
    /// Hash-tagged names (a cluster), or the plain ones (one Redis).
    cluster: bool,
}

/// The tag that starts a mark digest's input, so it hashes nothing else's.
const MARK_TAG: &[u8] = b"tokensmith mark\0";

/// How many base64url characters of the SHA-256 name a mark (126 bits).
const MARK_DIGEST_LEN: usize = 21;

/// The name of the epoch that vouches for marks of this layout (in
/// `ts:<id>:…` or `ts:{<bucket>}:<id>:…`). A new mark layout takes a new
/// name: see "The layouts before this one".
const MARK_EPOCH: &str = "mark-epoch";

impl Layout {
    pub(super) fn new(namespace: &str, cluster: bool) -> Layout {
        let mut mark_prefix = Vec::with_capacity(MARK_TAG.len() + 8 + namespace.len());
        mark_prefix.extend_from_slice(MARK_TAG);
        mark_prefix.extend_from_slice(&(namespace.len() as u64).to_be_bytes());
        mark_prefix.extend_from_slice(namespace.as_bytes());
        Layout {
            namespace: namespace.to_owned(),
            id: namespace_id(namespace),
            mark_prefix,
            cluster,
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The namespace's id in key names.
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The key that names the namespace behind the id (`ts:ns:<id>`).
    pub(super) fn registry(&self) -> String {
        format!("ts:ns:{}", self.id)
    }

    /// The key of `kind` for `key` (every kind but a mark: see
    /// [`mark`](Layout::mark)).
    pub(super) fn key(&self, kind: &str, key: &str) -> String {
        let ns = &self.id;
        if self.cluster {
            format!("ts:{{{}}}:{ns}:{kind}:{key}", bucket(key))
        } else {
            format!("ts:{ns}:{kind}:{key}")
        }
    }

    /// The key of the mark `mark_key`: `ts:<id>:<digest>` or
    /// `ts:{<bucket>}<digest>` (see "Marks").
    pub(super) fn mark(&self, mark_key: &str) -> String {
        let mut input = Vec::with_capacity(self.mark_prefix.len() + mark_key.len());
        input.extend_from_slice(&self.mark_prefix);
        input.extend_from_slice(mark_key.as_bytes());
        let digest = crate::jose::alg::sha256(&input);
        let mut digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
        digest.truncate(MARK_DIGEST_LEN);
        if self.cluster {
            format!("ts:{{{}}}{digest}", bucket(mark_key))
        } else {
            format!("ts:{}:{digest}", self.id)
        }
    }

    /// The epoch that vouches for the mark of `mark_key`: in its slot.
    pub(super) fn epoch_of(&self, mark_key: &str) -> String {
        if self.cluster {
            self.bucket_epoch(bucket(mark_key))
        } else {
            format!("ts:{}:{MARK_EPOCH}", self.id)
        }
    }

    /// The epoch of bucket `b`'s marks (a cluster).
    pub(super) fn bucket_epoch(&self, b: u32) -> String {
        format!("ts:{{{b}}}:{}:{MARK_EPOCH}", self.id)
    }

    /// The epoch keys of the layouts before this one (the `ts:` one with
    /// readable marks, then the `tokensmith:` one): of bucket `b` on a
    /// cluster (in the slot of [`bucket_epoch`](Layout::bucket_epoch)`(b)`),
    /// or, with `None`, the namespace's on one Redis.
    pub(super) fn previous_epochs(&self, b: Option<u32>) -> [String; 2] {
        let (id, ns) = (&self.id, &self.namespace);
        match b {
            Some(b) => [
                format!("ts:{{{b}}}:{id}:epoch"),
                format!("tokensmith:{{{b}}}:{ns}:epoch"),
            ],
            None => [format!("ts:{id}:epoch"), format!("tokensmith:{ns}:epoch")],
        }
    }

    /// The key of `kind` for `key`, in the slot of refresh family `family`.
    pub(super) fn in_family(&self, kind: &str, key: &str, family: &str) -> String {
        if self.cluster {
            format!("ts:{{f:{family}}}:{}:{kind}:{key}", self.id)
        } else {
            self.key(kind, key)
        }
    }

    /// What the refresh spend script appends a family id to, to name the
    /// family's revocation key.
    pub(super) fn family_prefix(&self, family: &str) -> String {
        let full = self.in_family("family", family, family);
        full[..full.len() - family.len()].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot Redis Cluster gives a key: CRC16 (XMODEM) of its hash tag.
    fn slot(key: &str) -> u16 {
        let tag = match key.find('{') {
            Some(open) => match key[open + 1..].find('}') {
                Some(len) if len > 0 => &key[open + 1..open + 1 + len],
                _ => key,
            },
            None => key,
        };
        let mut crc: u16 = 0;
        for b in tag.bytes() {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn a_mark_and_its_epoch_share_a_slot() {
        let l = Layout::new("https://issuer.test", true);
        for id in ["jti:a", "jti:b", "x", "", "jti:{weird}", "}{", "{x}"] {
            assert_eq!(slot(&l.mark(id)), slot(&l.epoch_of(id)), "{id}");
            // The same slot as the mark of the layout before: see
            // "The layouts before this one".
            assert_eq!(
                slot(&l.mark(id)),
                slot(&format!("ts:{{{}}}:x:m:{id}", bucket(id))),
                "{id}"
            );
        }
    }

    #[test]
    fn a_family_shares_a_slot() {
        let l = Layout::new("n", true);
        let f = "fam-1";
        let slot0 = slot(&l.in_family("refresh", "h0", f));
        assert_eq!(slot(&l.in_family("refresh", "h1", f)), slot0);
        assert_eq!(slot(&format!("{}{f}", l.family_prefix(f))), slot0);
        assert_eq!(
            l.family_prefix(f),
            format!("ts:{{f:fam-1}}:{}:family:", namespace_id("n"))
        );
    }

    #[test]
    fn single_redis_names() {
        let l = Layout::new("n", false);
        let id = namespace_id("n");
        assert_eq!(l.key("revoked-jti", "j"), format!("ts:{id}:revoked-jti:j"));
        assert_eq!(l.epoch_of("m"), format!("ts:{id}:mark-epoch"));
        assert_eq!(l.in_family("refresh", "h0", "fam"), format!("ts:{id}:refresh:h0"));
        assert_eq!(l.family_prefix("fam"), format!("ts:{id}:family:"));
        assert_eq!(l.registry(), format!("ts:ns:{id}"));
        assert_eq!(
            l.previous_epochs(None),
            [format!("ts:{id}:epoch"), "tokensmith:n:epoch".to_owned()]
        );
    }

    /// The id is five URL-safe characters, the same in every process, and
    /// differs between namespaces.
    #[test]
    fn a_namespace_id_is_short_and_stable() {
        let id = namespace_id("https://issuer.test");
        assert_eq!(id.len(), 5);
        assert!(
            id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
        assert_eq!(id, namespace_id("https://issuer.test"));
        assert_ne!(id, namespace_id("https://issuer.test/"));
        // SHA-256("https://issuer.test") begins 2a 38 97 ff: pinned, so a
        // change of the id (every key of a live deployment) is deliberate.
        assert_eq!(id, "KjiX_");
    }

    /// A mark's name, pinned: a change of it (every mark of a live
    /// deployment) is a layout change, and needs a new epoch name.
    #[test]
    fn a_mark_name_is_pinned() {
        let key = "jti:AbCdEfGhIjKlMnOpQrStUv";
        let one = Layout::new("https://issuer.test", false).mark(key);
        let digest = &one["ts:KjiX_:".len()..];
        assert_eq!(digest.len(), 21, "{one}");
        let mut input = b"tokensmith mark\0".to_vec();
        input.extend_from_slice(&19u64.to_be_bytes());
        input.extend_from_slice(b"https://issuer.test");
        input.extend_from_slice(key.as_bytes());
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::jose::alg::sha256(&input));
        assert_eq!(one, format!("ts:KjiX_:{}", &expected[..21]));
        let cluster = Layout::new("https://issuer.test", true).mark(key);
        assert_eq!(cluster, format!("ts:{{{}}}{digest}", bucket(key)));
    }

    /// Every mark, whatever its key and namespace, is at most 30 bytes:
    /// the largest name in the smallest `MEMORY USAGE` class of a mark
    /// (72 bytes on one Redis, 88 on a Redis 7.0 cluster; see "Memory").
    #[test]
    fn every_mark_fits_in_30_bytes() {
        let long = "assertion:a-client-with-a-long-name:".to_owned() + &"j".repeat(255);
        for issuer in ["https://a-very-long-issuer-name.example.com/tenants/12345", "x", ""] {
            for cluster in [false, true] {
                let l = Layout::new(issuer, cluster);
                for i in 0..5000 {
                    for key in [format!("jti:AbCdEfGhIjKl{i:010}"), format!("{long}{i}"), format!("{i}")] {
                        let name = l.mark(&key);
                        assert!(name.len() <= 30, "{name}: {} bytes", name.len());
                    }
                }
            }
        }
    }

    /// Marks of distinct keys or namespaces have distinct names, and no
    /// other key of the namespace is shaped like a mark.
    #[test]
    fn marks_are_apart_from_each_other_and_from_every_other_key() {
        use std::collections::HashSet;
        for cluster in [false, true] {
            let (a, b) = (Layout::new("ns-a", cluster), Layout::new("ns-b", cluster));
            let mut seen = HashSet::new();
            for i in 0..20_000 {
                for key in [
                    format!("jti:{i}"),
                    format!("dpop:{i}"),
                    format!("{i}"),
                    format!("jti:{i}\0"),
                ] {
                    assert!(seen.insert(a.mark(&key)), "{key}");
                    assert!(seen.insert(b.mark(&key)), "{key}");
                }
            }
            // The namespace's length is hashed: ("ab", "c") is not ("a", "bc").
            assert_ne!(
                Layout::new("ab", cluster).mark("c"),
                Layout::new("a", cluster).mark("bc")
            );
            let k = "jti:x";
            let mark = a.mark(k);
            let prefix = &mark[..mark.len() - 21];
            let looks_like_a_mark = |name: &str| {
                name.strip_prefix(prefix)
                    .is_some_and(|rest| rest.len() == 21 && !rest.contains(':'))
            };
            assert!(looks_like_a_mark(&mark), "{mark}");
            let mut others = vec![
                a.key("revoked-jti", k),
                a.key("revoked-sub", k),
                a.key("rate", k),
                a.key("opaque", k),
                a.key("refresh-of", k),
                a.key("refresh", k),
                a.key("family", k),
                a.in_family("refresh", k, k),
                a.epoch_of(k),
                a.registry(),
                // The layout before: a mark was `<kind> = m`.
                a.key("m", k),
            ];
            others.extend(a.previous_epochs(cluster.then_some(bucket(k))));
            for other in others {
                assert!(!looks_like_a_mark(&other), "{other} is shaped like the mark {mark}");
            }
        }
    }

    #[test]
    fn the_previous_epochs_share_the_slot_of_the_bucket_epoch() {
        let l = Layout::new("https://issuer.test", true);
        for b in [0, 1, 511, 1023] {
            for previous in l.previous_epochs(Some(b)) {
                assert_eq!(slot(&l.bucket_epoch(b)), slot(&previous), "{previous}");
            }
        }
        assert_eq!(
            l.previous_epochs(Some(7)),
            [
                "ts:{7}:KjiX_:epoch".to_owned(),
                "tokensmith:{7}:https://issuer.test:epoch".to_owned()
            ]
        );
        assert_eq!(l.bucket_epoch(7), "ts:{7}:KjiX_:mark-epoch");
    }

    /// 100,000 marks over a 3-master cluster (slots split as
    /// `redis-cli --cluster create` splits them): no master holds more
    /// than 40% (the bar); in fact each is within a point of a third.
    #[test]
    fn marks_spread_evenly_over_three_masters() {
        let l = Layout::new("https://issuer.test", true);
        let mut per_master = [0u32; 3];
        for i in 0..100_000 {
            let s = slot(&l.mark(&format!("jti:{i:022}")));
            let master = match s {
                0..=5460 => 0,
                5461..=10922 => 1,
                _ => 2,
            };
            per_master[master] += 1;
        }
        for n in per_master {
            assert!((32_000..=34_700).contains(&n), "{per_master:?}");
        }
    }
}

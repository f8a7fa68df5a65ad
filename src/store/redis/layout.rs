//! Key names of the Redis store, for one Redis and for a Redis Cluster.
//!
//! Every key starts with `ts:`, then the namespace's *id*: five base64url
//! characters of the SHA-256 of the namespace (usually the issuer), so that
//! a mark's key stays short whatever the issuer (a mark is the one key that
//! exists by the million: see "Memory" below). The id is written out once,
//! `ts:ns:<id>` → the namespace, so an operator can read which deployment a
//! key belongs to, and so that two namespaces whose ids collide on one Redis
//! are refused at connect instead of sharing marks.
//!
//! On one Redis every key is `ts:<id>:<kind>:<key>` (the table in the parent
//! module; a mark's kind is `m`). On a cluster every key carries a hash tag,
//! so that each script touches one slot and keys spread over the slots:
//!
//! | keys | name | slot chosen by |
//! |---|---|---|
//! | mark, revocation, rate counter, opaque token, refresh index | `ts:{<bucket>}:<id>:<kind>:<key>` | `bucket = FNV-1a(key) mod 1024` |
//! | the epoch of a bucket | `ts:{<bucket>}:<id>:epoch` | the bucket |
//! | a refresh family's tokens and its revocation | `ts:{f:<family>}:<id>:<kind>:<key>` | the family id |
//!
//! A mark and its bucket's epoch share a slot (the consume script reads
//! both); a refresh family's keys share one (the spend script reads and
//! writes them together). The 1,024 bucket tags land on 1,024 slots spread
//! over the whole range, so marks spread evenly over the masters.
//!
//! # Memory
//!
//! Redis allocates a key's name in jemalloc size classes: a key of up to 44
//! bytes takes a 48-byte block, and `MEMORY USAGE` of a mark is then 88
//! bytes; 45 to 60 bytes cost 104, more cost 120. A mark of a JWT is
//! `ts:{1023}:<id>:m:jti:<22 characters>`: 44 bytes at most on a cluster,
//! 37 on one Redis.
//!
//! # The layout before this one
//!
//! Until this layout, keys were `tokensmith:<namespace>:…` (one Redis) and
//! `tokensmith:{<bucket>}:<namespace>:…` (a cluster). A store of this
//! layout sees none of those marks: on a live deployment it finds its epoch
//! missing, records a new one (every token issued before it is refused, so
//! no token consumed under the old layout becomes consumable), and holds
//! the old layout's epoch keys ([`Layout::legacy_epoch_of`], the same slot
//! as the new epoch) at 9999-12-31: an instance of an earlier version still
//! sharing the Redis then refuses every consume (`replay_state_lost`)
//! instead of accepting a token whose mark it cannot see.

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
    /// Hash-tagged names (a cluster), or the plain ones (one Redis).
    cluster: bool,
}

/// A kind's name in keys: a mark, the key that exists by the million, is
/// `m`; every other kind keeps its readable name.
fn kind_name(kind: &str) -> &str {
    match kind {
        "mark" => "m",
        other => other,
    }
}

impl Layout {
    pub(super) fn new(namespace: &str, cluster: bool) -> Layout {
        Layout {
            namespace: namespace.to_owned(),
            id: namespace_id(namespace),
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

    /// The key of `kind` for `id`.
    pub(super) fn key(&self, kind: &str, key: &str) -> String {
        let (ns, kind) = (&self.id, kind_name(kind));
        if self.cluster {
            format!("ts:{{{}}}:{ns}:{kind}:{key}", bucket(key))
        } else {
            format!("ts:{ns}:{kind}:{key}")
        }
    }

    /// The epoch that vouches for the mark `mark_key`: in its slot.
    pub(super) fn epoch_of(&self, mark_key: &str) -> String {
        if self.cluster {
            self.bucket_epoch(bucket(mark_key))
        } else {
            format!("ts:{}:epoch", self.id)
        }
    }

    /// The epoch of bucket `b` (a cluster).
    pub(super) fn bucket_epoch(&self, b: u32) -> String {
        format!("ts:{{{b}}}:{}:epoch", self.id)
    }

    /// The epoch key of the layout before this one: of bucket `b` on a
    /// cluster (in the slot of [`bucket_epoch`](Layout::bucket_epoch)`(b)`),
    /// or, with `None`, the namespace's on one Redis.
    pub(super) fn legacy_epoch_of(&self, b: Option<u32>) -> String {
        match b {
            Some(b) => format!("tokensmith:{{{b}}}:{}:epoch", self.namespace),
            None => format!("tokensmith:{}:epoch", self.namespace),
        }
    }

    /// The key of `kind` for `key`, in the slot of refresh family `family`.
    pub(super) fn in_family(&self, kind: &str, key: &str, family: &str) -> String {
        if self.cluster {
            format!("ts:{{f:{family}}}:{}:{}:{key}", self.id, kind_name(kind))
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
        for id in ["jti:a", "jti:b", "x", "", "jti:{weird}"] {
            assert_eq!(slot(&l.key("mark", id)), slot(&l.epoch_of(id)), "{id}");
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
        assert_eq!(l.key("mark", "m"), format!("ts:{id}:m:m"));
        assert_eq!(l.key("revoked-jti", "j"), format!("ts:{id}:revoked-jti:j"));
        assert_eq!(l.epoch_of("m"), format!("ts:{id}:epoch"));
        assert_eq!(l.in_family("refresh", "h0", "fam"), format!("ts:{id}:refresh:h0"));
        assert_eq!(l.family_prefix("fam"), format!("ts:{id}:family:"));
        assert_eq!(l.registry(), format!("ts:ns:{id}"));
        assert_eq!(l.legacy_epoch_of(None), "tokensmith:n:epoch");
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

    /// A JWT's mark (`jti:` + 22 characters) stays within 44 bytes, the
    /// largest key in Redis's 88-byte `MEMORY USAGE` class, whatever the
    /// issuer and the bucket.
    #[test]
    fn a_mark_key_fits_in_44_bytes() {
        let jti = "AbCdEfGhIjKlMnOpQrStUv";
        for issuer in ["https://a-very-long-issuer-name.example.com/tenants/12345", "x"] {
            for cluster in [false, true] {
                let l = Layout::new(issuer, cluster);
                for i in 0..5000 {
                    let key = l.key("mark", &format!("jti:{}{i:06}", &jti[..16]));
                    assert!(key.len() <= 44, "{key}: {} bytes", key.len());
                }
            }
        }
    }

    #[test]
    fn the_legacy_epoch_shares_the_slot_of_the_bucket_epoch() {
        let l = Layout::new("https://issuer.test", true);
        for b in [0, 1, 511, 1023] {
            assert_eq!(slot(&l.bucket_epoch(b)), slot(&l.legacy_epoch_of(Some(b))));
        }
        assert_eq!(l.legacy_epoch_of(Some(7)), "tokensmith:{7}:https://issuer.test:epoch");
    }

    /// 100,000 marks over a 3-master cluster (slots split as
    /// `redis-cli --cluster create` splits them): no master holds more
    /// than 40% (the bar); in fact each is within a point of a third.
    #[test]
    fn marks_spread_evenly_over_three_masters() {
        let l = Layout::new("https://issuer.test", true);
        let mut per_master = [0u32; 3];
        for i in 0..100_000 {
            let s = slot(&l.key("mark", &format!("jti:{i:022}")));
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

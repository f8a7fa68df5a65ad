//! Key names of the Redis store, for one Redis and for a Redis Cluster.
//!
//! On one Redis every key is `tokensmith:<namespace>:<kind>:<id>` (the
//! table in the parent module). On a cluster every key carries a hash tag,
//! so that each script touches one slot and keys spread over the slots:
//!
//! | keys | name | slot chosen by |
//! |---|---|---|
//! | mark, revocation, rate counter, opaque token, refresh index | `tokensmith:{<bucket>}:<namespace>:<kind>:<id>` | `bucket = FNV-1a(id) mod 1024` |
//! | the epoch of a bucket | `tokensmith:{<bucket>}:<namespace>:epoch` | the bucket |
//! | a refresh family's tokens and its revocation | `tokensmith:{f:<family>}:<namespace>:<kind>:<id>` | the family id |
//!
//! A mark and its bucket's epoch share a slot (the consume script reads
//! both); a refresh family's keys share one (the spend script reads and
//! writes them together). The 1,024 bucket tags land on 1,024 slots spread
//! over the whole range, so marks spread evenly over the masters.

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

/// Key names for one namespace.
#[derive(Debug)]
pub(super) struct Layout {
    namespace: String,
    /// Hash-tagged names (a cluster), or the plain ones (one Redis).
    cluster: bool,
}

impl Layout {
    pub(super) fn new(namespace: &str, cluster: bool) -> Layout {
        Layout {
            namespace: namespace.to_owned(),
            cluster,
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The key of `kind` for `id`.
    pub(super) fn key(&self, kind: &str, id: &str) -> String {
        let ns = &self.namespace;
        if self.cluster {
            format!("tokensmith:{{{}}}:{ns}:{kind}:{id}", bucket(id))
        } else {
            format!("tokensmith:{ns}:{kind}:{id}")
        }
    }

    /// The epoch that vouches for the mark `mark_key`: in its slot.
    pub(super) fn epoch_of(&self, mark_key: &str) -> String {
        if self.cluster {
            self.bucket_epoch(bucket(mark_key))
        } else {
            format!("tokensmith:{}:epoch", self.namespace)
        }
    }

    /// The epoch of bucket `b` (a cluster).
    pub(super) fn bucket_epoch(&self, b: u32) -> String {
        format!("tokensmith:{{{b}}}:{}:epoch", self.namespace)
    }

    /// The key of `kind` for `id`, in the slot of refresh family `family`.
    pub(super) fn in_family(&self, kind: &str, id: &str, family: &str) -> String {
        if self.cluster {
            format!("tokensmith:{{f:{family}}}:{}:{kind}:{id}", self.namespace)
        } else {
            self.key(kind, id)
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
        assert_eq!(l.family_prefix(f), "tokensmith:{f:fam-1}:n:family:");
    }

    #[test]
    fn single_redis_names_are_unchanged() {
        let l = Layout::new("n", false);
        assert_eq!(l.key("mark", "m"), "tokensmith:n:mark:m");
        assert_eq!(l.epoch_of("m"), "tokensmith:n:epoch");
        assert_eq!(l.in_family("refresh", "h0", "fam"), "tokensmith:n:refresh:h0");
        assert_eq!(l.family_prefix("fam"), "tokensmith:n:family:");
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

//! The proof headers last seen, decoded and checked, with their keys parsed.
//!
//! A client signs every proof with the same key, and a proof's protected
//! header (`typ`, `alg`, `jwk`) is then the same text every time. Decoding
//! it, checking it, parsing the key into a provider key (for P-256, decoding
//! and validating the point) and hashing its thumbprint are the same work
//! with the same result for every proof with that header text, so they are
//! done once: an entry is found by the header segment itself, compared in
//! full, and only headers that passed every check of [`check`](super::check)
//! are kept. The payload and signature of every proof are decoded and
//! checked as always.
//!
//! The cache is a fixed array of slots chosen by a hash of the segment: a
//! header that lands in a taken slot replaces the one there, so memory is
//! bounded whatever headers callers send, and a flood of fresh keys costs
//! each of them the one full decode it cost without the cache.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Mutex, PoisonError};

use crate::jose::jws::Header;
use crate::jose::{Algorithm, JoseError, Jwk, VerifyingKey};

/// How many headers are kept.
const SLOTS: usize = 64;

/// How much of the end of a segment its slot is chosen by: the end of the
/// key (`y`, `x` or `n`), random for every key.
const HASHED_TAIL: usize = 48;

/// A proof header that passed the checks: as decoded, with its key parsed.
#[derive(Debug)]
pub(super) struct ProofHeader {
    segment: String,
    /// The header, `alg` as the name the signature is checked under.
    pub(super) header: Header,
    pub(super) key: VerifyingKey,
    /// The key's RFC 7638 thumbprint: `cnf.jkt` of what it binds.
    pub(super) jkt: String,
}

type Slot = Mutex<Option<Arc<ProofHeader>>>;

/// A cache of checked proof headers.
pub(super) struct ProofHeaders {
    slots: [Slot; SLOTS],
}

/// The process's cache, which [`check`](super::check) uses.
pub(super) static PROOF_HEADERS: ProofHeaders = ProofHeaders::new();

impl ProofHeaders {
    pub(super) const fn new() -> ProofHeaders {
        ProofHeaders {
            slots: [const { Mutex::new(None) }; SLOTS],
        }
    }

    fn slot_of(&self, segment: &str) -> &Slot {
        let tail = &segment.as_bytes()[segment.len().saturating_sub(HASHED_TAIL)..];
        let mut h = DefaultHasher::new();
        segment.len().hash(&mut h);
        tail.hash(&mut h);
        // The remainder is below SLOTS, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        &self.slots[(h.finish() % SLOTS as u64) as usize]
    }

    /// The entry for header segment `segment`, if it is kept.
    pub(super) fn cached(&self, segment: &str) -> Option<Arc<ProofHeader>> {
        let slot = self.slot_of(segment).lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().filter(|hit| hit.segment == segment).map(Arc::clone)
    }

    /// Parses `jwk` for `alg` and keeps it under `segment`, the header
    /// segment that decoded to `header` and passed every header check with
    /// `jwk`.
    pub(super) fn keep(
        &self,
        segment: &str,
        header: &Header,
        alg: Algorithm,
        jwk: &Jwk,
    ) -> Result<Arc<ProofHeader>, JoseError> {
        let key = VerifyingKey::from_public(alg, &jwk.public_key()?)?;
        let entry = Arc::new(ProofHeader {
            segment: segment.to_owned(),
            header: header.clone(),
            key,
            jkt: jwk.thumbprint()?,
        });
        *self.slot_of(segment).lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&entry));
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::jose::{jws, SigningKey};

    /// A header segment, its header and JWK, for a fresh key of `alg`.
    fn header(alg: Algorithm) -> (String, Header, Jwk) {
        let key = SigningKey::generate(alg, 2048).unwrap().0;
        let jwk = Jwk::from_public(alg, key.public_key());
        let proof = crate::dpop::make_proof(&key, "GET", "https://a.test/", 0, None, None).unwrap();
        let segment = proof.split('.').next().unwrap().to_owned();
        (segment, jws::decode(&proof).unwrap().header, jwk)
    }

    /// What is kept is found by its segment, with the JWK's own key and
    /// thumbprint; a look-up is the very entry kept.
    #[test]
    fn a_kept_header_is_found_by_its_segment() {
        let cache = ProofHeaders::new();
        let (segment, h, jwk) = header(Algorithm::ES256);
        let kept = cache.keep(&segment, &h, Algorithm::ES256, &jwk).unwrap();
        let hit = cache.cached(&segment).unwrap();
        assert!(Arc::ptr_eq(&kept, &hit));
        assert_eq!(hit.header, h);
        assert_eq!(hit.jkt, jwk.thumbprint().unwrap());
        assert_eq!(hit.key.algorithm(), Algorithm::ES256);
    }

    /// A segment that differs anywhere, even outside the hashed tail or only
    /// in length, is not the kept one.
    #[test]
    fn only_the_same_segment_is_found() {
        let cache = ProofHeaders::new();
        let (segment, h, jwk) = header(Algorithm::EdDSA);
        cache.keep(&segment, &h, Algorithm::EdDSA, &jwk).unwrap();
        let mut head_changed = segment.clone().into_bytes();
        head_changed[0] = if head_changed[0] == b'e' { b'f' } else { b'e' };
        for other in [
            String::from_utf8(head_changed).unwrap(),
            format!("A{segment}"),
            segment[1..].to_owned(),
        ] {
            assert!(cache.cached(&other).is_none(), "{other}");
        }
        assert!(cache.cached(&segment).is_some());
    }

    /// Many headers through few slots: every look-up that finds something
    /// finds its own key.
    #[test]
    fn evictions_never_mix_keys() {
        let cache = ProofHeaders::new();
        let headers: Vec<_> = (0..SLOTS * 2).map(|_| header(Algorithm::EdDSA)).collect();
        for (segment, h, jwk) in &headers {
            cache.keep(segment, h, Algorithm::EdDSA, jwk).unwrap();
        }
        let mut found = 0;
        for (segment, _, jwk) in &headers {
            if let Some(hit) = cache.cached(segment) {
                assert_eq!(hit.jkt, jwk.thumbprint().unwrap());
                found += 1;
            }
        }
        assert!(found > 0 && found <= SLOTS, "{found}");
    }

    /// A JWK that does not parse is refused and not kept.
    #[test]
    fn a_bad_key_is_refused_and_not_kept() {
        let cache = ProofHeaders::new();
        let (segment, h, mut jwk) = header(Algorithm::ES256);
        jwk.x = Some("AAAA".into());
        assert!(cache.keep(&segment, &h, Algorithm::ES256, &jwk).is_err());
        assert!(cache.cached(&segment).is_none());
    }
}

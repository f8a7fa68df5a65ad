//! The proof keys last seen, parsed: a browser signs every proof with the
//! same key, so parsing its JWK into a provider key (for P-256, decoding
//! and validating the point) and hashing its thumbprint happen once per key,
//! not once per proof.
//!
//! An entry is found by the proof's `alg` and the key's RFC 7638 thumbprint
//! input, which names the public key completely (every required member, in
//! one canonical form), so a hit is the very key the proof carries. Keys
//! that fail to parse are never kept. The cache is a fixed array of slots
//! chosen by a hash of the input: a key that lands in a taken slot replaces
//! the one there, so memory is bounded whatever keys callers send, and a
//! flood of fresh keys costs each of them one parse, as without the cache.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::jose::alg::sha256;
use crate::jose::{Algorithm, JoseError, Jwk, VerifyingKey};

/// How many keys are kept.
const SLOTS: usize = 64;

/// A parsed proof key and its thumbprint (`cnf.jkt` of what it binds).
#[derive(Debug)]
pub(crate) struct ProofKey {
    alg: Algorithm,
    input: String,
    pub(crate) key: VerifyingKey,
    pub(crate) jkt: String,
}

type Slot = Mutex<Option<Arc<ProofKey>>>;

static CACHE: [Slot; SLOTS] = [const { Mutex::new(None) }; SLOTS];

fn slot_of(alg: Algorithm, input: &str) -> &'static Slot {
    let mut h = DefaultHasher::new();
    alg.hash(&mut h);
    input.hash(&mut h);
    // The remainder is below SLOTS, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    &CACHE[(h.finish() % SLOTS as u64) as usize]
}

/// `jwk` (already checked to be a public key of `alg`'s type) parsed for
/// `alg`, from the cache when it holds it.
pub(crate) fn proof_key(jwk: &Jwk, alg: Algorithm) -> Result<Arc<ProofKey>, JoseError> {
    let input = jwk.thumbprint_input()?;
    let slot = slot_of(alg, &input);
    if let Some(hit) = slot.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        if hit.alg == alg && hit.input == input {
            return Ok(Arc::clone(hit));
        }
    }
    let key = VerifyingKey::from_public(alg, &jwk.public_key()?)?;
    let jkt = URL_SAFE_NO_PAD.encode(sha256(input.as_bytes()));
    let parsed = Arc::new(ProofKey { alg, input, key, jkt });
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&parsed));
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::jose::SigningKey;

    fn jwk(alg: Algorithm) -> Jwk {
        let key = SigningKey::generate(alg, 2048).unwrap().0;
        Jwk::from_public(alg, key.public_key())
    }

    /// A second look-up of the same key is the entry the first one made; its
    /// thumbprint is the JWK's own.
    #[test]
    fn the_same_key_is_parsed_once() {
        let k = jwk(Algorithm::ES256);
        let first = proof_key(&k, Algorithm::ES256).unwrap();
        let second = proof_key(&k, Algorithm::ES256).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.jkt, k.thumbprint().unwrap());
    }

    /// Another key, or the same key for another `alg`, is never served the
    /// entry of the first.
    #[test]
    fn another_key_or_alg_is_another_entry() {
        let (a, b) = (jwk(Algorithm::ES256), jwk(Algorithm::ES256));
        let ka = proof_key(&a, Algorithm::ES256).unwrap();
        let kb = proof_key(&b, Algorithm::ES256).unwrap();
        assert_ne!(ka.jkt, kb.jkt);
        assert_eq!(kb.jkt, b.thumbprint().unwrap());
        let rsa = jwk(Algorithm::RS256);
        let rs = proof_key(&rsa, Algorithm::RS256).unwrap();
        let ps = proof_key(&rsa, Algorithm::PS256).unwrap();
        assert!(!Arc::ptr_eq(&rs, &ps));
        assert_eq!(rs.key.algorithm(), Algorithm::RS256);
        assert_eq!(ps.key.algorithm(), Algorithm::PS256);
    }

    /// Many keys through few slots: each look-up still gets its own key.
    #[test]
    fn evictions_never_mix_keys() {
        let keys: Vec<Jwk> = (0..SLOTS * 2).map(|_| jwk(Algorithm::EdDSA)).collect();
        for _ in 0..2 {
            for k in &keys {
                assert_eq!(proof_key(k, Algorithm::EdDSA).unwrap().jkt, k.thumbprint().unwrap());
            }
        }
    }

    /// A JWK that does not parse is refused every time, never kept.
    #[test]
    fn a_bad_key_is_refused_each_time() {
        let mut k = jwk(Algorithm::ES256);
        k.x = Some("AAAA".into());
        assert!(proof_key(&k, Algorithm::ES256).is_err());
        assert!(proof_key(&k, Algorithm::ES256).is_err());
    }
}

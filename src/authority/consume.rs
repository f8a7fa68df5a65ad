//! Using a verified token: the revocation check and the single-use mark
//! ([`Authority::admit`](super::Authority::admit)), and the retry of a
//! consume whose answer was lost (`Idempotency-Key`).
//!
//! A consume sent to Redis that times out may still run once Redis answers
//! again, so "503, try again" would turn the retry into `token_replayed`.
//! A caller that sends `Idempotency-Key` with a consume gets, on a retry
//! with the same key, the answer the first attempt had: the mark records a
//! digest of the client id and the key, and a consume that finds a mark with
//! its own digest is that first use again. Another client, another key, or
//! no key find a mark that is not theirs: `token_replayed`.
//!
//! It never decides whether a token is valid (the verifier did), and never
//! hands the store an idempotency key as given: only the digest.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{client_key, family_key, mark_key, revocation_keys, AuthorityError, MAX_ID_LEN};
use crate::claims::{Claims, Rejection};
use crate::jose::alg::sha256;
use crate::store::{Consume, ConsumeOutcome, Store, StoreError};

/// The longest `Idempotency-Key` accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The retry key the store keeps for `client_id`'s consumes with
/// `idempotency_key`: 128 bits of a SHA-256 over both, so what the store
/// holds is bounded and says nothing of the key, and another client's
/// consume with the same key is not a retry. The key is 1 to
/// [`MAX_IDEMPOTENCY_KEY_LEN`] bytes of printable ASCII.
pub(super) fn retry_key(client_id: &str, idempotency_key: &str) -> Result<String, AuthorityError> {
    let printable = idempotency_key.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if idempotency_key.is_empty() || idempotency_key.len() > MAX_IDEMPOTENCY_KEY_LEN || !printable {
        return Err(AuthorityError::InvalidRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
        )));
    }
    // Client ids and keys hold no NUL, so the input is unambiguous.
    let mut input = Vec::with_capacity(32 + client_id.len() + idempotency_key.len());
    input.extend_from_slice(b"tokensmith consume retry\0");
    input.extend_from_slice(client_id.as_bytes());
    input.push(0);
    input.extend_from_slice(idempotency_key.as_bytes());
    let digest = sha256(&input);
    Ok(URL_SAFE_NO_PAD.encode(&digest[..16]))
}

/// The keys that say whether the refresh family of a token with a `sid`
/// was revoked: its family key as the `jti` key, and a `sub` key that no
/// revocation uses (the empty subject within the client).
fn family_keys(claims: &Claims) -> Result<Option<(String, String)>, AuthorityError> {
    let Some(sid) = claims.sid() else {
        return Ok(None);
    };
    if sid.len() > MAX_ID_LEN {
        return Err(Rejection::Malformed(format!("sid must be at most {MAX_ID_LEN} bytes")).into());
    }
    let client = claims.client_id().unwrap_or_default();
    Ok(Some((family_key(client, sid), client_key(client, ""))))
}

/// [`Authority::admit`](super::Authority::admit), with the retry key of the
/// caller's consume when it sent one.
pub(super) async fn admit<S: Store>(
    store: &S,
    claims: &Claims,
    consume: bool,
    retry_key: Option<&str>,
    leeway: i64,
    now: i64,
) -> Result<(), AuthorityError> {
    if claims.jti.len() > MAX_ID_LEN || claims.sub.len() > MAX_ID_LEN {
        return Err(Rejection::Malformed(format!("sub and jti must be at most {MAX_ID_LEN} bytes")).into());
    }
    let (jti_key, sub_key) = revocation_keys(claims);
    let family = family_keys(claims)?;
    if !consume {
        let own = store.is_revoked(&jti_key, &sub_key, claims.iat, now);
        let revoked = match &family {
            None => own.await?,
            // Both asked at once: a remote store answers in one round trip's time.
            Some((fam, none)) => {
                let (own, fam) = tokio::try_join!(own, store.is_revoked(fam, none, claims.iat, now))?;
                own || fam
            }
        };
        return match revoked {
            true => Err(Rejection::Revoked.into()),
            false => Ok(()),
        };
    }
    // A family revoked after this check and before the mark lands is as
    // if revoked just after the use.
    if let Some((fam, none)) = &family {
        if store.is_revoked(fam, none, claims.iat, now).await? {
            return Err(Rejection::Revoked.into());
        }
    }
    let until = claims.exp.saturating_add(leeway);
    let mark = mark_key(claims);
    let mut c = Consume::new(&jti_key, &sub_key, claims.iat, &mark, until);
    if let Some(retry_key) = retry_key {
        c = c.with_retry_key(retry_key);
    }
    let outcome = match store.consume(c, now).await {
        Ok(outcome) => outcome,
        // Refused before anything was written: the outcome is known.
        Err(full @ StoreError::Full { .. }) => return Err(full.into()),
        // A timeout, a lost connection: the store may still have run it.
        Err(cause) => {
            return Err(AuthorityError::ConsumeUnconfirmed {
                retryable: retry_key.is_some(),
                cause,
            })
        }
    };
    match outcome {
        ConsumeOutcome::FirstUse => Ok(()),
        ConsumeOutcome::Retried => {
            tracing::debug!(jti = %claims.jti, "consume retried with the same Idempotency-Key: first use again");
            Ok(())
        }
        ConsumeOutcome::Replayed => Err(Rejection::Replayed.into()),
        ConsumeOutcome::Revoked => Err(Rejection::Revoked.into()),
        ConsumeOutcome::StateLost => Err(Rejection::StateLost.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde_json::json;

    use super::*;
    use crate::store::memory::MemoryStore;

    const NOW: i64 = 1_700_000_000;

    /// The claims of a token of client `shop`, with a refresh family `sid`.
    fn claims(jti: &str, sub: &str, sid: Option<&str>) -> Claims {
        let mut c = json!({"iss": "https://i", "sub": sub, "aud": "a", "iat": NOW, "exp": NOW + 60,
            "jti": jti, "client_id": "shop"});
        if let Some(sid) = sid {
            c["sid"] = json!(sid);
        }
        Claims::from_payload(c.to_string().as_bytes()).unwrap()
    }

    async fn code(store: &MemoryStore, c: &Claims, consume: bool) -> &'static str {
        match admit(store, c, consume, None, 0, NOW).await {
            Ok(()) => "ok",
            Err(AuthorityError::Rejected(r)) => r.code(),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn retry_keys_are_bound_to_the_client_and_the_key() {
        let a = retry_key("shop_123", "k-1").unwrap();
        assert_eq!(a, retry_key("shop_123", "k-1").unwrap());
        assert_eq!(a.len(), 22);
        assert_ne!(a, retry_key("shop_123", "k-2").unwrap());
        assert_ne!(a, retry_key("other", "k-1").unwrap());
        // No ambiguity where the client id ends and the key begins.
        assert_ne!(retry_key("ab", "c").unwrap(), retry_key("a", "bc").unwrap());
    }

    #[test]
    fn idempotency_keys_are_bounded_printable_ascii() {
        let longest = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN);
        assert!(retry_key("c", &longest).is_ok());
        assert!(retry_key("c", "\"8e03978e-40d5-43e8 bc93\"").is_ok());
        for bad in [
            String::new(),
            format!("{longest}k"),
            "tab\there".into(),
            "é".into(),
            "nul\0".into(),
        ] {
            assert!(
                matches!(retry_key("c", &bad), Err(AuthorityError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    /// `jti`, `sub` and `sid` are taken up to exactly `MAX_ID_LEN` bytes,
    /// on both paths, and refused from one more.
    #[tokio::test]
    async fn identifiers_are_taken_up_to_max_id_len() {
        let store = MemoryStore::new(1_000);
        let at = |c: char| c.to_string().repeat(MAX_ID_LEN);
        let over = |c: char| c.to_string().repeat(MAX_ID_LEN + 1);
        for consume in [false, true] {
            let n = if consume { 'c' } else { 'p' };
            assert_eq!(code(&store, &claims(&at(n), "u", None), consume).await, "ok");
            assert_eq!(code(&store, &claims("j1", &at(n), Some(&at(n))), consume).await, "ok");
            for c in [
                claims(&over(n), "u", None),
                claims("j2", &over(n), None),
                claims("j3", "u", Some(&over(n))),
            ] {
                assert_eq!(code(&store, &c, consume).await, "malformed_token", "{consume}");
            }
        }
    }

    /// A token is refused once its `jti` or its refresh family is revoked,
    /// whether it is only checked or consumed; a consume marks it used.
    #[tokio::test]
    async fn revocations_of_the_token_or_its_family_are_seen() {
        let store = MemoryStore::new(1_000);
        let until = NOW + 3_600;
        store.revoke_jti(&client_key("shop", "gone"), until, NOW).await.unwrap();
        store
            .revoke_jti(&family_key("shop", "f-gone"), until, NOW)
            .await
            .unwrap();
        for consume in [false, true] {
            assert_eq!(code(&store, &claims("gone", "u", None), consume).await, "token_revoked");
            assert_eq!(
                code(&store, &claims("j", "u", Some("f-gone")), consume).await,
                "token_revoked"
            );
            // Another client's family of the same name is not revoked.
            let mut other = claims("k", "u", Some("f-gone"));
            other.extra.insert("client_id".into(), json!("other"));
            assert_eq!(code(&store, &other, consume).await, "ok");
        }
        let fresh = claims("fresh", "u", Some("f-live"));
        assert_eq!(code(&store, &fresh, false).await, "ok");
        assert_eq!(code(&store, &fresh, false).await, "ok", "a check marks nothing");
        assert_eq!(code(&store, &fresh, true).await, "ok");
        assert_eq!(code(&store, &fresh, true).await, "token_replayed");
        assert_eq!(
            code(&store, &fresh, false).await,
            "ok",
            "a check does not look at marks"
        );
    }
}

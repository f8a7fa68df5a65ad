//! The formats of a client's access tokens, and reading any token of ours.
//!
//! A client with `jwt_profile = "at+jwt"` gets RFC 9068 JWTs: header `typ:
//! at+jwt`, the scopes as a space-separated `scope`, and the required
//! `iss, exp, aud, sub, client_id, iat, jti` (every token of ours has them).
//!
//! A client with `token_format = "opaque"` gets, from every flow, a token
//! that is its `token_prefix` and 32 random bytes in base64url. The claims
//! it stands for (the same a JWT would carry) are kept in the shared store
//! under the base64url SHA-256 of the token, never the token, until `exp`
//! plus the leeway; revoking one removes it there, so every instance
//! refuses it at once.
//!
//! [`Authority::claims_of`] is the one way the authority reads a presented
//! access token: a JWT through the verifier, an opaque token through the
//! store, both then checked by the same [`Validation`](crate::Validation).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{Authority, AuthorityError};
use crate::claims::{new_jti, Claims, Rejection, Validation, CLIENT_ID, REGISTERED};

use crate::clients::Client;
use crate::issuer::{IssueError, IssuedToken, TokenSpec};
use crate::jose::alg::{random_bytes, sha256};
use crate::jose::jws;
use crate::oauth::{JwtProfile, TokenFormat};
use crate::store::Store;

/// The header `typ` of RFC 9068 access tokens.
pub const AT_JWT: &str = "at+jwt";

/// Random bytes in an opaque token.
const OPAQUE_BYTES: usize = 32;

/// The store key of an opaque token: base64url of the first 16 bytes of
/// its SHA-256. 256 random bits need no salt or slow hash, and 128 bits of
/// hash leave a forger 2^128 guesses per stored token; the shorter key is
/// a sixth of what a token costs in Redis.
pub(super) fn opaque_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&sha256(token.as_bytes())[..16])
}

/// What the store keeps for an opaque token: its claims but `iss` (always
/// this issuer), as a JSON array rather than an object, since member names
/// would be a third of the bytes: `[sub, aud, iat, exp, jti, scopes, extra]`.
type Stored = (
    String,
    Vec<String>,
    i64,
    i64,
    String,
    Vec<String>,
    serde_json::Map<String, serde_json::Value>,
);

/// [`Stored`], borrowed from the claims.
type StoredRef<'a> = (&'a str, &'a [String], i64, i64, &'a str, &'a [String], &'a Extra);
type Extra = serde_json::Map<String, serde_json::Value>;

fn encode(c: &Claims) -> Vec<u8> {
    let stored: StoredRef<'_> = (&c.sub, &c.aud, c.iat, c.exp, &c.jti, &c.scopes, &c.extra);
    serde_json::to_vec(&stored).unwrap_or_default()
}

fn decode(issuer: &str, bytes: &[u8]) -> Result<Claims, serde_json::Error> {
    let (sub, aud, iat, exp, jti, scopes, extra): Stored = serde_json::from_slice(bytes)?;
    Ok(Claims {
        iss: issuer.to_owned(),
        sub,
        aud,
        iat,
        exp,
        nbf: None,
        jti,
        scopes,
        extra,
    })
}

/// Whether `token` can be one of this service's opaque tokens: a compact JWS always
/// has two dots, an opaque token none.
pub fn looks_opaque(token: &str) -> bool {
    !token.is_empty() && token.len() <= 64 && !token.contains('.')
}

impl Authority {
    /// Issues a token of `spec` for `client`, in the client's format: a
    /// signed JWT ([`sign`](Authority::sign)), or an opaque token whose
    /// claims go to the store. Every token a client's flow hands out
    /// passes here.
    pub(super) async fn mint(&self, client: &Client, spec: TokenSpec) -> Result<IssuedToken, AuthorityError> {
        match (client.oauth.token_format, client.oauth.jwt_profile) {
            (TokenFormat::Jwt, JwtProfile::Jwt) => self.sign(Some(&client.id), spec),
            (TokenFormat::Jwt, JwtProfile::AtJwt) => self.sign_at_jwt(client, spec),
            (TokenFormat::Opaque, _) => self.mint_opaque(client, spec).await,
        }
    }

    /// The claims of a token of `spec` for `client`, issued now: what
    /// [`Issuer::issue`](crate::issuer::Issuer::issue) fills, for the formats
    /// it does not sign.
    fn claims_for(&self, client: &Client, spec: TokenSpec) -> Result<Claims, AuthorityError> {
        let now = self.clock.now();
        let mut extra = spec.extra;
        extra.retain(|k, _| !REGISTERED.contains(&k.as_str()));
        extra.insert(CLIENT_ID.to_owned(), serde_json::Value::String(client.id.clone()));
        Ok(Claims {
            iss: self.issuer().to_owned(),
            sub: spec.sub,
            aud: spec.aud,
            iat: now,
            exp: now.saturating_add(spec.ttl),
            nbf: None,
            jti: new_jti().map_err(AuthorityError::Random)?,
            scopes: spec.scopes,
            extra,
        })
    }

    /// An RFC 9068 access token, signed with the active key.
    fn sign_at_jwt(&self, client: &Client, spec: TokenSpec) -> Result<IssuedToken, AuthorityError> {
        let claims = self.claims_for(client, spec)?;
        let snapshot = self.keys().load();
        let signer = &snapshot.signer;
        let header = jws::header_segment_typ(signer.alg, &signer.kid, AT_JWT);
        let token = jws::sign(&header, &claims.to_json_rfc9068(), &signer.key)
            .map_err(|e| AuthorityError::Issue(IssueError::Crypto(e)))?;
        let token = crate::issuer::within_size(token).map_err(AuthorityError::Issue)?;
        tracing::debug!(client = %client.id, jti = %claims.jti, kid = %signer.kid, "at+jwt issued");
        Ok(IssuedToken { token, claims })
    }

    /// An opaque token: its claims go to the store, under its hash.
    async fn mint_opaque(&self, client: &Client, spec: TokenSpec) -> Result<IssuedToken, AuthorityError> {
        let now = self.clock.now();
        let claims = self.claims_for(client, spec)?;
        let mut secret = [0u8; OPAQUE_BYTES];
        random_bytes(&mut secret).map_err(AuthorityError::Random)?;
        let token = format!("{}{}", client.oauth.token_prefix, URL_SAFE_NO_PAD.encode(secret));
        let until = claims.exp.saturating_add(self.leeway);
        self.store
            .opaque_insert(&opaque_hash(&token), &encode(&claims), until, now)
            .await?;
        tracing::debug!(client = %client.id, jti = %claims.jti, "opaque token issued");
        Ok(IssuedToken { token, claims })
    }

    /// The claims of a presented access token, checked for `audience` (or
    /// any, when `None`) and `scopes`: a JWT by its signature, an opaque
    /// token by the store. Revocation and single use are
    /// [`admit`](Authority::admit)'s, after this.
    pub(super) async fn claims_of(
        &self,
        token: &str,
        audience: Option<&str>,
        scopes: &[String],
    ) -> Result<Claims, AuthorityError> {
        if !looks_opaque(token) {
            return Ok(self.verifier.verify_for(token, audience, scopes)?);
        }
        Self::opaque_claims(
            &self.store,
            token,
            self.verifier.validation(),
            self.clock.now(),
            audience,
            scopes,
        )
        .await
    }

    /// The claims of an opaque token kept in `store`, checked by
    /// `validation` for `audience` and `scopes` at `now`: shared by this
    /// authority and the `Bearer` extractor of plugin backends. Anything
    /// with a dot is a JWT, not ours to look up: `malformed_token`.
    pub async fn opaque_claims<S: Store>(
        store: &S,
        token: &str,
        validation: &Validation,
        now: i64,
        audience: Option<&str>,
        scopes: &[String],
    ) -> Result<Claims, AuthorityError> {
        let unknown = || Rejection::Malformed("not a token of this service, or no longer known".into());
        if !looks_opaque(token) {
            return Err(unknown().into());
        }
        let stored = store.opaque_get(&opaque_hash(token), now).await?.ok_or_else(unknown)?;
        // Written by `mint`: a record that does not read back is the
        // store's fault, and nothing passes on a guess.
        let claims = decode(&validation.issuer, &stored)
            .map_err(|e| crate::store::StoreError::Unavailable(format!("unreadable opaque token record: {e}")))?;
        validation.check_for(&claims, now, audience, scopes)?;
        Ok(claims)
    }

    /// Forgets an opaque token at once, on every instance. Nothing for a JWT.
    pub(super) async fn forget_opaque(&self, token: &str) -> Result<(), AuthorityError> {
        if looks_opaque(token) {
            self.store.opaque_remove(&opaque_hash(token), self.clock.now()).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    /// A compact JWS has dots; an opaque token of ours has none and is at
    /// most 64 bytes. Nothing else is looked up in the store.
    #[test]
    fn only_short_dotless_tokens_look_opaque() {
        assert!(looks_opaque("ts_abc"));
        assert!(looks_opaque(&"x".repeat(64)));
        for not in [
            "",
            "a.b.c",
            "ts_a.b",
            ".",
            &"x".repeat(65),
            &format!("{}.", "x".repeat(63)),
        ] {
            assert!(!looks_opaque(not), "{not:?}");
        }
    }

    /// The stored form reads back as the claims it was made from, with
    /// this issuer's `iss`.
    #[test]
    fn stored_claims_read_back() {
        let c = Claims::from_payload(
            br#"{"iss":"https://i","sub":"u","aud":["a","b"],"iat":10,"exp":70,"jti":"j","scope":"r w","tenant":"t"}"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let back = decode("https://i", &encode(&c)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, c);
        assert!(decode("https://i", b"[1]").is_err());
    }
}

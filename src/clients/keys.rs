//! The format of API keys and public keys, and the `sha256:` hash lines the
//! config stores instead of keys.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{
    API_KEY_PREFIX, HASH_LINE_PREFIX, NEW_API_KEY_PREFIX, NEW_PUBLIC_KEY_PREFIX, PUBLIC_KEY_LEN, PUBLIC_KEY_PREFIX,
};
use crate::jose::alg::{random_bytes, sha256};
use crate::jose::JoseError;

/// A fresh API key, to be shown once: `key` to the operator, `hash_line` for
/// the config file. The key itself is never stored.
#[derive(Clone)]
pub struct NewApiKey {
    /// `sk_live_` + base64url of 32 random bytes.
    pub key: String,
    /// `sha256:` + lowercase hex of the SHA-256 of the whole `key`.
    pub hash_line: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &"<redacted>")
            .field("hash_line", &self.hash_line)
            .finish()
    }
}

/// Makes a new API key from the system CSPRNG.
pub fn new_api_key() -> Result<NewApiKey, JoseError> {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes)?;
    let key = format!("{NEW_API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash_line = hash_line(&api_key_hash(&key));
    Ok(NewApiKey { key, hash_line })
}

/// Makes a new public key: `pk_live_` + base64url of 16 random bytes.
pub fn new_public_key() -> Result<String, JoseError> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes)?;
    Ok(format!("{NEW_PUBLIC_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// SHA-256 of the whole key string, as the config stores it.
pub fn api_key_hash(key: &str) -> [u8; 32] {
    sha256(key.as_bytes())
}

/// `sha256:` + lowercase hex: the line to paste into `api_keys`.
pub fn hash_line(hash: &[u8; 32]) -> String {
    let mut line = String::with_capacity(HASH_LINE_PREFIX.len() + 64);
    line.push_str(HASH_LINE_PREFIX);
    for b in hash {
        line.push_str(&format!("{b:02x}"));
    }
    line
}

/// Reads a `sha256:<64 hex>` line (either case of hex). The value is never
/// echoed in the error: it might be a key pasted in the wrong place.
pub fn parse_hash_line(line: &str) -> Result<[u8; 32], String> {
    if line.starts_with(API_KEY_PREFIX) {
        return Err(
            "this is an API key itself, not its hash: put the \"sha256:…\" line from \
                    `tokensmith apikey create` here, and treat this key as exposed"
                .to_owned(),
        );
    }
    let hex = line
        .strip_prefix(HASH_LINE_PREFIX)
        .ok_or_else(|| "expected \"sha256:\" followed by 64 hex digits".to_owned())?;
    if hex.len() != 64 {
        return Err(format!(
            "expected 64 hex digits after \"sha256:\", found {} characters",
            hex.chars().count()
        ));
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        match pair {
            [hi, lo] => match (digit(*hi), digit(*lo)) {
                (Some(hi), Some(lo)) => *byte = (hi * 16 + lo) as u8,
                _ => return Err("expected 64 hex digits after \"sha256:\"; found a non-hex character".to_owned()),
            },
            _ => return Err("expected 64 hex digits after \"sha256:\"".to_owned()),
        }
    }
    Ok(out)
}

/// A public key is `pk_…`, and it appears in URL paths
/// (`/v1/clients/{public_key}/config`), so it is URL-safe.
pub(crate) fn check_public_key(pk: &str) -> Result<(), String> {
    if pk.starts_with(API_KEY_PREFIX) {
        // Not echoed: a secret key in the public slot is about to be published.
        return Err(
            "this is an API key, not a public key: it would be shown to browsers; make a new one \
                    with `tokensmith apikey create` and treat this one as exposed"
                .to_owned(),
        );
    }
    let url_safe = pk.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !pk.starts_with(PUBLIC_KEY_PREFIX) || !PUBLIC_KEY_LEN.contains(&pk.len()) || !url_safe {
        return Err(format!(
            "{pk:?} is not \"pk_\" and 5 to 125 letters, digits, '_' or '-'"
        ));
    }
    Ok(())
}

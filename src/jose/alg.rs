//! Signature algorithms and the crypto provider behind them.
//!
//! This is the only module that knows which provider is compiled in:
//! `aws-lc-rs` (the default, feature `aws-lc`) or `ring` (feature `ring`,
//! with RSA key generation through the `rsa` crate, which never signs: its
//! private-key operations are not constant-time, RUSTSEC-2023-0071). Every
//! other module speaks in [`Algorithm`], [`SigningKey`] and [`VerifyingKey`].
//!
//! A key is bound to exactly one algorithm when it is made. Nothing here
//! chooses an algorithm from a token: the caller pins the key, and
//! [`crate::jose::jws`] refuses a header whose `alg` differs from the key's.

use std::fmt;

#[cfg(feature = "aws-lc")]
use aws_lc_rs as provider;
#[cfg(all(feature = "ring", not(feature = "aws-lc")))]
use ring as provider;

#[cfg(not(any(feature = "aws-lc", feature = "ring")))]
compile_error!("enable exactly one crypto provider: feature `aws-lc` (default) or `ring`");

use provider::rand::SecureRandom;
use provider::signature::{self as sig, KeyPair};
use provider::{digest, hmac, rand};

use super::der;
use super::JoseError;

/// The name of the provider compiled in, for `--version` and metrics.
#[cfg(feature = "aws-lc")]
pub const PROVIDER: &str = "aws-lc-rs";
/// The name of the provider compiled in, for `--version` and metrics.
#[cfg(all(feature = "ring", not(feature = "aws-lc")))]
pub const PROVIDER: &str = "ring";

/// A JWS algorithm this crate signs or verifies with (RFC 7518, RFC 8037).
///
/// `none` is not an algorithm here: there is no way to express it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: the default, what every verifier accepts.
    RS256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    PS256,
    /// ECDSA on P-256 with SHA-256, signature as the 64-byte `r || s`.
    ES256,
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// HMAC-SHA-256 with a shared secret: verification of tokens that other
    /// systems made with a secret given as bytes. Never derived from a public key.
    HS256,
}

impl Algorithm {
    /// Every algorithm, in the order the discovery document lists them.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ];

    /// The algorithms whose keys live in the key ring and sign issued tokens.
    pub const ASYMMETRIC: [Algorithm; 4] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];

    /// The `alg` value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::PS256 => "PS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
        }
    }

    /// Parses an `alg` value. Case-sensitive, as RFC 7515 §4.1.1 requires:
    /// `rs256` is not `RS256`, and `none` in any spelling is `None`.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The JWK `kty` of keys for this algorithm.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::RS256 | Algorithm::PS256 => "RSA",
            Algorithm::ES256 => "EC",
            Algorithm::EdDSA => "OKP",
            Algorithm::HS256 => "oct",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = JoseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::from_name(s).ok_or_else(|| JoseError::UnsupportedAlg(s.to_owned()))
    }
}

/// The public half of an asymmetric key, in the components a JWK carries.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa {
        /// The modulus.
        n: Vec<u8>,
        /// The public exponent.
        e: Vec<u8>,
    },
    /// P-256 affine coordinates, 32 bytes each.
    P256 {
        /// The x coordinate, big-endian.
        x: [u8; 32],
        /// The y coordinate, big-endian.
        y: [u8; 32],
    },
    /// The 32-byte Ed25519 public key.
    Ed25519([u8; 32]),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKey::Rsa { n, .. } => write!(f, "PublicKey::Rsa({} bits)", n.len() * 8),
            PublicKey::P256 { .. } => f.write_str("PublicKey::P256"),
            PublicKey::Ed25519(_) => f.write_str("PublicKey::Ed25519"),
        }
    }
}

enum Signer {
    Rsa(sig::RsaKeyPair),
    Ec(sig::EcdsaKeyPair),
    Ed(sig::Ed25519KeyPair),
}

/// A private key bound to one algorithm. Its `Debug` never shows key material.
pub struct SigningKey {
    alg: Algorithm,
    signer: Signer,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads an unencrypted PKCS#8 (DER) private key for `alg`.
    ///
    /// The key's type must fit the algorithm: an RSA key cannot be loaded
    /// for ES256, and nothing can be loaded for HS256.
    pub fn from_pkcs8(alg: Algorithm, pkcs8: &[u8]) -> Result<SigningKey, JoseError> {
        let rejected = |e: provider::error::KeyRejected| {
            JoseError::InvalidKey(format!("{} private key rejected: {e}", alg.key_type()))
        };
        let (signer, public) = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                let pair = sig::RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                let (n, e) = der::parse_rsa_public_key(pair.public_key().as_ref())?;
                if n.len() * 8 < 2048 {
                    return Err(JoseError::InvalidKey(format!(
                        "RSA key of {} bits: at least 2048 are required",
                        n.len() * 8
                    )));
                }
                (Signer::Rsa(pair), PublicKey::Rsa { n, e })
            }
            Algorithm::ES256 => {
                let pair = ecdsa_from_pkcs8(pkcs8).map_err(rejected)?;
                let public = p256_from_point(pair.public_key().as_ref())?;
                (Signer::Ec(pair), public)
            }
            Algorithm::EdDSA => {
                let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(rejected)?;
                let x: [u8; 32] = pair
                    .public_key()
                    .as_ref()
                    .try_into()
                    .map_err(|_| JoseError::InvalidKey("Ed25519 public key is not 32 bytes".into()))?;
                (Signer::Ed(pair), PublicKey::Ed25519(x))
            }
            Algorithm::HS256 => {
                return Err(JoseError::InvalidKey(
                    "HS256 has no private key: use a shared secret with VerifyingKey::hmac".into(),
                ))
            }
        };
        Ok(SigningKey { alg, signer, public })
    }

    /// Makes a new key for `alg` and returns it with its PKCS#8 DER encoding.
    ///
    /// `rsa_bits` is used for RS256/PS256 only and must be 2048, 3072 or 4096.
    /// RSA generation takes from tens of milliseconds to seconds: call it from
    /// a blocking context (`spawn_blocking` in async code).
    pub fn generate(alg: Algorithm, rsa_bits: u32) -> Result<(SigningKey, Vec<u8>), JoseError> {
        let rng = rand::SystemRandom::new();
        let der = match alg {
            Algorithm::RS256 | Algorithm::PS256 => generate_rsa_pkcs8(rsa_bits)?,
            Algorithm::ES256 => sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| JoseError::Crypto("P-256 key generation failed"))?
                .as_ref()
                .to_vec(),
            Algorithm::EdDSA => ed25519_pkcs8_v1(
                sig::Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| JoseError::Crypto("Ed25519 key generation failed"))?
                    .as_ref(),
            )?,
            Algorithm::HS256 => {
                return Err(JoseError::InvalidKey(
                    "HS256 keys are shared secrets, not generated key pairs".into(),
                ))
            }
        };
        let key = SigningKey::from_pkcs8(alg, &der)?;
        Ok((key, der))
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public half, as JWK components.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// A verifier for this key's own signatures.
    pub fn verifying_key(&self) -> Result<VerifyingKey, JoseError> {
        VerifyingKey::from_public(self.alg, &self.public)
    }

    /// Signs `message` (the JWS signing input) and returns the raw signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        match &self.signer {
            Signer::Rsa(pair) => {
                let padding: &'static dyn sig::RsaEncoding = match self.alg {
                    Algorithm::PS256 => &sig::RSA_PSS_SHA256,
                    _ => &sig::RSA_PKCS1_SHA256,
                };
                let modulus_len = match &self.public {
                    PublicKey::Rsa { n, .. } => n.len(),
                    _ => 0,
                };
                let mut out = vec![0u8; modulus_len];
                pair.sign(padding, &rand::SystemRandom::new(), message, &mut out)
                    .map_err(|_| JoseError::Crypto("RSA signing failed"))?;
                Ok(out)
            }
            Signer::Ec(pair) => {
                let sig = pair
                    .sign(&rand::SystemRandom::new(), message)
                    .map_err(|_| JoseError::Crypto("ECDSA signing failed"))?;
                let mut out = sig.as_ref().to_vec();
                low_s(&mut out)?;
                Ok(out)
            }
            Signer::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// The order n of the P-256 group, big-endian (SEC 2, §2.4.2).
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// ⌊n / 2⌋ for P-256: an `s` above it is "high".
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d,
    0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Puts an ES256 signature (`r || s`, 32 bytes each) in low-S form: when
/// `s > n/2`, `s` becomes `n - s`. Both `(r, s)` and `(r, n - s)` verify
/// (ECDSA checks only the x coordinate of a point that `s` negates), so
/// without this every token we sign has a second valid spelling; with it,
/// ours have exactly one. High-S signatures of other signers stay valid:
/// verification does not require this form. The signature is public, so
/// the branch on `s` leaks nothing.
fn low_s(sig: &mut [u8]) -> Result<(), JoseError> {
    let s: &mut [u8; 32] = sig
        .get_mut(32..)
        .and_then(|s| s.try_into().ok())
        .ok_or(JoseError::Crypto("ECDSA signature is not 64 bytes"))?;
    // Big-endian byte arrays of equal length compare as the numbers do.
    if *s > P256_HALF_N {
        let mut borrow = 0u16;
        for i in (0..32).rev() {
            let d = u16::from(P256_N[i]).wrapping_sub(u16::from(s[i])).wrapping_sub(borrow);
            s[i] = d as u8;
            borrow = (d >> 8) & 1;
        }
    }
    Ok(())
}

/// Re-encodes a PKCS#8 v2 Ed25519 key (seed and public key, what both
/// providers generate) as v1 (RFC 8410, seed only), the form OpenSSL 3.0
/// and other tools read; the public key is derived from the seed on load.
fn ed25519_pkcs8_v1(v2: &[u8]) -> Result<Vec<u8>, JoseError> {
    // SEQUENCE { INTEGER 1, AlgorithmIdentifier { id-Ed25519 }, OCTET STRING { OCTET STRING seed }, ... }:
    // everything but the outer length, which depends on how the public key is tagged.
    const V2_BODY: [u8; 14] = [
        0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    match (v2.first(), v2.get(2..16), v2.get(16..48)) {
        (Some(0x30), Some(body), Some(seed)) if body == V2_BODY => Ok([&V1_PREFIX[..], seed].concat()),
        _ => Err(JoseError::Crypto("unexpected Ed25519 PKCS#8 layout from the provider")),
    }
}

#[cfg(feature = "aws-lc")]
fn ecdsa_from_pkcs8(pkcs8: &[u8]) -> Result<sig::EcdsaKeyPair, provider::error::KeyRejected> {
    sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
}

fn check_rsa_bits(bits: u32) -> Result<(), JoseError> {
    match bits {
        2048 | 3072 | 4096 => Ok(()),
        _ => Err(JoseError::InvalidKey(format!(
            "RSA keys are 2048, 3072 or 4096 bits, not {bits}"
        ))),
    }
}

#[cfg(feature = "aws-lc")]
fn generate_rsa_pkcs8(bits: u32) -> Result<Vec<u8>, JoseError> {
    use provider::encoding::AsDer;
    use provider::rsa::KeySize;
    check_rsa_bits(bits)?;
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        _ => KeySize::Rsa4096,
    };
    let pair = provider::rsa::KeyPair::generate(size).map_err(|_| JoseError::Crypto("RSA key generation failed"))?;
    let der = pair
        .as_der()
        .map_err(|_| JoseError::Crypto("RSA key encoding failed"))?;
    Ok(der.as_ref().to_vec())
}

fn p256_from_point(point: &[u8]) -> Result<PublicKey, JoseError> {
    match point {
        [0x04, rest @ ..] if rest.len() == 64 => {
            let mut x = [0u8; 32];
            let mut y = [0u8; 32];
            x.copy_from_slice(&rest[..32]);
            y.copy_from_slice(&rest[32..]);
            Ok(PublicKey::P256 { x, y })
        }
        _ => Err(JoseError::InvalidKey(
            "P-256 public key is not an uncompressed point".into(),
        )),
    }
}

#[cfg(feature = "aws-lc")]
type Parsed = sig::ParsedPublicKey;

#[cfg(feature = "aws-lc")]
fn parse_public(alg: &'static dyn sig::VerificationAlgorithm, bytes: Vec<u8>) -> Result<Parsed, JoseError> {
    sig::ParsedPublicKey::new(alg, bytes).map_err(|e| JoseError::InvalidKey(format!("public key rejected: {e}")))
}

#[cfg(feature = "aws-lc")]
fn verify_parsed(key: &Parsed, message: &[u8], signature: &[u8]) -> bool {
    key.verify_sig(message, signature).is_ok()
}

/// The `ring` build's side of the functions above, apart so that
/// scripts/mutants can tell its mutants from the rest: the default (aws-lc)
/// build does not compile it, so its "ring" area mutates it in the ring
/// build (the ring job of scripts/test runs the jose tests against it).
#[cfg(all(feature = "ring", not(feature = "aws-lc")))]
mod ring_glue {
    use super::{check_rsa_bits, provider, rand, sig, JoseError};

    pub(super) fn ecdsa_from_pkcs8(pkcs8: &[u8]) -> Result<sig::EcdsaKeyPair, provider::error::KeyRejected> {
        sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rand::SystemRandom::new())
    }

    pub(super) fn generate_rsa_pkcs8(bits: u32) -> Result<Vec<u8>, JoseError> {
        use rsa::pkcs8::EncodePrivateKey;
        check_rsa_bits(bits)?;
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits as usize)
            .map_err(|_| JoseError::Crypto("RSA key generation failed"))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|_| JoseError::Crypto("RSA key encoding failed"))?;
        Ok(der.as_bytes().to_vec())
    }

    pub(super) type Parsed = sig::UnparsedPublicKey<Vec<u8>>;

    pub(super) fn parse_public(
        alg: &'static dyn sig::VerificationAlgorithm,
        bytes: Vec<u8>,
    ) -> Result<Parsed, JoseError> {
        Ok(sig::UnparsedPublicKey::new(alg, bytes))
    }

    pub(super) fn verify_parsed(key: &Parsed, message: &[u8], signature: &[u8]) -> bool {
        key.verify(message, signature).is_ok()
    }
}

#[cfg(all(feature = "ring", not(feature = "aws-lc")))]
use ring_glue::{ecdsa_from_pkcs8, generate_rsa_pkcs8, parse_public, verify_parsed, Parsed};

enum Verifier {
    Public(Box<Parsed>),
    Hmac(Box<hmac::Key>),
}

/// A public key (or, for HS256, a shared secret) bound to one algorithm,
/// parsed once so that each verification does only the signature check.
pub struct VerifyingKey {
    alg: Algorithm,
    verifier: Verifier,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// A verifier for `alg` from public components. RSA keys under 2048 bits
    /// are refused; the component type must fit the algorithm.
    pub fn from_public(alg: Algorithm, public: &PublicKey) -> Result<VerifyingKey, JoseError> {
        let parsed = match (alg, public) {
            (Algorithm::RS256 | Algorithm::PS256, PublicKey::Rsa { n, e }) => {
                let bits = der::unsigned_bits(n);
                if bits < 2048 {
                    return Err(JoseError::InvalidKey(format!(
                        "RSA key of {bits} bits: at least 2048 are required"
                    )));
                }
                let params: &'static dyn sig::VerificationAlgorithm = if alg == Algorithm::PS256 {
                    &sig::RSA_PSS_2048_8192_SHA256
                } else {
                    &sig::RSA_PKCS1_2048_8192_SHA256
                };
                parse_public(params, der::encode_rsa_public_key(n, e))?
            }
            (Algorithm::ES256, PublicKey::P256 { x, y }) => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                parse_public(&sig::ECDSA_P256_SHA256_FIXED, point)?
            }
            (Algorithm::EdDSA, PublicKey::Ed25519(x)) => parse_public(&sig::ED25519, x.to_vec())?,
            (alg, public) => {
                return Err(JoseError::InvalidKey(format!("{public:?} cannot verify {alg}")));
            }
        };
        Ok(VerifyingKey {
            alg,
            verifier: Verifier::Public(Box::new(parsed)),
        })
    }

    /// An HS256 verifier from a shared secret given as bytes. Secrets shorter
    /// than 32 bytes (the hash size, RFC 7518 §3.2) are refused.
    pub fn hmac(secret: &[u8]) -> Result<VerifyingKey, JoseError> {
        if secret.len() < 32 {
            return Err(JoseError::InvalidKey(format!(
                "HS256 secret of {} bytes: at least 32 are required",
                secret.len()
            )));
        }
        Ok(VerifyingKey {
            alg: Algorithm::HS256,
            verifier: Verifier::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
        })
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Checks `signature` over `message`. The comparison of HMAC tags is
    /// constant-time (the provider's `hmac::verify`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), JoseError> {
        let ok = match &self.verifier {
            Verifier::Public(key) => verify_parsed(key, message, signature),
            Verifier::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(JoseError::BadSignature)
        }
    }
}

/// The TLS crypto provider matching the signature provider, for the HTTP
/// clients (remote JWKS, session check): one provider in the whole binary.
pub fn tls_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "ring", not(feature = "aws-lc")))]
    let provider = rustls::crypto::ring::default_provider();
    std::sync::Arc::new(provider)
}

/// HMAC-SHA-256 of `message`, for tests and tools that must make HS256 tokens.
pub fn hmac_sha256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), message)
        .as_ref()
        .to_vec()
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), JoseError> {
    rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| JoseError::Crypto("the system random generator failed"))
}

#[cfg(test)]
mod tests;

//! TLS to Redis (`rediss://`): which certificate authorities verify the
//! server, and the client certificate for mutual TLS.
//!
//! The `redis` crate makes the TLS connection with rustls, from the
//! process's default crypto provider; [`use_crate_provider`] installs this
//! crate's own (aws-lc-rs, or ring under the `ring` feature) as that default
//! before any TLS connection, so Redis, the remote JWKS client and the
//! signing keys use one provider. Certificate checks are never turned off:
//! a `#insecure` URL is refused by the `redis` crate (its insecure feature
//! is not enabled) and by the configuration.
//!
//! Nothing here puts key material into an error or a log line: a file that
//! does not parse is named, never quoted.

use std::fmt;
use std::path::Path;

use ::redis::{ClientTlsConfig, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How a `rediss://` connection is verified and authenticated. The default
/// verifies the server against the system's root certificates (the same
/// roots the remote JWKS client uses) and sends no client certificate.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// PEM CA bundle that replaces the system's roots.
    ca: Option<Vec<u8>>,
    /// PEM certificate chain and private key for mutual TLS.
    client: Option<(Vec<u8>, Vec<u8>)>,
}

/// A TLS file that cannot be used: which setting, and why (one line, never
/// the file's content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFileError {
    /// `redis_ca_file`, `redis_client_cert_file` or `redis_client_key_file`.
    pub setting: &'static str,
    /// What is wrong with it, in one line.
    pub reason: String,
}

impl fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store.{}: {}", self.setting, self.reason)
    }
}

impl std::error::Error for TlsFileError {}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.as_ref().map(|_| "custom"))
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl RedisTls {
    /// Reads and checks the files: `ca_file` (PEM, one or more CA
    /// certificates) replaces the system's roots; `client_cert_file` (PEM
    /// chain) and `client_key_file` (PEM private key) go together and must
    /// match. Every file is parsed here, so a bad one is an error at
    /// start-up rather than at the first connection.
    pub fn from_files(
        ca_file: Option<&Path>,
        client_cert_file: Option<&Path>,
        client_key_file: Option<&Path>,
    ) -> Result<RedisTls, TlsFileError> {
        let ca = match ca_file {
            Some(path) => {
                let pem = read("redis_ca_file", path)?;
                let roots = certificates("redis_ca_file", &pem)?;
                let mut store = rustls::RootCertStore::empty();
                for cert in roots {
                    store.add(cert).map_err(|e| TlsFileError {
                        setting: "redis_ca_file",
                        reason: format!("holds a certificate that cannot be a trust anchor ({e})"),
                    })?;
                }
                Some(pem)
            }
            None => None,
        };
        let client = match (client_cert_file, client_key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsFileError {
                    setting: "redis_client_key_file",
                    reason: "is missing: store.redis_client_cert_file needs its private key".into(),
                })
            }
            (None, Some(_)) => {
                return Err(TlsFileError {
                    setting: "redis_client_cert_file",
                    reason: "is missing: store.redis_client_key_file needs its certificate".into(),
                })
            }
            (Some(cert_path), Some(key_path)) => {
                let cert_pem = read("redis_client_cert_file", cert_path)?;
                let chain = certificates("redis_client_cert_file", &cert_pem)?;
                let key_pem = read("redis_client_key_file", key_path)?;
                // The parser's error can quote a line of the file: not shown.
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsFileError {
                    setting: "redis_client_key_file",
                    reason: "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
                })?;
                // What the connection will do, now: rustls checks that the
                // provider supports the key and that it matches the chain.
                client_config_builder()?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsFileError {
                        setting: "redis_client_key_file",
                        reason: format!("cannot be used with store.redis_client_cert_file ({e})"),
                    })?;
                Some((cert_pem, key_pem))
            }
        };
        Ok(RedisTls { ca, client })
    }

    /// Whether anything differs from the default (system roots, no client
    /// certificate).
    pub fn is_custom(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    /// The `redis` crate's form.
    pub(super) fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.ca.clone(),
        }
    }
}

/// Installs this crate's crypto provider as the process's default unless
/// one is installed already (by an earlier call, or by the application
/// that embeds this crate, whose choice stands). The `redis` crate builds
/// its rustls configuration from that default; without one, rustls would
/// pick from its compiled-in providers, and panics when both are compiled
/// in (`--features ring` on top of the default).
pub(super) fn use_crate_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one in between: it stands.
        let _ = std::sync::Arc::unwrap_or_clone(crate::jose::alg::tls_provider()).install_default();
    }
}

fn client_config_builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, TlsFileError> {
    rustls::ClientConfig::builder_with_provider(crate::jose::alg::tls_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError {
            setting: "redis_client_key_file",
            reason: format!("TLS set-up: {e}"),
        })
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| TlsFileError {
        setting,
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

/// Every `CERTIFICATE` block of `pem`; at least one.
fn certificates(setting: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsFileError {
            setting,
            reason: "is not a PEM file (a block is malformed)".into(),
        })?;
    if certs.is_empty() {
        return Err(TlsFileError {
            setting,
            reason: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests;

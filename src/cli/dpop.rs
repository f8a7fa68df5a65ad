//! `tokensmith dpop proof`: a DPoP proof (RFC 9449) from the shell, for
//! trying DPoP with `curl`. The key is an ES256 PKCS#8 PEM file, made (0600)
//! the first time a path that does not exist is named. A client's tool, not
//! the service's: nothing here is policy.

use std::path::{Path, PathBuf};

use clap::Args;
use tokensmith::jose::{Algorithm, SigningKey};
use tokensmith::keys::disk::{decode_pem, encode_pem};
use tokensmith::{Clock, SystemClock};

use super::CliError;

/// `tokensmith dpop proof`'s options.
#[derive(Args, Debug)]
pub struct ProofArgs {
    /// The client's key (ES256, PKCS#8 PEM); made if the file does not exist.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The request's method (`htm`).
    #[arg(long, default_value = "POST")]
    method: String,
    /// The request's URL (`htu`; query and fragment are dropped).
    #[arg(long, value_name = "URL")]
    url: String,
    /// The access token sent with the proof (adds `ath`).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// The server's nonce (from a `DPoP-Nonce` header).
    #[arg(long)]
    nonce: Option<String>,
}

fn key_at(path: &Path) -> Result<SigningKey, CliError> {
    let io = |e: std::io::Error| CliError::new("key_io", format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            let der = decode_pem(&pem).map_err(|e| CliError::new("key_io", format!("{}: {e}", path.display())))?;
            SigningKey::from_pkcs8(Algorithm::ES256, &der)
                .map_err(|e| CliError::new("key_io", format!("{}: not an ES256 key: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, der) =
                SigningKey::generate(Algorithm::ES256, 0).map_err(|e| CliError::new("internal", e.to_string()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io)?;
            std::io::Write::write_all(&mut file, encode_pem(&der).as_bytes()).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Prints one proof.
pub fn proof(args: ProofArgs) -> Result<(), CliError> {
    let key = key_at(&args.key)?;
    let proof = tokensmith::dpop::make_proof(
        &key,
        &args.method,
        &args.url,
        SystemClock.now(),
        args.token.as_deref(),
        args.nonce.as_deref(),
    )
    .map_err(|e| CliError::new("internal", e.to_string()))?;
    use std::io::Write as _;
    writeln!(std::io::stdout(), "{proof}").map_err(|e| CliError::new("output_failed", format!("standard output: {e}")))
}

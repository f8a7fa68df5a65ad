//! The command line's grammar: clap's types for every subcommand and the
//! parsers of its argument values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use tokensmith::jose::Algorithm;

use super::dpop;

#[derive(Parser, Debug)]
#[command(
    name = "tokensmith",
    version,
    about = "Issues short-lived JWTs, publishes and rotates their keys, verifies tokens."
)]
pub(super) struct Cli {
    /// Configuration file (default: ./tokensmith.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// Use a keys folder that group or others can write (with a warning)
    /// instead of refusing it.
    #[arg(long, global = true)]
    pub(super) insecure_permissions: bool,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Manage the key ring.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the JWKS of the key ring.
    Jwks(DirArg),
    /// Sign a token with the active key.
    Issue(IssueArgs),
    /// Verify a token and print its claims.
    Verify(VerifyArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// DPoP (RFC 9449) from the shell.
    #[command(subcommand)]
    Dpop(DpopCommand),
}

#[derive(Subcommand, Debug)]
pub(super) enum DpopCommand {
    /// Print a DPoP proof for one request, made with a key file.
    Proof(dpop::ProofArgs),
}

/// `tokensmith serve`'s options.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on, `HOST:PORT` (`localhost:8080`, `0.0.0.0:8080`,
    /// `[::1]:8080`); overrides `listen`.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Option<std::net::SocketAddr>,
    /// Keys folder (overrides `keys.dir`).
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Development mode: add a `dev` client and print its keys once.
    #[arg(long)]
    pub dev: bool,
}

#[derive(Args, Debug)]
pub(super) struct DirArg {
    /// Keys folder (default: `keys.dir`, `keys`).
    #[arg(long, value_name = "DIR")]
    pub(super) dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(super) enum KeysCommand {
    /// Make an active and a next key in an empty folder.
    Init {
        #[command(flatten)]
        dir: DirArg,
        /// Signing algorithm: RS256, PS256, ES256 or EdDSA (default: `keys.algorithm`, RS256).
        #[arg(long, value_parser = parse_alg, value_name = "ALG")]
        alg: Option<Algorithm>,
        /// RSA modulus size in bits (default: `keys.rsa_bits`, 2048).
        #[arg(long, value_parser = ["2048", "3072", "4096"])]
        bits: Option<String>,
    },
    /// Make `next` the signing key, retire the active one, publish a new next.
    Rotate {
        #[command(flatten)]
        dir: DirArg,
        /// Rotate even if `next` has been published for less than `publish_ahead`.
        #[arg(long)]
        now: bool,
    },
    /// List the keys and their states.
    List {
        #[command(flatten)]
        dir: DirArg,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove retiring keys whose tokens have all expired.
    Prune {
        #[command(flatten)]
        dir: DirArg,
    },
}

#[derive(Args, Debug)]
pub(super) struct IssueArgs {
    /// The subject: who the token is for.
    #[arg(long)]
    pub(super) sub: String,
    /// An audience; repeat for several (`aud` is then an array).
    #[arg(long)]
    pub(super) aud: Vec<String>,
    /// A scope to grant; repeat for several.
    #[arg(long)]
    pub(super) scope: Vec<String>,
    /// Lifetime, e.g. 5m (default: `tokens.default_ttl`).
    #[arg(long, value_parser = parse_duration_arg)]
    pub(super) ttl: Option<std::time::Duration>,
    /// An extra claim; V is JSON when it parses as JSON, a string otherwise.
    #[arg(long, value_name = "K=V")]
    pub(super) claim: Vec<String>,
    /// Issuer URL (default: `issuer`).
    #[arg(long)]
    pub(super) iss: Option<String>,
    #[command(flatten)]
    pub(super) dir: DirArg,
}

#[derive(Args, Debug)]
pub(super) struct VerifyArgs {
    /// The token, or `-` (or nothing) to read it from standard input.
    pub(super) token: Option<String>,
    /// A JWKS file or URL to verify against (or --dir).
    #[arg(
        long,
        value_name = "FILE|URL",
        conflicts_with = "dir",
        required_unless_present = "dir"
    )]
    pub(super) jwks: Option<String>,
    /// A keys folder to verify against (or --jwks).
    #[arg(long, value_name = "DIR")]
    pub(super) dir: Option<PathBuf>,
    /// The audience the token must carry (or --any-aud, to inspect a token
    /// meant for anyone: never for a service that acts on it).
    #[arg(long, required_unless_present = "any_aud")]
    pub(super) aud: Option<String>,
    /// Accept the token whatever its audience.
    #[arg(long, conflicts_with = "aud")]
    pub(super) any_aud: bool,
    /// Expected issuer (default: `issuer`).
    #[arg(long)]
    pub(super) iss: Option<String>,
    /// A scope the token must carry; repeat for several.
    #[arg(long)]
    pub(super) scope: Vec<String>,
    /// Clock skew allowed (default: `tokens.leeway`).
    #[arg(long, value_parser = parse_duration_arg)]
    pub(super) leeway: Option<std::time::Duration>,
}

#[derive(Subcommand, Debug)]
pub(super) enum ApikeyCommand {
    /// Print a new API key once, and the hash line for the config.
    Create {
        /// The id of the `[[clients]]` entry the key is for.
        #[arg(long, value_name = "ID")]
        client: String,
    },
}

pub(super) fn parse_alg(s: &str) -> Result<Algorithm, String> {
    match Algorithm::from_name(s) {
        Some(a) if a != Algorithm::HS256 => Ok(a),
        _ => Err(format!("{s:?} is not one of RS256, PS256, ES256, EdDSA")),
    }
}

/// `HOST:PORT`: a socket address, or a host name that resolves (the first
/// address it resolves to is used, as `localhost` in the README's curls).
pub(super) fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs as _;
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT that resolves: {e}"))?;
    addrs.next().ok_or_else(|| format!("{s:?} resolves to no address"))
}

pub(super) fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    tokensmith::units::parse_duration(s)
}

//! `tokensmith serve`: the binary's side of the service. It owns what the
//! library must not: logging, signals, the runtime and binding. Everything
//! else is `tokensmith::server` and the authority.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokensmith::clients::ClientRegistry;
use tokensmith::config::Config;
use tokensmith::keys::disk::KeyDir;
use tokensmith::server::listener::{self, Limits};
use tokensmith::server::{app, fdlimit, metrics_app, spawn_key_watcher, AppState};
use tokensmith::store::AnyStore;
use tokensmith::{Clock, SharedClock, SystemClock};
use tokio::net::TcpListener;

use super::dev::DevClient;
use super::{utf8_env, CliError, ServeArgs};

fn init_logging() {
    let filter = std::env::var("TOKENSMITH_LOG").unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Builds everything from the config and runs until SIGTERM or Ctrl-C.
/// `insecure_permissions` lets it use a keys folder that group or others can
/// write (logged as a warning) instead of refusing it.
pub fn run(
    mut cfg: Config,
    args: ServeArgs,
    config_path: Option<PathBuf>,
    insecure_permissions: bool,
) -> Result<(), CliError> {
    init_logging();
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    if let Some(dir) = args.keys {
        cfg.keys.dir = dir;
    }
    // Before anything opens a descriptor: every connection needs one, and
    // the cap on connections is sized from what this leaves.
    let (fds_before, fds) = fdlimit::raise();
    tracing::info!(
        soft = fds.soft,
        hard = fds.hard,
        soft_at_start = fds_before.soft,
        "file-descriptor limit"
    );
    let limits = Limits::from_config(&cfg.server, fds.soft).map_err(|why| CliError::new("invalid_config", why))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new("runtime", e.to_string()))?;
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Registered before anything else, so that no signal meets the
        // default action once we are starting up.
        let term = signal(SignalKind::terminate()).ok();
        let hup = signal(SignalKind::hangup()).ok();
        let clock: SharedClock = Arc::new(SystemClock);
        let dir = KeyDir::new(cfg.keys.dir.clone());
        for warning in dir.check_permissions(insecure_permissions)? {
            tracing::warn!("{warning}");
        }
        let (alg, bits, now) = (cfg.keys.algorithm, cfg.keys.rsa_bits, SystemClock.now());
        if !args.dev {
            refuse_to_guess_a_keys_folder(&cfg.keys.dir)?;
        }
        let (ring, dir) = tokio::task::spawn_blocking(move || dir.ensure(alg, bits, now))
            .await
            .map_err(|e| CliError::new("internal", e.to_string()))??;
        if let Some(why) = dir.read_only() {
            tracing::warn!(
                dir = %dir.path().display(),
                "the keys folder cannot be written here ({why}): serving its keys read-only, without rotating or pruning them; rotate where it is writable, and this server reloads keyring.json when it changes"
            );
        }
        let mut registry =
            ClientRegistry::from_clients(&cfg.clients).map_err(|e| CliError::new("invalid_config", e.to_string()))?;
        let dev_client = if args.dev {
            let d = DevClient::new(&cfg).map_err(|e| CliError::new("internal", e.to_string()))?;
            registry = d.add_to(registry);
            Some(d)
        } else {
            None
        };
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| CliError::new("listen_failed", format!("{}: {e}", cfg.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::new("listen_failed", e.to_string()))?;
        let metrics_listener = match cfg.server.metrics_listen {
            Some(at) => Some(
                TcpListener::bind(at)
                    .await
                    .map_err(|e| CliError::new("listen_failed", format!("server.metrics_listen {at}: {e}")))?,
            ),
            None => None,
        };
        if cfg.issuer == Config::embedded().issuer && addr != Config::embedded().listen {
            // The issuer was left at its default: name the address actually
            // served, before anything (the authority's audience checks, the
            // store's namespace) is derived from it.
            cfg.issuer = format!("http://{addr}");
        }
        let store = AnyStore::from_config(&cfg.store, &cfg.issuer, &*clock)
            .await
            .map_err(|e| CliError::new("store_unavailable", e.to_string()))?;
        let state = AppState::new(cfg, &ring, registry, store, clock).map_err(CliError::from_state)?;
        let state = Arc::new(state);
        if let Some(d) = &dev_client {
            let env_file = match d.write_env(&state.config.keys.dir, &addr) {
                Ok(path) => Some(path),
                Err(e) => {
                    tracing::warn!(dir = %state.config.keys.dir.display(), error = %e, "could not write dev.env; the keys are printed below");
                    None
                }
            };
            d.announce(&addr, env_file.as_deref());
        }
        tracing::info!(
            %addr,
            issuer = %state.config.issuer,
            kid = %state.keys.load().signer.kid,
            max_connections = limits.max_connections,
            "tokensmith listening"
        );
        if state.authority.clients().is_empty() {
            tracing::warn!("no clients are configured: every API key is refused; add [[clients]] to the config, or run with --dev");
        }
        let watcher = spawn_key_watcher(Arc::clone(&state), dir, Duration::from_secs(1));
        spawn_sighup_reload(Arc::clone(&state), hup, config_path, dev_client);
        // One signal, seen by every listener.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal(term).await;
            stop_tx.send_replace(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let metrics = async {
            match metrics_listener {
                Some(l) => {
                    if let Ok(at) = l.local_addr() {
                        tracing::info!(addr = %at, "metrics listening");
                    }
                    let router = metrics_app(Arc::clone(&state));
                    listener::run(router, l, limits.for_metrics(), stopped(stop_rx.clone())).await
                }
                None => Ok(()),
            }
        };
        let main = listener::run(app(Arc::clone(&state)), listener, limits, stopped(stop_rx.clone()));
        let (main, metrics) = tokio::join!(main, metrics);
        watcher.abort();
        main.and(metrics)
            .map_err(|e| CliError::new("server_failed", e.to_string()))
    })
}

/// Outside `--dev`, a ring is made only in an empty folder that exists
/// (a fresh volume): a missing folder, or one that holds other files but no
/// `keyring.json`, is most likely a typo or the wrong mount, and a new ring
/// there would silently sign with keys nobody publishes.
fn refuse_to_guess_a_keys_folder(dir: &Path) -> Result<(), CliError> {
    let no_ring = |why: &str| {
        CliError::new(
            "no_keys",
            format!(
                "{}: {why}; run `tokensmith keys init --dir {}` first (or `serve --dev`)",
                dir.display(),
                dir.display()
            ),
        )
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(no_ring("no such folder")),
        Err(e) => Err(CliError::new("key_io", format!("{}: {e}", dir.display()))),
        Ok(m) if !m.is_dir() => Err(CliError::new(
            "key_io",
            format!(
                "{}: not a folder (give --keys the folder that holds keyring.json)",
                dir.display()
            ),
        )),
        Ok(_) => {
            if dir.join(tokensmith::keys::disk::KEYRING_FILE).exists() {
                return Ok(());
            }
            let mut entries =
                std::fs::read_dir(dir).map_err(|e| CliError::new("key_io", format!("{}: {e}", dir.display())))?;
            match entries.next() {
                None => Ok(()),
                Some(_) => Err(no_ring("the folder holds files but no keyring.json")),
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM. `term` is registered by the caller before
/// the port is bound, so a SIGTERM that arrives during start-up is a clean
/// shutdown rather than the default action.
async fn shutdown_signal(term: Option<tokio::signal::unix::Signal>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match term {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests (at most server.shutdown_grace)");
}

/// Reloads the clients on SIGHUP from the same config file. The authority
/// checks the new set (it refuses one that would remove every client); a
/// set it refuses, or a config that does not load, leaves the current
/// clients in place and is logged as an ERROR. A reload it takes is logged
/// as one line of what changed.
fn spawn_sighup_reload(
    state: Arc<AppState>,
    hup: Option<tokio::signal::unix::Signal>,
    config_path: Option<PathBuf>,
    dev: Option<DevClient>,
) {
    tokio::spawn(async move {
        let Some(mut hup) = hup else {
            return;
        };
        while hup.recv().await.is_some() {
            let loaded = Config::load(config_path.as_deref(), utf8_env())
                .map_err(|e| e.to_string())
                .and_then(|cfg| ClientRegistry::from_clients(&cfg.clients).map_err(|e| e.to_string()));
            let registry = match loaded {
                Ok(registry) => match &dev {
                    Some(d) => d.add_to(registry),
                    None => registry,
                },
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: the config did not load; keeping the current clients");
                    continue;
                }
            };
            let count = registry.len();
            match state.authority.replace_clients(registry) {
                Ok(change) => tracing::info!(clients = count, "SIGHUP: clients reloaded: {change}"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: the clients were refused; keeping the current clients"),
            }
        }
    });
}

//! `tokensmith`: the command line over the library. The binary owns clap,
//! logging, the environment, signals and binding; the library owns every
//! decision.

mod cli;

/// mimalloc (the default `mimalloc` feature): the service's hot paths
/// allocate small, short-lived buffers (request bodies, claims, JSON), which
/// it serves faster than glibc's malloc. See benches/README.md.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}

//! `tokensmith`: the command line over the library. The binary owns clap,
//! logging, the environment, signals and binding; the library owns every
//! decision.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

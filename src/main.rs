//! `tokensmith`: the command line over the library.

fn main() -> std::process::ExitCode {
    tokensmith::cli::main()
}

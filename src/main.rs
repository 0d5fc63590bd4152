//! The `pool` binary: parse the command line and hand over to [`pool::cli`].

fn main() -> std::process::ExitCode {
    pool::cli::main()
}

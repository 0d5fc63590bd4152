//! `pool-bench <scenario> [--quick]`: see the library's documentation.

use std::process::ExitCode;

use clap::Parser;

/// Pool measured end to end (docs/BENCHMARKS.md).
#[derive(Parser)]
#[command(name = "pool-bench", version)]
struct Cli {
    #[command(flatten)]
    args: pool_bench::BenchArgs,
}

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    pool::telemetry::init(!std::env::var("POOL_LOG_FORMAT").is_ok_and(|f| f == "text"));
    pool::cli::block_on_main(pool_bench::run(cli.args))
}

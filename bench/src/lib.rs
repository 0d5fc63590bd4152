//! `pool-bench <scenario> [--quick]`: performance measured end to end.
//!
//! Every scenario run creates its own database on the server of `DATABASE_URL`
//! (`bench_<scenario>_<random>`, dropped afterwards), starts the simulator in this
//! process and real `pool web` / `pool worker` children (the `pool` binary built
//! beside this one, or `POOL_BIN`), then prints a human table and exactly one JSON
//! line. `--quick` shrinks the sizes for smoke runs. Results and their analysis live
//! in `docs/BENCHMARKS.md`; `scripts/bench` runs this against a throwaway Postgres
//! with durability on.

mod availability;
mod availability_cost;
mod availability_recurring;
mod availability_report;
mod availability_trace;
mod claim;
mod cpu;
mod footprint;
mod harness;
mod hostile;
mod idle;
mod queue_drain;
mod queue_latency;
mod reconcile;
mod report;
mod scale;
mod versus;
mod waiters;

use serde_json::Value;

pub use availability::AvailabilityArgs;

/// Arguments of `pool-bench`.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Which scenario to run.
    #[arg(value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,
    /// Small sizes for a smoke run (numbers are not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Flags of the `availability` scenario.
    #[command(flatten)]
    pub availability: AvailabilityArgs,
}

/// The scenarios.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// K = 1, 8, 32 concurrent clients claiming with `Prefer: wait=30`.
    Claim,
    /// 8 producers enqueueing single no-op jobs; enqueue → handler-start latency.
    QueueLatency,
    /// No-op jobs inserted in bulk, drained by one worker; default and tuned settings.
    QueueDrain,
    /// One reconcile over 1,000, 10,000 and 100,000 simulated instances.
    Reconcile,
    /// RSS of web and worker at idle and under the claim load.
    Footprint,
    /// A demand trace with bursts against a static and an adaptive warm
    /// buffer (simulated build time; minutes). Only when named: not part of `all`.
    Availability,
    /// Hostile clients: made-up methods, a read flood beside claims, slow clients.
    /// Only when named: not part of `all`.
    Hostile,
    /// Claims against Pool and the original Node service side by side, the instances
    /// in another process (`POOL_BENCH_ORIGINAL`: the original's `pool/` directory;
    /// skipped without it). Only when named: not part of `all`.
    Versus,
    /// Claims and fetch cost with 1 M finished and 100 k future rows, and
    /// while pruning them. Only when named: not part of `all`.
    Scale,
    /// Statements per second and Postgres CPU of 1 and 10 idle workers.
    /// Only when named: not part of `all`.
    Idle,
    /// 1,000 claims waiting at once: web memory, wake-ups per finish.
    /// Only when named: not part of `all`.
    Waiters,
    /// Every scenario in turn (except those only run when named).
    All,
}

const ALL: [Scenario; 5] =
    [Scenario::Claim, Scenario::QueueLatency, Scenario::QueueDrain, Scenario::Reconcile, Scenario::Footprint];

/// Runs the chosen scenario(s); each prints its table, then its JSON line.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let scenarios = if args.scenario == Scenario::All { ALL.to_vec() } else { vec![args.scenario] };
    for scenario in scenarios {
        // On SIGTERM or Ctrl-C the scenario is dropped, which kills its children.
        let line = tokio::select! {
            line = run_one(scenario, &args) => line?,
            () = pool::telemetry::shutdown_signal() => anyhow::bail!("interrupted"),
        };
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}

async fn run_one(scenario: Scenario, args: &BenchArgs) -> anyhow::Result<Value> {
    let quick = args.quick;
    match scenario {
        Scenario::Claim => claim::run(quick).await,
        Scenario::QueueLatency => queue_latency::run(quick).await,
        Scenario::QueueDrain => queue_drain::run(quick).await,
        Scenario::Reconcile => reconcile::run(quick).await,
        Scenario::Footprint => footprint::run(quick).await,
        Scenario::Availability => availability::run(quick, &args.availability).await,
        Scenario::Hostile => hostile::run(quick).await,
        Scenario::Versus => versus::run(quick).await,
        Scenario::Scale => scale::run(quick).await,
        Scenario::Idle => idle::run(quick).await,
        Scenario::Waiters => waiters::run(quick).await,
        Scenario::All => unreachable!("expanded by run"),
    }
}

//! Pool keeps a pool of pre-warmed agent instances so that claiming one takes seconds.
//!
//! # Layout
//!
//! - [`cli`]: the `pool` subcommands (`migrate`, `web`, `worker`, `enqueue`, `jobs`; with
//!   the default `dev-tools` feature also `sim` and `dev`).
//! - [`config`]: typed configuration read from the environment; secrets wrapped; API
//!   keys by scope (operator, claim) and the key sent to instances.
//! - [`telemetry`]: tracing setup.
//! - [`db`]: connection pools and migrations (Pool's and the job queue's).
//! - [`domain`]: instance and job ids, job kinds, statuses, deploy statuses, instance
//!   URLs — no IO.
//! - [`upstream`]: the error type shared by both upstream clients, classified by
//!   what the caller does next (retry, give up, treat as gone).
//! - [`services`]: client for the services API (creates and destroys instances).
//! - [`instance`]: client for an instance's own endpoints (health, provision).
//! - [`store`]: all SQL: instances, jobs, idempotency keys, shared rate limits,
//!   per-minute metrics, claim arrivals (the warm target's demand), orphaned
//!   provider services.
//! - [`http`]: the web process: its accept loop, router, key scopes, `ApiError`,
//!   handlers, the permits of expensive reads.
//! - [`buffer`]: the warm target (`POOL_MIN_IDLE`, adaptive to demand, `POOL_MAX_WARM`).
//! - [`queue`]: enqueueing jobs (inside the caller's transaction) and the job document.
//! - [`jobs`]: every job kind, one file each: its stable name, payload, result,
//!   slots and handler; the kind list (`for_each_kind!`); what a handler reaches
//!   and returns.
//! - [`worker`]: the worker process: the job runtime, the schedules, the binding of
//!   waiting claims to idle instances, pruning.
//! - `sim`: the simulated services API and instances (the `pool-sim` crate in `sim/`),
//!   used by `pool dev`, the benchmarks and the tests; not in a production build.
//! - [`dev`]: `pool dev`, the whole system as one process tree.
//! - [`metrics`]: what every process records, kept in Postgres (fleet-wide counters,
//!   per-minute rows for the charts), and the `/metrics` page.
//! - [`jobs_cli`]: `pool jobs list|retry|cancel`.
//! - [`memo`]: values recomputed at most once per period (job totals), or once at a
//!   time for concurrent callers (the counts).
//!
//! Beside this crate: `sim/` (the simulator) and `bench/`
//! (`pool-bench`, the end-to-end benchmarks, docs/BENCHMARKS.md).
//!
//! `http` and `worker` are the two entry layers and never import each other; both
//! use `jobs` (the web enqueues its payloads, the worker runs its handlers).

pub mod buffer;
pub mod cli;
pub mod config;
pub mod db;
#[cfg(feature = "dev-tools")]
pub mod dev;
pub mod domain;
pub mod http;
pub mod instance;
pub mod jobs;
pub mod jobs_cli;
pub mod memo;
pub mod metrics;
pub mod queue;
pub mod services;
#[cfg(feature = "dev-tools")]
pub use pool_sim as sim;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod worker;

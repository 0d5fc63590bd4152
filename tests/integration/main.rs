//! Pool's integration tests: one binary, real Postgres (a fresh database per test,
//! cloned from a migrated template), the simulator as the upstream, the app on port 0,
//! and real `pool` processes where the process boundary matters.

mod fixtures;
mod helpers;
mod stack;

mod adoption;
mod api;
mod browser;
mod buffer;
mod bulk_retry;
mod claim_storm;
mod clients;
mod completion;
mod config;
mod crash;
mod deploy;
mod faults;
mod fifo;
mod floods;
mod forecast;
mod fuzz;
mod glance;
mod hostile;
mod http;
mod idle;
mod jobs_admin;
mod lease;
mod lease_lapse;
mod lifecycle;
mod line;
mod lost_commit;
mod migrations;
mod odd_bytes;
mod operator;
mod ops;
mod outcomes;
mod proxy;
mod prune_gives_way;
mod queue;
mod reconcile;
mod recycle;
mod resilience;
mod schedules;
mod stale_runs;
mod surplus;
mod table_size;
mod upgrade;
mod upstream;
mod waiters;
mod waiting;
mod wakeups;

//! `scale`: what a claim and a fetch cost once the job table is large: claims on an
//! empty table, then with 1 M finished rows (past their retention) and 100 k queued
//! rows scheduled in the future, then paced claims on that table: alone, while the
//! worker's pruning deletes the finished rows, and alone again after it. The fetch's
//! cost is read with `EXPLAIN (ANALYZE, BUFFERS)` of the fetch statement itself,
//! rolled back.

use std::time::{Duration, Instant};

use anyhow::Context;
use pool::{
    jobs::{Job, claim_and_provision::ClaimAndProvision},
    store::jobs::lifecycle,
};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{
    claim::{self, Load},
    harness::Stack,
    report::{self, Latency},
};

/// `(claims per phase, paced claims before pruning, finished rows, future rows)`.
/// The paced claims are the pruning phase's baseline: a claim after a pause costs
/// more than one right after another.
const SIZES: (usize, usize, i64, i64) = (300, 600, 1_000_000, 100_000);
const SIZES_QUICK: (usize, usize, i64, i64) = (30, 30, 20_000, 2_000);
/// While pruning: one claim this often, for at most this many claims.
const PRUNE_PACE: Duration = Duration::from_millis(100);
const PRUNE_CLAIMS_MAX: usize = 3_000;
/// The default `JOB_RETENTION_HOURS` (72).
const RETENTION_SECS: u64 = 72 * 3600;
/// Older than the default retention (72 h): every finished row may be pruned.
const FINISHED_AGE: &str = "4 days";

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let sizes = if quick { SIZES_QUICK } else { SIZES };
    let stack = claim::start("scale", 2 * sizes.0 + 2 * sizes.1 + PRUNE_CLAIMS_MAX + 200).await?;
    let measured = measure(&stack, sizes).await;
    let stopped = stack.stop().await;
    let phases = measured?;
    stopped?;
    let headers = ["phase", "claims", "p50 ms", "p95 ms", "p99 ms", "max ms", "fetch buffers (10 kinds / 1 kind)"];
    let rows: Vec<Vec<String>> = phases.iter().map(Phase::cells).collect();
    let title = format!("scale: K=1 claims; {} finished + {} future rows", sizes.2, sizes.3);
    report::table(&title, &headers, &rows);
    Ok(json!({
        "scenario": "scale",
        "quick": quick,
        "finished_rows": sizes.2,
        "future_rows": sizes.3,
        "phases": phases.iter().map(Phase::json).collect::<Vec<_>>(),
    }))
}

/// One phase: its claims and, where read, the fetch's buffers.
struct Phase {
    name: &'static str,
    load: Load,
    /// Buffers of one fetch for every kind, and for the claim kind alone.
    fetch: Option<(i64, i64)>,
    extra: Value,
}

impl Phase {
    fn json(&self) -> Value {
        let mut load = self.load.json();
        load["phase"] = json!(self.name);
        if let Some((all, one)) = self.fetch {
            load["fetch_buffers_all_kinds"] = json!(all);
            load["fetch_buffers_one_kind"] = json!(one);
        }
        load["extra"] = self.extra.clone();
        load["tail_ms"] = json!(self.tail());
        load
    }

    /// The slowest 5 % of the phase's claims, slowest first, so runs can be pooled:
    /// one run's p99 is its 6th or 11th slowest claim, and one stall moves it.
    fn tail(&self) -> Vec<f64> {
        let mut samples = self.load.latencies_ms.clone();
        samples.sort_by(|a, b| b.total_cmp(a));
        samples.truncate(samples.len().div_ceil(20));
        samples.into_iter().map(report::round2).collect()
    }

    fn cells(&self) -> Vec<String> {
        let mut samples = self.load.latencies_ms.clone();
        let mut cells = vec![self.name.to_owned(), samples.len().to_string()];
        let latency = Latency::of(&mut samples);
        cells.extend([latency.p50_ms, latency.p95_ms, latency.p99_ms, latency.max_ms].map(|v| format!("{v:.2}")));
        cells.push(self.fetch.map_or_else(|| "-".into(), |(all, one)| format!("{all} / {one}")));
        cells
    }
}

async fn measure(
    stack: &Stack,
    (claims, paced, finished, future): (usize, usize, i64, i64),
) -> anyhow::Result<Vec<Phase>> {
    let db = &stack.db.pool;
    claim::warm_up(stack).await?;
    let fetch = Some(fetch_buffers(db).await?);
    let empty = Phase { name: "empty table", load: claim::load(stack, 1, claims).await?, fetch, extra: json!({}) };
    let filled = Instant::now();
    fill(db, finished, future).await?;
    let fill_secs = report::round2(filled.elapsed().as_secs_f64());
    let fetch = Some(fetch_buffers(db).await?);
    // Measured as the empty table is: after a warm-up (the fill pushed the claim's
    // pages out of Postgres's buffers).
    claim::warm_up(stack).await?;
    let load = claim::load(stack, 1, claims).await?;
    let big = Phase { name: "big table", load, fetch, extra: json!({ "fill_secs": fill_secs }) };
    let load = paced_claims(stack, paced, || false).await?;
    let unpruned = Phase { name: "big table, paced", load, fetch: None, extra: json!({}) };
    let pruning = while_pruning(stack).await?;
    // The same again once the prune is done: what moves between the two paced
    // phases is time (the claims served so far), not the prune.
    let load = paced_claims(stack, paced, || false).await?;
    let after = Phase { name: "paced, after pruning", load, fetch: None, extra: json!({}) };
    Ok(vec![empty, big, unpruned, pruning, after])
}

/// `finished` rows past their retention (one in ten failed, with its attempt kept) and
/// `future` queued rows due tomorrow, spread over every kind; then `VACUUM ANALYZE`.
async fn fill(db: &PgPool, finished: i64, future: i64) -> anyhow::Result<()> {
    let kinds = pool::jobs::KINDS;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO jobs (id, kind, args, state, attempts, max_attempts, runs, run_at, created_at, started_at,
                           finished_at, result, error)
         SELECT 'scale-done-' || lpad(g::text, 9, '0'), ($2::text[])[1 + g % cardinality($2::text[])], '{{}}',
                CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 1, 1, t, t, t, t + interval '1 ms',
                CASE WHEN g % 10 = 0 THEN NULL ELSE '{{}}'::jsonb END,
                CASE WHEN g % 10 = 0 THEN 'bench failure' END
         FROM generate_series(1, $1::bigint) g, LATERAL (SELECT now() - interval '{FINISHED_AGE}'
                                                                + g * interval '1 ms' AS t) ts"
    )))
    .bind(finished)
    .bind(kinds)
    .execute(db)
    .await
    .context("insert finished rows")?;
    sqlx::query(
        "INSERT INTO job_attempts (job_id, run, outcome, error, worker_id, started_at)
         SELECT id, 1, 'failed', error, 'bench', started_at FROM jobs WHERE state = 'failed' AND id LIKE 'scale-done-%'",
    )
    .execute(db)
    .await
    .context("insert attempts")?;
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, max_attempts, run_at)
         SELECT 'scale-later-' || lpad(g::text, 9, '0'), ($2::text[])[1 + g % cardinality($2::text[])], '{}', 5,
                now() + interval '1 day' + g * interval '1 ms'
         FROM generate_series(1, $1::bigint) g",
    )
    .bind(future)
    .bind(kinds)
    .execute(db)
    .await
    .context("insert future rows")?;
    sqlx::query("VACUUM ANALYZE jobs").execute(db).await?;
    sqlx::query("VACUUM ANALYZE job_attempts").execute(db).await?;
    // The checkpoint the fill's writes call for is the fill's cost, not the table's.
    sqlx::query("CHECKPOINT").execute(db).await?;
    Ok(())
}

/// Shared buffers (hit + read) one fetch touches, asking 4 of every kind, and 4
/// claims alone; rolled back, so it takes nothing.
async fn fetch_buffers(db: &PgPool) -> anyhow::Result<(i64, i64)> {
    let all = pool::jobs::KINDS;
    let one = [ClaimAndProvision::KIND];
    Ok((lifecycle::fetch_cost(db, all).await?, lifecycle::fetch_cost(db, &one).await?))
}

/// Paced claims for as long as the worker's pruning deletes the finished rows.
async fn while_pruning(stack: &Stack) -> anyhow::Result<Phase> {
    let url = stack.db.url.clone();
    let started = Instant::now();
    let pruning = tokio::spawn(async move { prune(&url).await });
    let load = paced_claims(stack, PRUNE_CLAIMS_MAX, || pruning.is_finished()).await?;
    let pruned = pruning.await??;
    let prune_secs = report::round2(started.elapsed().as_secs_f64());
    let gave_way_secs = report::round2(pruned.gave_way.as_secs_f64());
    let extra = json!({ "deleted": pruned.jobs, "prune_secs": prune_secs, "gave_way_secs": gave_way_secs });
    Ok(Phase { name: "while pruning", load, fetch: None, extra })
}

/// One claim every [`PRUNE_PACE`], up to `max` of them or until `done`: its rate over
/// the whole phase, its CPU that of the claims alone (not the pauses).
async fn paced_claims(stack: &Stack, max: usize, done: impl Fn() -> bool) -> anyhow::Result<Load> {
    let started = Instant::now();
    let mut load = claim::load(stack, 1, 1).await?;
    while !done() && load.latencies_ms.len() < max {
        tokio::time::sleep(PRUNE_PACE).await;
        let one = claim::load(stack, 1, 1).await?;
        load.latencies_ms.extend(one.latencies_ms);
        load.errors += one.errors;
        load.first_error = load.first_error.or(one.first_error);
        for (sum, more) in load.cpu.iter_mut().zip(one.cpu) {
            *sum += more;
        }
    }
    load.wall = started.elapsed();
    Ok(load)
}

/// What the worker's prune loop does in one round, with the worker's settings
/// (`JOB_PRUNE_BATCH`, `JOB_PRUNE_PAUSE_MS`, giving way to claims) but the default
/// retention, on a connection set up as the worker's are (asynchronous commit).
async fn prune(url: &str) -> anyhow::Result<pool::store::jobs::Pruned> {
    let jobs = pool::config::JobsConfig::from_process_env()?;
    let url = secrecy::SecretString::from(url.to_owned());
    let db = pool::db::connect_as(&url, 1, pool::db::PoolKind::WORKER, pool::db::ACQUIRE_TIMEOUT).await?;
    let settings = pool::store::jobs::PruneSettings {
        retention: Duration::from_secs(RETENTION_SECS),
        ..pool::worker::prune_settings(&jobs)
    };
    let pruned = pool::store::jobs::prune_all(&db, &settings).await?.unwrap_or_default();
    db.close().await;
    Ok(pruned)
}

//! Liveness of worker processes. Each process proves it is alive every heartbeat
//! (`JOB_HEARTBEAT_MS`, 3 s) on a connection of its own (a busy or exhausted pool
//! cannot delay it), and every process takes back the running jobs of processes
//! silent for the rescue window (`JOB_RESCUE_AFTER_MS`, 12 s): a job whose worker
//! died or stalled runs again within ~15 s.

use std::{sync::Arc, time::Duration};

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

use super::fetch::Fetcher;
use crate::{
    store::jobs::{legacy, lifecycle},
    worker::Ctx,
};

/// The last resort: a run older than this many rescue windows (30 min at 12 s) is
/// taken back whatever its worker says, should a holder never let go.
const LAST_RESORT_WINDOWS: u32 = 150;

/// Registers the worker, waiting out a database that is briefly away.
pub async fn register(db: &PgPool, worker: &str) -> sqlx::Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        match lifecycle::heartbeat(db, worker).await {
            Ok(()) => return Ok(()),
            Err(err) if delay < Duration::from_secs(30) => {
                tracing::warn!(error = %err, "cannot register this worker yet; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(err) => return Err(err),
        }
    }
}

pub async fn deregister(db: &PgPool, worker: &str) {
    if let Err(err) = lifecycle::deregister(db, worker).await {
        tracing::warn!(error = %err, "could not deregister this worker; it will be presumed dead");
    }
}

/// Heartbeats, rescues and moves legacy jobs until `stop`. The caller stops it only
/// once every outcome of this process is written: until then its runs hold their
/// jobs, and a silent worker's jobs are taken back and run again. A tick that hangs
/// (a connection that neither answers nor fails) is given up after a quarter of the
/// rescue window, and the next tick reconnects, so one bad connection cannot keep
/// this live worker silent.
pub async fn run(ctx: Arc<Ctx>, worker: String, fetcher: Arc<Fetcher>, mut stop: watch::Receiver<bool>) {
    let (heartbeat, rescue_after) = (ctx.config.jobs.heartbeat, ctx.config.jobs.rescue_after);
    let limit = rescue_after / 4;
    let options = ctx.db.connect_options();
    let mut conn: Option<PgConnection> = None;
    loop {
        if conn.is_none() {
            conn = match tokio::time::timeout(limit, PgConnection::connect_with(&options)).await {
                Ok(Ok(c)) => Some(c),
                Ok(Err(err)) => {
                    tracing::warn!(worker = %worker, error = %err, "heartbeat connection failed");
                    None
                }
                Err(_) => {
                    tracing::warn!(worker = %worker, "heartbeat connection timed out");
                    None
                }
            };
        }
        if let Some(c) = conn.as_mut() {
            let failed = match tokio::time::timeout(limit, tick(c, &worker, &fetcher, rescue_after)).await {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(_) => Some(format!("no answer within {} ms", limit.as_millis())),
            };
            if let Some(error) = failed {
                tracing::warn!(worker = %worker, error, "heartbeat failed; reconnecting");
                conn = None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(heartbeat) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}

async fn tick(conn: &mut PgConnection, worker: &str, fetcher: &Fetcher, rescue_after: Duration) -> sqlx::Result<()> {
    lifecycle::heartbeat(&mut *conn, worker).await?;
    // Taken before the statement: a run let go after this was written first.
    let held = fetcher.held();
    let orphans = lifecycle::release_orphans(&mut *conn, worker, &held, rescue_after / 2).await?;
    if orphans > 0 {
        tracing::warn!(worker, released = orphans, "took back running jobs this worker holds no run of");
        fetcher.wake();
    }
    let rescued = lifecycle::rescue(&mut *conn, rescue_after, rescue_after * LAST_RESORT_WINDOWS).await?;
    if rescued > 0 {
        tracing::warn!(rescued, "took back running jobs of workers that stopped responding");
        fetcher.wake();
    }
    if legacy::adopt_waiting(&mut *conn).await? > 0 {
        fetcher.wake();
    }
    Ok(())
}

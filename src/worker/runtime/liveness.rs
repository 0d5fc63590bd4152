//! Liveness of worker processes. Each process proves it is alive every heartbeat
//! (`JOB_HEARTBEAT_MS`, 3 s) on a connection of its own (a busy or exhausted pool
//! cannot delay it), and every process takes back the running jobs of processes
//! silent for the rescue window (`JOB_RESCUE_AFTER_MS`, 12 s): a job whose worker
//! died or stalled runs again within ~15 s.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection, PgPool, postgres::PgConnectOptions};
use tokio::sync::watch;

use super::fetch::Fetcher;
use crate::{
    jobs::{Ctx, lease::LeaseClock},
    store::jobs::{legacy, lifecycle},
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

/// Heartbeats, takes back jobs no live run holds and moves legacy jobs until
/// `stop`. The caller stops it only once every outcome of this process is written:
/// until then its runs hold their jobs, and a silent worker's jobs are taken back
/// and run again. A tick that hangs (a connection that neither answers nor fails)
/// is given up after a quarter of the rescue window, and the next tick reconnects,
/// so one bad connection cannot keep this live worker silent. Each successful
/// heartbeat renews `lease`.
pub async fn run(
    ctx: Arc<Ctx>,
    worker: String,
    fetcher: Arc<Fetcher>,
    lease: Arc<LeaseClock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut heart = Heart {
        worker,
        fetcher,
        lease,
        rescue_after: ctx.config.jobs.rescue_after,
        options: ctx.db.connect_options().as_ref().clone().application_name(HEARTBEAT_APPLICATION),
        conn: None,
        away: false,
        // A worker just started may have waited for the database with the others
        // (an outage, every process restarted): they get one window to prove
        // themselves alive. A dead predecessor's jobs wait only as long as its
        // restart took.
        rescue_from: Some(Instant::now() + ctx.config.jobs.rescue_after),
        ticks: 0,
    };
    loop {
        heart.beat().await;
        tokio::select! {
            _ = tokio::time::sleep(ctx.config.jobs.heartbeat) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if let Some(c) = heart.conn {
        let _ = c.close().await;
    }
}

/// The previous release's waiting jobs are moved at the first tick and every this
/// many after (30 s at the default heartbeat): a rolling deploy is rare, a tick is not.
const LEGACY_EVERY: u64 = 10;

/// `application_name` of heartbeat connections (told apart in `pg_stat_activity`).
pub const HEARTBEAT_APPLICATION: &str = "pool-heartbeat";

/// The heartbeat's state between ticks.
struct Heart {
    worker: String,
    fetcher: Arc<Fetcher>,
    lease: Arc<LeaseClock>,
    rescue_after: Duration,
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    /// The last tick failed: this worker was away from the database.
    away: bool,
    /// No rescue before this: after its start or its own reconnect a worker waits
    /// one window, so the others (away as long) can prove themselves alive first.
    rescue_from: Option<Instant>,
    /// Ticks so far.
    ticks: u64,
}

impl Heart {
    async fn beat(&mut self) {
        let limit = self.rescue_after / 4;
        if self.conn.is_none() {
            self.conn = match tokio::time::timeout(limit, PgConnection::connect_with(&self.options)).await {
                Ok(Ok(c)) => Some(c),
                Ok(Err(err)) => return self.failed(format!("cannot connect: {err}")),
                Err(_) => return self.failed(format!("no connection within {} ms", limit.as_millis())),
            };
        }
        if self.away {
            // Back: every other worker was probably away as long.
            self.rescue_from = Some(Instant::now() + self.rescue_after);
            tracing::info!(worker = %self.worker, "heartbeat back; rescuing nothing for one rescue window");
        }
        let may_rescue = self.rescue_from.is_none_or(|from| Instant::now() >= from);
        let Some(conn) = self.conn.as_mut() else { return };
        let legacy = self.ticks.is_multiple_of(LEGACY_EVERY);
        self.ticks += 1;
        let beat = Beat { worker: &self.worker, fetcher: &self.fetcher, lease: &self.lease, legacy };
        match tokio::time::timeout(limit, beat.tick(conn, self.rescue_after, may_rescue)).await {
            Ok(Ok(())) => self.away = false,
            Ok(Err(err)) => self.failed(err.to_string()),
            Err(_) => self.failed(format!("no answer within {} ms", limit.as_millis())),
        }
    }

    fn failed(&mut self, error: String) {
        tracing::warn!(worker = %self.worker, error, "heartbeat failed; reconnecting");
        self.conn = None;
        self.away = true;
    }
}

/// What one tick needs.
struct Beat<'a> {
    worker: &'a str,
    fetcher: &'a Fetcher,
    lease: &'a LeaseClock,
    /// Also move the previous release's waiting jobs (every [`LEGACY_EVERY`] ticks).
    legacy: bool,
}

impl Beat<'_> {
    async fn tick(&self, conn: &mut PgConnection, rescue_after: Duration, may_rescue: bool) -> sqlx::Result<()> {
        let (worker, fetcher) = (self.worker, self.fetcher);
        // Taken before the statement: a run let go after this was written first.
        let held = fetcher.held();
        let sent = Instant::now();
        let orphans = lifecycle::heartbeat_releasing_orphans(&mut *conn, worker, &held, rescue_after / 2).await?;
        self.lease.renewed(sent);
        if orphans > 0 {
            crate::metrics::taken_back("lost_commit", orphans);
            tracing::warn!(worker, released = orphans, "took back running jobs this worker holds no run of");
            fetcher.wake();
        }
        if may_rescue {
            let rescued = lifecycle::rescue(&mut *conn, rescue_after, rescue_after * LAST_RESORT_WINDOWS).await?;
            if rescued > 0 {
                crate::metrics::taken_back("silent_worker", rescued);
                tracing::warn!(worker, rescued, "took back running jobs of workers that stopped responding");
                fetcher.wake();
            }
        }
        if self.legacy && legacy::adopt_waiting(&mut *conn).await? > 0 {
            fetcher.wake();
        }
        Ok(())
    }
}

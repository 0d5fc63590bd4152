//! One writer per process records the outcomes of runs, many per statement: at a
//! high rate a batch forms on its own while the previous one is written. A write that
//! fails (database down) is retried until it succeeds; meanwhile the rows stay
//! `running` under this live worker, and if the process dies, rescue re-runs them. A
//! write the database refuses for its content is split to find the outcome at fault,
//! which fails its job instead (see [`write_isolating`]).

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use sqlx::PgPool;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};

use super::fetch::{Fetcher, Slot};
use crate::{
    domain::{JobId, text::storable},
    store::{
        self,
        jobs::lifecycle::{self, Applied, Finished, Outcome},
    },
};

/// Most outcomes in one statement.
const MAX_BATCH: usize = 1000;
/// Outcomes waiting to be written before runs wait for the writer.
const QUEUE: usize = 8192;
/// How long a stopping process keeps trying to write its last outcomes.
const GIVE_UP_AT_STOP: Duration = Duration::from_secs(30);

/// Hands outcomes to the writer.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Finished>,
}

/// The writer task; [`Closing::close`] waits until everything handed over is written.
pub struct Closing {
    task: JoinHandle<()>,
    stop: Arc<Notify>,
}

pub fn start(db: PgPool, worker: String, fetcher: Arc<Fetcher>) -> (Writer, Closing) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(write_loop(db, worker, fetcher, rx, stop.clone()));
    (Writer { tx }, Closing { task, stop })
}

impl Writer {
    /// Queues an outcome; the run's slot is free once the outcome is handed over.
    pub async fn send(&self, finished: Finished, slot: Slot) {
        if self.tx.send(finished).await.is_err() {
            tracing::error!("outcome writer is gone; the job will be rescued");
        }
        drop(slot);
    }
}

impl Closing {
    /// Call once no run is in flight: writes what is queued, then ends the writer.
    pub async fn close(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}

async fn write_loop(
    db: PgPool,
    worker: String,
    fetcher: Arc<Fetcher>,
    mut rx: mpsc::Receiver<Finished>,
    stop: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    loop {
        if stopping {
            while batch.len() < MAX_BATCH {
                let Ok(next) = rx.try_recv() else { break };
                batch.push(next);
            }
            if batch.is_empty() {
                return;
            }
        } else {
            tokio::select! {
                _ = rx.recv_many(&mut batch, MAX_BATCH) => {}
                _ = stop.notified() => { stopping = true; continue; }
            }
        }
        write(&db, &worker, &batch, stopping).await;
        for run in &batch {
            fetcher.let_go(&run.id, run.attempt);
        }
        wake_for_retries(&fetcher, &batch);
        batch.clear();
    }
}

/// Where outcomes are written: the database, or a fake in tests.
trait Store: Sync {
    fn finish<'a>(&'a self, runs: &'a [Finished]) -> BoxFuture<'a, Result<Vec<Applied>, Failed>>;
}

/// Why a write did not apply.
enum Failed {
    /// The database is unreachable or busy: the same write may succeed later.
    Away(sqlx::Error),
    /// The database refused this statement: repeating it cannot help.
    Refused(sqlx::Error),
}

/// The outcomes of `worker`'s runs, in `jobs`.
struct Jobs<'a> {
    db: &'a PgPool,
    worker: &'a str,
}

impl Store for Jobs<'_> {
    fn finish<'a>(&'a self, runs: &'a [Finished]) -> BoxFuture<'a, Result<Vec<Applied>, Failed>> {
        async move {
            // No connection, whatever the reason (refused, a database not accepting
            // connections, a failover), is the database being away.
            let mut conn = self.db.acquire().await.map_err(Failed::Away)?;
            lifecycle::finish(&mut *conn, self.worker, runs)
                .await
                .map_err(|err| if store::is_transient(&err) { Failed::Away(err) } else { Failed::Refused(err) })
        }
        .boxed()
    }
}

async fn write(db: &PgPool, worker: &str, batch: &[Finished], stopping: bool) {
    write_isolating(&Jobs { db, worker }, batch, stopping).await;
}

/// Writes `batch`. When the database refuses a batch for what it holds (not because
/// it is away), the batch is split in halves until the outcome at fault is alone
/// ([`write_alone`]). One outcome that cannot be stored never holds back the others,
/// nor the writer.
async fn write_isolating(store: &impl Store, batch: &[Finished], stopping: bool) {
    let mut parts = vec![batch];
    while let Some(part) = parts.pop() {
        match write_part(store, part, stopping).await {
            Written::Applied(applied) => report(part, &applied),
            Written::GaveUp => return,
            Written::Refused(_) if part.len() > 1 => {
                let (first, second) = part.split_at(part.len() / 2);
                parts.extend([second, first]);
            }
            Written::Refused(err) => {
                if !write_alone(store, &part[0], err, stopping).await {
                    return;
                }
            }
        }
    }
}

/// An outcome the database refused on its own fails its job, saying why. Should
/// that be refused too, the fault was not in the outcome: both are tried again,
/// later, as for a database that is away. False when the process gave up at stop.
async fn write_alone(store: &impl Store, run: &Finished, refused: sqlx::Error, stopping: bool) -> bool {
    let (mut delay, started) = (Duration::from_millis(100), tokio::time::Instant::now());
    let mut refused = refused;
    loop {
        tracing::error!(job_id = %run.id, error = %refused, "outcome cannot be stored; failing the job");
        let failed = [unstorable(run, &refused)];
        match write_part(store, &failed, stopping).await {
            Written::Applied(applied) => {
                report(&failed, &applied);
                return true;
            }
            Written::GaveUp => return false,
            Written::Refused(err) => {
                tracing::error!(job_id = %run.id, error = %err, "could not fail the job either; retrying");
            }
        }
        if stopping && started.elapsed() > GIVE_UP_AT_STOP {
            return false;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        match write_part(store, std::slice::from_ref(run), stopping).await {
            Written::Applied(applied) => {
                report(std::slice::from_ref(run), &applied);
                return true;
            }
            Written::GaveUp => return false,
            Written::Refused(err) => refused = err,
        }
    }
}

/// How one write ended.
enum Written {
    Applied(Vec<Applied>),
    /// The database refused the statement; repeating it cannot help.
    Refused(sqlx::Error),
    /// The process is stopping and the database stayed away: rescue re-runs these.
    GaveUp,
}

/// Writes `runs` in one statement, retrying while the database is away.
async fn write_part(store: &impl Store, runs: &[Finished], stopping: bool) -> Written {
    let mut delay = Duration::from_millis(100);
    let started = tokio::time::Instant::now();
    loop {
        match store.finish(runs).await {
            Ok(applied) => return Written::Applied(applied),
            Err(Failed::Refused(err)) => return Written::Refused(err),
            Err(Failed::Away(err)) if stopping && started.elapsed() > GIVE_UP_AT_STOP => {
                tracing::error!(error = %err, jobs = runs.len(), "could not record outcomes; rescue will re-run them");
                return Written::GaveUp;
            }
            Err(Failed::Away(err)) => {
                tracing::warn!(error = %err, jobs = runs.len(), "could not record outcomes; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The outcome that replaces one the database refused: the job fails, saying why.
fn unstorable(run: &Finished, err: &sqlx::Error) -> Finished {
    let reason = storable(format!("the outcome of this run could not be stored: {err}"));
    Finished { id: run.id.clone(), attempt: run.attempt, outcome: Outcome::Permanent(reason) }
}

/// Counts what was applied and logs what was not.
fn report(runs: &[Finished], applied: &[Applied]) {
    crate::metrics::runs_recorded(applied);
    for lost in not_applied(runs, applied) {
        crate::metrics::run_stopped("dropped");
        tracing::warn!(job_id = %lost.id, "job was taken from this run meanwhile; outcome dropped");
    }
}

/// The runs whose outcome was not applied. The store returns each applied run once,
/// and only runs it was given: as many back as sent means none was lost, the usual
/// case, which needs no set. Otherwise by a set: a batch holds thousands of runs at
/// high concurrency, and a scan of `applied` per run cost more than the batch's
/// statement.
fn not_applied<'a>(runs: &'a [Finished], applied: &[Applied]) -> Vec<&'a Finished> {
    if applied.len() == runs.len() {
        return Vec::new();
    }
    let applied: HashSet<&JobId> = applied.iter().map(|a| &a.id).collect();
    runs.iter().filter(|f| !applied.contains(&f.id)).collect()
}

/// Retries of this process's runs are due later: wake the fetch loop then, instead
/// of waiting for its poll.
fn wake_for_retries(fetcher: &Arc<Fetcher>, batch: &[Finished]) {
    let next = batch
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::Retryable { delay, .. } | Outcome::Again { delay, .. } => Some(*delay),
            _ => None,
        })
        .min();
    if let Some(delay) = next {
        let fetcher = fetcher.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay + Duration::from_millis(5)).await;
            fetcher.wake();
        });
    }
}

#[cfg(test)]
mod tests;

//! One writer per process records the outcomes of runs, many per statement: at a
//! high rate a batch forms on its own while the previous one is written. A write that
//! fails (database down) is retried until it succeeds; meanwhile the rows stay
//! `running` under this live worker, and if the process dies, rescue re-runs them.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};

use super::fetch::{Fetcher, Slot};
use crate::store::jobs::lifecycle::{self, Finished, Outcome};

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
        wake_for_retries(&fetcher, &batch);
        batch.clear();
    }
}

async fn write(db: &PgPool, worker: &str, batch: &[Finished], stopping: bool) {
    let mut delay = Duration::from_millis(100);
    let started = tokio::time::Instant::now();
    loop {
        match lifecycle::finish(db, worker, batch).await {
            Ok(applied) if applied.len() == batch.len() => return crate::metrics::runs_recorded(&applied),
            Ok(applied) => {
                crate::metrics::runs_recorded(&applied);
                for lost in batch.iter().filter(|f| !applied.iter().any(|a| a.id == f.id)) {
                    tracing::warn!(job_id = %lost.id, "job was taken from this run meanwhile; outcome dropped");
                }
                return;
            }
            Err(err) if stopping && started.elapsed() > GIVE_UP_AT_STOP => {
                tracing::error!(error = %err, jobs = batch.len(), "could not record outcomes; rescue will re-run them");
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, jobs = batch.len(), "could not record outcomes; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
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

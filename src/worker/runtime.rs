//! Runs one kind of job on apalis: a supervised worker per kind with its own
//! concurrency, woken by LISTEN/NOTIFY and by an interval poll (pubsub alone misses
//! delayed and retried jobs), a short heartbeat so a dead process's jobs re-run within
//! ~15 s, and a fresh worker name per incarnation so a restarted process never keeps
//! its predecessor's jobs "alive".

use std::{sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_postgres::{Config as QueueConfig, PostgresStorage};
use tokio::sync::watch;

use super::{
    Ctx,
    handler::{Handler, JobError, JobMeta, settle},
};
use crate::store::jobs::{self, Start};

/// How often a worker proves it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Missed heartbeats after which another worker re-enqueues a worker's jobs.
const MISSED_HEARTBEATS: usize = 3;
/// Poll interval for delayed jobs and retries (pubsub covers new jobs).
const POLL: Duration = Duration::from_millis(500);
/// Pause before restarting a worker that stopped with an error (e.g. database down).
const RESTART_DELAY: Duration = Duration::from_secs(3);

/// Runs workers of kind `J` until `stop` flips to true; restarts after failures.
pub async fn run_kind<J: Handler>(ctx: Arc<Ctx>, concurrency: usize, mut stop: watch::Receiver<bool>) {
    loop {
        let name = worker_name(J::KIND);
        tracing::info!(kind = J::KIND, worker = %name, concurrency, "worker starting");
        let queue = QueueConfig::default()
            .queue(J::KIND)
            .batch_size(ctx.config.jobs.batch_size.unwrap_or(concurrency).max(1))
            .heartbeat_interval(HEARTBEAT)
            .missed_heartbeats(MISSED_HEARTBEATS)
            // Pool marks jobs running and writes outcomes itself (store::jobs::start
            // and finish). apalis's own lock/ack transactions would only repeat that,
            // and at shutdown an unfinished one holds row locks the handlers wait on.
            .lock_tasks(false)
            .persist_results(false);
        let backend =
            PostgresStorage::<J>::new(&ctx.queue_db).with_config(queue).with_pubsub().poll_with_interval(POLL);
        let worker = WorkerBuilder::new(name.clone())
            .backend(backend)
            .concurrency(concurrency)
            .data(ctx.clone())
            .build(handle::<J>);
        let mut signal = stop.clone();
        let result = worker
            .run_until(async move {
                let _ = signal.wait_for(|stop| *stop).await;
                Ok::<(), std::io::Error>(())
            })
            .await;
        if *stop.borrow() {
            tracing::info!(kind = J::KIND, worker = %name, "worker stopped");
            return;
        }
        tracing::warn!(kind = J::KIND, worker = %name, error = ?result.err(), "worker ended; restarting");
        tokio::select! {
            _ = tokio::time::sleep(RESTART_DELAY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// The apalis handler: runs the job and writes its outcome itself (see `store::jobs`).
async fn handle<J: Handler>(
    args: J,
    ctx: Data<Arc<Ctx>>,
    id: TaskId,
    attempt: Attempt,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    // apalis counts the attempt in progress before the handler runs (lifecycle.rs);
    // handlers want the attempts made before this one, i.e. the row's `attempts`.
    let meta = JobMeta { id: id.to_string(), attempt: attempt.current().saturating_sub(1) };
    let span = tracing::info_span!("job", job_id = %meta.id, kind = J::KIND, attempt = meta.attempt);
    let outcome = match jobs::start(&ctx.db, &meta.id, worker.name()).await {
        Ok(Start::Run) => tracing::Instrument::instrument(args.run(&ctx, &meta), span).await,
        Ok(Start::Cancelled) => Err(JobError::Cancelled),
        Ok(Start::NotOurs) => {
            tracing::info!(job_id = %meta.id, kind = J::KIND, "job no longer held by this worker; skipped");
            return Ok(());
        }
        // The row stays ours; a later attempt (or orphan recovery) runs it.
        Err(err) => Err(JobError::from(err)),
    };
    settle(&ctx, &meta, worker.name(), J::KIND, outcome).await;
    Ok(())
}

fn worker_name(kind: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    format!("{kind}-{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

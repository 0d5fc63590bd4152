//! The job runtime of one worker process, on apalis:
//!
//! - [`fetch`]: one fetch loop serves every kind. It sleeps on one LISTEN connection
//!   (plus a poll for delayed retries) and takes at most the free slots of each kind,
//!   marking the jobs running in the same statement; woken by a notification naming
//!   kinds ([`wake`]), it asks for those alone.
//! - apalis runs what was fetched: one worker over an in-memory backend, and stops
//!   gracefully (in-flight runs end first). It needs no limit of its own: each
//!   delivery holds its kind's slot until its outcome is handed over, so the slots
//!   are the concurrency. Why apalis is the runner and not the backend:
//!   docs/decisions/apalis.md.
//! - [`outcomes`]: outcomes are written in batches by one writer (claims write their
//!   own, together with their last change).
//! - [`liveness`]: a heartbeat on its own connection, the rescue of dead workers'
//!   jobs, and the move of jobs the previous release still enqueues.

mod fetch;
mod liveness;
mod outcomes;
mod wake;

use std::{collections::HashMap, sync::Arc};

use apalis::prelude::*;
use futures::{FutureExt, SinkExt, future::BoxFuture};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::{
    jobs::{Ctx, Job, JobError, JobKind, JobMeta, handler::outcome, lease::LeaseClock},
    store::jobs::lifecycle::{Fetched, Finished},
};

type RunFn = fn(Arc<Ctx>, Value, JobMeta) -> BoxFuture<'static, Result<Value, JobError>>;

/// One job kind as the runtime runs it.
#[derive(Clone, Copy)]
pub struct Kind {
    pub name: JobKind,
    pub slots: usize,
    run: RunFn,
}

fn kind<J: Job>(jobs: &crate::config::JobsConfig) -> Kind {
    Kind { name: J::KIND, slots: J::slots(jobs).max(1), run: run_as::<J> }
}

/// Decodes the payload and runs the handler. A payload this release cannot decode
/// (e.g. written by a newer one) is a retryable failure: it fails after its
/// attempts, with the reason, while every other job runs on.
fn run_as<J: Job>(ctx: Arc<Ctx>, args: Value, meta: JobMeta) -> BoxFuture<'static, Result<Value, JobError>> {
    async move {
        let payload: J = serde_json::from_value(args)
            .map_err(|e| JobError::retry(format!("cannot decode the {} payload: {e}", J::KIND)))?;
        let output = payload.run(&ctx, &meta).await?;
        serde_json::to_value(output)
            .map_err(|e| JobError::permanent(format!("cannot encode the {} result: {e}", J::KIND)))
    }
    .boxed()
}

/// The registry: every job kind ([`crate::jobs::for_each_kind`]) with its slots per
/// process ([`Job::slots`]).
pub fn kinds(ctx: &Ctx) -> Vec<Kind> {
    let jobs = &ctx.config.jobs;
    macro_rules! registry {
        ($($job:path,)*) => { vec![$(kind::<$job>(jobs)),*] };
    }
    crate::jobs::for_each_kind!(registry)
}

/// A fetched job on its way to apalis, holding its kind's slot until it ends.
struct Delivery {
    job: Fetched,
    slot: fetch::Slot,
}

/// What apalis's handler reaches.
struct Shared {
    ctx: Arc<Ctx>,
    worker: Arc<str>,
    runs: HashMap<JobKind, RunFn>,
    outcomes: outcomes::Writer,
    fetcher: Arc<fetch::Fetcher>,
    lease: Arc<LeaseClock>,
}

/// Runs jobs until `stop`; then stops fetching, lets running jobs finish, writes
/// every outcome and gives back what was fetched but never started. An error when
/// apalis stopped on its own (the caller treats it as fatal).
pub async fn run(ctx: Arc<Ctx>, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let worker = worker_name();
    let kinds = kinds(&ctx);
    liveness::register(&ctx.db, &worker).await?;
    let lease = Arc::new(LeaseClock::new(ctx.config.jobs.rescue_after));
    // Halts the parts when the process stops, or when apalis ends on its own.
    let (halt_tx, halt) = watch::channel(false);
    let forward = tokio::spawn({
        let (mut stop, halt_tx) = (stop.clone(), halt_tx.clone());
        async move {
            let _ = stop.wait_for(|s| *s).await;
            let _ = halt_tx.send(true);
        }
    });
    let (deliveries, inbox) = mpsc::unbounded_channel::<Task<Delivery>>();
    let fetcher = Arc::new(fetch::Fetcher::new(worker.clone(), &kinds, lease.clone()));
    let (outcomes, writer) = outcomes::start(ctx.db.clone(), worker.clone(), fetcher.clone());
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        worker: worker.as_str().into(),
        runs: kinds.iter().map(|k| (k.name, k.run)).collect(),
        outcomes,
        fetcher: fetcher.clone(),
        lease: lease.clone(),
    });
    tracing::info!(worker = %worker, kinds = kinds.len(), "runtime starting");
    // The heartbeat outlives the fetch loop: runs in flight at a stop hold their jobs
    // until their outcomes are written; a silent worker's jobs would run twice.
    let (beating, beat) = watch::channel(false);
    let liveness = tokio::spawn(liveness::run(ctx.clone(), worker.clone(), fetcher.clone(), lease, beat));
    let fetching = tokio::spawn(fetcher.clone().run(ctx.clone(), deliveries, halt.clone()));
    let ran = run_apalis(&worker, inbox, shared, halt.clone(), fetching).await;
    let _ = halt_tx.send(true);
    forward.abort();
    if let Err(err) = &ran {
        tracing::error!(worker = %worker, error = %err, "runtime ended with an error");
    }
    writer.close().await;
    fetcher.release_unstarted(&ctx.db).await;
    let _ = beating.send(true);
    let _ = liveness.await;
    liveness::deregister(&ctx.db, &worker).await;
    tracing::info!(worker = %worker, "runtime stopped");
    anyhow::ensure!(*stop.borrow(), "apalis stopped running jobs on its own");
    Ok(())
}

/// apalis runs the fetched jobs until `halt`; the fetch loop (`fetching`) stops
/// first, then apalis waits for the runs in flight.
async fn run_apalis(
    name: &str,
    inbox: mpsc::UnboundedReceiver<Task<Delivery>>,
    shared: Arc<Shared>,
    mut halt: watch::Receiver<bool>,
    fetching: tokio::task::JoinHandle<()>,
) -> Result<(), WorkerError> {
    WorkerBuilder::new(name)
        .backend(in_memory(inbox))
        .data(shared)
        .build(handle)
        .run_until(async move {
            let _ = halt.wait_for(|s| *s).await;
            let _ = fetching.await;
            Ok::<(), std::io::Error>(())
        })
        .await
}

fn in_memory(inbox: mpsc::UnboundedReceiver<Task<Delivery>>) -> apalis::prelude::MemoryStorage<Delivery> {
    let stream = futures::stream::unfold(inbox, |mut rx| async move { rx.recv().await.map(|task| (task, rx)) });
    let sink = futures::sink::drain().sink_map_err(|never| match never {});
    let sink: Box<dyn futures::Sink<Task<Delivery>, Error = MemoryStorageError> + Send + Sync + Unpin> = Box::new(sink);
    let sender = MemorySink::new(Arc::new(futures::lock::Mutex::new(sink)));
    MemoryStorage::new_with(sender, Box::pin(stream))
}

/// apalis's handler: runs the job and hands its outcome to the writer.
async fn handle(delivery: Delivery, shared: Data<Arc<Shared>>) -> Result<(), BoxDynError> {
    let Delivery { mut job, slot } = delivery;
    slot.started(&job.id);
    let meta = JobMeta {
        id: job.id.clone(),
        fence: job.attempt,
        rerun: job.runs > 1,
        worker: shared.worker.clone(),
        liveness: shared.lease.clone(),
        prefetched: job.held.take(),
    };
    let kind = shared.runs.get_key_value(job.kind.as_str()).map(|(k, run)| (*k, *run));
    let result = match (kind, job.cancel_requested) {
        (_, true) => Err(JobError::Cancelled),
        (Some((name, run)), false) => {
            let span = tracing::info_span!("job", job_id = %meta.id, kind = %name, attempt = job.attempt);
            let running = tracing::Instrument::instrument(run(shared.ctx.clone(), job.args, meta.clone()), span);
            // A panic must not leave the row `running` under this live worker.
            std::panic::AssertUnwindSafe(running)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(JobError::retry(format!("the {name} handler panicked"))))
        }
        (None, false) => Err(JobError::permanent(format!("unknown job kind {}", job.kind))),
    };
    match outcome(&meta, &job.kind, result) {
        Some(outcome) => shared.outcomes.send(Finished { id: job.id, attempt: job.attempt, outcome }, slot).await,
        // Recorded by the handler, or the job was no longer this run's.
        None => shared.fetcher.let_go(&job.id, job.attempt),
    }
    Ok(())
}

fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    format!("{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

//! The fetch loop: one per process, for every kind. Each kind has slots (its
//! concurrency); a fetch asks for at most the free slots of each kind, so no job
//! waits in this process while another process could run it, and claims never wait
//! behind slow work of other kinds.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use apalis::prelude::Task;
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::{
    Delivery, Kind,
    wake::{self, MAX_KINDS, Wake},
};
use crate::{
    domain::{JobId, JobKind},
    jobs::{Ctx, lease::LeaseClock},
    store::jobs::lifecycle,
};

/// Poll interval for delayed jobs (retries) and missed notifications after a fetch
/// that took jobs; after an empty one, `JOB_IDLE_POLL_MS`.
const POLL: Duration = Duration::from_millis(1000);
/// Pause after a failed fetch (database down).
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What a fetch found.
enum Fetch {
    /// Filled every slot it asked for, with more free: fetch again at once.
    Again,
    /// Took jobs (or had no free slot): a busy worker, polled every second.
    Took,
    /// Nothing was due: idle, polled every `JOB_IDLE_POLL_MS`.
    Empty,
}

/// A taken slot of one kind; freeing it may let the fetch loop take more jobs.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    fetcher: Arc<Fetcher>,
    kind: usize,
}

impl Slot {
    /// apalis started the job: it is no longer handed back at shutdown.
    pub fn started(&self, id: &JobId) {
        self.fetcher.unstarted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Free before the wake: the fetch it starts must see the slot free.
        drop(self.permit.take());
        // Every kind, not this one alone: a fetch for one kind is quicker, so the loop
        // is back waiting sooner and each freed slot fetches a smaller batch (the
        // default drain measured 25 % slower).
        if self.fetcher.kinds[self.kind].backlog.load(std::sync::atomic::Ordering::Relaxed) {
            self.fetcher.wake.any();
        }
    }
}

struct KindSlots {
    name: JobKind,
    size: usize,
    free: Arc<Semaphore>,
    /// The last fetch filled every free slot: more jobs may be waiting.
    backlog: std::sync::atomic::AtomicBool,
}

pub struct Fetcher {
    worker: String,
    kinds: Vec<KindSlots>,
    wake: Wake,
    /// Fetched but not yet started by apalis (given back at shutdown).
    unstarted: Mutex<HashSet<JobId>>,
    /// Every run this process holds, `(job id, attempt)`: fetched, and not yet let go
    /// (its outcome written, or nothing to write). A running row of this worker not
    /// in here is one a lost commit left behind.
    held: Mutex<HashSet<(JobId, i32)>>,
    /// While it has lapsed, nothing is fetched: others may take the jobs any moment.
    lease: Arc<LeaseClock>,
}

impl Fetcher {
    pub fn new(worker: String, kinds: &[Kind], lease: Arc<LeaseClock>) -> Self {
        assert!(kinds.len() <= MAX_KINDS, "a wake names kinds by bit");
        let kinds = kinds
            .iter()
            .map(|k| KindSlots {
                name: k.name,
                size: k.slots,
                free: Arc::new(Semaphore::new(k.slots)),
                backlog: false.into(),
            })
            .collect();
        Self {
            worker,
            kinds,
            wake: Wake::default(),
            unstarted: Mutex::new(HashSet::new()),
            held: Mutex::new(HashSet::new()),
            lease,
        }
    }

    /// The runs this process holds, `(job id, attempt)`.
    pub fn held(&self) -> Vec<(JobId, i32)> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }

    /// The run `attempt` of job `id` ended and its outcome (if any) is written.
    pub fn let_go(&self, id: &JobId, attempt: i32) {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&(id.clone(), attempt));
    }

    /// Wakes the loop: new jobs of any kind may be due (a notification naming none,
    /// or a retry of ours).
    pub fn wake(&self) {
        self.wake.any();
    }

    /// Wakes the loop for the kinds a notification named (`a,b`); names this worker
    /// does not run are not its business.
    pub(super) fn wake_named(&self, names: &str) {
        for name in names.split(',') {
            if let Some(index) = self.kinds.iter().position(|k| k.name == *name) {
                self.wake.kind(index);
            }
        }
    }

    /// Fetches until `stop`, then returns.
    pub async fn run(
        self: Arc<Self>,
        ctx: Arc<Ctx>,
        deliveries: mpsc::UnboundedSender<Task<Delivery>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let listener =
            tokio::spawn(wake::listen(ctx.db.clone(), self.clone(), ctx.claims_waiting.clone(), stop.clone()));
        // The fetch keeps its plan for any values (it reads by index whatever they
        // are): planned anew on each run, as a connection otherwise does once the
        // table has grown under it, it cost a tenth of a claim's time.
        let fetching = crate::db::keeping_plans(&ctx.db, ctx.config.database.acquire_timeout);
        let mut lapsed = false;
        loop {
            if *stop.borrow() {
                break;
            }
            if lapsed != self.lease.lapsed().is_some() {
                lapsed = !lapsed;
                match lapsed {
                    true => {
                        crate::metrics::lease_lapsed();
                        tracing::warn!(worker = %self.worker, "this worker's lease lapsed; fetching nothing")
                    }
                    false => tracing::info!(worker = %self.worker, "this worker's lease holds again; fetching"),
                }
            }
            // A lapsed lease is looked at again every second, as a busy worker polls.
            let fetched = if lapsed { Ok(Fetch::Took) } else { self.fetch_once(&fetching, &deliveries).await };
            let poll = match fetched {
                Ok(Fetch::Again) => continue,
                Ok(Fetch::Took) => POLL,
                Ok(Fetch::Empty) => ctx.config.jobs.idle_poll,
                Err(err) => {
                    tracing::warn!(error = %err, "fetch failed");
                    tokio::select! {
                        _ = tokio::time::sleep(ERROR_PAUSE) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    continue;
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        listener.abort();
        fetching.close().await;
    }

    /// One fetch for every kind with free slots.
    async fn fetch_once(
        self: &Arc<Self>,
        db: &PgPool,
        deliveries: &mpsc::UnboundedSender<Task<Delivery>>,
    ) -> sqlx::Result<Fetch> {
        let named = self.wake.take();
        let is_named = |i: usize| named.is_none_or(|bits| bits & (1 << i) != 0);
        let wanted: Vec<(JobKind, i32)> = self
            .kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (k.name, if is_named(i) { i32::try_from(k.free.available_permits()).unwrap_or(0) } else { 0 })
            })
            .collect();
        if wanted.iter().all(|(_, n)| *n == 0) {
            return Ok(Fetch::Took);
        }
        let jobs = lifecycle::fetch(db, &self.worker, &wanted).await?;
        crate::metrics::jobs_started(jobs.iter().map(|j| (j.kind.as_str(), j.queue_wait)));
        let mut again = false;
        let took = if jobs.is_empty() { Fetch::Empty } else { Fetch::Took };
        for (i, k) in self.kinds.iter().enumerate() {
            let asked = wanted[i].1 as usize;
            if asked == 0 {
                // Not asked this time. Named with no free slot: its jobs wait, and a
                // freed slot fetches again. Otherwise what we knew still holds.
                if named.is_some() && is_named(i) {
                    k.backlog.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                continue;
            }
            let taken = jobs.iter().filter(|j| j.kind == k.name).count();
            let full = taken == asked;
            k.backlog.store(full, std::sync::atomic::Ordering::Relaxed);
            // Refill at once only while at least half the slots are free again;
            // otherwise the freed slots wake the loop, in larger batches.
            again |= full && k.free.available_permits().saturating_sub(taken) >= k.size.div_ceil(2);
        }
        for job in jobs {
            let Some(index) = self.kinds.iter().position(|k| k.name == job.kind) else { continue };
            let Ok(permit) = self.kinds[index].free.clone().try_acquire_owned() else {
                tracing::error!(job_id = %job.id, "fetched a job without a free slot");
                continue;
            };
            self.unstarted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(job.id.clone());
            self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert((job.id.clone(), job.attempt));
            let slot = Slot { permit: Some(permit), fetcher: self.clone(), kind: index };
            let _ = deliveries.send(Task::new(Delivery { job, slot }));
        }
        Ok(if again { Fetch::Again } else { took })
    }

    /// Gives back jobs fetched but never started (at shutdown).
    pub async fn release_unstarted(&self, db: &PgPool) {
        let ids: Vec<JobId> =
            self.unstarted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().collect();
        if ids.is_empty() {
            return;
        }
        match lifecycle::release_unstarted(db, &self.worker, &ids).await {
            Ok(n) => tracing::info!(released = n, "gave back jobs fetched but not started"),
            Err(err) => tracing::warn!(error = %err, "could not give back unstarted jobs; rescue will"),
        }
    }
}

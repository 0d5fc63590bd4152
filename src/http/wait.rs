//! `Prefer: wait=N`: holds a response until its job finishes. One LISTEN connection
//! per web process receives `pool_job_finished` (sent by a trigger on the job table,
//! the job id first in its payload) and wakes only the requests waiting for that job
//! (a map by job id); waiting requests never poll the database, except one safety
//! re-read every few seconds in case a notification was lost while reconnecting. A
//! finished claim's notification carries its row: its request answers from it, not
//! reading the row again.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::{Notify, watch};

use crate::{domain::JobId, queue::JobDoc, store::jobs};

/// Channel the trigger notifies on.
const CHANNEL: &str = "pool_job_finished";
/// Longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Safety re-read interval while waiting.
const RECHECK: Duration = Duration::from_secs(5);
/// Finishes remembered for subscriptions made before their job's wait began.
const RECENT: usize = 4096;

/// The finished jobs of one web process, and who waits for which.
#[derive(Clone)]
pub struct JobWaiter {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Waiting requests woken by a notification of their job, ever.
    woken: AtomicU64,
    /// True while the LISTEN holds.
    listening: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// Finish notifications received so far.
    seq: u64,
    /// The latest finishes `(seq, job id)`, oldest first, at most [`RECENT`].
    recent: VecDeque<(u64, String)>,
    /// The waiting requests of each job id, each with its own wake-up.
    waiting: HashMap<String, Vec<(u64, Arc<Wake>)>>,
    next_token: u64,
}

impl JobWaiter {
    /// Starts the listener task; it reconnects on its own after database outages.
    pub fn start(db: PgPool) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            woken: AtomicU64::new(0),
            listening: watch::channel(false).0,
        });
        tokio::spawn(listen(db, shared.clone()));
        Self { shared }
    }

    /// Starts following finished jobs; subscribe before a job is enqueued and it can
    /// be waited for without reading it first ([`Subscription::wait_new`]).
    pub fn subscribe(&self) -> Subscription {
        Subscription { shared: self.shared.clone(), since: self.shared.lock().seq }
    }

    /// Waits up to `limit` for job `id` to finish; returns its latest document.
    pub async fn wait(&self, db: &PgPool, id: &JobId, limit: Duration) -> sqlx::Result<Option<JobDoc>> {
        self.subscribe().wait_more(db, id, limit, true).await
    }

    /// Waiting requests woken by a notification of their own job, so far.
    pub fn wakeups(&self) -> u64 {
        self.shared.woken.load(Ordering::Relaxed)
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.shared.lock().waiting.values().map(Vec::len).sum()
    }

    /// Resolves once the LISTEN holds (notifications from then on are received).
    pub async fn listening(&self) {
        let _ = self.shared.listening.subscribe().wait_for(|on| *on).await;
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A job finished, as its notification says: wakes the requests waiting for
    /// it, and only them, handing them its row when the notification carries it.
    fn finished(&self, payload: &str) {
        let id = payload.split(' ').next().unwrap_or_default();
        let mut state = self.lock();
        state.seq += 1;
        let seq = state.seq;
        state.recent.push_back((seq, id.to_owned()));
        if state.recent.len() > RECENT {
            state.recent.pop_front();
        }
        let Some(waiters) = state.waiting.get(id) else { return };
        let doc = carried_doc(payload);
        for (_, wake) in waiters {
            *wake.doc.lock().unwrap_or_else(PoisonError::into_inner) = doc.clone();
            wake.notify.notify_one();
        }
        self.woken.fetch_add(waiters.len() as u64, Ordering::Relaxed);
        metrics::counter!("pool_job_waiter_wakeups_total").increment(waiters.len() as u64);
    }
}

/// The finished job a `pool_job_finished` payload carries, if it carries one
/// (`<id> <kind> <state> <queue wait ms> <run ms> <row as JSON>`).
pub fn carried_doc(payload: &str) -> Option<JobDoc> {
    let row = payload.splitn(6, ' ').nth(5)?;
    serde_json::from_str::<jobs::JobRow>(row).ok().map(JobDoc::from)
}

/// Finished jobs since it was made.
pub struct Subscription {
    shared: Arc<Shared>,
    /// Finishes received before this one was made.
    since: u64,
}

/// One waiting request's wake-up, with the finished job when its notification
/// carried it.
#[derive(Default)]
struct Wake {
    notify: Notify,
    doc: Mutex<Option<JobDoc>>,
}

/// One waiting request in the map; removed when dropped.
struct Registered<'a> {
    shared: &'a Shared,
    id: &'a str,
    token: u64,
    wake: Arc<Wake>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(waiters) = state.waiting.get_mut(self.id) {
            waiters.retain(|(token, _)| *token != self.token);
            if waiters.is_empty() {
                state.waiting.remove(self.id);
            }
        }
    }
}

impl Subscription {
    /// Waits up to `limit` for job `id`, enqueued after this subscription, to finish:
    /// the job is read once, when its notification arrives (or at a safety re-read).
    pub async fn wait_new(mut self, db: &PgPool, id: &JobId, limit: Duration) -> sqlx::Result<Option<JobDoc>> {
        self.wait_more(db, id, limit, false).await
    }

    /// Like [`Subscription::wait_new`], and the subscription stays usable for another
    /// wait (`read_first`: read the job before the first wait).
    pub async fn wait_more(
        &mut self,
        db: &PgPool,
        id: &JobId,
        limit: Duration,
        read_first: bool,
    ) -> sqlx::Result<Option<JobDoc>> {
        let deadline = tokio::time::Instant::now() + limit.min(MAX_WAIT);
        let registered = self.register(id);
        let mut read = read_first || self.finished_since(id);
        loop {
            if read {
                // Boxed: a query's state is large, and only exists while it runs.
                let Some(row) = Box::pin(jobs::get(db, id)).await? else { return Ok(None) };
                let doc = JobDoc::from(row);
                if doc.status.is_finished() || tokio::time::Instant::now() >= deadline {
                    return Ok(Some(doc));
                }
            }
            read = true;
            let until = deadline.min(tokio::time::Instant::now() + RECHECK);
            // Ours, or a timeout: re-read (a safety net for a lost notification).
            let _ = tokio::time::timeout_at(until, registered.wake.notify.notified()).await;
            let carried = registered.wake.doc.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(doc) = carried.filter(|doc| doc.status.is_finished()) {
                return Ok(Some(doc));
            }
        }
    }

    fn register<'a>(&'a self, id: &'a str) -> Registered<'a> {
        let wake = Arc::new(Wake::default());
        let mut state = self.shared.lock();
        let token = state.next_token;
        state.next_token += 1;
        state.waiting.entry(id.to_owned()).or_default().push((token, wake.clone()));
        Registered { shared: &self.shared, id, token, wake }
    }

    /// Whether job `id` may have finished since this subscription was made, before
    /// its wait was registered (or too long ago to tell).
    fn finished_since(&self, id: &str) -> bool {
        let state = self.shared.lock();
        let forgotten = state.recent.front().is_some_and(|(seq, _)| *seq > self.since + 1);
        forgotten || state.recent.iter().rev().take_while(|(seq, _)| *seq > self.since).any(|(_, done)| done == id)
    }
}

async fn listen(db: PgPool, shared: Arc<Shared>) {
    loop {
        let mut listener = match PgListener::connect_with(&db).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "job listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(err) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %err, "job listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        shared.listening.send_replace(true);
        loop {
            match listener.recv().await {
                Ok(note) => {
                    metrics::counter!("pool_job_finish_notifications_total").increment(1);
                    shared.finished(note.payload());
                }
                Err(err) => {
                    tracing::warn!(error = %err, "job listener lost its connection; reconnecting");
                    shared.listening.send_replace(false);
                    break;
                }
            }
        }
    }
}

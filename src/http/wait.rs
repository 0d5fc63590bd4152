//! `Prefer: wait=N`: holds a response until its job finishes. One LISTEN connection
//! per web process receives `pool_job_finished` (sent by a trigger on the job table)
//! and fans it out; waiting requests never poll the database, except one safety
//! re-read every few seconds in case a notification was lost while reconnecting.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::broadcast;

use crate::{queue::JobDoc, store::jobs};

/// Channel the trigger notifies on.
const CHANNEL: &str = "pool_job_finished";
/// Longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Safety re-read interval while waiting.
const RECHECK: Duration = Duration::from_secs(5);

/// Fan-out of finished job ids inside one web process.
#[derive(Clone)]
pub struct JobWaiter {
    finished: broadcast::Sender<String>,
}

impl JobWaiter {
    /// Starts the listener task; it reconnects on its own after database outages.
    pub fn start(db: PgPool) -> Self {
        let (finished, _) = broadcast::channel(4096);
        let sender = finished.clone();
        tokio::spawn(async move { listen(db, sender).await });
        Self { finished }
    }

    /// Starts listening for finished jobs; subscribe before a job is enqueued and it
    /// can be waited for without reading it first ([`Subscription::wait_new`]).
    pub fn subscribe(&self) -> Subscription {
        Subscription(self.finished.subscribe())
    }

    /// Waits up to `limit` for job `id` to finish; returns its latest document.
    pub async fn wait(&self, db: &PgPool, id: &str, limit: Duration) -> sqlx::Result<Option<JobDoc>> {
        // Subscribed before reading, so a finish between the two is not missed.
        self.subscribe().wait_more(db, id, limit, true).await
    }
}

/// Finished-job notifications since it was made.
pub struct Subscription(broadcast::Receiver<String>);

impl Subscription {
    /// Waits up to `limit` for job `id`, enqueued after this subscription, to finish:
    /// the job is read once, when its notification arrives (or at a safety re-read).
    pub async fn wait_new(mut self, db: &PgPool, id: &str, limit: Duration) -> sqlx::Result<Option<JobDoc>> {
        self.wait_more(db, id, limit, false).await
    }

    /// Like [`Subscription::wait_new`], and the subscription stays usable for another
    /// wait (`read_first`: read the job before the first wait).
    pub async fn wait_more(
        &mut self,
        db: &PgPool,
        id: &str,
        limit: Duration,
        read_first: bool,
    ) -> sqlx::Result<Option<JobDoc>> {
        let rx = &mut self.0;
        let deadline = tokio::time::Instant::now() + limit.min(MAX_WAIT);
        let mut read = read_first;
        loop {
            if read {
                let Some(row) = jobs::get(db, id).await? else { return Ok(None) };
                let doc = JobDoc::from(row);
                if doc.status.is_finished() || tokio::time::Instant::now() >= deadline {
                    return Ok(Some(doc));
                }
            }
            read = true;
            let until = deadline.min(tokio::time::Instant::now() + RECHECK);
            loop {
                let received = tokio::time::timeout_at(until, rx.recv()).await;
                if received.is_ok() {
                    woken();
                }
                match received {
                    Ok(Ok(finished)) if finished != id => continue,
                    // Ours, lagged, or closed: re-read. Timeout: re-read as a safety net.
                    _ => break,
                }
            }
        }
    }
}

/// Counts a waiting request woken by a finish notification (`/metrics`
/// `pool_job_waiter_wakeups_total`; the `waiters` benchmark reads it).
fn woken() {
    metrics::counter!("pool_job_waiter_wakeups_total").increment(1);
}

async fn listen(db: PgPool, sender: broadcast::Sender<String>) {
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
        loop {
            match listener.recv().await {
                Ok(note) => {
                    let id = note.payload().split(' ').next().unwrap_or_default();
                    metrics::counter!("pool_job_finish_notifications_total").increment(1);
                    let _ = sender.send(id.to_owned());
                }
                Err(err) => {
                    tracing::warn!(error = %err, "job listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}

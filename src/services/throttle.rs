//! Pacing of services API calls. The provider's budget (~10,000 calls per hour) is per
//! account, so the limit must hold across every worker replica: `Shared` reserves
//! slots in Postgres. `PerKey` (in-process, governor) paces calls to each instance.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use sqlx::PgPool;
use tokio::{
    sync::{Mutex, watch},
    time::Instant,
};

use crate::store::rate_limit;

/// In-process limiter with one budget per key (e.g. per instance).
pub type KeyedRateLimiter = governor::DefaultKeyedRateLimiter<String>;

/// Name of the shared limit's row.
const SERVICES_LIMIT: &str = "services_api";

/// How calls are paced.
#[derive(Clone, Default)]
pub enum Throttle {
    #[default]
    Unlimited,
    /// Each key (an instance's URL) has its own budget: instances are independent
    /// servers, so one busy instance must not slow calls to the others.
    PerKey(Arc<KeyedRateLimiter>),
    Shared(Arc<SharedLimit>),
}

/// The services API's limit, held in Postgres for every replica together.
pub struct SharedLimit {
    db: PgPool,
    per_sec: u32,
    burst: u32,
    /// Replicas sharing the limit, as last seen; while the database is away this
    /// process paces alone at its share, `per_sec / replicas`.
    replicas: AtomicU32,
    /// The next free slot of the local pacing (used only during an outage).
    next_local: Mutex<Instant>,
    /// Turns true when the process stops: a caller waiting for a slot gives up.
    stopping: watch::Receiver<bool>,
    /// Longest pause an upstream may impose (`UPSTREAM_MAX_PAUSE_MS`).
    max_pause: Duration,
}

/// The process is stopping; the call was not made.
#[derive(Clone, Copy, Debug)]
pub struct Stopping;

impl Throttle {
    /// A limiter of `per_sec` calls per second to each key (burst `per_sec`).
    pub fn per_key(per_sec: u32) -> Self {
        let per_sec = std::num::NonZeroU32::new(per_sec.max(1)).expect("non-zero");
        Self::PerKey(Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(per_sec))))
    }

    /// The services API's limit shared across replicas; waits end when `stopping`
    /// turns true, and no upstream can pause the limit for longer than `max_pause`.
    pub fn shared(db: PgPool, per_sec: u32, burst: u32, stopping: watch::Receiver<bool>, max_pause: Duration) -> Self {
        let next_local = Mutex::new(Instant::now());
        let replicas = AtomicU32::new(1);
        Self::Shared(Arc::new(SharedLimit { db, per_sec, burst, replicas, next_local, stopping, max_pause }))
    }

    /// Holds every caller back for `pause` (the upstream answered 429 with
    /// `Retry-After`): all replicas for the shared limit.
    pub async fn pause(&self, pause: Duration) {
        if let Self::Shared(limit) = self {
            let pause = pause.min(limit.max_pause);
            let paused = rate_limit::pause(&limit.db, SERVICES_LIMIT, limit.per_sec, limit.burst, pause).await;
            if let Err(err) = paused {
                tracing::warn!(error = %err, "could not pause the shared rate limit; pausing locally");
                let mut next = limit.next_local.lock().await;
                *next = (*next).max(Instant::now() + pause);
            }
        }
    }

    /// Waits until a call to `key` may be made (keyless throttles ignore it).
    pub async fn wait_for(&self, key: &str) -> Result<(), Stopping> {
        match self {
            Self::PerKey(limiter) => {
                let started = std::time::Instant::now();
                limiter.until_key_ready(&key.to_owned()).await;
                let waited = started.elapsed();
                if waited > Duration::from_millis(1) {
                    crate::metrics::rate_limit_wait("instance", waited);
                }
                // Forget keys idle long enough to be back at a full budget.
                if rand::random::<u16>() == 0 {
                    limiter.retain_recent();
                }
                Ok(())
            }
            other => other.wait().await,
        }
    }

    /// Waits until a call may be made.
    pub async fn wait(&self) -> Result<(), Stopping> {
        match self {
            // A keyed throttle paces through `wait_for`.
            Self::Unlimited | Self::PerKey(_) => Ok(()),
            Self::Shared(limit) => limit.wait().await,
        }
    }
}

impl SharedLimit {
    async fn wait(&self) -> Result<(), Stopping> {
        let reserved = rate_limit::reserve(&self.db, SERVICES_LIMIT, self.per_sec, self.burst, self.max_pause).await;
        let wait = match reserved {
            Ok(slot) => {
                self.replicas.store(slot.replicas, Ordering::Relaxed);
                if !slot.wait.is_zero() {
                    crate::metrics::rate_limit_wait(SERVICES_LIMIT, slot.wait);
                }
                slot.wait
            }
            Err(err) => {
                tracing::warn!(error = %err, "shared rate limit unavailable; pacing at this replica's share");
                self.local_slot().await
            }
        };
        let mut stopping = self.stopping.clone();
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            _ = stopping.wait_for(|stop| *stop) => Err(Stopping),
        }
    }

    /// Reserves the next slot of this replica's share: callers queue one interval
    /// apart (`replicas / per_sec`), however many call at once.
    async fn local_slot(&self) -> Duration {
        let replicas = f64::from(self.replicas.load(Ordering::Relaxed).max(1));
        let interval = Duration::from_secs_f64(replicas / f64::from(self.per_sec.max(1)));
        let mut next = self.next_local.lock().await;
        let now = Instant::now();
        let slot = (*next).max(now);
        *next = slot + interval;
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten callers at once during an outage, two replicas sharing 5 calls/s: this
    /// replica's slots are 0.4 s apart (2.5/s), not ten at once.
    #[tokio::test(start_paused = true)]
    async fn outage_pacing_holds_the_replica_share() {
        let db = sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let limit = SharedLimit {
            db,
            per_sec: 5,
            burst: 5,
            replicas: AtomicU32::new(2),
            next_local: Mutex::new(Instant::now()),
            stopping: watch::channel(false).1,
            max_pause: Duration::from_secs(300),
        };
        let mut slots = Vec::new();
        for _ in 0..10 {
            slots.push(limit.local_slot().await);
        }
        let expected: Vec<Duration> = (0..10).map(|i| Duration::from_millis(400 * i)).collect();
        assert_eq!(slots, expected);
    }
}

//! What wakes the fetch loop, and for what: the LISTEN connection's notifications
//! name the kinds of jobs inserted (the next fetch asks for those alone, one index
//! descent each instead of one per kind); a poll, a notification naming no kind, or
//! this worker's own retries are for anything: every kind.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::{Notify, watch};

use super::fetch::Fetcher;

/// Channel the job table's insert trigger notifies on.
const CHANNEL: &str = "pool_jobs_queued";
/// Channel the same trigger notifies when a waiting claim is inserted (the binding loop's).
const CLAIMS_CHANNEL: &str = "pool_claims_waiting";
/// Longest wait a notification of jobs due later arms; polls cover later ones.
const MAX_WAKE_LATER: Duration = Duration::from_secs(60);
/// Pause before the listener connects again after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_secs(2);

/// Kinds are bits of a `u64`, by their index in the fetcher's list.
pub const MAX_KINDS: usize = 64;

#[derive(Default)]
pub struct Wake {
    notify: Notify,
    any: AtomicBool,
    kinds: AtomicU64,
}

impl Wake {
    /// Anything may be due.
    pub fn any(&self) {
        self.any.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Jobs of the kind at `index` are due.
    pub fn kind(&self, index: usize) {
        debug_assert!(index < MAX_KINDS);
        self.kinds.fetch_or(1 << index, Ordering::Release);
        self.notify.notify_one();
    }

    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// What the next fetch asks for, clearing it: `Some(bits)` the kinds named since
    /// the last fetch, `None` every kind.
    pub fn take(&self) -> Option<u64> {
        let any = self.any.swap(false, Ordering::AcqRel);
        let kinds = self.kinds.swap(0, Ordering::AcqRel);
        (!any && kinds != 0).then_some(kinds)
    }
}

/// Wakes `fetcher` after `delay` (capped: the polls cover anything later).
fn wake_later(fetcher: &Arc<Fetcher>, delay: Duration) {
    let fetcher = fetcher.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay.min(MAX_WAKE_LATER)).await;
        fetcher.wake();
    });
}

/// The worker's one LISTEN connection. Wakes the fetch loop on every notification of
/// queued jobs: for the kinds it names (`a,b`), for any (empty), or, when it says
/// they are due in some milliseconds, then; and the binding loop (`claims`) when a
/// waiting claim is inserted. Reconnects after outages, waking both then (a
/// notification may have been missed).
pub(super) async fn listen(db: PgPool, fetcher: Arc<Fetcher>, claims: Arc<Notify>, stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let mut listener = match PgListener::connect_with(&db).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "queue listener cannot connect; retrying");
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        if let Err(err) = listener.listen_all([CHANNEL, CLAIMS_CHANNEL]).await {
            tracing::warn!(error = %err, "queue listener cannot LISTEN; retrying");
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        }
        // Jobs queued and claims waiting while we were not listening.
        fetcher.wake();
        claims.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(note)) if note.channel() == CLAIMS_CHANNEL => claims.notify_one(),
                Ok(Some(note)) => match note.payload() {
                    "" => fetcher.wake(),
                    payload => match payload.parse::<u64>() {
                        Ok(ms) => wake_later(&fetcher, Duration::from_millis(ms)),
                        Err(_) => fetcher.wake_named(payload),
                    },
                },
                Ok(None) => {
                    tracing::warn!("queue listener lost its connection; reconnecting");
                    fetcher.wake();
                    claims.notify_one();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "queue listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_kinds_narrow_the_next_fetch_and_anything_widens_it() {
        let wake = Wake::default();
        assert_eq!(wake.take(), None, "a poll asks for every kind");
        wake.kind(0);
        wake.kind(3);
        assert_eq!(wake.take(), Some(0b1001));
        assert_eq!(wake.take(), None, "taken once");
        wake.kind(2);
        wake.any();
        assert_eq!(wake.take(), None, "anything wins over a kind");
    }
}

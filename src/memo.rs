//! A value recomputed at most once per period: an expensive read that every scrape
//! would otherwise repeat (job totals scan the job table) costs one query per period
//! per process, whatever the request rate. Per-process and short-lived on purpose:
//! no invalidation to get wrong.

use std::{
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

pub struct Memo<V> {
    ttl: Duration,
    value: Mutex<Option<(Instant, V)>>,
}

impl<V: Clone> Memo<V> {
    pub const fn new(ttl: Duration) -> Self {
        Self { ttl, value: Mutex::new(None) }
    }

    /// The value from the last `ttl`, or computed now by `compute`.
    pub async fn get_or_try<E, F, Fut>(&self, compute: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some((at, value)) = self.lock().as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = compute().await?;
        *self.lock() = Some((Instant::now(), value.clone()));
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, V)>> {
        self.value.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One computation at a time, shared: callers that arrive while a value is being
/// computed wait and all take the next value, which starts after they arrived, so
/// none sees a value older than its request. A flood of identical reads costs one
/// query at a time per process instead of one per request.
pub struct Coalesced<V> {
    last: tokio::sync::Mutex<Option<(Instant, V)>>,
}

impl<V: Clone> Default for Coalesced<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Clone> Coalesced<V> {
    pub const fn new() -> Self {
        Self { last: tokio::sync::Mutex::const_new(None) }
    }

    /// A value computed (by `compute`, here or by a concurrent caller) after this call began.
    pub async fn get_or_try<E, F, Fut>(&self, compute: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((started, value)) = last.as_ref()
            && *started >= arrived
        {
            return Ok(value.clone());
        }
        let started = Instant::now();
        let value = compute().await?;
        *last = Some((started, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_the_next_computation() {
        static CACHE: Coalesced<u32> = Coalesced::new();
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let compute = || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, ()>(RUNS.fetch_add(1, Ordering::SeqCst))
        };
        let callers: Vec<_> = (0..20).map(|_| CACHE.get_or_try(compute)).collect();
        let values = futures::future::join_all(callers).await;
        assert!(RUNS.load(Ordering::SeqCst) <= 2, "{} computations for 20 callers", RUNS.load(Ordering::SeqCst));
        assert!(values.iter().all(Result::is_ok));
        // A caller after them all gets a new value, never an older one.
        let later = CACHE.get_or_try(compute).await.unwrap();
        assert_eq!(later, RUNS.load(Ordering::SeqCst) - 1);
    }
}

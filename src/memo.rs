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

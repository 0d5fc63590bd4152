//! A value recomputed at most once per period: expensive reads that every request
//! or scrape would otherwise repeat (job totals scan the whole job table) cost one
//! query per period per process, whatever the request rate. Per-process and
//! short-lived on purpose: no invalidation to get wrong.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

pub struct Memo<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Memo<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The value for `key`, from the last `ttl`, or computed now by `compute`.
    pub async fn get_or_try<E, F, Fut>(&self, key: K, compute: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some((at, value)) = self.lock().get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = compute().await?;
        self.lock().insert(key, (Instant::now(), value.clone()));
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

//! What this process observed since its last flush: counter deltas and histogram
//! observations by (name, labels). Cheap to record (one lock, no IO); the flush
//! loop takes everything and writes it to Postgres in one statement.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

/// Upper bounds (seconds) of the histogram buckets, in Prometheus and in the charts'
/// per-minute rows; one more bucket above the last bound (`+Inf`).
pub const BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Deltas of one series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delta {
    /// Counter increment, or number of observations.
    pub count: f64,
    /// Sum of observations (histograms).
    pub sum: f64,
    /// Observations per bucket (histograms): `BUCKETS.len() + 1` entries.
    pub buckets: Option<Vec<i64>>,
}

impl Delta {
    fn merge(&mut self, other: Delta) {
        self.count += other.count;
        self.sum += other.sum;
        match (&mut self.buckets, other.buckets) {
            (Some(mine), Some(theirs)) => mine.iter_mut().zip(theirs).for_each(|(a, b)| *a += b),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }

    fn observe(&mut self, value: f64) {
        self.count += 1.0;
        self.sum += value;
        let buckets = self.buckets.get_or_insert_with(|| vec![0; BUCKETS.len() + 1]);
        buckets[BUCKETS.partition_point(|bound| *bound < value)] += 1;
    }
}

/// A series: metric name and Prometheus label syntax (`kind="x",status="y"`).
pub type Key = (&'static str, String);

fn pending() -> &'static Mutex<HashMap<Key, Delta>> {
    static PENDING: OnceLock<Mutex<HashMap<Key, Delta>>> = OnceLock::new();
    PENDING.get_or_init(Default::default)
}

fn with_pending(f: impl FnOnce(&mut HashMap<Key, Delta>)) {
    let mut map = pending().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut map);
}

/// Adds `delta` to a counter.
pub fn add(name: &'static str, labels: String, delta: f64) {
    with_pending(|map| map.entry((name, labels)).or_default().count += delta);
}

/// Records observations of histograms, many under one lock.
pub fn observe(observations: impl IntoIterator<Item = (&'static str, String, f64)>) {
    with_pending(|map| {
        for (name, labels, value) in observations {
            map.entry((name, labels)).or_default().observe(value);
        }
    });
}

/// Everything observed since the last call.
pub fn take() -> Vec<(Key, Delta)> {
    let mut batch = Vec::new();
    with_pending(|map| batch = map.drain().collect());
    batch
}

/// Puts back what could not be written, to be written with the next batch.
pub fn restore(batch: Vec<(Key, Delta)>) {
    with_pending(|map| {
        for (key, delta) in batch {
            map.entry(key).or_default().merge(delta);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_bucket_whose_bound_is_the_first_not_below_them() {
        let mut d = Delta::default();
        for v in [0.005, 0.006, 1000.0] {
            d.observe(v);
        }
        let b = d.buckets.unwrap();
        assert_eq!((b[0], b[1], b[BUCKETS.len()]), (1, 1, 1));
        assert_eq!(d.count, 3.0);
    }
}

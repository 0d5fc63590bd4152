//! This process's own view of its lease. Other workers take back its jobs once its
//! heartbeat is older than the rescue window (`JOB_RESCUE_AFTER_MS`); it must stop
//! acting well before that, without asking the database (which may be what it
//! cannot reach). So it counts from its own last successful heartbeat: past half
//! the window its lease has lapsed, it fetches nothing and its runs stop at their
//! next safe point ([`crate::jobs::checkpoint`]), until a heartbeat succeeds again.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// When this process last proved itself alive, and how long that holds.
#[derive(Debug)]
pub struct LeaseClock {
    origin: Instant,
    /// Milliseconds from `origin` to when the last successful heartbeat was sent.
    renewed_ms: AtomicU64,
    /// Half the rescue window: the other half is the margin for clocks, latency and
    /// a stop at the next safe point.
    valid_for: Duration,
}

impl LeaseClock {
    /// A lease just renewed (the worker has registered), for `rescue_after`.
    pub fn new(rescue_after: Duration) -> Self {
        Self { origin: Instant::now(), renewed_ms: AtomicU64::new(0), valid_for: rescue_after / 2 }
    }

    /// A heartbeat sent at `sent` succeeded.
    pub fn renewed(&self, sent: Instant) {
        let ms = u64::try_from(sent.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX);
        self.renewed_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long since the last successful heartbeat, when that is longer than the
    /// lease holds; `None` while it holds.
    pub fn lapsed(&self) -> Option<Duration> {
        let renewed = self.origin + Duration::from_millis(self.renewed_ms.load(Ordering::Relaxed));
        let silent = renewed.elapsed();
        (silent > self.valid_for).then_some(silent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_lapses_after_half_the_window_and_a_heartbeat_renews_it() {
        let clock = LeaseClock::new(Duration::from_millis(40));
        assert!(clock.lapsed().is_none());
        std::thread::sleep(Duration::from_millis(30));
        assert!(clock.lapsed().is_some_and(|d| d >= Duration::from_millis(20)));
        clock.renewed(Instant::now());
        assert!(clock.lapsed().is_none());
    }
}

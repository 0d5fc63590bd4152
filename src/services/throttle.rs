//! Pacing of services API calls. The provider's budget (~10,000 calls per hour) is per
//! account, so the limit must hold across every worker replica: `Shared` reserves
//! slots in Postgres. `PerKey` (in-process, governor) paces calls to each instance.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;

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
    Shared {
        db: PgPool,
        per_sec: u32,
        burst: u32,
    },
}

impl Throttle {
    /// A limiter of `per_sec` calls per second to each key (burst `per_sec`).
    pub fn per_key(per_sec: u32) -> Self {
        let per_sec = std::num::NonZeroU32::new(per_sec.max(1)).expect("non-zero");
        Self::PerKey(Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(per_sec))))
    }

    /// Waits until a call to `key` may be made (keyless throttles ignore it).
    pub async fn wait_for(&self, key: &str) {
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
            }
            other => other.wait().await,
        }
    }

    /// Waits until a call may be made.
    pub async fn wait(&self) {
        match self {
            // A keyed throttle paces through `wait_for`.
            Self::Unlimited | Self::PerKey(_) => {}
            Self::Shared { db, per_sec, burst } => {
                match rate_limit::reserve(db, SERVICES_LIMIT, *per_sec, *burst).await {
                    Ok(wait) => {
                        if !wait.is_zero() {
                            crate::metrics::rate_limit_wait(SERVICES_LIMIT, wait);
                        }
                        tokio::time::sleep(wait).await
                    }
                    Err(err) => {
                        // Without the database we cannot coordinate; one interval's pause
                        // keeps this replica at or under the limit on its own.
                        tracing::warn!(error = %err, "shared rate limit unavailable; pacing locally");
                        tokio::time::sleep(Duration::from_secs_f64(1.0 / f64::from((*per_sec).max(1)))).await;
                    }
                }
            }
        }
    }
}

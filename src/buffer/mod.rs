//! The warm target: how many instances `idle + provisioning` should hold.
//!
//! `static`: `POOL_MIN_IDLE`. `adaptive` (the default): the larger of `POOL_MIN_IDLE`
//! and the claims expected during one provision lead time (create → idle, p90 of the
//! last hour, from the rows of the instances Pool created; 60 s until there is any).
//! Those are the larger of the claims the claim rate brings in one lead time, planned
//! for at 95 % (the Poisson count's quantile: an exponentially weighted rate of claims
//! per minute that rises at once with demand and decays with a 15-minute time
//! constant) and the most claims seen arriving within one lead time in the last hour,
//! weighted down with the same time constant (bursts; claims answered 503 count too).
//!
//! The forecast (`POOL_DEMAND_PERIOD`): the most claims that arrived within one lead
//! time at the same phase of the last three periods (and a week back, when the claims
//! are kept that long: `JOB_RETENTION_HOURS`), looking one lead time and one
//! replenish period ahead, plus the steady claims' margin (their 95 % count less their
//! mean: the claims around a burst vary from period to period). Once history covers a
//! period it takes the burst measure's place (it knows when bursts come, so the buffer
//! can be low between them).
//!
//! Replenish adds one instance per waiting claim to the target, and `POOL_MAX_WARM`
//! caps `idle + provisioning` either way: waiting claims are served first within it,
//! and only more waiting claims than the ceiling take the pool above it (one instance
//! each, no buffer), so the ceiling never starves a claim.

mod policy;

use std::{fmt, str::FromStr, time::Duration};

pub use policy::{GIVE_BACK_PER_RUN, Target, replenish_gap, target, to_create, to_give_back};
use sqlx::PgExecutor;

use crate::{
    memo::Memo,
    metrics::stats,
    store::{Counts, demand, instances, jobs::claim, metrics},
};

/// How the warm target is chosen (`POOL_BUFFER`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Static,
    #[default]
    Adaptive,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "static" => Ok(Self::Static),
            "adaptive" => Ok(Self::Adaptive),
            _ => Err("expected `static` or `adaptive`".into()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Static => "static",
            Self::Adaptive => "adaptive",
        })
    }
}

/// `POOL_MIN_IDLE`, `POOL_BUFFER`, `POOL_MAX_WARM`, `POOL_DEMAND_PERIOD`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    pub min_idle: u32,
    pub mode: Mode,
    pub max_warm: Option<u32>,
    /// The period demand recurs with (`None`: no forecast).
    pub demand_period: Option<Duration>,
    /// The longest gap between replenish ticks (`REPLENISH_SCHEDULE`).
    pub replenish_gap: Duration,
    /// How long finished claims are kept (`JOB_RETENTION_HOURS`): the forecast's
    /// history reaches back no further.
    pub claims_kept: Duration,
}

/// Minutes of history the rate and the lead time are read from: the burst measure's.
const HISTORY_MINUTES: usize = (demand::HISTORY.as_secs() / 60) as usize;

/// How recent [`current`]'s burst measure must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Burst {
    /// Read now: what the counts show, right after the claims that moved it.
    Now,
    /// Read at most once per [`BURST_REUSE`] per process: the measure reads every
    /// claim arrival of the hour (30 ms at 36,000), and a top-up follows every claim:
    /// read on every top-up, its cost would grow with the square of the claim rate.
    Recent,
}

/// How long a replenish acts on a burst measure already read: a burst raises the
/// target this much later at most, against provision lead times of tens of seconds.
pub const BURST_REUSE: Duration = Duration::from_secs(5);

/// The current target: from the per-minute claim counts every process writes, the
/// lead times of Pool's instances and the last hour's claim arrivals.
pub async fn current(db: impl PgExecutor<'_> + Copy, settings: Settings, burst: Burst) -> sqlx::Result<Target> {
    if settings.mode == Mode::Static {
        return Ok(target(settings, &[], None, 0.0, None));
    }
    let window = metrics::window(db, &["pool_claims_total"], HISTORY_MINUTES).await?;
    let mut claims = vec![0.0; window.len];
    for row in &window.rows {
        // Requests the pool answered (`rejected` ones asked for nothing).
        if let Some(i) = window.slot(row.minute)
            && stats::label(&row.labels, "outcome") != Some("rejected")
        {
            claims[i] += row.count;
        }
    }
    // A p90 over the last hour moves slowly; replenish (after every claim) and the
    // counts need no fresher one, and the read sorts the hour's instances.
    static LEAD_P90: Memo<Option<f64>> = Memo::new(Duration::from_secs(5));
    let lead_p90 = LEAD_P90.get_or_try(|| instances::lead::p90(db, demand::HISTORY)).await?;
    let lead = policy::lead_time(lead_p90);
    let window = Duration::from_secs_f64(lead);
    let decay = Duration::from_secs_f64(policy::DECAY_MINUTES * 60.0);
    static RECENT_PEAK: Memo<f64> = Memo::new(BURST_REUSE);
    let burst = match burst {
        Burst::Now => demand::peak(db, window, decay).await?,
        Burst::Recent => RECENT_PEAK.get_or_try(|| demand::peak(db, window, decay)).await?,
    };
    let forecast = match settings.demand_period {
        Some(period) => {
            let horizon = policy::horizon(lead, settings.replenish_gap);
            let lookbacks = demand::lookbacks(period);
            let seen = demand::seasonal(db, &lookbacks, settings.claims_kept, window, horizon).await?;
            policy::forecast(&seen)
        }
        None => None,
    };
    Ok(target(settings, &claims, lead_p90, burst, forecast))
}

/// The pool as `/api/pool/counts` and `/metrics` show it.
#[derive(Clone)]
pub struct View {
    pub counts: Counts,
    /// Claims waiting for an instance.
    pub waiting: i64,
    pub target: Target,
    /// Live instances (not draining) per image.
    pub images: Vec<(String, i64)>,
    /// Provider services no row owns (they cost money until deleted by hand).
    pub orphans: i64,
    /// Cost and service over the last hour and day.
    pub glance: metrics::AtAGlance,
}

/// Reads the [`View`].
pub async fn view(db: &sqlx::PgPool, settings: Settings) -> sqlx::Result<View> {
    Ok(View {
        counts: instances::counts(db).await?,
        waiting: claim::waiting_count(db).await?,
        target: current(db, settings, Burst::Now).await?,
        images: instances::recycle::by_image(db).await?,
        orphans: crate::store::orphans::count(db).await?,
        glance: metrics::at_a_glance(db).await?,
    })
}

//! The dashboard's charts: per-minute series over the last hour or day, built from
//! the per-minute rows every process writes (so every web replica draws the same).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::BUCKETS;
use crate::store::metrics::{self, Window};

/// How far back the charts look.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Range {
    #[default]
    Hour,
    Day,
}

impl Range {
    fn minutes(self) -> usize {
        match self {
            Self::Hour => 60,
            Self::Day => 24 * 60,
        }
    }
}

/// One line per (kind, status) of finished jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobSeries {
    pub kind: String,
    pub status: String,
    pub counts: Vec<f64>,
}

/// Columns for the charts: every array has one entry per minute of `t`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub range: Range,
    pub step_seconds: u32,
    /// This web process's `POOL_MIN_IDLE`.
    pub min_idle: u32,
    /// Start of each minute, seconds since the epoch, oldest first.
    pub t: Vec<i64>,
    /// `idle + provisioning`, last sample of the minute (null: no worker sampled).
    pub warm: Vec<Option<f64>>,
    /// `POOL_MIN_IDLE` as the workers saw it.
    pub min_idle_series: Vec<Option<f64>>,
    /// The warm target replenish planned with (last of the minute).
    pub target: Vec<Option<f64>>,
    /// The forecast replenish planned with (last of the minute; null: none).
    pub forecast: Vec<Option<f64>>,
    /// Claim requests answered.
    pub claims: Vec<f64>,
    /// Of those, 503 `no_idle_instance`.
    pub claims_empty: Vec<f64>,
    /// From the request to the bound instance, of claims that succeeded.
    pub claim_p50_ms: Vec<Option<f64>>,
    pub claim_p95_ms: Vec<Option<f64>>,
    /// From due to started, every job.
    pub queue_wait_p50_ms: Vec<Option<f64>>,
    pub queue_wait_p95_ms: Vec<Option<f64>>,
    pub jobs_finished: Vec<JobSeries>,
}

const NAMES: [&str; 8] = [
    "pool_warm",
    "pool_min_idle",
    "pool_warm_target",
    "pool_warm_forecast",
    "pool_claims_total",
    "pool_claim_seconds",
    "pool_job_queue_wait_seconds",
    "pool_jobs_finished_total",
];

/// The charts' data over `range`.
pub async fn load(db: &PgPool, range: Range, min_idle: u32) -> sqlx::Result<Stats> {
    Ok(build(range, min_idle, &metrics::window(db, &NAMES, range.minutes()).await?))
}

fn build(range: Range, min_idle: u32, window: &Window) -> Stats {
    let len = window.len;
    let mut stats = Stats {
        range,
        step_seconds: 60,
        min_idle,
        t: window.starts(),
        warm: vec![None; len],
        min_idle_series: vec![None; len],
        target: vec![None; len],
        forecast: vec![None; len],
        claims: vec![0.0; len],
        claims_empty: vec![0.0; len],
        claim_p50_ms: vec![None; len],
        claim_p95_ms: vec![None; len],
        queue_wait_p50_ms: vec![None; len],
        queue_wait_p95_ms: vec![None; len],
        jobs_finished: Vec::new(),
    };
    let mut claim_buckets = vec![Vec::<i64>::new(); len];
    let mut wait_buckets = vec![Vec::<i64>::new(); len];
    let mut finished: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for row in &window.rows {
        let Some(i) = window.slot(row.minute) else { continue };
        match row.name.as_str() {
            "pool_warm" => stats.warm[i] = Some(row.count),
            "pool_min_idle" => stats.min_idle_series[i] = Some(row.count),
            "pool_warm_target" => stats.target[i] = Some(row.count),
            "pool_warm_forecast" => stats.forecast[i] = Some(row.count),
            "pool_claims_total" => {
                stats.claims[i] += row.count;
                if label(&row.labels, "outcome") == Some("empty") {
                    stats.claims_empty[i] += row.count;
                }
            }
            "pool_claim_seconds" => add_buckets(&mut claim_buckets[i], row.buckets.as_deref()),
            "pool_job_queue_wait_seconds" => add_buckets(&mut wait_buckets[i], row.buckets.as_deref()),
            _ => {
                let key = (
                    label(&row.labels, "kind").unwrap_or("").to_owned(),
                    label(&row.labels, "status").unwrap_or("").to_owned(),
                );
                finished.entry(key).or_insert_with(|| vec![0.0; len])[i] += row.count;
            }
        }
    }
    for i in 0..len {
        (stats.claim_p50_ms[i], stats.claim_p95_ms[i]) =
            (quantile_ms(&claim_buckets[i], 0.5), quantile_ms(&claim_buckets[i], 0.95));
        (stats.queue_wait_p50_ms[i], stats.queue_wait_p95_ms[i]) =
            (quantile_ms(&wait_buckets[i], 0.5), quantile_ms(&wait_buckets[i], 0.95));
    }
    stats.jobs_finished =
        finished.into_iter().map(|((kind, status), counts)| JobSeries { kind, status, counts }).collect();
    stats
}

pub fn add_buckets(into: &mut Vec<i64>, from: Option<&[i64]>) {
    let Some(from) = from else { return };
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

/// The value of `name` in Prometheus label syntax (`a="x",b="y"`).
pub fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| pair.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'))
}

/// The `q` quantile in milliseconds, interpolated within its bucket (as Prometheus'
/// `histogram_quantile`); `None` without observations. Above the last bound: that bound.
pub fn quantile_ms(buckets: &[i64], q: f64) -> Option<f64> {
    let total: i64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0.0;
    for (i, n) in buckets.iter().enumerate() {
        let upto = below + *n as f64;
        if upto >= rank && *n > 0 {
            let Some(upper) = BUCKETS.get(i) else { return Some(BUCKETS[BUCKETS.len() - 1] * 1000.0) };
            let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
            return Some((lower + (upper - lower) * (rank - below) / *n as f64) * 1000.0);
        }
        below = upto;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::metrics::MinuteRow;

    fn row(minute: i64, name: &str, labels: &str, count: f64, buckets: Option<Vec<i64>>) -> MinuteRow {
        MinuteRow { minute, name: name.into(), labels: labels.into(), count, buckets }
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let mut b = vec![0; BUCKETS.len() + 1];
        b[1] = 10; // ten observations in (5 ms, 10 ms]
        assert_eq!(quantile_ms(&b, 0.5), Some(7.5));
        assert_eq!(quantile_ms(&vec![0; BUCKETS.len() + 1], 0.5), None);
        b[BUCKETS.len()] = 100;
        assert_eq!(quantile_ms(&b, 0.95), Some(300_000.0));
    }

    #[test]
    fn rows_land_in_their_minute_and_outside_ones_are_dropped() {
        let now = 6_000_000;
        let rows = [
            row(now, "pool_warm", "", 3.0, None),
            row(now - 60, "pool_claims_total", "outcome=\"empty\"", 2.0, None),
            row(now - 60, "pool_claims_total", "outcome=\"served\"", 5.0, None),
            row(now, "pool_jobs_finished_total", "kind=\"replenish\",status=\"failed\"", 1.0, None),
            row(now - 3600, "pool_warm", "", 9.0, None),
            row(now - 60, "pool_warm_forecast", "", 7.5, None),
        ];
        let s = build(Range::Hour, 2, &Window::new(now, 60, rows.to_vec()));
        assert_eq!((s.t.len(), s.t[59]), (60, now));
        assert_eq!(s.warm[59], Some(3.0));
        assert!(s.warm[..59].iter().all(Option::is_none));
        assert_eq!((s.forecast[58], s.forecast[59]), (Some(7.5), None));
        assert_eq!((s.claims[58], s.claims_empty[58]), (7.0, 2.0));
        assert_eq!(s.jobs_finished.len(), 1);
        assert_eq!((s.jobs_finished[0].kind.as_str(), s.jobs_finished[0].counts[59]), ("replenish", 1.0));
    }
}

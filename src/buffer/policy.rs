//! The warm target's arithmetic, without IO.

use std::time::Duration;

use super::{Mode, Settings};

/// Lead time assumed before Pool has seen an instance become idle.
const DEFAULT_LEAD_SECS: f64 = 60.0;
/// Time constant (minutes) of the claim rate's decay, and of a burst's memory.
pub const DECAY_MINUTES: f64 = 15.0;

/// The target and what it was made of (shown by `/api/pool/counts`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `idle + provisioning` replenish keeps, before waiting claims.
    pub target: u32,
    pub mode: Mode,
    pub min_idle: u32,
    pub max_warm: Option<u32>,
    /// Smoothed claims per minute.
    pub claims_per_minute: f64,
    /// Create → idle, p90 of the last hour (seconds).
    pub lead_time_seconds: f64,
    /// The most claims that arrived within one lead time lately (a burst), weighted
    /// down by its age.
    pub burst_claims: f64,
    /// Claims planned for during one lead time: the steady rate's at 95 % (see
    /// [`steady_claims`]), the burst's, or the forecast's with the steady margin, whichever
    /// is larger.
    pub expected_claims: f64,
    /// The forecast: the most claims that arrived within one lead time in the same
    /// phase of the earlier periods history covers (absent before one is covered, or
    /// with `POOL_DEMAND_PERIOD=off`).
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_claims: Option<f64>,
    /// `POOL_DEMAND_PERIOD` in seconds (absent when off).
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demand_period_seconds: Option<f64>,
    /// Which bound decided: `min_idle`, `demand`, `forecast` or `max_warm`.
    pub reason: &'static str,
}

/// The smoothed claim rate over per-minute counts, oldest first (the last one is
/// the current, partial minute): a minute with more claims than the rate lifts it
/// at once; quieter minutes let it decay toward them.
pub fn claim_rate(per_minute: &[f64]) -> f64 {
    let keep = (-1.0 / DECAY_MINUTES).exp();
    let Some((current, full)) = per_minute.split_last() else { return 0.0 };
    let rate = full.iter().fold(0.0_f64, |rate, &c| if c > rate { c } else { rate * keep + c * (1.0 - keep) });
    rate.max(*current)
}

/// The share of steady claims the target plans to bind at once.
const STEADY_SERVICE: f64 = 0.95;

/// Claims to plan for during one lead time when `mean` arrive in one on average: the
/// smallest `n` with P(N ≤ n) ≥ 95 % for independent arrivals (Poisson). Claims do
/// not come evenly: a buffer of the mean alone runs short in about every other lead
/// time.
pub fn steady_claims(mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    if mean > 100.0 {
        // The normal approximation (e^-mean underflows long before this matters).
        return (mean + 1.645 * mean.sqrt()).ceil();
    }
    let (mut n, mut p) = (0.0, (-mean).exp());
    let mut below = p;
    while below < STEADY_SERVICE {
        n += 1.0;
        p *= mean / n;
        below += p;
    }
    n
}

/// The lead time to plan with: the measured p90, or a default before any.
pub fn lead_time(lead_p90_secs: Option<f64>) -> f64 {
    lead_p90_secs.unwrap_or(DEFAULT_LEAD_SECS)
}

/// The warm target for `settings`, given per-minute claim counts, the lead time, the
/// recent burst and the forecast: the claims expected during one lead time are the
/// larger of the steady rate's share (at [`steady_claims`]) and the burst (demand often
/// comes in bursts, which a rate averaged over minutes would spread thin). Once history
/// covers an earlier period, the forecast takes the burst's place: it knows when bursts
/// come, so the buffer can be low between them. A forecast peak is what one earlier
/// period brought; the steady claims around it vary from period to period, so it gets
/// their margin (their 95 % count less their mean) on top.
pub fn target(
    settings: Settings,
    per_minute: &[f64],
    lead_p90_secs: Option<f64>,
    burst: f64,
    forecast: Option<f64>,
) -> Target {
    let rate = claim_rate(per_minute);
    let lead = lead_time(lead_p90_secs);
    let mean = rate * lead / 60.0;
    let steady = steady_claims(mean);
    let ahead = forecast.map(|peak| peak + (steady - mean).max(0.0));
    let expected = steady.max(ahead.unwrap_or(burst));
    let demand = if settings.mode == Mode::Adaptive { expected.ceil() as u32 } else { 0 };
    let why = if ahead.is_some_and(|f| f > steady) { "forecast" } else { "demand" };
    let (mut target, mut reason) =
        if demand > settings.min_idle { (demand, why) } else { (settings.min_idle, "min_idle") };
    if let Some(max) = settings.max_warm.filter(|max| target > *max) {
        (target, reason) = (max, "max_warm");
    }
    Target {
        target,
        mode: settings.mode,
        min_idle: settings.min_idle,
        max_warm: settings.max_warm,
        claims_per_minute: rate,
        lead_time_seconds: lead,
        burst_claims: burst,
        expected_claims: expected,
        forecast_claims: forecast,
        demand_period_seconds: settings.demand_period.map(|p| p.as_secs_f64()),
        reason,
    }
}

/// The longest replenish period the forecast plans for: claims enqueue a replenish too.
const MAX_REPLENISH_GAP: Duration = Duration::from_secs(300);

/// The forecast from the earlier periods, nearest first: `(the most claims within one
/// lead time in the same phase, whether history covers that period)`. The most of the
/// covered ones, so a burst of any of them is ready for; `None` before any is covered.
pub fn forecast(periods: &[(f64, bool)]) -> Option<f64> {
    periods.iter().filter(|(_, covered)| *covered).map(|(peak, _)| *peak).reduce(f64::max)
}

/// How far ahead the forecast looks: one lead time, plus one replenish period (the
/// target must have risen at the replenish before the claims' lead time starts).
pub fn horizon(lead_secs: f64, replenish_gap: Duration) -> Duration {
    Duration::from_secs_f64(lead_secs) + replenish_gap.min(MAX_REPLENISH_GAP)
}

/// The longest gap between the next few ticks of the replenish schedule (`cron`, with
/// seconds); zero when it has none ahead.
pub fn replenish_gap(schedule: &cron::Schedule) -> Duration {
    let ticks: Vec<_> = schedule.upcoming(chrono::Utc).take(8).collect();
    let gaps = ticks.windows(2).filter_map(|w| (w[1] - w[0]).to_std().ok());
    gaps.max().unwrap_or_default()
}

/// Instances to create: enough that the fresh warm instances (`have` less the
/// `replacing` stale ones) reach the target plus one for each `waiting` claim, within
/// the ceiling on `idle + provisioning`. Waiting claims come first: the ceiling gives
/// way only to more waiting claims than it (one instance each, no buffer), so it never
/// starves a claim.
pub fn to_create(target: &Target, have: i64, replacing: i64, waiting: i64) -> i64 {
    let wanted = i64::from(target.target) + waiting - (have - replacing);
    let room = target.max_warm.map_or(i64::MAX, |max| i64::from(max).max(waiting) - have);
    wanted.min(room).max(0)
}

/// Idle instances given back at most per replenish: a storm's surplus goes in a run or
/// two once its cooldown passed (the destroys then go at the services API's rate
/// limit, like any kill), while one replenish never empties a large fleet at once.
pub const GIVE_BACK_PER_RUN: i64 = 50;

/// Idle instances to give back now: the fresh idle ones above the target plus one for
/// each `waiting` claim, at most [`GIVE_BACK_PER_RUN`]. The ceiling is at or above the
/// target, so once no claim waits this also brings the pool under `POOL_MAX_WARM`.
pub fn to_give_back(target: &Target, fresh_idle: i64, waiting: i64) -> i64 {
    (fresh_idle - i64::from(target.target) - waiting).clamp(0, GIVE_BACK_PER_RUN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADAPTIVE: Settings = Settings {
        min_idle: 2,
        mode: Mode::Adaptive,
        max_warm: Some(20),
        demand_period: None,
        replenish_gap: Duration::ZERO,
        claims_kept: Duration::ZERO,
    };

    #[test]
    fn waiting_claims_fill_the_ceiling_first_and_only_more_of_them_pass_it() {
        let t = target(Settings { max_warm: Some(5), ..ADAPTIVE }, &[], None, 0.0, None);
        assert_eq!(to_create(&t, 0, 0, 0), 2);
        assert_eq!(to_create(&t, 0, 0, 3), 5, "the minimum plus three waiting");
        assert_eq!(to_create(&t, 2, 0, 4), 3, "the ceiling: four for the waiting, one buffer");
        assert_eq!(to_create(&t, 0, 0, 9), 9, "more waiting than the ceiling: one each, no buffer");
        let high = target(Settings { max_warm: Some(5), ..ADAPTIVE }, &[600.0, 0.0], Some(30.0), 0.0, None);
        assert_eq!(to_create(&high, 0, 0, 4), 5, "buffer and waiting claims share the ceiling");
        assert_eq!(to_create(&t, 7, 0, 1), 0);
    }

    #[test]
    fn only_idle_instances_above_the_target_and_the_waiting_claims_are_given_back() {
        let t = target(Settings { max_warm: Some(5), ..ADAPTIVE }, &[], None, 0.0, None);
        assert_eq!(to_give_back(&t, 2, 0), 0, "at the target");
        assert_eq!(to_give_back(&t, 4, 0), 2);
        assert_eq!(to_give_back(&t, 4, 2), 0, "the waiting claims' instances stay");
        assert_eq!(to_give_back(&t, 5, 2), 1);
        assert_eq!(to_give_back(&t, 49, 0), 47, "a storm's surplus in one run");
        assert_eq!(to_give_back(&t, 200, 0), GIVE_BACK_PER_RUN, "at most this many per run");
        assert_eq!(to_give_back(&t, 0, 3), 0);
    }

    #[test]
    fn stale_instances_are_replaced_within_the_ceiling() {
        let t = target(Settings { max_warm: Some(5), ..ADAPTIVE }, &[], None, 0.0, None);
        assert_eq!(to_create(&t, 2, 2, 0), 2, "both stale ones get a replacement");
        assert_eq!(to_create(&t, 4, 4, 0), 1, "only one fits under the ceiling");
        assert_eq!(to_create(&t, 5, 2, 0), 0, "a full pool waits for room");
    }

    #[test]
    fn the_rate_rises_at_once_and_decays_over_tens_of_minutes() {
        assert_eq!(claim_rate(&[0.0, 0.0, 12.0]), 12.0, "a burst in the current minute counts at once");
        let mut quiet = vec![12.0];
        quiet.extend(std::iter::repeat_n(0.0, 10));
        let after_ten = claim_rate(&quiet);
        assert!(after_ten > 12.0 * 0.45 && after_ten < 12.0 * 0.55, "{after_ten}");
        quiet.extend(std::iter::repeat_n(0.0, 50));
        assert!(claim_rate(&quiet) < 0.3, "gone after an hour");
    }

    #[test]
    fn the_target_is_the_larger_of_the_minimum_and_demand_within_the_ceiling() {
        let t = target(ADAPTIVE, &[6.0, 0.0], Some(30.0), 0.0, None);
        assert_eq!((t.target, t.reason), (6, "demand"), "6/min over 30 s: 3 on average, 6 at 95 %");
        assert_eq!(target(ADAPTIVE, &[1.0, 0.0], Some(30.0), 0.0, None).reason, "min_idle");
        let t = target(ADAPTIVE, &[600.0, 0.0], Some(30.0), 0.0, None);
        assert_eq!((t.target, t.reason), (20, "max_warm"));
        let fixed = Settings { mode: Mode::Static, ..ADAPTIVE };
        assert_eq!(target(fixed, &[600.0, 0.0], Some(30.0), 9.0, None).target, 2, "static ignores demand");
        assert_eq!(target(ADAPTIVE, &[6.0, 0.0], None, 0.0, None).lead_time_seconds, 60.0);
        let burst = target(ADAPTIVE, &[9.0, 0.0], Some(20.0), 8.6, None);
        assert_eq!((burst.target, burst.reason), (9, "demand"), "a burst of 9 within the lead time");
    }

    #[test]
    fn steady_claims_are_planned_for_at_95_percent_not_at_their_mean() {
        // (mean per lead time, claims planned for)
        let table = [(0.0, 0.0), (0.01, 0.0), (0.5, 2.0), (1.5, 4.0), (3.0, 6.0), (6.0, 10.0), (400.0, 433.0)];
        for (mean, planned) in table {
            assert_eq!(steady_claims(mean), planned, "mean {mean}");
        }
    }

    #[test]
    fn the_forecast_is_the_most_claims_of_the_earlier_periods_history_covers() {
        type Periods<'a> = &'a [(f64, bool)];
        let table: [(Periods, Option<f64>); 5] = [
            (&[], None),
            (&[(0.0, false), (0.0, false)], None),
            (&[(4.0, true), (9.0, false)], Some(4.0)),
            (&[(4.0, true), (9.0, true), (2.0, true)], Some(9.0)),
            (&[(0.0, true)], Some(0.0)),
        ];
        for (periods, expected) in table {
            assert_eq!(forecast(periods), expected, "{periods:?}");
        }
    }

    #[test]
    fn the_forecast_sets_the_target_and_replaces_the_burst_memory_once_history_covers_a_period() {
        // (per-minute claims, burst, forecast) → (target, reason)
        type Row<'a> = (&'a [f64], f64, Option<f64>, u32, &'a str);
        let table: [Row; 7] = [
            (&[0.0], 0.0, Some(7.2), 8, "forecast"),
            (&[0.0], 9.0, Some(0.0), 2, "min_idle"),
            (&[0.0], 9.0, None, 9, "demand"),
            (&[12.0, 0.0], 0.0, Some(3.0), 10, "demand"),
            // 6 on average per lead time, 10 at 95 %: the forecast gets 4 on top.
            (&[12.0, 0.0], 0.0, Some(12.5), 17, "forecast"),
            (&[0.0], 0.0, Some(1.5), 2, "min_idle"),
            (&[0.0], 0.0, Some(40.0), 20, "max_warm"),
        ];
        for (per_minute, burst, f, want, reason) in table {
            let t = target(ADAPTIVE, per_minute, Some(30.0), burst, f);
            assert_eq!((t.target, t.reason), (want, reason), "{per_minute:?} burst {burst} forecast {f:?}");
            assert_eq!(t.forecast_claims, f);
        }
        let fixed = Settings { mode: Mode::Static, ..ADAPTIVE };
        assert_eq!(target(fixed, &[0.0], Some(30.0), 0.0, Some(9.0)).target, 2, "static ignores the forecast");
    }

    #[test]
    fn the_forecast_looks_one_lead_time_and_one_replenish_period_ahead() {
        assert_eq!(horizon(20.0, Duration::from_secs(30)), Duration::from_secs(50));
        assert_eq!(
            horizon(20.0, Duration::from_secs(600)),
            Duration::from_secs(320),
            "a rare schedule: claims re-run replenish"
        );
        let gap = |cron: &str| replenish_gap(&std::str::FromStr::from_str(cron).unwrap());
        assert_eq!(gap("*/30 * * * * *"), Duration::from_secs(30));
        assert_eq!(gap("* * * * * *"), Duration::from_secs(1));
        assert_eq!(gap("0 0 0 1 1 * 2020"), Duration::ZERO, "no tick ahead");
    }
}

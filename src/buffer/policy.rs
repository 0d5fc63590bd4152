//! The warm target's arithmetic, without IO.

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
    /// Claims expected during one lead time.
    pub expected_claims: f64,
    /// Which bound decided: `min_idle`, `demand` or `max_warm`.
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

/// The lead time to plan with: the measured p90, or a default before any.
pub fn lead_time(lead_p90_secs: Option<f64>) -> f64 {
    lead_p90_secs.unwrap_or(DEFAULT_LEAD_SECS)
}

/// The warm target for `settings`, given per-minute claim counts, the lead time and
/// the recent burst: the claims expected during one lead time are the larger of the
/// steady rate's share and the burst (demand often comes in bursts, which a rate
/// averaged over minutes would spread thin).
pub fn target(settings: Settings, per_minute: &[f64], lead_p90_secs: Option<f64>, burst: f64) -> Target {
    let rate = claim_rate(per_minute);
    let lead = lead_time(lead_p90_secs);
    let expected = (rate * lead / 60.0).max(burst);
    let demand = if settings.mode == Mode::Adaptive { expected.ceil() as u32 } else { 0 };
    let (mut target, mut reason) =
        if demand > settings.min_idle { (demand, "demand") } else { (settings.min_idle, "min_idle") };
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
        reason,
    }
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

/// Idle instances given back at most per replenish (a bounded rate).
pub const GIVE_BACK_PER_RUN: i64 = 5;

/// Idle instances to give back now: the fresh idle ones above the target plus one for
/// each `waiting` claim, at most [`GIVE_BACK_PER_RUN`]. The ceiling is at or above the
/// target, so once no claim waits this also brings the pool under `POOL_MAX_WARM`.
pub fn to_give_back(target: &Target, fresh_idle: i64, waiting: i64) -> i64 {
    (fresh_idle - i64::from(target.target) - waiting).clamp(0, GIVE_BACK_PER_RUN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADAPTIVE: Settings = Settings { min_idle: 2, mode: Mode::Adaptive, max_warm: Some(20) };

    #[test]
    fn waiting_claims_fill_the_ceiling_first_and_only_more_of_them_pass_it() {
        let t = target(Settings { max_warm: Some(5), ..ADAPTIVE }, &[], None, 0.0);
        assert_eq!(to_create(&t, 0, 0, 0), 2);
        assert_eq!(to_create(&t, 0, 0, 3), 5, "the minimum plus three waiting");
        assert_eq!(to_create(&t, 2, 0, 4), 3, "the ceiling: four for the waiting, one buffer");
        assert_eq!(to_create(&t, 0, 0, 9), 9, "more waiting than the ceiling: one each, no buffer");
        let high = target(Settings { max_warm: Some(5), ..ADAPTIVE }, &[600.0, 0.0], Some(30.0), 0.0);
        assert_eq!(to_create(&high, 0, 0, 4), 5, "buffer and waiting claims share the ceiling");
        assert_eq!(to_create(&t, 7, 0, 1), 0);
    }

    #[test]
    fn only_idle_instances_above_the_target_and_the_waiting_claims_are_given_back() {
        let t = target(Settings { max_warm: Some(5), ..ADAPTIVE }, &[], None, 0.0);
        assert_eq!(to_give_back(&t, 2, 0), 0, "at the target");
        assert_eq!(to_give_back(&t, 4, 0), 2);
        assert_eq!(to_give_back(&t, 4, 2), 0, "the waiting claims' instances stay");
        assert_eq!(to_give_back(&t, 5, 2), 1);
        assert_eq!(to_give_back(&t, 20, 0), GIVE_BACK_PER_RUN, "a few per run");
        assert_eq!(to_give_back(&t, 0, 3), 0);
    }

    #[test]
    fn stale_instances_are_replaced_within_the_ceiling() {
        let t = target(Settings { max_warm: Some(5), ..ADAPTIVE }, &[], None, 0.0);
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
        let t = target(ADAPTIVE, &[6.0, 0.0], Some(30.0), 0.0);
        assert_eq!((t.target, t.reason), (3, "demand"), "6/min over 30 s");
        assert_eq!(target(ADAPTIVE, &[1.0, 0.0], Some(30.0), 0.0).reason, "min_idle");
        let t = target(ADAPTIVE, &[600.0, 0.0], Some(30.0), 0.0);
        assert_eq!((t.target, t.reason), (20, "max_warm"));
        let fixed = Settings { mode: Mode::Static, ..ADAPTIVE };
        assert_eq!(target(fixed, &[600.0, 0.0], Some(30.0), 9.0).target, 2, "static ignores demand");
        assert_eq!(target(ADAPTIVE, &[6.0, 0.0], None, 0.0).lead_time_seconds, 60.0);
        let burst = target(ADAPTIVE, &[9.0, 0.0], Some(20.0), 8.6);
        assert_eq!((burst.target, burst.reason), (9, "demand"), "a burst of 9 within the lead time");
    }
}

//! `availability --demand recurring`: demand that recurs with a short period
//! (a burst in the middle of every period), against the static minimum, the reactive
//! buffer (`POOL_DEMAND_PERIOD=off`) and the forecast (`POOL_DEMAND_PERIOD` = the
//! trace's period), each served from the second period on — the first one is history
//! the forecast has not seen. The target: the forecast binds ≥ 95 % at once at
//! ≤ 0.8 × the warm instance-minutes of the cheapest static floor that does as well.
//! So the last run is the largest static floor costing less than 1 / 0.8 × the
//! forecast's warm instance-minutes: the target is met when the forecast reaches 95 %
//! and that floor does not (a higher floor costs more).

use std::time::Duration;

use anyhow::bail;
use serde_json::{Value, json};

use super::{
    availability::{AvailabilityArgs, Plan, WAIT, run_setting},
    availability_report::{self as report, AT_ONCE, RunResult, Setting},
    availability_trace::Shape,
};

/// The share of claims to bind at once, in percent.
const SERVICE_PCT: f64 = 95.0;
/// The forecast's cost against the cheapest static floor that does as well, at most.
const COST_SHARE: f64 = 0.8;

/// `--demand recurring`: three periods of steady arrivals (mean gap 8 s) with a burst
/// of 3 × the minimum in the middle of each; build 10 s.
pub fn plan(args: &AvailabilityArgs) -> anyhow::Result<Plan> {
    let period = args.period_secs.unwrap_or(90.0);
    let minutes = args.minutes.unwrap_or(3.0 * period / 60.0);
    let (build_secs, min_idle) = (args.build_secs.unwrap_or(10.0), args.min_idle.unwrap_or(3));
    let valid = (10.0..=3600.0).contains(&period) && minutes * 60.0 >= 2.0 * period && minutes <= 60.0;
    if !valid || !(0.0..=600.0).contains(&build_secs) || min_idle == 0 {
        bail!("recurring needs 10 <= --period-secs <= 3600, two periods <= --minutes <= 60, --min-idle >= 1");
    }
    let (length, period) = (Duration::from_secs_f64(minutes * 60.0), Duration::from_secs_f64(period));
    let shape = Shape {
        length,
        mean_gap: Duration::from_secs(8),
        first_burst: period / 2,
        burst_every: period,
        burst_size: 3 * usize::try_from(min_idle)?,
        burst_spread: Duration::from_secs(2),
        bursts_until: length,
    };
    Ok(Plan {
        quick: false,
        shape,
        seed: args.seed,
        build: Duration::from_secs_f64(build_secs),
        wait: WAIT,
        min_idle,
        max_warm: args.max_warm.unwrap_or(4 * min_idle).max(min_idle),
        timeline: args.timeline,
        period: Some(period),
    })
}

pub async fn run(plan: &Plan) -> anyhow::Result<Value> {
    let arrivals = plan.shape.arrivals(plan.seed);
    let (m, ceiling) = (plan.min_idle, plan.max_warm);
    let period = plan.shape.burst_every;
    let every = format!("{}s", period.as_secs());
    let mut runs = vec![
        run_setting(plan, &arrivals, Setting::new("static", m, ceiling)).await?,
        run_setting(plan, &arrivals, Setting::with_period("reactive", m, ceiling, "off")).await?,
        run_setting(plan, &arrivals, Setting::with_period("forecast", m, ceiling, &every)).await?,
    ];
    let forecast = runs[2].clone();
    let floor = ((forecast.cost.avg_warm() / COST_SHARE).ceil() as u32).saturating_sub(1).max(m + 1);
    runs.push(run_setting(plan, &arrivals, Setting::new("static", floor, ceiling.max(floor))).await?);
    let title = format!(
        "availability, recurring: {} claims in {:.0} s (seed {}), a burst of {} every {:.0} s, build {:.0} s, \
         Prefer: wait={}, bound at once = 200 within {} ms; × forecast",
        arrivals.len(),
        plan.shape.length.as_secs_f64(),
        plan.seed,
        plan.shape.burst_size,
        period.as_secs_f64(),
        plan.build.as_secs_f64(),
        plan.wait.as_secs(),
        AT_ONCE.as_millis(),
    );
    report::print_table(&title, &runs, &forecast);
    let verdict = verdict(&runs, &forecast);
    Ok(json!({
        "scenario": "availability",
        "demand": "recurring",
        "seed": plan.seed,
        "claims": arrivals.len(),
        "trace": plan.shape.json(),
        "period_secs": period.as_secs_f64(),
        "build_secs": plan.build.as_secs_f64(),
        "wait_secs": plan.wait.as_secs(),
        "at_once_ms": AT_ONCE.as_millis(),
        "runs": runs.iter().map(|r| r.json(report::ratio(r, &forecast))).collect::<Vec<_>>(),
        "verdict": verdict,
    }))
}

/// The recurring trace's target, printed and returned as JSON.
fn verdict(runs: &[RunResult], forecast: &RunResult) -> Value {
    println!("  bound at once from the second period on:");
    for run in runs {
        let later = run.later.unwrap_or_default();
        let pct = run.later_pct().unwrap_or(0.0);
        let cost = run.cost.warm_minutes();
        println!(
            "    {:>14}  {}/{} ({pct:.1}%), {cost:.1} warm inst-min",
            run.setting.label, later.at_once, later.claims
        );
    }
    let serves = |r: &RunResult| r.later_pct().is_some_and(|p| p >= SERVICE_PCT);
    let cheapest = runs
        .iter()
        .filter(|r| r.setting.buffer == "static" && serves(r))
        .min_by(|a, b| a.cost.warm_minutes().total_cmp(&b.cost.warm_minutes()));
    let under = runs.iter().filter(|r| r.setting.buffer == "static" && report::ratio(r, forecast) < 1.0 / COST_SHARE);
    let cheaper_static_serves = under.clone().any(serves);
    let met = serves(forecast) && !cheaper_static_serves;
    println!(
        "  forecast: {:.1}% from the second period; static floors costing < {:.2}× it that reach {SERVICE_PCT}%: {}; \
         cheapest static reaching it: {}: {}",
        forecast.later_pct().unwrap_or(0.0),
        1.0 / COST_SHARE,
        if cheaper_static_serves { "some" } else { "none" },
        cheapest.map_or_else(
            || "none run".to_owned(),
            |r| format!("{} ({:.2}×)", r.setting.label, report::ratio(r, forecast))
        ),
        if met { "met" } else { "NOT MET" },
    );
    json!({
        "forecast_pct_from_second_period": forecast.later_pct(),
        "static_floors_under_1_25x_reaching_95pct": under.filter(|r| serves(r)).map(|r| r.setting.label.clone()).collect::<Vec<_>>(),
        "cheapest_static_reaching_95pct": cheapest.map(|r| r.setting.label.clone()),
        "its_cost_vs_forecast": cheapest.map(|r| super::report::round2(report::ratio(r, forecast))),
        "met": met,
    })
}

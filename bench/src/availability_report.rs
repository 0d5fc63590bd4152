//! What `availability` keeps of a run and how it is shown: the claims' endings, the
//! side-by-side table and the verdict on the availability targets.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    availability_cost::Cost,
    availability_trace::{Ending, Outcome, Shape},
    report::{self, Latency},
};

/// A claim answered 200 with a `succeeded` job within this long was bound "at once"
/// (the simulator's provision call is immediate, so this is Pool's own path).
pub const AT_ONCE: Duration = Duration::from_secs(1);
/// The comparison: a static minimum that costs this much more.
pub const COST_FACTOR: f64 = 1.25;

/// One configuration of Pool that the trace runs against.
#[derive(Clone, Debug)]
pub struct Setting {
    /// E.g. `static M=3`, `adaptive M=3`.
    pub label: String,
    /// `POOL_BUFFER`: `static` or `adaptive`.
    pub buffer: &'static str,
    /// `POOL_MIN_IDLE`.
    pub min_idle: u32,
    /// `POOL_MAX_WARM`.
    pub max_warm: u32,
    /// `POOL_DEMAND_PERIOD`, when set (e.g. `120s`, `off`).
    pub demand_period: Option<String>,
}

impl Setting {
    pub fn new(buffer: &'static str, min_idle: u32, max_warm: u32) -> Self {
        let max_warm = max_warm.max(min_idle);
        Self { label: format!("{buffer} M={min_idle}"), buffer, min_idle, max_warm, demand_period: None }
    }

    /// The adaptive buffer with `POOL_DEMAND_PERIOD` (`off`: the reactive one), labelled.
    pub fn with_period(label: &str, min_idle: u32, max_warm: u32, period: &str) -> Self {
        let adaptive = Self::new("adaptive", min_idle, max_warm);
        Self { label: format!("{label} M={min_idle}"), demand_period: Some(period.to_owned()), ..adaptive }
    }
}

/// One run of the trace against one [`Setting`].
#[derive(Clone, Debug)]
pub struct RunResult {
    pub setting: Setting,
    pub claims: usize,
    /// Bound within [`AT_ONCE`].
    pub at_once: usize,
    /// Bound at all (`200` + `succeeded`), at once or later.
    pub bound: usize,
    /// Answer times (ms) of every claim not bound at once, whatever its ending.
    pub waits_ms: Vec<f64>,
    pub no_idle: usize,
    /// Answered 202 (still running when the wait ran out).
    pub pending: usize,
    pub other: usize,
    pub first_other: Option<String>,
    pub cost: Cost,
    /// Instances that existed in the run: created through the services API (distinct
    /// ids of successful `POST /create-instance`), the warm-up included.
    pub created: usize,
    /// How long Pool took to reach `POOL_MIN_IDLE` idle instances before the trace.
    pub warm_up: Duration,
    /// Per burst of the trace: claims arriving in its window, and those bound at once.
    pub bursts: Vec<Served>,
    /// With a recurring demand: the claims from its second period on, and those bound at once.
    pub later: Option<Served>,
}

/// Claims of one burst and how many of them were bound at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Served {
    pub claims: usize,
    pub at_once: usize,
}

impl RunResult {
    /// The run of `outcomes`, the claims of a trace of `shape`.
    pub fn new(
        setting: Setting,
        shape: &Shape,
        outcomes: &[Outcome],
        cost: Cost,
        created: usize,
        warm_up: Duration,
    ) -> Self {
        let mut result = Self {
            setting,
            claims: outcomes.len(),
            at_once: 0,
            bound: 0,
            waits_ms: Vec::new(),
            no_idle: 0,
            pending: 0,
            other: 0,
            first_other: None,
            cost,
            created,
            warm_up,
            bursts: vec![Served::default(); shape.bursts()],
            later: None,
        };
        for outcome in outcomes {
            match &outcome.ending {
                Ending::Bound => result.bound += 1,
                Ending::NoIdle => result.no_idle += 1,
                Ending::Pending => result.pending += 1,
                Ending::Other(err) => {
                    result.other += 1;
                    result.first_other = result.first_other.take().or_else(|| Some(err.clone()));
                }
            }
            let at_once = outcome.ending == Ending::Bound && outcome.answered <= AT_ONCE;
            if at_once {
                result.at_once += 1;
            } else {
                result.waits_ms.push(report::ms(outcome.answered));
            }
            // The first burst is the one no buffer that follows demand has seen yet.
            if let Some(served) = shape.burst_of(outcome.at).and_then(|k| result.bursts.get_mut(k)) {
                served.claims += 1;
                served.at_once += usize::from(at_once);
            }
        }
        result
    }

    /// Counts [`RunResult::later`]: the claims of `outcomes` from the second `period` on.
    pub fn since_second_period(&mut self, period: Option<Duration>, outcomes: &[Outcome]) {
        let Some(period) = period else { return };
        let later = outcomes.iter().filter(|o| o.at >= period);
        self.later = Some(later.fold(Served::default(), |s, o| Served {
            claims: s.claims + 1,
            at_once: s.at_once + usize::from(o.ending == Ending::Bound && o.answered <= AT_ONCE),
        }));
    }

    /// The share of claims bound at once from the second period on, in percent.
    pub fn later_pct(&self) -> Option<f64> {
        self.later.filter(|l| l.claims > 0).map(|l| (l.at_once as f64 * 1000.0 / l.claims as f64).round() / 10.0)
    }

    fn at_once_pct(&self) -> f64 {
        if self.claims == 0 { 0.0 } else { (self.at_once as f64 * 1000.0 / self.claims as f64).round() / 10.0 }
    }

    fn never_claimed(&self) -> i64 {
        i64::try_from(self.created).unwrap_or(i64::MAX) - i64::try_from(self.bound).unwrap_or(i64::MAX)
    }

    fn waits(&self) -> Latency {
        Latency::of(&mut self.waits_ms.clone())
    }

    /// The JSON object of this run; `cost_ratio` is its warm minutes over the adaptive run's.
    pub fn json(&self, cost_ratio: f64) -> Value {
        let waits = self.waits();
        json!({
            "label": self.setting.label,
            "buffer": self.setting.buffer,
            "min_idle": self.setting.min_idle,
            "max_warm": self.setting.max_warm,
            "claims": self.claims,
            "at_once": self.at_once,
            "at_once_pct": self.at_once_pct(),
            "bound": self.bound,
            "not_at_once": self.waits_ms.len(),
            "wait_p50_s": secs(waits.p50_ms),
            "wait_p95_s": secs(waits.p95_ms),
            "wait_max_s": secs(waits.max_ms),
            "no_idle_instance": self.no_idle,
            "pending_202": self.pending,
            "other_errors": self.other,
            "first_error": self.first_other,
            "warm_instance_minutes": report::round2(self.cost.warm_minutes()),
            "avg_warm": report::round2(self.cost.avg_warm()),
            "cost_vs_adaptive": report::round2(cost_ratio),
            "max_warm_seen": self.cost.max_warm,
            "samples_over_max_warm": self.cost.over_ceiling,
            "max_target_seen": self.cost.max_target,
            "max_waiting_seen": self.cost.max_waiting,
            "count_samples": self.cost.samples,
            "count_samples_missed": self.cost.missed,
            "created": self.created,
            "never_claimed": self.never_claimed(),
            "warm_up_secs": secs(report::ms(self.warm_up)),
            "bursts": self.bursts,
            "from_second_period": self.later,
            "from_second_period_pct": self.later_pct(),
            "demand_period": self.setting.demand_period,
        })
    }

    fn row(&self, cost_ratio: f64) -> Vec<String> {
        let waits = self.waits();
        let mut cells = vec![
            self.setting.label.clone(),
            self.setting.max_warm.to_string(),
            format!("{}/{} ({:.1}%)", self.at_once, self.claims, self.at_once_pct()),
        ];
        cells.extend([waits.p50_ms, waits.p95_ms, waits.max_ms].map(|ms| format!("{:.1}", ms / 1000.0)));
        cells.extend([self.no_idle, self.pending, self.other].map(|n| n.to_string()));
        cells.push(format!("{:.1}", self.cost.warm_minutes()));
        cells.push(format!("{cost_ratio:.2}"));
        cells.push(self.cost.max_warm.to_string());
        cells.push(self.cost.max_target.map_or_else(|| "-".into(), |t| t.to_string()));
        cells.push(self.created.to_string());
        cells.push(self.never_claimed().to_string());
        cells
    }
}

/// Milliseconds to seconds with two decimals.
fn secs(ms: f64) -> f64 {
    report::round2(ms / 1000.0)
}

/// Prints the side-by-side table of `runs` (the adaptive one is `adaptive`).
pub fn print_table(title: &str, runs: &[RunResult], adaptive: &RunResult) {
    let headers = [
        "run",
        "POOL_MAX_WARM",
        "bound at once",
        "wait p50 s",
        "p95 s",
        "max s",
        "no_idle",
        "202",
        "other",
        "warm inst-min",
        "× adaptive",
        "max warm",
        "max target",
        "created",
        "never claimed",
    ];
    let rows: Vec<Vec<String>> = runs.iter().map(|r| r.row(ratio(r, adaptive))).collect();
    report::table(title, &headers, &rows);
    println!("  bound at once per burst (claims arriving in its window):");
    for run in runs {
        let cells: Vec<String> = run.bursts.iter().map(|b| format!("{}/{}", b.at_once, b.claims)).collect();
        println!("    {:>14}  {}", run.setting.label, cells.join("  "));
    }
    if let Some(err) = runs.iter().find_map(|r| r.first_other.as_ref()) {
        println!("  first error: {err}");
    }
}

/// Warm minutes of `run` over those of `adaptive`.
pub fn ratio(run: &RunResult, adaptive: &RunResult) -> f64 {
    let base = adaptive.cost.warm_minutes();
    if base > 0.0 { run.cost.warm_minutes() / base } else { 0.0 }
}

/// The availability targets checked on `runs`; printed, and returned as JSON.
pub fn verdict(runs: &[RunResult], adaptive: &RunResult) -> Value {
    let no_idle: usize = runs.iter().map(|r| r.no_idle).sum();
    let rival = runs
        .iter()
        .filter(|r| r.setting.buffer == "static" && ratio(r, adaptive) >= COST_FACTOR)
        .min_by(|a, b| a.cost.warm_minutes().total_cmp(&b.cost.warm_minutes()));
    let over: Vec<&str> = runs.iter().filter(|r| r.cost.over_ceiling > 0).map(|r| r.setting.label.as_str()).collect();
    println!("  no_idle_instance in all runs: {no_idle}");
    match rival {
        Some(r) => println!(
            "  adaptive bound {} at once; {} (cost ×{:.2}) bound {}: {}",
            adaptive.at_once,
            r.setting.label,
            ratio(r, adaptive),
            r.at_once,
            if adaptive.at_once >= r.at_once { "at least as many" } else { "FEWER" }
        ),
        None => println!("  no static run cost ≥ {COST_FACTOR}× the adaptive one; no comparison"),
    }
    println!("  runs with idle + provisioning over max(POOL_MAX_WARM, waiting) (sampled every second): {over:?}");
    json!({
        "no_idle_instance": no_idle,
        "static_costing_25pct_more": rival.map(|r| r.setting.label.clone()),
        "its_cost_vs_adaptive": rival.map(|r| report::round2(ratio(r, adaptive))),
        "its_at_once": rival.map(|r| r.at_once),
        "adaptive_at_once": adaptive.at_once,
        "adaptive_at_least_as_many_at_once": rival.map(|r| adaptive.at_once >= r.at_once),
        "runs_over_max_warm": over,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_counted_by_the_burst_they_arrived_in() {
        let secs = Duration::from_secs_f64;
        let shape = Shape {
            length: secs(120.0),
            mean_gap: secs(8.0),
            first_burst: secs(15.0),
            burst_every: secs(45.0),
            burst_size: 2,
            burst_spread: secs(2.0),
            bursts_until: secs(120.0),
        };
        let outcome =
            |at: f64, ending: Ending, answered: f64| Outcome { at: secs(at), ending, answered: secs(answered) };
        let outcomes = [
            outcome(5.0, Ending::Bound, 0.1),
            outcome(15.5, Ending::Bound, 0.1),
            outcome(16.0, Ending::Bound, 12.0),
            outcome(16.5, Ending::NoIdle, 0.1),
            outcome(60.5, Ending::Bound, 0.2),
        ];
        let setting = Setting::new("adaptive", 3, 12);
        let run = RunResult::new(setting, &shape, &outcomes, Cost::default(), 5, Duration::ZERO);
        let served = |claims, at_once| Served { claims, at_once };
        assert_eq!(run.bursts, [served(3, 1), served(1, 1), served(0, 0)]);
        assert_eq!(run.at_once, 3, "the steady claim at 5 s counts in the total only");
        let mut recurring = run.clone();
        recurring.since_second_period(Some(secs(45.0)), &outcomes);
        assert_eq!(recurring.later, Some(served(1, 1)), "only the claim at 60.5 s is in the second period");
        assert_eq!(recurring.later_pct(), Some(100.0));
        let mut other = run;
        other.since_second_period(None, &outcomes);
        assert_eq!(other.later, None, "no period, no count");
    }
}

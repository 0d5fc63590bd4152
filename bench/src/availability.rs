//! `availability`: a seeded demand trace — steady arrivals plus bursts
//! larger than the buffer — against a simulator with a real build time, once per
//! setting on a fresh database and simulator: (a) `POOL_BUFFER=static` at
//! `POOL_MIN_IDLE=M`, (b) `POOL_BUFFER=adaptive` at the same M under `POOL_MAX_WARM`,
//! (c) static minimums around the one that costs 25 % more warm instance-minutes than
//! (b): `ceil(1.25 × (b)'s average warm)`, then one lower (one higher when that cost
//! less than 1.25×; `--quick` runs only the first). Every claim sends `Prefer: wait=60`. Pool runs with its shipped
//! schedules and rate limits (not the harness's), so refills are Pool's own.

use std::{collections::HashSet, time::Duration};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::{task::JoinSet, time::Instant};

use super::{
    availability_cost as cost, availability_recurring as recurring,
    availability_report::{self as report, AT_ONCE, COST_FACTOR, RunResult, Setting},
    availability_trace::{self as trace, Shape},
    harness::{self, BenchDb, NEVER, Proc, Stack},
};
use pool_sim as sim;

/// Flags of `pool-bench availability` (the other scenarios ignore them).
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "availability")]
pub struct AvailabilityArgs {
    /// Length of the demand trace in minutes [default: 2; 0.1 with --quick].
    #[arg(long)]
    pub minutes: Option<f64>,
    /// The simulator's build time of a new instance, in seconds [default: 20; 1 with --quick].
    #[arg(long)]
    pub build_secs: Option<f64>,
    /// POOL_MIN_IDLE of the static and adaptive runs [default: 3; 2 with --quick].
    #[arg(long)]
    pub min_idle: Option<u32>,
    /// POOL_MAX_WARM of every run (at least its minimum) [default: 4 × --min-idle].
    #[arg(long)]
    pub max_warm: Option<u32>,
    /// Seed of the demand trace (the same trace for every run).
    #[arg(long, default_value_t = 12)]
    pub seed: u64,
    /// The demand: `phased` (quiet, then a busy period with bursts, then quiet) or
    /// `periodic` (bursts throughout).
    #[arg(long, value_enum, default_value_t = Demand::Phased)]
    pub demand: Demand,
    /// The period of `--demand recurring`, in seconds [default: 90].
    #[arg(long)]
    pub period_secs: Option<f64>,
    /// Print every count sample and every claim's ending to stderr, as they happen.
    #[arg(long)]
    pub timeline: bool,
}

/// The shape of the demand trace.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demand {
    /// Steady arrivals throughout; four bursts of 4 × the minimum, 40 s apart, from
    /// minute 4 of 7 (build 10 s).
    Phased,
    /// Steady arrivals and bursts of 3 × the minimum every 45 s for 2 minutes (build 20 s).
    Periodic,
    /// Steady arrivals and one burst of 3 × the minimum at the middle of every period
    /// (`--period-secs`, 90), for three periods (build 10 s): against the forecast.
    Recurring,
}

/// `Prefer: wait=` of every claim (`--quick`: shorter, to bound the smoke run).
pub(super) const WAIT: Duration = Duration::from_secs(60);
const WAIT_QUICK: Duration = Duration::from_secs(15);
/// Schedules of `--quick` runs (every second); full runs keep Pool's defaults.
const EVERY_SECOND: &str = "* * * * * *";
/// What the harness sets to get out of the way and this scenario gives back to
/// Pool's defaults: removed from the children's environment when they have the
/// harness's value (a `POOL_BENCH_CHILD_ENV` override is kept).
const HARNESS_ONLY: [(&str, &str); 5] = [
    ("RECONCILE_SCHEDULE", NEVER),
    ("REPLENISH_SCHEDULE", NEVER),
    ("SERVICES_RATE_PER_SEC", "100000"),
    ("SERVICES_RATE_BURST", "100000"),
    ("INSTANCE_RATE_PER_SEC", "100000"),
];
/// Everything a run needs, resolved from the flags.
pub(super) struct Plan {
    pub(super) quick: bool,
    pub(super) shape: Shape,
    pub(super) seed: u64,
    pub(super) build: Duration,
    pub(super) wait: Duration,
    pub(super) min_idle: u32,
    pub(super) max_warm: u32,
    pub(super) timeline: bool,
    /// The period of a recurring demand: its runs report service from the second one on.
    pub(super) period: Option<Duration>,
}

impl Plan {
    fn new(args: &AvailabilityArgs, quick: bool) -> anyhow::Result<Self> {
        if args.demand == Demand::Recurring && !quick {
            return recurring::plan(args);
        }
        let phased = args.demand == Demand::Phased && !quick;
        let minutes = args.minutes.unwrap_or(if quick {
            0.1
        } else if phased {
            7.0
        } else {
            2.0
        });
        let build_secs = args.build_secs.unwrap_or(if quick || phased { if quick { 1.0 } else { 10.0 } } else { 20.0 });
        let min_idle = args.min_idle.unwrap_or(if quick { 2 } else { 3 });
        let valid = minutes > 0.0 && minutes <= 60.0 && (0.0..=600.0).contains(&build_secs) && min_idle > 0;
        if !valid {
            bail!("availability needs 0 < --minutes <= 60, 0 <= --build-secs <= 600 and --min-idle >= 1");
        }
        let (m, length) = (usize::try_from(min_idle)?, Duration::from_secs_f64(minutes * 60.0));
        let secs = Duration::from_secs;
        let shape = match (quick, phased) {
            (true, _) => Shape {
                length,
                mean_gap: secs(2),
                first_burst: secs(1),
                burst_every: secs(45),
                burst_size: 3 * m,
                burst_spread: secs(1),
                bursts_until: length,
            },
            // A busy period after a quiet one: what a fixed minimum pays for all day.
            (false, true) => Shape {
                length,
                mean_gap: secs(15),
                first_burst: length.mul_f64(4.0 / 7.0),
                burst_every: secs(40),
                burst_size: 4 * m,
                burst_spread: secs(2),
                bursts_until: length.mul_f64(4.0 / 7.0) + secs(40 * 4),
            },
            (false, false) => Shape {
                length,
                mean_gap: secs(8),
                first_burst: secs(15),
                burst_every: secs(45),
                burst_size: 3 * m,
                burst_spread: secs(2),
                bursts_until: length,
            },
        };
        Ok(Self {
            quick,
            shape,
            seed: args.seed,
            build: Duration::from_secs_f64(build_secs),
            wait: if quick { WAIT_QUICK } else { WAIT },
            min_idle,
            max_warm: args.max_warm.unwrap_or(4 * min_idle).max(min_idle),
            timeline: args.timeline,
            period: None,
        })
    }
}

pub async fn run(quick: bool, args: &AvailabilityArgs) -> anyhow::Result<Value> {
    let plan = Plan::new(args, quick)?;
    if plan.period.is_some() {
        return recurring::run(&plan).await;
    }
    let arrivals = plan.shape.arrivals(plan.seed);
    let (m, ceiling) = (plan.min_idle, plan.max_warm);
    let mut runs = vec![
        run_setting(&plan, &arrivals, Setting::new("static", m, ceiling)).await?,
        run_setting(&plan, &arrivals, Setting::new("adaptive", m, ceiling)).await?,
    ];
    let adaptive = runs[1].clone();
    // A static floor at 1.25 × the adaptive run's average warm count costs about that
    // much more; the one below it may too, and the cheaper the rival the fairer.
    let upper = ((adaptive.cost.avg_warm() * COST_FACTOR).ceil() as u32).max(m + 1);
    let rival = run_setting(&plan, &arrivals, Setting::new("static", upper, ceiling)).await?;
    let next = if report::ratio(&rival, &adaptive) >= COST_FACTOR { upper - 1 } else { upper + 1 };
    runs.push(rival);
    if !quick && next > m {
        runs.push(run_setting(&plan, &arrivals, Setting::new("static", next, ceiling)).await?);
    }
    let title = format!(
        "availability: {} claims in {:.0} s (seed {}), build {:.0} s, Prefer: wait={}, bound at once = 200 within {} ms",
        arrivals.len(),
        plan.shape.length.as_secs_f64(),
        plan.seed,
        plan.build.as_secs_f64(),
        plan.wait.as_secs(),
        AT_ONCE.as_millis(),
    );
    report::print_table(&title, &runs, &adaptive);
    let verdict = report::verdict(&runs, &adaptive);
    Ok(json!({
        "scenario": "availability",
        "quick": quick,
        "seed": plan.seed,
        "claims": arrivals.len(),
        "trace": plan.shape.json(),
        "build_secs": plan.build.as_secs_f64(),
        "wait_secs": plan.wait.as_secs(),
        "at_once_ms": AT_ONCE.as_millis(),
        "runs": runs.iter().map(|r| r.json(report::ratio(r, &adaptive))).collect::<Vec<_>>(),
        "verdict": verdict,
    }))
}

/// One run on a fresh database and simulator.
pub(super) async fn run_setting(plan: &Plan, arrivals: &[Duration], setting: Setting) -> anyhow::Result<RunResult> {
    eprintln!("bench availability: {} (POOL_MAX_WARM={}) …", setting.label, setting.max_warm);
    let stack = start(plan, &setting).await?;
    let measured = measure(&stack, plan, arrivals, setting).await;
    let stopped = stack.stop().await;
    let result = measured?;
    stopped?;
    Ok(result)
}

/// Waits for the minimum to be idle, runs the trace while sampling the cost, then
/// waits for every claim's answer.
async fn measure(stack: &Stack, plan: &Plan, arrivals: &[Duration], setting: Setting) -> anyhow::Result<RunResult> {
    let warm_up = warm_up(stack, setting.min_idle, plan.build * 3 + Duration::from_secs(120)).await?;
    let url = format!("{}/api/pool/claim", stack.web_url);
    let start = Instant::now();
    let mut claims = JoinSet::new();
    for &offset in arrivals {
        let (http, url, wait, timeline) = (stack.http.clone(), url.clone(), plan.wait, plan.timeline);
        claims.spawn(async move {
            tokio::time::sleep_until(start + offset).await;
            let outcome = trace::claim(&http, &url, wait, offset).await;
            if timeline {
                let (at, took) = (offset.as_secs_f64(), outcome.answered.as_secs_f64());
                eprintln!("  t={at:>5.1}s claim answered in {took:.2} s: {:?}", outcome.ending);
            }
            outcome
        });
    }
    let ceiling = i64::from(setting.max_warm);
    let cost = cost::sample_cost(&stack.http, &stack.web_url, plan.shape.length, ceiling, plan.timeline).await;
    let mut outcomes = Vec::with_capacity(arrivals.len());
    while let Some(outcome) = claims.join_next().await {
        outcomes.push(outcome.context("a claim task panicked")?);
    }
    let mut result = RunResult::new(setting, &plan.shape, &outcomes, cost, created(&stack.sim), warm_up);
    result.since_second_period(plan.period, &outcomes);
    Ok(result)
}

/// Polls the counts until `min_idle` instances are idle; how long that took.
async fn warm_up(stack: &Stack, min_idle: u32, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Some(counts) = cost::counts(&stack.http, &stack.web_url).await
            && counts.idle >= i64::from(min_idle)
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("the pool did not reach {min_idle} idle instances within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Distinct instances created through the simulator's services API so far.
fn created(sim: &sim::SpawnedSim) -> usize {
    let requests = sim.sim.requests();
    let ok_creates = requests.iter().filter(|r| r.method == "POST" && r.path == "/create-instance" && r.status < 300);
    ok_creates.filter_map(|r| r.instance_id.as_deref()).collect::<HashSet<_>>().len()
}

/// A fresh database, a simulator with the plan's build time, one web and one worker
/// with the setting's environment. On failure the database is dropped.
async fn start(plan: &Plan, setting: &Setting) -> anyhow::Result<Stack> {
    let db = BenchDb::create("availability").await?;
    let config = sim::SimConfig { build_time: plan.build, provision_time: Duration::ZERO, ..sim::SimConfig::default() };
    let started = async {
        let sim = sim::Simulator::new(config).spawn().await.context("start the simulator")?;
        let port = harness::free_port()?;
        let web = Proc::spawn("web", &env(plan, setting, &db.url, &sim.url, port))?;
        let worker = Proc::spawn("worker", &env(plan, setting, &db.url, &sim.url, port))?;
        let http = harness::http_client()?;
        let web_url = format!("http://127.0.0.1:{port}");
        harness::wait_ready(&http, &web_url).await?;
        anyhow::Ok((sim, web, worker, http, web_url))
    };
    match started.await {
        Ok((sim, web, worker, http, web_url)) => Ok(Stack { db, sim, web_url, http, web, worker }),
        Err(err) => {
            db.drop().await;
            Err(err)
        }
    }
}

/// The children's environment: the harness's, with the setting's buffer variables and
/// Pool's shipped schedules and rate limits (every-second schedules with `--quick`).
fn env(
    plan: &Plan,
    setting: &Setting,
    db_url: &str,
    sim_url: &str,
    port: u16,
) -> std::collections::HashMap<String, String> {
    let (min_idle, max_warm) = (setting.min_idle.to_string(), setting.max_warm.to_string());
    let mut extra = vec![
        ("POOL_BUFFER", setting.buffer),
        ("POOL_MIN_IDLE", min_idle.as_str()),
        ("POOL_MAX_WARM", max_warm.as_str()),
    ];
    if let Some(period) = &setting.demand_period {
        extra.push(("POOL_DEMAND_PERIOD", period.as_str()));
    }
    if plan.quick {
        extra.extend([("RECONCILE_SCHEDULE", EVERY_SECOND), ("REPLENISH_SCHEDULE", EVERY_SECOND)]);
    }
    let mut env = harness::child_env(db_url, sim_url, port, &extra);
    for (key, harness_value) in HARNESS_ONLY {
        if env.get(key).is_some_and(|v| v == harness_value) {
            env.remove(key);
        }
    }
    env
}

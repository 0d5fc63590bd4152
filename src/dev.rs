//! `pool dev`: the "try it now" path. Runs `migrate`, then `sim`, `web` and `worker` as
//! child processes of this same binary, with the simulator as the services API, so a
//! new user needs no credentials. Ctrl-C or SIGTERM stops them all. Also `pool sim`, the
//! simulator alone.

use std::{collections::HashMap, process::Stdio, time::Duration};

use anyhow::{Context, bail};
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::process::{Child, Command};

use crate::{sim, telemetry};

/// API key used when none is configured; printed so the user can call the API.
const DEV_API_KEY: &str = crate::config::DEV_KEY;
/// The key instances get in development: not one the API accepts.
const DEV_INSTANCE_KEY: &str = "dev-instance-key";

/// Options of `pool dev`.
#[derive(clap::Args, Clone, Debug)]
pub struct DevArgs {
    /// Port of the simulator.
    #[arg(long, env = "SIM_PORT", default_value_t = 3002)]
    pub sim_port: u16,
    /// Simulated build time, so the pool is seen warming up.
    #[arg(long, env = "SIM_BUILD_MS", default_value_t = 5000)]
    pub build_ms: u64,
}

/// Runs the process tree until a signal, or until any child exits on its own.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let env = dev_env(&args);
    let status = pool_command("migrate", &env).status().await.context("Failed to run `pool migrate`")?;
    if !status.success() {
        bail!("`pool migrate` failed ({status}); is DATABASE_URL set and Postgres running?");
    }
    let mut children = Vec::new();
    for role in ["sim", "web", "worker"] {
        let child = pool_command(role, &env).spawn().with_context(|| format!("Failed to start `pool {role}`"))?;
        children.push((role, child));
    }
    print_banner(&env);
    let reason = tokio::select! {
        _ = telemetry::shutdown_signal() => None,
        role = first_exit(&mut children) => Some(role),
    };
    stop_all(&mut children).await;
    match reason {
        None => Ok(()),
        Some(role) => bail!("`pool {role}` exited unexpectedly; see its log above"),
    }
}

/// Environment for every child: the user's own settings win, gaps get dev defaults.
fn dev_env(args: &DevArgs) -> HashMap<&'static str, String> {
    let defaults = [
        ("POOL_API_KEY", DEV_API_KEY.to_owned()),
        ("POOL_INSTANCE_KEY", DEV_INSTANCE_KEY.to_owned()),
        ("SERVICES_URL", format!("http://127.0.0.1:{}", args.sim_port)),
        ("POOL_MIN_IDLE", "3".to_owned()),
        ("PORT", "3001".to_owned()),
        // A fixed, published key: reachable from this machine only, unless asked.
        ("HOST", "127.0.0.1".to_owned()),
        ("SIM_PORT", args.sim_port.to_string()),
        ("SIM_BUILD_MS", args.build_ms.to_string()),
        ("POOL_LOG_FORMAT", "text".to_owned()),
    ];
    defaults
        .into_iter()
        .map(|(k, default)| (k, std::env::var(k).ok().filter(|v| !v.is_empty()).unwrap_or(default)))
        .collect()
}

fn pool_command(role: &str, env: &HashMap<&'static str, String>) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "pool".into());
    let mut cmd = Command::new(exe);
    cmd.arg(role).envs(env).stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

fn print_banner(env: &HashMap<&'static str, String>) {
    let port = &env["PORT"];
    let key = &env["POOL_API_KEY"];
    let shown_key = if key == DEV_API_KEY { key.as_str() } else { "(your POOL_API_KEY)" };
    eprintln!(
        "\n  Pool is starting:\n    dashboard   http://127.0.0.1:{port}/\n    counts      curl http://127.0.0.1:{port}/api/pool/counts\n    claim       curl -X POST -H 'Authorization: Bearer {shown_key}' -H 'Prefer: wait=30' -H 'Content-Type: application/json' -d '{{}}' http://127.0.0.1:{port}/api/pool/claim\n    simulator   {}\n  Ctrl-C stops everything.\n",
        env["SERVICES_URL"]
    );
}

/// Resolves with the role of the first child that exits.
async fn first_exit(children: &mut [(&'static str, Child)]) -> &'static str {
    loop {
        for (role, child) in children.iter_mut() {
            if let Ok(Some(_)) = child.try_wait() {
                return role;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM to each child (graceful), then SIGKILL whatever is left after 10 s.
async fn stop_all(children: &mut [(&'static str, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for (role, child) in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
            tracing::warn!(role, "did not stop in 10 s; killing");
            let _ = child.kill().await;
        }
    }
}

/// Knobs of the simulator; defaults give a fault-free upstream that is as slow and
/// as unforgiving as the real one (SPEC §5).
#[derive(clap::Args, Clone, Debug)]
pub struct SimArgs {
    /// Port to serve on (services API and every instance under `/i/<id>`).
    #[arg(long, env = "SIM_PORT", default_value_t = 3002)]
    pub port: u16,
    /// Time from create to deploy `SUCCESS`.
    #[arg(long, env = "SIM_BUILD_MS", default_value_t = 2000)]
    pub build_ms: u64,
    /// Time a provision call takes.
    #[arg(long, env = "SIM_PROVISION_MS", default_value_t = 0)]
    pub provision_ms: u64,
    /// Latency added to every services API call.
    #[arg(long, env = "SIM_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of services API calls answering 500.
    #[arg(long, env = "SIM_FAILURE_RATE", default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Share of services API calls answering 429 with `Retry-After`.
    #[arg(long, env = "SIM_RATE_LIMIT_RATE", default_value_t = 0.0)]
    pub rate_limit_rate: f64,
    /// Share of new deploys that end `FAILED`.
    #[arg(long, env = "SIM_CRASH_RATE", default_value_t = 0.0)]
    pub crash_rate: f64,
    /// Share of running deploys shown as `SLEEPING`.
    #[arg(long, env = "SIM_SLEEP_RATE", default_value_t = 0.0)]
    pub sleep_rate: f64,
    /// Time each provider call inside create-instance (six) and destroy takes.
    #[arg(long, env = "SIM_PROVIDER_CALL_MS", default_value_t = 500)]
    pub provider_call_ms: u64,
    /// Time a second provision of a bound instance takes to answer 500.
    #[arg(long, env = "SIM_REBIND_MS", default_value_t = 5000)]
    pub rebind_ms: u64,
}

impl SimArgs {
    /// The simulator configuration these flags describe.
    pub fn to_config(&self) -> sim::SimConfig {
        sim::SimConfig {
            build_time: Duration::from_millis(self.build_ms),
            provision_time: Duration::from_millis(self.provision_ms),
            latency: Duration::from_millis(self.latency_ms),
            failure_rate: self.failure_rate,
            rate_limit_rate: self.rate_limit_rate,
            crash_rate: self.crash_rate,
            sleep_rate: self.sleep_rate,
            provider_call: Duration::from_millis(self.provider_call_ms),
            rebind_time: Duration::from_millis(self.rebind_ms),
            ..sim::SimConfig::default()
        }
    }
}

pub async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let addr = format!("127.0.0.1:{}", args.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("Failed to bind {addr}"))?;
    tracing::info!(%addr, "simulator listening");
    sim::Simulator::new(args.to_config())
        .serve(listener, telemetry::shutdown_signal())
        .await
        .context("simulator failed")
}

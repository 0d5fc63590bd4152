//! Configuration from the environment (SPEC §6), parsed once at start-up into typed
//! values. A missing or malformed variable stops the process with its name in the
//! message; secrets are wrapped in [`SecretString`] so `Debug` never prints them.

use std::{fmt, str::FromStr, time::Duration};

use secrecy::SecretString;

use crate::domain::JobKind;

/// Which deployment this is; decides log format, `joinUrl` rules and dashboard warnings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Staging,
    Production,
}

impl Environment {
    /// The name used in `/version` and in `POOL_ENVIRONMENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "staging" => Ok(Self::Staging),
            "production" => Ok(Self::Production),
            _ => Err("expected `staging` or `production`".into()),
        }
    }
}

/// What `POST /api/pool/claim` answers (SPEC §9): job documents, or the original
/// service's synchronous contract for clients that cannot move yet. A request's
/// `Pool-Claim-Contract` header wins over this setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimContract {
    Jobs,
    Original,
}

impl FromStr for ClaimContract {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jobs" => Ok(Self::Jobs),
            "original" => Ok(Self::Original),
            _ => Err("expected `jobs` or `original`".into()),
        }
    }
}

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    #[error("invalid value for environment variable {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Everything `pool web` and `pool worker` need. Both read the same variables so one
/// `.env` serves every process.
#[derive(Clone)]
pub struct Config {
    /// HTTP port of `pool web`.
    pub port: u16,
    /// Address `pool web` listens on (`HOST`): all interfaces by default, as a
    /// platform's router needs; `pool dev` uses 127.0.0.1 unless told otherwise.
    pub host: std::net::IpAddr,
    /// `HTTP_HEADER_TIMEOUT_MS`: how long a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// The API's keys by scope, and the key sent to instances.
    pub keys: ApiKeys,
    pub environment: Environment,
    /// `POOL_JOIN_HOSTS`: where a claim's `joinUrl` may point.
    pub join_hosts: JoinHosts,
    /// `POOL_CLAIM_CONTRACT`: what a claim answers by default.
    pub claim_contract: ClaimContract,
    /// Replenish keeps `idle + provisioning` at least this high.
    pub min_idle: u32,
    /// `POOL_MAX_WAITING`: the most claims waiting for an instance at once; beyond it a
    /// claim answers 503 `too_many_waiting` (each waiting claim costs an instance).
    pub max_waiting: u32,
    /// `POOL_BUFFER` and `POOL_MAX_WARM`: how the warm target follows demand.
    pub buffer: crate::buffer::Mode,
    pub max_warm: Option<u32>,
    /// `POOL_SURPLUS_COOLDOWN`: idle instances above the warm target are given back
    /// once they have been idle this long (5 min).
    pub surplus_cooldown: Duration,
    /// `POOL_DEMAND_PERIOD`: the warm target forecasts claims from the same phase of
    /// earlier periods of this length (a day; `off`: no forecast).
    pub demand_period: Option<Duration>,
    /// `POOL_IDLE_MAX_AGE`: idle instances older than this are replaced.
    pub idle_max_age: Option<Duration>,
    /// `POOL_TARGET_IMAGE`: idle instances on another image are replaced (default:
    /// the image of the newest instance).
    pub target_image: Option<String>,
    /// A provisioning instance not ready after this long is drained.
    pub stuck_timeout: Duration,
    pub database: DatabaseConfig,
    /// How often a process writes the metrics it recorded to Postgres.
    pub metrics_flush: Duration,
    pub services: ServicesConfig,
    pub railway_project_id: Option<String>,
    pub railway_environment_id: Option<String>,
    pub jobs: JobsConfig,
}

/// How to reach Postgres.
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    pub url: SecretString,
    /// Largest number of database connections per process.
    pub max_connections: u32,
    /// How long a statement waits for a connection before it fails (an outage is
    /// noticed after this long).
    pub acquire_timeout: Duration,
}

impl DatabaseConfig {
    /// The database settings alone, for commands that need no other configuration.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let lookup = |name: &str| std::env::var(name).ok();
        Self::from_env(&Env(&lookup))
    }

    fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.secret("DATABASE_URL")?,
            max_connections: env.parse("DATABASE_MAX_CONNECTIONS", 10)?,
            acquire_timeout: Duration::from_millis(
                env.positive("DATABASE_ACQUIRE_TIMEOUT_MS", crate::db::ACQUIRE_TIMEOUT.as_millis() as u64)?,
            ),
        })
    }
}

/// How to reach the services API.
#[derive(Clone, Debug)]
pub struct ServicesConfig {
    pub url: String,
    pub api_key: Option<SecretString>,
    /// Timeout of one services API call.
    pub timeout: Duration,
    /// Timeout of create-instance, which runs six provider calls in series upstream
    /// (the original client waited 120 s).
    pub create_timeout: Duration,
    /// How long every replica pauses after a provider rate limit that came without
    /// `Retry-After` (upstream passes Railway's 429 on as a 500 or 502).
    pub rate_limit_pause: Duration,
    /// Longest delay any upstream (services API or instance) may impose through
    /// `Retry-After`; longer hints are shortened to it.
    pub max_pause: Duration,
}

/// Job settings: schedules, concurrency, limits and retries.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// Cron (with seconds) for enqueueing `reconcile`.
    pub reconcile_schedule: cron::Schedule,
    /// Cron (with seconds) for enqueueing `replenish`.
    pub replenish_schedule: cron::Schedule,
    /// Concurrent claim jobs per worker process.
    pub claim_concurrency: usize,
    /// Concurrent jobs of every other kind per worker process.
    pub default_concurrency: usize,
    /// Services API calls per second across all worker processes together.
    pub services_rate_per_sec: u32,
    pub services_rate_burst: u32,
    /// Calls per second to any one instance, per worker process.
    pub instance_rate_per_sec: u32,
    /// Timeout of `POST {url}/pool/provision`, which may take minutes.
    pub provision_timeout: Duration,
    /// Attempts of a job before it is `failed`.
    pub max_attempts: u32,
    /// Per-kind overrides of `max_attempts` (`JOB_MAX_ATTEMPTS_<KIND>`).
    pub max_attempts_by_kind: Vec<(JobKind, u32)>,
    /// Per-kind overrides of the concurrency (`JOB_CONCURRENCY_<KIND>`).
    pub concurrency_by_kind: Vec<(JobKind, u32)>,
    /// How long finished jobs are kept.
    pub retention: Duration,
    /// Rows per pruning statement (`JOB_PRUNE_BATCH`, 100).
    pub prune_batch: i64,
    /// Pause between two pruning statements (`JOB_PRUNE_PAUSE_MS`, 10 ms).
    pub prune_pause: Duration,
    /// Poll for due jobs after a fetch that found none (`JOB_IDLE_POLL_MS`, 5 s):
    /// notifications wake the fetch; the poll catches a missed one and jobs made due
    /// without one. After a fetch that found jobs, the poll is 1 s.
    pub idle_poll: Duration,
    /// The binding loop's pass while no claim waits (`JOB_MATCH_IDLE_MS`, 10 s); a waiting
    /// claim's insert wakes it at once.
    pub match_idle: Duration,
    /// How often a worker proves it is alive (`JOB_HEARTBEAT_MS`, 3 s).
    pub heartbeat: Duration,
    /// Silence after which a worker is presumed dead and its running jobs are taken
    /// back (`JOB_RESCUE_AFTER_MS`, 12 s). Tests shorten both to wait seconds.
    pub rescue_after: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets are SecretString and print as redacted; listing fields keeps it honest.
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("environment", &self.environment)
            .field("min_idle", &self.min_idle)
            .field("buffer", &self.buffer)
            .field("max_warm", &self.max_warm)
            .field("services_url", &self.services.url)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The warm target's settings.
    pub fn buffer_settings(&self) -> crate::buffer::Settings {
        crate::buffer::Settings {
            min_idle: self.min_idle,
            mode: self.buffer,
            max_warm: self.max_warm,
            demand_period: self.demand_period,
            replenish_gap: crate::buffer::replenish_gap(&self.jobs.replenish_schedule),
            claims_kept: self.jobs.retention,
        }
    }

    /// Reads the process environment (after `.env`, loaded by the CLI).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let environment = env.parse("POOL_ENVIRONMENT", Environment::Staging)?;
        Self {
            port: env.parse("PORT", 3001)?,
            host: env.parse("HOST", std::net::IpAddr::from([0, 0, 0, 0]))?,
            header_read_timeout: env.millis("HTTP_HEADER_TIMEOUT_MS", 10_000)?,
            keys: ApiKeys::from_env(&env, environment)?,
            join_hosts: JoinHosts::from_env(&env, environment)?,
            environment,
            claim_contract: env.parse("POOL_CLAIM_CONTRACT", ClaimContract::Jobs)?,
            min_idle: env.parse("POOL_MIN_IDLE", 1)?,
            max_waiting: env.positive("POOL_MAX_WAITING", 100)?,
            buffer: env.parse("POOL_BUFFER", crate::buffer::Mode::Adaptive)?,
            max_warm: None,
            surplus_cooldown: env.age("POOL_SURPLUS_COOLDOWN")?.unwrap_or(Duration::from_secs(300)),
            demand_period: env.period("POOL_DEMAND_PERIOD", Duration::from_secs(86_400))?,
            idle_max_age: env.age("POOL_IDLE_MAX_AGE")?,
            target_image: env.optional("POOL_TARGET_IMAGE"),
            stuck_timeout: env.millis("POOL_STUCK_TIMEOUT_MS", 900_000)?,
            database: DatabaseConfig::from_env(&env)?,
            metrics_flush: Duration::from_millis(env.positive("METRICS_FLUSH_MS", 5_000)?),
            services: ServicesConfig {
                url: env.url("SERVICES_URL")?,
                api_key: env.optional("SERVICES_API_KEY").map(SecretString::from),
                timeout: env.millis("SERVICES_TIMEOUT_MS", 15_000)?,
                create_timeout: env.millis("SERVICES_CREATE_TIMEOUT_MS", 120_000)?,
                rate_limit_pause: env.millis("SERVICES_RATE_LIMIT_PAUSE_MS", 60_000)?,
                max_pause: env.millis("UPSTREAM_MAX_PAUSE_MS", 300_000)?,
            },
            railway_project_id: env.optional("RAILWAY_PROJECT_ID"),
            railway_environment_id: env.optional("RAILWAY_ENVIRONMENT_ID"),
            jobs: JobsConfig::from_env(&env)?,
        }
        .with_max_warm(&env)
    }

    /// `POOL_MAX_WARM`, by default the larger of 10 and four times `POOL_MIN_IDLE`:
    /// room for demand, and a bound on what a burst can cost.
    fn with_max_warm(mut self, env: &Env<'_>) -> Result<Self, ConfigError> {
        let max_warm = env.positive("POOL_MAX_WARM", (4 * self.min_idle).max(10))?;
        if max_warm < self.min_idle {
            let reason = format!("must be at least POOL_MIN_IDLE ({})", self.min_idle);
            return Err(ConfigError::Invalid { name: "POOL_MAX_WARM", reason });
        }
        self.max_warm = Some(max_warm);
        Ok(self)
    }
}

impl JobsConfig {
    fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Self {
            reconcile_schedule: env.cron("RECONCILE_SCHEDULE", "*/30 * * * * *")?,
            replenish_schedule: env.cron("REPLENISH_SCHEDULE", "*/30 * * * * *")?,
            claim_concurrency: env.positive("JOB_CLAIM_CONCURRENCY", 16)?,
            default_concurrency: env.positive("JOB_DEFAULT_CONCURRENCY", 4)?,
            services_rate_per_sec: env.positive("SERVICES_RATE_PER_SEC", 2)?,
            services_rate_burst: env.positive("SERVICES_RATE_BURST", 5)?,
            instance_rate_per_sec: env.positive("INSTANCE_RATE_PER_SEC", 10)?,
            provision_timeout: env.millis("PROVISION_TIMEOUT_MS", 360_000)?,
            max_attempts: env.positive("JOB_MAX_ATTEMPTS", 6)?,
            max_attempts_by_kind: by_kind(env, "JOB_MAX_ATTEMPTS_")?,
            concurrency_by_kind: by_kind(env, "JOB_CONCURRENCY_")?,
            retention: Duration::from_secs(env.parse::<u64>("JOB_RETENTION_HOURS", 72)? * 3600),
            prune_batch: env.positive("JOB_PRUNE_BATCH", 100)?,
            prune_pause: env.millis("JOB_PRUNE_PAUSE_MS", 10)?,
            idle_poll: Duration::from_millis(env.positive("JOB_IDLE_POLL_MS", 5_000)?),
            match_idle: Duration::from_millis(env.positive("JOB_MATCH_IDLE_MS", 10_000)?),
            heartbeat: Duration::from_millis(env.positive("JOB_HEARTBEAT_MS", 3_000)?),
            rescue_after: Duration::from_millis(env.positive("JOB_RESCUE_AFTER_MS", 12_000)?),
        }
        .checked()
    }

    /// A worker must get several heartbeats into the rescue window, or a live one
    /// would be presumed dead between two beats.
    fn checked(self) -> Result<Self, ConfigError> {
        if self.rescue_after < self.heartbeat * 3 {
            let reason = format!("must be at least 3 x JOB_HEARTBEAT_MS ({} ms)", self.heartbeat.as_millis());
            return Err(ConfigError::Invalid { name: "JOB_RESCUE_AFTER_MS", reason });
        }
        Ok(self)
    }
}

impl JobsConfig {
    /// The job settings alone, for commands that need no other configuration.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let lookup = |name: &str| std::env::var(name).ok();
        Self::from_env(&Env(&lookup))
    }

    /// Attempts allowed for jobs of `kind`.
    pub fn max_attempts_for(&self, kind: JobKind) -> u32 {
        self.max_attempts_by_kind.iter().find(|(k, _)| *k == kind).map_or(self.max_attempts, |(_, n)| *n)
    }

    /// Concurrency of jobs of `kind` per worker process, given its default.
    pub fn concurrency_for(&self, kind: JobKind, default: usize) -> usize {
        self.concurrency_by_kind.iter().find(|(k, _)| *k == kind).map_or(default, |(_, n)| *n as usize)
    }
}

/// `<prefix><KIND>` overrides, e.g. `JOB_MAX_ATTEMPTS_RECONCILE=3`.
fn by_kind(env: &Env<'_>, prefix: &str) -> Result<Vec<(JobKind, u32)>, ConfigError> {
    let mut overrides = Vec::new();
    for &kind in crate::jobs::KINDS {
        // Read once at start-up; the names live as long as the configuration.
        let name: &'static str = Box::leak(format!("{prefix}{}", kind.to_uppercase()).into_boxed_str());
        if env.optional(name).is_some() {
            overrides.push((kind, env.positive(name, 1)?));
        }
    }
    Ok(overrides)
}

mod env;
mod join_hosts;
mod keys;
#[cfg(test)]
mod tests;

use env::Env;
pub use join_hosts::JoinHosts;
pub use keys::{ApiKeys, DEV_KEY, MIN_PRODUCTION_LEN, Scope};

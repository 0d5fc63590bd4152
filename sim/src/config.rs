//! The simulator's knobs: [`SimConfig`] at start-up, [`Faults`] to change the
//! fault-related part of it while it runs (`PUT /_sim/config`, [`super::Simulator::set_faults`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the simulator behaves. `Default` gives a fast, fault-free simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How long a new service stays `BUILDING` before it reaches its final status.
    pub build_time: Duration,
    /// How long `POST /i/:id/pool/provision` takes before answering.
    pub provision_time: Duration,
    /// Added to every services API call (before any fault is decided).
    pub latency: Duration,
    /// Probability that a services API call answers 500 with a plain-text body.
    pub failure_rate: f64,
    /// Probability that a services API call answers 429 with `Retry-After`.
    pub rate_limit_rate: f64,
    /// The `Retry-After` seconds sent with a 429.
    pub retry_after_secs: u64,
    /// Probability, rolled once per new service, that it ends `FAILED` instead of `SUCCESS`.
    pub crash_rate: f64,
    /// Fraction of `SUCCESS` services that show `SLEEPING` (they still answer).
    pub sleep_rate: f64,
    /// The image new services report (existing ones keep theirs), as a provider's
    /// template moving to a new release would.
    pub image: String,
    /// When set, the services API requires `Authorization: Bearer <key>`.
    pub services_api_key: Option<String>,
    /// When set, the instance endpoints require `Authorization: Bearer <key>`.
    pub instance_api_key: Option<String>,
    /// How long each provider call inside create-instance and destroy takes (six in
    /// series for a create, as upstream makes them).
    pub provider_call: Duration,
    /// Upstream's create-instance is not idempotent: a second call for one id makes
    /// a second service, then answers 500. `true` restores a kinder, idempotent one.
    pub idempotent_create: bool,
    /// Probability that a provider call after the service exists fails a create:
    /// 500, with the service left behind and no row for it.
    pub create_fault_rate: f64,
    /// Probability that Railway's delete fails (all three tries) in a destroy:
    /// 200 with `destroyed.service = false`, the row gone, the service running.
    pub destroy_fault_rate: f64,
    /// A second provision of a bound instance answers 409 (some versions) instead
    /// of upstream's 500 after retrying the gateway's 409.
    pub rebind_conflict: bool,
    /// How long that 500 takes (upstream: 30 tries, about 330 s).
    pub rebind_time: Duration,
    /// A join answers `conversationId: null, joined: true`: it awaits acceptance.
    pub join_pending: bool,
    /// The instance knows its binding only once a provision ends, as upstream's does
    /// (it creates the conversation last); by default it is bound when the
    /// provision starts, so concurrent provisions of one instance conflict at once.
    pub bind_late: bool,
    /// Provider rate limits answer 429 with `Retry-After` instead of upstream's 500
    /// (502 for status batches) with "rate limited" in the text.
    pub rate_limits_as_429: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            build_time: Duration::from_secs(2),
            provision_time: Duration::ZERO,
            latency: Duration::ZERO,
            failure_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after_secs: 1,
            crash_rate: 0.0,
            sleep_rate: 0.0,
            image: "ghcr.io/sim/openclaw:latest".into(),
            services_api_key: None,
            instance_api_key: None,
            provider_call: Duration::ZERO,
            idempotent_create: false,
            create_fault_rate: 0.0,
            destroy_fault_rate: 0.0,
            rebind_conflict: false,
            rebind_time: Duration::ZERO,
            join_pending: false,
            bind_late: false,
            rate_limits_as_429: false,
        }
    }
}

/// The run-time-changeable part of [`SimConfig`], as JSON. On update every field is
/// optional and only the given ones change; on read every field is filled in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// See [`SimConfig::failure_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// See [`SimConfig::rate_limit_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_rate: Option<f64>,
    /// See [`SimConfig::retry_after_secs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// See [`SimConfig::latency`], in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// See [`SimConfig::build_time`], in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_ms: Option<u64>,
    /// See [`SimConfig::provision_time`], in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_ms: Option<u64>,
    /// See [`SimConfig::crash_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_rate: Option<f64>,
    /// See [`SimConfig::sleep_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_rate: Option<f64>,
    /// See [`SimConfig::provider_call`], in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_call_ms: Option<u64>,
    /// See [`SimConfig::idempotent_create`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_create: Option<bool>,
    /// See [`SimConfig::create_fault_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_fault_rate: Option<f64>,
    /// See [`SimConfig::destroy_fault_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy_fault_rate: Option<f64>,
    /// See [`SimConfig::rebind_conflict`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebind_conflict: Option<bool>,
    /// See [`SimConfig::rebind_time`], in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebind_ms: Option<u64>,
    /// See [`SimConfig::join_pending`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_pending: Option<bool>,
    /// See [`SimConfig::rate_limits_as_429`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits_as_429: Option<bool>,
    /// See [`SimConfig::bind_late`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_late: Option<bool>,
}

impl SimConfig {
    /// Applies the fields present in `faults`. Rates are clamped to `0..=1` so a typo
    /// in a test cannot turn into a nonsensical probability.
    pub fn apply(&mut self, f: &Faults) {
        fn set<T: Copy>(field: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *field = v;
            }
        }
        let rate = |r: Option<f64>| r.map(|r| if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) });
        let ms = |v: Option<u64>| v.map(Duration::from_millis);
        set(&mut self.failure_rate, rate(f.failure_rate));
        set(&mut self.rate_limit_rate, rate(f.rate_limit_rate));
        set(&mut self.retry_after_secs, f.retry_after_secs);
        set(&mut self.latency, ms(f.latency_ms));
        set(&mut self.build_time, ms(f.build_ms));
        set(&mut self.provision_time, ms(f.provision_ms));
        set(&mut self.crash_rate, rate(f.crash_rate));
        set(&mut self.sleep_rate, rate(f.sleep_rate));
        set(&mut self.provider_call, ms(f.provider_call_ms));
        set(&mut self.idempotent_create, f.idempotent_create);
        set(&mut self.create_fault_rate, rate(f.create_fault_rate));
        set(&mut self.destroy_fault_rate, rate(f.destroy_fault_rate));
        set(&mut self.rebind_conflict, f.rebind_conflict);
        set(&mut self.rebind_time, ms(f.rebind_ms));
        set(&mut self.join_pending, f.join_pending);
        set(&mut self.rate_limits_as_429, f.rate_limits_as_429);
        set(&mut self.bind_late, f.bind_late);
    }

    /// The current faults, every field filled in.
    pub fn faults(&self) -> Faults {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Faults {
            failure_rate: Some(self.failure_rate),
            rate_limit_rate: Some(self.rate_limit_rate),
            retry_after_secs: Some(self.retry_after_secs),
            latency_ms: Some(ms(self.latency)),
            build_ms: Some(ms(self.build_time)),
            provision_ms: Some(ms(self.provision_time)),
            crash_rate: Some(self.crash_rate),
            sleep_rate: Some(self.sleep_rate),
            provider_call_ms: Some(ms(self.provider_call)),
            idempotent_create: Some(self.idempotent_create),
            create_fault_rate: Some(self.create_fault_rate),
            destroy_fault_rate: Some(self.destroy_fault_rate),
            rebind_conflict: Some(self.rebind_conflict),
            rebind_ms: Some(ms(self.rebind_time)),
            join_pending: Some(self.join_pending),
            rate_limits_as_429: Some(self.rate_limits_as_429),
            bind_late: Some(self.bind_late),
        }
    }
}

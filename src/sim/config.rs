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
}

impl SimConfig {
    /// Applies the fields present in `faults`. Rates are clamped to `0..=1` so a typo
    /// in a test cannot turn into a nonsensical probability.
    pub fn apply(&mut self, faults: &Faults) {
        let rate = |r: f64| if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        let ms = Duration::from_millis;
        if let Some(r) = faults.failure_rate {
            self.failure_rate = rate(r);
        }
        if let Some(r) = faults.rate_limit_rate {
            self.rate_limit_rate = rate(r);
        }
        if let Some(s) = faults.retry_after_secs {
            self.retry_after_secs = s;
        }
        if let Some(v) = faults.latency_ms {
            self.latency = ms(v);
        }
        if let Some(v) = faults.build_ms {
            self.build_time = ms(v);
        }
        if let Some(v) = faults.provision_ms {
            self.provision_time = ms(v);
        }
        if let Some(r) = faults.crash_rate {
            self.crash_rate = rate(r);
        }
        if let Some(r) = faults.sleep_rate {
            self.sleep_rate = rate(r);
        }
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
        }
    }
}

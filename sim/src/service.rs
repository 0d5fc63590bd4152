//! One simulated Railway service and what it shows: its deploy status (derived
//! lazily from its build instant, so thousands of services cost no timers) and the
//! snapshot handlers and tests read.

use std::time::Instant;

use serde::Serialize;

/// One simulated Railway service (and the instance it runs).
#[derive(Debug)]
pub(super) struct Service {
    /// Creation order, so listings are stable despite the `HashMap`.
    pub seq: u64,
    /// The instance id its name carries (`convos-agent-<id>`).
    pub instance_id: String,
    pub name: String,
    /// When the current build (from creation, or the last redeploy) ends. Fixed when
    /// the build starts, so changing the build time later affects new builds only.
    pub ready_at: Instant,
    /// Rolled at creation against `crash_rate`: this service ends `FAILED`.
    pub ends_failed: bool,
    /// Rolled at creation, compared with the current `sleep_rate`, so changing the
    /// rate at run time moves a stable subset of services to `SLEEPING`.
    pub sleep_roll: f64,
    pub override_status: Option<String>,
    pub forced_ready: Option<bool>,
    /// The Railway environment the service belongs to.
    pub environment_id: String,
    pub image: String,
    /// Left out of unfiltered status batches (a flaky listing), still found by id.
    pub unlisted: bool,
    /// `GET /convos/status` answers 500 (a broken instance whose health is fine).
    pub status_broken: bool,
    pub conversation: Option<String>,
    /// Whether create-instance got as far as the service's domain (its last
    /// provider call); a create that failed earlier leaves a service without one.
    pub has_domain: bool,
}

/// The part of the config the lifecycle depends on, copied out so the config lock
/// is never held together with the services lock.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lifecycle {
    pub sleep_rate: f64,
}

impl Service {
    pub fn deploy_status(&self, now: Instant, life: Lifecycle) -> String {
        if let Some(status) = &self.override_status {
            return status.clone();
        }
        let status = if now < self.ready_at {
            "BUILDING"
        } else if self.ends_failed {
            "FAILED"
        } else if self.sleep_roll < life.sleep_rate {
            "SLEEPING"
        } else {
            "SUCCESS"
        };
        status.to_owned()
    }

    /// A forced readiness wins; otherwise a running or sleeping deploy is ready
    /// (a sleeping instance wakes on request).
    pub fn ready(&self, deploy_status: &str) -> bool {
        self.forced_ready.unwrap_or(matches!(deploy_status, "SUCCESS" | "SLEEPING"))
    }

    pub fn view(&self, service_id: &str, tracked: bool, now: Instant, life: Lifecycle) -> ServiceView {
        let deploy_status = self.deploy_status(now, life);
        ServiceView {
            instance_id: self.instance_id.clone(),
            service_id: service_id.to_owned(),
            name: self.name.clone(),
            ready: self.ready(&deploy_status),
            deploy_status,
            conversation_id: self.conversation.clone(),
            override_status: self.override_status.clone(),
            forced_ready: self.forced_ready,
            status_broken: self.status_broken,
            environment_id: self.environment_id.clone(),
            image: self.image.clone(),
            tracked,
            has_domain: self.has_domain,
        }
    }
}

/// A snapshot of one service, as handlers and `GET /_sim/instances` see it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    /// The instance id the service was created for.
    pub instance_id: String,
    /// The provider's id of the service.
    pub service_id: String,
    /// The service name, `convos-agent-<id>` unless created otherwise.
    pub name: String,
    /// The deploy status right now.
    pub deploy_status: String,
    /// Whether `GET /pool/health` answers ready.
    pub ready: bool,
    /// The conversation the instance is bound to.
    pub conversation_id: Option<String>,
    /// A deploy status set by a test control, if any.
    pub override_status: Option<String>,
    /// A readiness forced by a test control, if any.
    pub forced_ready: Option<bool>,
    /// `GET /convos/status` answers 500.
    pub status_broken: bool,
    /// The Railway environment the service belongs to.
    pub environment_id: String,
    pub image: String,
    /// Whether the services API holds its row for this very service: a service it
    /// does not track (a duplicate, a half-made create, one a failed destroy left
    /// running) can never be destroyed through it.
    pub tracked: bool,
    /// Whether the service has a public domain (status batches show none otherwise).
    pub has_domain: bool,
}

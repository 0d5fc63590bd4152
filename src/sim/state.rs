//! The simulated services and their lifecycle. Deploy statuses are computed lazily
//! from each service's creation instant, so thousands of services cost no timers.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError, RwLock},
    time::Instant,
};

use serde::Serialize;

use super::{config::SimConfig, log::RequestLog};

/// Locks `mutex`, ignoring poisoning: a panicking handler must not take the whole
/// simulator down with it, and every update here leaves the map consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One simulated service (and the instance it runs).
#[derive(Debug)]
struct Service {
    /// Creation order, so listings are stable despite the `HashMap`.
    seq: u64,
    service_id: String,
    name: String,
    /// When the current build (from creation, or the last redeploy) ends. Fixed when
    /// the build starts, so changing the build time later affects new builds only.
    ready_at: Instant,
    /// Rolled at creation against `crash_rate`: this service ends `FAILED`.
    ends_failed: bool,
    /// Rolled at creation, compared with the current `sleep_rate`, so changing the
    /// rate at run time moves a stable subset of services to `SLEEPING`.
    sleep_roll: f64,
    override_status: Option<String>,
    forced_ready: Option<bool>,
    /// The Railway environment the service belongs to.
    environment_id: String,
    image: String,
    /// Left out of unfiltered status batches (a flaky listing), still found by id.
    unlisted: bool,
    /// `GET /convos/status` answers 500 (a broken instance whose health is fine).
    status_broken: bool,
    conversation: Option<String>,
}

/// The part of the config the lifecycle depends on, copied out so the config lock
/// is never held together with the services lock.
#[derive(Clone, Copy, Debug)]
struct Lifecycle {
    sleep_rate: f64,
}

impl Service {
    fn deploy_status(&self, now: Instant, life: Lifecycle) -> String {
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
    fn ready(&self, deploy_status: &str) -> bool {
        self.forced_ready.unwrap_or(matches!(deploy_status, "SUCCESS" | "SLEEPING"))
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
}

/// The environment of every service unless a test moves one.
pub const DEFAULT_ENVIRONMENT: &str = "sim-env";

/// Why a provision cannot bind the instance.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BindError {
    NotFound,
    NotReady,
    AlreadyBound,
}

/// Everything the simulator knows, shared by all handlers.
#[derive(Debug)]
pub(crate) struct SimState {
    pub started: Instant,
    pub log: RequestLog,
    config: Mutex<SimConfig>,
    services: Mutex<Services>,
    base_url: RwLock<Option<String>>,
}

#[derive(Debug, Default)]
struct Services {
    next_seq: u64,
    by_id: HashMap<String, Service>,
}

impl SimState {
    pub fn new(config: SimConfig) -> Self {
        Self {
            started: Instant::now(),
            log: RequestLog::default(),
            config: Mutex::new(config),
            services: Mutex::new(Services::default()),
            base_url: RwLock::new(None),
        }
    }

    /// Runs `f` on the config under its lock; keep `f` short and await-free.
    pub fn with_config<R>(&self, f: impl FnOnce(&mut SimConfig) -> R) -> R {
        f(&mut lock(&self.config))
    }

    fn lifecycle(&self) -> Lifecycle {
        self.with_config(|c| Lifecycle { sleep_rate: c.sleep_rate })
    }

    pub fn base_url(&self) -> Option<String> {
        self.base_url.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn set_base_url(&self, url: String) {
        *self.base_url.write().unwrap_or_else(PoisonError::into_inner) = Some(url);
    }

    /// Creates the service for `id` unless it exists; either way returns it.
    pub fn create(&self, id: &str, name: Option<&str>) -> ServiceView {
        let (crash_rate, build_time, image) = self.with_config(|c| (c.crash_rate, c.build_time, c.image.clone()));
        let life = self.lifecycle();
        let mut services = lock(&self.services);
        let seq = services.next_seq;
        let service = services.by_id.entry(id.to_owned()).or_insert_with(|| Service {
            seq,
            service_id: format!("svc-{}", ulid::Ulid::generate().to_string().to_lowercase()),
            name: name.map_or_else(|| format!("convos-agent-{id}"), str::to_owned),
            ready_at: Instant::now() + build_time,
            ends_failed: rand::random::<f64>() < crash_rate,
            sleep_roll: rand::random::<f64>(),
            override_status: None,
            forced_ready: None,
            environment_id: DEFAULT_ENVIRONMENT.to_owned(),
            image,
            unlisted: false,
            status_broken: false,
            conversation: None,
        });
        let created = service.seq == seq;
        let view = view(id, service, Instant::now(), life);
        if created {
            services.next_seq += 1;
        }
        view
    }

    pub fn remove(&self, id: &str) -> bool {
        lock(&self.services).by_id.remove(id).is_some()
    }

    pub fn view(&self, id: &str) -> Option<ServiceView> {
        let life = self.lifecycle();
        let services = lock(&self.services);
        services.by_id.get(id).map(|s| view(id, s, Instant::now(), life))
    }

    /// All services in creation order, or only those in `ids` (unknown ids skipped).
    pub fn views(&self, ids: Option<&[String]>) -> Vec<ServiceView> {
        let life = self.lifecycle();
        let now = Instant::now();
        let services = lock(&self.services);
        let mut found: Vec<(u64, ServiceView)> = match ids {
            Some(ids) => ids
                .iter()
                .filter_map(|id| services.by_id.get_key_value(id.as_str()))
                .map(|(id, s)| (s.seq, view(id, s, now, life)))
                .collect(),
            None => services
                .by_id
                .iter()
                .filter(|(_, s)| !s.unlisted)
                .map(|(id, s)| (s.seq, view(id, s, now, life)))
                .collect(),
        };
        drop(services);
        found.sort_unstable_by_key(|(seq, _)| *seq);
        // A batch may name an id twice; answer it once, as the provider would.
        found.dedup_by_key(|(seq, _)| *seq);
        found.into_iter().map(|(_, v)| v).collect()
    }

    /// Applies `f` to the service `id`; false when unknown.
    fn update(&self, id: &str, f: impl FnOnce(&mut Service)) -> bool {
        lock(&self.services).by_id.get_mut(id).map(f).is_some()
    }

    pub fn set_override(&self, id: &str, status: Option<&str>) -> bool {
        self.update(id, |s| s.override_status = status.map(str::to_owned))
    }

    pub fn set_ready(&self, id: &str, ready: bool) -> bool {
        self.update(id, |s| s.forced_ready = Some(ready))
    }

    pub fn set_status_broken(&self, id: &str, broken: bool) -> bool {
        self.update(id, |s| s.status_broken = broken)
    }

    pub fn set_unlisted(&self, id: &str, unlisted: bool) -> bool {
        self.update(id, |s| s.unlisted = unlisted)
    }

    pub fn set_environment(&self, id: &str, environment_id: &str) -> bool {
        self.update(id, |s| s.environment_id = environment_id.to_owned())
    }

    pub fn bind(&self, id: &str, conversation_id: &str) -> bool {
        self.update(id, |s| s.conversation = Some(conversation_id.to_owned()))
    }

    /// A redeploy restarts the build and clears a test's status override, so a
    /// `CRASHED` service comes back (unless it was rolled to end `FAILED`).
    pub fn redeploy(&self, id: &str) -> bool {
        let build_time = self.with_config(|c| c.build_time);
        self.update(id, |s| {
            s.ready_at = Instant::now() + build_time;
            s.override_status = None;
        })
    }

    /// Binds `id` to a fresh conversation, deciding under the lock so that of two
    /// concurrent provisions exactly one wins. Returns the conversation id.
    pub fn try_bind(&self, id: &str) -> Result<String, BindError> {
        let life = self.lifecycle();
        let mut services = lock(&self.services);
        let service = services.by_id.get_mut(id).ok_or(BindError::NotFound)?;
        if !service.ready(&service.deploy_status(Instant::now(), life)) {
            return Err(BindError::NotReady);
        }
        if service.conversation.is_some() {
            return Err(BindError::AlreadyBound);
        }
        let conversation_id = format!("conv_{}", ulid::Ulid::generate());
        service.conversation = Some(conversation_id.clone());
        Ok(conversation_id)
    }
}

fn view(id: &str, service: &Service, now: Instant, life: Lifecycle) -> ServiceView {
    let deploy_status = service.deploy_status(now, life);
    ServiceView {
        instance_id: id.to_owned(),
        service_id: service.service_id.clone(),
        name: service.name.clone(),
        ready: service.ready(&deploy_status),
        deploy_status,
        conversation_id: service.conversation.clone(),
        override_status: service.override_status.clone(),
        forced_ready: service.forced_ready,
        status_broken: service.status_broken,
        environment_id: service.environment_id.clone(),
        image: service.image.clone(),
    }
}

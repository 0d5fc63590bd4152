//! What the simulator knows: Railway's services (keyed by service id, as Railway
//! keys them) and the services API's own rows (instance id → the service it
//! created). The two are apart on purpose, as upstream: a create that fails
//! part-way, or is called twice for one id, leaves a service no row points at, and a
//! destroy whose Railway delete failed removes the row but not the service.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError, RwLock},
    time::Instant,
};

use super::{
    config::SimConfig,
    log::RequestLog,
    service::{Lifecycle, Service, ServiceView},
};

/// Locks `mutex`, ignoring poisoning: a panicking handler must not take the whole
/// simulator down with it, and every update here leaves the map consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// Railway: service id → service.
    railway: HashMap<String, Service>,
    /// The services API's table: instance id → the service id it recorded.
    rows: HashMap<String, String>,
    /// Railway's services by the instance id in their name (a lookup by name costs
    /// the same with 100,000 services as with ten).
    named: HashMap<String, Vec<String>>,
}

impl Services {
    /// The service an instance id means: the one services tracks, else the oldest
    /// of that name (a half-made create is still reachable at its URL).
    fn primary_id(&self, id: &str) -> Option<String> {
        if let Some(service_id) = self.rows.get(id).filter(|s| self.railway.contains_key(*s)) {
            return Some(service_id.clone());
        }
        let named = self.named.get(id)?;
        named
            .iter()
            .filter_map(|k| self.railway.get(k).map(|s| (k, s.seq)))
            .min_by_key(|(_, seq)| *seq)
            .map(|(k, _)| k.clone())
    }

    fn add(&mut self, service_id: String, service: Service) {
        self.named.entry(service.instance_id.clone()).or_default().push(service_id.clone());
        self.railway.insert(service_id, service);
    }

    /// Deletes service `service_id` at Railway; false when there was none.
    fn delete(&mut self, service_id: &str) -> bool {
        let Some(service) = self.railway.remove(service_id) else { return false };
        if let Some(named) = self.named.get_mut(&service.instance_id) {
            named.retain(|k| k != service_id);
            if named.is_empty() {
                self.named.remove(&service.instance_id);
            }
        }
        true
    }

    fn tracked(&self, service_id: &str, service: &Service) -> bool {
        self.rows.get(&service.instance_id).is_some_and(|s| s == service_id)
    }
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

    /// Creates a Railway service for `id`, always a new one (Railway does not care
    /// that the name is taken), without a domain yet. Returns its service id.
    pub fn create_service(&self, id: &str, name: Option<&str>) -> String {
        let (crash_rate, build_time, image) = self.with_config(|c| (c.crash_rate, c.build_time, c.image.clone()));
        let service_id = format!("svc-{}", ulid::Ulid::generate().to_string().to_lowercase());
        let mut services = lock(&self.services);
        let seq = services.next_seq;
        services.next_seq += 1;
        let service = Service {
            seq,
            instance_id: id.to_owned(),
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
            has_domain: false,
        };
        services.add(service_id.clone(), service);
        service_id
    }

    /// Gives service `service_id` its public domain.
    pub fn assign_domain(&self, service_id: &str) {
        if let Some(service) = lock(&self.services).railway.get_mut(service_id) {
            service.has_domain = true;
        }
    }

    /// Records services' row for `id`; false when one exists (its primary key).
    pub fn insert_row(&self, id: &str, service_id: &str) -> bool {
        let mut services = lock(&self.services);
        if services.rows.contains_key(id) {
            return false;
        }
        services.rows.insert(id.to_owned(), service_id.to_owned());
        true
    }

    /// A service and its row, as someone else would make them; the existing primary
    /// service when there is one.
    pub fn create(&self, id: &str, name: Option<&str>) -> ServiceView {
        if let Some(view) = self.view(id) {
            return view;
        }
        let service_id = self.create_service(id, name);
        self.assign_domain(&service_id);
        self.insert_row(id, &service_id);
        self.view(id).expect("just created")
    }

    /// The service services' row for `id` points at; `None` when there is no row.
    pub fn row(&self, id: &str) -> Option<String> {
        lock(&self.services).rows.get(id).cloned()
    }

    /// Instance ids services holds rows for, sorted.
    pub fn rows(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.services).rows.keys().cloned().collect();
        ids.sort_unstable();
        ids
    }

    /// Drops services' row for `id`; deletes its service at Railway unless
    /// `railway_fails`. Returns whether the service is gone, or `None` without a row.
    pub fn destroy(&self, id: &str, railway_fails: bool) -> Option<bool> {
        let mut services = lock(&self.services);
        let service_id = services.rows.remove(id)?;
        if railway_fails {
            return Some(false);
        }
        Some(services.delete(&service_id))
    }

    /// Deletes every Railway service of `id` behind everyone's back; services keeps
    /// its row. False when there was none.
    pub fn remove(&self, id: &str) -> bool {
        let mut services = lock(&self.services);
        let named = services.named.get(id).cloned().unwrap_or_default();
        named.iter().fold(false, |gone, service_id| services.delete(service_id) | gone)
    }

    /// Deletes one Railway service by its id, as an operator would at the provider.
    pub fn remove_service(&self, service_id: &str) -> bool {
        lock(&self.services).delete(service_id)
    }

    /// The primary service of `id` (see [`Services::primary_id`]).
    pub fn view(&self, id: &str) -> Option<ServiceView> {
        let life = self.lifecycle();
        let services = lock(&self.services);
        let service_id = services.primary_id(id)?;
        let service = &services.railway[&service_id];
        Some(service.view(&service_id, services.tracked(&service_id, service), Instant::now(), life))
    }

    /// All services in creation order, or only those whose instance id is in `ids`:
    /// two services of one id are both listed, as Railway lists them by name.
    pub fn views(&self, ids: Option<&[String]>) -> Vec<ServiceView> {
        let life = self.lifecycle();
        let now = Instant::now();
        let services = lock(&self.services);
        let mut found: Vec<(u64, ServiceView)> = services
            .railway
            .iter()
            .filter(|(_, s)| match ids {
                Some(ids) => ids.contains(&s.instance_id),
                None => !s.unlisted,
            })
            .map(|(k, s)| (s.seq, s.view(k, services.tracked(k, s), now, life)))
            .collect();
        drop(services);
        found.sort_unstable_by_key(|(seq, _)| *seq);
        found.into_iter().map(|(_, v)| v).collect()
    }

    /// Applies `f` to the primary service of `id`; false when unknown.
    fn update(&self, id: &str, f: impl FnOnce(&mut Service)) -> bool {
        let mut services = lock(&self.services);
        let Some(service_id) = services.primary_id(id) else { return false };
        services.railway.get_mut(&service_id).map(f).is_some()
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

    /// The conversation `id` is bound to, binding it to a fresh one first if it is
    /// not; `None` when the instance is gone.
    pub fn bind_if_unbound(&self, id: &str) -> Option<String> {
        let mut services = lock(&self.services);
        let service_id = services.primary_id(id)?;
        let service = services.railway.get_mut(&service_id)?;
        Some(service.conversation.get_or_insert_with(|| format!("conv_{}", ulid::Ulid::generate())).clone())
    }

    /// Binds `id` to a fresh conversation, deciding under the lock so that of two
    /// concurrent provisions exactly one wins. Returns the conversation id.
    pub fn try_bind(&self, id: &str) -> Result<String, BindError> {
        let life = self.lifecycle();
        let mut services = lock(&self.services);
        let service_id = services.primary_id(id).ok_or(BindError::NotFound)?;
        let service = services.railway.get_mut(&service_id).ok_or(BindError::NotFound)?;
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

//! `pool sim`: a fake of the services API plus every simulated instance's own
//! endpoints, on one port. Pool's tests and `pool dev` use it as the upstream.
//!
//! Routes:
//! - services API (Bearer [`SimConfig::services_api_key`], latency and faults):
//!   `POST /create-instance`, `DELETE /destroy/:id`, `POST /status/batch`,
//!   `POST /configure/:id`, `POST /redeploy/:id`;
//! - instance endpoints (Bearer [`SimConfig::instance_api_key`]), under `/i/:id`:
//!   `GET pool/health`, `POST pool/provision`, `GET convos/status`;
//! - `/_sim/...` controls for tests and the dev dashboard (no auth, not logged).
//!
//! It behaves as the real upstream does by default (SPEC §5): create-instance is not
//! idempotent, destroy may leave the service running, a second provision of a
//! bound instance answers 500, rate limits arrive as 500/502; each of these can be
//! switched at run time ([`Faults`]).
//!
//! State is `HashMap`s behind a std `Mutex`, never held across an await; deploy
//! statuses are derived lazily from creation instants, so there are no timers.

mod config;
mod control;
mod create;
mod instances;
mod log;
mod service;
mod services;
mod state;
#[cfg(test)]
mod tests;

use std::{future::Future, io, net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    http::{HeaderMap, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
};
use serde_json::json;
use tokio::{net::TcpListener, task::JoinHandle};

pub use config::{Faults, SimConfig};
pub use log::{HUNG_UP, LOG_CAP, LoggedRequest};
pub use service::ServiceView;

use state::SimState;

/// A running or runnable simulator. Cheap to clone; clones share all state.
#[derive(Clone, Debug)]
pub struct Simulator {
    state: Arc<SimState>,
}

/// A simulator serving on an ephemeral local port; its task is aborted on drop.
#[derive(Debug)]
pub struct SpawnedSim {
    /// `http://127.0.0.1:<port>`, the base URL of both the services API and instances.
    pub url: String,
    /// A handle on the served simulator, for controls and the request log.
    pub sim: Simulator,
    task: JoinHandle<io::Result<()>>,
}

impl Drop for SpawnedSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Simulator {
    /// A simulator with no services yet.
    pub fn new(config: SimConfig) -> Self {
        Self { state: Arc::new(SimState::new(config)) }
    }

    /// Records `base_url = http://{local_addr}` and serves until `shutdown` resolves.
    /// A wildcard bind address is reported as loopback, since that is what clients
    /// on this machine can connect to.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let url = base_url(listener.local_addr()?);
        tracing::info!(%url, "simulator listening");
        self.state.set_base_url(url);
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }

    /// For tests: binds `127.0.0.1:0` and serves on a tokio task.
    pub async fn spawn(self) -> io::Result<SpawnedSim> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = base_url(listener.local_addr()?);
        // Set before spawning so the first create already answers a `url`.
        self.state.set_base_url(url.clone());
        let task = tokio::spawn(self.clone().serve(listener, std::future::pending()));
        Ok(SpawnedSim { url, sim: self, task })
    }

    /// All routes. Only the services API and instance endpoints are logged.
    pub fn router(&self) -> Router {
        let logged = services::routes(self.state.clone())
            .merge(instances::routes(self.state.clone()))
            .layer(middleware::from_fn_with_state(self.state.clone(), log::record));
        logged
            .merge(control::routes(self.state.clone()))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
    }

    /// The base URL recorded by [`Simulator::serve`], if serving.
    pub fn base_url(&self) -> Option<String> {
        self.state.base_url()
    }

    /// Every logged request, oldest first (at most [`LOG_CAP`]).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.log.snapshot()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.state.log.clear();
    }

    /// Changes the faults given in `f`; the others keep their values.
    pub fn set_faults(&self, f: Faults) {
        self.state.with_config(|c| c.apply(&f));
    }

    /// The current faults, every field filled in.
    pub fn faults(&self) -> Faults {
        self.state.with_config(|c| c.faults())
    }

    /// Overrides the deploy status of `id` (`None` restores the lifecycle). No-op when unknown.
    pub fn set_deploy_status(&self, id: &str, status: Option<&str>) {
        self.state.set_override(id, status);
    }

    /// Forces what `GET /i/:id/pool/health` answers, whatever the deploy status.
    /// No-op when unknown.
    pub fn set_ready(&self, id: &str, ready: bool) {
        self.state.set_ready(id, ready);
    }

    /// Deletes every Railway service of instance `id` behind everyone's back (the
    /// services API keeps its row); false when there was none.
    pub fn remove_service(&self, id: &str) -> bool {
        self.state.remove(id)
    }

    /// Deletes one Railway service by its service id, as an operator deletes an
    /// orphan at the provider; false when it did not exist.
    pub fn delete_service(&self, service_id: &str) -> bool {
        self.state.remove_service(service_id)
    }

    /// Every Railway service of instance `id` (duplicates included), oldest first.
    pub fn services_of(&self, id: &str) -> Vec<ServiceView> {
        self.state.views(Some(&[id.to_owned()]))
    }

    /// Instance ids the services API holds rows for (and so the tool resources of).
    pub fn tracked_ids(&self) -> Vec<String> {
        self.state.rows()
    }

    /// Creates a service directly, as someone else would (no id validation).
    /// No-op when it exists.
    pub fn add_service(&self, id: &str) {
        self.state.create(id, None);
    }

    /// Makes `GET /convos/status` of instance `id` answer 500. No-op when unknown.
    pub fn set_status_broken(&self, id: &str, broken: bool) {
        self.state.set_status_broken(id, broken);
    }

    /// Leaves service `id` out of unfiltered status batches (it is still found by
    /// id), as a flaky listing would. No-op when unknown.
    pub fn set_unlisted(&self, id: &str, unlisted: bool) {
        self.state.set_unlisted(id, unlisted);
    }

    /// The image services created from now on report (a new release of the template).
    pub fn set_image(&self, image: &str) {
        self.state.with_config(|c| c.image = image.to_owned());
    }

    /// Moves service `id` to another Railway environment. No-op when unknown.
    pub fn set_environment(&self, id: &str, environment_id: &str) {
        self.state.set_environment(id, environment_id);
    }

    /// Marks `id` bound to `conversation_id` without a provision. No-op when unknown.
    pub fn bind(&self, id: &str, conversation_id: &str) {
        self.state.bind(id, conversation_id);
    }

    /// The conversation `id` is bound to, if it exists and is bound.
    pub fn conversation_of(&self, id: &str) -> Option<String> {
        self.state.view(id)?.conversation_id
    }

    /// Instance ids of all services, in creation order.
    pub fn service_ids(&self) -> Vec<String> {
        self.state.views(None).into_iter().map(|v| v.instance_id).collect()
    }

    /// A snapshot of one service, if it exists.
    pub fn service(&self, id: &str) -> Option<ServiceView> {
        self.state.view(id)
    }
}

fn base_url(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

/// `{"error", "code"}` with `status`: the shape of every simulator error but the
/// deliberate plain-text 500.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": message, "code": code }))).into_response()
}

/// Whether `headers` carry `Authorization: Bearer <key>`; always true without a key.
/// A plain comparison is fine here: this is a test double, not a security boundary.
pub(crate) fn bearer_ok(headers: &HeaderMap, key: Option<&str>) -> bool {
    let Some(key) = key else { return true };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token == key)
}

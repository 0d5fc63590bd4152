//! The simulated services API: create, destroy, status batch, configure, redeploy —
//! behind latency, Bearer auth and fault injection.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, post},
};
use serde::Deserialize;
use serde_json::json;

use super::{bearer_ok, error, service::ServiceView, state::SimState};

/// The services API routes, with their gate applied.
pub(crate) fn routes(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/create-instance", post(create))
        .route("/destroy/{id}", delete(destroy))
        .route("/status/batch", post(status_batch))
        .route("/configure/{id}", post(configure))
        .route("/redeploy/{id}", post(redeploy))
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Latency first (it applies to every answer), then auth, then the random faults.
async fn gate(State(state): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    let (latency, key, failure_rate, rate_limit_rate, retry_after, as_429) = state.with_config(|c| {
        let faults = (c.failure_rate, c.rate_limit_rate, c.retry_after_secs, c.rate_limits_as_429);
        (c.latency, c.services_api_key.clone(), faults.0, faults.1, faults.2, faults.3)
    });
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if !bearer_ok(request.headers(), key.as_deref()) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or invalid API key");
    }
    if rand::random::<f64>() < failure_rate {
        // Deliberately not JSON: the real upstream's proxies answer like this.
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response();
    }
    if rand::random::<f64>() < rate_limit_rate {
        if as_429 {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests");
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return response;
        }
        return railway_rate_limited(request.uri().path());
    }
    next.run(request).await
}

/// How upstream passes on Railway's 429: its GraphQL helper's error text as a 500,
/// or, from the status batch, a 502 that no longer says why; never a `Retry-After`.
fn railway_rate_limited(path: &str) -> Response {
    if path == "/status/batch" {
        return (StatusCode::BAD_GATEWAY, Json(json!({ "error": "Failed to fetch services from Railway" })))
            .into_response();
    }
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": RAILWAY_RATE_LIMITED }))).into_response()
}

/// Upstream's message for a Railway 429.
pub(crate) const RAILWAY_RATE_LIMITED: &str = "Railway API error: 429 (rate limited — wait a few minutes)";

/// Ids the real services API accepts: 12 chars of `A-Za-z0-9_-`.
fn valid_instance_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    instance_id: String,
    name: Option<String>,
    #[serde(default)]
    tools: Vec<String>,
}

async fn create(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<CreateBody>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_body", "expected {\"instanceId\", \"name\", \"tools\"}");
    };
    if !valid_instance_id(&body.instance_id) {
        return error(StatusCode::BAD_REQUEST, "invalid_instance_id", "instanceId must be 12 chars of A-Za-z0-9_-");
    }
    // Upstream goes on when its caller hangs up (a timeout): so does the simulator.
    let task = tokio::spawn(super::create::run(state, body.instance_id, body.name, body.tools));
    task.await.unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "panic", "create-instance panicked"))
}

async fn destroy(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    let task = tokio::spawn(super::create::destroy(state, id));
    task.await.unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "panic", "destroy panicked"))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BatchBody {
    instance_ids: Option<Vec<String>>,
}

async fn status_batch(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    // The body is optional: none, `{}` and `{"instanceIds": null}` all mean "all".
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        BatchBody::default()
    } else {
        match serde_json::from_slice::<BatchBody>(&body) {
            Ok(body) => body,
            Err(_) => return error(StatusCode::BAD_REQUEST, "invalid_body", "expected {\"instanceIds\"?: [...]}"),
        }
    };
    let base = state.base_url();
    let services: Vec<_> =
        state.views(body.instance_ids.as_deref()).into_iter().map(|view| batch_entry(base.as_deref(), view)).collect();
    Json(json!({ "projectId": "sim-project", "services": services })).into_response()
}

fn batch_entry(base: Option<&str>, view: ServiceView) -> serde_json::Value {
    let domain = base.filter(|_| view.has_domain).map(|base| {
        let url = instance_url(base, &view.instance_id);
        url.split_once("://").map_or(url.clone(), |(_, rest)| rest.to_owned())
    });
    json!({
        "instanceId": view.instance_id,
        "serviceId": view.service_id,
        "name": view.name,
        "deployStatus": view.deploy_status,
        "domain": domain,
        "image": view.image,
        "environmentIds": [view.environment_id],
    })
}

async fn configure(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    if state.view(&id).is_none() {
        return not_found(&id);
    }
    Json(json!({ "instanceId": id, "ok": true })).into_response()
}

async fn redeploy(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    if !state.redeploy(&id) {
        return not_found(&id);
    }
    Json(json!({ "instanceId": id, "ok": true })).into_response()
}

/// Where a simulated instance's endpoints live.
pub(crate) fn instance_url(base: &str, id: &str) -> String {
    format!("{}/i/{id}", base.trim_end_matches('/'))
}

pub(crate) fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", &format!("no service for instance {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_follow_the_upstream_rules() {
        assert!(valid_instance_id("abcDEF012_-x"));
        assert!(!valid_instance_id("short"));
        assert!(!valid_instance_id("abcDEF012_-!"));
        assert!(!valid_instance_id("abcDEF012_-xy"));
    }
}

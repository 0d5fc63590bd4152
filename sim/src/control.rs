//! `/_sim` control routes for tests and the dev dashboard: the request log, faults,
//! and direct manipulation of services. No auth, no faults, not logged.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use super::{config::Faults, error, state::SimState};

/// The `/_sim` routes.
pub(crate) fn routes(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route("/_sim/config", get(get_config).put(put_config))
        .route("/_sim/instances", get(list_instances).post(add_instance))
        .route("/_sim/instances/{id}", axum::routing::delete(remove_instance))
        .route("/_sim/instances/{id}/deploy-status", post(deploy_status))
        .route("/_sim/instances/{id}/ready", post(ready))
        .route("/_sim/instances/{id}/bind", post(bind))
        .route("/_sim/services/{service_id}", axum::routing::delete(delete_service))
        .route("/_sim/rows", get(rows))
        .with_state(state)
}

/// Parses a JSON body by hand, so a bad one gets [`bad_body`]'s JSON 400 rather than
/// axum's plain-text rejection.
fn parse<T: DeserializeOwned>(body: &Bytes) -> serde_json::Result<T> {
    serde_json::from_slice(body)
}

fn bad_body(e: &serde_json::Error) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_body", &e.to_string())
}

async fn requests(State(state): State<Arc<SimState>>) -> Response {
    Json(state.log.snapshot()).into_response()
}

async fn clear_requests(State(state): State<Arc<SimState>>) -> StatusCode {
    state.log.clear();
    StatusCode::NO_CONTENT
}

async fn get_config(State(state): State<Arc<SimState>>) -> Response {
    Json(state.with_config(|c| c.faults())).into_response()
}

async fn put_config(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let faults: Faults = match parse(&body) {
        Ok(faults) => faults,
        Err(e) => return bad_body(&e),
    };
    let current = state.with_config(|c| {
        c.apply(&faults);
        c.faults()
    });
    Json(current).into_response()
}

async fn list_instances(State(state): State<Arc<SimState>>) -> Response {
    Json(state.views(None)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddBody {
    instance_id: String,
    name: Option<String>,
}

/// Creates a service as someone else would: no id validation, no faults.
async fn add_instance(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match parse::<AddBody>(&body) {
        Ok(body) => Json(state.create(&body.instance_id, body.name.as_deref())).into_response(),
        Err(e) => bad_body(&e),
    }
}

async fn remove_instance(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    if state.remove(&id) { ok(&id) } else { not_found(&id) }
}

/// Deletes one Railway service by id, as an operator removes an orphan.
async fn delete_service(State(state): State<Arc<SimState>>, Path(service_id): Path<String>) -> Response {
    if state.remove_service(&service_id) {
        Json(json!({ "serviceId": service_id, "ok": true })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, "not_found", &format!("no service {service_id}"))
    }
}

/// The instance ids the services API holds rows (and tool resources) for.
async fn rows(State(state): State<Arc<SimState>>) -> Response {
    Json(state.rows()).into_response()
}

#[derive(Deserialize)]
struct StatusBody {
    status: Option<String>,
}

async fn deploy_status(State(state): State<Arc<SimState>>, Path(id): Path<String>, body: Bytes) -> Response {
    match parse::<StatusBody>(&body) {
        Ok(body) if state.set_override(&id, body.status.as_deref()) => ok(&id),
        Ok(_) => not_found(&id),
        Err(e) => bad_body(&e),
    }
}

#[derive(Deserialize)]
struct ReadyBody {
    ready: bool,
}

async fn ready(State(state): State<Arc<SimState>>, Path(id): Path<String>, body: Bytes) -> Response {
    match parse::<ReadyBody>(&body) {
        Ok(body) if state.set_ready(&id, body.ready) => ok(&id),
        Ok(_) => not_found(&id),
        Err(e) => bad_body(&e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindBody {
    conversation_id: String,
}

async fn bind(State(state): State<Arc<SimState>>, Path(id): Path<String>, body: Bytes) -> Response {
    match parse::<BindBody>(&body) {
        Ok(body) if state.bind(&id, &body.conversation_id) => ok(&id),
        Ok(_) => not_found(&id),
        Err(e) => bad_body(&e),
    }
}

fn ok(id: &str) -> Response {
    Json(json!({ "instanceId": id, "ok": true })).into_response()
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", &format!("no service for instance {id}"))
}

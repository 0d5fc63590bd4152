//! create-instance and destroy as upstream runs them (SPEC §5.1): a series of
//! provider calls, the Railway service made before services' own row, so a fault
//! part-way or a second call for one id leaves a service no row tracks; and a
//! destroy that drops its row even when Railway's delete failed.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{
    services::{instance_url, not_found},
    state::SimState,
};

/// Provider calls of one create: a tool before the service, the service, then its
/// variables, image, volume and domain.
const CREATE_CALLS: u32 = 6;
/// The last call whose failure fails the create: upstream carries on without a
/// volume or a domain (url null) rather than fail.
const LAST_FATAL_CALL: u32 = 4;
/// Provider calls of one destroy before Railway's delete: the tools and volumes.
const DESTROY_CALLS: u32 = 2;

fn upstream_error(message: &str) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": message }))).into_response()
}

/// Runs one create-instance to its end, whether or not the caller still waits.
pub(super) async fn run(state: Arc<SimState>, id: String, name: Option<String>, tools: Vec<String>) -> Response {
    let (call, idempotent, fault_rate) =
        state.with_config(|c| (c.provider_call, c.idempotent_create, c.create_fault_rate));
    if idempotent && state.row(&id).is_some() {
        return answer(&state, &id, &tools);
    }
    let fails_at = (rand::random::<f64>() < fault_rate).then(|| rand::random_range(2..=LAST_FATAL_CALL));
    pause(call).await;
    let service_id = state.create_service(&id, name.as_deref());
    for step in 2..=CREATE_CALLS {
        pause(call).await;
        if fails_at == Some(step) {
            return upstream_error("Railway API error: 500");
        }
    }
    state.assign_domain(&service_id);
    if !state.insert_row(&id, &service_id) {
        return upstream_error("duplicate key value violates unique constraint \"instance_infra_pkey\"");
    }
    answer(&state, &id, &tools)
}

/// The answer for services' row of `id`: its service, URL and tools.
fn answer(state: &SimState, id: &str, tools: &[String]) -> Response {
    let Some(view) = state.view(id) else { return upstream_error("service vanished during create") };
    let url = state.base_url().map(|base| instance_url(&base, id));
    let mut services = json!({ "service": { "id": view.service_id, "name": view.name } });
    for tool in tools {
        services[tool.as_str()] = json!({ "resourceId": format!("{tool}-{id}") });
    }
    Json(json!({ "instanceId": id, "serviceId": view.service_id, "url": url, "services": services })).into_response()
}

/// `DELETE /destroy/:id`: 404 without a row; otherwise the row goes, and the
/// service too unless Railway's delete fails.
pub(super) async fn destroy(state: Arc<SimState>, id: String) -> Response {
    let (call, fault_rate) = state.with_config(|c| (c.provider_call, c.destroy_fault_rate));
    if state.row(&id).is_none() {
        return not_found(&id);
    }
    for _ in 0..DESTROY_CALLS {
        pause(call).await;
    }
    let railway_fails = rand::random::<f64>() < fault_rate;
    let Some(service) = state.destroy(&id, railway_fails) else { return not_found(&id) };
    let destroyed = json!({ "service": service, "openrouter": true, "agentmail": true, "volumes": true });
    Json(json!({ "instanceId": id, "destroyed": destroyed })).into_response()
}

async fn pause(call: Duration) {
    if !call.is_zero() {
        tokio::time::sleep(call).await;
    }
}

//! Each simulated instance's own endpoints, under `/i/:id`: health, provision
//! (binding to a conversation) and convos status.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;

use super::{
    bearer_ok, error,
    state::{BindError, SimState},
};

/// The instance routes, with their auth applied.
pub(crate) fn routes(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/i/{id}/pool/health", get(health))
        .route("/i/{id}/pool/provision", post(provision))
        .route("/i/{id}/convos/status", get(convos_status))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

async fn auth(State(state): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    let key = state.with_config(|c| c.instance_api_key.clone());
    if !bearer_ok(request.headers(), key.as_deref()) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or invalid API key");
    }
    next.run(request).await
}

async fn health(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    match state.view(&id) {
        Some(view) => Json(json!({ "ready": view.ready })).into_response(),
        None => not_found(&id),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProvisionBody {
    agent_name: String,
    // `instructions` is accepted and ignored (serde skips unknown fields): the
    // simulated agent does nothing with it.
    join_url: Option<String>,
}

async fn provision(State(state): State<Arc<SimState>>, Path(id): Path<String>, body: Bytes) -> Response {
    if state.view(&id).is_none() {
        return not_found(&id);
    }
    let body = match serde_json::from_slice::<ProvisionBody>(&body) {
        Ok(body) if !body.agent_name.trim().is_empty() => body,
        _ => return error(StatusCode::BAD_REQUEST, "invalid_body", "agentName is required"),
    };
    if state.with_config(|c| c.bind_late) {
        return provision_binding_late(state, id, body.join_url.is_some()).await;
    }
    // Bound under the lock before the (slow) provisioning, so a concurrent second
    // provision of the same instance sees it bound.
    let conversation_id = match state.try_bind(&id) {
        Ok(conversation_id) => conversation_id,
        Err(BindError::NotFound) => return not_found(&id),
        Err(BindError::NotReady) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "instance is not ready");
        }
        Err(BindError::AlreadyBound) => return already_bound(&state).await,
    };
    let (provision_time, join_pending) = state.with_config(|c| (c.provision_time, c.join_pending));
    if !provision_time.is_zero() {
        tokio::time::sleep(provision_time).await;
    }
    let joining = body.join_url.is_some();
    // A join the other side has yet to accept has no conversation id to give yet.
    let answered_id = (!(joining && join_pending)).then_some(&conversation_id);
    Json(json!({
        "ok": true,
        "inviteUrl": format!("https://sim.convos.invalid/invite/{conversation_id}"),
        "conversationId": answered_id,
        "joined": joining,
    }))
    .into_response()
}

/// A provision as upstream's runs: it checks the binding on entry only, creates the
/// conversation at its end, and goes on when its caller hangs up.
async fn provision_binding_late(state: Arc<SimState>, id: String, joining: bool) -> Response {
    match state.view(&id) {
        None => return not_found(&id),
        Some(view) if view.conversation_id.is_some() => return already_bound(&state).await,
        Some(view) if !view.ready => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "instance is not ready");
        }
        Some(_) => {}
    }
    let task = tokio::spawn(async move {
        let provision_time = state.with_config(|c| c.provision_time);
        tokio::time::sleep(provision_time).await;
        state.bind_if_unbound(&id)
    });
    let Ok(Some(conversation_id)) = task.await else { return not_found("(gone during its provision)") };
    Json(json!({
        "ok": true,
        "inviteUrl": format!("https://sim.convos.invalid/invite/{conversation_id}"),
        "conversationId": conversation_id,
        "joined": joining,
    }))
    .into_response()
}

/// Upstream retries the gateway's 409 thirty times and answers 500; some versions
/// answer 409 at once.
async fn already_bound(state: &SimState) -> Response {
    let (conflict, delay) = state.with_config(|c| (c.rebind_conflict, c.rebind_time));
    if conflict {
        return error(StatusCode::CONFLICT, "already_bound", "already bound");
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let message = "Convos invite failed after 30 attempts: /convos/conversation returned 409: already bound";
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": message }))).into_response()
}

async fn convos_status(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Response {
    let Some(view) = state.view(&id) else {
        return not_found(&id);
    };
    if view.status_broken {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "broken", "status unavailable");
    }
    let conversation = view.conversation_id.as_ref().map(|id| json!({ "id": id }));
    Json(json!({
        "ready": view.ready,
        "conversation": conversation,
        // A bound, ready instance is streaming its conversation.
        "streaming": view.ready && view.conversation_id.is_some(),
    }))
    .into_response()
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", &format!("no instance {id}"))
}

//! `/api/pool/*`: counts and agents (reads), and the mutations that enqueue jobs.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, request::Parts},
    response::Response,
    routing::{delete, get, post},
};
use pool_jobs::{DismissCrashed, DrainIdle, EnrichMetadata, Job, KillInstance, Replenish};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    AppState, claim,
    error::ApiError,
    extract::{ApiJson, Authenticated, has_valid_key},
    respond::job_response,
};
use crate::{
    domain::{InstanceId, InstanceStatus},
    queue,
    store::{Counts, instances},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/pool/counts", get(counts))
        .route("/api/pool/agents", get(agents))
        .route("/api/pool/claim", post(claim::claim))
        .route("/api/pool/replenish", post(replenish))
        .route("/api/pool/drain", post(drain))
        .route("/api/pool/reconcile", post(reconcile))
        .route("/api/pool/enrich", post(enrich))
        .route("/api/pool/instances/{id}", delete(kill))
        .route("/api/pool/crashed/{id}", delete(dismiss))
}

async fn counts(State(state): State<AppState>) -> Result<Json<Counts>, ApiError> {
    Ok(Json(instances::counts(&state.db).await?))
}

async fn agents(State(state): State<AppState>, parts: Parts) -> Result<Json<Value>, ApiError> {
    let authed = has_valid_key(&parts, &state);
    let rows = instances::agents(&state.db).await?;
    let (mut claimed, mut crashed) = (Vec::new(), Vec::new());
    for row in rows {
        let mut agent = json!({
            "id": row.id, "name": row.name, "agentName": row.agent_name, "url": row.url,
            "status": row.status, "conversationId": row.conversation_id,
            "createdAt": row.created_at, "claimedAt": row.claimed_at,
        });
        if authed {
            agent["instructions"] = json!(row.instructions);
            agent["inviteUrl"] = json!(row.invite_url);
        }
        if row.status() == InstanceStatus::Crashed { crashed.push(agent) } else { claimed.push(agent) }
    }
    Ok(Json(json!({ "claimed": claimed, "crashed": crashed })))
}

/// `{"count": 1..20}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountBody {
    count: Option<u32>,
}

fn count_in_range(count: Option<u32>) -> Result<Option<u32>, ApiError> {
    match count {
        Some(n) if !(1..=20).contains(&n) => Err(ApiError::Validation("count must be between 1 and 20".into())),
        other => Ok(other),
    }
}

async fn replenish(
    State(state): State<AppState>,
    _: Authenticated,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CountBody>,
) -> Result<Response, ApiError> {
    let count = count_in_range(body.count)?;
    let mut conn = state.db.acquire().await?;
    let enqueued = match count {
        None => queue::enqueue_replenish(&mut conn, &state.config.jobs).await?,
        Some(_) => queue::enqueue(&mut conn, &Replenish { count }, &state.config.jobs).await?,
    };
    job_response(&state, &headers, enqueued.id()).await
}

async fn drain(
    State(state): State<AppState>,
    _: Authenticated,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CountBody>,
) -> Result<Response, ApiError> {
    let count = count_in_range(body.count)?.ok_or_else(|| ApiError::Validation("count is required".into()))?;
    enqueue_one(&state, &headers, &DrainIdle { count }).await
}

async fn reconcile(State(state): State<AppState>, _: Authenticated, headers: HeaderMap) -> Result<Response, ApiError> {
    let mut conn = state.db.acquire().await?;
    let enqueued = queue::enqueue_reconcile(&mut conn, &state.config.jobs).await?;
    job_response(&state, &headers, enqueued.id()).await
}

async fn enrich(
    State(state): State<AppState>,
    _: Authenticated,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EnrichMetadata>,
) -> Result<Response, ApiError> {
    enqueue_one(&state, &headers, &body).await
}

async fn kill(
    State(state): State<AppState>,
    _: Authenticated,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    existing_row(&state, &id).await?;
    enqueue_one(&state, &headers, &KillInstance { instance_id: id }).await
}

async fn dismiss(
    State(state): State<AppState>,
    _: Authenticated,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = existing_row(&state, &id).await?;
    if row.status() != InstanceStatus::Crashed {
        return Err(ApiError::Conflict { code: "not_crashed", message: format!("instance {id} is {}, not crashed", row.status) });
    }
    enqueue_one(&state, &headers, &DismissCrashed { instance_id: id }).await
}

async fn existing_row(state: &AppState, id: &str) -> Result<instances::InstanceRow, ApiError> {
    InstanceId::parse(id).map_err(|e| ApiError::Validation(e.to_string()))?;
    instances::get(&state.db, id).await?.ok_or_else(|| ApiError::NotFound(format!("no instance {id}")))
}

async fn enqueue_one<J: Job>(state: &AppState, headers: &HeaderMap, payload: &J) -> Result<Response, ApiError> {
    let mut conn = state.db.acquire().await?;
    let enqueued = queue::enqueue(&mut conn, payload, &state.config.jobs).await?;
    drop(conn);
    job_response(state, headers, enqueued.id()).await
}

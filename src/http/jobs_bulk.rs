//! `POST /api/jobs/retry` and `POST /api/jobs/cancel`: an operator action on every
//! job a filter selects (the filter of the job list).

use axum::{Json, Router, extract::State, routing::post};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    error::{ApiError, ErrorBody},
    extract::{ApiJson, Authenticated},
};
use crate::store::jobs::{self, Filter, JobState};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/jobs/retry", post(retry_all)).route("/api/jobs/cancel", post(cancel_all))
}

/// Which jobs: at least one of the two.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkBody {
    /// A job kind, e.g. `provision_instance`.
    kind: Option<String>,
    /// Retry: `failed` or `cancelled`; cancel: `queued` or `running`.
    status: Option<JobState>,
}

/// What a bulk retry did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retried {
    retried: usize,
    ids: Vec<String>,
}

/// What a bulk cancel did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cancelled {
    /// Queued jobs now `cancelled`.
    cancelled: i64,
    /// Running jobs asked to stop at their next safe point.
    stop_requested: i64,
}

fn filter(body: BulkBody, allowed: [JobState; 2]) -> Result<Filter, ApiError> {
    if body.kind.is_none() && body.status.is_none() {
        return Err(ApiError::Validation("give a kind, a status or both".into()));
    }
    if let Some(kind) = &body.kind
        && !pool_jobs::KINDS.contains(&kind.as_str())
    {
        return Err(ApiError::Validation(format!("unknown job kind {kind:?}; known: {}", pool_jobs::KINDS.join(", "))));
    }
    if let Some(state) = body.status
        && !allowed.contains(&state)
    {
        let [a, b] = allowed.map(JobState::as_str);
        return Err(ApiError::Validation(format!("status must be {a} or {b} for this action")));
    }
    Ok(Filter { kind: body.kind, state: body.status })
}

/// Every failed or cancelled job the filter selects back to `queued`, attempts reset
/// (of jobs sharing a singleton key, only the newest; none while one is active).
#[utoipa::path(post, path = "/api/jobs/retry", tag = "jobs", request_body = BulkBody, security(("bearer" = [])),
    responses((status = 200, description = "The jobs queued again", body = Retried),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub async fn retry_all(
    State(state): State<AppState>,
    _: Authenticated,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<Retried>, ApiError> {
    let filter = filter(body, [JobState::Failed, JobState::Cancelled])?;
    let ids = jobs::retry_all(&state.db, &filter).await?;
    tracing::info!(retried = ids.len(), kind = ?filter.kind, "jobs re-queued by operator");
    Ok(Json(Retried { retried: ids.len(), ids }))
}

/// Cancels every queued job the filter selects; asks the running ones to stop.
#[utoipa::path(post, path = "/api/jobs/cancel", tag = "jobs", request_body = BulkBody, security(("bearer" = [])),
    responses((status = 200, description = "What was cancelled or asked to stop", body = Cancelled),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub async fn cancel_all(
    State(state): State<AppState>,
    _: Authenticated,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<Cancelled>, ApiError> {
    let filter = filter(body, [JobState::Queued, JobState::Running])?;
    let (cancelled, stop_requested) = jobs::cancel_all(&state.db, &filter).await?;
    tracing::info!(cancelled, stop_requested, kind = ?filter.kind, "jobs cancelled by operator");
    Ok(Json(Cancelled { cancelled, stop_requested }))
}

//! `POST /api/jobs/retry` and `POST /api/jobs/cancel`: an operator action on every
//! job a filter selects (the filter of the job list).

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState,
    auth::Operator,
    error::{ApiError, ErrorBody, Unauthorized},
    extract::{ApiJson, present},
};
use crate::{
    domain::JobId,
    store::jobs::{self, Filter, JobState},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(retry_all)).routes(routes!(cancel_all))
}

/// Which jobs to retry: at least one of the two.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryFilter {
    /// A job kind, e.g. `provision_instance`.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::kind_schema)]
    kind: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    status: Option<Retryable>,
}

/// Which jobs to cancel: at least one of the two.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelFilter {
    /// A job kind, e.g. `provision_instance`.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::kind_schema)]
    kind: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    status: Option<Cancellable>,
}

/// The states a retry applies to.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Retryable {
    Failed,
    Cancelled,
}

impl From<Retryable> for JobState {
    fn from(state: Retryable) -> Self {
        match state {
            Retryable::Failed => Self::Failed,
            Retryable::Cancelled => Self::Cancelled,
        }
    }
}

/// The states a cancel applies to.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cancellable {
    Queued,
    Running,
}

/// What a bulk retry did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retried {
    retried: usize,
    #[schema(value_type = Vec<String>)]
    ids: Vec<JobId>,
    /// Jobs not retried because an active job of their kind holds their dedupe key.
    #[schema(value_type = Vec<String>)]
    skipped: Vec<JobId>,
    /// Claims not retried: they ended waiting in line for an instance, holding none,
    /// and their clients were answered then (`no_idle_instance`, or cancelled).
    #[schema(value_type = Vec<String>)]
    answered_claims: Vec<JobId>,
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

impl From<Cancellable> for JobState {
    fn from(state: Cancellable) -> Self {
        match state {
            Cancellable::Queued => Self::Queued,
            Cancellable::Running => Self::Running,
        }
    }
}

fn filter(kind: Option<String>, state: Option<JobState>) -> Result<Filter, ApiError> {
    if kind.is_none() && state.is_none() {
        return Err(ApiError::Validation("give a kind, a status or both".into()));
    }
    let kind = kind.as_deref().map(crate::jobs::kind_named).transpose().map_err(ApiError::Validation)?;
    Ok(Filter { kind, state })
}

/// Every failed or cancelled job the filter selects back to `queued`, attempts reset
/// (of jobs sharing a singleton key, only the newest; none while one is active: those
/// are `skipped`; claims that ended waiting in line stay, see `answeredClaims`).
#[utoipa::path(post, path = "/api/jobs/retry", tag = "jobs", request_body = RetryFilter, security(("bearer" = [])),
    responses((status = 200, description = "The jobs queued again", body = Retried),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        Unauthorized,
    ))]
pub async fn retry_all(
    State(state): State<AppState>,
    _: Operator,
    ApiJson(body): ApiJson<RetryFilter>,
) -> Result<Json<Retried>, ApiError> {
    let filter = filter(body.kind, body.status.map(JobState::from))?;
    let mut conn = state.db.acquire().await?;
    let jobs::Retried { ids, skipped, answered_claims } = jobs::retry_all(&mut conn, &filter).await?;
    tracing::info!(retried = ids.len(), skipped = skipped.len(), answered_claims = answered_claims.len(),
        kind = ?filter.kind, "jobs re-queued by operator");
    Ok(Json(Retried { retried: ids.len(), ids, skipped, answered_claims }))
}

/// Cancels every queued job the filter selects; asks the running ones to stop.
#[utoipa::path(post, path = "/api/jobs/cancel", tag = "jobs", request_body = CancelFilter, security(("bearer" = [])),
    responses((status = 200, description = "What was cancelled or asked to stop", body = Cancelled),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        Unauthorized,
    ))]
pub async fn cancel_all(
    State(state): State<AppState>,
    _: Operator,
    ApiJson(body): ApiJson<CancelFilter>,
) -> Result<Json<Cancelled>, ApiError> {
    let filter = filter(body.kind, body.status.map(JobState::from))?;
    let (cancelled, stop_requested) = jobs::cancel_all(&state.db, &filter).await?;
    tracing::info!(cancelled, stop_requested, kind = ?filter.kind, "jobs cancelled by operator");
    Ok(Json(Cancelled { cancelled, stop_requested }))
}

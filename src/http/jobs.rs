//! `/api/jobs/*`: a job's document and operator actions on it.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::HeaderMap,
    response::Response,
    routing::{get, post},
};

use super::{AppState, error::ApiError, extract::Authenticated, respond::job_response};
use crate::{
    queue::JobDoc,
    store::jobs::{self, ActionError},
};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/jobs/{id}", get(show)).route("/api/jobs/{id}/retry", post(retry))
}

/// The job; with `Prefer: wait=N` held until it finishes.
async fn show(State(state): State<AppState>, _: Authenticated, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    job_response(&state, &headers, &id).await
}

/// A failed or cancelled job back to `queued` with its attempts reset.
async fn retry(State(state): State<AppState>, _: Authenticated, Path(id): Path<String>) -> Result<Json<JobDoc>, ApiError> {
    let mut conn = state.db.acquire().await?;
    match jobs::retry(&mut conn, &id).await {
        Ok(row) => {
            tracing::info!(job_id = %id, kind = %row.job_type, "job re-queued by operator");
            Ok(Json(JobDoc::from(row)))
        }
        Err(ActionError::NotFound) => Err(ApiError::NotFound(format!("no job {id}"))),
        Err(ActionError::Conflict(state)) => {
            Err(ApiError::Conflict { code: "job_not_retryable", message: format!("job {id} is {state}; only failed or cancelled jobs can be retried") })
        }
        Err(ActionError::Db(err)) => Err(err.into()),
    }
}

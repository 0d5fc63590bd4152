//! `/api/jobs/kinds`: every job kind with its queue, and pause / resume. A paused
//! kind's jobs stay queued until it is resumed; runs already started finish.

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState,
    auth::Operator,
    error::{ApiError, ErrorBody, Unauthorized, UnexpectedBody},
    extract::{ApiJson, EmptyBody},
};
use crate::{
    domain::JobKind,
    store::jobs::{self, pauses},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(pause)).routes(routes!(resume))
}

/// A job kind, whether it is paused, and its jobs waiting or running.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindState {
    kind: &'static str,
    paused: bool,
    paused_at: Option<DateTime<Utc>>,
    queued: i64,
    running: i64,
}

/// Every kind.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Kinds {
    kinds: Vec<KindState>,
}

/// Every job kind with its queue and pause.
#[utoipa::path(get, path = "/api/jobs/kinds", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Kinds), Unauthorized))]
async fn list(State(state): State<AppState>, _: Operator) -> Result<Json<Kinds>, ApiError> {
    Ok(Json(Kinds { kinds: kind_states(&state, None).await? }))
}

/// Pauses a kind: its queued jobs stay queued (also new ones) until it is resumed.
#[utoipa::path(post, path = "/api/jobs/kinds/{kind}/pause", tag = "jobs", request_body(content = Option<EmptyBody>),
    security(("bearer" = [])), params(("kind" = String, Path, description = "A job kind")),
    responses((status = 200, body = KindState),
        UnexpectedBody,
        Unauthorized,
        (status = 404, description = "Unknown kind", body = ErrorBody)))]
async fn pause(
    State(state): State<AppState>,
    _: Operator,
    Path(kind): Path<String>,
    ApiJson(EmptyBody {}): ApiJson<EmptyBody>,
) -> Result<Json<KindState>, ApiError> {
    set_paused(&state, &kind, true).await
}

/// Resumes a kind: workers take its queued jobs at once.
#[utoipa::path(post, path = "/api/jobs/kinds/{kind}/resume", tag = "jobs", request_body(content = Option<EmptyBody>),
    security(("bearer" = [])), params(("kind" = String, Path, description = "A job kind")),
    responses((status = 200, body = KindState),
        UnexpectedBody,
        Unauthorized,
        (status = 404, description = "Unknown kind", body = ErrorBody)))]
async fn resume(
    State(state): State<AppState>,
    _: Operator,
    Path(kind): Path<String>,
    ApiJson(EmptyBody {}): ApiJson<EmptyBody>,
) -> Result<Json<KindState>, ApiError> {
    set_paused(&state, &kind, false).await
}

async fn set_paused(state: &AppState, kind: &str, paused: bool) -> Result<Json<KindState>, ApiError> {
    let kind = crate::jobs::kind_named(kind).map_err(ApiError::NotFound)?;
    if paused {
        pauses::pause(&state.db, kind).await?;
    } else {
        pauses::resume(&state.db, kind).await?;
    }
    tracing::info!(kind = %kind, paused, "job kind paused or resumed by operator");
    let mut states = kind_states(state, Some(kind)).await?;
    states.pop().map(Json).ok_or_else(|| ApiError::NotFound(format!("unknown job kind {kind:?}")))
}

async fn kind_states(state: &AppState, only: Option<JobKind>) -> Result<Vec<KindState>, ApiError> {
    let paused = pauses::paused(&state.db).await?;
    let totals = jobs::totals_by_kind(&state.db).await?;
    let count = |kind: &str, st: &str| totals.iter().find(|(k, s, _)| k == kind && s == st).map_or(0, |t| t.2);
    Ok(crate::jobs::KINDS
        .iter()
        .copied()
        .filter(|kind| only.is_none_or(|o| o == *kind))
        .map(|kind| {
            let pause = paused.iter().find(|p| p.kind == kind);
            KindState {
                kind: kind.as_str(),
                paused: pause.is_some(),
                paused_at: pause.map(|p| p.paused_at),
                queued: count(&kind, "queued"),
                running: count(&kind, "running"),
            }
        })
        .collect())
}

//! Liveness, readiness and version: the routes a platform's health checks call.

use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState,
    error::{ApiError, Busy, ErrorBody},
    reads::ReadPermit,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(version))
        .routes(routes!(metrics))
}

/// Prometheus metrics of the whole fleet.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), Busy))]
async fn metrics(
    State(state): State<AppState>,
    _: ReadPermit,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    let page =
        crate::metrics::render(&state.db, state.config.buffer_settings(), state.config.jobs.rescue_after).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], page))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "`{\"ok\": true}`")))]
async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

/// The database answers.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "Ready"), (status = 503, description = "Database unavailable", body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if crate::db::ping(&state.db).await {
        Ok(Json(json!({ "ok": true, "database": "up" })))
    } else {
        Err(ApiError::Unavailable { code: "database_unavailable", message: "database is not answering".into() })
    }
}

/// Build version, commit and environment.
#[utoipa::path(get, path = "/version", tag = "ops", responses((status = 200, description = "`{version, commit, environment}`")))]
async fn version(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("POOL_GIT_COMMIT").unwrap_or("unknown"),
        "environment": state.config.environment.as_str(),
    });
    (StatusCode::OK, Json(body))
}

//! Liveness, readiness and version: the routes a platform's health checks call.

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde_json::{Value, json};

use super::{AppState, error::ApiError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if crate::db::ping(&state.db).await {
        Ok(Json(json!({ "ok": true, "database": "up" })))
    } else {
        Err(ApiError::Unavailable { code: "database_unavailable", message: "database is not answering".into() })
    }
}

async fn version(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("POOL_GIT_COMMIT").unwrap_or("unknown"),
        "environment": state.config.environment.as_str(),
    });
    (StatusCode::OK, Json(body))
}

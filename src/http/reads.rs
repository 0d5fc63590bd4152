//! Expensive reads (the fleet, the charts, agents, the job list, `/metrics`) take a
//! permit: a few at a time per web process, so a flood of them cannot take the
//! database connections claims need. Without a free permit a read is shed at once
//! with 503 and `Retry-After`, never queued.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{AppState, auth::Operator, error::ApiError};

/// Permits held for the length of one expensive read.
pub struct ReadPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// Expensive reads at once, out of `max_connections` database connections: half of
/// them (a dashboard loads four at once), so claims always find connections free.
pub fn permits(max_connections: u32) -> Arc<Semaphore> {
    Arc::new(Semaphore::new((max_connections / 2).max(1) as usize))
}

impl FromRequestParts<AppState> for ReadPermit {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.reads.clone().try_acquire_owned().map(Self).map_err(|_| ApiError::Busy)
    }
}

/// An operator's expensive read: the key checked, then a permit held for the read.
pub struct OperatorRead {
    pub state: AppState,
    _permit: ReadPermit,
}

impl FromRequestParts<AppState> for OperatorRead {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Operator::from_request_parts(parts, state).await?;
        let permit = ReadPermit::from_request_parts(parts, state).await?;
        Ok(Self { state: state.clone(), _permit: permit })
    }
}

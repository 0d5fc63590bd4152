//! The original service's claim contract (SPEC §9), for clients written against it
//! that cannot move to job documents yet: the request waits for the claim and answers
//! `200 {"inviteUrl","conversationId","instanceId","joined","gatewayUrl"}`, or an error
//! with `{"error"}` (503 when the pool is empty, as the original did). Chosen by
//! `POOL_CLAIM_CONTRACT=original`, or per request with `Pool-Claim-Contract: original`
//! (and `Pool-Claim-Contract: jobs` opts out where the setting is `original`).

use axum::{
    Json,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{
    AppState,
    error::ApiError,
    wait::{MAX_WAIT, Subscription},
};
use crate::{config::ClaimContract, domain::JobId, store::jobs::JobState};

/// The original service's answer to a claim.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OriginalClaim {
    #[schema(required = true)]
    invite_url: Option<String>,
    #[schema(required = true)]
    conversation_id: Option<String>,
    #[schema(required = true)]
    instance_id: Option<String>,
    #[schema(required = true)]
    joined: Option<bool>,
    #[schema(required = true)]
    gateway_url: Option<String>,
}

/// The original service's error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OriginalError {
    error: String,
}

/// A claim's `200`: the finished job, or (original contract) the claim itself.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ClaimAnswer {
    Job(crate::queue::JobDoc),
    Original(OriginalClaim),
}

/// Header a client names its contract with.
const HEADER: &str = "pool-claim-contract";

/// Whether this request gets the original contract.
pub fn wanted(headers: &HeaderMap, default: ClaimContract) -> Result<bool, ApiError> {
    let contract = match headers.get(HEADER).map(|v| v.to_str().unwrap_or_default().parse::<ClaimContract>()) {
        None => default,
        Some(Ok(contract)) => contract,
        Some(Err(err)) => return Err(ApiError::Validation(format!("Pool-Claim-Contract: {err}"))),
    };
    Ok(contract == ClaimContract::Original)
}

/// Waits for claim job `id` (enqueued after `subscription`) and answers as the
/// original service did.
pub async fn respond(state: &AppState, subscription: Subscription, id: &JobId) -> Result<Response, ApiError> {
    let Some(job) = subscription.wait_new(&state.db, id, MAX_WAIT).await? else {
        return Err(ApiError::NotFound(format!("no job {id}")));
    };
    let error = |status: StatusCode, error: String| (status, Json(OriginalError { error })).into_response();
    Ok(match job.status {
        JobState::Succeeded => {
            let result = job.result.unwrap_or(Value::Null);
            let text = |name: &str| result.get(name).and_then(Value::as_str).map(str::to_owned);
            let body = OriginalClaim {
                invite_url: text("inviteUrl"),
                conversation_id: text("conversationId"),
                instance_id: text("instanceId"),
                joined: result.get("joined").and_then(Value::as_bool),
                gateway_url: text("gatewayUrl"),
            };
            (StatusCode::OK, Json(body)).into_response()
        }
        JobState::Failed | JobState::Cancelled => {
            let reason = job.error.unwrap_or_else(|| "the claim failed".into());
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("claim failed: {reason}"))
        }
        JobState::Queued | JobState::Running => {
            error(StatusCode::GATEWAY_TIMEOUT, format!("claim still running after {}s; job {id}", MAX_WAIT.as_secs()))
        }
    })
}

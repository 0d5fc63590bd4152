//! `/api/pool/*`: counts and agents (reads); the mutations, which enqueue jobs, are
//! [`super::pool_actions`]'s.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState,
    auth::{Caller, Scope},
    claim,
    error::{ApiError, Busy, Invalid, Unauthorized},
    extract::{ApiQuery, page},
    fleet, pool_actions,
    reads::ReadPermit,
};
use crate::{domain::InstanceStatus, store::instances};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(counts))
        .routes(routes!(agents))
        .routes(routes!(claim::claim))
        .routes(routes!(pool_actions::replenish))
        .routes(routes!(pool_actions::drain))
        .routes(routes!(pool_actions::reconcile))
        .routes(routes!(pool_actions::enrich))
        .routes(routes!(pool_actions::kill))
        .routes(routes!(pool_actions::dismiss))
}

/// Instances per status, claims waiting for one, and the warm target with its reasons.
#[utoipa::path(get, path = "/api/pool/counts", tag = "pool", responses((status = 200, body = fleet::PoolCounts)))]
async fn counts(State(state): State<AppState>) -> Result<Json<fleet::PoolCounts>, ApiError> {
    fleet::pool_counts(&state).await.map(Json)
}

/// `?limit=&offset=&instructions=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentsParams {
    limit: Option<i64>,
    offset: Option<i64>,
    instructions: Option<bool>,
}

const AGENTS_PAGE: i64 = 100;
const AGENTS_MAX_PAGE: i64 = 500;

/// Claimed and crashed agents, newest claim first, a page at a time; `instructions`
/// and `inviteUrl` only with an operator key (`instructions=false` leaves the
/// instructions out even then).
#[utoipa::path(get, path = "/api/pool/agents", tag = "pool",
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "rows per page, default 100"),
           ("offset" = Option<i64>, Query, minimum = 0, maximum = 10_000_000, description = "`nextOffset` of the previous page"),
           ("instructions" = Option<bool>, Query, description = "include instructions (with an operator key); default true")),
    responses((status = 200, body = Agents), Invalid, Unauthorized, Busy))]
async fn agents(
    State(state): State<AppState>,
    _: ReadPermit,
    ApiQuery(params): ApiQuery<AgentsParams>,
    Caller(scope): Caller,
) -> Result<Json<Agents>, ApiError> {
    let authed = scope == Some(Scope::Operator);
    let (limit, offset) = page(params.limit, params.offset, AGENTS_PAGE, AGENTS_MAX_PAGE)?;
    let with_instructions = authed && params.instructions.unwrap_or(true);
    // One more than asked tells whether another page follows.
    let mut rows = instances::agents(&state.db, limit + 1, offset, with_instructions).await?;
    let next_offset = (rows.len() as i64 > limit).then_some(offset + limit);
    rows.truncate(limit as usize);
    let (mut claimed, mut crashed) = (Vec::new(), Vec::new());
    for row in rows {
        let is_crashed = row.status() == InstanceStatus::Crashed;
        let agent = Agent {
            instructions: row.instructions.filter(|_| authed),
            invite_url: row.invite_url.filter(|_| authed),
            id: row.id.to_string(),
            name: row.name,
            agent_name: row.agent_name,
            url: row.url,
            status: row.status.to_string(),
            conversation_id: row.conversation_id,
            created_at: row.created_at,
            claimed_at: row.claimed_at,
        };
        if is_crashed { crashed.push(agent) } else { claimed.push(agent) }
    }
    Ok(Json(Agents { claimed, crashed, next_offset }))
}

/// One agent in `/api/pool/agents`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    id: String,
    name: Option<String>,
    agent_name: Option<String>,
    url: Option<String>,
    status: String,
    conversation_id: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    claimed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Only with the API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<String>,
    /// Only with the API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    invite_url: Option<String>,
}

/// `/api/pool/agents`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Agents {
    claimed: Vec<Agent>,
    crashed: Vec<Agent>,
    /// The `offset` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_offset: Option<i64>,
}

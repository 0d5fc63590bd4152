//! `/api/pool/*`: counts and agents (reads), and the mutations that enqueue jobs.

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
    response::Response,
};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState,
    auth::{Caller, Operator, Scope},
    claim,
    error::{ApiError, Busy, ErrorBody, Invalid, Unauthorized, UnexpectedBody, UnknownId},
    extract::{ApiJson, ApiQuery, EmptyBody, page, whole_number},
    fleet,
    reads::ReadPermit,
    respond::{JobResponses, PreferWait, job_response},
};
use crate::{
    domain::{InstanceId, InstanceStatus},
    jobs::{
        dismiss_crashed::DismissCrashed, drain_idle::DrainIdle, enrich_metadata::EnrichMetadata,
        kill_instance::KillInstance, replenish::Replenish,
    },
    queue,
    store::{
        instances,
        jobs::{self, NewJob},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(counts))
        .routes(routes!(agents))
        .routes(routes!(claim::claim))
        .routes(routes!(replenish))
        .routes(routes!(drain))
        .routes(routes!(reconcile))
        .routes(routes!(enrich))
        .routes(routes!(kill))
        .routes(routes!(dismiss))
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

/// `{"count": 1..20}`, required.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainBody {
    /// 1–20.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(value_type = u32, required = true, minimum = 1, maximum = 20)]
    count: Option<u32>,
}

/// `{"count": 1..20}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountBody {
    /// 1–20.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 20)]
    count: Option<u32>,
}

/// `{"all": bool, "dryRun": bool}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichBody {
    /// Refresh every row, not only rows missing metadata.
    #[serde(default)]
    all: bool,
    /// Report without writing.
    #[serde(default)]
    dry_run: bool,
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

fn count_in_range(count: Option<u32>) -> Result<Option<u32>, ApiError> {
    match count {
        Some(n) if !(1..=20).contains(&n) => Err(ApiError::Validation("count must be between 1 and 20".into())),
        other => Ok(other),
    }
}

/// Top up to `POOL_MIN_IDLE`, or add `count` instances.
#[utoipa::path(post, path = "/api/pool/replenish", tag = "pool", request_body(content = Option<CountBody>), security(("bearer" = [])), params(PreferWait),
    responses(
        JobResponses,
        Invalid,
        Unauthorized,
    ))]
async fn replenish(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CountBody>,
) -> Result<Response, ApiError> {
    let job = match count_in_range(body.count)? {
        None => queue::replenish_job(&state.config.jobs),
        count => queue::new_job(&Replenish { count }, &state.config.jobs),
    };
    enqueue_and_respond(&state, &headers, job).await
}

/// Remove `count` idle (then provisioning) instances.
#[utoipa::path(post, path = "/api/pool/drain", tag = "pool", request_body = DrainBody, security(("bearer" = [])), params(PreferWait),
    responses(
        JobResponses,
        Invalid,
        Unauthorized,
    ))]
async fn drain(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    ApiJson(body): ApiJson<DrainBody>,
) -> Result<Response, ApiError> {
    let count = count_in_range(body.count)?.ok_or_else(|| ApiError::Validation("count is required".into()))?;
    enqueue_and_respond(&state, &headers, queue::new_job(&DrainIdle { count }, &state.config.jobs)).await
}

/// Sync with the provider; answers the queued or running reconcile if there is one.
#[utoipa::path(post, path = "/api/pool/reconcile", tag = "pool", request_body(content = Option<EmptyBody>), security(("bearer" = [])), params(PreferWait),
    responses(
        JobResponses,
        UnexpectedBody,
        Unauthorized,
    ))]
async fn reconcile(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    ApiJson(EmptyBody {}): ApiJson<EmptyBody>,
) -> Result<Response, ApiError> {
    enqueue_and_respond(&state, &headers, queue::reconcile_job(&state.config.jobs)).await
}

/// Backfill instance metadata from the provider.
#[utoipa::path(post, path = "/api/pool/enrich", tag = "pool", request_body(content = Option<EnrichBody>), security(("bearer" = [])), params(PreferWait),
    responses(
        JobResponses,
        Invalid,
        Unauthorized,
    ))]
async fn enrich(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EnrichBody>,
) -> Result<Response, ApiError> {
    let payload = EnrichMetadata { all: body.all, dry_run: body.dry_run };
    enqueue_and_respond(&state, &headers, queue::new_job(&payload, &state.config.jobs)).await
}

/// Destroy an instance, whatever its status.
#[utoipa::path(delete, path = "/api/pool/instances/{id}", tag = "pool", security(("bearer" = [])), params(("id" = String, Path, pattern = r"^[A-Za-z0-9_-]{12}$", description = "instance id"), PreferWait),
    responses(
        JobResponses,
        Invalid,
        Unauthorized,
        UnknownId,
    ))]
async fn kill(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    existing_row(&state, &id).await?;
    enqueue_and_respond(&state, &headers, queue::new_job(&KillInstance { instance_id: id }, &state.config.jobs)).await
}

/// Destroy a crashed instance.
#[utoipa::path(delete, path = "/api/pool/crashed/{id}", tag = "pool", security(("bearer" = [])), params(("id" = String, Path, pattern = r"^[A-Za-z0-9_-]{12}$", description = "instance id"), PreferWait),
    responses(
        JobResponses,
        Invalid,
        Unauthorized,
        UnknownId,
        (status = 409, description = "Not crashed", body = ErrorBody),
    ))]
async fn dismiss(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = existing_row(&state, &id).await?;
    if row.status() != InstanceStatus::Crashed {
        return Err(ApiError::Conflict {
            code: "not_crashed",
            message: format!("instance {id} is {}, not crashed", row.status),
        });
    }
    let job = queue::new_job(&DismissCrashed { instance_id: id }, &state.config.jobs);
    enqueue_and_respond(&state, &headers, job).await
}

async fn existing_row(state: &AppState, id: &str) -> Result<instances::InstanceRow, ApiError> {
    InstanceId::parse(id).map_err(|e| ApiError::Validation(e.to_string()))?;
    instances::get(&state.db, id).await?.ok_or_else(|| ApiError::NotFound(format!("no instance {id}")))
}

/// Enqueues `job` (or finds the job holding its dedupe key) and answers with it. The
/// connection goes back to the pool before a `Prefer: wait` starts waiting.
async fn enqueue_and_respond(state: &AppState, headers: &HeaderMap, job: NewJob) -> Result<Response, ApiError> {
    let enqueued = {
        let mut conn = state.db.acquire().await?;
        jobs::enqueue(&mut conn, &job).await?
    };
    job_response(state, headers, enqueued.id()).await
}

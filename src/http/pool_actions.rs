//! `/api/pool/*` mutations: each validates its body, enqueues one job and answers
//! with it (202, or the finished job with `Prefer: wait`).

use axum::{
    extract::{FromRequestParts, Path},
    http::request::Parts,
    response::Response,
};
use serde::Deserialize;

use super::{
    AppState,
    auth::Operator,
    error::{ApiError, ErrorBody, Invalid, Unauthorized, UnexpectedBody, UnknownId},
    extract::{ApiJson, EmptyBody, whole_number},
    respond::{JobResponses, PreferWait, Wait, job_response},
};
use crate::{
    domain::{InstanceId, InstanceStatus},
    jobs::{
        Job, dismiss_crashed::DismissCrashed, drain_idle::DrainIdle, enrich_metadata::EnrichMetadata,
        kill_instance::KillInstance, replenish::Replenish,
    },
    queue,
    store::{
        instances,
        jobs::{self, NewJob},
    },
};

/// An operator's request that enqueues a job: the key checked, and the wait it asked
/// for.
pub struct Mutation {
    state: AppState,
    wait: Wait,
}

impl FromRequestParts<AppState> for Mutation {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Operator::from_request_parts(parts, state).await?;
        let Ok(wait) = Wait::from_request_parts(parts, state).await;
        Ok(Self { state: state.clone(), wait })
    }
}

impl Mutation {
    fn job<J: Job>(&self, payload: &J) -> NewJob {
        queue::new_job(payload, &self.state.config.jobs)
    }

    /// Enqueues `job` (or finds the job holding its dedupe key) and answers with it.
    /// The connection goes back to the pool before a `Prefer: wait` starts waiting.
    async fn enqueue(self, job: NewJob) -> Result<Response, ApiError> {
        let enqueued = {
            let mut conn = self.state.db.acquire().await?;
            jobs::enqueue(&mut conn, &job).await?
        };
        job_response(&self.state, self.wait, enqueued.id()).await
    }

    async fn existing_row(&self, id: &str) -> Result<instances::InstanceRow, ApiError> {
        let id = InstanceId::parse(id).map_err(|e| ApiError::Validation(e.to_string()))?;
        instances::get(&self.state.db, &id).await?.ok_or_else(|| ApiError::NotFound(format!("no instance {id}")))
    }
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

fn count_in_range(count: Option<u32>) -> Result<Option<u32>, ApiError> {
    match count {
        Some(n) if !(1..=20).contains(&n) => Err(ApiError::Validation("count must be between 1 and 20".into())),
        other => Ok(other),
    }
}

/// Top up to `POOL_MIN_IDLE`, or add `count` instances.
#[utoipa::path(post, path = "/api/pool/replenish", tag = "pool", request_body(content = Option<CountBody>), security(("bearer" = [])), params(PreferWait),
    responses(JobResponses, Invalid, Unauthorized))]
pub async fn replenish(op: Mutation, ApiJson(body): ApiJson<CountBody>) -> Result<Response, ApiError> {
    let job = match count_in_range(body.count)? {
        None => queue::replenish_job(&op.state.config.jobs),
        count => op.job(&Replenish { count }),
    };
    op.enqueue(job).await
}

/// Remove `count` idle (then provisioning) instances.
#[utoipa::path(post, path = "/api/pool/drain", tag = "pool", request_body = DrainBody, security(("bearer" = [])), params(PreferWait),
    responses(JobResponses, Invalid, Unauthorized))]
pub async fn drain(op: Mutation, ApiJson(body): ApiJson<DrainBody>) -> Result<Response, ApiError> {
    let count = count_in_range(body.count)?.ok_or_else(|| ApiError::Validation("count is required".into()))?;
    let job = op.job(&DrainIdle { count });
    op.enqueue(job).await
}

/// Sync with the provider; answers the queued or running reconcile if there is one.
#[utoipa::path(post, path = "/api/pool/reconcile", tag = "pool", request_body(content = Option<EmptyBody>), security(("bearer" = [])), params(PreferWait),
    responses(JobResponses, UnexpectedBody, Unauthorized))]
pub async fn reconcile(op: Mutation, ApiJson(EmptyBody {}): ApiJson<EmptyBody>) -> Result<Response, ApiError> {
    let job = queue::reconcile_job(&op.state.config.jobs);
    op.enqueue(job).await
}

/// Backfill instance metadata from the provider.
#[utoipa::path(post, path = "/api/pool/enrich", tag = "pool", request_body(content = Option<EnrichBody>), security(("bearer" = [])), params(PreferWait),
    responses(JobResponses, Invalid, Unauthorized))]
pub async fn enrich(op: Mutation, ApiJson(body): ApiJson<EnrichBody>) -> Result<Response, ApiError> {
    let job = op.job(&EnrichMetadata { all: body.all, dry_run: body.dry_run });
    op.enqueue(job).await
}

/// Destroy an instance, whatever its status.
#[utoipa::path(delete, path = "/api/pool/instances/{id}", tag = "pool", security(("bearer" = [])), params(("id" = String, Path, pattern = r"^[A-Za-z0-9_-]{12}$", description = "instance id"), PreferWait),
    responses(JobResponses, Invalid, Unauthorized, UnknownId))]
pub async fn kill(op: Mutation, Path(id): Path<String>) -> Result<Response, ApiError> {
    op.existing_row(&id).await?;
    let job = op.job(&KillInstance { instance_id: id });
    op.enqueue(job).await
}

/// Destroy a crashed instance.
#[utoipa::path(delete, path = "/api/pool/crashed/{id}", tag = "pool", security(("bearer" = [])), params(("id" = String, Path, pattern = r"^[A-Za-z0-9_-]{12}$", description = "instance id"), PreferWait),
    responses(JobResponses, Invalid, Unauthorized, UnknownId, (status = 409, description = "Not crashed", body = ErrorBody)))]
pub async fn dismiss(op: Mutation, Path(id): Path<String>) -> Result<Response, ApiError> {
    let row = op.existing_row(&id).await?;
    if row.status() != InstanceStatus::Crashed {
        let message = format!("instance {id} is {}, not crashed", row.status);
        return Err(ApiError::Conflict { code: "not_crashed", message });
    }
    let job = op.job(&DismissCrashed { instance_id: id });
    op.enqueue(job).await
}

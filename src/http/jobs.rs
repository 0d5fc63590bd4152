//! `/api/jobs/*`: a job's document and operator actions on it.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
    response::Response,
};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState,
    auth::{Claimant, Operator, Scope},
    error::{ApiError, Busy, ErrorBody, Invalid, Unauthorized, UnexpectedBody, UnknownId},
    extract::{ApiJson, ApiQuery, EmptyBody},
    reads::OperatorRead,
    respond::{PreferWait, Wait, job_document},
};
use crate::{
    domain::JobId,
    queue::JobDoc,
    store::jobs::{self, ActionError, JobRow, JobState, ListQuery},
};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(show)).routes(routes!(retry)).routes(routes!(cancel))
}

/// `?status=&kind=&limit=&before=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListParams {
    #[param(value_type = Option<JobState>)]
    status: Option<String>,
    /// A job kind.
    #[param(schema_with = super::openapi::kind_schema)]
    kind: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// Cursor: `nextBefore` of the previous page (a job id).
    #[param(pattern = r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    before: Option<String>,
}

/// A page of jobs, newest first, with the cursor of the next page and totals per
/// status (for the same kind filter).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobPage {
    jobs: Vec<JobDoc>,
    #[schema(value_type = Option<String>)]
    next_before: Option<JobId>,
    totals: BTreeMap<&'static str, i64>,
}

fn parse_list(params: ListParams) -> Result<ListQuery, ApiError> {
    let state = params
        .status
        .map(|s| {
            serde_json::from_value::<JobState>(serde_json::Value::String(s.clone())).map_err(|_| {
                ApiError::Validation(format!(
                    "status must be one of queued, running, succeeded, failed, cancelled (got {s:?})"
                ))
            })
        })
        .transpose()?;
    let kind = params.kind.as_deref().map(crate::jobs::kind_named).transpose().map_err(ApiError::Validation)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let before = params.before.map(JobId::from);
    if before.as_deref().is_some_and(|b| ulid::Ulid::from_string(b).is_err()) {
        return Err(ApiError::Validation("before must be a job id".into()));
    }
    Ok(ListQuery { state, kind, before, limit })
}

/// Jobs, newest first, with filters, a cursor and totals per status.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = JobPage), Invalid, Unauthorized, Busy))]
async fn list(
    OperatorRead { state, .. }: OperatorRead,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<JobPage>, ApiError> {
    let query = parse_list(params)?;
    let rows: Vec<JobRow> = jobs::list(&state.db, &query).await?;
    let next_before = (rows.len() as i64 == query.limit).then(|| rows.last().map(|r| r.id.clone())).flatten();
    let mut totals: BTreeMap<&'static str, i64> =
        [JobState::Queued, JobState::Running, JobState::Succeeded, JobState::Failed, JobState::Cancelled]
            .into_iter()
            .map(|s| (s.as_str(), 0))
            .collect();
    for (name, n) in jobs::totals(&state.db, query.kind).await? {
        if let Some(slot) = totals.iter_mut().find(|(k, _)| **k == name).map(|(_, v)| v) {
            *slot += n;
        }
    }
    Ok(Json(JobPage { jobs: rows.into_iter().map(JobDoc::from).collect(), next_before, totals }))
}

/// An operator's action on one job: `POST /api/jobs/{id}/<action>` with no body,
/// answered with the job as it is now, or 409 when its state does not allow it. One
/// declaration for both actions, so they answer alike.
macro_rules! job_action {
    ($action:ident, $path:tt, $doc:tt, $ok:tt, $conflict:tt, $logged:tt) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "jobs", request_body(content = Option<EmptyBody>), security(("bearer" = [])), params(("id" = String, Path)),
            responses((status = 200, description = $ok, body = JobDoc),
                UnexpectedBody,
                Unauthorized,
                UnknownId,
                (status = 409, description = $conflict, body = ErrorBody),
            ))]
        async fn $action(
            State(state): State<AppState>,
            _: Operator,
            Path(id): Path<JobId>,
            ApiJson(EmptyBody {}): ApiJson<EmptyBody>,
        ) -> Result<Json<JobDoc>, ApiError> {
            let mut conn = state.db.acquire().await?;
            let done = jobs::$action(&mut conn, &id).await;
            answer_action(&id, done, $logged, $conflict)
        }
    };
}

job_action!(
    cancel,
    "/api/jobs/{id}/cancel",
    "Cancels a queued job, or asks a running one to stop at its next safe point.",
    "Cancelled, or running with a stop requested",
    "only queued or running jobs can be cancelled",
    "job cancelled by operator"
);
job_action!(
    retry,
    "/api/jobs/{id}/retry",
    "A failed or cancelled job back to `queued` with its attempts reset.",
    "Queued again with attempts reset",
    "only failed or cancelled jobs can be retried",
    "job re-queued by operator"
);

/// An operator's action on job `id`: the job as it is now (logged as `done`), or why
/// it could not be done (`hint`: which states it applies to).
fn answer_action(
    id: &JobId,
    outcome: Result<jobs::JobRow, ActionError>,
    done: &'static str,
    hint: &str,
) -> Result<Json<JobDoc>, ApiError> {
    match outcome {
        Ok(row) => {
            tracing::info!(job_id = %id, kind = %row.kind, "{done}");
            Ok(Json(JobDoc::from(row)))
        }
        Err(ActionError::NotFound) => Err(ApiError::NotFound(format!("no job {id}"))),
        Err(ActionError::Conflict(state)) => {
            Err(ApiError::Conflict { code: "job_state_conflict", message: format!("job {id} is {state}; {hint}") })
        }
        Err(ActionError::Db(err)) => Err(err.into()),
    }
}

/// The job; with `Prefer: wait=N` held until it finishes. A claim key reads claim
/// jobs only.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", security(("bearer" = [])), params(("id" = String, Path), PreferWait),
    responses(
        (status = 200, description = "The job, whatever its status", body = JobDoc),
        Unauthorized,
        UnknownId,
    ))]
async fn show(
    State(state): State<AppState>,
    Claimant(scope): Claimant,
    wait: Wait,
    Path(id): Path<JobId>,
) -> Result<Response, ApiError> {
    if scope == Scope::Claim
        && let Some(job) = jobs::get(&state.db, &id).await?
        && job.kind != <crate::jobs::claim_and_provision::ClaimAndProvision as crate::jobs::Job>::KIND
    {
        return Err(ApiError::Forbidden("a claim key reads claim jobs only".into()));
    }
    job_document(&state, wait, &id).await
}

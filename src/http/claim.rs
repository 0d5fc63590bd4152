//! `POST /api/pool/claim`: validates, reserves the oldest idle instance and enqueues
//! the claim job in one statement, so the answer is exact: a job that holds an
//! instance, or 503 `no_idle_instance`.

use axum::{extract::State, http::HeaderMap, response::Response};

use super::{
    AppState,
    auth::Claimant,
    claim_input::{ClaimBody, idempotency_key, validate},
    claim_original, claim_wait,
    error::{ApiError, ErrorBody, Invalid, Unauthorized},
    extract::ApiJson,
    respond::{PreferWait, Wait, new_job_response},
};
use crate::{
    domain::JobId,
    jobs::claim_and_provision::ClaimAndProvision,
    queue,
    queue::JobDoc,
    store::{
        demand,
        jobs::{
            self,
            claim::{self, Ask, Line, Reserved},
        },
    },
};

/// The values of the `Pool-Claim-Contract` header, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ClaimContractName {
    Jobs,
    Original,
}

/// Reserve the oldest idle instance and enqueue `claim_and_provision`.
#[utoipa::path(post, path = "/api/pool/claim", tag = "pool", request_body = ClaimBody, security(("bearer" = [])),
    params(PreferWait, ("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "1–255 visible ASCII characters; same key + same body within 24 h → same job"),
        ("Pool-Claim-Contract" = Option<ClaimContractName>, Header, nullable = false, description = "`original`: the original service's synchronous answer (docs/MIGRATING.md)")),
    responses(
        (status = 202, description = "Job accepted (still queued or running)", body = JobDoc,
            headers(("Location" = String, description = "/api/jobs/<id>"))),
        (status = 200, description = "The finished job (with `Prefer: wait=N`), or the claim (original contract)", body = claim_original::ClaimAnswer),
        Invalid,
        Unauthorized,
        (status = 409, description = "Idempotency-Key reused with another body", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "no_idle_instance; or too_many_waiting, with `Retry-After` (the line of waiting claims is full)", body = ErrorBody),
        (status = 500, description = "The claim failed (original contract)", body = claim_original::OriginalError),
        (status = 504, description = "The claim did not finish within 60 s (original contract)", body = claim_original::OriginalError),
    ))]
pub async fn claim(
    State(state): State<AppState>,
    _: Claimant,
    asked_wait: Wait,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ClaimBody>,
) -> Result<Response, ApiError> {
    let payload = validate(body, &state.config.join_hosts)?;
    let original = claim_original::wanted(&headers, state.config.claim_contract)?;
    let key = idempotency_key(&headers)?;
    let hash = request_hash(&payload);
    // The original contract answered 503 at once; only this contract's claims wait.
    let wait = asked_wait.0.filter(|_| !original);
    // Header values share the connection's first read buffer: not kept while waiting.
    drop(headers);
    for _ in 0..2 {
        // Before the job exists: its end cannot be missed, and need not be polled for.
        let subscription = state.waiter.subscribe();
        let claim = match &key {
            Some(key) => match Box::pin(existing_for_key(&state, key, &hash)).await? {
                Some(job_id) => Claim::Reserved(job_id),
                None => match Box::pin(reserve_and_enqueue(&state, &payload, Some((key, &hash)), wait)).await? {
                    Some(claim) => claim,
                    None => continue, // a concurrent request with the same key won
                },
            },
            None => Box::pin(reserve_and_enqueue(&state, &payload, None, wait)).await?.expect("no key, no race"),
        };
        return match (claim, wait) {
            (Claim::Waiting(job_id), Some(wait)) => {
                claim_wait::respond_when_bound(&state, subscription, &job_id, wait).await
            }
            (Claim::Reserved(job_id) | Claim::Waiting(job_id), _) if original => {
                claim_original::respond(&state, subscription, &job_id).await
            }
            (Claim::Reserved(job_id) | Claim::Waiting(job_id), _) => {
                new_job_response(&state, asked_wait, subscription, &job_id).await
            }
        };
    }
    Err(ApiError::Conflict {
        code: "idempotency_conflict",
        message: "concurrent requests with this Idempotency-Key".into(),
    })
}

async fn existing_for_key(state: &AppState, key: &str, hash: &str) -> Result<Option<JobId>, ApiError> {
    let mut conn = state.db.acquire().await?;
    jobs::idempotent_job(&mut conn, key, hash).await?.map_err(|()| ApiError::Conflict {
        code: "idempotency_conflict",
        message: "Idempotency-Key was already used with a different request body".into(),
    })
}

/// The claim's job: holding an instance, or waiting in line for one.
enum Claim {
    Reserved(JobId),
    Waiting(JobId),
}

/// Reserves an instance and enqueues the claim atomically (one statement); with
/// `wait` and no idle instance, the claim waits in line. `Ok(None)`: another request
/// recorded the same idempotency key first.
async fn reserve_and_enqueue(
    state: &AppState,
    payload: &ClaimAndProvision,
    key: Option<(&str, &str)>,
    wait: Option<std::time::Duration>,
) -> Result<Option<Claim>, ApiError> {
    let jobs_config = &state.config.jobs;
    let job = queue::new_job(payload, jobs_config);
    let line = wait.map(|wait| Line { wait, max_waiting: state.config.max_waiting });
    let ask = Ask { key, line, target_image: state.config.target_image.as_deref() };
    let reserved = claim::reserve_and_enqueue(&state.db, &job, ask).await?;
    if reserved != Reserved::KeyTaken {
        crate::metrics::claim_met(matches!(reserved, Reserved::Instance(_)));
    }
    match reserved {
        // The claim job enqueues the replenish when it ends; not here, on the hot path.
        Reserved::Instance(instance_id) => {
            tracing::info!(job_id = %job.id, instance_id = %instance_id, "claim enqueued");
            Ok(Some(Claim::Reserved(job.id)))
        }
        Reserved::KeyTaken => Ok(None),
        Reserved::Waiting => {
            // The pool is short by at least this claim: refill now, not at the next tick.
            jobs::enqueue_unless_held(&state.db, &queue::replenish_job(jobs_config)).await?;
            tracing::info!(job_id = %job.id, "claim waits for an instance");
            Ok(Some(Claim::Waiting(job.id)))
        }
        answer @ (Reserved::NoIdle | Reserved::LineFull) => {
            // Demand the pool could not meet: the warm target counts it as a claim.
            demand::record_miss(&state.db).await?;
            jobs::enqueue_unless_held(&state.db, &queue::replenish_job(jobs_config)).await?;
            Err(match answer {
                Reserved::LineFull => ApiError::LineFull { max_waiting: state.config.max_waiting },
                _ => ApiError::Unavailable {
                    code: "no_idle_instance",
                    message: "no idle instance; the pool is replenishing".into(),
                },
            })
        }
    }
}

/// A stable fingerprint of the validated request (FNV-1a over its JSON), so the same
/// key with another body can be told apart without storing the body twice.
fn request_hash(payload: &ClaimAndProvision) -> String {
    let json = serde_json::to_vec(payload).unwrap_or_default();
    let hash = json.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

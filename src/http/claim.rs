//! `POST /api/pool/claim`: validates, reserves the oldest idle instance and enqueues
//! the claim job in one statement, so the answer is exact: a job that holds an
//! instance, or 503 `no_idle_instance`.

use axum::{extract::State, http::HeaderMap, response::Response};
use pool_jobs::ClaimAndProvision;
use serde::Deserialize;

use super::{
    AppState,
    auth::Claimant,
    claim_original, claim_wait,
    error::{ApiError, ErrorBody, Invalid, Unauthorized},
    extract::ApiJson,
    respond::{PreferWait, new_job_response, requested_wait},
};
use crate::{
    config::Environment,
    queue,
    queue::JobDoc,
    store::{
        demand,
        jobs::{
            self,
            claim::{self, Reserved},
        },
    },
};

const DEFAULT_AGENT_NAME: &str = "Assistant";
const DEFAULT_INSTRUCTIONS: &str = "You are a helpful AI assistant.";
const MAX_AGENT_NAME: usize = 100;
const MAX_INSTRUCTIONS: usize = 64 * 1024;

/// The values of the `Pool-Claim-Contract` header, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ClaimContractName {
    Jobs,
    Original,
}

/// The request body; unknown fields are rejected.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimBody {
    /// 1–100 characters, not all spaces; default "Assistant".
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub agent_name: Option<String>,
    /// At most 64 KiB; default "You are a helpful AI assistant."
    #[schema(max_length = 65536)]
    pub instructions: Option<String>,
    /// An https conversation link of this environment.
    #[schema(pattern = r"^https://([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(/[!-~]*)?$")]
    pub join_url: Option<String>,
}

/// Parses the body into the job payload (SPEC §3.1).
pub fn validate(body: ClaimBody, environment: Environment) -> Result<ClaimAndProvision, ApiError> {
    let agent_name = body.agent_name.unwrap_or_else(|| DEFAULT_AGENT_NAME.into());
    let name_len = agent_name.trim().chars().count();
    if name_len == 0 || agent_name.chars().count() > MAX_AGENT_NAME {
        return Err(ApiError::Validation(format!("agentName must be 1–{MAX_AGENT_NAME} characters")));
    }
    let instructions = body.instructions.unwrap_or_else(|| DEFAULT_INSTRUCTIONS.into());
    if instructions.len() > MAX_INSTRUCTIONS {
        return Err(ApiError::Validation("instructions must be at most 64 KiB".into()));
    }
    let join_url = body.join_url.map(|url| validate_join_url(&url, environment)).transpose()?;
    Ok(ClaimAndProvision { agent_name, instructions, join_url })
}

fn validate_join_url(raw: &str, environment: Environment) -> Result<String, ApiError> {
    let url = reqwest::Url::parse(raw).map_err(|_| ApiError::Validation("joinUrl must be a valid URL".into()))?;
    if url.scheme() != "https" {
        return Err(ApiError::Validation("joinUrl must be an https URL".into()));
    }
    // The URL parser lowercases and punycode-encodes the host; a trailing dot names
    // the same host.
    let host = url.host_str().unwrap_or_default().trim_end_matches('.');
    let wrong_env = match environment {
        Environment::Production => host == "dev.convos.org",
        Environment::Staging => host == "popup.convos.org",
    };
    if wrong_env {
        return Err(ApiError::Validation(format!(
            "joinUrl points at {host}, which belongs to another environment than {}",
            environment.as_str()
        )));
    }
    Ok(raw.to_owned())
}

/// Reserve the oldest idle instance and enqueue `claim_and_provision`.
#[utoipa::path(post, path = "/api/pool/claim", tag = "pool", request_body = ClaimBody, security(("bearer" = [])),
    params(PreferWait, ("Idempotency-Key" = Option<String>, Header, description = "same key + same body within 24 h → same job"),
        ("Pool-Claim-Contract" = Option<ClaimContractName>, Header, nullable = false, description = "`original`: the original service's synchronous answer (docs/MIGRATING.md)")),
    responses(
        (status = 202, description = "Job accepted (still queued or running)", body = JobDoc,
            headers(("Location" = String, description = "/api/jobs/<id>"))),
        (status = 200, description = "The finished job (with `Prefer: wait=N`), or the claim (original contract)", body = claim_original::ClaimAnswer),
        Invalid,
        Unauthorized,
        (status = 409, description = "Idempotency-Key reused with another body", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "no_idle_instance", body = ErrorBody),
        (status = 500, description = "The claim failed (original contract)", body = claim_original::OriginalError),
        (status = 504, description = "The claim did not finish within 60 s (original contract)", body = claim_original::OriginalError),
    ))]
pub async fn claim(
    State(state): State<AppState>,
    _: Claimant,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ClaimBody>,
) -> Result<Response, ApiError> {
    let payload = validate(body, state.config.environment)?;
    let original = claim_original::wanted(&headers, state.config.claim_contract)?;
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let hash = request_hash(&payload);
    // The original contract answered 503 at once; only this contract's claims wait.
    let wait = requested_wait(&headers).filter(|_| !original);
    for _ in 0..2 {
        // Before the job exists: its end cannot be missed, and need not be polled for.
        let subscription = state.waiter.subscribe();
        let claim = match &key {
            Some(key) => match existing_for_key(&state, key, &hash).await? {
                Some(job_id) => Claim::Reserved(job_id),
                None => match reserve_and_enqueue(&state, &payload, Some((key, &hash)), wait).await? {
                    Some(claim) => claim,
                    None => continue, // a concurrent request with the same key won
                },
            },
            None => reserve_and_enqueue(&state, &payload, None, wait).await?.expect("no key, no race"),
        };
        return match (claim, wait) {
            (Claim::Waiting(job_id), Some(wait)) => {
                claim_wait::respond_when_bound(&state, subscription, &job_id, wait).await
            }
            (Claim::Reserved(job_id) | Claim::Waiting(job_id), _) if original => {
                claim_original::respond(&state, subscription, &job_id).await
            }
            (Claim::Reserved(job_id) | Claim::Waiting(job_id), _) => {
                new_job_response(&state, &headers, subscription, &job_id).await
            }
        };
    }
    Err(ApiError::Conflict {
        code: "idempotency_conflict",
        message: "concurrent requests with this Idempotency-Key".into(),
    })
}

async fn existing_for_key(state: &AppState, key: &str, hash: &str) -> Result<Option<String>, ApiError> {
    let mut conn = state.db.acquire().await?;
    jobs::idempotent_job(&mut conn, key, hash).await?.map_err(|()| ApiError::Conflict {
        code: "idempotency_conflict",
        message: "Idempotency-Key was already used with a different request body".into(),
    })
}

/// The claim's job: holding an instance, or waiting in line for one.
enum Claim {
    Reserved(String),
    Waiting(String),
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
    match claim::reserve_and_enqueue(&state.db, &job, key, wait).await? {
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
        Reserved::NoIdle => {
            // Demand the pool could not meet: the warm target counts it as a claim.
            demand::record_miss(&state.db).await?;
            jobs::enqueue_unless_held(&state.db, &queue::replenish_job(jobs_config)).await?;
            Err(ApiError::Unavailable {
                code: "no_idle_instance",
                message: "no idle instance; the pool is replenishing".into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body(join_url: &str) -> ClaimBody {
        ClaimBody { join_url: Some(join_url.into()), ..ClaimBody::default() }
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let p = validate(ClaimBody::default(), Environment::Staging).unwrap();
        assert_eq!(p.agent_name, DEFAULT_AGENT_NAME);
        assert_eq!(p.instructions, DEFAULT_INSTRUCTIONS);
    }

    #[test]
    fn join_url_rules_follow_the_environment() {
        assert!(validate(body("https://dev.convos.org/x"), Environment::Production).is_err());
        assert!(validate(body("https://dev.convos.org/x"), Environment::Staging).is_ok());
        assert!(validate(body("https://popup.convos.org/x"), Environment::Staging).is_err());
        assert!(validate(body("https://popup.convos.org/x"), Environment::Production).is_ok());
        assert!(validate(body("http://popup.convos.org/x"), Environment::Production).is_err());
        assert!(validate(body("not a url"), Environment::Production).is_err());
        for disguised in ["https://dev.convos.org./x", "https://DEV.Convos.ORG/x", "https://dev.convos.org.:443/x"] {
            assert!(validate(body(disguised), Environment::Production).is_err(), "{disguised}");
        }
        assert!(validate(body("https://popup.convos.org./x"), Environment::Staging).is_err());
        assert!(validate(body("https://xn--dv-bja.convos.org/x"), Environment::Production).is_ok(), "another host");
    }

    #[test]
    fn agent_name_and_instructions_are_bounded() {
        let long = ClaimBody { agent_name: Some("x".repeat(101)), ..ClaimBody::default() };
        assert!(validate(long, Environment::Staging).is_err());
        let blank = ClaimBody { agent_name: Some("  ".into()), ..ClaimBody::default() };
        assert!(validate(blank, Environment::Staging).is_err());
        let huge = ClaimBody { instructions: Some("x".repeat(64 * 1024 + 1)), ..ClaimBody::default() };
        assert!(validate(huge, Environment::Staging).is_err());
    }
}

//! The answer every job-creating endpoint gives: 202 with the job document and a
//! `Location`, or — with `Prefer: wait=N` — the finished job with 200 once it ends.

use std::time::Duration;

use axum::{
    Json,
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, StatusCode, header::LOCATION, request::Parts},
    response::{IntoResponse, Response},
};

use super::{
    AppState,
    error::ApiError,
    wait::{MAX_WAIT, Subscription},
};
use crate::{domain::JobId, queue::JobDoc, store::jobs};

/// The two answers of every job-creating endpoint, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum JobResponses {
    /// Job accepted (still queued or running); `Location: /api/jobs/<id>`.
    #[response(status = 202, headers(("Location" = String, description = "/api/jobs/<id>")))]
    Accepted(JobDoc),
    /// The finished job (with `Prefer: wait=N`).
    #[response(status = 200)]
    Finished(JobDoc),
}

/// The `Prefer` header of job-creating endpoints, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct PreferWait {
    /// `wait=N` (N ≤ 60): hold the answer until the job finishes.
    #[param(rename = "Prefer")]
    prefer: Option<String>,
}

/// The wait a request asked for (`Prefer: wait=N`), read before the handler runs so
/// that no headers are held while it waits.
#[derive(Clone, Copy, Debug)]
pub struct Wait(pub Option<Duration>);

impl<S: Sync> FromRequestParts<S> for Wait {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(requested_wait(&parts.headers)))
    }
}

/// Parses `Prefer: wait=N` (RFC 7240); N is capped at 60 seconds.
fn requested_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .find_map(|pref| {
            let (name, value) = pref.trim().split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        })
        .map(|secs| Duration::from_secs(secs).min(MAX_WAIT))
}

/// Answers for job `id`, just enqueued by this request (202 until it finished),
/// waiting first if the client asked to.
pub async fn job_response(state: &AppState, wait: Wait, id: &JobId) -> Result<Response, ApiError> {
    respond(read(state, wait.0, id, None).await?, id)
}

/// `GET /api/jobs/:id`: 200 whatever the job's status (nothing was accepted), with
/// the history of its runs.
pub async fn job_document(state: &AppState, wait: Wait, id: &JobId) -> Result<Response, ApiError> {
    let mut doc = read(state, wait.0, id, None).await?;
    if let Some(doc) = &mut doc {
        doc.history = Some(jobs::history(&state.db, id).await?);
    }
    let mut response = respond(doc, id)?;
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

/// The job, read at once, or with `Prefer: wait` when it finishes: through
/// `subscription` when the job was enqueued after it (no first read needed).
async fn read(
    state: &AppState,
    wait: Option<Duration>,
    id: &JobId,
    subscription: Option<Subscription>,
) -> Result<Option<JobDoc>, ApiError> {
    Ok(match (wait, subscription) {
        (Some(limit), Some(subscription)) => subscription.wait_new(&state.db, id, limit).await?,
        (Some(limit), None) => state.waiter.wait(&state.db, id, limit).await?,
        (None, _) => jobs::get(&state.db, id).await?.map(JobDoc::from),
    })
}

/// Answers for job `id`, enqueued after `subscription` was made: with a wait, the
/// job is read once, when it finishes.
pub async fn new_job_response(
    state: &AppState,
    wait: Wait,
    subscription: Subscription,
    id: &JobId,
) -> Result<Response, ApiError> {
    respond(read(state, wait.0, id, Some(subscription)).await?, id)
}

/// 200 with a finished job, 202 with one still queued or running; 404 without one.
pub fn respond(doc: Option<JobDoc>, id: &JobId) -> Result<Response, ApiError> {
    let doc = doc.ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    let status = if doc.status.is_finished() { StatusCode::OK } else { StatusCode::ACCEPTED };
    let mut response = (status, Json(&doc)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/jobs/{}", doc.id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert("prefer", HeaderValue::from_str(value).unwrap());
        requested_wait(&headers)
    }

    #[test]
    fn parses_wait_among_other_preferences() {
        assert_eq!(prefer("wait=5"), Some(Duration::from_secs(5)));
        assert_eq!(prefer("respond-async, wait=10"), Some(Duration::from_secs(10)));
        assert_eq!(prefer("wait=600"), Some(MAX_WAIT));
        assert_eq!(prefer("wait=soon"), None);
        assert_eq!(prefer("return=minimal"), None);
    }
}

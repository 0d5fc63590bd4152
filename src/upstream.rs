//! The error type of every upstream call (services API and instances), classified by
//! HTTP status code into what the caller does next. The one exception, the services
//! API's rate limits that arrive as 500/502 with the words in the text, is the
//! services client's own.

use std::time::Duration;

use reqwest::{Response, StatusCode, header::RETRY_AFTER};
use serde::de::DeserializeOwned;

use crate::domain::text::storable;

/// Largest answer read from an upstream, but for a listing of the whole fleet
/// ([`MAX_LISTING`]); a larger one is a decode error, not a memory spike.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Largest listing of every service read (`/status/batch` without ids): about
/// 250 bytes a service, so 100,000 services take 25 MB and this bounds 250,000.
pub const MAX_LISTING: usize = 64 * 1024 * 1024;
/// Largest error body read; only its start is kept anyway.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Longest upstream body excerpt kept in an error message. Bodies are not secrets, but
/// an HTML error page is noise in a job's `error` field.
const BODY_EXCERPT: usize = 200;

/// What went wrong talking to an upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No TCP connection was made, so the request never reached the upstream.
    #[error("{target}: could not connect: {message}")]
    Connect { target: &'static str, message: String },
    /// The request may have reached the upstream; we do not know what it did.
    #[error("{target}: timed out")]
    Timeout { target: &'static str },
    /// Sent, but the transport failed before a full answer arrived.
    #[error("{target}: request failed: {message}")]
    Transport { target: &'static str, message: String },
    /// 429, or 503 with `Retry-After`.
    #[error("{target}: rate limited (HTTP {status})")]
    RateLimited { target: &'static str, status: u16, retry_after: Option<Duration> },
    /// 404: the thing addressed does not exist (for destroy: already gone).
    #[error("{target}: not found (HTTP 404): {message}")]
    NotFound { target: &'static str, message: String },
    /// 409: conflicting state (for provision: already bound).
    #[error("{target}: conflict (HTTP 409): {message}")]
    Conflict { target: &'static str, message: String },
    /// 5xx or 408: the upstream failed; trying again may work.
    #[error("{target}: HTTP {status}: {message}")]
    Server { target: &'static str, status: u16, message: String },
    /// Any other 4xx: the request is wrong and repeating it cannot help.
    #[error("{target}: rejected (HTTP {status}): {message}")]
    Rejected { target: &'static str, status: u16, message: String },
    /// A 2xx whose body is not the documented JSON.
    #[error("{target}: unexpected response body: {message}")]
    Decode { target: &'static str, message: String },
    /// The process is stopping: the call was not made.
    #[error("{target}: not called, the process is stopping")]
    Stopping { target: &'static str },
    /// Not called: the URL would carry the key in clear (plain http off this machine).
    #[error("{target}: not called, {url} is not https")]
    Insecure { target: &'static str, url: String },
}

/// What the caller should do about an [`UpstreamError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again later; `after` is the upstream's own hint when it gave one.
    Retry { after: Option<Duration> },
    /// Fail now: repeating the same request cannot succeed.
    GiveUp,
    /// The addressed resource does not exist.
    Gone,
}

impl UpstreamError {
    /// Classifies the error by what the caller does next (SPEC §4 retries).
    pub fn next(&self) -> Next {
        match self {
            Self::RateLimited { retry_after, .. } => Next::Retry { after: *retry_after },
            Self::Connect { .. }
            | Self::Stopping { .. }
            | Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::Server { .. }
            | Self::Decode { .. }
            | Self::Conflict { .. } => Next::Retry { after: None },
            Self::NotFound { .. } => Next::Gone,
            Self::Rejected { .. } | Self::Insecure { .. } => Next::GiveUp,
        }
    }

    /// True when the request provably never reached the upstream, so it did nothing.
    pub fn never_sent(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Stopping { .. } | Self::Insecure { .. })
    }

    /// The same error with an upstream's `Retry-After` shortened to `max`: no
    /// upstream may stop Pool's work for longer.
    pub fn capped(self, max: Duration) -> Self {
        match self {
            Self::RateLimited { target, status, retry_after } => {
                Self::RateLimited { target, status, retry_after: retry_after.map(|after| after.min(max)) }
            }
            other => other,
        }
    }

    /// The HTTP status the upstream answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::RateLimited { status, .. } | Self::Server { status, .. } | Self::Rejected { status, .. } => {
                Some(*status)
            }
            Self::NotFound { .. } => Some(404),
            Self::Conflict { .. } => Some(409),
            _ => None,
        }
    }

    /// Maps a reqwest transport error; `target` names the upstream in messages.
    pub fn from_transport(target: &'static str, err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            Self::Timeout { target }
        } else if err.is_connect() {
            Self::Connect { target, message: root_cause(err) }
        } else {
            Self::Transport { target, message: root_cause(err) }
        }
    }
}

/// A reqwest builder with the TLS provider in place. reqwest is built without its own
/// crypto provider; the `ring` one that sqlx already links serves both, so the binary
/// carries one TLS stack. Installing is idempotent.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // An upstream redirect is never followed: the key would go where it points.
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// Turns a response into `T` or a classified error. Non-JSON error bodies are fine:
/// the status code decides, the body only decorates the message.
pub async fn read_json<T: DeserializeOwned>(target: &'static str, response: Response) -> Result<T, UpstreamError> {
    read_json_within(target, response, MAX_BODY).await
}

/// [`read_json`] for an answer of up to `limit` bytes.
pub async fn read_json_within<T: DeserializeOwned>(
    target: &'static str,
    response: Response,
    limit: usize,
) -> Result<T, UpstreamError> {
    let status = response.status();
    if status.is_success() {
        let (bytes, whole) = read_at_most(target, response, limit).await?;
        if !whole {
            return Err(UpstreamError::Decode { target, message: format!("answer larger than {limit} bytes") });
        }
        return serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Decode { target, message: e.to_string() });
    }
    let retry_after = retry_after(&response);
    let (body, _) = read_at_most(target, response, MAX_ERROR_BODY).await.unwrap_or_default();
    let message = error_message(String::from_utf8_lossy(&body).into_owned());
    Err(classify(target, status, retry_after, message))
}

/// The first `limit` bytes of the body, and whether that is all of it (the rest is
/// never read).
async fn read_at_most(
    target: &'static str,
    mut response: Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| UpstreamError::from_transport(target, &e))? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

fn classify(target: &'static str, status: StatusCode, retry_after: Option<Duration>, message: String) -> UpstreamError {
    let code = status.as_u16();
    match status {
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::RateLimited { target, status: code, retry_after },
        StatusCode::SERVICE_UNAVAILABLE if retry_after.is_some() => {
            UpstreamError::RateLimited { target, status: code, retry_after }
        }
        StatusCode::NOT_FOUND => UpstreamError::NotFound { target, message },
        StatusCode::CONFLICT => UpstreamError::Conflict { target, message },
        StatusCode::REQUEST_TIMEOUT => UpstreamError::Server { target, status: code, message },
        s if s.is_server_error() => UpstreamError::Server { target, status: code, message },
        _ => UpstreamError::Rejected { target, status: code, message },
    }
}

/// `Retry-After` in its delta-seconds form; HTTP dates are rare here and ignored.
fn retry_after(response: &Response) -> Option<Duration> {
    let raw = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    raw.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The `error` field of a JSON body, else the start of the raw text; without NUL,
/// which Postgres cannot store (the message ends up in a job's `error`).
fn error_message(body: String) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str().map(str::to_owned).or_else(|| Some(e.to_string()))));
    let text = storable(from_json.unwrap_or(body));
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// reqwest's top-level message hides the useful part ("connection refused") in sources.
fn root_cause(err: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = err;
    while let Some(next) = source.source() {
        source = next;
    }
    // The URL may carry a token in rare setups; the root cause never includes it.
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_decide_the_class() {
        let c = |code: u16| classify("t", StatusCode::from_u16(code).unwrap(), None, String::new());
        assert_eq!(c(500).next(), Next::Retry { after: None });
        assert_eq!(c(408).next(), Next::Retry { after: None });
        assert_eq!(c(400).next(), Next::GiveUp);
        assert_eq!(c(401).next(), Next::GiveUp);
        assert_eq!(c(404).next(), Next::Gone);
        assert!(matches!(c(409), UpstreamError::Conflict { .. }));
        assert!(matches!(c(429), UpstreamError::RateLimited { .. }));
    }

    #[test]
    fn error_message_prefers_json_error_field_and_truncates_text() {
        assert_eq!(error_message(r#"{"error":"bad id"}"#.into()), "bad id");
        assert_eq!(error_message("<html>oops</html>".into()), "<html>oops</html>");
        assert!(error_message("x".repeat(500)).chars().count() <= BODY_EXCERPT + 1);
        assert_eq!(error_message("  ".into()), "(empty body)");
    }

    #[test]
    fn error_message_drops_nul_which_postgres_cannot_store() {
        assert_eq!(error_message(r#"{"error":"bad\u0000byte"}"#.into()), "badbyte");
        assert_eq!(error_message("raw\0body".into()), "rawbody");
    }
}

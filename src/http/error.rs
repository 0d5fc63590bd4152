//! The one error type of the HTTP API: every failure becomes
//! `{"error": "<human message>", "code": "<machine_code>"}` with a fitting status.

use axum::{
    Json,
    extract::rejection::JsonRejection,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// An API failure, by what the client should understand from it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    /// A valid key whose scope does not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error("too many failed key checks; try again in a second")]
    TooManyAuthFailures,
    /// Too many expensive reads at once; the read is shed, claims go on.
    #[error("too many reads at once; try again in a second")]
    Busy,
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// A claim would wait, and `POOL_MAX_WAITING` claims already do (with `Retry-After`).
    #[error("no idle instance, and {max_waiting} claims already wait for one; try again later")]
    LineFull { max_waiting: u32 },
    /// Unexpected; details go to the log, not to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// `Retry-After` (seconds) of a claim turned away by a full line: places free up as
/// instances become idle (seconds apart while the pool refills) or claims give up.
const LINE_FULL_RETRY_AFTER: &str = "5";

/// The JSON shape of every error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A human message.
    pub error: String,
    /// A machine code, e.g. `invalid_request`, `no_idle_instance`.
    pub code: String,
}

/// Answers many routes share: each is one response in the OpenAPI document's
/// `components.responses` (its doc comment is the description), which a handler
/// names in its `responses(...)` and the document references by status.
macro_rules! shared_responses {
    ($($(#[doc = $doc:literal])+ $name:ident = $status:literal;)+) => {$(
        $(#[doc = $doc])+
        #[derive(utoipa::ToResponse)]
        #[allow(dead_code)]
        pub struct $name(ErrorBody);

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
                let name = <Self as utoipa::ToResponse>::response().0;
                [($status.to_owned(), utoipa::openapi::Ref::from_response_name(name).into())].into()
            }
        }
    )+};
}

shared_responses! {
    /// Missing or invalid API key
    Unauthorized = "401";
    /// The key's scope does not allow this
    Forbidden = "403";
    /// Too many failed key checks (with `Retry-After`)
    TooManyAuthFailures = "429";
    /// Too many expensive reads at once (with `Retry-After`)
    Busy = "503";
    /// Invalid input
    Invalid = "400";
    /// A body other than none or {}
    UnexpectedBody = "400";
    /// Unknown id
    UnknownId = "404";
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Validation(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::TooManyAuthFailures => (StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures"),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            Self::LineFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, "too_many_waiting"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(err) = &self {
            tracing::error!(error = ?err, "request failed");
        }
        let mut response = (status, Json(ErrorBody { error: self.to_string(), code: code.to_owned() })).into_response();
        let retry_after = match self {
            Self::TooManyAuthFailures | Self::Busy => Some("1"),
            Self::LineFull { .. } => Some(LINE_FULL_RETRY_AFTER),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static(secs));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        // Text Postgres cannot store (NUL) that reached a query through a path or
        // query parameter: the request is at fault, not the service.
        if let sqlx::Error::Database(db) = &err
            && matches!(db.code().as_deref(), Some("22021" | "22P05"))
        {
            return Self::Validation(super::extract::NUL_REFUSED.into());
        }
        Self::Internal(err.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::PayloadTooLarge;
        }
        // body_text() names the field and position, e.g. "unknown field `foo` at line 1".
        Self::Validation(format!("invalid JSON body: {}", rejection.body_text()))
    }
}

/// Middleware: an error answer that a layer or axum itself produced as plain text
/// (413 for a large `Content-Length`, 405, a timeout) gets the JSON error shape too.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "timeout",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "http_error",
    };
    let message = status.canonical_reason().unwrap_or("error").to_owned();
    let mut answer = (status, Json(ErrorBody { error: message, code: code.to_owned() })).into_response();
    // Keep what the client needs to act on (e.g. `Allow` of a 405).
    for (name, value) in response.headers() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

//! Who is calling, from the `Authorization: Bearer <key>` header (the scheme in any
//! case): the key's [`Scope`] decides what the request may do. Failed attempts are
//! limited per process, so guessing keys is slow; a valid key is never slowed.

use std::{num::NonZeroU32, sync::OnceLock};

use axum::{
    extract::FromRequestParts,
    http::{header::AUTHORIZATION, request::Parts},
};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::{AppState, error::ApiError};
pub use crate::config::Scope;

/// Failed key checks per second per web process, and the burst allowed.
const FAILURES_PER_SEC: u32 = 20;
const FAILURE_BURST: u32 = 60;

/// An operator key: everything. A claim key gets 403.
pub struct Operator;

/// An operator or a claim key, and which.
pub struct Claimant(pub Scope);

/// The caller's scope, or none without a (valid) key: routes where a key only adds
/// fields. A wrong key still counts as a failed attempt.
pub struct Caller(pub Option<Scope>);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match authenticate(parts, state)? {
            Scope::Operator => Ok(Self),
            Scope::Claim => Err(ApiError::Forbidden("a claim key may only claim and read claim jobs".into())),
        }
    }
}

impl FromRequestParts<AppState> for Claimant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state).map(Self)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts) {
            None => Ok(Self(None)),
            Some(_) => authenticate(parts, state).map(|scope| Self(Some(scope))),
        }
    }
}

/// The scope of the request's key; 401 without a valid one (429 once wrong keys
/// come faster than [`FAILURES_PER_SEC`]: no key at all is no guess).
fn authenticate(parts: &Parts, state: &AppState) -> Result<Scope, ApiError> {
    let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
    if let Some(scope) = state.config.keys.scope_of(token) {
        return Ok(scope);
    }
    static FAILURES: OnceLock<DefaultDirectRateLimiter> = OnceLock::new();
    let limiter = FAILURES.get_or_init(|| {
        let per_sec = NonZeroU32::new(FAILURES_PER_SEC).expect("non-zero");
        let burst = NonZeroU32::new(FAILURE_BURST).expect("non-zero");
        RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst))
    });
    match limiter.check() {
        Ok(()) => Err(ApiError::Unauthorized),
        Err(_) => Err(ApiError::TooManyAuthFailures),
    }
}

/// The token of an `Authorization: Bearer` header; the scheme is case-insensitive
/// (RFC 9110), the token is not.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

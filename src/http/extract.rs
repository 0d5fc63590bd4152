//! Extractors whose rejections are [`ApiError`]s, so malformed input always gets the
//! JSON error shape instead of axum's plain-text answers.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header::CONTENT_TYPE, request::Parts},
};
use serde::{Deserialize, de::DeserializeOwned};

use super::error::ApiError;

/// A JSON body. An empty body counts as `{}` so optional bodies (`replenish`) work
/// without a `Content-Type`; a non-empty one must be `application/json`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::Validation(format!("could not read body: {}", e.body_text()))
            }
        })?;
        // No body, or JSON `null`, is an empty object: optional bodies stay optional.
        let blank = json_trim(&bytes).is_empty() || json_trim(&bytes) == b"null";
        let bytes: &[u8] = if blank { b"{}" } else { &bytes };
        if !json_type && bytes != b"{}" {
            return Err(ApiError::Validation("expected Content-Type: application/json".into()));
        }
        // Every body is an object; serde would also read an array into a struct.
        if json_trim(bytes).first() != Some(&b'{') {
            return Err(ApiError::Validation("the body must be a JSON object".into()));
        }
        if has_escaped_nul(bytes) {
            return Err(ApiError::Validation(NUL_REFUSED.into()));
        }
        serde_json::from_slice(bytes).map(ApiJson).map_err(|e| ApiError::Validation(format!("invalid JSON body: {e}")))
    }
}

/// Why a request with NUL in its text is refused (Postgres cannot store it).
pub const NUL_REFUSED: &str = "text must not contain NUL (\\u0000)";

/// Whether a string of the JSON body, or a key, holds NUL (`\u0000`; a raw NUL
/// byte is invalid JSON anyway). Parsed only when the escape appears at all.
fn has_escaped_nul(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
        && serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| crate::domain::text::json_has_nul(&v))
}

/// `bytes` without JSON's whitespace around it (space, tab, line feed, carriage
/// return; not the form feed and vertical tab that ASCII also counts).
fn json_trim(bytes: &[u8]) -> &[u8] {
    let json_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = bytes.iter().position(|b| !json_space(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !json_space(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The body of actions that take no input: none, or `{}`; any field is rejected, and
/// so is anything but an object.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>", deny_unknown_fields)]
pub struct EmptyBody {}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for EmptyBody {
    type Error = String;
    fn try_from(fields: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        match fields.keys().next() {
            None => Ok(Self {}),
            Some(field) => Err(format!("unknown field `{field}`: this action takes no input")),
        }
    }
}

/// An optional field that, when given, is not `null` (its schema is not nullable).
pub fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(de: D) -> Result<Option<T>, D::Error> {
    T::deserialize(de).map(Some)
}

/// A whole number, also when JSON writes it as `3.0` (JSON Schema's `integer`).
pub fn whole_number<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<f64>::deserialize(de)? else { return Ok(None) };
    if n.fract() != 0.0 || !(0.0..=f64::from(u32::MAX)).contains(&n) {
        return Err(serde::de::Error::custom(format!("expected a whole number, got {n}")));
    }
    Ok(Some(n as u32))
}

/// Checks `?limit=&offset=` of a paged listing: `limit` in 1..=`max` (default
/// `default`), `offset` in 0..=10,000,000 (default 0).
pub fn page(limit: Option<i64>, offset: Option<i64>, default: i64, max: i64) -> Result<(i64, i64), ApiError> {
    // Far beyond any fleet; keeps `offset + limit` from overflowing.
    const MAX_OFFSET: i64 = 10_000_000;
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::Validation(format!("limit must be between 1 and {max}")));
    }
    let offset = offset.unwrap_or(0);
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(ApiError::Validation(format!("offset must be between 0 and {MAX_OFFSET}")));
    }
    Ok((limit, offset))
}

/// Query parameters whose rejection is an [`ApiError`] (unknown or mistyped fields).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| ApiError::Validation(format!("invalid query: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::json_trim;

    #[test]
    fn only_json_whitespace_is_blank() {
        assert_eq!(json_trim(b" \t\r\n{} \n"), b"{}");
        assert!(json_trim(b"  ").is_empty());
        assert_eq!(json_trim(b"\x0c"), b"\x0c", "a form feed is not JSON whitespace");
        assert_eq!(json_trim(b"\x0bnull"), b"\x0bnull");
    }
}

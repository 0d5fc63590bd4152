//! What a claim request may say: its body (`agentName`, `instructions`, `joinUrl`,
//! checked into the job payload, SPEC §3.1) and its `Idempotency-Key`.

use axum::http::HeaderMap;
use serde::Deserialize;

use super::error::ApiError;
use crate::{config::JoinHosts, jobs::claim_and_provision::ClaimAndProvision};

const DEFAULT_AGENT_NAME: &str = "Assistant";
const DEFAULT_INSTRUCTIONS: &str = "You are a helpful AI assistant.";
const MAX_AGENT_NAME: usize = 100;
const MAX_INSTRUCTIONS: usize = 64 * 1024;

/// Longest `Idempotency-Key`: far above any UUID or ULID, far below the index limit.
const MAX_IDEMPOTENCY_KEY: usize = 255;

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
    /// An https conversation link on one of `POOL_JOIN_HOSTS` (by default the
    /// environment's Convos hosts; the served document lists them).
    #[schema(pattern = r"^https://([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(/[!-~]*)?$")]
    pub join_url: Option<String>,
}

/// Parses the body into the job payload (SPEC §3.1).
pub fn validate(body: ClaimBody, join_hosts: &JoinHosts) -> Result<ClaimAndProvision, ApiError> {
    let agent_name = body.agent_name.unwrap_or_else(|| DEFAULT_AGENT_NAME.into());
    let name_len = agent_name.trim().chars().count();
    if name_len == 0 || agent_name.chars().count() > MAX_AGENT_NAME {
        return Err(ApiError::Validation(format!("agentName must be 1–{MAX_AGENT_NAME} characters")));
    }
    let instructions = body.instructions.unwrap_or_else(|| DEFAULT_INSTRUCTIONS.into());
    if instructions.len() > MAX_INSTRUCTIONS {
        return Err(ApiError::Validation("instructions must be at most 64 KiB".into()));
    }
    let join_url = body.join_url.map(|url| validate_join_url(&url, join_hosts)).transpose()?;
    Ok(ClaimAndProvision { agent_name, instructions, join_url })
}

fn validate_join_url(raw: &str, join_hosts: &JoinHosts) -> Result<String, ApiError> {
    let url = reqwest::Url::parse(raw).map_err(|_| ApiError::Validation("joinUrl must be a valid URL".into()))?;
    if url.scheme() != "https" {
        return Err(ApiError::Validation("joinUrl must be an https URL".into()));
    }
    // The URL parser lowercases and punycode-encodes the host.
    let host = url.host_str().unwrap_or_default();
    if !join_hosts.allows(host) {
        let allowed = join_hosts.listed();
        return Err(ApiError::Validation(format!(
            "joinUrl must point at a Convos host of this environment ({allowed})"
        )));
    }
    Ok(raw.to_owned())
}

/// The `Idempotency-Key` header: 1–255 visible ASCII characters. Any other value is
/// refused, not ignored, so a client never believes a retry is deduplicated when
/// it is not.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else { return Ok(None) };
    let valid = |k: &&str| (1..=MAX_IDEMPOTENCY_KEY).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic());
    let key = raw.to_str().ok().filter(valid).ok_or_else(|| {
        ApiError::Validation(format!("Idempotency-Key must be 1–{MAX_IDEMPOTENCY_KEY} visible ASCII characters"))
    })?;
    Ok(Some(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment::{Production, Staging};

    fn body(join_url: &str) -> ClaimBody {
        ClaimBody { join_url: Some(join_url.into()), ..ClaimBody::default() }
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let p = validate(ClaimBody::default(), &JoinHosts::defaults(Staging)).unwrap();
        assert_eq!(p.agent_name, DEFAULT_AGENT_NAME);
        assert_eq!(p.instructions, DEFAULT_INSTRUCTIONS);
    }

    #[test]
    fn join_url_rules_follow_the_environment() {
        let (production, staging) = (JoinHosts::defaults(Production), JoinHosts::defaults(Staging));
        assert!(validate(body("https://dev.convos.org/x"), &production).is_err());
        assert!(validate(body("https://dev.convos.org/x"), &staging).is_ok());
        assert!(validate(body("https://popup.convos.org/x"), &staging).is_err());
        assert!(validate(body("https://popup.convos.org/x"), &production).is_ok());
        assert!(validate(body("http://popup.convos.org/x"), &production).is_err());
        assert!(validate(body("not a url"), &production).is_err());
        for disguised in ["https://dev.convos.org./x", "https://DEV.Convos.ORG/x", "https://dev.convos.org.:443/x"] {
            assert!(validate(body(disguised), &production).is_err(), "{disguised}");
        }
        assert!(validate(body("https://popup.convos.org./x"), &staging).is_err());
        let elsewhere = ["https://xn--dv-bja.convos.org/x", "https://10.0.0.1/x", "https://api.railway.internal/x"];
        for host in elsewhere {
            assert!(validate(body(host), &production).is_err(), "{host}");
        }
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_of_bounded_length() {
        let with = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert("idempotency-key", axum::http::HeaderValue::from_bytes(value).unwrap());
            idempotency_key(&headers)
        };
        assert_eq!(with(b"order-42").unwrap().as_deref(), Some("order-42"));
        assert!(with(&[b'k'; 255]).is_ok());
        for refused in [&[b'k'; 256][..], "clé".as_bytes(), b"a b", b""] {
            assert!(with(refused).is_err(), "{refused:?}");
        }
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn agent_name_and_instructions_are_bounded() {
        let long = ClaimBody { agent_name: Some("x".repeat(101)), ..ClaimBody::default() };
        assert!(validate(long, &JoinHosts::defaults(Staging)).is_err());
        let blank = ClaimBody { agent_name: Some("  ".into()), ..ClaimBody::default() };
        assert!(validate(blank, &JoinHosts::defaults(Staging)).is_err());
        let huge = ClaimBody { instructions: Some("x".repeat(64 * 1024 + 1)), ..ClaimBody::default() };
        assert!(validate(huge, &JoinHosts::defaults(Staging)).is_err());
    }
}

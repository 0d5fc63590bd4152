//! Client for the services API (SPEC §5.1): the only way Pool creates, inspects and
//! destroys provider resources. Every call passes the rate limiter first.

mod throttle;
mod types;

use reqwest::{Client, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

pub use throttle::{KeyedRateLimiter, Stopping, Throttle};
pub use types::{CreatedInstance, Destroyed, ServiceStatus, StatusBatch};

use crate::{
    config::ServicesConfig,
    domain::{InstanceId, service_name},
    upstream::{MAX_BODY, MAX_LISTING, UpstreamError, read_json_within},
};

const TARGET: &str = "services API";

/// Tools every instance is created with.
const TOOLS: [&str; 2] = ["openrouter", "agentmail"];

/// A cheap-to-clone handle on the services API.
#[derive(Clone)]
pub struct ServicesClient {
    http: Client,
    base: String,
    api_key: Option<SecretString>,
    throttle: Throttle,
    create_timeout: std::time::Duration,
    rate_limit_pause: std::time::Duration,
    max_pause: std::time::Duration,
}

impl ServicesClient {
    /// Builds a client with the configured timeout; `throttle` paces every call.
    pub fn new(config: &ServicesConfig, throttle: Throttle) -> Self {
        let http = crate::upstream::client_builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
            .build()
            .expect("reqwest client with static settings");
        Self {
            http,
            base: config.url.clone(),
            api_key: config.api_key.clone(),
            throttle,
            create_timeout: config.create_timeout,
            rate_limit_pause: config.rate_limit_pause,
            max_pause: config.max_pause,
        }
    }

    /// `POST /create-instance`. Not idempotent upstream: a second call for `id`
    /// makes a second paid service, so callers never repeat it blindly (SPEC §4).
    pub async fn create_instance(&self, id: &InstanceId) -> Result<CreatedInstance, UpstreamError> {
        let body = serde_json::json!({ "instanceId": id, "name": service_name(id), "tools": TOOLS });
        let request = self.http.post(self.url("/create-instance")).timeout(self.create_timeout).json(&body);
        self.send(request).await
    }

    /// `DELETE /destroy/:id`. A 404 comes back as [`UpstreamError::NotFound`]. Even
    /// a 200 does not mean the service is gone (SPEC §5.1): callers confirm by id.
    pub async fn destroy(&self, id: &InstanceId) -> Result<Destroyed, UpstreamError> {
        self.send(self.http.delete(self.url(&format!("/destroy/{id}")))).await
    }

    /// `POST /status/batch`, for all services or only `ids`.
    pub async fn status_batch(&self, ids: Option<&[InstanceId]>) -> Result<StatusBatch, UpstreamError> {
        let body = match ids {
            Some(ids) => serde_json::json!({ "instanceIds": ids }),
            None => serde_json::json!({}),
        };
        let limit = if ids.is_some() { MAX_BODY } else { MAX_LISTING };
        self.send_within(self.http.post(self.url("/status/batch")).json(&body), limit).await
    }

    /// `POST /redeploy/:id`.
    pub async fn redeploy(&self, id: &InstanceId) -> Result<serde_json::Value, UpstreamError> {
        self.send(self.http.post(self.url(&format!("/redeploy/{id}")))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, UpstreamError> {
        self.send_within(request, MAX_BODY).await
    }

    /// [`Self::send`] for an answer of up to `limit` bytes.
    async fn send_within<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        limit: usize,
    ) -> Result<T, UpstreamError> {
        self.throttle.wait().await.map_err(|_| UpstreamError::Stopping { target: TARGET })?;
        let request = match &self.api_key {
            Some(key) => request.bearer_auth(key.expose_secret()),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            crate::metrics::upstream_call("services", None);
            UpstreamError::from_transport(TARGET, &e)
        })?;
        crate::metrics::upstream_call("services", Some(response.status().as_u16()));
        let batch_failed =
            response.status() == reqwest::StatusCode::BAD_GATEWAY && response.url().path().ends_with("/status/batch");
        let answer = read_json_within(TARGET, response, limit)
            .await
            .map_err(|e| self.rate_limited(e, batch_failed).capped(self.max_pause));
        // The provider's budget is shared: when it says "wait", every caller waits.
        if let Err(UpstreamError::RateLimited { retry_after: Some(after), .. }) = &answer {
            self.throttle.pause(*after).await;
        }
        answer
    }

    /// Upstream passes the provider's 429 on as a 500 whose text says so, and a
    /// status batch answers 502 "Failed to fetch services from Railway" whatever
    /// Railway said (SPEC §5.1): both are taken as a rate limit, with the default
    /// pause, since calling again at once is what the provider punishes.
    fn rate_limited(&self, err: UpstreamError, batch_failed: bool) -> UpstreamError {
        match err {
            UpstreamError::Server { target, status: status @ (500 | 502), message }
                if batch_failed || message.to_ascii_lowercase().contains("rate limit") =>
            {
                UpstreamError::RateLimited { target, status, retry_after: Some(self.rate_limit_pause) }
            }
            other => other,
        }
    }
}

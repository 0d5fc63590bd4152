//! Client for an instance's own endpoints (SPEC §5.2): readiness, binding to a
//! conversation, and what it is bound to. Authenticated with `POOL_API_KEY`.

use std::time::Duration;

use reqwest::{Client, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    services::Throttle,
    upstream::{UpstreamError, read_json},
};

const TARGET: &str = "instance";

/// `GET /pool/health`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Health {
    pub ready: bool,
}

/// Body of `POST /pool/provision`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionRequest {
    pub agent_name: String,
    pub instructions: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_url: Option<String>,
}

/// 200 answer of `POST /pool/provision`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provisioned {
    pub invite_url: Option<String>,
    /// `None` with `joined`: the join awaits the other side's acceptance.
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub joined: bool,
}

/// `GET /convos/status`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ConvosStatus {
    pub ready: bool,
    pub conversation: Option<Conversation>,
    #[serde(default)]
    pub streaming: bool,
}

/// The conversation an instance is bound to.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Conversation {
    pub id: String,
}

/// A cheap-to-clone handle for calling any instance by its base URL.
#[derive(Clone)]
pub struct InstanceClient {
    http: Client,
    api_key: SecretString,
    timeout: Duration,
    provision_timeout: Duration,
    throttle: Throttle,
    max_pause: Duration,
}

impl InstanceClient {
    /// `timeout` bounds health and status calls; provision gets its own, longer one.
    pub fn new(api_key: SecretString, timeout: Duration, provision_timeout: Duration, throttle: Throttle) -> Self {
        let http = crate::upstream::client_builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("reqwest client with static settings");
        Self { http, api_key, timeout, provision_timeout, throttle, max_pause: Duration::from_secs(300) }
    }

    /// Shortens every `Retry-After` an instance sends to at most `max`.
    pub fn with_max_pause(mut self, max: Duration) -> Self {
        self.max_pause = max;
        self
    }

    pub async fn health(&self, base_url: &str) -> Result<Health, UpstreamError> {
        let request = self.http.get(format!("{base_url}/pool/health")).timeout(self.timeout);
        self.send(base_url, request).await
    }

    /// Binds the instance to a conversation; 503 means it is not ready (and did
    /// nothing). An instance already bound answers 500 after minutes (some versions
    /// 409): `convos_status` is the way to learn whether a provision took effect.
    pub async fn provision(&self, base_url: &str, body: &ProvisionRequest) -> Result<Provisioned, UpstreamError> {
        let request = self.http.post(format!("{base_url}/pool/provision")).timeout(self.provision_timeout).json(body);
        self.send(base_url, request).await
    }

    pub async fn convos_status(&self, base_url: &str) -> Result<ConvosStatus, UpstreamError> {
        let request = self.http.get(format!("{base_url}/convos/status")).timeout(self.timeout);
        self.send(base_url, request).await
    }

    async fn send<T: DeserializeOwned>(&self, base_url: &str, request: RequestBuilder) -> Result<T, UpstreamError> {
        if !crate::domain::url::may_carry_key(base_url) {
            return Err(UpstreamError::Insecure { target: TARGET, url: base_url.to_owned() });
        }
        self.throttle.wait_for(base_url).await.map_err(|_| UpstreamError::Stopping { target: TARGET })?;
        let request = request.bearer_auth(self.api_key.expose_secret());
        let response = request.send().await.map_err(|e| {
            crate::metrics::upstream_call(TARGET, None);
            UpstreamError::from_transport(TARGET, &e)
        })?;
        crate::metrics::upstream_call(TARGET, Some(response.status().as_u16()));
        read_json(TARGET, response).await.map_err(|e| e.capped(self.max_pause))
    }
}

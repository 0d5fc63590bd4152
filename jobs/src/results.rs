//! What each kind's handler records as the job's `result` (camelCase JSON), returned
//! by the API as written. Handlers build these types, so the API document's schemas
//! are the results' own.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `provision_instance`: the service created at the provider, or why nothing was done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ProvisionResult {
    /// The provider created (or already had) the instance's service.
    #[serde(rename_all = "camelCase")]
    Created {
        instance_id: String,
        service_id: String,
        /// Not known yet while the domain is being assigned.
        #[schema(required = true)]
        url: Option<String>,
    },
    /// The row was gone or no longer `provisioning`.
    #[serde(rename_all = "camelCase")]
    Skipped {
        instance_id: String,
        /// Why, e.g. `instance is idle`.
        skipped: String,
    },
}

/// `claim_and_provision`: the claimed instance and its conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResult {
    pub instance_id: String,
    #[schema(required = true)]
    pub invite_url: Option<String>,
    #[schema(required = true)]
    pub conversation_id: Option<String>,
    /// Whether the instance joined an existing conversation (`joinUrl`).
    pub joined: bool,
    /// The join awaits the other side's acceptance, so `conversationId` is not
    /// known yet; reconcile fills it in on the instance once the instance knows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_acceptance: bool,
    /// The instance's URL.
    #[schema(required = true)]
    pub gateway_url: Option<String>,
}

/// `replenish`: the instances this job created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplenishResult {
    pub created: usize,
    pub instance_ids: Vec<String>,
    /// Set on a re-run that found the rows an earlier run of the job created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resumed: Option<bool>,
    /// Stranded provisions enqueued again (absent on a resumed run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub redriven: Option<Vec<String>>,
}

/// `drain_idle`: the instances taken out of the pool and destroyed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainResult {
    pub drained: usize,
    pub instance_ids: Vec<String>,
}

/// `kill_instance` and `dismiss_crashed`: the instance is destroyed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoveResult {
    pub instance_id: String,
    /// Always `true`.
    pub destroyed: bool,
    /// `already removed` when an earlier run had destroyed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub note: Option<String>,
}

/// `reconcile`: what one reconcile saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileResult {
    /// Services the provider reported (of this environment).
    pub services: usize,
    /// Instance rows checked.
    pub rows: usize,
    pub became_idle: usize,
    pub crashed: usize,
    pub recovered: usize,
    pub settled_claims: usize,
    pub released_claims: usize,
    pub draining: usize,
    pub destroyed: usize,
    pub vanished: usize,
    pub adopted: usize,
    /// Claimed rows whose conversation id (a join awaiting acceptance) was filled in.
    #[serde(default)]
    pub conversations_filled: usize,
    /// Services of this environment that no row owns and services cannot destroy.
    #[serde(default)]
    pub orphans: usize,
    /// Services of other Railway environments, left alone.
    pub other_environments: usize,
    /// Rows whose check failed; the next reconcile tries them again.
    pub errors: Vec<String>,
}

/// `enrich_metadata`: rows filled in from the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrichResult {
    pub enriched: usize,
    /// Rows with nothing missing (without `all`).
    pub skipped: usize,
    /// Rows the provider did not report.
    pub failed: usize,
    pub dry_run: bool,
    pub all: bool,
}

/// `noop`: how long the job waited from enqueue to start, when the payload said.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoopResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub latency_us: Option<i64>,
}

/// `check_ready`: instances being created that this round found, and made idle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckReadyResult {
    pub checked: usize,
    pub became_idle: usize,
    /// Still deploying when the follow-up ended (reconcile takes over).
    pub building: usize,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn json_of(value: impl Serialize) -> Value {
        serde_json::to_value(value).unwrap()
    }

    /// The JSON the handlers wrote before these types existed.
    #[test]
    fn results_keep_their_json() {
        let created = ProvisionResult::Created { instance_id: "i".into(), service_id: "s".into(), url: None };
        assert_eq!(json_of(created), json!({"instanceId": "i", "serviceId": "s", "url": null}));
        let skipped = ProvisionResult::Skipped { instance_id: "i".into(), skipped: "gone".into() };
        assert_eq!(json_of(skipped), json!({"instanceId": "i", "skipped": "gone"}));
        let claim = ClaimResult {
            instance_id: "i".into(),
            invite_url: None,
            conversation_id: Some("c".into()),
            joined: false,
            awaiting_acceptance: false,
            gateway_url: Some("u".into()),
        };
        assert_eq!(
            json_of(claim),
            json!({"instanceId": "i", "inviteUrl": null, "conversationId": "c", "joined": false, "gatewayUrl": "u"})
        );
        let resumed =
            ReplenishResult { created: 1, instance_ids: vec!["i".into()], resumed: Some(true), redriven: None };
        assert_eq!(json_of(resumed), json!({"created": 1, "instanceIds": ["i"], "resumed": true}));
        let fresh = ReplenishResult { created: 0, instance_ids: vec![], resumed: None, redriven: Some(vec![]) };
        assert_eq!(json_of(fresh), json!({"created": 0, "instanceIds": [], "redriven": []}));
        let gone = RemoveResult { instance_id: "i".into(), destroyed: true, note: Some("already removed".into()) };
        assert_eq!(json_of(gone), json!({"instanceId": "i", "destroyed": true, "note": "already removed"}));
        assert_eq!(json_of(NoopResult::default()), json!({}));
        let enrich = EnrichResult { enriched: 1, skipped: 2, failed: 3, dry_run: true, all: false };
        assert_eq!(json_of(enrich), json!({"enriched": 1, "skipped": 2, "failed": 3, "dryRun": true, "all": false}));
        let report = json_of(ReconcileResult::default());
        for field in ["becameIdle", "settledClaims", "releasedClaims", "otherEnvironments", "errors"] {
            assert!(report.get(field).is_some(), "{field}");
        }
    }
}

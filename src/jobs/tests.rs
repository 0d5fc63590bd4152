//! The wire contract of kinds and results.

use serde::Serialize;
use serde_json::{Value, json};

use super::{
    KINDS, claim_and_provision::ClaimResult, enrich_metadata::EnrichResult, noop::NoopResult,
    provision_instance::ProvisionResult, reconcile::ReconcileResult, removal::RemoveResult, replenish::ReplenishResult,
};

#[test]
fn kind_names_are_unique_and_snake_case() {
    let mut seen = std::collections::HashSet::new();
    for kind in KINDS {
        assert!(seen.insert(kind), "duplicate kind {kind}");
        assert!(kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{kind}");
    }
}

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
    let resumed = ReplenishResult { created: 1, instance_ids: vec!["i".into()], resumed: Some(true), redriven: None };
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

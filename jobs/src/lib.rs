//! Pool's job catalogue: every job kind's stable name, payload and result.
//!
//! Payloads are stored in Postgres and outlive deploys, so this crate is a wire
//! contract. It depends on nothing of the app, which keeps payloads to ids and plain
//! values: handlers re-read everything else. Rename nothing here; add fields only with
//! `#[serde(default)]`, so rows written by the previous release still decode.
//!
//! A kind's result ([`Job::Output`], in [`results`]) is what its handler records as
//! the job's `result`, and the API returns it as written: it is a contract with API
//! clients. Rename or retype none of its fields; a field added to it is absent from
//! rows an earlier release finished.
//!
//! Payloads and results derive `ToSchema` for the API document only; the schemas
//! change nothing on the wire.

pub mod results;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use results::{
    CheckReadyResult, ClaimResult, DrainResult, EnrichResult, NoopResult, ProvisionResult, ReconcileResult,
    RemoveResult, ReplenishResult,
};

/// A job payload with its stable kind name (the queue name in the job table). The name
/// is never derived from a Rust type path, so moving or renaming a type is safe.
pub trait Job: Serialize + for<'de> Deserialize<'de> + ToSchema + Send + Sync + 'static {
    /// The stable kind name.
    const KIND: &'static str;
    /// What a successful run records as the job's `result`.
    type Output: Serialize + ToSchema + Send + 'static;
}

macro_rules! job {
    ($ty:ident, $kind:literal, $output:ty) => {
        impl Job for $ty {
            const KIND: &'static str = $kind;
            type Output = $output;
        }
    };
}

/// Creates the provider resources of an instance whose row is already `provisioning`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisionInstance {
    pub instance_id: String,
}
job!(ProvisionInstance, "provision_instance", ProvisionResult);

/// Binds one idle instance to a conversation. The instance row records the job's id,
/// so a re-run resumes the same instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimAndProvision {
    pub agent_name: String,
    pub instructions: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub join_url: Option<String>,
}
job!(ClaimAndProvision, "claim_and_provision", ClaimResult);

/// Tops the pool up to `POOL_MIN_IDLE`, or adds exactly `count` instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Replenish {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub count: Option<u32>,
}
job!(Replenish, "replenish", ReplenishResult);

/// Removes up to `count` unclaimed instances, idle ones first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainIdle {
    pub count: u32,
}
job!(DrainIdle, "drain_idle", DrainResult);

/// Destroys one instance whatever its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KillInstance {
    pub instance_id: String,
}
job!(KillInstance, "kill_instance", RemoveResult);

/// Destroys one crashed instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DismissCrashed {
    pub instance_id: String,
}
job!(DismissCrashed, "dismiss_crashed", RemoveResult);

/// Brings the table in line with the provider's view; at most one runs at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reconcile {}
job!(Reconcile, "reconcile", ReconcileResult);

/// Backfills instance metadata from the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichMetadata {
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub dry_run: bool,
}
job!(EnrichMetadata, "enrich_metadata", EnrichResult);

/// Does nothing: measures the queue itself (`pool-bench`). `sentAtUs` is the
/// enqueue time in µs since the Unix epoch, so the handler can report the latency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Noop {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sent_at_us: Option<i64>,
}
job!(Noop, "noop", NoopResult);

/// Follows instances that are being created: checks their deploys with one status
/// call per round, health-checks the finished ones into the pool, and repeats with
/// backoff while any are still building (reconcile remains the safety net).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckReady {}
job!(CheckReady, "check_ready", CheckReadyResult);

/// Every job kind, listed once: calls `$m!` with every payload type. The kind names,
/// the worker's registry, the API document and `pool enqueue` all expand it, so a new
/// kind is its payload and result above, its handler, and one entry here.
#[macro_export]
macro_rules! for_each_kind {
    ($m:ident) => {
        $m!(
            $crate::ProvisionInstance,
            $crate::ClaimAndProvision,
            $crate::Replenish,
            $crate::DrainIdle,
            $crate::KillInstance,
            $crate::DismissCrashed,
            $crate::Reconcile,
            $crate::EnrichMetadata,
            $crate::Noop,
            $crate::CheckReady
        )
    };
}

macro_rules! kind_names {
    ($($job:path),*) => { [$(<$job as $crate::Job>::KIND),*] };
}

const KIND_COUNT: usize = for_each_kind!(kind_names).len();

/// Every kind name, for registries, filters and validation.
pub const KINDS: [&str; KIND_COUNT] = for_each_kind!(kind_names);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for kind in KINDS {
            assert!(seen.insert(kind), "duplicate kind {kind}");
            assert!(kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{kind}");
        }
    }
}

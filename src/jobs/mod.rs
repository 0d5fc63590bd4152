//! Every job kind, one file each: its stable name, payload, result, slots per worker
//! and what running it does ([`Job`]). The kind list is [`for_each_kind!`]; the
//! runtime's registry, the API document, `pool enqueue` and [`KINDS`] expand it, so
//! a new kind is its own file, its `mod` line and its entry in the list.
//!
//! Payloads are stored in Postgres and outlive deploys: they are a wire contract.
//! They hold ids and plain values only (handlers re-read everything else). Rename
//! nothing; add fields only with `#[serde(default)]`, so rows written by the previous
//! release still decode. A kind's result ([`Job::Output`]) is what its handler
//! records as the job's `result`, returned by the API as written: rename or retype
//! none of its fields; a field added to it is absent from rows an earlier release
//! finished. Kind names are literals, never derived from a Rust type path, so moving
//! or renaming a type is safe. Payloads and results derive `ToSchema` for the API
//! document only.
//!
//! [`handler`] is what a run reaches and returns; [`removal`] and [`listing`] are the
//! destroy and provider-listing steps several kinds share.

pub mod check_ready;
pub mod claim_and_provision;
pub mod dismiss_crashed;
pub mod drain_idle;
pub mod enrich_metadata;
pub mod kill_instance;
pub mod noop;
pub mod provision_instance;
pub mod reconcile;
pub mod replenish;

pub mod handler;
pub mod lease;
mod listing;
mod removal;
#[cfg(test)]
mod tests;

use std::future::Future;

pub use handler::{Ctx, JobError, JobMeta, checkpoint};
use serde::{Serialize, de::DeserializeOwned};
use utoipa::ToSchema;

use crate::config::JobsConfig;
pub use crate::domain::JobKind;

/// One job kind: a payload with its stable name (the queue name in the job table),
/// its result, and its handler. Every handler must be idempotent: it may run again
/// after a crash at any point and must converge to the same end state.
pub trait Job: Serialize + DeserializeOwned + ToSchema + Clone + Unpin + Send + Sync + 'static {
    /// The stable kind name.
    const KIND: JobKind;
    /// What a successful run records as the job's `result`.
    type Output: Serialize + ToSchema + Send + 'static;

    /// How many jobs of this kind one worker process runs at once:
    /// `JOB_CONCURRENCY_<KIND>`, else `JOB_DEFAULT_CONCURRENCY`.
    fn slots(jobs: &JobsConfig) -> usize {
        jobs.concurrency_for(Self::KIND, jobs.default_concurrency)
    }

    fn run(self, ctx: &Ctx, job: &JobMeta) -> impl Future<Output = Result<Self::Output, JobError>> + Send;
}

/// Every job kind, listed once: calls `$m!` with every payload type.
macro_rules! for_each_kind {
    ($m:ident) => {
        $m!(
            $crate::jobs::provision_instance::ProvisionInstance,
            $crate::jobs::claim_and_provision::ClaimAndProvision,
            $crate::jobs::replenish::Replenish,
            $crate::jobs::drain_idle::DrainIdle,
            $crate::jobs::kill_instance::KillInstance,
            $crate::jobs::dismiss_crashed::DismissCrashed,
            $crate::jobs::reconcile::Reconcile,
            $crate::jobs::enrich_metadata::EnrichMetadata,
            $crate::jobs::noop::Noop,
            $crate::jobs::check_ready::CheckReady,
        )
    };
}
pub(crate) use for_each_kind;

macro_rules! kind_names {
    ($($job:path,)*) => { [$(<$job as $crate::jobs::Job>::KIND),*] };
}

/// Every kind, for registries, filters and validation.
pub const KINDS: &[JobKind] = &for_each_kind!(kind_names);

/// The kind named `name`, or why there is none (with the kinds there are), for
/// whatever reads a kind from outside: API filters, paths, `pool enqueue`.
pub fn kind_named(name: &str) -> Result<JobKind, String> {
    KINDS.iter().copied().find(|kind| *kind == *name).ok_or_else(|| {
        let known: Vec<&str> = KINDS.iter().map(|kind| kind.as_str()).collect();
        format!("unknown job kind {name:?}; known: {}", known.join(", "))
    })
}

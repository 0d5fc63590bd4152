//! Removal, shared by `drain_idle`, `kill_instance`, `dismiss_crashed` and reconcile:
//! rows move to `draining` (compare-and-set), are destroyed at the provider, and each
//! is deleted only once `/status/batch` no longer lists its service. Upstream answers 200 even when its
//! delete failed (SPEC §5.1): a service still listed then is an orphan, recorded
//! and shown, since nothing Pool can call will remove it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Ctx, JobError, listing};
use crate::{
    domain::{InstanceId, InstanceStatus},
    store::instances,
    upstream::UpstreamError,
};

use InstanceStatus::*;

/// Destroys a `draining` instance and deletes its row; false when its service is
/// still running (an orphan now).
pub async fn destroy_and_delete(ctx: &Ctx, id: &InstanceId) -> Result<bool, JobError> {
    let gone = destroy_confirmed(ctx, id).await?;
    instances::delete_draining(&ctx.db, id).await?;
    tracing::info!(instance_id = %id, gone, "instance removed");
    Ok(gone)
}

/// Destroys `id` at the services API (404: it has no row, fine) and confirms by id
/// that no service of it is still listed; one that is becomes an orphan. Returns
/// whether none is. Errs, so the caller keeps its row and tries again, when
/// absence cannot be confirmed.
pub async fn destroy_confirmed(ctx: &Ctx, id: &InstanceId) -> Result<bool, JobError> {
    match ctx.services.destroy(id).await {
        Ok(_) | Err(UpstreamError::NotFound { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    let left = listing::services_of(ctx, id).await?;
    for service in &left {
        listing::record_orphan(ctx, service, "still listed after Pool destroyed its instance").await?;
    }
    Ok(left.is_empty())
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

/// Moves the instance to `draining` if its status is one of `from`, then destroys it
/// if it is draining (this run's or an earlier attempt's doing); a vanished row
/// means an earlier attempt finished.
pub(super) async fn remove(
    ctx: &Ctx,
    id: &InstanceId,
    from: &[InstanceStatus],
    reason: &str,
) -> Result<RemoveResult, JobError> {
    instances::transition(&ctx.db, id, from, Draining, Some(reason)).await?;
    finish_removal(ctx, id).await
}

async fn finish_removal(ctx: &Ctx, id: &InstanceId) -> Result<RemoveResult, JobError> {
    let removed = |destroyed: bool, note: Option<&str>| RemoveResult {
        instance_id: id.to_string(),
        destroyed,
        note: note.map(Into::into),
    };
    match instances::get(&ctx.db, id).await? {
        None => Ok(removed(true, Some("already removed"))),
        Some(row) if row.status() == Draining => {
            let gone = destroy_and_delete(ctx, &row.id).await?;
            let orphaned = "its service is still running: an orphan, shown with the fleet; delete it at the provider";
            Ok(removed(gone, (!gone).then_some(orphaned)))
        }
        Some(row) => Err(JobError::permanent(format!("instance {id} is {}; not removed", row.status))),
    }
}

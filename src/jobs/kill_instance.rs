//! `kill_instance`: an operator's destroy of one instance, whatever its status.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Ctx, Job, JobError, JobMeta,
    removal::{RemoveResult, remove},
};
use crate::domain::{InstanceId, InstanceStatus::*};

/// Destroys one instance whatever its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KillInstance {
    pub instance_id: String,
}

impl Job for KillInstance {
    const KIND: super::JobKind = super::JobKind::new("kill_instance");
    type Output = RemoveResult;

    async fn run(self, ctx: &Ctx, _job: &JobMeta) -> Result<RemoveResult, JobError> {
        let from = [Provisioning, Idle, Claiming, Claimed, Crashed];
        remove(ctx, &InstanceId::parse(&self.instance_id)?, &from, "killed by operator").await
    }
}

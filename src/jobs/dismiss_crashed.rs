//! `dismiss_crashed`: destroys one crashed instance.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Ctx, Job, JobError, JobMeta,
    removal::{RemoveResult, remove},
};
use crate::domain::{InstanceId, InstanceStatus::Crashed};

/// Destroys one crashed instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DismissCrashed {
    pub instance_id: String,
}

impl Job for DismissCrashed {
    const KIND: super::JobKind = super::JobKind::new("dismiss_crashed");
    type Output = RemoveResult;

    async fn run(self, ctx: &Ctx, _job: &JobMeta) -> Result<RemoveResult, JobError> {
        remove(ctx, &InstanceId::parse(&self.instance_id)?, &[Crashed], "dismissed").await
    }
}

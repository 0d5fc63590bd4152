//! `noop`: does nothing but report how long it waited, so benchmarks measure the
//! queue itself.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Ctx, Job, JobError, JobMeta};

/// Does nothing: measures the queue itself (`pool-bench`). `sentAtUs` is the
/// enqueue time in µs since the Unix epoch, so the handler can report the latency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Noop {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sent_at_us: Option<i64>,
}

/// `noop`: how long the job waited from enqueue to start, when the payload said.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoopResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub latency_us: Option<i64>,
}

impl Job for Noop {
    const KIND: super::JobKind = super::JobKind::new("noop");
    type Output = NoopResult;

    async fn run(self, _ctx: &Ctx, _job: &JobMeta) -> Result<NoopResult, JobError> {
        let now_us = chrono::Utc::now().timestamp_micros();
        Ok(NoopResult { latency_us: self.sent_at_us.map(|sent| now_us - sent) })
    }
}

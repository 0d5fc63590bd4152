//! `noop`: does nothing but report how long it waited, so benchmarks measure the
//! queue itself.

use pool_jobs::{Noop, results::NoopResult};

use super::{
    Ctx,
    handler::{Handler, JobError, JobMeta},
};

impl Handler for Noop {
    async fn run(self, _ctx: &Ctx, _job: &JobMeta) -> Result<NoopResult, JobError> {
        let now_us = chrono::Utc::now().timestamp_micros();
        Ok(NoopResult { latency_us: self.sent_at_us.map(|sent| now_us - sent) })
    }
}

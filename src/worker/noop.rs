//! `noop`: does nothing but report how long it waited, so benchmarks measure the
//! queue itself.

use pool_jobs::Noop;
use serde_json::{Value, json};

use super::{
    Ctx,
    handler::{Handler, JobError, JobMeta},
};

impl Handler for Noop {
    async fn run(self, _ctx: &Ctx, _job: &JobMeta) -> Result<Value, JobError> {
        let now_us = chrono::Utc::now().timestamp_micros();
        Ok(match self.sent_at_us {
            Some(sent) => json!({ "latencyUs": now_us - sent }),
            None => json!({}),
        })
    }
}

//! `enrich_metadata`: backfills provider metadata (service id, url, name) and
//! `claimed_at` from one status batch, for rows missing them (or all with `all`).

use pool_jobs::{EnrichMetadata, results::EnrichResult};

use super::{
    Ctx,
    handler::{Handler, JobError, JobMeta},
    listing::Owners,
};
use crate::store::instances;

impl Handler for EnrichMetadata {
    fn slots(_: &crate::config::JobsConfig) -> usize {
        1
    }

    async fn run(self, ctx: &Ctx, _job: &JobMeta) -> Result<EnrichResult, JobError> {
        let batch = ctx.services.status_batch(None).await?;
        let owners = Owners::new(&batch.services);
        let rows = instances::all(&ctx.db).await?;
        let (mut enriched, mut skipped, mut failed) = (0, 0, 0);
        for row in &rows {
            let missing = row.service_id.is_none()
                || row.url.is_none()
                || row.name.is_none()
                || (row.agent_name.as_deref().is_some_and(|a| !a.is_empty()) && row.claimed_at.is_none());
            if !self.all && !missing {
                skipped += 1;
                continue;
            }
            let Some(service) = owners.owned_by(row) else {
                failed += 1;
                continue;
            };
            if !self.dry_run {
                let url = service.domain.as_deref().map(crate::domain::url::from_domain);
                let fill = instances::Enrichment {
                    service_id: service.service_id.as_deref(),
                    url: url.as_deref(),
                    name: service.name.as_deref(),
                    overwrite: self.all,
                };
                instances::enrich(&ctx.db, &row.id, &fill).await?;
            }
            enriched += 1;
        }
        Ok(EnrichResult { enriched, skipped, failed, dry_run: self.dry_run, all: self.all })
    }
}

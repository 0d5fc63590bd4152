//! `enrich_metadata`: backfills provider metadata (service id, url, name) and
//! `claimed_at` from one status batch, for rows missing them (or all with `all`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Ctx, Job, JobError, JobMeta, listing::Owners};
use crate::store::instances;

/// Backfills instance metadata from the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichMetadata {
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// `enrich_metadata`: rows filled in from the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrichResult {
    pub enriched: usize,
    /// Rows with nothing missing (without `all`).
    pub skipped: usize,
    /// Rows the provider did not report.
    pub failed: usize,
    pub dry_run: bool,
    pub all: bool,
}

impl Job for EnrichMetadata {
    const KIND: super::JobKind = super::JobKind::new("enrich_metadata");
    type Output = EnrichResult;

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

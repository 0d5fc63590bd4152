//! The provision lead time (create → idle) of the instances Pool created, from
//! their own rows: the warm target plans with its p90.

use std::time::Duration;

use sqlx::PgExecutor;

use crate::domain::InstanceId;

/// An instance that became idle, and its lead time when Pool created it (adopted rows
/// started elsewhere, so theirs means nothing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ready {
    pub lead: Option<Duration>,
}

/// Compare-and-set `provisioning` → `idle`, recording when; `None` when the row was
/// not `provisioning`.
pub async fn become_idle(db: impl PgExecutor<'_>, id: &InstanceId) -> sqlx::Result<Option<Ready>> {
    let row: Option<(Option<f64>,)> = sqlx::query_as(
        "UPDATE instances SET status = 'idle', ready_at = now(), status_changed_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'provisioning'
         RETURNING CASE WHEN created_by_job IS NOT NULL
                        THEN greatest(extract(epoch FROM now() - created_at), 0)::float8 END",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(lead,)| Ready { lead: lead.map(Duration::from_secs_f64) }))
}

/// The p90 lead time in seconds of the instances Pool created that became idle
/// within `window`; `None` before any.
pub async fn p90(db: impl PgExecutor<'_>, window: Duration) -> sqlx::Result<Option<f64>> {
    sqlx::query_scalar(
        "SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM ready_at - created_at))::float8
         FROM instances
         WHERE ready_at > now() - make_interval(secs => $1) AND created_by_job IS NOT NULL",
    )
    .bind(window.as_secs_f64())
    .fetch_one(db)
    .await
}

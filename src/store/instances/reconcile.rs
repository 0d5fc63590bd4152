//! Writes of reconcile and enrich: what the provider's view of a row changes.

use sqlx::PgExecutor;

use crate::domain::{InstanceId, JobId};

/// Inserts a row for a provider service nobody recorded (adopted by reconcile).
pub async fn insert_adopted(
    db: impl PgExecutor<'_>,
    id: &InstanceId,
    name: Option<&str>,
    service_id: Option<&str>,
    url: Option<&str>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO instances (id, name, service_id, url, status) VALUES ($1, $2, $3, $4, 'provisioning')
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(name)
    .bind(service_id)
    .bind(url)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What one status batch said about one row.
pub struct Observation<'a> {
    pub id: &'a str,
    pub deploy_status: Option<&'a str>,
    pub service_id: Option<&'a str>,
    pub url: Option<&'a str>,
    pub image: Option<&'a str>,
}

/// [`observe`] for many rows in one statement; rows the batch tells nothing new
/// about are not written at all (a steady pool costs no writes).
pub async fn observe_all(db: impl PgExecutor<'_>, seen: &[Observation<'_>]) -> sqlx::Result<u64> {
    let ids: Vec<&str> = seen.iter().map(|o| o.id).collect();
    let deploys: Vec<Option<&str>> = seen.iter().map(|o| o.deploy_status).collect();
    let services: Vec<Option<&str>> = seen.iter().map(|o| o.service_id).collect();
    let urls: Vec<Option<&str>> = seen.iter().map(|o| o.url).collect();
    let images: Vec<Option<&str>> = seen.iter().map(|o| o.image).collect();
    let done = sqlx::query(
        "UPDATE instances i SET deploy_status = COALESCE(o.deploy_status, i.deploy_status),
                service_id = COALESCE(i.service_id, o.service_id), url = COALESCE(i.url, o.url),
                image = COALESCE(o.image, i.image), missing_batches = 0, updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
              AS o(id, deploy_status, service_id, url, image)
         WHERE i.id = o.id
           AND (i.deploy_status IS DISTINCT FROM COALESCE(o.deploy_status, i.deploy_status)
                OR (i.service_id IS NULL AND o.service_id IS NOT NULL)
                OR (i.url IS NULL AND o.url IS NOT NULL)
                OR i.image IS DISTINCT FROM COALESCE(o.image, i.image)
                OR i.missing_batches <> 0)",
    )
    .bind(&ids)
    .bind(&deploys)
    .bind(&services)
    .bind(&urls)
    .bind(&images)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Counts one more batch without the row's service; returns the new count.
pub async fn mark_missing(db: impl PgExecutor<'_>, id: &InstanceId) -> sqlx::Result<i32> {
    sqlx::query_scalar(
        "UPDATE instances SET missing_batches = missing_batches + 1 WHERE id = $1 RETURNING missing_batches",
    )
    .bind(id)
    .fetch_optional(db)
    .await
    .map(Option::unwrap_or_default)
}

/// `crashed` → `claimed` when the deploy recovered with the same conversation.
pub async fn recover_crashed(db: impl PgExecutor<'_>, id: &InstanceId, conversation_id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE instances SET status = 'claimed', last_error = NULL, status_changed_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'crashed' AND conversation_id = $2",
    )
    .bind(id)
    .bind(conversation_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `claiming` → `claimed` for a row no live claim job holds, from the instance's own
/// report of its conversation (stuck claims of a crashed claimer).
pub async fn settle_stuck_claim(
    db: impl PgExecutor<'_>,
    id: &InstanceId,
    holder: Option<&JobId>,
    conversation_id: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE instances SET status = 'claimed', conversation_id = $3, claimed_at = COALESCE(claimed_at, now()),
                status_changed_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'claiming' AND claim_job_id IS NOT DISTINCT FROM $2",
    )
    .bind(id)
    .bind(holder)
    .bind(conversation_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `provisioning` → `claimed` for a row Pool did not create whose instance reports a
/// conversation: it was bound before Pool knew it, and must never be handed out.
pub async fn adopt_bound(db: impl PgExecutor<'_>, id: &InstanceId, conversation_id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE instances SET status = 'claimed', conversation_id = $2, claimed_at = COALESCE(claimed_at, now()),
                status_changed_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'provisioning'",
    )
    .bind(id)
    .bind(conversation_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the conversation of a `claimed` row that had none (a join that awaited
/// acceptance); false when the row moved on or already has one.
pub async fn fill_conversation(db: impl PgExecutor<'_>, id: &InstanceId, conversation_id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE instances SET conversation_id = $2, updated_at = now()
         WHERE id = $1 AND status = 'claimed' AND conversation_id IS NULL",
    )
    .bind(id)
    .bind(conversation_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a row whose service vanished at the provider, if its status is unchanged.
pub async fn delete_vanished(db: impl PgExecutor<'_>, id: &InstanceId, status: &str) -> sqlx::Result<bool> {
    let done =
        sqlx::query("DELETE FROM instances WHERE id = $1 AND status = $2").bind(id).bind(status).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// Provider metadata to backfill onto a row.
pub struct Enrichment<'a> {
    pub service_id: Option<&'a str>,
    pub url: Option<&'a str>,
    pub name: Option<&'a str>,
    /// Replace present values too (`--all`), not only fill gaps.
    pub overwrite: bool,
}

/// Backfills metadata; `claimed_at` of a claimed row without one becomes its
/// status-change time, the best record of when the claim happened.
pub async fn enrich(db: impl PgExecutor<'_>, id: &InstanceId, e: &Enrichment<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE instances SET
             service_id = CASE WHEN $5 THEN COALESCE($2, service_id) ELSE COALESCE(service_id, $2) END,
             url = CASE WHEN $5 THEN COALESCE($3, url) ELSE COALESCE(url, $3) END,
             name = CASE WHEN $5 THEN COALESCE($4, name) ELSE COALESCE(name, $4) END,
             claimed_at = CASE WHEN COALESCE(agent_name, '') <> '' THEN COALESCE(claimed_at, status_changed_at) ELSE claimed_at END,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(e.service_id)
    .bind(e.url)
    .bind(e.name)
    .bind(e.overwrite)
    .execute(db)
    .await?;
    Ok(())
}

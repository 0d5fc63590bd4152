//! All SQL lives here. Every state change is a compare-and-set on the status the
//! caller observed; claims take rows with `FOR UPDATE SKIP LOCKED`, so concurrent
//! callers never wait on or take the same row.

pub mod demand;
pub mod instances;
pub mod jobs;
pub mod metrics;
pub mod orphans;
pub mod rate_limit;

pub use instances::{Counts, InstanceRow};
pub use jobs::{JobRow, JobState, NewJob};

/// Runs `work` in a transaction that no caller can cancel half-way: it runs on a task
/// of its own, so a dropped caller (a client that hung up) cannot leave the
/// connection inside a transaction (sqlx #4393) or a transaction half-done.
pub async fn transaction<T, F>(db: &sqlx::PgPool, work: F) -> sqlx::Result<T>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut sqlx::PgConnection) -> futures::future::BoxFuture<'c, sqlx::Result<T>> + Send + 'static,
{
    let db = db.clone();
    tokio::spawn(async move {
        let mut tx = db.begin().await?;
        let value = work(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    })
    .await
    .map_err(|e| sqlx::Error::Protocol(format!("transaction task failed: {e}")))?
}

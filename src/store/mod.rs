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

/// Whether `err` says the database was unreachable or busy rather than that it
/// refused this statement: the same statement may succeed later. Anything else
/// (bad data, a broken constraint) fails again every time.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions, a read-only transaction (a standby during a
        // failover), serialization failures and deadlocks, insufficient resources,
        // an object not available now (a database not accepting connections),
        // operator intervention (shutdown, recovery), system errors.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| ["08", "25", "40", "53", "55", "57", "58"].iter().any(|class| code.starts_with(class))),
        _ => false,
    }
}

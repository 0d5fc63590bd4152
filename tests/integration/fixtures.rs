//! Rows as Pool's processes leave them, written straight into a test's database:
//! idle instances, claims reserved and completed, and jobs that already ran. Each test states only what it is about.

use std::time::Duration;

use pool::{
    domain::{InstanceId, JobId},
    store::{
        NewJob,
        instances::{self, Binding, Completed},
        jobs::{claim, lifecycle::Lease},
    },
};
use serde_json::{Value, json};
use sqlx::PgExecutor;

/// An idle instance as a worker leaves one: a url nothing answers on, created now,
/// reporting no image.
pub fn idle(id: &str) -> IdleRow<'_> {
    IdleRow { id, age: Duration::ZERO, image: None }
}

pub struct IdleRow<'a> {
    id: &'a str,
    age: Duration,
    image: Option<&'a str>,
}

impl<'a> IdleRow<'a> {
    /// Created `age` ago (the oldest idle row is claimed first).
    pub fn aged(self, age: Duration) -> Self {
        Self { age, ..self }
    }

    /// Reporting `image` (recycling replaces rows on another image).
    pub fn on_image(self, image: &'a str) -> Self {
        Self { image: Some(image), ..self }
    }

    pub async fn insert(self, db: impl PgExecutor<'_>) {
        sqlx::query(
            "INSERT INTO instances (id, status, url, image, created_at)
             VALUES ($1, 'idle', 'http://127.0.0.1:1/x', $2, now() - make_interval(secs => $3))",
        )
        .bind(self.id)
        .bind(self.image)
        .bind(self.age.as_secs_f64())
        .execute(db)
        .await
        .expect("insert an idle row");
    }
}

/// A job of `kind` that failed for good after one run with the error `boom`.
pub fn failed(kind: &str) -> EndedJob<'_> {
    EndedJob { kind, state: "failed", args: json!({}), runs: 1, error: "boom", dedupe: None }
}

/// A job that ran (or is waiting to run again) as the runtime leaves one.
pub struct EndedJob<'a> {
    kind: &'a str,
    state: &'a str,
    args: Value,
    runs: i32,
    error: &'a str,
    dedupe: Option<&'a str>,
}

impl<'a> EndedJob<'a> {
    /// In `state` instead (`queued`: due again; `cancelled`).
    pub fn state(self, state: &'a str) -> Self {
        Self { state, ..self }
    }

    pub fn args(self, args: Value) -> Self {
        Self { args, ..self }
    }

    /// After `runs` runs, all of its attempts.
    pub fn runs(self, runs: i32) -> Self {
        Self { runs, ..self }
    }

    pub fn error(self, error: &'a str) -> Self {
        Self { error, ..self }
    }

    /// Holding the singleton key `dedupe`.
    pub fn dedupe(self, dedupe: &'a str) -> Self {
        Self { dedupe: Some(dedupe), ..self }
    }

    /// Inserts the row; its id.
    pub async fn insert(self, db: impl PgExecutor<'_>) -> JobId {
        let id = JobId::generate();
        sqlx::query(
            "INSERT INTO jobs (id, kind, args, state, attempts, max_attempts, runs, dedupe_key, started_at, finished_at,
                               error)
             VALUES ($1, $2, $3, $4, $5, $5, $5, $6, now(),
                     CASE WHEN $4 IN ('succeeded', 'failed', 'cancelled') THEN now() END, $7)",
        )
        .bind(&id)
        .bind(self.kind)
        .bind(&self.args)
        .bind(self.state)
        .bind(self.runs)
        .bind(self.dedupe)
        .bind(self.error)
        .execute(db)
        .await
        .expect("insert a job that ran");
        id
    }
}

/// The idle instance `instance`, reserved by the claim job `job` (queued, due now), as
/// the web's claim leaves them.
pub async fn reserved_claim(db: &sqlx::PgPool, instance: &str, job: &str) -> (InstanceId, JobId) {
    idle(instance).insert(db).await;
    let job = crate::helpers::claim_job(job);
    let instance = InstanceId::parse(instance).unwrap();
    let reserved = claim::reserve_and_enqueue(db, &job, claim::Ask::default()).await.unwrap();
    assert_eq!(reserved, claim::Reserved::Instance(instance.clone()));
    (instance, job.id)
}

/// Completes the claim `lease` runs on `instance`, as its handler does after a
/// provision that answered.
pub async fn complete_claim(db: impl PgExecutor<'_>, instance: &InstanceId, lease: Lease<'_>) -> Completed {
    const BINDING: Binding<'static> = Binding {
        conversation_id: Some("conv-1"),
        invite_url: None,
        agent_name: "Ada",
        instructions: "hi",
        join_url: None,
    };
    let top_up = NewJob::new(crate::helpers::kind("replenish"), json!({}), 3)
        .dedupe("singleton")
        .after(Duration::from_millis(500));
    instances::complete_held_claim(db, instance, lease, &BINDING, &json!({"ok": true}), &top_up).await.unwrap()
}

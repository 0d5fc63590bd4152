//! `pool jobs list|retry|cancel` and `pool enqueue`: the job administration of the
//! API, for operators with database access (`DATABASE_URL` alone; no web process).

use clap::{Subcommand, ValueEnum};
use serde_json::Value;

use crate::{
    config::{DatabaseConfig, JobsConfig},
    db,
    domain::{JobId, JobKind},
    queue,
    queue::JobDoc,
    store::jobs::{self, ActionError, Filter, JobState, ListQuery},
};

/// A job status, as the command line takes it.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<Status> for JobState {
    fn from(status: Status) -> Self {
        match status {
            Status::Queued => Self::Queued,
            Status::Running => Self::Running,
            Status::Succeeded => Self::Succeeded,
            Status::Failed => Self::Failed,
            Status::Cancelled => Self::Cancelled,
        }
    }
}

/// `pool jobs …`.
#[derive(Subcommand, Clone, Debug)]
pub enum JobsCommand {
    /// Newest jobs first.
    List {
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// A job kind, e.g. claim_and_provision.
        #[arg(long, value_parser = crate::jobs::kind_named)]
        kind: Option<JobKind>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-queue a failed or cancelled job with its attempts reset; or, without an id,
    /// every job the filter selects.
    Retry {
        id: Option<JobId>,
        #[command(flatten)]
        filter: BulkFilter,
    },
    /// Cancel a queued job, or ask a running one to stop; or, without an id, every job
    /// the filter selects.
    Cancel {
        id: Option<JobId>,
        #[command(flatten)]
        filter: BulkFilter,
    },
}

/// The jobs of a bulk retry or cancel.
#[derive(clap::Args, Clone, Debug)]
pub struct BulkFilter {
    /// Only jobs of this kind.
    #[arg(long, conflicts_with = "id", value_parser = crate::jobs::kind_named)]
    kind: Option<JobKind>,
    /// Only jobs in this state (retry: failed, cancelled; cancel: queued, running).
    #[arg(long, value_enum, conflicts_with = "id")]
    status: Option<Status>,
}

impl BulkFilter {
    fn parse(self) -> anyhow::Result<Filter> {
        anyhow::ensure!(self.kind.is_some() || self.status.is_some(), "give a job id, or --kind and/or --status");
        Ok(Filter { kind: self.kind, state: self.status.map(JobState::from) })
    }
}

pub async fn run(command: JobsCommand, database: &DatabaseConfig) -> anyhow::Result<()> {
    let pool = db::connect(database, 2).await?;
    let mut conn = pool.acquire().await?;
    match command {
        JobsCommand::List { status, kind, limit, json } => {
            let state = status.map(JobState::from);
            let rows = jobs::list(&mut *conn, &ListQuery { state, kind, before: None, limit }).await?;
            for doc in rows.into_iter().map(JobDoc::from) {
                if json {
                    println!("{}", serde_json::to_string(&doc)?);
                } else {
                    let error = doc.error.as_deref().unwrap_or("").chars().take(80).collect::<String>();
                    println!(
                        "{}  {:<20} {:<9} {}/{}  {error}",
                        doc.id,
                        doc.kind,
                        doc.status.as_str(),
                        doc.attempts,
                        doc.max_attempts
                    );
                }
            }
            Ok(())
        }
        JobsCommand::Retry { id: Some(id), .. } => report(jobs::retry(&mut conn, &id).await, &id),
        JobsCommand::Cancel { id: Some(id), .. } => report(jobs::cancel(&mut conn, &id).await, &id),
        JobsCommand::Retry { id: None, filter } => {
            let done = jobs::retry_all(&mut conn, &filter.parse()?).await?;
            println!(
                "{}",
                serde_json::json!({ "retried": done.ids.len(), "ids": done.ids, "skipped": done.skipped,
                    "answeredClaims": done.answered_claims })
            );
            Ok(())
        }
        JobsCommand::Cancel { id: None, filter } => {
            let (cancelled, stop_requested) = jobs::cancel_all(&mut *conn, &filter.parse()?).await?;
            println!("{}", serde_json::json!({ "cancelled": cancelled, "stopRequested": stop_requested }));
            Ok(())
        }
    }
}

fn report(result: Result<jobs::JobRow, ActionError>, id: &JobId) -> anyhow::Result<()> {
    match result {
        Ok(row) => {
            println!("{}", serde_json::to_string_pretty(&JobDoc::from(row))?);
            Ok(())
        }
        Err(ActionError::NotFound) => anyhow::bail!("no job {id}"),
        Err(ActionError::Conflict(state)) => anyhow::bail!("job {id} is {state}; the action does not apply"),
        Err(ActionError::Db(err)) => Err(err.into()),
    }
}

/// `pool enqueue <kind> [json]`: enqueues one job (the payload checked against the
/// kind's) and prints its document. Reconcile and a top-up replenish are singletons:
/// the one already queued or running comes back instead.
pub async fn enqueue(kind: &str, payload: Option<&str>, database: &DatabaseConfig) -> anyhow::Result<()> {
    let args: Value = serde_json::from_str(payload.unwrap_or("{}")).map_err(|e| anyhow::anyhow!("payload: {e}"))?;
    let config = JobsConfig::from_process_env()?;
    let kind = crate::jobs::kind_named(kind).map_err(anyhow::Error::msg)?;
    let job = typed_job(kind, args, &config)?;
    let pool = db::connect(database, 2).await?;
    let mut conn = pool.acquire().await?;
    let enqueued = jobs::enqueue(&mut conn, &job).await?;
    let doc = jobs::get(&mut *conn, enqueued.id()).await?.map(JobDoc::from);
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

fn typed_job(kind: JobKind, args: Value, config: &JobsConfig) -> anyhow::Result<jobs::NewJob> {
    use crate::jobs::{
        Job, check_ready::CheckReady, claim_and_provision::ClaimAndProvision, reconcile::Reconcile,
        replenish::Replenish,
    };
    fn check<J: Job>(args: Value, config: &JobsConfig) -> anyhow::Result<jobs::NewJob> {
        let payload: J = serde_json::from_value(args).map_err(|e| anyhow::anyhow!("{} payload: {e}", J::KIND))?;
        Ok(queue::new_job(&payload, config))
    }
    // Claims, singletons and the default replenish have their own way in (below);
    // every other kind is enqueued as given.
    macro_rules! plain {
        ($($job:path,)*) => {
            match kind {
                $(k if k == <$job as Job>::KIND => check::<$job>(args, config)?,)*
                other => unreachable!("{other} is a kind, and every kind is listed"),
            }
        };
    }
    Ok(match kind {
        ClaimAndProvision::KIND => {
            anyhow::bail!("claims are made through POST /api/pool/claim, which reserves the instance")
        }
        Replenish::KIND => match check::<Replenish>(args, config)? {
            job if job.args.get("count").is_none() => queue::replenish_job(config),
            job => job,
        },
        Reconcile::KIND => {
            check::<Reconcile>(args, config)?;
            queue::reconcile_job(config)
        }
        CheckReady::KIND => {
            check::<CheckReady>(args, config)?;
            queue::check_ready_job()
        }
        _ => crate::jobs::for_each_kind!(plain),
    })
}

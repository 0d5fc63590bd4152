//! `pool jobs list|retry|cancel`: the job administration of the API, for operators
//! with database access (no web process needed).

use anyhow::Context;
use clap::Subcommand;

use crate::{
    config::Config,
    db,
    queue::JobDoc,
    store::jobs::{self, ActionError, Filter, JobState, ListQuery},
};

/// `pool jobs …`.
#[derive(Subcommand, Clone, Debug)]
pub enum JobsCommand {
    /// Newest jobs first.
    List {
        /// queued, running, succeeded, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// A job kind, e.g. claim_and_provision.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-queue a failed or cancelled job with its attempts reset; or, without an id,
    /// every job the filter selects.
    Retry {
        id: Option<String>,
        #[command(flatten)]
        filter: BulkFilter,
    },
    /// Cancel a queued job, or ask a running one to stop; or, without an id, every job
    /// the filter selects.
    Cancel {
        id: Option<String>,
        #[command(flatten)]
        filter: BulkFilter,
    },
}

/// The jobs of a bulk retry or cancel.
#[derive(clap::Args, Clone, Debug)]
pub struct BulkFilter {
    /// Only jobs of this kind.
    #[arg(long, conflicts_with = "id")]
    kind: Option<String>,
    /// Only jobs in this state (retry: failed, cancelled; cancel: queued, running).
    #[arg(long, conflicts_with = "id")]
    status: Option<String>,
}

impl BulkFilter {
    fn parse(self) -> anyhow::Result<Filter> {
        anyhow::ensure!(self.kind.is_some() || self.status.is_some(), "give a job id, or --kind and/or --status");
        Ok(Filter { kind: self.kind, state: parse_state(self.status)? })
    }
}

fn parse_state(status: Option<String>) -> anyhow::Result<Option<JobState>> {
    status
        .map(|s| serde_json::from_value::<JobState>(serde_json::Value::String(s)))
        .transpose()
        .context("--status must be queued, running, succeeded, failed or cancelled")
}

pub async fn run(command: JobsCommand, config: &Config) -> anyhow::Result<()> {
    let pool = db::connect(&config.database_url, 2).await?;
    let mut conn = pool.acquire().await?;
    match command {
        JobsCommand::List { status, kind, limit, json } => {
            let state = parse_state(status)?;
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
            let ids = jobs::retry_all(&mut *conn, &filter.parse()?).await?;
            println!("{}", serde_json::json!({ "retried": ids.len(), "ids": ids }));
            Ok(())
        }
        JobsCommand::Cancel { id: None, filter } => {
            let (cancelled, stop_requested) = jobs::cancel_all(&mut *conn, &filter.parse()?).await?;
            println!("{}", serde_json::json!({ "cancelled": cancelled, "stopRequested": stop_requested }));
            Ok(())
        }
    }
}

fn report(result: Result<jobs::JobRow, ActionError>, id: &str) -> anyhow::Result<()> {
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

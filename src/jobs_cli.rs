//! `pool jobs list|retry|cancel`: the job administration of the API, for operators
//! with database access (no web process needed).

use anyhow::Context;
use clap::Subcommand;

use crate::{
    config::Config,
    db,
    queue::JobDoc,
    store::jobs::{self, ActionError, JobState, ListQuery},
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
    /// Re-queue a failed or cancelled job with its attempts reset.
    Retry { id: String },
    /// Cancel a queued job, or ask a running one to stop.
    Cancel { id: String },
}

pub async fn run(command: JobsCommand, config: &Config) -> anyhow::Result<()> {
    let pool = db::connect(&config.database_url, 2).await?;
    let mut conn = pool.acquire().await?;
    match command {
        JobsCommand::List { status, kind, limit, json } => {
            let state = status
                .map(|s| serde_json::from_value::<JobState>(serde_json::Value::String(s)))
                .transpose()
                .context("--status must be queued, running, succeeded, failed or cancelled")?;
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
        JobsCommand::Retry { id } => report(jobs::retry(&mut conn, &id).await, &id),
        JobsCommand::Cancel { id } => report(jobs::cancel(&mut conn, &id).await, &id),
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

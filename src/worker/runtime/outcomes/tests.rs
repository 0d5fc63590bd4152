//! The writer's isolation of an outcome the database refuses, against a fake store.

use std::sync::Mutex;

use serde_json::json;

use super::*;

/// Refuses (as Postgres refuses NUL) every statement holding an outcome with NUL;
/// answers the first `away` statements as if the database were down, and refuses
/// the first `refuse_all` whatever they hold (a misjudged outage).
#[derive(Default)]
struct Fake {
    away: Mutex<usize>,
    refuse_all: Mutex<usize>,
    statements: Mutex<Vec<Vec<String>>>,
    applied: Mutex<Vec<Finished>>,
}

fn refused() -> Failed {
    Failed::Refused(sqlx::Error::ColumnNotFound("unsupported Unicode escape sequence".into()))
}

impl Store for Fake {
    fn finish<'a>(&'a self, runs: &'a [Finished]) -> BoxFuture<'a, Result<Vec<Applied>, Failed>> {
        async move {
            self.statements.lock().unwrap().push(runs.iter().map(|r| r.id.to_string()).collect());
            let mut away = self.away.lock().unwrap();
            if *away > 0 {
                *away -= 1;
                return Err(Failed::Away(sqlx::Error::Io(std::io::Error::other("connection reset"))));
            }
            let mut refuse_all = self.refuse_all.lock().unwrap();
            if *refuse_all > 0 {
                *refuse_all -= 1;
                return Err(refused());
            }
            if runs.iter().any(|r| format!("{:?}", r.outcome).contains("\\0")) {
                return Err(refused());
            }
            self.applied.lock().unwrap().extend(runs.iter().cloned());
            Ok(runs.iter().map(applied).collect())
        }
        .boxed()
    }
}

fn applied(run: &Finished) -> Applied {
    Applied {
        id: run.id.clone(),
        kind: "noop".into(),
        state: crate::store::JobState::Succeeded,
        run_time: 0.0,
        age: 0.0,
    }
}

fn ok(id: &str) -> Finished {
    Finished { id: id.into(), attempt: 1, outcome: Outcome::Succeeded(json!({"id": id})) }
}

fn outcome_of(fake: &Fake, id: &str) -> Vec<Outcome> {
    fake.applied.lock().unwrap().iter().filter(|f| f.id.as_str() == id).map(|f| f.outcome.clone()).collect()
}

#[tokio::test]
async fn a_refused_outcome_is_isolated_and_fails_its_job_while_the_others_are_written() {
    let fake = Fake::default();
    let mut batch: Vec<Finished> = (0..7).map(|i| ok(&format!("j{i}"))).collect();
    batch[4].outcome = Outcome::Retryable { error: "bad\0byte".into(), delay: Duration::from_secs(1) };
    write_isolating(&fake, &batch, false).await;

    for i in [0, 1, 2, 3, 5, 6] {
        let id = format!("j{i}");
        assert!(matches!(outcome_of(&fake, &id)[..], [Outcome::Succeeded(_)]), "{id} written as it was");
    }
    let failed = outcome_of(&fake, "j4");
    let [Outcome::Permanent(reason)] = &failed[..] else { panic!("j4 fails its job: {failed:?}") };
    assert!(reason.contains("could not be stored") && reason.contains("Unicode"), "{reason}");
    let statements = fake.statements.lock().unwrap().len();
    assert!(statements <= 2 * 3 + 2, "halves, not one statement per outcome: {statements}");
}

#[tokio::test]
async fn a_database_that_is_away_is_waited_for_without_splitting() {
    let fake = Fake { away: Mutex::new(2), ..Fake::default() };
    let batch: Vec<Finished> = (0..4).map(|i| ok(&format!("j{i}"))).collect();
    write_isolating(&fake, &batch, false).await;

    let statements = fake.statements.lock().unwrap().clone();
    assert_eq!(statements.len(), 3, "two failed tries, then the whole batch: {statements:?}");
    assert!(statements.iter().all(|s| s.len() == 4), "{statements:?}");
    assert_eq!(fake.applied.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn an_outcome_is_not_failed_for_a_refusal_that_was_not_about_it() {
    // The outcome, then even the job's failure: the database refuses everything for
    // a while. The outcome is written once it takes writes again.
    let fake = Fake { refuse_all: Mutex::new(2), ..Fake::default() };
    write_isolating(&fake, &[ok("j0")], false).await;
    assert!(matches!(outcome_of(&fake, "j0")[..], [Outcome::Succeeded(_)]), "{:?}", outcome_of(&fake, "j0"));
}

#[test]
fn the_runs_not_applied_are_those_the_store_did_not_return() {
    let runs = [ok("a"), ok("b"), ok("c"), ok("d")];
    let some = [applied(&runs[2]), applied(&runs[0])];
    let lost: Vec<String> = not_applied(&runs, &some).iter().map(|f| f.id.to_string()).collect();
    assert_eq!(lost, ["b", "d"]);
    assert!(not_applied(&runs, &runs.iter().map(applied).collect::<Vec<_>>()).is_empty());
}

//! The decisions of reconcile (SPEC §2.2) as a pure function of what one run observed,
//! so every rule is unit-tested without IO.

use std::time::Duration;

use crate::{
    domain::{DeployPhase, InstanceStatus},
    services::ServiceStatus,
    store::instances::InstanceRow,
};

/// A draining row older than this is destroyed by reconcile; younger ones belong to
/// the job that is destroying them.
const DRAIN_GRACE: Duration = Duration::from_secs(120);
/// Consecutive batches a service must be absent from before its row is removed.
const VANISHED_AFTER: i32 = 2;

/// What reconcile does with one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// `provisioning` with a running deploy: health-check; ready → `idle`. When
    /// `stuck`, a not-ready answer drains it.
    CheckHealth {
        stuck: bool,
    },
    /// `claimed` → `crashed`.
    Crash(&'static str),
    /// `crashed` with a running deploy: → `claimed` if the conversation matches.
    CheckRecovery,
    /// `claimed` without a conversation id (a join awaiting acceptance): ask the
    /// instance and record the id once it knows it.
    FillConversation,
    /// `provisioning`/`idle` → `draining`, then destroy.
    Drain(&'static str),
    /// An old `draining` row: destroy and delete.
    Destroy,
    /// Absent from one batch: count it.
    MarkMissing,
    /// Absent from consecutive batches: the service is gone; remove the row.
    Vanished,
    /// `claiming` with no live claim job: ask the instance what it is bound to. When
    /// `stuck`, an instance that cannot tell is given up as `crashed`.
    ResolveClaim {
        stuck: bool,
    },
    /// `claiming` with no live claim job and no way to ask the instance (dead deploy,
    /// or past the stuck timeout without a URL or a running deploy): → `crashed`,
    /// where an operator sees it (it may have been bound).
    AbandonClaim(&'static str),
}

/// Decides what to do with `row` given its service in this batch (`None` = absent).
pub fn decide(
    row: &InstanceRow,
    service: Option<&ServiceStatus>,
    holder_active: bool,
    age: Duration,
    stuck_timeout: Duration,
) -> Action {
    use InstanceStatus::*;
    let status = row.status();
    let Some(service) = service else {
        // Never confirmed by create-instance: the provision job may still be queued.
        if status == Provisioning && row.service_id.is_none() {
            return if age > stuck_timeout {
                Action::Drain("never created before the stuck timeout")
            } else {
                Action::None
            };
        }
        return if row.missing_batches + 1 >= VANISHED_AFTER { Action::Vanished } else { Action::MarkMissing };
    };
    let phase = service.deploy_status.as_ref().map_or(DeployPhase::Unknown, |d| d.phase());
    let live = matches!(phase, DeployPhase::Running | DeployPhase::Sleeping);
    match (status, phase) {
        (Provisioning | Idle, DeployPhase::Dead) => Action::Drain("deploy is dead"),
        // Only a running deploy is health-checked: a check would wake a sleeping one,
        // and SPEC §2.2 makes a provisioning row idle on `SUCCESS` only.
        (Provisioning, DeployPhase::Running) if row.url.is_some() => Action::CheckHealth { stuck: age > stuck_timeout },
        // Whatever else it shows (still building, an unrecognised status, no URL):
        // not ready in time.
        (Provisioning, _) if age > stuck_timeout => Action::Drain("not ready before the stuck timeout"),
        (Claiming, _) if live && !holder_active && row.url.is_some() => {
            Action::ResolveClaim { stuck: age > stuck_timeout }
        }
        (Claiming, DeployPhase::Dead) if !holder_active => Action::AbandonClaim("claim abandoned; deploy is dead"),
        (Claiming, _) if !holder_active && age > stuck_timeout => {
            Action::AbandonClaim("claim abandoned; the instance cannot be asked about its binding")
        }
        (Claimed, DeployPhase::Dead) => Action::Crash("deploy is dead"),
        (Claimed, DeployPhase::Running) if row.conversation_id.is_none() && row.url.is_some() => {
            Action::FillConversation
        }
        // A sleeping deploy wakes on request, so it can answer the conversation check.
        (Crashed, DeployPhase::Running | DeployPhase::Sleeping) => Action::CheckRecovery,
        (Draining, _) if age > DRAIN_GRACE => Action::Destroy,
        _ => Action::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeployStatus;
    use chrono::Utc;

    const STUCK: Duration = Duration::from_secs(900);

    fn row(status: &str) -> InstanceRow {
        InstanceRow {
            id: crate::domain::InstanceId::parse("abcdefghijkl").expect("valid"),
            name: None,
            url: Some("http://127.0.0.1:1/i/abcdefghijkl".into()),
            status: status.parse().expect("a known status"),
            service_id: Some("svc".into()),
            deploy_status: None,
            agent_name: None,
            conversation_id: None,
            invite_url: None,
            instructions: None,
            join_url: None,
            claim_job_id: None,
            created_by_job: None,
            last_error: None,
            image: None,
            missing_batches: 0,
            created_at: Utc::now(),
            claimed_at: None,
            status_changed_at: Utc::now(),
        }
    }

    fn service(deploy: &str) -> ServiceStatus {
        ServiceStatus {
            instance_id: "abcdefghijkl".into(),
            service_id: Some("svc".into()),
            name: Some("convos-agent-abcdefghijkl".into()),
            deploy_status: Some(DeployStatus::new(deploy)),
            domain: None,
            image: None,
            environment_ids: vec![],
        }
    }

    fn decide_now(row: &InstanceRow, deploy: Option<&str>) -> Action {
        let s = deploy.map(service);
        decide(row, s.as_ref(), false, Duration::ZERO, STUCK)
    }

    #[test]
    fn abandoned_claims_reach_a_resting_state() {
        let abandoned = |deploy: Option<&str>, url: bool, age: Duration| {
            let mut claiming = row("claiming");
            if !url {
                claiming.url = None;
            }
            decide(&claiming, deploy.map(service).as_ref(), false, age, STUCK)
        };
        assert!(matches!(abandoned(Some("CRASHED"), true, Duration::ZERO), Action::AbandonClaim(_)));
        assert_eq!(abandoned(Some("SUCCESS"), false, Duration::ZERO), Action::None, "waits for the stuck timeout");
        assert!(matches!(abandoned(Some("SUCCESS"), false, STUCK * 2), Action::AbandonClaim(_)));
        assert!(matches!(abandoned(Some("BUILDING"), true, STUCK * 2), Action::AbandonClaim(_)));
        assert_eq!(abandoned(Some("SUCCESS"), true, STUCK * 2), Action::ResolveClaim { stuck: true });
        let held = decide(&row("claiming"), Some(&service("CRASHED")), true, STUCK * 2, STUCK);
        assert_eq!(held, Action::None, "a live claim job owns its row");
    }

    #[test]
    fn sleeping_idle_instances_are_kept() {
        assert_eq!(decide_now(&row("idle"), Some("SLEEPING")), Action::None);
        assert_eq!(decide_now(&row("provisioning"), Some("SLEEPING")), Action::None, "not woken by a check");
    }

    #[test]
    fn unknown_deploy_status_changes_nothing() {
        for status in ["provisioning", "idle", "claimed", "crashed"] {
            assert_eq!(decide_now(&row(status), Some("MIGRATING")), Action::None, "{status}");
        }
    }

    #[test]
    fn dead_deploys_drain_unclaimed_and_crash_claimed() {
        assert_eq!(decide_now(&row("idle"), Some("CRASHED")), Action::Drain("deploy is dead"));
        assert_eq!(decide_now(&row("provisioning"), Some("FAILED")), Action::Drain("deploy is dead"));
        assert_eq!(decide_now(&row("claimed"), Some("REMOVED")), Action::Crash("deploy is dead"));
    }

    #[test]
    fn provisioning_is_health_checked_and_drained_when_stuck() {
        assert_eq!(decide_now(&row("provisioning"), Some("SUCCESS")), Action::CheckHealth { stuck: false });
        let s = service("BUILDING");
        assert_eq!(
            decide(&row("provisioning"), Some(&s), false, STUCK * 2, STUCK),
            Action::Drain("not ready before the stuck timeout")
        );
    }

    #[test]
    fn a_service_must_be_missing_twice_before_its_row_goes() {
        let mut r = row("claimed");
        assert_eq!(decide_now(&r, None), Action::MarkMissing);
        r.missing_batches = 1;
        assert_eq!(decide_now(&r, None), Action::Vanished);
    }

    #[test]
    fn claims_held_by_live_jobs_are_left_alone() {
        let s = service("SUCCESS");
        assert_eq!(decide(&row("claiming"), Some(&s), true, Duration::ZERO, STUCK), Action::None);
        assert_eq!(
            decide(&row("claiming"), Some(&s), false, Duration::ZERO, STUCK),
            Action::ResolveClaim { stuck: false }
        );
    }

    #[test]
    fn provisioning_past_the_stuck_timeout_drains_whatever_its_deploy_shows() {
        for deploy in ["BUILDING", "MIGRATING"] {
            let s = service(deploy);
            let action = decide(&row("provisioning"), Some(&s), false, STUCK * 2, STUCK);
            assert_eq!(action, Action::Drain("not ready before the stuck timeout"), "{deploy}");
        }
        let mut no_url = row("provisioning");
        no_url.url = None;
        let s = service("SUCCESS");
        assert_eq!(
            decide(&no_url, Some(&s), false, STUCK * 2, STUCK),
            Action::Drain("not ready before the stuck timeout")
        );
    }

    #[test]
    fn crashed_recovers_only_through_a_conversation_check() {
        assert_eq!(decide_now(&row("crashed"), Some("SUCCESS")), Action::CheckRecovery);
        assert_eq!(decide_now(&row("crashed"), Some("BUILDING")), Action::None);
    }
}

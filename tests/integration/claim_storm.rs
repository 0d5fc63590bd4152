//! A claim storm: many more concurrent claims than idle instances, against real
//! `pool web` and three `pool worker` processes. The request-time reservation makes
//! the answer exact: one job per idle instance, 503 `no_idle_instance` for the rest,
//! and no instance is ever provisioned twice (SPEC §2.3 invariant 1).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use futures::future::join_all;
use pool::{
    queue::JobDoc,
    sim::{Faults, Simulator},
    store::JobState,
};
use serde_json::{Value, json};

use crate::{helpers::fast_sim, stack::Stack};

const IDLE: usize = 50;
const CLAIMS: usize = 200;

/// Per instance, the statuses of every `POST /i/<id>/pool/provision` the simulator
/// answered, in arrival order.
pub fn provisions_by_instance(sim: &Simulator) -> BTreeMap<String, Vec<u16>> {
    let mut by_instance: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for request in sim.requests() {
        if request.method == "POST" && request.path.ends_with("/pool/provision") {
            let id = request.instance_id.clone().expect("a provision names its instance");
            by_instance.entry(id).or_default().push(request.status);
        }
    }
    by_instance
}

/// `(id, conversation_id)` of every row in `status`.
pub async fn conversations_in(stack: &Stack, status: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT id, conversation_id FROM instances WHERE status = $1 ORDER BY id")
        .bind(status)
        .fetch_all(&stack.db.pool)
        .await
        .unwrap()
}

/// No conversation is bound to two services in the simulator.
pub fn assert_no_shared_conversation(sim: &Simulator) {
    let mut owner: HashMap<String, String> = HashMap::new();
    for id in sim.service_ids() {
        if let Some(conversation) = sim.conversation_of(&id)
            && let Some(other) = owner.insert(conversation.clone(), id.clone())
        {
            panic!("conversation {conversation} is bound to both {other} and {id}");
        }
    }
}

/// How one storm request ended.
#[derive(Debug)]
enum Answer {
    Job(Box<JobDoc>),
    NoIdle,
}

#[tokio::test]
async fn two_hundred_claims_against_fifty_idle_with_three_workers() {
    // Every claim that finds none waits in line (the cap is `line.rs`'s).
    let stack = Stack::start(fast_sim(), 3, &[("POOL_MIN_IDLE", "50"), ("POOL_MAX_WAITING", "200")]).await;
    let warm = stack
        .wait_for_counts("50 idle", Duration::from_secs(40), |c| c["idle"] == IDLE && c["provisioning"] == 0)
        .await;
    assert_eq!(warm["claiming"], 0, "{warm}");
    assert_eq!(warm["claimed"], 0, "{warm}");

    // From now on the services API fails every call, so the replenishes that the
    // claims trigger can never add an idle instance during the storm (their rows stay
    // `provisioning`), and reconcile sees "status unknown" and changes nothing. The
    // instance endpoints (provision) are not affected.
    //
    // (A long `Faults::build_ms` would not do: the simulator applies a new build time
    // to *existing* services too, so the 50 ready ones would go back to BUILDING and
    // answer 503 not_ready. See
    // `raising_the_simulated_build_time_does_not_unbuild_running_services`.)
    stack.sim.sim.set_faults(Faults { failure_rate: Some(1.0), ..Faults::default() });
    stack.sim.sim.clear_requests();

    let answers = join_all((0..CLAIMS).map(|i| {
        let stack = &stack;
        async move {
            let response = stack.post("/api/pool/claim", json!({ "agentName": format!("Storm {i}") }), 30).await;
            match response.status().as_u16() {
                200 | 202 => {
                    let doc: JobDoc = response.json().await.unwrap();
                    Answer::Job(Box::new(doc))
                }
                503 => {
                    let body: Value = response.json().await.unwrap();
                    assert_eq!(body["code"], "no_idle_instance", "{body}");
                    Answer::NoIdle
                }
                other => panic!("claim {i}: unexpected status {other}: {}", response.text().await.unwrap_or_default()),
            }
        }
    }))
    .await;

    let mut jobs = Vec::new();
    let (mut no_idle, mut waited_longer) = (0, 0);
    for answer in answers {
        match answer {
            Answer::Job(doc) if doc.status.is_finished() => jobs.push(*doc),
            // Not finished within the request's wait: keep waiting.
            Answer::Job(doc) => {
                waited_longer += 1;
                jobs.push(stack.wait_job(&doc.id, Duration::from_secs(30)).await);
            }
            Answer::NoIdle => no_idle += 1,
        }
    }
    eprintln!(
        "storm: {} jobs ({waited_longer} still running after Prefer: wait), {no_idle} answered 503 no_idle_instance",
        jobs.len()
    );
    // Every job that was accepted must have succeeded: the reservation happened in the
    // request, so no job can find the pool empty afterwards.
    let failed: Vec<_> = jobs.iter().filter(|j| j.status != JobState::Succeeded).collect();
    assert!(failed.is_empty(), "claim jobs that did not succeed: {failed:#?}");
    assert_eq!(jobs.len(), IDLE, "claims that got a job");
    assert_eq!(no_idle, CLAIMS - IDLE, "claims answered 503 no_idle_instance");

    let counts = stack.counts().await;
    assert_eq!(counts["claimed"], IDLE, "{counts}");
    assert_eq!(counts["claiming"], 0, "{counts}");
    assert_eq!(counts["idle"], 0, "{counts}");
    assert_eq!(counts["crashed"], 0, "{counts}");

    // Each job bound its own instance, and the row agrees with the job and the simulator.
    let claimed = conversations_in(&stack, "claimed").await;
    assert_eq!(claimed.len(), IDLE);
    let rows: HashMap<String, Option<String>> = claimed.into_iter().collect();
    let mut instances = HashSet::new();
    let mut conversations = HashSet::new();
    for job in &jobs {
        let result = job.result.as_ref().expect("a succeeded claim has a result");
        let instance = result["instanceId"].as_str().expect("instanceId").to_owned();
        let conversation = result["conversationId"].as_str().expect("conversationId").to_owned();
        assert!(instances.insert(instance.clone()), "instance {instance} returned by two claims");
        assert!(conversations.insert(conversation.clone()), "conversation {conversation} returned twice");
        assert_eq!(rows.get(&instance), Some(&Some(conversation.clone())), "row of {instance}");
        assert_eq!(stack.sim.sim.conversation_of(&instance), Some(conversation), "sim binding of {instance}");
    }
    let db_conversations: HashSet<_> =
        rows.values().map(|c| c.clone().expect("claimed row has a conversation")).collect();
    assert_eq!(db_conversations.len(), IDLE, "distinct conversation ids among claimed rows");

    // The simulator saw exactly one provision per claimed instance, each a 200, and
    // none for any other instance.
    let provisions = provisions_by_instance(&stack.sim.sim);
    let provisioned: HashSet<String> = provisions.keys().cloned().collect();
    assert_eq!(provisioned, instances, "instances that received a provision call");
    for (id, statuses) in &provisions {
        assert_eq!(statuses, &[200], "provision calls of {id}");
    }
    assert_no_shared_conversation(&stack.sim.sim);
}

/// `Faults::build_ms` is documented (via `SimConfig::build_time`) as how long a *new*
/// service stays BUILDING, but the simulator derives every deploy status lazily from
/// the *current* build time, so raising it un-builds services that were already
/// running (and un-readies instances that are idle in Pool).
#[tokio::test]
async fn raising_the_simulated_build_time_does_not_unbuild_running_services() {
    let sim = crate::helpers::spawn_sim(fast_sim()).await;
    sim.sim.add_service("abcdefghijkl");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = sim.sim.service("abcdefghijkl").unwrap();
    assert_eq!(before.deploy_status, "SUCCESS");
    assert!(before.ready);

    sim.sim.set_faults(Faults { build_ms: Some(3_600_000), ..Faults::default() });
    let after = sim.sim.service("abcdefghijkl").unwrap();
    assert_eq!(after.deploy_status, "SUCCESS", "a built service stays built");
    assert!(after.ready, "a ready instance stays ready");

    // Only services created from now on take the new build time.
    sim.sim.add_service("mnopqrstuvwx");
    assert_eq!(sim.sim.service("mnopqrstuvwx").unwrap().deploy_status, "BUILDING");
}

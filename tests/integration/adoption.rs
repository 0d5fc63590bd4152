//! Adopting a database of the original Node service (SPEC §9): `pool migrate`
//! upgrades its `instances` table in place, losing nothing, and Pool then runs its
//! lifecycle on it.

use std::time::Duration;

use pool::store::JobState;
use serde_json::json;

use crate::{
    helpers::{TestDb, base_env, fast_sim, pool_command, spawn_sim},
    stack::Stack,
};

const ORIGINAL: &str = "
CREATE TABLE instances (
    id text PRIMARY KEY, name text NOT NULL, url text, status text NOT NULL DEFAULT 'starting',
    agent_name text, conversation_id text, invite_url text, instructions text,
    created_at timestamptz NOT NULL DEFAULT now(), claimed_at timestamptz);
CREATE INDEX idx_instances_status ON instances (status);";

const LEGACY_COLUMNS: &str = "
ALTER TABLE instances ADD COLUMN service_id text NOT NULL UNIQUE, ADD COLUMN deploy_status text,
    ADD COLUMN source_branch text, ADD COLUMN openrouter_key_hash text, ADD COLUMN agentmail_inbox_id text,
    ADD COLUMN gateway_token text, ADD COLUMN runtime_image text, ADD COLUMN volume_id text;";

/// (id, original status, agent name, conversation, expected status after migrate).
const ROWS: [(&str, &str, &str, &str, &str); 7] = [
    ("startingAAAA", "starting", "", "", "provisioning"),
    ("idleAAAAAAAA", "idle", "", "", "idle"),
    ("claimingBND1", "claiming", "", "", "claiming"),
    ("claimingFREE", "claiming", "", "", "claiming"),
    ("claimedAAAAA", "claimed", "Ada", "conv-ada", "claimed"),
    ("crashedAAAAA", "crashed", "Bob", "conv-bob", "crashed"),
    ("idleButBound", "idle", "Eve", "conv-eve", "claimed"),
];

/// The original service recorded each instance's Railway service id.
fn service_ids(sim: &pool::sim::Simulator) -> Vec<String> {
    ROWS.iter().map(|(id, ..)| sim.service(id).expect("service added").service_id).collect()
}

async fn original_database(sim_url: &str, service_ids: &[String], legacy: bool) -> TestDb {
    let db = TestDb::empty().await;
    sqlx::raw_sql(ORIGINAL).execute(&db.pool).await.unwrap();
    if legacy {
        sqlx::raw_sql(LEGACY_COLUMNS).execute(&db.pool).await.unwrap();
    }
    for (i, (id, status, agent, conversation, _)) in ROWS.iter().enumerate() {
        let insert = if legacy {
            "INSERT INTO instances (id, name, url, status, agent_name, conversation_id, instructions, service_id, gateway_token)
             VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), 'be nice', $7, 'gw-secret')"
        } else {
            "INSERT INTO instances (id, name, url, status, agent_name, conversation_id, instructions)
             VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), 'be nice')"
        };
        let mut q = sqlx::query(insert).bind(id).bind(format!("convos-agent-{id}")).bind(format!("{sim_url}/i/{id}"));
        q = q.bind(status).bind(agent).bind(conversation);
        if legacy {
            q = q.bind(&service_ids[i]);
        }
        q.execute(&db.pool).await.unwrap();
    }
    db
}

async fn migrate_twice(db: &TestDb) {
    let env = base_env(&db.url, "http://127.0.0.1:1");
    for run in 1..=2 {
        let out = pool_command(&["migrate"], &env).output().await.unwrap();
        assert!(out.status.success(), "migrate run {run}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

async fn check_rows_kept(db: &TestDb, service_ids: &[String], legacy: bool) {
    for (i, (id, _, agent, conversation, expected)) in ROWS.iter().enumerate() {
        let (status, name, agent_name, conv, instructions): (String, String, Option<String>, Option<String>, String) =
            sqlx::query_as(
                "SELECT status, name, agent_name, conversation_id, instructions FROM instances WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(status, *expected, "{id}");
        assert_eq!(name, format!("convos-agent-{id}"));
        assert_eq!(
            (agent_name.unwrap_or_default(), conv.unwrap_or_default()),
            (agent.to_string(), conversation.to_string())
        );
        assert_eq!(instructions, "be nice");
        if legacy {
            let (service_id, token): (String, String) =
                sqlx::query_as("SELECT service_id, gateway_token FROM instances WHERE id = $1")
                    .bind(id)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            assert_eq!((service_id, token), (service_ids[i].clone(), "gw-secret".to_owned()));
        }
    }
    // Legacy NOT NULL constraints are relaxed: Pool can write its early rows.
    sqlx::query("INSERT INTO instances (id, status) VALUES ('newrowAAAAAA', 'provisioning')")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM instances WHERE id = 'newrowAAAAAA'").execute(&db.pool).await.unwrap();
}

async fn upgrade_and_run(legacy: bool) {
    let sim = spawn_sim(fast_sim()).await;
    for (id, ..) in ROWS {
        sim.sim.add_service(id);
    }
    for (id, conversation) in [
        ("claimingBND1", "conv-claimed-before-crash"),
        ("claimedAAAAA", "conv-ada"),
        ("crashedAAAAA", "conv-bob"),
        ("idleButBound", "conv-eve"),
    ] {
        sim.sim.bind(id, conversation);
    }
    let service_ids = service_ids(&sim.sim);
    let db = original_database(&sim.url, &service_ids, legacy).await;
    migrate_twice(&db).await;
    check_rows_kept(&db, &service_ids, legacy).await;

    let overrides = [("RECONCILE_SCHEDULE", "0 0 0 1 1 *"), ("REPLENISH_SCHEDULE", "0 0 0 1 1 *")];
    let stack = Stack::start_on(db, sim, 1, &overrides).await;
    let reconcile: pool::queue::JobDoc = stack.post("/api/pool/reconcile", json!({}), 30).await.json().await.unwrap();
    assert_eq!(reconcile.status, JobState::Succeeded, "{reconcile:?}");
    let status_of = |id: &'static str| {
        let pool = stack.db.pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>("SELECT status, conversation_id FROM instances WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(status_of("claimingBND1").await, ("claimed".into(), Some("conv-claimed-before-crash".into())));
    assert_eq!(status_of("claimingFREE").await.0, "idle");
    assert_eq!(status_of("startingAAAA").await.0, "idle");
    assert_eq!(status_of("crashedAAAAA").await.0, "claimed", "healthy again with the same conversation");

    let claim: pool::queue::JobDoc =
        stack.post("/api/pool/claim", json!({"agentName": "Zed"}), 30).await.json().await.unwrap();
    assert_eq!(claim.status, JobState::Succeeded, "{claim:?}");
    let killed = stack
        .request(reqwest::Method::DELETE, "/api/pool/instances/claimedAAAAA")
        .header("prefer", "wait=30")
        .send()
        .await
        .unwrap();
    assert_eq!(killed.status(), 200);
    stack.wait_for_counts("kill done", Duration::from_secs(10), |c| c["draining"] == 0).await;
    assert!(!stack.sim.sim.service_ids().iter().any(|id| id == "claimedAAAAA"));
    assert!(stack.rows().await.iter().all(|(id, _)| id != "claimedAAAAA"));
}

#[tokio::test]
async fn upgrades_the_original_table_in_place() {
    upgrade_and_run(false).await;
}

#[tokio::test]
async fn upgrades_the_original_table_with_legacy_columns() {
    upgrade_and_run(true).await;
}

//! Migrations: apply on an empty database, apply twice harmlessly, named constraints.

use crate::helpers::{TestDb, base_env, pool_command};

#[tokio::test]
async fn migrate_twice_via_the_binary_is_harmless() {
    let db = TestDb::empty().await;
    let env = base_env(&db.url, "http://127.0.0.1:1");
    for run in 1..=2 {
        let output = pool_command(&["migrate"], &env).output().await.unwrap();
        assert!(output.status.success(), "run {run}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables
         WHERE table_name IN ('instances', 'jobs') ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(tables, ["apalis.jobs", "public.instances", "public.jobs"]);
}

#[tokio::test]
async fn migrate_on_an_already_migrated_database_changes_nothing() {
    let db = TestDb::new().await;
    sqlx::query("INSERT INTO instances (id, status) VALUES ('abcdefghijkl', 'idle')").execute(&db.pool).await.unwrap();
    pool::db::migrate(&db.pool).await.expect("second migrate");
    let status: String = sqlx::query_scalar("SELECT status FROM instances").fetch_one(&db.pool).await.unwrap();
    assert_eq!(status, "idle");
}

#[tokio::test]
async fn status_check_constraint_is_named_and_enforced() {
    let db = TestDb::new().await;
    let err = sqlx::query("INSERT INTO instances (id, status) VALUES ('abcdefghijkl', 'starting')")
        .execute(&db.pool)
        .await
        .unwrap_err();
    let constraint = err.as_database_error().and_then(|e| e.constraint()).map(str::to_owned);
    assert_eq!(constraint.as_deref(), Some("instances_status_check"));
}

/// `sslmode=require` gives an encrypted connection, through Pool's own sqlx TLS feature
/// (the test cluster of `scripts/lib/pg.sh` has TLS with a throwaway certificate).
#[tokio::test]
async fn sslmode_require_connects_over_tls() {
    let db = TestDb::new().await;
    let url = format!("{}?sslmode=require", db.url);
    let pool = sqlx::PgPool::connect(&url).await.expect("a TLS connection");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&pool).await.unwrap();
    assert!(encrypted, "the session is encrypted");
    // The binary too: `pool migrate` over TLS.
    let env = base_env(&url, "http://127.0.0.1:1");
    let output = pool_command(&["migrate"], &env).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Every column of the job tables carries the small statistics target of
/// `jobs_statistics_sample`: one column left at the default would make every
/// analyze of its table read ten times the rows again.
#[tokio::test]
async fn the_job_tables_analyze_a_small_sample() {
    let db = TestDb::new().await;
    let defaults: Vec<String> = sqlx::query_scalar(
        "SELECT attrelid::regclass::text || '.' || attname FROM pg_attribute
         WHERE attrelid IN ('jobs'::regclass, 'job_attempts'::regclass) AND attnum > 0 AND NOT attisdropped
           AND COALESCE(attstattarget, -1) <> 10
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(defaults.is_empty(), "columns at another statistics target: {defaults:?}");
}

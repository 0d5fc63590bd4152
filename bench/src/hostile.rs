//! `pool-bench hostile`: hostile clients from outside the web process. Made-up
//! methods against the metrics (size of `/metrics`, web RSS), 8 threads flooding
//! every read route while one client claims in sequence (claim latency, reads shed),
//! and slow clients trickling their headers while claims go on (time until the
//! server has closed them all).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, task::JoinSet};

use super::{
    claim,
    harness::{self, API_KEY, Stack, mb},
    report::{self, Latency},
};

/// Every read route an attacker or a busy dashboard would hit.
const READS: [&str; 7] = [
    "/api/stats?range=day",
    "/api/stats?range=hour",
    "/api/pool/instances",
    "/api/pool/agents",
    "/api/jobs",
    "/api/pool/counts",
    "/metrics",
];

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let (methods, flood, claims, slow) = if quick { (300, 3, 10, 30) } else { (3000, 30, 50, 300) };
    let stack = claim::start("hostile", claims + 40).await?;
    let result = measure(&stack, methods, Duration::from_secs(flood), claims, slow).await;
    let stopped = stack.stop().await;
    let result = result?;
    stopped?;
    Ok(json!({ "scenario": "hostile", "quick": quick, "results": result }))
}

async fn measure(stack: &Stack, methods: usize, flood: Duration, claims: usize, slow: usize) -> anyhow::Result<Value> {
    claim::warm_up(stack).await?;
    seed_a_day_of_metrics(stack).await?;
    let labels = label_flood(stack, methods).await?;
    let reads = read_flood(stack, flood, claims).await?;
    let slowloris = slow_clients(stack, slow, 20).await?;
    Ok(json!({ "labels": labels, "reads": reads, "slow_clients": slowloris }))
}

/// A day of per-minute rows for the charts, as a busy day leaves them.
async fn seed_a_day_of_metrics(stack: &Stack) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO metric_minutes (minute, name, labels, count, sum)
         SELECT date_trunc('minute', now()) - make_interval(mins => m), n.name, n.labels, 10, 1
         FROM generate_series(1, 1440) AS m,
              (VALUES ('pool_claims_total', 'outcome=served'), ('pool_claim_seconds', ''),
                      ('pool_job_queue_wait_seconds', 'kind=claim_and_provision'),
                      ('pool_jobs_finished_total', 'kind=claim_and_provision,status=succeeded'),
                      ('pool_warm', ''), ('pool_warm_target', ''), ('pool_min_idle', '')) AS n(name, labels)
         ON CONFLICT DO NOTHING",
    )
    .execute(&stack.db.pool)
    .await?;
    Ok(())
}

/// `n` requests with made-up 200-character methods: `/metrics` size and web RSS.
async fn label_flood(stack: &Stack, n: usize) -> anyhow::Result<Value> {
    let metrics_len = || async { stack.http.get(format!("{}/metrics", stack.web_url)).send().await?.text().await };
    let (before, rss_before) = (metrics_len().await?.len(), stack.web.mem().rss_kb);
    for i in 0..n {
        let method = reqwest::Method::from_bytes(format!("M{i:05}{}", "X".repeat(194)).as_bytes())?;
        stack.http.request(method, format!("{}/api/pool/counts", stack.web_url)).send().await?;
    }
    let (after, rss_after) = (metrics_len().await?.len(), stack.web.mem().rss_kb);
    let rows = vec![vec![
        n.to_string(),
        before.to_string(),
        after.to_string(),
        format!("{:.1}", mb(rss_before)),
        format!("{:.1}", mb(rss_after)),
    ]];
    report::table(
        "hostile: made-up methods",
        &["requests", "/metrics bytes before", "after", "web RSS MB before", "after"],
        &rows,
    );
    Ok(json!({ "requests": n, "metrics_bytes": [before, after], "web_rss_mb": [mb(rss_before), mb(rss_after)] }))
}

/// 8 tasks reading every route for `length` while one client makes `claims`
/// sequential claims.
async fn read_flood(stack: &Stack, length: Duration, claims: usize) -> anyhow::Result<Value> {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut readers = JoinSet::new();
    for t in 0..8 {
        let (http, base, stop, counts) = (harness::http_client()?, stack.web_url.clone(), stop.clone(), counts.clone());
        readers.spawn(async move {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{base}{}", READS[i % READS.len()]);
                i += 1;
                let slot = match http.get(url).bearer_auth(API_KEY).send().await.map(|r| r.status().as_u16()) {
                    Ok(200) => 0,
                    Ok(503) => 1,
                    _ => 2,
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let started = Instant::now();
    let claimed = claim::load(stack, 1, claims).await?;
    tokio::time::sleep(length.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    while readers.join_next().await.is_some() {}
    let reads: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let mut latencies = claimed.latencies_ms.clone();
    let latency = Latency::of(&mut latencies);
    let secs = started.elapsed().as_secs_f64();
    let mut row = vec![claims.to_string(), claimed.errors.to_string()];
    row.extend(latency.cells());
    row.extend([format!("{:.0}", reads[0] as f64 / secs), reads[1].to_string(), reads[2].to_string()]);
    let headers = ["claims", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "reads/s ok", "shed (503)", "other"];
    report::table("hostile: 8 threads reading every route, claims in sequence", &headers, &[row]);
    Ok(
        json!({ "claims": claims, "errors": claimed.errors, "latency": latency, "reads_ok": reads[0], "reads_shed": reads[1], "reads_other": reads[2], "seconds": report::round2(secs) }),
    )
}

/// `n` connections sending a header byte every second while `claims` claims run:
/// seconds until the server has closed every one of them (at most 60 s watched).
async fn slow_clients(stack: &Stack, n: usize, claims: usize) -> anyhow::Result<Value> {
    let addr = stack.web_url.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let mut slow = JoinSet::new();
    for _ in 0..n {
        let addr = addr.clone();
        slow.spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else { return Duration::ZERO };
            let _ = stream.write_all(b"GET /api/pool/counts HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
            let opened = Instant::now();
            // A write fails once the server has closed the connection (after a
            // first write that only provokes the reset).
            while opened.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if stream.write_all(b"a").await.is_err() {
                    break;
                }
            }
            opened.elapsed()
        });
    }
    let claimed = claim::load(stack, 1, claims).await?;
    let mut open_for = Vec::new();
    while let Some(done) = slow.join_next().await {
        open_for.push(done?.as_secs_f64());
    }
    let closed = open_for.iter().filter(|s| **s < 59.0).count();
    let longest = open_for.iter().copied().fold(0.0, f64::max);
    let rows = vec![vec![
        n.to_string(),
        closed.to_string(),
        format!("{longest:.1}"),
        claims.to_string(),
        claimed.errors.to_string(),
    ]];
    report::table(
        "hostile: slow clients (a header byte a second)",
        &["connections", "closed by the server", "longest open s", "claims", "claim errors"],
        &rows,
    );
    Ok(
        json!({ "connections": n, "closed": closed, "longest_open_s": report::round2(longest), "claims": claims, "claim_errors": claimed.errors, "seconds": report::round2(started.elapsed().as_secs_f64()) }),
    )
}

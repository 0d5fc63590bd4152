//! A whole Pool for end-to-end tests: a fresh database, the simulator in-process,
//! and real `pool web` / `pool worker` processes talking to both over HTTP. Process
//! logs go to `target/test-logs/` for post-mortems.

#![allow(dead_code)]

use std::{collections::HashMap, future::Future, path::PathBuf, process::Stdio, time::Duration};

use pool::{queue::JobDoc, sim};
use serde_json::Value;

use crate::helpers::{
    API_KEY, PoolProcess, TestDb, base_env, free_port, http_client, pool_command, spawn_sim, wait_until_up,
};

/// Settings that make a test pool fast: schedules every second, a generous rate limit.
pub const FAST: [(&str, &str); 7] = [
    ("RECONCILE_SCHEDULE", "* * * * * *"),
    ("REPLENISH_SCHEDULE", "* * * * * *"),
    ("SERVICES_RATE_PER_SEC", "500"),
    ("SERVICES_RATE_BURST", "100"),
    ("POOL_MIN_IDLE", "0"),
    // Counts stay predictable; the adaptive buffer's own tests turn it on.
    ("POOL_BUFFER", "static"),
    ("RUST_LOG", "info,sqlx=warn"),
];

pub struct Stack {
    pub db: TestDb,
    pub sim: sim::SpawnedSim,
    pub env: HashMap<String, String>,
    pub web_url: String,
    pub http: reqwest::Client,
    web: PoolProcess,
    workers: Vec<PoolProcess>,
    spawned: usize,
}

impl Stack {
    /// Starts one web and `workers` worker processes. `overrides` win over [`FAST`].
    pub async fn start(sim_config: sim::SimConfig, workers: usize, overrides: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let sim = spawn_sim(sim_config).await;
        Self::start_on(db, sim, workers, overrides).await
    }

    /// Like [`Stack::start`], on a database and simulator prepared by the test.
    pub async fn start_on(db: TestDb, sim: sim::SpawnedSim, workers: usize, overrides: &[(&str, &str)]) -> Self {
        let mut env = base_env(&db.url, &sim.url);
        for (k, v) in FAST.iter().chain(overrides) {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let port = free_port();
        env.insert("PORT".into(), port.to_string());
        let web = spawn_logged(&["web"], &env, &format!("{}-web", db.name));
        let web_url = format!("http://127.0.0.1:{port}");
        wait_until_up(&format!("{web_url}/readyz"), Duration::from_secs(30)).await;
        let mut stack = Self { db, sim, env, web_url, http: http_client(), web, workers: Vec::new(), spawned: 0 };
        for _ in 0..workers {
            stack.add_worker();
        }
        stack
    }

    /// Starts another web process on this stack's database; returns it (stopped when
    /// dropped) and its base URL.
    pub async fn another_web(&self) -> (PoolProcess, String) {
        let port = free_port();
        let mut env = self.env.clone();
        env.insert("PORT".into(), port.to_string());
        let web = PoolProcess::spawn(&["web"], &env);
        let url = format!("http://127.0.0.1:{port}");
        wait_until_up(&format!("{url}/readyz"), Duration::from_secs(30)).await;
        (web, url)
    }

    /// Starts one more worker process; returns its index.
    pub fn add_worker(&mut self) -> usize {
        self.spawned += 1;
        let name = format!("{}-worker-{}", self.db.name, self.spawned);
        self.workers.push(spawn_logged(&["worker"], &self.env, &name));
        self.workers.len() - 1
    }

    /// SIGKILLs worker `i` (no chance to clean up) and waits for it to be gone.
    pub async fn kill_worker(&mut self, i: usize) {
        let worker = &mut self.workers[i];
        worker.child.kill().await.expect("kill worker");
    }

    /// Freezes worker `i` (SIGSTOP): alive, silent, holding its connections.
    pub fn pause_worker(&self, i: usize) {
        self.signal_worker(i, nix::sys::signal::Signal::SIGSTOP);
    }

    /// Resumes worker `i` (SIGCONT) after [`Stack::pause_worker`].
    pub fn resume_worker(&self, i: usize) {
        self.signal_worker(i, nix::sys::signal::Signal::SIGCONT);
    }

    fn signal_worker(&self, i: usize, signal: nix::sys::signal::Signal) {
        let pid = self.workers[i].child.id().expect("worker running") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal worker");
    }

    /// SIGTERMs worker `i` and waits for a clean exit.
    pub async fn stop_worker(&mut self, i: usize) -> std::process::ExitStatus {
        self.workers[i].terminate();
        self.workers[i].wait(Duration::from_secs(60)).await
    }

    /// Waits until `n` worker processes have registered.
    pub async fn wait_for_workers(&self, n: i64) {
        let found = eventually(Duration::from_secs(30), || async {
            let count: i64 =
                sqlx::query_scalar("SELECT count(*) FROM job_workers").fetch_one(&self.db.pool).await.unwrap_or(0);
            (count >= n).then_some(())
        })
        .await;
        assert!(found.is_some(), "{n} workers did not start");
    }

    /// A fleet-wide counter as the processes last wrote it (`METRICS_FLUSH_MS`), summed
    /// over the series whose labels contain `labels` (`""`: every series).
    pub async fn counter(&self, name: &str, labels: &str) -> f64 {
        sqlx::query_scalar("SELECT COALESCE(sum(value), 0)::float8 FROM pool_counters WHERE name = $1 AND ($2 = '' OR strpos(labels, $2) > 0)")
            .bind(name)
            .bind(labels)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Waits until counter `name` (as in [`Self::counter`]) reaches `at_least`; its value.
    pub async fn wait_for_counter(&self, name: &str, labels: &str, at_least: f64) -> f64 {
        let reached = eventually(Duration::from_secs(20), || async {
            let value = self.counter(name, labels).await;
            (value >= at_least).then_some(value)
        })
        .await;
        reached.unwrap_or_else(|| panic!("{name}{{{labels}}} did not reach {at_least}"))
    }

    /// The log file of a process of this stack (`web`, `worker-1`, …).
    pub fn log_path(&self, role: &str) -> PathBuf {
        log_dir().join(format!("{}-{role}.log", self.db.name))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.web_url)
    }

    /// An authenticated request.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(API_KEY)
    }

    /// `POST path` with a JSON body and `Prefer: wait=<wait>` (0 = no wait).
    pub async fn post(&self, path: &str, body: Value, wait: u64) -> reqwest::Response {
        let mut req = self.request(reqwest::Method::POST, path).json(&body);
        if wait > 0 {
            req = req.header("prefer", format!("wait={wait}"));
        }
        req.send().await.expect("request")
    }

    pub async fn counts(&self) -> Value {
        self.http.get(self.url("/api/pool/counts")).send().await.unwrap().json().await.unwrap()
    }

    /// Waits until the counts satisfy `pred`; panics with the last counts otherwise.
    pub async fn wait_for_counts(&self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let counts = self.counts().await;
            if pred(&counts) {
                return counts;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; counts: {counts}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The job document, waiting (via `Prefer: wait`) up to `limit` for it to finish.
    pub async fn wait_job(&self, id: &str, limit: Duration) -> JobDoc {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now()).as_secs().clamp(1, 60);
            let doc: JobDoc = self
                .request(reqwest::Method::GET, &format!("/api/jobs/{id}"))
                .header("prefer", format!("wait={left}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if doc.status.is_finished() || tokio::time::Instant::now() >= deadline {
                return doc;
            }
        }
    }

    /// Rows of `instances` as (id, status), for assertions straight from the database.
    pub async fn rows(&self) -> Vec<(String, String)> {
        sqlx::query_as("SELECT id, status FROM instances ORDER BY id").fetch_all(&self.db.pool).await.unwrap()
    }
}

/// Polls `f` every 100 ms until it yields `Some` or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-logs")
}

fn spawn_logged(args: &[&str], env: &HashMap<String, String>, name: &str) -> PoolProcess {
    let dir = log_dir();
    std::fs::create_dir_all(&dir).expect("log dir");
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    let child = pool_command(args, env)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pool");
    PoolProcess { child }
}
